// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title QualityMath
/// @notice Pure arithmetic of watchdog quality scores: the median of an epoch's scores for a node, and whether a
/// score lies close enough to it to earn the watchdog a credit. Scores are basis points (0 to 10,000).
library QualityMath {
    /// @notice Sorts `scores` in place (ascending) and returns their median: the middle score of an odd count, the
    /// mean of the two middle scores (rounded down) of an even count. `scores` must not be empty.
    /// @dev Insertion sort: the oracle holds at most 32 scores per node and epoch.
    function median(uint16[] memory scores) internal pure returns (uint16) {
        uint256 n = scores.length;
        for (uint256 i = 1; i < n; ++i) {
            uint16 key = scores[i];
            uint256 j = i;
            while (j > 0 && scores[j - 1] > key) {
                scores[j] = scores[j - 1];
                --j;
            }
            scores[j] = key;
        }
        if (n % 2 == 1) return scores[n / 2];
        // Two uint16 values: their sum fits in uint256 and their mean in uint16.
        return uint16((uint256(scores[n / 2 - 1]) + scores[n / 2]) / 2);
    }

    /// @notice Whether `score` lies within `band` of `center`, both ends included.
    function withinBand(uint16 score, uint16 center, uint256 band) internal pure returns (bool) {
        uint256 distance = score > center ? score - center : center - score;
        return distance <= band;
    }
}
