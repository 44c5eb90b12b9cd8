// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IStakeHook} from "./IStakeHook.sol";

/// @title IRewardDistributor
/// @notice Pays each epoch's emission out of the reward pool. For a final epoch E the emission is split between edge
/// nodes (edgePool x work / epochWork x quality / 10,000), watchdogs (watchdogPool x credits / totalCredits) and
/// guardians (guardianPool x guardianWork / epochGuardianWork); a node jailed at any time in E earns nothing for E.
/// The emission, the split and the commission cap of E are fixed the first time a claim reaches E.
///
/// Claims are pull-based: `claim(node, throughEpoch)` (anyone) processes the node's epochs from the one after its last
/// processed epoch through `throughEpoch`, takes the operator's commission of each epoch (the commission it set for
/// the epoch, capped by the epoch's fixed cap) and adds the rest to the node's reward per bonded share, which the
/// operator and its delegators share alike. Each staker
/// then takes its part with `withdrawRewards(node)` in O(1), however many epochs and stakers there are. The registry
/// calls `beforeSharesChange` before a staker's shares change, so what it earned on its old shares is kept for it.
/// Approximation: the rewards of epoch E go to whoever holds the node's shares when E is claimed, not when E ran.
///
/// Nothing claimable for an epoch ever exceeds its emission: every division rounds down and the dust, the quality
/// shortfall, jailed nodes' shares and pools nobody earned stay in the reward pool. Unclaimed rewards never expire.
/// Tokens leave the pool only when a staker withdraws.
interface IRewardDistributor is IStakeHook {
    /// @notice Emitted after the emission, split and commission cap of epochs `fromEpoch` through `throughEpoch`
    /// were fixed.
    event EpochTermsFixed(
        uint64 fromEpoch,
        uint64 throughEpoch,
        uint256 emission,
        uint16 edgeBps,
        uint16 watchdogBps,
        uint16 guardianBps,
        uint16 commissionCapBps
    );

    /// @notice Emitted after `node`'s epochs `fromEpoch` through `throughEpoch` were claimed: `reward` earned in all,
    /// `commission` of it to the operator, and the node's reward per share (scaled by `REWARD_PER_SHARE_SCALE`) now.
    event RewardsClaimed(
        address indexed node,
        uint64 fromEpoch,
        uint64 throughEpoch,
        uint256 reward,
        uint256 commission,
        uint256 rewardPerShare
    );

    /// @notice Emitted after `staker` withdrew `amount` reward tokens earned in `node`.
    event RewardsWithdrawn(address indexed node, address indexed staker, uint256 amount);

    /// @notice `caller` is not the node registry.
    error RewardsNotRegistry(address caller);

    /// @notice `node` is not a registered node.
    error RewardsNodeNotRegistered(address node);

    /// @notice `node` has claimed every epoch before `nextEpoch`; a claim through `throughEpoch` has nothing to do.
    error RewardsAlreadyClaimed(address node, uint64 nextEpoch, uint64 throughEpoch);

    /// @notice A claim of `count` epochs, more than `maximum` in one call.
    error RewardsTooManyEpochs(uint256 count, uint256 maximum);

    /// @notice `epoch` is not final (its settlement closes at `finalAt`).
    error RewardsEpochNotFinal(uint64 epoch, uint256 finalAt);

    /// @notice The watchdog credits of `epoch` are not final before `opensAt`.
    error RewardsCreditsNotFinal(uint64 epoch, uint256 opensAt);

    /// @notice `staker` has no rewards to withdraw from `node`.
    error RewardsNothingToWithdraw(address node, address staker);

    /// @notice Processes `node`'s unclaimed epochs through `throughEpoch` (each final; for a watchdog, each past its
    /// credit deadline; at most `MAX_CLAIM_EPOCHS`). Anyone may call. Returns the reward earned in them.
    function claim(address node, uint64 throughEpoch) external returns (uint256 reward);

    /// @notice Pays the caller what it earned as a staker of `node` (the operator: with its commission).
    function withdrawRewards(address node) external returns (uint256 amount);

    /// @notice The most epochs one claim processes.
    function MAX_CLAIM_EPOCHS() external view returns (uint256);

    /// @notice The scale of a reward per share: reward tokens (wei) x scale / shares.
    function REWARD_PER_SHARE_SCALE() external view returns (uint256);

    /// @notice Fewest bonded shares a node needs for its stakers to be paid; below it (a node all but empty) the
    /// stakers' part stays in the pool. It bounds the reward per share.
    function MIN_REWARD_SHARES() external view returns (uint256);

    /// @notice The first epoch this distributor pays (earlier epochs belong to a predecessor, if any).
    function firstEpoch() external view returns (uint64);

    /// @notice The first epoch of `node` not yet claimed.
    function nextEpochOf(address node) external view returns (uint64);

    /// @notice `node`'s reward per bonded share so far, scaled by `REWARD_PER_SHARE_SCALE`.
    function rewardPerShareOf(address node) external view returns (uint256);

    /// @notice What `staker` can withdraw from `node` now (claimed epochs only; the operator's commission included).
    function pendingRewards(address node, address staker) external view returns (uint256);

    /// @notice `epoch`'s emission, split and commission cap, and whether they are fixed; until then, the current
    /// values.
    function termsOf(
        uint64 epoch
    )
        external
        view
        returns (
            uint256 emission,
            uint16 edgeBps,
            uint16 watchdogBps,
            uint16 guardianBps,
            uint16 commissionCapBps,
            bool fixed_
        );

    /// @notice The epochs whose terms are fixed end before this one (every epoch before it is final).
    function fixedUntil() external view returns (uint64);

    /// @notice What `node` earns for `epoch` before commission, as a claim would compute it now (a preview: an edge
    /// node's quality is the oracle's `qualityOf`, and terms not yet fixed are the current ones).
    function rewardOf(address node, uint64 epoch) external view returns (uint256);
}
