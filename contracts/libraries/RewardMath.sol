// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title RewardMath
/// @notice Pure arithmetic of epoch rewards. Every division rounds down, so the amounts handed out for an epoch never
/// add up to more than its emission: the remainders (dust) stay in the reward pool.
/// @dev The per-epoch functions run once per epoch of a claim, so they use plain (checked) arithmetic where the
/// operands are bounded far below overflow: an emission below 2^96 (the distributor stores it so; governance bounds it
/// at 1e25), work and guardian work below 2^128 (the rollup's totals), credits below 2^64, basis points up to 10,000.
library RewardMath {
    uint256 internal constant BPS = 10_000;

    /// @notice The part of `emission` a role receives for `bps` basis points of the split (rounded down).
    function poolOf(uint256 emission, uint256 bps) internal pure returns (uint256) {
        return (emission * bps) / BPS;
    }

    /// @notice An edge node's reward: `pool` x `work` / `epochWork` x `qualityBps` / 10,000, in one rounding, so the
    /// node's quality shortfall stays in the pool. Zero when nothing was settled in the epoch.
    function edgeReward(
        uint256 pool,
        uint256 work,
        uint256 epochWork,
        uint256 qualityBps
    ) internal pure returns (uint256) {
        if (epochWork == 0) return 0;
        return (pool * work * qualityBps) / (epochWork * BPS);
    }

    /// @notice `pool` x `part` / `whole` (rounded down); zero when `whole` is zero.
    function shareOf(uint256 pool, uint256 part, uint256 whole) internal pure returns (uint256) {
        if (whole == 0) return 0;
        return (pool * part) / whole;
    }

    /// @notice The operator's commission on `reward` at `bps` basis points (rounded down: the stakers keep the wei).
    function commissionOf(uint256 reward, uint256 bps) internal pure returns (uint256) {
        return (reward * bps) / BPS;
    }

    /// @notice What `shares` earned while the reward per share rose from `paidPerShare` to `rewardPerShare`, where a
    /// reward per share is scaled by `scale` (rounded down). Full precision: shares are not bounded by the supply.
    function earned(
        uint256 shares,
        uint256 rewardPerShare,
        uint256 paidPerShare,
        uint256 scale
    ) internal pure returns (uint256) {
        return Math.mulDiv(shares, rewardPerShare - paidPerShare, scale);
    }
}
