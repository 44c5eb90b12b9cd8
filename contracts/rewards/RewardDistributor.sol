// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IRewardDistributor} from "../interfaces/IRewardDistributor.sol";
import {IStakeHook} from "../interfaces/IStakeHook.sol";
import {IQualityOracle} from "../interfaces/IQualityOracle.sol";
import {IRewardPool} from "../interfaces/IRewardPool.sol";
import {INodeRegistry, NodeRole} from "../interfaces/INodeRegistry.sol";
import {IProtocolParameters, Parameter} from "../interfaces/IProtocolParameters.sol";
import {IRelayRollup} from "../interfaces/IRelayRollup.sol";
import {RewardMath} from "../libraries/RewardMath.sol";

/// @title RewardDistributor
/// @notice See IRewardDistributor and docs/REWARDS.md.
/// @dev Storage is packed so that a claim writes one slot, the node's account, whatever the number of epochs:
///   - a node's account: its first unclaimed epoch, its role (None: never claimed), the operator's commission not
///     yet withdrawn, and the node's reward per share;
///   - a staker's account: the reward per share it was last settled at, and what it is owed;
///   - the terms (emission, split, commission cap) of the newest fixed epochs and how far they are fixed; older
///     terms, one entry per change, in `_history`. Every fixed epoch is final: terms are fixed only after the rollup
///     said so, which spares later claims of those epochs the finality check.
/// Field sizes: the token's whole supply is minted at deploy (1e27 wei, below 2^96), epochs stay below 2^32 (a minute
/// each at the least: 8,000 years), and a reward per share is at most the supply x 1e18 / MIN_REWARD_SHARES = 1e27,
/// below 2^120. SafeCast refuses rather than wraps anyway.
/// Per epoch a claim reads: the node's work (or credits), its commission, jail and shares in one registry call, and
/// for an edge node its quality and the epoch's total work. A node that did nothing in an epoch costs one read.
contract RewardDistributor is IRewardDistributor {
    /// @inheritdoc IRewardDistributor
    uint256 public constant MAX_CLAIM_EPOCHS = 64;
    /// @inheritdoc IRewardDistributor
    uint256 public constant REWARD_PER_SHARE_SCALE = 1e18;
    /// @inheritdoc IRewardDistributor
    uint256 public constant MIN_REWARD_SHARES = 1e18;

    struct NodeAccount {
        uint32 nextEpoch;
        NodeRole role;
        uint96 commission;
        uint120 rewardPerShare;
    }

    struct StakerAccount {
        uint120 paidPerShare;
        uint96 owed;
    }

    struct Terms {
        uint48 fromEpoch;
        uint48 fixedUntil; // meaningful in `_latest` only: epochs before it are fixed (and final)
        uint96 emission; // EmissionPerEpoch is at most 1e25 wei, below 2^96
        uint16 edgeBps;
        uint16 watchdogBps;
        uint16 guardianBps;
        uint16 commissionCapBps;
    }

    IProtocolParameters private immutable _parameters;
    INodeRegistry private immutable _registry;
    IRelayRollup private immutable _rollup;
    IQualityOracle private immutable _oracle;
    IRewardPool private immutable _pool;
    uint64 private immutable _firstEpoch;

    mapping(address node => NodeAccount) private _nodes;
    mapping(address node => mapping(address staker => StakerAccount)) private _stakers;
    Terms private _latest;
    Terms[] private _history;

    /// @param parameters_ Emission, split, commission cap and the epoch clock.
    /// @param registry_ Roles, commission history, jail history and bonded shares; it calls `beforeSharesChange`.
    /// @param rollup_ Settled work per node, guardian and epoch, and when an epoch is final.
    /// @param oracle_ Edge nodes' quality and watchdogs' credits.
    /// @param pool_ The reward pool, whose distributor this contract is.
    /// @param firstEpoch_ The first epoch this distributor pays (0 at genesis; a successor starts after the epochs its
    /// predecessor paid).
    constructor(
        IProtocolParameters parameters_,
        INodeRegistry registry_,
        IRelayRollup rollup_,
        IQualityOracle oracle_,
        IRewardPool pool_,
        uint64 firstEpoch_
    ) {
        _parameters = parameters_;
        _registry = registry_;
        _rollup = rollup_;
        _oracle = oracle_;
        _pool = pool_;
        _firstEpoch = firstEpoch_;
        uint48 first = SafeCast.toUint48(firstEpoch_);
        _latest = Terms({
            fromEpoch: first,
            fixedUntil: first,
            emission: 0,
            edgeBps: 0,
            watchdogBps: 0,
            guardianBps: 0,
            commissionCapBps: 0
        });
    }

    /// @inheritdoc IRewardDistributor
    function claim(address node, uint64 throughEpoch) external returns (uint256 reward) {
        NodeAccount memory account = _nodes[node];
        if (account.role == NodeRole.None) account = _firstAccount(node);
        uint64 fromEpoch = account.nextEpoch;
        if (throughEpoch < fromEpoch) revert RewardsAlreadyClaimed(node, fromEpoch, throughEpoch);
        uint256 count = uint256(throughEpoch) - fromEpoch + 1;
        if (count > MAX_CLAIM_EPOCHS) revert RewardsTooManyEpochs(count, MAX_CLAIM_EPOCHS);
        Terms memory latest = _fixThrough(throughEpoch);

        uint256 commission;
        uint256 shares;
        for (uint64 epoch = fromEpoch; epoch <= throughEpoch; ++epoch) {
            Terms memory terms = epoch >= latest.fromEpoch ? latest : _historicTerms(epoch);
            (uint256 earned, uint256 commissionBps, uint256 bondedShares) = _epochReward(
                account.role,
                node,
                epoch,
                terms
            );
            if (earned == 0) continue;
            reward += earned;
            commission += RewardMath.commissionOf(earned, commissionBps);
            shares = bondedShares;
        }

        uint256 rewardPerShare = account.rewardPerShare;
        // A node all but empty pays its stakers nothing (their part stays in the pool): this bounds the reward per
        // share. `shares` is the bonded pool's now: the stakers when the epochs are claimed share them.
        if (shares >= MIN_REWARD_SHARES) rewardPerShare += ((reward - commission) * REWARD_PER_SHARE_SCALE) / shares;
        _storeNodeAccount(
            node,
            NodeAccount({
                nextEpoch: SafeCast.toUint32(uint256(throughEpoch) + 1),
                role: account.role,
                commission: SafeCast.toUint96(account.commission + commission),
                rewardPerShare: SafeCast.toUint120(rewardPerShare)
            })
        );
        emit RewardsClaimed(node, fromEpoch, throughEpoch, reward, commission, rewardPerShare);
    }

    /// @inheritdoc IRewardDistributor
    function withdrawRewards(address node) external returns (uint256 amount) {
        NodeAccount storage nodeAccount = _nodes[node];
        uint120 rewardPerShare = nodeAccount.rewardPerShare;
        StakerAccount memory account = _stakers[node][msg.sender];
        amount = account.owed + _earnedSince(node, msg.sender, rewardPerShare, account.paidPerShare);
        if (msg.sender == node) {
            amount += nodeAccount.commission;
            nodeAccount.commission = 0;
        }
        if (amount == 0) revert RewardsNothingToWithdraw(node, msg.sender);
        _stakers[node][msg.sender] = StakerAccount({paidPerShare: rewardPerShare, owed: 0});
        emit RewardsWithdrawn(node, msg.sender, amount);
        _pool.release(msg.sender, amount);
    }

    /// @inheritdoc IStakeHook
    function beforeSharesChange(address operator, address staker) external {
        if (msg.sender != address(_registry)) revert RewardsNotRegistry(msg.sender);
        uint120 rewardPerShare = _nodes[operator].rewardPerShare;
        // Nothing distributed in this node yet: nobody has anything to settle (a paid mark never exceeds it).
        if (rewardPerShare == 0) return;
        StakerAccount memory account = _stakers[operator][staker];
        if (account.paidPerShare == rewardPerShare) return;
        uint256 owed = account.owed + _earnedSince(operator, staker, rewardPerShare, account.paidPerShare);
        _stakers[operator][staker] = StakerAccount({paidPerShare: rewardPerShare, owed: SafeCast.toUint96(owed)});
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IRewardDistributor
    function firstEpoch() external view returns (uint64) {
        return _firstEpoch;
    }

    /// @inheritdoc IRewardDistributor
    function nextEpochOf(address node) external view returns (uint64) {
        NodeAccount memory account = _nodes[node];
        if (account.role != NodeRole.None) return account.nextEpoch;
        return _firstAccount(node).nextEpoch;
    }

    /// @inheritdoc IRewardDistributor
    function rewardPerShareOf(address node) external view returns (uint256) {
        return _nodes[node].rewardPerShare;
    }

    /// @inheritdoc IRewardDistributor
    function pendingRewards(address node, address staker) external view returns (uint256 amount) {
        NodeAccount memory nodeAccount = _nodes[node];
        StakerAccount memory account = _stakers[node][staker];
        amount = account.owed + _earnedSince(node, staker, nodeAccount.rewardPerShare, account.paidPerShare);
        if (staker == node) amount += nodeAccount.commission;
    }

    /// @inheritdoc IRewardDistributor
    function termsOf(
        uint64 epoch
    )
        public
        view
        returns (
            uint256 emission,
            uint16 edgeBps,
            uint16 watchdogBps,
            uint16 guardianBps,
            uint16 commissionCapBps,
            bool fixed_
        )
    {
        // Epochs before the first belong to a predecessor: this distributor pays nothing for them.
        if (epoch < _firstEpoch) return (0, 0, 0, 0, 0, true);
        Terms memory latest = _latest;
        Terms memory terms =
            epoch >= latest.fixedUntil
                ? _currentTerms()
                : epoch >= latest.fromEpoch
                    ? latest
                    : _historicTerms(epoch);
        return (
            terms.emission,
            terms.edgeBps,
            terms.watchdogBps,
            terms.guardianBps,
            terms.commissionCapBps,
            epoch < latest.fixedUntil
        );
    }

    /// @inheritdoc IRewardDistributor
    function fixedUntil() external view returns (uint64) {
        return _latest.fixedUntil;
    }

    /// @inheritdoc IRewardDistributor
    function rewardOf(address node, uint64 epoch) external view returns (uint256) {
        (uint256 emission, uint16 edgeBps, uint16 watchdogBps, uint16 guardianBps, , ) = termsOf(epoch);
        (NodeRole role, ) = _registry.nodeStatus(node);
        if (role == NodeRole.None || _registry.wasJailedIn(node, epoch)) return 0;
        if (role == NodeRole.Edge) {
            (uint16 quality, ) = _oracle.qualityOf(node, epoch);
            uint256 edgePool = RewardMath.poolOf(emission, edgeBps);
            return RewardMath.edgeReward(edgePool, _rollup.workOf(node, epoch), _rollup.epochWork(epoch), quality);
        }
        if (role == NodeRole.Watchdog) {
            (uint256 credits, uint256 totalCredits, ) = _oracle.creditsOf(node, epoch);
            return RewardMath.shareOf(RewardMath.poolOf(emission, watchdogBps), credits, totalCredits);
        }
        uint256 guardianPool = RewardMath.poolOf(emission, guardianBps);
        return RewardMath.shareOf(guardianPool, _rollup.guardianWorkOf(node, epoch), _rollup.epochGuardianWork(epoch));
    }

    // ---------------------------------------------------------------- internals

    /// @dev What `node` earned in `epoch` before commission, the commission rate that applies (capped by the epoch's
    /// cap) and the node's bonded shares now. The node's own activity is read first, so an idle epoch costs one read;
    /// a jailed epoch earns nothing. An edge node's quality is finalized here if nobody did it yet.
    function _epochReward(
        NodeRole role,
        address node,
        uint64 epoch,
        Terms memory terms
    ) private returns (uint256 earned, uint256 commissionBps, uint256 shares) {
        uint256 part;
        uint256 credits;
        if (role == NodeRole.Edge) {
            part = _rollup.workOf(node, epoch);
        } else if (role == NodeRole.Watchdog) {
            uint256 opensAt;
            (part, credits, opensAt) = _oracle.creditsOf(node, epoch);
            // Credits may still grow until the credit deadline: processing the epoch earlier would miss them.
            if (block.timestamp < opensAt) revert RewardsCreditsNotFinal(epoch, opensAt);
        } else {
            part = _rollup.guardianWorkOf(node, epoch);
        }
        if (part == 0) return (0, 0, 0);

        bool jailed;
        (commissionBps, jailed, shares) = _registry.rewardStateAt(node, epoch);
        if (jailed) return (0, 0, shares);
        if (commissionBps > terms.commissionCapBps) commissionBps = terms.commissionCapBps;

        if (role == NodeRole.Edge) {
            uint256 quality = _oracle.finalize(epoch, node);
            uint256 edgePool = RewardMath.poolOf(terms.emission, terms.edgeBps);
            earned = RewardMath.edgeReward(edgePool, part, _rollup.epochWork(epoch), quality);
        } else if (role == NodeRole.Watchdog) {
            earned = RewardMath.shareOf(RewardMath.poolOf(terms.emission, terms.watchdogBps), part, credits);
        } else {
            uint256 guardianPool = RewardMath.poolOf(terms.emission, terms.guardianBps);
            earned = RewardMath.shareOf(guardianPool, part, _rollup.epochGuardianWork(epoch));
        }
    }

    /// @dev Fixes the terms of every epoch through `throughEpoch` (which must be final) not fixed yet, at the current
    /// emission, split and commission cap; returns the newest terms.
    function _fixThrough(uint64 throughEpoch) private returns (Terms memory latest) {
        latest = _latest;
        if (throughEpoch < latest.fixedUntil) return latest;
        // Settlement deadlines grow with the epoch, so the last epoch being final makes every earlier one final.
        uint256 finalAt = _rollup.settlementDeadline(throughEpoch);
        if (block.timestamp < finalAt) revert RewardsEpochNotFinal(throughEpoch, finalAt);

        Terms memory current = _currentTerms();
        uint64 fromEpoch = latest.fixedUntil;
        if (
            current.emission != latest.emission ||
            current.edgeBps != latest.edgeBps ||
            current.watchdogBps != latest.watchdogBps ||
            current.guardianBps != latest.guardianBps ||
            current.commissionCapBps != latest.commissionCapBps
        ) {
            // Keep the old terms for the epochs they cover; terms that cover none yet are simply replaced.
            if (latest.fixedUntil > latest.fromEpoch) _history.push(latest);
            current.fromEpoch = latest.fixedUntil;
            latest = current;
        }
        latest.fixedUntil = SafeCast.toUint48(uint256(throughEpoch) + 1);
        _latest = latest;
        emit EpochTermsFixed(
            fromEpoch,
            throughEpoch,
            latest.emission,
            latest.edgeBps,
            latest.watchdogBps,
            latest.guardianBps,
            latest.commissionCapBps
        );
    }

    /// @dev The emission, split and commission cap in force now (epoch fields zero).
    function _currentTerms() private view returns (Terms memory terms) {
        (terms.edgeBps, terms.watchdogBps, terms.guardianBps) = _parameters.rewardSplit();
        terms.emission = SafeCast.toUint96(_parameters.get(Parameter.EmissionPerEpoch));
        // The cap is bounded at 5,000 by ProtocolParameters: the cast is exact.
        terms.commissionCapBps = uint16(_parameters.get(Parameter.CommissionCapBps));
    }

    /// @dev The terms of a fixed `epoch` older than the newest terms: the last history entry starting at or before
    /// it (binary search over the changes of emission, split or cap, which only governance makes).
    function _historicTerms(uint64 epoch) private view returns (Terms memory) {
        uint256 low = 0;
        uint256 high = _history.length;
        while (low < high) {
            uint256 mid = (low + high) / 2;
            if (_history[mid].fromEpoch > epoch) high = mid;
            else low = mid + 1;
        }
        // epoch >= _firstEpoch = _history[0].fromEpoch, so low >= 1.
        return _history[low - 1];
    }

    /// @dev A node's account before its first claim: it starts at its registration epoch (or this distributor's
    /// first epoch, if later). Reverts for an address that is not a registered node.
    function _firstAccount(address node) private view returns (NodeAccount memory) {
        (NodeRole role, ) = _registry.nodeStatus(node);
        if (role == NodeRole.None) revert RewardsNodeNotRegistered(node);
        uint64 registered = _registry.registeredIn(node);
        uint64 first = registered > _firstEpoch ? registered : _firstEpoch;
        return NodeAccount({nextEpoch: SafeCast.toUint32(first), role: role, commission: 0, rewardPerShare: 0});
    }

    /// @dev Writes `account` in one SSTORE: the legacy code generator would write the packed members one by one, each
    /// with a read-modify-write of the slot. Solidity packs the first member into the lowest bits; the tests read every
    /// field back through the views after claims.
    function _storeNodeAccount(address node, NodeAccount memory account) private {
        uint256 word =
            uint256(account.nextEpoch) |
                (uint256(uint8(account.role)) << 32) |
                (uint256(account.commission) << 40) |
                (uint256(account.rewardPerShare) << 136);
        NodeAccount storage stored = _nodes[node];
        assembly ("memory-safe") {
            sstore(stored.slot, word)
        }
    }

    /// @dev What `staker`'s current shares in `node` earned since it was last settled at `paidPerShare`.
    function _earnedSince(
        address node,
        address staker,
        uint256 rewardPerShare,
        uint256 paidPerShare
    ) private view returns (uint256) {
        if (rewardPerShare == paidPerShare) return 0;
        (uint256 shares, , ) = _registry.sharesOf(node, staker);
        return RewardMath.earned(shares, rewardPerShare, paidPerShare, REWARD_PER_SHARE_SCALE);
    }
}
