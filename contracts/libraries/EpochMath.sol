// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

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
        // Any real timestamp gives an epoch far below 2^64, but `timestamp` comes from the caller: refuse, never wrap.
        return SafeCast.toUint64(segment.firstEpoch + (timestamp - segment.startTime) / segment.length);
    }

    /// @notice The first second of `epoch`, which must not be before `segment.firstEpoch`.
    function startOf(Segment memory segment, uint64 epoch) internal pure returns (uint64) {
        // A far-future `epoch` would wrap to a time in the past (an epoch that looks over): refuse, never wrap.
        return SafeCast.toUint64(segment.startTime + uint256(epoch - segment.firstEpoch) * segment.length);
    }
}
