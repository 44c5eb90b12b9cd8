// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IRelayRollup
/// @notice Settles proven relay work. A batch covers one ended epoch and a fixed number of node slots; one Groth16
/// proof (circuits/relay_batch.circom) shows that every bill in it is signed by a bill key in the identity tree,
/// is for this epoch and this slot's node, credits capped work, and that within a slot the recipients' order keys
/// strictly increase from the slot's previous bound to its new bound. The contract holds each node's bound per
/// epoch, so the same bill can never be counted twice, without a state tree.
///
/// Timeline of epoch E, with `end` = epochStart(E + 1):
///   [end, end + SettlementWindow)            active guardians submit batches for E
///   [end + ForcedInclusionDelay, same end)   an edge node may also submit a batch of its own bills (forced inclusion)
///   from end + SettlementWindow              E is closed; its totals are final for rewards
/// and once the reward distributor has fixed E's terms (a claim reached it), E stays closed even if governance later
/// lengthens the settlement window.
///
/// Consent: a guardian's slot for a node must carry the node's consent, an EIP-712 `SlotConsent` signed by the node's
/// registered signer over exactly the slot (epoch, node, prevBound, newBound, work). Without it, a guardian holding
/// one bill for the node from a recipient whose order key is near 2^200 (its own DID, say) could settle that bill
/// first and move the node's bound past every real bill of the epoch: censorship through the replay guard. A node's
/// own batch (forced inclusion) is its consent.
interface IRelayRollup {
    /// @notice One node slot of a batch. `node` 0 marks a padding slot, which must be all zero.
    /// `consentR` and `consentVS` are the node signer's EIP-712 signature of the slot's `SlotConsent` in the compact
    /// EIP-2098 form (r, yParity and s in one word); both 0 in padding slots and in a node's own batch.
    struct Slot {
        address node;
        uint256 prevBound;
        uint256 newBound;
        uint256 work;
        bytes32 consentR;
        bytes32 consentVS;
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
    /// is the previous event's `newBound` for the same node and epoch (0 for the first): left out, it is derivable.
    event SlotSettled(uint64 indexed epoch, address indexed node, uint256 newBound, uint256 work);

    /// @notice The caller is neither an active guardian nor, after the forced-inclusion delay, an edge node
    /// submitting its own slots.
    error RollupNotAuthorized(address caller, uint64 epoch);

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

    /// @notice The slot for `node` at `index` does not carry a valid consent signature by the node's registered signer
    /// for exactly this slot.
    error RollupNoConsent(uint256 index, address node);

    /// @notice `node`'s previous bound for `epoch` is `expected`; the slot says `given`.
    error RollupBoundMismatch(address node, uint64 epoch, uint256 expected, uint256 given);

    /// @notice A bound of `bound`, not below 2^200 (the circuit's order keys are 200 bits).
    error RollupBoundTooLarge(uint256 bound);

    /// @notice A slot claiming `work`, more than fits (2^56).
    error RollupWorkTooLarge(uint256 work);

    /// @notice The proof does not verify for these public inputs.
    error RollupInvalidProof();

    /// @notice The verifier call failed (wrong verifier or slot count at deploy).
    error RollupVerifierFailed();

    /// @notice The EIP-712 type of a node's consent to a slot.
    /// @return The type hash of `SlotConsent(uint64 epoch,address node,uint256 prevBound,uint256 newBound,uint256 work)`.
    function SLOT_CONSENT_TYPEHASH() external view returns (bytes32);

    /// @notice The digest a node's signer signs to consent to `slot` in `epoch` (its consent fields are ignored).
    function consentDigest(uint64 epoch, Slot calldata slot) external view returns (bytes32);

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
