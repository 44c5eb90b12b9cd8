/**
 * Builds a proof-of-relay batch: the input object for circuits/relay_batch.circom (RelayBatch) and, from an
 * independent TypeScript model of what the circuit proves (poseidon-lite, @zk-kit/eddsa-poseidon), the public signals
 * the proof will carry. Guardians use it to prove batches; contract tests use it to build them.
 *
 * Public signals, in the circuit's order (the rollup contract builds exactly this array, length 2 + 4 * slots):
 *
 *   [epoch, identityRoot, nodeId[0..slots-1], prevBound[0..slots-1], newBound[0..slots-1], work[0..slots-1]]
 *
 * A slot's bills are sorted by order key (the top 200 bits of recipientKeyHash), must all lie strictly above its
 * prevBound (itself an order key, < 2^200), and are padded to the circuit's bill count with disabled bills; unused
 * slots are padded with nodeId 0 and bounds 0 (the contract skips nodeId 0). Each bill's key hash must be a live leaf
 * of the identity tree the batch is proven against.
 */
import type { LeanIMT } from "@zk-kit/lean-imt";
import { poseidon2 } from "poseidon-lite";
import {
  MAX_EPOCH,
  MAX_MESSAGE_COUNT,
  MAX_NODE_ID,
  SNARK_SCALAR_FIELD,
  creditedWork,
  recipientKeyHash,
  verifyBill,
  type SignedBill,
} from "./bill";

/** The template parameters of a RelayBatch main component (circuits/config.json `params`, in order). */
export interface RelayCircuitParams {
  /** SLOTS: node slots per batch. */
  readonly slots: number;
  /** BILLS: bills per slot. */
  readonly bills: number;
  /** TREE_DEPTH: the deepest identity tree path the circuit takes. */
  readonly treeDepth: number;
  /** MAX_WORK_PER_BILL: the most messages one bill credits. */
  readonly maxWorkPerBill: bigint;
}

/** `relay_batch_test` in circuits/config.json (a test checks they agree). */
export const RELAY_BATCH_TEST_PARAMS: RelayCircuitParams = { slots: 2, bills: 2, treeDepth: 6, maxWorkPerBill: 1000n };
/** `relay_batch_prod` in circuits/config.json (a test checks they agree). */
export const RELAY_BATCH_PROD_PARAMS: RelayCircuitParams = {
  slots: 8,
  bills: 16,
  treeDepth: 20,
  maxWorkPerBill: 1000n,
};

/** The params of a config.json `params` array [SLOTS, BILLS, TREE_DEPTH, MAX_WORK_PER_BILL]. */
export function relayCircuitParams(params: readonly number[]): RelayCircuitParams {
  if (!Array.isArray(params) || params.length !== 4 || !params.every((p) => Number.isSafeInteger(p) && p >= 1)) {
    throw new BatchInputError(
      `relayCircuitParams: expected [SLOTS, BILLS, TREE_DEPTH, MAX_WORK_PER_BILL] of positive integers, got ${JSON.stringify(params)}`,
    );
  }
  return { slots: params[0], bills: params[1], treeDepth: params[2], maxWorkPerBill: BigInt(params[3]) };
}

/**
 * What a batch needs of the identity tree. sdk/chain/identityTree's `IdentityTree` has this shape; `leanIMTView`
 * adapts a bare @zk-kit LeanIMT. `siblings(index)` are LeanIMT's proof siblings (bottom-up, only the levels where the
 * path has a neighbour).
 */
export interface IdentityTreeView {
  readonly root: bigint;
  readonly size: number;
  indexOf(leaf: bigint): number;
  siblings(index: number): bigint[];
}

/** An IdentityTreeView of a @zk-kit LeanIMT whose hash is Poseidon2 (left, right), as the identity registry's. */
export function leanIMTView(tree: LeanIMT<bigint>): IdentityTreeView {
  return {
    get root() {
      return tree.size === 0 ? 0n : tree.root;
    },
    get size() {
      return tree.size;
    },
    indexOf: (leaf) => tree.indexOf(leaf),
    siblings: (index) => tree.generateProof(index).siblings,
  };
}

/** A leaf's path as LeanIMTRoot takes it, padded to the circuit's TREE_DEPTH. */
export interface MembershipPath {
  /** Hashing levels (the length of LeanIMT's proof siblings). */
  readonly depth: number;
  /** Bit j: whether the path node is the right child at hashing level j (0 past depth). */
  readonly pathIndices: bigint[];
  /** Sibling at hashing level j (0 past depth). */
  readonly siblings: bigint[];
}

