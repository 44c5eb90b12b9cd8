// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {NodeRole} from "./INodeRegistry.sol";

/// @notice Every governed protocol parameter. Each has a hard-coded minimum and maximum (see `bounds`).
enum Parameter {
    MinStakeEdge, // tokens (wei) an edge operator must keep staked itself
    MinStakeWatchdog, // tokens (wei) a watchdog operator must keep staked itself
    MinStakeGuardian, // tokens (wei) a guardian operator must keep staked itself
    UnbondingPeriod, // seconds between unbonding and withdrawing stake
    EpochLength, // seconds per epoch; a change starts at the next epoch boundary
    CommissionCapBps, // the highest commission an operator may set, in basis points
    SlashStorageBps, // fraction slashed for an unanswered storage challenge, in basis points
    SlashEquivocationBps, // fraction slashed for two conflicting signed statements, in basis points
    SlashVotedBps, // fraction slashed when reviewers uphold a watchdog's flag, in basis points
    EmissionPerEpoch, // reward tokens (wei) released from the reward pool per epoch
    ChallengeWindow, // seconds an edge node has to answer a storage challenge
    ReviewWindow, // seconds reviewers have to vote on a flag
    SettlementWindow, // seconds after an epoch ends during which batches for it settle
    ForcedInclusionDelay, // seconds after an epoch ends before a node may submit its own batch
    DidDeposit, // tokens (wei) deposited to register a DID
    DidRefundDelay, // seconds after a revoke before the DID deposit is refunded
    JailPeriod, // seconds a slashed node stays jailed
    QualityQuorum, // watchdog scores a node needs in an epoch for their median to be its quality
    DefaultQualityBps, // quality of a node scored by fewer than the quorum, in basis points
    ScoreBandBps, // a watchdog's score earns credit if within this of the final median, in basis points
    ChallengeBond, // tokens (wei) a challenger bonds on a storage challenge
    FlagStake, // tokens (wei) a watchdog stakes on a flag
    ReviewerCount, // watchdogs drawn to review a flag
    FlagProtectionPeriod, // seconds a flagged node cannot be flagged again
    FlaggerRewardBps, // share of a voted slash paid to the flagger, in basis points
    ReviewerRewardBps, // share of a voted slash split among the majority reviewers, in basis points
    ChallengerRewardBps, // share of a storage slash paid to the challenger, in basis points
    DeliveryThresholdBps // delivery rate under which a watchdog flags an edge node, in basis points
}

/// @title IProtocolParameters
/// @notice The one place where governed protocol parameters live, and the protocol's one clock. Only the owner (the
/// timelock) changes a parameter, and only within the bounds hard-coded in the contract.
interface IProtocolParameters {
    /// @notice Emitted after `parameter` changed from `oldValue` to `newValue`.
    event ParameterChanged(Parameter indexed parameter, uint256 oldValue, uint256 newValue);

    /// @notice Emitted after the reward split changed. The three shares sum to 10,000 basis points.
    event RewardSplitChanged(uint16 edgeBps, uint16 watchdogBps, uint16 guardianBps);

    /// @notice Emitted after an epoch-length change was scheduled: from `firstEpoch` on, epochs last `length` seconds.
    event EpochScheduleChanged(uint64 firstEpoch, uint64 startTime, uint64 length);

    /// @notice `value` is outside the hard-coded bounds of `parameter`.
    error ParametersOutOfBounds(Parameter parameter, uint256 value, uint256 minimum, uint256 maximum);

    /// @notice A reward split whose shares do not sum to 10,000 basis points.
    error ParametersRewardSplitNotWhole(uint256 edgeBps, uint256 watchdogBps, uint256 guardianBps);

    /// @notice A forced-inclusion delay of `delay` not shorter than the settlement window `window`: nodes would never
    /// get a chance to submit their own bills before the epoch closes.
    error ParametersForcedInclusionAfterWindow(uint256 delay, uint256 window);

    /// @notice A time before the first epoch began.
    error ParametersBeforeGenesis(uint256 timestamp, uint256 genesis);

    /// @notice A genesis after the deploy block: the clock would refuse every call until then.
    error ParametersGenesisInFuture(uint256 genesis, uint256 timestamp);

    /// @notice A role that has no minimum stake (`NodeRole.None`).
    error ParametersUnknownRole(NodeRole role);

    /// @notice The hard-coded inclusive bounds of `parameter`.
    function bounds(Parameter parameter) external pure returns (uint256 minimum, uint256 maximum);

    /// @notice The current value of `parameter`.
    function get(Parameter parameter) external view returns (uint256);

    /// @notice The minimum self-stake of an operator of `role`.
    function minStake(NodeRole role) external view returns (uint256);

    /// @notice The share of each epoch's emission for edge nodes, watchdogs and guardians, in basis points.
    function rewardSplit() external view returns (uint16 edgeBps, uint16 watchdogBps, uint16 guardianBps);

    /// @notice Sets `parameter` to `value`. Only the owner (the timelock); reverts outside the bounds.
    function setParameter(Parameter parameter, uint256 value) external;

    /// @notice Sets the reward split. Only the owner (the timelock); the shares must sum to 10,000.
    function setRewardSplit(uint16 edgeBps, uint16 watchdogBps, uint16 guardianBps) external;

    /// @notice The second the first epoch (number 0) began.
    function genesis() external view returns (uint64);

    /// @notice The epoch now.
    function currentEpoch() external view returns (uint64);

    /// @notice The epoch that contains `timestamp`.
    function epochAt(uint256 timestamp) external view returns (uint64);

    /// @notice The first second of `epoch`; the epoch ends the second before `epochStart(epoch + 1)`.
    function epochStart(uint64 epoch) external view returns (uint64);
}
