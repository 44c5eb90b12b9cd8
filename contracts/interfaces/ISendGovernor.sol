// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {INodeRegistry} from "./INodeRegistry.sol";

/// @title ISendGovernor
/// @notice What the protocol's Governor adds to OpenZeppelin's IGovernor: stakers govern. A voter's weight at a
/// proposal's snapshot is its token votes (ERC20Votes: tokens it holds or that were delegated to it) plus the value of
/// the stake it has bonded in the node registry, where its tokens sit while staked. Proposals execute through the
/// timelock, which owns every parameter and the treasury.
interface ISendGovernor {
    /// @notice The node registry whose bonded stake votes.
    function registry() external view returns (INodeRegistry);
}
