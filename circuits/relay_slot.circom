pragma circom 2.1.0;

include "circomlib/circuits/babyjub.circom";
include "circomlib/circuits/bitify.circom";
include "circomlib/circuits/comparators.circom";
include "circomlib/circuits/eddsaposeidon.circom";
include "circomlib/circuits/poseidon.circom";
include "bill_message.circom";
include "order_key.circom";
include "lean_imt_root.circom";

/*
 * RelaySlot(BILLS, TREE_DEPTH, MAX_WORK_PER_BILL): one edge node's bills for one epoch, and the work they prove.
 *
 * Inputs from the batch: epoch, identityRoot, nodeId, prevBound, newBound, work. Private, per bill i < BILLS:
 * enabled (bit), messageCount, byteCount, the recipient's bill key (Ax, Ay), its EdDSA-Poseidon signature (S, R8x,
 * R8y), and the key hash's lean-IMT path in the identity tree (treeDepth, pathIndices, siblings; see LeanIMTRoot).
 *
 * Proves, for every enabled bill:
 *   - (Ax, Ay) is on Baby Jubjub and signed M = BillMessage(nodeId, epoch, messageCount, byteCount)
 *     (circomlib's EdDSAPoseidonVerifier, which also checks S < the subgroup order);
 *   - messageCount < 2^32 and byteCount < 2^48 (Num2Bits), the bill format's bounds, so M has one reading;
 *   - recipientKeyHash = Poseidon(2)(Ax, Ay) is a leaf of the identity tree whose root is identityRoot;
 *   - the recipients' order keys (OrderKey: the top 200 bits of the key hash) strictly increase, the first strictly
 *     above prevBound (< 2^200, range-checked here), so a recipient counts at most once per slot, and, because the
 *     contract chains the bounds, at most once per node and epoch;
 *   - it credits min(messageCount, MAX_WORK_PER_BILL).
 * And for the slot: the enabled bills are a prefix of the BILLS; newBound is the last enabled order key, or
 * prevBound if none is enabled; work is the sum of the credited amounts (at most BILLS * MAX_WORK_PER_BILL).
 *
 * A disabled bill credits nothing and does not move the bound, but some of circomlib's EdDSA sub-constraints hold
 * whether or not it is enabled, so a disabled bill must carry satisfiable padding: the key and R8 a valid curve point
 * (the Base8 generator; EscalarMulAny fails on the zero point), S = 0, counts 0, treeDepth 0, pathIndices and
 * siblings 0. sdk/bill/batchInput.ts writes exactly that.
 *
 * Not checked here (RelayBatch or the contract must): epoch < 2^64 and nodeId < 2^160 (RelayBatch range-checks both);
 * identityRoot is a root the identity registry knows; prevBound is the bound stored for (nodeId, epoch); the epoch is
 * one the rollup accepts bills for.
 */
