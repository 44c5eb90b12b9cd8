pragma circom 2.1.0;

include "circomlib/circuits/comparators.circom";

/*
 * FieldLessThan: out = 1 if a < b and 0 otherwise, for two field elements compared as their canonical
 * representatives in [0, p), each given as CanonicalHalves (aHigh, aLow) and (bHigh, bLow).
 *
 * circomlib's LessThan(n) is only sound for inputs below 2^n with n <= 252, and a field element can be as large as
 * p - 1 ~ 2^253.6, so the comparison is lexicographic on the halves:
 *
 *   a < b  <=>  aHigh < bHigh  or  (aHigh == bHigh and aLow < bLow)
 *
 * The inputs MUST come from CanonicalHalves: that is where the bounds LessThan(126) and LessThan(128) need (high <
 * 2^126, low < 2^128) and the canonicity (no a + p) come from. Taking halves rather than a and b lets a caller that
 * compares a chain of values (RelaySlot: prevBound < k0 < k1 < ...) decompose each value once instead of twice.
 */
template FieldLessThan() {
    signal input aHigh;
    signal input aLow;
    signal input bHigh;
    signal input bLow;
    signal output out;

    component highLess = LessThan(126);
    highLess.in[0] <== aHigh;
    highLess.in[1] <== bHigh;
    component highEqual = IsEqual();
    highEqual.in[0] <== aHigh;
    highEqual.in[1] <== bHigh;
    component lowLess = LessThan(128);
    lowLess.in[0] <== aLow;
    lowLess.in[1] <== bLow;

    // highLess and highEqual are never both 1, so the sum is a bit.
    out <== highLess.out + highEqual.out * lowLess.out;
}
