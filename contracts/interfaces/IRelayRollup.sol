// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IRelayRollup
/// @notice Settles proven relay work. A batch covers one ended epoch and a fixed number of node slots; one Groth16
/// proof (circuits/relay_batch.circom) shows that every bill in it is signed by a bill key in the identity tree,
/// is for this epoch and this slot's node, credits capped work, and that within a slot the recipients' order keys
/// strictly increase from the slot's previous bound to its new bound. The contract holds each node's bound per
/// epoch, so the same bill can never be counted twice, without a state tree.
///
/// Timeline of epoch E, with `end` = epochStart(E + 1), in two phases:
///   [end, end + ForcedInclusionDelay)                       guardian phase: active guardians submit batches for E
///   [end + ForcedInclusionDelay, end + SettlementWindow)    node phase: an edge node submits batches of its own
///                                                           slots only (forced inclusion)
///   from end + SettlementWindow                             E is closed; its totals are final for rewards
/// and once the reward distributor has fixed E's terms (a claim reached it), E stays closed even if governance later
/// lengthens the settlement window.
///
/// Restart: in the node phase a node's slot may start at bound 0 whatever bound is stored; it then replaces the node's
/// record for E (bound and work) instead of continuing it. This is what keeps guardians from censoring by moving a
/// node's bound: a guardian can settle a slot for any node whose bills it holds, including one bill from a recipient
/// whose order key is near 2^200, after which no real bill of that node for E fits above the bound. The node answers
/// in the node phase with one batch of all its bills from bound 0; the guardian phase ends before, so no guardian can
/// move the bound again after the node's answer. A restart re-proves every bill it counts, so nothing is counted twice.
interface IRelayRollup {
    /// @notice One node slot of a batch. `node` 0 marks a padding slot, which must be all zero.
    struct Slot {
        address node;
        uint256 prevBound;
        uint256 newBound;
        uint256 work;
    }

    /// @notice A Groth16 proof, as snarkjs exports it for Solidity.
    struct Proof {
        uint256[2] a;
        uint256[2][2] b;
        uint256[2] c;
    }

    /// @notice Emitted after a batch for `epoch` settled `work` in total; `forced` when a node submitted its own.
    event BatchSettled(
        uint64 indexed epoch,
        address indexed submitter,
        uint256 identityRoot,
        uint256 work,
        bool forced
    );

    /// @notice Emitted after `node`'s bound for `epoch` moved to `newBound`, crediting `work`. The bound it moved from
    /// is the previous event's `newBound` for the same node and epoch (0 for the first): left out to keep a slot's
    /// settlement within 30,000 gas.
    event SlotSettled(uint64 indexed epoch, address indexed node, uint256 newBound, uint256 work);

    /// @notice Emitted when `node`'s own batch restarted its record for `epoch` from bound 0, dropping the `oldWork`
    /// settled up to `oldBound` (the restarting slot's SlotSettled follows).
    event SlotRestarted(uint64 indexed epoch, address indexed node, uint256 oldBound, uint256 oldWork);

    /// @notice The caller is neither an active guardian nor, after the forced-inclusion delay, an edge node
    /// submitting its own slots.
    error RollupNotAuthorized(address caller, uint64 epoch);

    /// @notice The guardian phase of `epoch` ended at `phaseEnd`: only edge nodes settle their own slots now.
    error RollupGuardianPhaseOver(uint64 epoch, uint256 phaseEnd);

    /// @notice `epoch` has not ended: its bills are still accumulating. It ends at `end`.
    error RollupEpochNotEnded(uint64 epoch, uint256 end);

    /// @notice `epoch`'s settlement window closed at `deadline`.
    error RollupWindowClosed(uint64 epoch, uint256 deadline);

    /// @notice The reward distributor has fixed the terms of every epoch before `claimedUntil`, so `epoch`'s totals are
    /// closed for good, whatever the settlement window says now (a lengthened window must not reopen a paid epoch).
    error RollupEpochClaimed(uint64 epoch, uint64 claimedUntil);

    /// @notice `root` is not a recent identity-tree root.
    error RollupUnknownRoot(uint256 root);

    /// @notice A batch of `count` slots; the circuit has `expected`.
    error RollupWrongSlotCount(uint256 count, uint256 expected);

    /// @notice A padding slot (node 0) at `index` with a nonzero bound or work.
    error RollupPaddingSlotNotEmpty(uint256 index);

    /// @notice `node` is not a registered edge node, is jailed, or its operator's self-stake is under the role's
    /// minimum (`INodeRegistry.nodeStanding`).
    error RollupNodeNotEligible(address node);

    /// @notice `node`'s previous bound for `epoch` is `expected`; the slot says `given` (and is not a node's own restart
    /// from 0 in the node phase).
    error RollupBoundMismatch(address node, uint64 epoch, uint256 expected, uint256 given);

    /// @notice A bound of `bound`, not below 2^200 (the circuit's order keys are 200 bits).
    error RollupBoundTooLarge(uint256 bound);

    /// @notice A slot claiming `work`, more than fits (2^56).
    error RollupWorkTooLarge(uint256 work);

    /// @notice The proof does not verify for these public inputs.
    error RollupInvalidProof();

    /// @notice The verifier call failed (wrong verifier or slot count at deploy).
    error RollupVerifierFailed();

    /// @notice Settles a batch for the ended `epoch`. See the timeline above for who may call when.
    function submitBatch(uint64 epoch, uint256 identityRoot, Slot[] calldata slots, Proof calldata proof) external;

    /// @notice The number of node slots in a batch (fixed by the circuit).
    function slotsPerBatch() external view returns (uint256);

    /// @notice The reward distributor, whose fixed epochs are closed to settlement.
    function rewards() external view returns (address);

    /// @notice The Groth16 verifier of the batch circuit.
    function verifier() external view returns (address);

    /// @notice `node`'s bound for `epoch`: the order key of the last recipient settled (0: none yet).
    function boundOf(address node, uint64 epoch) external view returns (uint256);

    /// @notice Work settled for `node` in `epoch`.
    function workOf(address node, uint64 epoch) external view returns (uint256);

    /// @notice Work settled in `epoch`, all nodes together.
    function epochWork(uint64 epoch) external view returns (uint256);

    /// @notice Work `guardian` settled in `epoch` (forced-inclusion batches credit no guardian).
    function guardianWorkOf(address guardian, uint64 epoch) external view returns (uint256);

    /// @notice Work all guardians settled in `epoch`.
    function epochGuardianWork(uint64 epoch) external view returns (uint256);

    /// @notice When `epoch`'s settlement window closes.
    function settlementDeadline(uint64 epoch) external view returns (uint256);

    /// @notice Whether `epoch` is closed, so its totals are final.
    function isFinal(uint64 epoch) external view returns (bool);
}
