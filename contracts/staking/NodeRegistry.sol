// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Time} from "@openzeppelin/contracts/utils/types/Time.sol";
import {INodeRegistry, NodeRole} from "../interfaces/INodeRegistry.sol";
import {IProtocolParameters, Parameter} from "../interfaces/IProtocolParameters.sol";
import {IStakeHook} from "../interfaces/IStakeHook.sol";
import {SharePool} from "../libraries/SharePool.sol";

/// @title NodeRegistry
/// @notice Nodes, their stake, delegation, unbonding, commission, the slash hook, jail history and stake voting power.
/// @dev Token custody: this contract holds exactly the sum of every node's bonded and unbonding pool tokens.
/// Voting power: each (operator, staker) bond credits the staker votes equal to its value when last touched. A slash
/// lowers the operator's votes at once and each delegator's at its next touch or through `syncVotes`.
/// Stake hook: when set, it is called before every change of a staker's bonded shares (in `_bond` and `unbond`), so
/// the reward distributor settles that staker's rewards against its old shares. It is set by governance and trusted:
/// a reverting hook blocks bonding and unbonding until governance replaces it.
contract NodeRegistry is INodeRegistry, Ownable {
    using SafeERC20 for IERC20;
    using SharePool for SharePool.Pool;
    using EnumerableSet for EnumerableSet.AddressSet;
    using Checkpoints for Checkpoints.Trace208;

    /// @notice Longest peer id accepted, in bytes (a base58 Ed25519 peer id is 52).
    uint256 public constant MAX_PEER_ID_LENGTH = 128;
    /// @notice Most multiaddrs a node may publish (TCP and WebSockets on IPv4 and IPv6, with room to spare).
    uint256 public constant MAX_MULTIADDRS = 8;
    /// @notice Longest multiaddr accepted, in bytes.
    uint256 public constant MAX_MULTIADDR_LENGTH = 256;
    /// @notice Most unbondings pending per staker: bounds the loop in `withdraw`.
    uint256 public constant MAX_UNBONDINGS = 32;
    /// @notice The largest slash in one call, in basis points; the pools keep tokens behind their shares.
    uint16 public constant MAX_SLASH_BPS = 5_000;

    struct Node {
        NodeRole role;
        uint64 jailedUntil;
        address signer;
        bool qualified; // self-stake met the role minimum at its last change: in the same slot as role, jail and signer
        string peerId;
        string[] multiaddrs;
        SharePool.Pool bonded;
        SharePool.Pool unbonding;
        Checkpoints.Trace208 commission; // epoch => bps in force from that epoch on
        RewardSummary summary;
    }

    /// @dev The newest commission change and the newest jail term, kept in step with `commission` and `_jailTerms`,
    /// in one slot: the reward distributor reads a recent epoch's state of a node with this one read (plus the bonded
    /// shares) instead of two histories; older epochs fall back to the histories.
    struct RewardSummary {
        uint48 commissionFrom;
        uint16 commissionBps;
        bool jailed; // a jail term exists
        uint48 jailFrom;
        uint48 jailThrough;
    }

    IERC20 private immutable _token;
    IProtocolParameters private immutable _parameters;
    address private _slasher;
    IStakeHook private _stakeHook;

    mapping(address operator => Node) private _nodes;
    mapping(address operator => mapping(address staker => uint256)) private _shares;
    mapping(address operator => mapping(address staker => uint256)) private _votesCredited;
    mapping(address staker => Unbonding[]) private _unbondings;
    mapping(address account => Checkpoints.Trace208) private _votes;
    mapping(NodeRole role => EnumerableSet.AddressSet) private _staked;
    mapping(address operator => JailTerm[]) private _jailTerms;

    /// @param token_ The staking token.
    /// @param parameters_ Governed parameters and the epoch clock.
    /// @param owner_ The timelock.
    /// @param slasher_ The slashing contract (may be the timelock until one is deployed).
    /// @param stakeHook_ The stake hook (the reward distributor), or address zero for none.
    constructor(
        IERC20 token_,
        IProtocolParameters parameters_,
        address owner_,
        address slasher_,
        IStakeHook stakeHook_
    ) Ownable(owner_) {
        _token = token_;
        _parameters = parameters_;
        _slasher = slasher_;
        _stakeHook = stakeHook_;
        emit SlasherChanged(address(0), slasher_);
        emit StakeHookChanged(address(0), address(stakeHook_));
    }

    // ---------------------------------------------------------------- operators

    /// @inheritdoc INodeRegistry
    function register(
        NodeRole role,
        string calldata peerId,
        string[] calldata multiaddrs,
        address signer,
        uint16 commissionBps,
        uint256 amount
    ) external {
        if (role == NodeRole.None) revert StakingInvalidRole(role);
        Node storage n = _nodes[msg.sender];
        if (n.role != NodeRole.None) revert StakingAlreadyRegistered(msg.sender);
        _checkEndpoint(peerId, multiaddrs, signer);
        _checkCommission(commissionBps);
        uint256 minimum = _parameters.minStake(role);
        if (amount < minimum) revert StakingInsufficientStake(msg.sender, amount, minimum, minimum - amount);

        n.role = role;
        uint64 epoch = _parameters.currentEpoch();
        n.commission.push(SafeCast.toUint48(epoch), commissionBps);
        n.summary.commissionFrom = SafeCast.toUint48(epoch);
        n.summary.commissionBps = commissionBps;
        n.signer = signer;
        n.peerId = peerId;
        _setMultiaddrs(n, multiaddrs);
        emit NodeRegistered(msg.sender, role, peerId, multiaddrs, signer);
        emit CommissionChanged(msg.sender, commissionBps, epoch);
        _bond(msg.sender, msg.sender, amount);
        _setQualified(n, msg.sender, n.bonded.value(_shares[msg.sender][msg.sender]) >= minimum);
    }

    /// @inheritdoc INodeRegistry
    function updateNode(string calldata peerId, string[] calldata multiaddrs, address signer) external {
        Node storage n = _registered(msg.sender);
        _checkEndpoint(peerId, multiaddrs, signer);
        n.peerId = peerId;
        _setMultiaddrs(n, multiaddrs);
        n.signer = signer;
        emit NodeUpdated(msg.sender, peerId, multiaddrs, signer);
    }

    /// @inheritdoc INodeRegistry
    function stake(uint256 amount) external {
        Node storage n = _registered(msg.sender);
        _bond(msg.sender, msg.sender, amount);
        // Checked after the deposit: its shares are rounded down, so the stake can come out a wei under
        // before + amount.
        uint256 after_ = n.bonded.value(_shares[msg.sender][msg.sender]);
        uint256 minimum = _parameters.minStake(n.role);
        if (after_ < minimum) revert StakingInsufficientStake(msg.sender, after_, minimum, minimum - after_);
        _setQualified(n, msg.sender, true);
    }

    /// @inheritdoc INodeRegistry
    function delegate(address operator, uint256 amount) external {
        _registered(operator);
        if (!isActive(operator)) revert StakingNodeNotActive(operator);
        _bond(operator, msg.sender, amount);
    }

    /// @inheritdoc INodeRegistry
    function unbond(address operator, uint256 amount) external {
        Node storage n = _registered(operator);
        if (amount == 0) revert StakingZeroAmount();
        uint256 held = _shares[operator][msg.sender];
        uint256 available = n.bonded.value(held);
        if (amount > available) revert StakingExceedsStake(operator, msg.sender, amount, available);
        Unbonding[] storage queue = _unbondings[msg.sender];
        if (queue.length >= MAX_UNBONDINGS) revert StakingTooManyUnbondings(msg.sender, MAX_UNBONDINGS);
        _beforeSharesChange(operator, msg.sender);

        // Shares are rounded up so the pool never pays out more than the tokens behind them; all of them on a full exit.
        uint256 shares = amount == available ? held : n.bonded.sharesFor(amount);
        if (shares > held) shares = held;
        _shares[operator][msg.sender] = held - shares;
        uint256 tokens = n.bonded.redeem(shares);
        if (msg.sender == operator) {
            // Checked after the redemption: its shares are rounded up, so the operator can keep a wei under
            // available - amount.
            uint256 minimum = _parameters.minStake(n.role);
            uint256 remaining = n.bonded.value(held - shares);
            if (remaining != 0 && remaining < minimum) revert StakingBelowMinimum(operator, remaining, minimum);
            _setQualified(n, operator, remaining != 0);
        }
        uint256 unbondingShares = n.unbonding.deposit(tokens);
        uint64 releaseTime = uint64(block.timestamp + _parameters.get(Parameter.UnbondingPeriod));
        queue.push(Unbonding({operator: operator, releaseTime: releaseTime, shares: unbondingShares}));

        emit UnbondingStarted(operator, msg.sender, tokens, releaseTime);
        _syncVotes(operator, msg.sender);
        _updateStakedSet(operator);
    }

    /// @inheritdoc INodeRegistry
    function withdraw() external returns (uint256 amount) {
        Unbonding[] storage queue = _unbondings[msg.sender];
        uint256 count;
        uint256 i;
        while (i < queue.length) {
            Unbonding memory entry = queue[i];
            if (entry.releaseTime > block.timestamp) {
                ++i;
                continue;
            }
            amount += _nodes[entry.operator].unbonding.redeem(entry.shares);
            ++count;
            queue[i] = queue[queue.length - 1];
            queue.pop();
        }
        if (count == 0) revert StakingNothingToWithdraw(msg.sender);
        emit Withdrawn(msg.sender, amount, count);
        _token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc INodeRegistry
    function setCommission(uint16 bps) external {
        Node storage n = _registered(msg.sender);
        _checkCommission(bps);
        uint64 epoch = _parameters.currentEpoch();
        // Keyed by the epoch it takes effect in, so every past epoch keeps its commission; a second change within
        // one epoch replaces the pending one (same key).
        n.commission.push(SafeCast.toUint48(epoch + 1), bps);
        n.summary.commissionFrom = SafeCast.toUint48(epoch + 1);
        n.summary.commissionBps = bps;
        emit CommissionChanged(msg.sender, bps, epoch + 1);
    }

    // ---------------------------------------------------------------- slashing and governance

    /// @inheritdoc INodeRegistry
    function slash(address operator, uint16 bps, bool jail) external returns (uint256 amount) {
        if (msg.sender != _slasher) revert StakingNotSlasher(msg.sender);
        if (bps > MAX_SLASH_BPS) revert StakingSlashTooLarge(bps, MAX_SLASH_BPS);
        Node storage n = _registered(operator);
        uint256 fromBonded = n.bonded.cut(bps);
        uint256 fromUnbonding = n.unbonding.cut(bps);
        if (jail) {
            n.jailedUntil = uint64(block.timestamp + _parameters.get(Parameter.JailPeriod));
            _recordJail(operator, n.jailedUntil);
        }
        emit NodeSlashed(operator, bps, fromBonded, fromUnbonding, n.jailedUntil);
        _syncVotes(operator, operator);
        _updateStakedSet(operator);
        _setQualified(n, operator, n.bonded.value(_shares[operator][operator]) >= _parameters.minStake(n.role));
        amount = fromBonded + fromUnbonding;
        if (amount != 0) _token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc INodeRegistry
    function refreshStanding(address operator) external returns (bool qualified) {
        Node storage n = _registered(operator);
        qualified = n.bonded.value(_shares[operator][operator]) >= _parameters.minStake(n.role);
        _setQualified(n, operator, qualified);
    }

    /// @inheritdoc INodeRegistry
    function setSlasher(address slasher_) external onlyOwner {
        address oldSlasher = _slasher;
        _slasher = slasher_;
        emit SlasherChanged(oldSlasher, slasher_);
    }

    /// @inheritdoc INodeRegistry
    function setStakeHook(address hook) external onlyOwner {
        address oldHook = address(_stakeHook);
        _stakeHook = IStakeHook(hook);
        emit StakeHookChanged(oldHook, hook);
    }

    /// @inheritdoc INodeRegistry
    function syncVotes(address operator, address account) external {
        _syncVotes(operator, account);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc INodeRegistry
    function slasher() external view returns (address) {
        return _slasher;
    }

    /// @inheritdoc INodeRegistry
    function stakeHook() external view returns (address) {
        return address(_stakeHook);
    }

    /// @inheritdoc INodeRegistry
    function wasJailedIn(address operator, uint64 epoch) external view returns (bool) {
        return _wasJailedIn(operator, epoch);
    }

    /// @inheritdoc INodeRegistry
    function rewardStateAt(
        address operator,
        uint64 epoch
    ) external view returns (uint16 commissionBps, bool jailed, uint256 bondedShares) {
        Node storage n = _nodes[operator];
        RewardSummary memory summary = n.summary;
        if (epoch >= summary.commissionFrom) {
            commissionBps = summary.commissionBps;
        } else {
            // Older than the newest change: the history. Values were pushed as uint16; epoch < commissionFrom < 2^48.
            commissionBps = uint16(n.commission.upperLookupRecent(uint48(epoch)));
        }
        if (!summary.jailed || epoch > summary.jailThrough) jailed = false;
        else if (epoch >= summary.jailFrom) jailed = true;
        else jailed = _wasJailedIn(operator, epoch);
        bondedShares = n.bonded.shares;
    }

    /// @inheritdoc INodeRegistry
    function jailTermsOf(address operator) external view returns (JailTerm[] memory) {
        return _jailTerms[operator];
    }

    /// @inheritdoc INodeRegistry
    function node(address operator) public view returns (NodeView memory v) {
        Node storage n = _nodes[operator];
        uint256 selfStake = n.bonded.value(_shares[operator][operator]);
        v = NodeView({
            operator: operator,
            role: n.role,
            signer: n.signer,
            peerId: n.peerId,
            multiaddrs: n.multiaddrs,
            commissionBps: n.role == NodeRole.None ? 0 : commissionAt(operator, _parameters.currentEpoch()),
            jailedUntil: n.jailedUntil,
            selfStake: selfStake,
            delegatedStake: n.bonded.tokens - selfStake,
            unbondingStake: n.unbonding.tokens,
            active: isActive(operator)
        });
    }

    /// @inheritdoc INodeRegistry
    function isActive(address operator) public view returns (bool) {
        Node storage n = _nodes[operator];
        if (n.role == NodeRole.None || n.jailedUntil > block.timestamp) return false;
        return n.bonded.value(_shares[operator][operator]) >= _parameters.minStake(n.role);
    }

    /// @inheritdoc INodeRegistry
    function nodeStatus(address operator) external view returns (NodeRole role, uint64 jailedUntil) {
        Node storage n = _nodes[operator];
        return (n.role, n.jailedUntil);
    }

    /// @inheritdoc INodeRegistry
    function nodeStanding(
        address operator
    ) external view returns (NodeRole role, uint64 jailedUntil, bool qualified, address signer) {
        Node storage n = _nodes[operator];
        return (n.role, n.jailedUntil, n.qualified, n.signer);
    }

    /// @inheritdoc INodeRegistry
    function roleOf(address operator) external view returns (NodeRole) {
        return _nodes[operator].role;
    }

    /// @inheritdoc INodeRegistry
    function signerOf(address operator) external view returns (address) {
        return _nodes[operator].signer;
    }

    /// @inheritdoc INodeRegistry
    function commissionAt(address operator, uint64 epoch) public view returns (uint16) {
        // Epochs past uint48 lie beyond every key, so they read the latest commission.
        uint48 key = epoch > type(uint48).max ? type(uint48).max : uint48(epoch);
        uint256 bps = _nodes[operator].commission.upperLookupRecent(key);
        uint256 cap = _parameters.get(Parameter.CommissionCapBps);
        // The cap is at most 5,000 (bounded in ProtocolParameters), so it fits in uint16.
        // bps was pushed as a uint16, so it fits too.
        return uint16(bps > cap ? cap : bps);
    }

    /// @inheritdoc INodeRegistry
    function registeredIn(address operator) external view returns (uint64) {
        // The commission history starts at registration, keyed by the epoch it happened in.
        return _registered(operator).commission.at(0)._key;
    }

    /// @inheritdoc INodeRegistry
    function stakeOf(address operator, address staker) external view returns (uint256) {
        return _nodes[operator].bonded.value(_shares[operator][staker]);
    }

    /// @inheritdoc INodeRegistry
    function sharesOf(
        address operator,
        address staker
    ) external view returns (uint256 shares, uint256 totalShares, uint256 totalTokens) {
        SharePool.Pool storage pool = _nodes[operator].bonded;
        return (_shares[operator][staker], pool.shares, pool.tokens);
    }

    /// @inheritdoc INodeRegistry
    function unbondings(address staker) external view returns (Unbonding[] memory) {
        return _unbondings[staker];
    }

    /// @inheritdoc INodeRegistry
    function unbondingValue(Unbonding calldata entry) external view returns (uint256) {
        return _nodes[entry.operator].unbonding.value(entry.shares);
    }

    /// @inheritdoc INodeRegistry
    function stakedNodeCount(NodeRole role) external view returns (uint256) {
        return _staked[role].length();
    }

    /// @inheritdoc INodeRegistry
    function stakedNodeAt(NodeRole role, uint256 index) external view returns (address operator, bool active) {
        operator = _staked[role].at(index);
        active = isActive(operator);
    }

    /// @inheritdoc INodeRegistry
    function activeNodes(
        NodeRole role,
        uint256 offset,
        uint256 limit
    ) external view returns (NodeView[] memory nodes, uint256 total) {
        EnumerableSet.AddressSet storage set = _staked[role];
        total = set.length();
        // Compared by subtraction so that a limit of type(uint256).max ("the rest") cannot overflow.
        uint256 end = offset >= total || limit >= total - offset ? total : offset + limit;
        NodeView[] memory page = new NodeView[](end > offset ? end - offset : 0);
        uint256 found;
        for (uint256 i = offset; i < end; ++i) {
            address operator = set.at(i);
            if (isActive(operator)) page[found++] = node(operator);
        }
        // Trim the unused tail: the array was sized for a page in which every node is active.
        assembly ("memory-safe") {
            mstore(page, found)
        }
        nodes = page;
    }

    /// @inheritdoc INodeRegistry
    function clock() public view returns (uint48) {
        return Time.blockNumber();
    }

    /// @inheritdoc INodeRegistry
    function getVotes(address account) external view returns (uint256) {
        return _votes[account].latest();
    }

    /// @inheritdoc INodeRegistry
    function getPastVotes(address account, uint256 timepoint) external view returns (uint256) {
        uint48 current = clock();
        if (timepoint >= current) revert StakingFutureLookup(timepoint, current);
        return _votes[account].upperLookupRecent(SafeCast.toUint48(timepoint));
    }

    // ---------------------------------------------------------------- internals

    function _bond(address operator, address staker, uint256 amount) private {
        if (amount == 0) revert StakingZeroAmount();
        _beforeSharesChange(operator, staker);
        Node storage n = _nodes[operator];
        uint256 shares = n.bonded.deposit(amount);
        if (shares == 0) revert StakingZeroAmount();
        _shares[operator][staker] += shares;
        _token.safeTransferFrom(staker, address(this), amount);
        emit Bonded(operator, staker, amount, shares);
        _syncVotes(operator, staker);
        _updateStakedSet(operator);
    }

    function _syncVotes(address operator, address account) private {
        uint256 credited = _votesCredited[operator][account];
        uint256 current = _nodes[operator].bonded.value(_shares[operator][account]);
        if (credited == current) return;
        _votesCredited[operator][account] = current;
        uint256 oldVotes = _votes[account].latest();
        uint256 newVotes = oldVotes + current - credited;
        _votes[account].push(clock(), SafeCast.toUint208(newVotes));
        emit StakeVotesChanged(account, oldVotes, newVotes);
    }

    /// @dev Jail terms are sorted and disjoint: find the last one that starts at or before `epoch` (binary search, so
    /// a long history costs a few reads) and ask whether it reaches `epoch`.
    function _wasJailedIn(address operator, uint64 epoch) private view returns (bool) {
        JailTerm[] storage terms = _jailTerms[operator];
        uint256 low = 0;
        uint256 high = terms.length;
        while (low < high) {
            uint256 mid = (low + high) / 2;
            if (terms[mid].fromEpoch > epoch) high = mid;
            else low = mid + 1;
        }
        return low != 0 && terms[low - 1].throughEpoch >= epoch;
    }

    /// @dev Tells the stake hook, if any, before `staker`'s bonded shares in `operator`'s node change.
    function _beforeSharesChange(address operator, address staker) private {
        IStakeHook hook = _stakeHook;
        if (address(hook) != address(0)) hook.beforeSharesChange(operator, staker);
    }

    /// @dev Records that the node is jailed from the current epoch through the epoch of its last jailed second. The
    /// jail replaces any running one (`jailedUntil` is overwritten), so a term that reaches the current epoch (or
    /// ends just before it) is extended or shortened to the new end rather than a second term stacked beside it.
    function _recordJail(address operator, uint64 jailedUntil) private {
        uint64 fromEpoch = _parameters.currentEpoch();
        // jailedUntil is the first free second and lies in the future (JailPeriod is at least a minute).
        uint64 throughEpoch = _parameters.epochAt(jailedUntil - 1);
        JailTerm[] storage terms = _jailTerms[operator];
        uint256 length = terms.length;
        if (length != 0 && terms[length - 1].throughEpoch + 1 >= fromEpoch) {
            JailTerm storage last = terms[length - 1];
            last.throughEpoch = throughEpoch;
            fromEpoch = last.fromEpoch;
        } else {
            terms.push(JailTerm({fromEpoch: fromEpoch, throughEpoch: throughEpoch}));
        }
        RewardSummary storage summary = _nodes[operator].summary;
        summary.jailed = true;
        summary.jailFrom = SafeCast.toUint48(fromEpoch);
        summary.jailThrough = SafeCast.toUint48(throughEpoch);
        emit NodeJailed(operator, fromEpoch, throughEpoch);
    }

    /// @dev A node is listed for discovery while its operator holds any self-stake.
    function _updateStakedSet(address operator) private {
        Node storage n = _nodes[operator];
        bool staked = n.bonded.value(_shares[operator][operator]) != 0;
        if (staked) _staked[n.role].add(operator);
        else _staked[n.role].remove(operator);
    }

    /// @dev Records whether the operator's self-stake meets the minimum (for `nodeStanding`), emitting on a change.
    function _setQualified(Node storage n, address operator, bool qualified) private {
        if (n.qualified == qualified) return;
        n.qualified = qualified;
        emit NodeQualificationChanged(operator, qualified);
    }

    /// @dev The legacy code generator cannot copy a calldata string[] to storage in one assignment.
    function _setMultiaddrs(Node storage n, string[] calldata multiaddrs) private {
        delete n.multiaddrs;
        for (uint256 i = 0; i < multiaddrs.length; ++i) {
            n.multiaddrs.push(multiaddrs[i]);
        }
    }

    function _registered(address operator) private view returns (Node storage n) {
        n = _nodes[operator];
        if (n.role == NodeRole.None) revert StakingNotRegistered(operator);
    }

    function _checkCommission(uint16 bps) private view {
        uint256 cap = _parameters.get(Parameter.CommissionCapBps);
        if (bps > cap) revert StakingCommissionTooHigh(bps, cap);
    }

    function _checkEndpoint(string calldata peerId, string[] calldata multiaddrs, address signer) private pure {
        uint256 peerIdLength = bytes(peerId).length;
        if (peerIdLength == 0 || peerIdLength > MAX_PEER_ID_LENGTH) {
            revert StakingInvalidPeerId(peerIdLength, MAX_PEER_ID_LENGTH);
        }
        if (multiaddrs.length == 0 || multiaddrs.length > MAX_MULTIADDRS) {
            revert StakingInvalidMultiaddrs(multiaddrs.length, MAX_MULTIADDRS);
        }
        for (uint256 i = 0; i < multiaddrs.length; ++i) {
            uint256 length = bytes(multiaddrs[i]).length;
            if (length == 0 || length > MAX_MULTIADDR_LENGTH) {
                revert StakingInvalidMultiaddrs(multiaddrs.length, MAX_MULTIADDRS);
            }
        }
        if (signer == address(0)) revert StakingInvalidSigner();
    }
}
