pragma circom 2.1.0;

include "circomlib/circuits/eddsaposeidon.circom";
include "circomlib/circuits/poseidon.circom";

/*
 * SignatureMembershipFloor(TREE_DEPTH): the least any bill costs, for benchmarks only (bench/ compares RelaySlot's
 * constraints per bill with this). Not used by the protocol.
 *
 * One EdDSA-Poseidon signature by (Ax, Ay) over M, and the key hash Poseidon(2)(Ax, Ay) at the end of a full-depth
 * binary Poseidon(2) Merkle path (one bit and one multiplication per level) leading to root. Nothing else: no
 * bill message, no range checks, no ordering, no lean-IMT depth selection.
 */
template SignatureMembershipFloor(TREE_DEPTH) {
    signal input root;
    signal input M;
    signal input Ax;
    signal input Ay;
    signal input S;
    signal input R8x;
    signal input R8y;
    signal input pathIndices[TREE_DEPTH];
    signal input siblings[TREE_DEPTH];

    component signature = EdDSAPoseidonVerifier();
    signature.enabled <== 1;
    signature.Ax <== Ax;
    signature.Ay <== Ay;
    signature.S <== S;
    signature.R8x <== R8x;
    signature.R8y <== R8y;
    signature.M <== M;

    signal nodes[TREE_DEPTH + 1];
    signal left[TREE_DEPTH];
    component keyHash = Poseidon(2);
    keyHash.inputs[0] <== Ax;
    keyHash.inputs[1] <== Ay;
    nodes[0] <== keyHash.out;

    component hashes[TREE_DEPTH];
    for (var j = 0; j < TREE_DEPTH; j++) {
        pathIndices[j] * (pathIndices[j] - 1) === 0;
        left[j] <== nodes[j] + pathIndices[j] * (siblings[j] - nodes[j]);
        hashes[j] = Poseidon(2);
        hashes[j].inputs[0] <== left[j];
        hashes[j].inputs[1] <== nodes[j] + siblings[j] - left[j];
        nodes[j + 1] <== hashes[j].out;
    }
    root === nodes[TREE_DEPTH];
}
