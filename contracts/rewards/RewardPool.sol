// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IRewardPool} from "../interfaces/IRewardPool.sol";

/// @title RewardPool
/// @notice See IRewardPool.
contract RewardPool is IRewardPool, Ownable {
    using SafeERC20 for IERC20;

    IERC20 private immutable _token;
    address private _distributor;

    /// @param token_ The reward token.
    /// @param owner_ The timelock.
    /// @param distributor_ The first distributor (the reward distributor, whose address the deploy fixes in advance),
    /// or address zero for none until the owner sets one.
    constructor(IERC20 token_, address owner_, address distributor_) Ownable(owner_) {
        _token = token_;
        _distributor = distributor_;
        emit DistributorChanged(address(0), distributor_);
    }

    /// @inheritdoc IRewardPool
    function setDistributor(address distributor_) external onlyOwner {
        address oldDistributor = _distributor;
        _distributor = distributor_;
        emit DistributorChanged(oldDistributor, distributor_);
    }

    /// @inheritdoc IRewardPool
    function release(address to, uint256 amount) external {
        if (msg.sender != _distributor) revert RewardPoolNotDistributor(msg.sender);
        emit Released(to, amount);
        _token.safeTransfer(to, amount);
    }

    /// @inheritdoc IRewardPool
    function distributor() external view returns (address) {
        return _distributor;
    }

    /// @inheritdoc IRewardPool
    function balance() external view returns (uint256) {
        return _token.balanceOf(address(this));
    }
}
