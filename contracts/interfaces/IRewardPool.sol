// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IRewardPool
/// @notice Holds the tokens set aside for node rewards. Only the distributor (the rewards contract, set by the
/// timelock) releases them; until one is set nothing leaves the pool.
interface IRewardPool {
    /// @notice Emitted after the distributor changed.
    event DistributorChanged(address oldDistributor, address newDistributor);

    /// @notice Emitted after `amount` tokens were released to `to`.
    event Released(address indexed to, uint256 amount);

    /// @notice `caller` is not the distributor.
    error RewardPoolNotDistributor(address caller);

    /// @notice Sets the distributor. Only the owner (the timelock).
    function setDistributor(address distributor) external;

    /// @notice Sends `amount` reward tokens to `to`. Only the distributor.
    function release(address to, uint256 amount) external;

    /// @notice The distributor.
    function distributor() external view returns (address);

    /// @notice The tokens still in the pool.
    function balance() external view returns (uint256);
}
