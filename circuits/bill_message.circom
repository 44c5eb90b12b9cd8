pragma circom 2.1.0;

include "circomlib/circuits/poseidon.circom";

/*
 * BillMessage: the field element a recipient signs for a delivery bill.
 *
 *   M = Poseidon5([BILL_DOMAIN, nodeId, epoch, messageCount, byteCount])
 *
 * BILL_DOMAIN = uint256(keccak256("sending-network.bill.v1")) mod p (p the BN254 scalar field). It separates bill
 * signatures from anything else the same Baby Jubjub key signs. The same decimal is `BILL_DOMAIN` in sdk/bill/bill.ts;
 * test/sdk/bill.test.ts recomputes it from the keccak and test/circuits/relayBatch.test.ts checks this template
 * against `billMessageHash`.
 *
 * Proves nothing by itself and range-checks nothing: the caller bounds the inputs (RelayBatch: epoch < 2^64,
 * nodeId < 2^160; RelaySlot: messageCount < 2^32, byteCount < 2^48), so that one M stands for one bill.
 */
template BillMessage() {
    var BILL_DOMAIN = 5160903525010374600599226561018681904565195265257399296413695894361620715003;

    signal input nodeId;
    signal input epoch;
    signal input messageCount;
    signal input byteCount;
    signal output out;

    component hash = Poseidon(5);
    hash.inputs[0] <== BILL_DOMAIN;
    hash.inputs[1] <== nodeId;
    hash.inputs[2] <== epoch;
    hash.inputs[3] <== messageCount;
    hash.inputs[4] <== byteCount;
    out <== hash.out;
}
