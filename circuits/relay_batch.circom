pragma circom 2.1.0;

include "circomlib/circuits/bitify.circom";
include "relay_slot.circom";

/*
 * RelayBatch(SLOTS, BILLS, TREE_DEPTH, MAX_WORK_PER_BILL): one rollup batch, proving the relay work of up to SLOTS
 * edge nodes in one epoch, each from up to BILLS recipient bills checked against one identity tree root.
 *
 * Public signals, in this order (snarkjs orders them as the inputs are declared below; the rollup contract builds
 * exactly this uint256 array, length 2 + 4 * SLOTS):
 *
 *   [ epoch, identityRoot,
 *     nodeId[0], ..., nodeId[SLOTS-1],
 *     prevBound[0], ..., prevBound[SLOTS-1],
 *     newBound[0], ..., newBound[SLOTS-1],
 *     work[0], ..., work[SLOTS-1] ]
 *
 * Proves: epoch < 2^64 and every nodeId < 2^160 (an address); and for each slot s, RelaySlot's statement: the
 * enabled bills are signed for (nodeId[s], epoch) by keys in the identity tree under identityRoot, with recipient key
 * order keys (the top 200 bits of the key hashes, see OrderKey) strictly increasing from above prevBound[s] (< 2^200) to newBound[s] (= prevBound[s] when no bill is enabled), and
 * work[s] = sum of min(messageCount, MAX_WORK_PER_BILL) over them. An unused slot has no enabled bill: its newBound
 * equals its prevBound and its work is 0 (batchInput.ts pads it with nodeId 0, bounds 0).
 *
 * The contract must enforce:
 *   - epoch is an epoch the rollup settles (ended, not yet closed);
 *   - identityRoot is a root the identity registry knows (DidRegistry.isKnownRoot; 0 never is);
 *   - per slot with work or a moved bound: nodeId[s] is a registered edge node, prevBound[s] equals the bound it
 *     stored for (nodeId[s], epoch) (0 at first), and it then stores newBound[s] and credits work[s];
 *   - the same nodeId appears in at most one slot of a batch (or the slots chain: a later prevBound equals the
 *     earlier newBound), since each slot is only checked against its own prevBound;
 *   - slots with nodeId 0 are padding: skip them (no recipient signs for the zero address, but nothing stops a
 *     fake one from doing so).
 *
 * Every public input also appears in a quadratic constraint (`*Square`), so that none is left unconstrained (and
 * thus malleable in the proof) when every bill is disabled.
 */
template RelayBatch(SLOTS, BILLS, TREE_DEPTH, MAX_WORK_PER_BILL) {
    assert(SLOTS >= 1);

    signal input epoch;
    signal input identityRoot;
    signal input nodeId[SLOTS];
    signal input prevBound[SLOTS];
    signal input newBound[SLOTS];
    signal input work[SLOTS];

    signal input enabled[SLOTS][BILLS];
    signal input messageCount[SLOTS][BILLS];
    signal input byteCount[SLOTS][BILLS];
    signal input Ax[SLOTS][BILLS];
    signal input Ay[SLOTS][BILLS];
    signal input S[SLOTS][BILLS];
    signal input R8x[SLOTS][BILLS];
    signal input R8y[SLOTS][BILLS];
    signal input treeDepth[SLOTS][BILLS];
    signal input pathIndices[SLOTS][BILLS][TREE_DEPTH];
    signal input siblings[SLOTS][BILLS][TREE_DEPTH];

    // Bills are for an epoch number (uint64 on chain) and a node address (uint160).
    component epochBits = Num2Bits(64);
    epochBits.in <== epoch;
    component nodeIdBits[SLOTS];

    signal epochSquare <== epoch * epoch;
    signal identityRootSquare <== identityRoot * identityRoot;
    signal nodeIdSquare[SLOTS];
    signal prevBoundSquare[SLOTS];
    signal newBoundSquare[SLOTS];
    signal workSquare[SLOTS];

    component slot[SLOTS];
    for (var s = 0; s < SLOTS; s++) {
        nodeIdBits[s] = Num2Bits(160);
        nodeIdBits[s].in <== nodeId[s];

        nodeIdSquare[s] <== nodeId[s] * nodeId[s];
        prevBoundSquare[s] <== prevBound[s] * prevBound[s];
        newBoundSquare[s] <== newBound[s] * newBound[s];
        workSquare[s] <== work[s] * work[s];

        slot[s] = RelaySlot(BILLS, TREE_DEPTH, MAX_WORK_PER_BILL);
        slot[s].epoch <== epoch;
        slot[s].identityRoot <== identityRoot;
        slot[s].nodeId <== nodeId[s];
        slot[s].prevBound <== prevBound[s];
        slot[s].newBound <== newBound[s];
        slot[s].work <== work[s];
        slot[s].enabled <== enabled[s];
        slot[s].messageCount <== messageCount[s];
        slot[s].byteCount <== byteCount[s];
        slot[s].Ax <== Ax[s];
        slot[s].Ay <== Ay[s];
        slot[s].S <== S[s];
        slot[s].R8x <== R8x[s];
        slot[s].R8y <== R8y[s];
        slot[s].treeDepth <== treeDepth[s];
        slot[s].pathIndices <== pathIndices[s];
        slot[s].siblings <== siblings[s];
    }
}
