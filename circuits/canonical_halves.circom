pragma circom 2.1.0;

include "circomlib/circuits/bitify.circom";

/*
 * CanonicalHalves: splits a field element's canonical representative x in [0, p) into
 *
 *   high = floor(x / 2^128) < 2^126   and   low = x mod 2^128 < 2^128.
 *
 * Num2Bits_strict gives the 254 bits and its AliasCheck rejects the bits of x + p (which still fits in 254 bits when
 * x < 2^254 - p), so the halves are those of the integer in [0, p) and comparing them compares field elements as
 * integers. The bounds on high and low come from the bit decomposition; FieldLessThan relies on them.
 */
template CanonicalHalves() {
    signal input in;
    signal output high;
    signal output low;

    component bits = Num2Bits_strict();
    bits.in <== in;

    var lowSum = 0;
    var highSum = 0;
    var weight = 1;
    for (var i = 0; i < 128; i++) {
        lowSum += bits.out[i] * weight;
        weight += weight;
    }
    weight = 1;
    for (var i = 128; i < 254; i++) {
        highSum += bits.out[i] * weight;
        weight += weight;
    }
    low <== lowSum;
    high <== highSum;
}