/** One node's claim in a batch: its bills for the epoch, to be settled above the bound the contract stores for it. */
export interface SlotClaim {
  /** The node operator's address as a uint160 (non-zero: 0 marks padding). */
  readonly nodeId: bigint;
  /** The bound the contract stores for (nodeId, epoch): 0 if nothing was settled yet. */
  readonly prevBound: bigint;
  /** Its bills, any order; at most `bills` of them, one per recipient, every key hash above prevBound. */
  readonly bills: readonly SignedBill[];
}

export interface BatchRequest {
  readonly epoch: bigint;
  /** The identity tree, at the root the proof will be checked against (one the registry knows). */
  readonly tree: IdentityTreeView;
  /** At most `slots` claims, distinct node ids. */
  readonly slots: readonly SlotClaim[];
}

/** One slot of a built batch, as the model computes it. */
export interface BatchSlot {
  readonly nodeId: bigint;
  readonly prevBound: bigint;
  /** The last (largest) order key of the slot's bills, or prevBound if it has none. */
  readonly newBound: bigint;
  /** The sum over the slot's bills of min(messageCount, maxWorkPerBill). */
  readonly work: bigint;
  /** The slot's bills, sorted by order key (empty for padding). */
  readonly bills: readonly SignedBill[];
  readonly recipientKeyHashes: readonly bigint[];
}

/** RelayBatch's input signals, by name, shaped [slot][bill][level] as the circuit declares them. */
export interface RelayBatchInput {
  epoch: bigint;
  identityRoot: bigint;
  nodeId: bigint[];
  prevBound: bigint[];
  newBound: bigint[];
  work: bigint[];
  enabled: bigint[][];
  messageCount: bigint[][];
  byteCount: bigint[][];
  Ax: bigint[][];
  Ay: bigint[][];
  S: bigint[][];
  R8x: bigint[][];
  R8y: bigint[][];
  treeDepth: bigint[][];
  pathIndices: bigint[][][];
  siblings: bigint[][][];
}

export interface RelayBatch {
  readonly params: RelayCircuitParams;
  readonly epoch: bigint;
  readonly identityRoot: bigint;
  /** Exactly `params.slots` slots: the claims in the order given, then padding. */
  readonly slots: readonly BatchSlot[];
  /** The circuit input (bigints; snarkjs takes them as they are). */
  readonly input: RelayBatchInput;
}

/** Thrown when a batch cannot be built from the request: the message names the slot, bill and what was expected. */
export class BatchInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BatchInputError";
  }
}

/**
 * Baby Jubjub's Base8 generator: the key and R8 of a disabled bill. circomlib's EdDSA verifier keeps some constraints
 * when disabled (it doubles the key and multiplies by it; EscalarMulAny fails on the zero point), so padding must be
 * a valid subgroup point; with S = 0 every one of them holds.
 */
export const PADDING_POINT = {
  x: 5299619240641551281634865583518297030282874472190772894086521144482721001553n,
  y: 16950150798460657717958625567821834550301663161624707787222815936182638968203n,
} as const;

/**
 * The lean-IMT path of `leaf` in `tree`, padded to `maxDepth`, checked against the tree's root with Poseidon2 here.
 * The path bits are LeanIMT's compressed index: only levels where the node has a neighbour count.
 */
export function membershipPath(tree: IdentityTreeView, leaf: bigint, maxDepth: number): MembershipPath {
  const index = tree.indexOf(leaf);
  if (index < 0) throw new BatchInputError(`membershipPath: expected a live leaf of the identity tree, got ${leaf}`);
  const siblings = tree.siblings(index);
  const bits: bigint[] = [];
  // Level l has ceil(size / 2^l) nodes; the node at index >> l has a sibling if its neighbour index exists.
  for (let width = tree.size, i = index; width > 1; width = Math.ceil(width / 2), i >>= 1) {
    if ((i ^ 1) < width) bits.push(BigInt(i & 1));
  }
  if (bits.length !== siblings.length) {
    throw new BatchInputError(
      `membershipPath: expected ${bits.length} siblings for leaf ${index} of ${tree.size}, got ${siblings.length}`,
    );
  }
  if (siblings.length > maxDepth) {
    throw new BatchInputError(
      `membershipPath: expected a path of at most ${maxDepth} levels (the circuit's TREE_DEPTH), got ${siblings.length}`,
    );
  }
  let node = leaf;
  siblings.forEach((sibling, j) => {
    node = bits[j] === 1n ? poseidon2([sibling, node]) : poseidon2([node, sibling]);
  });
  if (node !== tree.root) {
    throw new BatchInputError(
      `membershipPath: expected the path of leaf ${index} to reach root ${tree.root}, got ${node}`,
    );
  }
  const pad = (values: bigint[]) => [...values, ...Array<bigint>(maxDepth - values.length).fill(0n)];
  return { depth: siblings.length, pathIndices: pad(bits), siblings: pad(siblings) };
}

