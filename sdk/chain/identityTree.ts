/**
 * The identity tree as clients see it: an independent TypeScript model of the DID registry's lean incremental Merkle
 * tree (zk-kit's LeanIMT with Poseidon), rebuilt from the registry's `IdentityTreeChanged` events. A client uses it to
 * find its leaf, to give `DidRegistry.rotateBillKey` / `revoke` the sibling nodes they need, and to prove membership
 * against a root the contract knows.
 */
import { LeanIMT } from "@zk-kit/lean-imt";
import { poseidon2 } from "poseidon-lite";

/** The BN254 scalar field: Baby Jubjub coordinates, Poseidon inputs and tree leaves all live below it. */
export const SNARK_SCALAR_FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;

/** A Baby Jubjub public key (twisted Edwards form, as circomlib uses), as `IDidRegistry.BillKey` stores it. */
export interface BillKey {
  x: bigint;
  y: bigint;
}

/** One `IdentityTreeChanged(index, leaf, root)` event: leaf `index` now holds `leaf` (0 when removed). */
export interface IdentityTreeChange {
  index: bigint;
  leaf: bigint;
}

/**
 * The identity tree leaf of a bill key: Poseidon(x, y), as the registry computes it. Does not check that the key is
 * on the curve (the registry does); only that both coordinates are field elements.
 */
export function billKeyHash(key: BillKey): bigint {
  for (const [name, value] of [
    ["x", key.x],
    ["y", key.y],
  ] as const) {
    if (typeof value !== "bigint" || value < 0n || value >= SNARK_SCALAR_FIELD) {
      throw new Error(
        `billKeyHash: expected ${name} to be a field element (0 <= ${name} < field), got ${String(value)}`,
      );
    }
  }
  return poseidon2([key.x, key.y]);
}

function hashNodes(left: bigint, right: bigint): bigint {
  return poseidon2([left, right]);
}

/**
 * The DID registry's identity tree. Semantics follow `InternalLeanIMT` as the registry uses it: leaves are appended
 * at index `size`; a node without a right child takes its left child's value; a removed leaf is set to 0 and keeps
 * its index (so `size` counts removed leaves too, like `treeInfo().size`); the root of an empty tree is 0.
 * Leaves are non-zero field elements, and no two live leaves are equal.
 */
export class IdentityTree {
  private readonly _tree = new LeanIMT<bigint>(hashNodes);
  /** The leaves by index, mirrored so lookups do not copy LeanIMT's array. */
  private readonly _leaves: bigint[] = [];
  private readonly _indexOf = new Map<bigint, number>();

  /** Rebuilds the tree by replaying `IdentityTreeChanged` events in the order they were emitted. */
  static fromEvents(events: readonly IdentityTreeChange[]): IdentityTree {
    const tree = new IdentityTree();
    events.forEach((event, i) => {
      const size = BigInt(tree.size);
      if (event.index === size) {
        if (event.leaf === 0n) {
          throw new Error(`IdentityTree.fromEvents: expected event ${i} to insert a non-zero leaf at ${size}, got 0`);
        }
        tree.insert(event.leaf);
      } else if (event.index >= 0n && event.index < size) {
        if (event.leaf === 0n) tree.remove(event.index);
        else tree.update(event.index, event.leaf);
      } else {
        throw new Error(`IdentityTree.fromEvents: expected event ${i} at an index <= ${size}, got ${event.index}`);
      }
    });
    return tree;
  }

  /** The root, as `DidRegistry.root()` returns it (0 for an empty tree). */
  get root(): bigint {
    return this._tree.size === 0 ? 0n : this._tree.root;
  }

  /** Leaves ever inserted, removed ones included (`treeInfo().size`). */
  get size(): number {
    return this._tree.size;
  }

  /** The tree's depth (`treeInfo().depth`): ceil(log2(size)). */
  get depth(): number {
    return this._tree.depth;
  }

  /** A copy of the leaves by index; removed leaves are 0. */
  get leaves(): bigint[] {
    return this._leaves.slice();
  }

  /** The index of live leaf `leaf`, or -1 if it is not in the tree (0 is never a live leaf). */
  indexOf(leaf: bigint): number {
    return this._indexOf.get(leaf) ?? -1;
  }

  /** Whether `leaf` is a live leaf of the tree. */
  has(leaf: bigint): boolean {
    return this._indexOf.has(leaf);
  }

  /** Appends `leaf` (a registration) and returns its index. */
  insert(leaf: bigint): number {
    this._checkNewLeaf("insert", leaf);
    const index = this._tree.size;
    this._tree.insert(leaf);
    this._leaves.push(leaf);
    this._indexOf.set(leaf, index);
    return index;
  }

  /** Replaces the live leaf at `index` with `leaf` (a bill key rotation). */
  update(index: number | bigint, leaf: bigint): void {
    const i = this._liveIndex("update", index);
    this._checkNewLeaf("update", leaf);
    this._indexOf.delete(this._leaves[i]);
    this._tree.update(i, leaf);
    this._leaves[i] = leaf;
    this._indexOf.set(leaf, i);
  }

  /** Sets the live leaf at `index` to 0 (a revocation); the index stays taken. */
  remove(index: number | bigint): void {
    const i = this._liveIndex("remove", index);
    this._indexOf.delete(this._leaves[i]);
    this._tree.update(i, 0n);
    this._leaves[i] = 0n;
  }

  /**
   * The sibling nodes `DidRegistry.rotateBillKey` and `revoke` expect for the live leaf at `index`: bottom-up, one per
   * level where the leaf's path has a left neighbour or an existing right neighbour (levels where the path node has
   * no right child contribute none). These are LeanIMT's proof siblings.
   */
  siblings(index: number | bigint): bigint[] {
    const i = this._liveIndex("siblings", index);
    return this._tree.generateProof(i).siblings;
  }

  private _liveIndex(caller: string, index: number | bigint): number {
    const i = typeof index === "bigint" ? Number(index) : index;
    if (!Number.isSafeInteger(i) || i < 0 || i >= this._tree.size) {
      throw new Error(`IdentityTree.${caller}: expected an index in [0, ${this._tree.size}), got ${index}`);
    }
    if (this._leaves[i] === 0n) {
      throw new Error(`IdentityTree.${caller}: expected a live leaf at index ${i}, got a removed one`);
    }
    return i;
  }

  private _checkNewLeaf(caller: string, leaf: bigint): void {
    if (typeof leaf !== "bigint" || leaf <= 0n || leaf >= SNARK_SCALAR_FIELD) {
      throw new Error(`IdentityTree.${caller}: expected a leaf with 0 < leaf < field, got ${String(leaf)}`);
    }
    const existing = this._indexOf.get(leaf);
    if (existing !== undefined) {
      throw new Error(`IdentityTree.${caller}: expected a leaf not in the tree, got one already at index ${existing}`);
    }
  }
}
