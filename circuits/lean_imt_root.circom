pragma circom 2.1.0;

include "circomlib/circuits/comparators.circom";
include "circomlib/circuits/poseidon.circom";

/*
 * LeanIMTRoot(MAX_DEPTH): the root that a lean incremental Merkle tree path leads to.
 *
 * The identity tree is zk-kit's lean IMT with Poseidon(2) (DidRegistry on chain, sdk/chain/identityTree.ts off chain):
 * a node without a right sibling is carried up unchanged, so a leaf's path has only the levels where it has a
 * neighbour. @zk-kit/lean-imt's `generateProof(index)` gives exactly that path: `siblings` (one per hashing level,
 * bottom-up; its length is the path's `depth`) and `index`, whose bit j says whether the path node is the right child
 * at the j-th hashing level. The circuit takes that path padded to MAX_DEPTH:
 *
 *   depth            number of hashing levels, 0..MAX_DEPTH (0: a one-leaf tree, the leaf is the root)
 *   pathIndices[j]   bit j of the proof's index (0 for j >= depth)
 *   siblings[j]      the proof's sibling j (0 for j >= depth)
 *
 * and outputs node[depth], where node[0] = leaf and node[j+1] = Poseidon(2)(pathIndices[j] ? [siblings[j], node[j]]
 * : [node[j], siblings[j]]), which is LeanIMT.verifyProof's computation.
 *
 * Constrains: every pathIndices[j] is a bit; depth is one of 0..MAX_DEPTH (exactly one `isAtDepth` is 1, otherwise
 * unsatisfiable). Levels j >= depth are hashed but ignored, so their pathIndices/siblings are free: the output does
 * not depend on them.
 *
 * The caller compares `root` with a public root. A lean IMT hashes leaves and nodes with the same Poseidon(2), so
 * a shorter path can start from an internal node; the caller must make the leaf a hash nothing internal can be (the
 * identity tree's leaves are Poseidon(2) of a Baby Jubjub point, and RelaySlot checks the point is on the curve).
 */
template LeanIMTRoot(MAX_DEPTH) {
    signal input leaf;
    signal input depth;
    signal input pathIndices[MAX_DEPTH];
    signal input siblings[MAX_DEPTH];
    signal output root;

    signal nodes[MAX_DEPTH + 1];
    signal left[MAX_DEPTH];
    signal selected[MAX_DEPTH + 1];
    component isAtDepth[MAX_DEPTH + 1];
    component hashes[MAX_DEPTH];

    nodes[0] <== leaf;
    for (var j = 0; j < MAX_DEPTH; j++) {
        pathIndices[j] * (pathIndices[j] - 1) === 0;

        // One multiplication orders the pair: left = bit ? sibling : node, right = the other one.
        left[j] <== nodes[j] + pathIndices[j] * (siblings[j] - nodes[j]);
        hashes[j] = Poseidon(2);
        hashes[j].inputs[0] <== left[j];
        hashes[j].inputs[1] <== nodes[j] + siblings[j] - left[j];
        nodes[j + 1] <== hashes[j].out;
    }

    // root = nodes[depth]. The indicators also range-check depth: for depth outside 0..MAX_DEPTH all of them are 0.
    var depthMatches = 0;
    var rootSum = 0;
    for (var j = 0; j <= MAX_DEPTH; j++) {
        isAtDepth[j] = IsEqual();
        isAtDepth[j].in[0] <== depth;
        isAtDepth[j].in[1] <== j;
        selected[j] <== isAtDepth[j].out * nodes[j];
        depthMatches += isAtDepth[j].out;
        rootSum += selected[j];
    }
    depthMatches === 1;
    root <== rootSum;
}
