// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/// @title SendTimelock
/// @notice The treasury and the owner of every governed parameter. Only the Governor proposes and cancels; anyone
/// executes a queued operation once its delay has passed.
contract SendTimelock is TimelockController {
    /// @param minDelay Seconds between queueing and executing.
    /// @param proposers Who may queue (the Governor).
    /// @param executors Who may execute (address(0): anyone).
    /// @param admin A temporary admin for wiring at deploy, renounced by the deploy script (address(0): none).
    constructor(
        uint256 minDelay,
        address[] memory proposers,
        address[] memory executors,
        address admin
    ) TimelockController(minDelay, proposers, executors, admin) {}
}
