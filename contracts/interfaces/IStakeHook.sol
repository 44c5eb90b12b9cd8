// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IStakeHook
/// @notice Told by the node registry before a staker's bonded shares in a node change (bond, delegate, unbond), so a
/// contract that pays per share (the reward distributor) can settle what the staker earned on its old shares first.
interface IStakeHook {
    /// @notice `staker`'s bonded shares in `operator`'s node are about to change; they are still the old ones when
    /// this is called (`INodeRegistry.sharesOf`). Only the registry calls it.
    function beforeSharesChange(address operator, address staker) external;
}
