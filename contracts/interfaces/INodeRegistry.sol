// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice The one role a node is registered for.
enum NodeRole {
    None,
    Edge,
    Watchdog,
    Guardian
}

/// @title INodeRegistry
/// @notice Registry of edge, watchdog and guardian nodes and the stake behind them. An operator registers one node
/// with its libp2p peer id, multiaddrs and signing address and keeps at least its role's minimum self-stake. Token
/// holders delegate to an operator and share its rewards and its slashes pro rata: every node has a bonded pool and
/// an unbonding pool, each holding tokens against shares, so a slash cuts both pools by the same fraction in O(1)
/// and leaving through the unbonding period does not escape it. Bonded stake keeps its voting power, checkpointed
/// per block for the Governor.
interface INodeRegistry {
    /// @notice What a node looks like to a reader (discovery, scripts, other contracts).
    struct NodeView {
        address operator;
        NodeRole role;
        address signer;
        string peerId;
        string[] multiaddrs;
        uint16 commissionBps; // in force now
        uint64 jailedUntil;
        uint256 selfStake;
        uint256 delegatedStake;
        uint256 unbondingStake;
        bool active;
    }

    /// @notice A pending withdrawal: shares of `operator`'s unbonding pool, free at `releaseTime`.
    struct Unbonding {
        address operator;
        uint64 releaseTime;
        uint256 shares;
    }

    /// @notice Epochs a node was jailed in, both ends included: from the epoch of the slash that jailed it through the
    /// epoch its jail ends in. Rewards are not paid for these epochs.
    struct JailTerm {
        uint64 fromEpoch;
        uint64 throughEpoch;
    }

    /// @notice Emitted after `operator` registered a node for `role`.
    event NodeRegistered(
        address indexed operator,
        NodeRole indexed role,
        string peerId,
        string[] multiaddrs,
        address signer
    );

    /// @notice Emitted after `operator` changed its node's peer id, multiaddrs or signer.
    event NodeUpdated(address indexed operator, string peerId, string[] multiaddrs, address signer);

    /// @notice Emitted after `staker` bonded `amount` tokens to `operator`'s node, receiving `shares`.
    event Bonded(address indexed operator, address indexed staker, uint256 amount, uint256 shares);

    /// @notice Emitted after `staker` started unbonding `amount` tokens from `operator`'s node.
    event UnbondingStarted(address indexed operator, address indexed staker, uint256 amount, uint64 releaseTime);

    /// @notice Emitted after `staker` withdrew `amount` tokens from `count` matured unbondings.
    event Withdrawn(address indexed staker, uint256 amount, uint256 count);

    /// @notice Emitted after `operator` set its commission to `bps`, in force from `fromEpoch`.
    event CommissionChanged(address indexed operator, uint16 bps, uint64 fromEpoch);

    /// @notice Emitted after `operator`'s node was slashed by `bps`: `bonded` and `unbonding` tokens taken.
    event NodeSlashed(address indexed operator, uint16 bps, uint256 bonded, uint256 unbonding, uint64 jailedUntil);

    /// @notice Emitted after `operator`'s self-stake crossed the role's minimum (`qualified`) or fell under it, as
    /// recorded for `nodeStanding`.
    event NodeQualificationChanged(address indexed operator, bool qualified);

    /// @notice Emitted after a jailing slash recorded that `operator`'s node is jailed in epochs `fromEpoch` through
    /// `throughEpoch` (a jail that overlaps or follows the previous one directly extends or shortens that term).
    event NodeJailed(address indexed operator, uint64 fromEpoch, uint64 throughEpoch);

    /// @notice Emitted after the slashing contract changed.
    event SlasherChanged(address oldSlasher, address newSlasher);

    /// @notice Emitted after the stake hook changed.
    event StakeHookChanged(address oldHook, address newHook);

    /// @notice Emitted after `account`'s stake voting power changed.
    event StakeVotesChanged(address indexed account, uint256 oldVotes, uint256 newVotes);

    /// @notice `operator` would hold `stake` but its role needs `minimum`: `missing` tokens more.
    error StakingInsufficientStake(address operator, uint256 stake, uint256 minimum, uint256 missing);