/** Order keys are the top 200 bits of a key hash (circuits/order_key.circom): below this. */
export const ORDER_KEY_LIMIT = 1n << 200n;
/** Bits dropped from a 254-bit key hash to make its order key. */
const ORDER_KEY_SHIFT = 54n;

/**
 * The order key of a recipient key hash: its top 200 bits. A slot's recipients are ordered by it and the rollup
 * stores the last one as the node's bound (200 bits, so the bound and the node's work share one storage slot).
 */
export function orderKey(keyHash: bigint): bigint {
  if (keyHash < 0n || keyHash >= SNARK_SCALAR_FIELD) {
    throw new BatchInputError(`orderKey: expected a field element, got ${keyHash}`);
  }
  return keyHash >> ORDER_KEY_SHIFT;
}

/**
 * A slot's bills in the order RelaySlot takes them: by order key, strictly increasing, the first strictly above
 * prevBound. Throws BatchInputError, after `where` and naming bills by their index in `bills`, where RelaySlot would
 * reject: an order key at or below prevBound, the same recipient twice, or two recipients whose key hashes share
 * their top 200 bits (about 2^-100 a pair, never seen; the circuit takes at most one of them per node and epoch).
 */
export function sortByOrderKey<T extends { readonly keyHash: bigint }>(
  where: string,
  prevBound: bigint,
  bills: readonly T[],
): (T & { readonly key: bigint })[] {
  const keyed = bills.map((bill, b) => {
    const key = orderKey(bill.keyHash);
    if (key <= prevBound) {
      const got = `${key} (key hash ${bill.keyHash})`;
      throw new BatchInputError(`${where}, bill ${b}: expected an order key above prevBound ${prevBound}, got ${got}`);
    }
    return { bill, b, key };
  });
  keyed.sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : x.b - y.b));
  for (let i = 1; i < keyed.length; i++) {
    const [first, second] = [keyed[i - 1], keyed[i]];
    if (first.key !== second.key) continue;
    const pair = `bills ${first.b} and ${second.b}`;
    if (first.bill.keyHash === second.bill.keyHash) {
      throw new BatchInputError(
        `${where}: expected one bill per recipient, got ${pair} from key hash ${first.bill.keyHash}`,
      );
    }
    throw new BatchInputError(
      `${where}: expected distinct order keys, got ${pair} whose key hashes ${first.bill.keyHash} and ` +
        `${second.bill.keyHash} share order key ${first.key}`,
    );
  }
  return keyed.map(({ bill, key }) => ({ ...bill, key }));
}

/**
 * Builds a batch: checks every claim against what the circuit will prove (and throws BatchInputError, naming the slot
 * and bill, where it would not), sorts each slot's bills by order key, pads, and computes bounds and work.
 */
export function buildRelayBatch(params: RelayCircuitParams, request: BatchRequest): RelayBatch {
  checkParams(params);
  const { epoch, tree, slots: claims } = request;
  if (typeof epoch !== "bigint" || epoch < 0n || epoch > MAX_EPOCH) {
    throw new BatchInputError(`buildRelayBatch: expected epoch to be a uint64 bigint, got ${String(epoch)}`);
  }
  if (claims.length > params.slots) {
    throw new BatchInputError(`buildRelayBatch: expected at most ${params.slots} slots, got ${claims.length}`);
  }
  const identityRoot = tree.root;
  const seenNodes = new Set<bigint>();
  const slots: BatchSlot[] = claims.map((claim, s) => {
    const where = `buildRelayBatch: slot ${s}`;
    if (typeof claim.nodeId !== "bigint" || claim.nodeId <= 0n || claim.nodeId > MAX_NODE_ID) {
      throw new BatchInputError(`${where}: expected a non-zero uint160 nodeId, got ${String(claim.nodeId)}`);
    }
    if (seenNodes.has(claim.nodeId)) {
      throw new BatchInputError(`${where}: expected each node in one slot, got node ${claim.nodeId} again`);
    }
    seenNodes.add(claim.nodeId);
    if (typeof claim.prevBound !== "bigint" || claim.prevBound < 0n || claim.prevBound >= ORDER_KEY_LIMIT) {
      throw new BatchInputError(
        `${where}: expected prevBound to be an order key (< 2^200), got ${String(claim.prevBound)}`,
      );
    }
    if (claim.bills.length > params.bills) {
      throw new BatchInputError(`${where}: expected at most ${params.bills} bills, got ${claim.bills.length}`);
    }
    const checked = claim.bills.map((signed, b) => {
      const whereBill = `${where}, bill ${b}`;
      if (signed.bill.nodeId !== claim.nodeId) {
        throw new BatchInputError(
          `${whereBill}: expected a bill for node ${claim.nodeId}, got one for ${signed.bill.nodeId}`,
        );
      }
      if (signed.bill.epoch !== epoch) {
        throw new BatchInputError(`${whereBill}: expected a bill for epoch ${epoch}, got one for ${signed.bill.epoch}`);
      }
      if (!verifyBill(signed)) throw new BatchInputError(`${whereBill}: expected a valid signature by the bill key`);
      const keyHash = recipientKeyHash(signed.billKey);
      if (tree.indexOf(keyHash) < 0) {
        throw new BatchInputError(`${whereBill}: expected the bill key in the identity tree, got key hash ${keyHash}`);
      }
      return { signed, keyHash };
    });
    const keyed = sortByOrderKey(where, claim.prevBound, checked);
    return {
      nodeId: claim.nodeId,
      prevBound: claim.prevBound,
      newBound: keyed.length > 0 ? keyed[keyed.length - 1].key : claim.prevBound,
      work: keyed.reduce((sum, { signed }) => sum + creditedWork(signed.bill, params.maxWorkPerBill), 0n),
      bills: keyed.map(({ signed }) => signed),
      recipientKeyHashes: keyed.map(({ keyHash }) => keyHash),
    };
  });
  while (slots.length < params.slots) {
    slots.push({ nodeId: 0n, prevBound: 0n, newBound: 0n, work: 0n, bills: [], recipientKeyHashes: [] });
  }
  return { params, epoch, identityRoot, slots, input: circuitInput(params, epoch, tree, slots) };
}