template RelaySlot(BILLS, TREE_DEPTH, MAX_WORK_PER_BILL) {
    assert(BILLS >= 1);
    assert(TREE_DEPTH >= 1);
    // LessThan(32) below needs both sides below 2^32; messageCount is by its range check.
    assert(MAX_WORK_PER_BILL < 4294967296);

    signal input epoch;
    signal input identityRoot;
    signal input nodeId;
    signal input prevBound;
    signal input newBound;
    signal input work;

    signal input enabled[BILLS];
    signal input messageCount[BILLS];
    signal input byteCount[BILLS];
    signal input Ax[BILLS];
    signal input Ay[BILLS];
    signal input S[BILLS];
    signal input R8x[BILLS];
    signal input R8y[BILLS];
    signal input treeDepth[BILLS];
    signal input pathIndices[BILLS][TREE_DEPTH];
    signal input siblings[BILLS][TREE_DEPTH];

    signal recipientKeyHash[BILLS];
    signal orderKey[BILLS];
    // bound[i]: the last enabled order key among bills 0..i-1, or prevBound.
    signal bound[BILLS + 1];
    signal cappedCount[BILLS];
    signal creditedWork[BILLS];

    component messageCountBits[BILLS];
    component byteCountBits[BILLS];
    component message[BILLS];
    component keyOnCurve[BILLS];
    component signature[BILLS];
    component keyHash[BILLS];
    component membership[BILLS];
    component prevBoundBits = Num2Bits(200);
    component orderKeys[BILLS];
    component aboveBound[BILLS];
    component belowCap[BILLS];

    // prevBound < 2^200, the range LessThan(200) needs; newBound is then either it or an order key, also < 2^200.
    prevBoundBits.in <== prevBound;
    bound[0] <== prevBound;
    var workSum = 0;
    for (var i = 0; i < BILLS; i++) {
        enabled[i] * (enabled[i] - 1) === 0;
        if (i > 0) {
            // Enabled bills form a prefix: enabled[i] implies enabled[i - 1].
            enabled[i] * (1 - enabled[i - 1]) === 0;
        }

        messageCountBits[i] = Num2Bits(32);
        messageCountBits[i].in <== messageCount[i];
        byteCountBits[i] = Num2Bits(48);
        byteCountBits[i].in <== byteCount[i];

        message[i] = BillMessage();
        message[i].nodeId <== nodeId;
        message[i].epoch <== epoch;
        message[i].messageCount <== messageCount[i];
        message[i].byteCount <== byteCount[i];

        // On the curve, as the identity registry requires of a bill key. This also keeps an internal tree node
        // (a pair of Poseidon outputs) from passing as a key whose hash is that node's parent.
        keyOnCurve[i] = BabyCheck();
        keyOnCurve[i].x <== Ax[i];
        keyOnCurve[i].y <== Ay[i];

        signature[i] = EdDSAPoseidonVerifier();
        signature[i].enabled <== enabled[i];
        signature[i].Ax <== Ax[i];
        signature[i].Ay <== Ay[i];
        signature[i].S <== S[i];
        signature[i].R8x <== R8x[i];
        signature[i].R8y <== R8y[i];
        signature[i].M <== message[i].out;

        keyHash[i] = Poseidon(2);
        keyHash[i].inputs[0] <== Ax[i];
        keyHash[i].inputs[1] <== Ay[i];
        recipientKeyHash[i] <== keyHash[i].out;

        membership[i] = LeanIMTRoot(TREE_DEPTH);
        membership[i].leaf <== recipientKeyHash[i];
        membership[i].depth <== treeDepth[i];
        for (var j = 0; j < TREE_DEPTH; j++) {
            membership[i].pathIndices[j] <== pathIndices[i][j];
            membership[i].siblings[j] <== siblings[i][j];
        }
        (membership[i].root - identityRoot) * enabled[i] === 0;

        // Strictly above the previous enabled order key, or prevBound for the first. Because enabled bills are a
        // prefix, bill i > 0 is only enabled when bill i - 1 is, so bound[i] is orderKey[i - 1] whenever this check
        // is live. Both sides are below 2^200 (OrderKey's decomposition, prevBound's range check).
        orderKeys[i] = OrderKey();
        orderKeys[i].in <== recipientKeyHash[i];
        orderKey[i] <== orderKeys[i].out;
        aboveBound[i] = LessThan(200);
        aboveBound[i].in[0] <== bound[i];
        aboveBound[i].in[1] <== orderKey[i];
        (1 - aboveBound[i].out) * enabled[i] === 0;
        bound[i + 1] <== bound[i] + enabled[i] * (orderKey[i] - bound[i]);

        // credited = min(messageCount, MAX_WORK_PER_BILL); both sides < 2^32 (Num2Bits(32) above, assert at the top).
        belowCap[i] = LessThan(32);
        belowCap[i].in[0] <== messageCount[i];
        belowCap[i].in[1] <== MAX_WORK_PER_BILL;
        cappedCount[i] <== MAX_WORK_PER_BILL + belowCap[i].out * (messageCount[i] - MAX_WORK_PER_BILL);
        creditedWork[i] <== enabled[i] * cappedCount[i];
        workSum += creditedWork[i];
    }

    newBound === bound[BILLS];
    work === workSum;
}
