// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IQualityOracle} from "../interfaces/IQualityOracle.sol";
import {INodeRegistry, NodeRole} from "../interfaces/INodeRegistry.sol";
import {IProtocolParameters, Parameter} from "../interfaces/IProtocolParameters.sol";
import {IRelayRollup} from "../interfaces/IRelayRollup.sol";
import {QualityMath} from "../libraries/QualityMath.sol";

/// @title QualityOracle
/// @notice See IQualityOracle and docs/REWARDS.md.
/// @dev Score sheets. The scores of one node in one epoch live in a fixed block of `_SHEET_WORDS` storage words, each
/// score a 48-bit entry (32-bit watchdog id, 16-bit score). Word 0 holds the header (bits 0-7: count, bit 8:
/// finalized, bits 16-31: the finalized quality) and entries 0-3 (from bit 64); words 1-6 hold five entries each.
/// So the first four scores of a node cost one storage word, and checking that a watchdog has not scored the node
/// yet reads the few words already written instead of a mapping slot per watchdog. Watchdogs get their 32-bit id at
/// their first post.
contract QualityOracle is IQualityOracle {
    /// @inheritdoc IQualityOracle
    uint256 public constant MAX_SCORES_PER_NODE = 32;

    uint256 private constant _BPS = 10_000;
    uint256 private constant _SHEET_WORDS = 7; // 4 + 6 x 5 = 34 entries, at least MAX_SCORES_PER_NODE
    uint256 private constant _HEAD_ENTRIES = 4;
    uint256 private constant _WORD_ENTRIES = 5;
    uint256 private constant _HEAD_ENTRY_SHIFT = 64;
    uint256 private constant _ENTRY_BITS = 48;
    uint256 private constant _COUNT_MASK = 0xff;
    uint256 private constant _FINALIZED = 1 << 8;
    uint256 private constant _QUALITY_SHIFT = 16;

    IProtocolParameters private immutable _parameters;
    INodeRegistry private immutable _registry;
    IRelayRollup private immutable _rollup;

    mapping(uint64 epoch => EpochRules) private _rules;
    mapping(address node => mapping(uint64 epoch => uint256[_SHEET_WORDS])) private _sheets;
    mapping(address watchdog => uint32) private _watchdogIds;
    mapping(uint32 id => address) private _watchdogs;
    mapping(uint32 id => mapping(uint64 epoch => uint256)) private _credits;
    uint32 private _watchdogCount;

    /// @param parameters_ Quorum, default quality, band, settlement window and the epoch clock.
    /// @param registry_ Node roles and activity.
    /// @param rollup_ The relay rollup, whose settlement deadline closes posting.
    constructor(IProtocolParameters parameters_, INodeRegistry registry_, IRelayRollup rollup_) {
        _parameters = parameters_;
        _registry = registry_;
        _rollup = rollup_;
    }

    /// @inheritdoc IQualityOracle
    function postScores(uint64 epoch, address[] calldata nodes, uint16[] calldata scores) external {
        if (nodes.length != scores.length) revert QualityLengthMismatch(nodes.length, scores.length);
        (NodeRole role, ) = _registry.nodeStatus(msg.sender);
        if (role != NodeRole.Watchdog || !_registry.isActive(msg.sender)) revert QualityNotWatchdog(msg.sender);
        uint256 opensAt = _parameters.epochStart(epoch);
        if (block.timestamp < opensAt) revert QualityPostingNotOpen(epoch, opensAt);
        EpochRules memory rules = _fixRules(epoch);
        if (block.timestamp >= rules.postingDeadline) revert QualityPostingClosed(epoch, rules.postingDeadline);

        uint32 id = _enroll(msg.sender);
        for (uint256 i = 0; i < nodes.length; ++i) {
            _post(epoch, id, nodes[i], scores[i]);
        }
        emit ScoresPosted(epoch, msg.sender, nodes, scores);
    }

    /// @inheritdoc IQualityOracle
    function finalize(uint64 epoch, address node) external returns (uint16 qualityBps) {
        uint256[_SHEET_WORDS] storage sheet = _sheets[node][epoch];
        uint256 head = sheet[0];
        // Finalized means posting has closed: the stored quality is the answer, one storage read (the common case
        // when the distributor asks).
        if (head & _FINALIZED != 0) return uint16(head >> _QUALITY_SHIFT);
        EpochRules memory rules = _fixRules(epoch);
        if (block.timestamp < rules.postingDeadline) revert QualityPostingOpen(epoch, rules.postingDeadline);
        uint256 count = head & _COUNT_MASK;
        // Below the quorum the epoch's fixed default is the quality, and nobody earns: nothing to store.
        if (count < rules.quorum) return rules.defaultQualityBps;

        (uint32[] memory ids, uint16[] memory scores) = _entries(sheet, head, count);
        qualityBps = QualityMath.median(_copy(scores));
        uint256 credited;
        if (block.timestamp < rules.creditDeadline) {
            for (uint256 i = 0; i < count; ++i) {
                if (QualityMath.withinBand(scores[i], qualityBps, rules.bandBps)) {
                    ++_credits[ids[i]][epoch];
                    ++credited;
                }
            }
            // At most 32 credits per node: the total stays far below 2^64.
            if (credited != 0) _rules[epoch].totalCredits = rules.totalCredits + uint64(credited);
        }
        sheet[0] = head | _FINALIZED | (uint256(qualityBps) << _QUALITY_SHIFT);
        emit QualityFinalized(epoch, node, qualityBps, count, credited);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IQualityOracle
    function qualityOf(address node, uint64 epoch) external view returns (uint16 qualityBps, bool isFinal) {
        uint256[_SHEET_WORDS] storage sheet = _sheets[node][epoch];
        uint256 head = sheet[0];
        if (head & _FINALIZED != 0) return (uint16(head >> _QUALITY_SHIFT), true);
        (EpochRules memory rules, bool fixed_) = rulesOf(epoch);
        if (!fixed_) rules = _currentRules(epoch);
        isFinal = fixed_ && block.timestamp >= rules.postingDeadline;
        uint256 count = head & _COUNT_MASK;
        if (count < rules.quorum) return (rules.defaultQualityBps, isFinal);
        (, uint16[] memory scores) = _entries(sheet, head, count);
        return (QualityMath.median(scores), isFinal);
    }

    /// @inheritdoc IQualityOracle
    function isFinalized(address node, uint64 epoch) external view returns (bool) {
        return _sheets[node][epoch][0] & _FINALIZED != 0;
    }

    /// @inheritdoc IQualityOracle
    function scoresOf(
        address node,
        uint64 epoch
    ) external view returns (address[] memory watchdogs, uint16[] memory scores) {
        uint256[_SHEET_WORDS] storage sheet = _sheets[node][epoch];
        uint256 head = sheet[0];
        uint32[] memory ids;
        (ids, scores) = _entries(sheet, head, head & _COUNT_MASK);
        watchdogs = new address[](ids.length);
        for (uint256 i = 0; i < ids.length; ++i) {
            watchdogs[i] = _watchdogs[ids[i]];
        }
    }

    /// @inheritdoc IQualityOracle
    function rulesOf(uint64 epoch) public view returns (EpochRules memory rules, bool fixed_) {
        rules = _rules[epoch];
        fixed_ = rules.postingDeadline != 0;
    }

    /// @inheritdoc IQualityOracle
    function creditsOf(
        address watchdog,
        uint64 epoch
    ) external view returns (uint256 credits, uint256 totalCredits, uint256 claimOpensAt) {
        EpochRules memory rules = _rules[epoch];
        if (rules.postingDeadline == 0) return (0, 0, _rollup.settlementDeadline(epoch));
        uint32 id = _watchdogIds[watchdog];
        return (id == 0 ? 0 : _credits[id][epoch], rules.totalCredits, rules.creditDeadline);
    }

    // ---------------------------------------------------------------- internals

    /// @dev Records one score, refusing a second score by the same watchdog and a score past the per-node bound.
    function _post(uint64 epoch, uint32 id, address node, uint16 score) private {
        if (score > _BPS) revert QualityScoreTooHigh(node, score);
        (NodeRole role, ) = _registry.nodeStatus(node);
        if (role != NodeRole.Edge) revert QualityNotEdgeNode(node);

        uint256[_SHEET_WORDS] storage sheet = _sheets[node][epoch];
        uint256 head = sheet[0];
        uint256 count = head & _COUNT_MASK;
        uint256 word = head;
        for (uint256 k = 0; k < count; ++k) {
            (uint256 index, uint256 shift) = _position(k);
            if (index != 0 && shift == 0) word = sheet[index];
            if (uint32(word >> (shift + 16)) == id) revert QualityAlreadyScored(msg.sender, node, epoch);
        }
        if (count == MAX_SCORES_PER_NODE) revert QualityTooManyScores(node, epoch, MAX_SCORES_PER_NODE);

        uint256 entry = (uint256(id) << 16) | score;
        (uint256 at, uint256 offset) = _position(count);
        // The count is below 32, so adding one never carries out of its 8 bits.
        if (at == 0) {
            sheet[0] = (head + 1) | (entry << offset);
        } else {
            sheet[at] = (offset == 0 ? 0 : sheet[at]) | (entry << offset);
            sheet[0] = head + 1;
        }
    }

    /// @dev The fixed rules of `epoch`, fixing them from the current parameters at the first touch.
    function _fixRules(uint64 epoch) private returns (EpochRules memory rules) {
        rules = _rules[epoch];
        if (rules.postingDeadline != 0) return rules;
        rules = _currentRules(epoch);
        _rules[epoch] = rules;
        emit EpochRulesFixed(
            epoch,
            rules.postingDeadline,
            rules.creditDeadline,
            rules.quorum,
            rules.defaultQualityBps,
            rules.bandBps
        );
    }

    /// @dev The rules `epoch` would get if it were first touched now.
    function _currentRules(uint64 epoch) private view returns (EpochRules memory) {
        uint256 deadline = _rollup.settlementDeadline(epoch);
        uint256 window = _parameters.get(Parameter.SettlementWindow);
        // ProtocolParameters bounds the quorum to 32 and the default quality and band to 10,000: the casts are exact.
        return
            EpochRules({
                postingDeadline: SafeCast.toUint64(deadline),
                creditDeadline: SafeCast.toUint64(deadline + window),
                quorum: uint8(_parameters.get(Parameter.QualityQuorum)),
                defaultQualityBps: uint16(_parameters.get(Parameter.DefaultQualityBps)),
                bandBps: uint16(_parameters.get(Parameter.ScoreBandBps)),
                totalCredits: 0
            });
    }

    /// @dev The caller's watchdog id, given at its first post.
    function _enroll(address watchdog) private returns (uint32 id) {
        id = _watchdogIds[watchdog];
        if (id != 0) return id;
        id = ++_watchdogCount;
        _watchdogIds[watchdog] = id;
        _watchdogs[id] = watchdog;
    }

    /// @dev The storage word and bit offset of entry `k` of a sheet.
    function _position(uint256 k) private pure returns (uint256 index, uint256 shift) {
        if (k < _HEAD_ENTRIES) return (0, _HEAD_ENTRY_SHIFT + k * _ENTRY_BITS);
        k -= _HEAD_ENTRIES;
        return (1 + k / _WORD_ENTRIES, (k % _WORD_ENTRIES) * _ENTRY_BITS);
    }

    /// @dev The first `count` entries of a sheet whose header word is `head`.
    function _entries(
        uint256[_SHEET_WORDS] storage sheet,
        uint256 head,
        uint256 count
    ) private view returns (uint32[] memory ids, uint16[] memory scores) {
        ids = new uint32[](count);
        scores = new uint16[](count);
        uint256 word = head;
        for (uint256 k = 0; k < count; ++k) {
            (uint256 index, uint256 shift) = _position(k);
            if (index != 0 && shift == 0) word = sheet[index];
            uint256 entry = word >> shift;
            scores[k] = uint16(entry);
            ids[k] = uint32(entry >> 16);
        }
    }

    function _copy(uint16[] memory values) private pure returns (uint16[] memory copy) {
        copy = new uint16[](values.length);
        for (uint256 i = 0; i < values.length; ++i) {
            copy[i] = values[i];
        }
    }
}