/** The public signals of a batch, in RelayBatch's order: [epoch, identityRoot, nodeId[], prevBound[], newBound[], work[]]. */
export function publicSignals(batch: RelayBatch): bigint[] {
  return [
    batch.epoch,
    batch.identityRoot,
    ...batch.slots.map((slot) => slot.nodeId),
    ...batch.slots.map((slot) => slot.prevBound),
    ...batch.slots.map((slot) => slot.newBound),
    ...batch.slots.map((slot) => slot.work),
  ];
}

function circuitInput(
  params: RelayCircuitParams,
  epoch: bigint,
  tree: IdentityTreeView,
  slots: BatchSlot[],
): RelayBatchInput {
  const perBill = <T>(f: (signed: SignedBill | undefined, keyHash: bigint | undefined) => T): T[][] =>
    slots.map((slot) => Array.from({ length: params.bills }, (_, b) => f(slot.bills[b], slot.recipientKeyHashes[b])));
  const paths = perBill((_signed, keyHash) =>
    keyHash === undefined ? undefined : membershipPath(tree, keyHash, params.treeDepth),
  );
  const zeros = () => Array<bigint>(params.treeDepth).fill(0n);
  return {
    epoch,
    identityRoot: tree.root,
    nodeId: slots.map((slot) => slot.nodeId),
    prevBound: slots.map((slot) => slot.prevBound),
    newBound: slots.map((slot) => slot.newBound),
    work: slots.map((slot) => slot.work),
    enabled: perBill((signed) => (signed ? 1n : 0n)),
    messageCount: perBill((signed) => signed?.bill.messageCount ?? 0n),
    byteCount: perBill((signed) => signed?.bill.byteCount ?? 0n),
    Ax: perBill((signed) => signed?.billKey.x ?? PADDING_POINT.x),
    Ay: perBill((signed) => signed?.billKey.y ?? PADDING_POINT.y),
    S: perBill((signed) => signed?.signature.S ?? 0n),
    R8x: perBill((signed) => signed?.signature.R8.x ?? PADDING_POINT.x),
    R8y: perBill((signed) => signed?.signature.R8.y ?? PADDING_POINT.y),
    treeDepth: paths.map((row) => row.map((path) => BigInt(path?.depth ?? 0))),
    pathIndices: paths.map((row) => row.map((path) => path?.pathIndices ?? zeros())),
    siblings: paths.map((row) => row.map((path) => path?.siblings ?? zeros())),
  };
}

function checkParams(params: RelayCircuitParams): void {
  const { slots, bills, treeDepth, maxWorkPerBill } = params;
  for (const [name, value] of [
    ["slots", slots],
    ["bills", bills],
    ["treeDepth", treeDepth],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new BatchInputError(
        `buildRelayBatch: expected params.${name} to be a positive integer, got ${String(value)}`,
      );
    }
  }
  if (typeof maxWorkPerBill !== "bigint" || maxWorkPerBill < 0n || maxWorkPerBill > MAX_MESSAGE_COUNT) {
    throw new BatchInputError(
      `buildRelayBatch: expected params.maxWorkPerBill to be a bigint below 2^32, got ${String(maxWorkPerBill)}`,
    );
  }
}
