pragma circom 2.1.0;

include "circomlib/circuits/bitify.circom";

/*
 * OrderKey: the recipient order key of a key hash: its top ORDER_KEY_BITS = 200 bits,
 *
 *   orderKey = floor(x / 2^54)  for the canonical representative x in [0, p) of `in`,  so orderKey < 2^200.
 *
 * Why 200 bits: the rollup stores a node's bound and its work for an epoch in one 256-bit storage slot (bound 200
 * bits, work 56), one SSTORE per slot settled. Two different recipients share an order key only if their Poseidon key
 * hashes agree in the top 200 bits: about 2^-100 per pair, so never in practice; if it happened, the second of them
 * could not be billed after the first in the same node and epoch (the builder refuses such a pair).
 *
 * Num2Bits_strict gives the 254 bits and its AliasCheck rejects the bits of x + p, so the key is that of the integer
 * in [0, p). The bound orderKey < 2^200 comes from the decomposition and is what LessThan(200) relies on.
 */
template OrderKey() {
    signal input in;
    signal output out;

    component bits = Num2Bits_strict();
    bits.in <== in;

    var sum = 0;
    var weight = 1;
    for (var i = 54; i < 254; i++) {
        sum += bits.out[i] * weight;
        weight += weight;
    }
    out <== sum;
}
