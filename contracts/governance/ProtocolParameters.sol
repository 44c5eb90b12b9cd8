// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IProtocolParameters, Parameter} from "../interfaces/IProtocolParameters.sol";
import {NodeRole} from "../interfaces/INodeRegistry.sol";
import {EpochMath} from "../libraries/EpochMath.sol";

/// @title ProtocolParameters
/// @notice Governed parameters, each held within hard-coded bounds, and the epoch clock. Owned by the timelock.
/// @dev The epoch clock lives here because epoch length is itself a parameter: a change must be scheduled at an
/// epoch boundary, which only the holder of the schedule can do without a second source of truth.
contract ProtocolParameters is IProtocolParameters, Ownable {
    using EpochMath for EpochMath.Segment;

    /// @notice One initial value that replaces a default at deploy (checked against the bounds).
    struct InitialValue {
        Parameter parameter;
        uint256 value;
    }

    uint256 private constant _TOKEN = 1e18;
    uint256 private constant _BPS = 10_000;
    /// @dev One slot per `Parameter`; a test checks it matches the enum.
    uint256 private constant _PARAMETER_COUNT = 28;

    uint256[_PARAMETER_COUNT] private _values;
    uint16 private _edgeBps;
    uint16 private _watchdogBps;
    uint16 private _guardianBps;
    EpochMath.Segment[] private _segments;

    /// @param owner_ The timelock.
    /// @param genesis_ When epoch 0 begins, not after the deploy block; 0 means the deploy block's timestamp.
    /// @param initialValues Values that replace the defaults, each within its bounds.
    constructor(address owner_, uint64 genesis_, InitialValue[] memory initialValues) Ownable(owner_) {
        for (uint256 i = 0; i < _PARAMETER_COUNT; ++i) {
            _values[i] = _defaultValue(Parameter(i));
        }
        for (uint256 i = 0; i < initialValues.length; ++i) {
            _checkBounds(initialValues[i].parameter, initialValues[i].value);
            _values[uint256(initialValues[i].parameter)] = initialValues[i].value;
        }
        _checkForcedInclusion();
        (_edgeBps, _watchdogBps, _guardianBps) = (7_000, 1_500, 1_500);
        if (genesis_ > block.timestamp) revert ParametersGenesisInFuture(genesis_, block.timestamp);
        uint64 start = genesis_ == 0 ? uint64(block.timestamp) : genesis_;
        _segments.push(
            EpochMath.Segment({
                firstEpoch: 0,
                startTime: start,
                length: uint64(_values[uint256(Parameter.EpochLength)])
            })
        );
    }

    /// @inheritdoc IProtocolParameters
    function bounds(Parameter parameter) public pure returns (uint256 minimum, uint256 maximum) {
        if (parameter == Parameter.MinStakeEdge) return (1 * _TOKEN, 10_000_000 * _TOKEN);
        if (parameter == Parameter.MinStakeWatchdog) return (1 * _TOKEN, 10_000_000 * _TOKEN);
        if (parameter == Parameter.MinStakeGuardian) return (1 * _TOKEN, 10_000_000 * _TOKEN);
        if (parameter == Parameter.UnbondingPeriod) return (1 minutes, 90 days);
        if (parameter == Parameter.EpochLength) return (1 minutes, 30 days);
        if (parameter == Parameter.CommissionCapBps) return (0, 5_000);
        // Slash fractions stop at half so that a slashed pool always keeps tokens behind its shares.
        if (parameter == Parameter.SlashStorageBps) return (1, 5_000);
        if (parameter == Parameter.SlashEquivocationBps) return (1, 5_000);
        if (parameter == Parameter.SlashVotedBps) return (1, 5_000);
        if (parameter == Parameter.EmissionPerEpoch) return (0, 10_000_000 * _TOKEN);
        if (parameter == Parameter.ChallengeWindow) return (1 minutes, 14 days);
        if (parameter == Parameter.ReviewWindow) return (1 minutes, 14 days);
        // The window's minimum sits above the forced-inclusion delay's, so both can be at their minimum together.
        if (parameter == Parameter.SettlementWindow) return (2 minutes, 30 days);
        if (parameter == Parameter.ForcedInclusionDelay) return (1 minutes, 14 days);
        if (parameter == Parameter.DidDeposit) return (0, 10_000 * _TOKEN);
        if (parameter == Parameter.DidRefundDelay) return (0, 90 days);
        if (parameter == Parameter.JailPeriod) return (1 minutes, 365 days);
        if (parameter == Parameter.QualityQuorum) return (1, 32);
        if (parameter == Parameter.DefaultQualityBps) return (0, 10_000);
        if (parameter == Parameter.ScoreBandBps) return (0, 10_000);
        if (parameter == Parameter.ChallengeBond) return (1 * _TOKEN, 100_000 * _TOKEN);
        if (parameter == Parameter.FlagStake) return (1 * _TOKEN, 1_000_000 * _TOKEN);
        if (parameter == Parameter.ReviewerCount) return (1, 21);
        if (parameter == Parameter.FlagProtectionPeriod) return (1 minutes, 90 days);
        if (parameter == Parameter.FlaggerRewardBps) return (0, 5_000);
        if (parameter == Parameter.ReviewerRewardBps) return (0, 5_000);
        if (parameter == Parameter.ChallengerRewardBps) return (0, 5_000);
        return (0, 10_000); // Parameter.DeliveryThresholdBps
    }

    /// @inheritdoc IProtocolParameters
    function get(Parameter parameter) external view returns (uint256) {
        return _values[uint256(parameter)];
    }

    /// @inheritdoc IProtocolParameters
    function minStake(NodeRole role) external view returns (uint256) {
        if (role == NodeRole.Edge) return _values[uint256(Parameter.MinStakeEdge)];
        if (role == NodeRole.Watchdog) return _values[uint256(Parameter.MinStakeWatchdog)];
        if (role == NodeRole.Guardian) return _values[uint256(Parameter.MinStakeGuardian)];
        revert ParametersUnknownRole(role);
    }

    /// @inheritdoc IProtocolParameters
    function rewardSplit() external view returns (uint16 edgeBps, uint16 watchdogBps, uint16 guardianBps) {
        return (_edgeBps, _watchdogBps, _guardianBps);
    }

    /// @inheritdoc IProtocolParameters
    function setParameter(Parameter parameter, uint256 value) external onlyOwner {
        _checkBounds(parameter, value);
        uint256 oldValue = _values[uint256(parameter)];
        _values[uint256(parameter)] = value;
        if (parameter == Parameter.EpochLength) _scheduleEpochLength(uint64(value));
        if (parameter == Parameter.ForcedInclusionDelay || parameter == Parameter.SettlementWindow) {
            _checkForcedInclusion();
        }
        emit ParameterChanged(parameter, oldValue, value);
    }

    /// @inheritdoc IProtocolParameters
    function setRewardSplit(uint16 edgeBps, uint16 watchdogBps, uint16 guardianBps) external onlyOwner {
        if (uint256(edgeBps) + watchdogBps + guardianBps != _BPS) {
            revert ParametersRewardSplitNotWhole(edgeBps, watchdogBps, guardianBps);
        }
        (_edgeBps, _watchdogBps, _guardianBps) = (edgeBps, watchdogBps, guardianBps);
        emit RewardSplitChanged(edgeBps, watchdogBps, guardianBps);
    }

    /// @inheritdoc IProtocolParameters
    function genesis() external view returns (uint64) {
        return _segments[0].startTime;
    }

    /// @inheritdoc IProtocolParameters
    function currentEpoch() external view returns (uint64) {
        return epochAt(block.timestamp);
    }

    /// @inheritdoc IProtocolParameters
    function epochAt(uint256 timestamp) public view returns (uint64) {
        uint256 i = _segments.length;
        while (i > 0) {
            EpochMath.Segment memory segment = _segments[--i];
            if (timestamp >= segment.startTime) return segment.epochAt(timestamp);
        }
        revert ParametersBeforeGenesis(timestamp, _segments[0].startTime);
    }

    /// @inheritdoc IProtocolParameters
    function epochStart(uint64 epoch) public view returns (uint64) {
        uint256 i = _segments.length;
        while (--i > 0) {
            if (epoch >= _segments[i].firstEpoch) break;
        }
        return _segments[i].startOf(epoch);
    }

    /// @dev Opens a segment at the next epoch boundary; a segment not yet begun is replaced rather than stacked.
    function _scheduleEpochLength(uint64 length) private {
        uint64 next = epochAt(block.timestamp) + 1;
        uint64 start = epochStart(next);
        EpochMath.Segment storage last = _segments[_segments.length - 1];
        if (last.startTime > block.timestamp) {
            last.length = length;
        } else {
            _segments.push(EpochMath.Segment({firstEpoch: next, startTime: start, length: length}));
        }
        emit EpochScheduleChanged(next, start, length);
    }

    /// @dev Forced inclusion opens `ForcedInclusionDelay` after an epoch ends and closes with the settlement window.
    function _checkForcedInclusion() private view {
        uint256 delay = _values[uint256(Parameter.ForcedInclusionDelay)];
        uint256 window = _values[uint256(Parameter.SettlementWindow)];
        if (delay >= window) revert ParametersForcedInclusionAfterWindow(delay, window);
    }

    function _checkBounds(Parameter parameter, uint256 value) private pure {
        (uint256 minimum, uint256 maximum) = bounds(parameter);
        if (value < minimum || value > maximum) revert ParametersOutOfBounds(parameter, value, minimum, maximum);
    }

    function _defaultValue(Parameter parameter) private pure returns (uint256) {
        if (parameter == Parameter.MinStakeEdge) return 10_000 * _TOKEN;
        if (parameter == Parameter.MinStakeWatchdog) return 5_000 * _TOKEN;
        if (parameter == Parameter.MinStakeGuardian) return 50_000 * _TOKEN;
        if (parameter == Parameter.UnbondingPeriod) return 14 days;
        if (parameter == Parameter.EpochLength) return 1 days;
        if (parameter == Parameter.CommissionCapBps) return 2_000;
        if (parameter == Parameter.SlashStorageBps) return 500;
        if (parameter == Parameter.SlashEquivocationBps) return 1_000;
        if (parameter == Parameter.SlashVotedBps) return 1_000;
        if (parameter == Parameter.EmissionPerEpoch) return 100_000 * _TOKEN;
        if (parameter == Parameter.ChallengeWindow) return 1 days;
        if (parameter == Parameter.ReviewWindow) return 2 days;
        if (parameter == Parameter.SettlementWindow) return 2 days;
        if (parameter == Parameter.ForcedInclusionDelay) return 1 days;
        if (parameter == Parameter.DidDeposit) return 10 * _TOKEN;
        if (parameter == Parameter.DidRefundDelay) return 7 days;
        if (parameter == Parameter.JailPeriod) return 7 days;
        if (parameter == Parameter.QualityQuorum) return 3;
        if (parameter == Parameter.DefaultQualityBps) return 5_000;
        if (parameter == Parameter.ScoreBandBps) return 1_000;
        if (parameter == Parameter.ChallengeBond) return 100 * _TOKEN;
        if (parameter == Parameter.FlagStake) return 1_000 * _TOKEN;
        if (parameter == Parameter.ReviewerCount) return 5;
        if (parameter == Parameter.FlagProtectionPeriod) return 7 days;
        if (parameter == Parameter.FlaggerRewardBps) return 1_000;
        if (parameter == Parameter.ReviewerRewardBps) return 1_000;
        if (parameter == Parameter.ChallengerRewardBps) return 2_000;
        return 8_000; // Parameter.DeliveryThresholdBps
    }
}
