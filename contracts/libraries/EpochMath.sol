// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title EpochMath
/// @notice Pure arithmetic of an epoch schedule made of segments. A segment says: from `startTime` on, epochs are
/// `length` seconds long and the first of them is numbered `firstEpoch`. A change of epoch length opens a new
/// segment at an epoch boundary, so epoch numbers never jump or repeat.
library EpochMath {
    struct Segment {
        uint64 firstEpoch;
        uint64 startTime;
        uint64 length;
    }

    /// @notice The epoch that contains `timestamp`, which must not be before `segment.startTime`.
    function epochAt(Segment memory segment, uint256 timestamp) internal pure returns (uint64) {
        // A uint64 epoch count is reached only after 2^64 epochs of at least one second each: never.
        return uint64(segment.firstEpoch + (timestamp - segment.startTime) / segment.length);
    }

    /// @notice The first second of `epoch`, which must not be before `segment.firstEpoch`.
    function startOf(Segment memory segment, uint64 epoch) internal pure returns (uint64) {
        return uint64(segment.startTime + uint256(epoch - segment.firstEpoch) * segment.length);
    }
}