    /// @notice `operator` has registered a node already.
    error StakingAlreadyRegistered(address operator);

    /// @notice `operator` has no registered node.
    error StakingNotRegistered(address operator);

    /// @notice `role` is not a node role (`None`).
    error StakingInvalidRole(NodeRole role);

    /// @notice `operator`'s node is not active (below minimum self-stake or jailed), so it takes no delegation.
    error StakingNodeNotActive(address operator);

    /// @notice An amount of zero.
    error StakingZeroAmount();

    /// @notice `staker` asked to unbond `requested` tokens from `operator` but has `available`.
    error StakingExceedsStake(address operator, address staker, uint256 requested, uint256 available);

    /// @notice `operator` would keep `remaining` self-stake, more than 0 and under the `minimum` of its role.
    error StakingBelowMinimum(address operator, uint256 remaining, uint256 minimum);

    /// @notice A commission of `bps` above the governed cap `cap`.
    error StakingCommissionTooHigh(uint256 bps, uint256 cap);

    /// @notice `staker` has no unbonding that has matured.
    error StakingNothingToWithdraw(address staker);

    /// @notice `staker` has `maximum` unbondings pending already.
    error StakingTooManyUnbondings(address staker, uint256 maximum);

    /// @notice `caller` is not the slashing contract.
    error StakingNotSlasher(address caller);

    /// @notice A slash of `bps`, above `maximum`.
    error StakingSlashTooLarge(uint256 bps, uint256 maximum);

    /// @notice A peer id that is empty or longer than `maximum` bytes.
    error StakingInvalidPeerId(uint256 length, uint256 maximum);

    /// @notice A multiaddr list of `count` entries (1 to `maximum` expected), or an entry empty or too long.
    error StakingInvalidMultiaddrs(uint256 count, uint256 maximum);

    /// @notice A node signer of address zero.
    error StakingInvalidSigner();

    /// @notice A vote lookup at `timepoint`, not yet in the past (`clock` is `current`).
    error StakingFutureLookup(uint256 timepoint, uint48 current);

    /// @notice Registers the caller's node for `role` and bonds `amount` of its own tokens (at least the minimum).
    function register(
        NodeRole role,
        string calldata peerId,
        string[] calldata multiaddrs,
        address signer,
        uint16 commissionBps,
        uint256 amount
    ) external;

    /// @notice Replaces the caller's node's peer id, multiaddrs and signer.
    function updateNode(string calldata peerId, string[] calldata multiaddrs, address signer) external;

    /// @notice Bonds `amount` more of the caller's own tokens to the caller's node.
    function stake(uint256 amount) external;

    /// @notice Bonds `amount` of the caller's tokens to `operator`'s active node.
    function delegate(address operator, uint256 amount) external;

    /// @notice Starts unbonding `amount` of the caller's stake in `operator`'s node (the operator's own included).
    function unbond(address operator, uint256 amount) external;

    /// @notice Pays out every matured unbonding of the caller; returns the tokens paid.
    function withdraw() external returns (uint256 amount);

    /// @notice Sets the caller's commission, at most the governed cap, in force from the next epoch.
    function setCommission(uint16 bps) external;

    /// @notice Takes `bps` of `operator`'s bonded and unbonding pools and sends it to the slasher; optionally jails
    /// the node for the governed jail period. Only the slashing contract.
    function slash(address operator, uint16 bps, bool jail) external returns (uint256 amount);

    /// @notice Sets the slashing contract. Only the owner (the timelock).
    function setSlasher(address slasher) external;

    /// @notice Sets the contract told before any staker's bonded shares change (`IStakeHook`; the reward
    /// distributor), or none with address zero. Only the owner (the timelock).
    function setStakeHook(address hook) external;

    /// @notice Brings `account`'s voting power from its stake in `operator`'s node up to date after a slash.
    function syncVotes(address operator, address account) external;

    /// @notice The slashing contract.
    function slasher() external view returns (address);

    /// @notice The stake hook (address zero: none).
    function stakeHook() external view returns (address);

    /// @notice Whether `operator`'s node was jailed at any time in `epoch` (a jail recorded by `slash`).
    function wasJailedIn(address operator, uint64 epoch) external view returns (bool);

    /// @notice Every jail term of `operator`'s node, oldest first; terms never overlap.
    function jailTermsOf(address operator) external view returns (JailTerm[] memory);

    /// @notice `operator`'s node.
    function node(address operator) external view returns (NodeView memory);

    /// @notice Whether `operator`'s node is registered, holds its minimum self-stake and is not jailed.
    function isActive(address operator) external view returns (bool);

    /// @notice The role of `operator`'s node and the time its jail ends (one storage read: for per-slot checks).
    function nodeStatus(address operator) external view returns (NodeRole role, uint64 jailedUntil);

    /// @notice `nodeStatus` and whether the operator's self-stake met the role's minimum when it last changed (by a
    /// stake, an unbond, a slash or `refreshStanding`), in the same single storage read: what settlement checks per
    /// slot. It is false once an operator has left or a slash pushed it under the minimum, until it tops up. Also the
    /// node's signer, kept in the same slot (the rollup checks a node's consent to each slot against it).
    function nodeStanding(
        address operator
    ) external view returns (NodeRole role, uint64 jailedUntil, bool qualified, address signer);

    /// @notice Re-checks `operator`'s self-stake against the role's current minimum and records the result for
    /// `nodeStanding`. Anyone may call it: after governance raises a minimum, nodes under it stop qualifying once
    /// someone refreshes them (until then they keep the standing of their last stake change).
    function refreshStanding(address operator) external returns (bool qualified);

    /// @notice The role of `operator`'s node (`None` if unregistered).
    function roleOf(address operator) external view returns (NodeRole);

    /// @notice The address that signs for `operator`'s node (store promises, statements).
    function signerOf(address operator) external view returns (address);

    /// @notice `operator`'s commission in `epoch`, in basis points (never above the current cap).
    function commissionAt(address operator, uint64 epoch) external view returns (uint16);

    /// @notice The epoch `operator`'s node registered in (reverts with `StakingNotRegistered` if it never did).
    function registeredIn(address operator) external view returns (uint64);

    /// @notice What the reward distributor reads of `operator`'s node for `epoch`, in one call: the commission the
    /// operator set for that epoch (its history, not clamped: the distributor applies the cap fixed for the epoch),
    /// whether the node was jailed in it, and the bonded pool's total shares now.
    function rewardStateAt(
        address operator,
        uint64 epoch
    ) external view returns (uint16 commissionBps, bool jailed, uint256 bondedShares);

    /// @notice The tokens `staker` has bonded in `operator`'s node now (after slashes).
    function stakeOf(address operator, address staker) external view returns (uint256);

    /// @notice `staker`'s bonded shares in `operator`'s node and the pool's total shares and tokens.
    function sharesOf(
        address operator,
        address staker
    ) external view returns (uint256 shares, uint256 totalShares, uint256 totalTokens);

    /// @notice `staker`'s pending unbondings.
    function unbondings(address staker) external view returns (Unbonding[] memory);

    /// @notice The tokens an unbonding is worth now (after slashes).
    function unbondingValue(Unbonding calldata entry) external view returns (uint256);

    /// @notice How many nodes of `role` hold stake, active or not (the list `activeNodes` pages over).
    function stakedNodeCount(NodeRole role) external view returns (uint256);

    /// @notice The node at `index` of that list and whether it is active now: a cheap read for on-chain draws.
    function stakedNodeAt(NodeRole role, uint256 index) external view returns (address operator, bool active);

    /// @notice A page of the nodes of `role` that hold stake: those in `[offset, offset + limit)` that are active now.
    /// @return nodes The active nodes in the page.
    /// @return total How many nodes of `role` hold stake, active or not: page until `offset >= total`.
    function activeNodes(
        NodeRole role,
        uint256 offset,
        uint256 limit
    ) external view returns (NodeView[] memory nodes, uint256 total);

    /// @notice The clock of stake votes (block number), the same as the token's.
    function clock() external view returns (uint48);

    /// @notice `account`'s voting power from bonded stake now.
    function getVotes(address account) external view returns (uint256);

    /// @notice `account`'s voting power from bonded stake at `timepoint` (a past block).
    function getPastVotes(address account, uint256 timepoint) external view returns (uint256);
}
