/**
 * The delivery bill: what a recipient's client signs for the edge node that delivered to it, and what the
 * proof-of-relay circuit (circuits/relay_slot.circom) checks. One definition, shared by clients, edge nodes,
 * guardians and tests, so they cannot drift apart.
 *
 * A bill is cumulative: "node `nodeId` delivered to me `messageCount` messages, `byteCount` bytes, in `epoch`". A node
 * keeps only the latest bill per recipient per epoch. The recipient signs
 *
 *   M = Poseidon5([BILL_DOMAIN, nodeId, epoch, messageCount, byteCount])
 *
 * with EdDSA-Poseidon on Baby Jubjub (circomlib's EdDSAPoseidonVerifier; @zk-kit/eddsa-poseidon with its default
 * blake-1 key derivation signs and verifies compatibly) under its bill key, whose hash Poseidon2(x, y) is the
 * recipient's leaf in the identity tree.
 *
 * Wire form (`encodeSignedBill`), 135 bytes:
 *
 *   offset size  field
 *        0    1  version, 0x01
 *        1   20  nodeId        big-endian (the node operator's address)
 *       21    8  epoch         big-endian
 *       29    4  messageCount  big-endian
 *       33    6  byteCount     big-endian
 *       39   32  bill key      packed Baby Jubjub point: y little-endian, top bit = sign of x (circomlib packPoint)
 *       71   64  signature     packed R8 (32, as above) then S (32, little-endian) (circomlib packSignature)
 *
 * The widths are the field bounds, so every well-formed byte string is a bill the circuit accepts the shape of.
 */
import { derivePublicKey, packPublicKey, signMessage, unpackPublicKey, verifySignature } from "@zk-kit/eddsa-poseidon";
import { poseidon2, poseidon5 } from "poseidon-lite";

/** The BN254 scalar field: Poseidon inputs, Baby Jubjub coordinates and circuit signals live below it. */
export const SNARK_SCALAR_FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;

/** The order of Baby Jubjub's prime-order subgroup (the curve order / 8); an EdDSA `S` is below it. */
export const BABY_JUBJUB_SUBORDER = 2736030358979909402780800718157159386076813972158567259200215660948447373041n;

/**
 * Domain separator of bill signatures: uint256(keccak256("sending-network.bill.v1")) mod SNARK_SCALAR_FIELD. The
 * same decimal is written in circuits/bill_message.circom; tests recompute it and check the two agree.
 */
export const BILL_DOMAIN = 5160903525010374600599226561018681904565195265257399296413695894361620715003n;

/** Bounds of the bill fields, as the circuit range-checks them (nodeId and epoch in RelayBatch). */
export const MAX_NODE_ID = (1n << 160n) - 1n; // an Ethereum address
export const MAX_EPOCH = (1n << 64n) - 1n; // a uint64 epoch number
export const MAX_MESSAGE_COUNT = (1n << 32n) - 1n; // Num2Bits(32) in RelaySlot
export const MAX_BYTE_COUNT = (1n << 48n) - 1n; // Num2Bits(48) in RelaySlot

/** Version byte of the wire form; a new layout takes a new version. */
export const SIGNED_BILL_VERSION = 1;
/** Length of the wire form of a signed bill. */
export const SIGNED_BILL_LENGTH = 135;

/** What a recipient signs. All fields are non-negative integers within the MAX_* bounds above. */
export interface Bill {
  /** The edge node operator's Ethereum address, as a uint160 (`nodeIdFromAddress`). */
  readonly nodeId: bigint;
  readonly epoch: bigint;
  /** Messages delivered to the recipient in the epoch so far (cumulative). */
  readonly messageCount: bigint;
  /** Bytes delivered to the recipient in the epoch so far (cumulative). */
  readonly byteCount: bigint;
}

/** A Baby Jubjub point in circomlib's twisted Edwards form; compatible with sdk/chain/identityTree's `BillKey`. */
export interface BabyJubjubPoint {
  readonly x: bigint;
  readonly y: bigint;
}

/** An EdDSA-Poseidon signature: the nonce point R8 and the scalar S < BABY_JUBJUB_SUBORDER. */
export interface BillSignature {
  readonly R8: BabyJubjubPoint;
  readonly S: bigint;
}

/** A bill with the recipient's bill key and its signature. */
export interface SignedBill {
  readonly bill: Bill;
  /** The recipient's bill key (its public key); its `recipientKeyHash` is its identity tree leaf. */
  readonly billKey: BabyJubjubPoint;
  readonly signature: BillSignature;
}

/** Thrown for a bill, key, signature or encoding that does not have the required form. */
export class BillFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BillFormatError";
  }
}

/** The nodeId of a node operator's address ("0x" and 40 hex digits, any case). */
export function nodeIdFromAddress(address: string): bigint {
  if (typeof address !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(address)) {
    throw new BillFormatError(
      `nodeIdFromAddress: expected a 20-byte 0x-prefixed hex address, got ${describe(address)}`,
    );
  }
  return BigInt(address);
}

/** The address (lowercase hex) of a nodeId. */
export function addressFromNodeId(nodeId: bigint): string {
  checkUint("addressFromNodeId", "nodeId", nodeId, MAX_NODE_ID);
  return "0x" + nodeId.toString(16).padStart(40, "0");
}

/** Checks that `bill` has the shape and bounds of a Bill; throws BillFormatError naming `caller` otherwise. */
export function checkBill(bill: Bill, caller = "checkBill"): void {
  if (typeof bill !== "object" || bill === null) {
    throw new BillFormatError(`${caller}: expected a bill object, got ${describe(bill)}`);
  }
  checkUint(caller, "nodeId", bill.nodeId, MAX_NODE_ID);
  checkUint(caller, "epoch", bill.epoch, MAX_EPOCH);
  checkUint(caller, "messageCount", bill.messageCount, MAX_MESSAGE_COUNT);
  checkUint(caller, "byteCount", bill.byteCount, MAX_BYTE_COUNT);
}

/** M = Poseidon5([BILL_DOMAIN, nodeId, epoch, messageCount, byteCount]), the field element a recipient signs. */
export function billMessageHash(bill: Bill): bigint {
  checkBill(bill, "billMessageHash");
  return poseidon5([BILL_DOMAIN, bill.nodeId, bill.epoch, bill.messageCount, bill.byteCount]);
}

/** The identity tree leaf of a bill key: Poseidon2(x, y), as the identity registry computes it. */
export function recipientKeyHash(billKey: BabyJubjubPoint): bigint {
  checkPointShape("recipientKeyHash", "billKey", billKey);
  return poseidon2([billKey.x, billKey.y]);
}

/** The bill key (public key) of a 32-byte bill private key (blake-1 derivation, as circomlibjs). */
export function billKeyOf(privateKey: Uint8Array): BabyJubjubPoint {
  checkPrivateKey("billKeyOf", privateKey);
  const [x, y] = derivePublicKey(privateKey);
  return { x, y };
}

/** Signs `bill` with a recipient's 32-byte bill private key. Deterministic: the same key and bill, the same bytes. */
export function signBill(privateKey: Uint8Array, bill: Bill): SignedBill {
  checkPrivateKey("signBill", privateKey);
  checkBill(bill, "signBill");
  const message = billMessageHash(bill);
  const { R8, S } = signMessage(privateKey, message);
  return {
    bill: { nodeId: bill.nodeId, epoch: bill.epoch, messageCount: bill.messageCount, byteCount: bill.byteCount },
    billKey: billKeyOf(privateKey),
    signature: { R8: { x: R8[0], y: R8[1] }, S },
  };
}

/**
 * Whether `signed` carries a valid signature of its bill by its bill key, by the circuit's rules: the key and R8 on
 * Baby Jubjub, the key not of small order, S < BABY_JUBJUB_SUBORDER, and S·B8 = R8 + 8·H(R8, A, M)·A. Throws
 * BillFormatError if the bill's fields are out of bounds or a value is not a field element; returns false for
 * anything cryptographically invalid.
 */
export function verifyBill(signed: SignedBill): boolean {
  checkSignedBillShape("verifyBill", signed);
  const { billKey, signature } = signed;
  if (!onCurve(billKey) || !onCurve(signature.R8) || hasSmallOrder(billKey)) return false;
  if (signature.S >= BABY_JUBJUB_SUBORDER) return false;
  return verifySignature(billMessageHash(signed.bill), { R8: [signature.R8.x, signature.R8.y], S: signature.S }, [
    billKey.x,
    billKey.y,
  ]);
}

/** The work a bill credits its node: min(messageCount, cap), as RelaySlot computes it with cap = MAX_WORK_PER_BILL. */
export function creditedWork(bill: Bill, cap: bigint): bigint {
  checkBill(bill, "creditedWork");
  checkUint("creditedWork", "cap", cap, MAX_MESSAGE_COUNT);
  return bill.messageCount < cap ? bill.messageCount : cap;
}

/** The 135-byte wire form of a signed bill (layout in this file's header). Does not check the signature. */
export function encodeSignedBill(signed: SignedBill): Uint8Array {
  checkSignedBillShape("encodeSignedBill", signed);
  const { bill, billKey, signature } = signed;
  if (!onCurve(billKey))
    throw new BillFormatError("encodeSignedBill: expected the bill key on Baby Jubjub, got a point off the curve");
  if (!onCurve(signature.R8))
    throw new BillFormatError("encodeSignedBill: expected R8 on Baby Jubjub, got a point off the curve");
  if (signature.S >= BABY_JUBJUB_SUBORDER) {
    throw new BillFormatError(`encodeSignedBill: expected S < the Baby Jubjub subgroup order, got ${signature.S}`);
  }
  const out = new Uint8Array(SIGNED_BILL_LENGTH);
  out[0] = SIGNED_BILL_VERSION;
  out.set(toBigEndian(bill.nodeId, 20), 1);
  out.set(toBigEndian(bill.epoch, 8), 21);
  out.set(toBigEndian(bill.messageCount, 4), 29);
  out.set(toBigEndian(bill.byteCount, 6), 33);
  out.set(packPoint(billKey), 39);
  out.set(packPoint(signature.R8), 71);
  out.set(toLittleEndian(signature.S, 32), 103);
  return out;
}

/**
 * Parses the wire form of a signed bill, strictly: exactly SIGNED_BILL_LENGTH bytes, version 1, both points
 * canonically packed and on Baby Jubjub, S < BABY_JUBJUB_SUBORDER. Throws BillFormatError otherwise. Does not check
 * the signature (`verifyBill` does).
 */
export function decodeSignedBill(bytes: Uint8Array): SignedBill {
  if (!(bytes instanceof Uint8Array)) {
    throw new BillFormatError(`decodeSignedBill: expected a Uint8Array, got ${describe(bytes)}`);
  }
  if (bytes.length !== SIGNED_BILL_LENGTH) {
    throw new BillFormatError(`decodeSignedBill: expected ${SIGNED_BILL_LENGTH} bytes, got ${bytes.length}`);
  }
  if (bytes[0] !== SIGNED_BILL_VERSION) {
    throw new BillFormatError(`decodeSignedBill: expected version ${SIGNED_BILL_VERSION}, got ${bytes[0]}`);
  }
  const bill: Bill = {
    nodeId: fromBigEndian(bytes.subarray(1, 21)),
    epoch: fromBigEndian(bytes.subarray(21, 29)),
    messageCount: fromBigEndian(bytes.subarray(29, 33)),
    byteCount: fromBigEndian(bytes.subarray(33, 39)),
  };
  const billKey = unpackPoint("decodeSignedBill", "bill key", bytes.subarray(39, 71));
  const R8 = unpackPoint("decodeSignedBill", "R8", bytes.subarray(71, 103));
  const S = fromLittleEndian(bytes.subarray(103, 135));
  if (S >= BABY_JUBJUB_SUBORDER) {
    throw new BillFormatError(`decodeSignedBill: expected S < the Baby Jubjub subgroup order, got ${S}`);
  }
  return { bill, billKey, signature: { R8, S } };
}

// --- internals -----------------------------------------------------------------------------------------------------

const CURVE_A = 168700n;
const CURVE_D = 168696n;

function checkUint(caller: string, name: string, value: unknown, max: bigint): asserts value is bigint {
  if (typeof value !== "bigint" || value < 0n || value > max) {
    throw new BillFormatError(`${caller}: expected ${name} to be a bigint in [0, ${max}], got ${describe(value)}`);
  }
}

function checkPrivateKey(caller: string, privateKey: unknown): asserts privateKey is Uint8Array {
  if (!(privateKey instanceof Uint8Array) || privateKey.length !== 32) {
    const got = privateKey instanceof Uint8Array ? `${privateKey.length} bytes` : describe(privateKey);
    throw new BillFormatError(`${caller}: expected a 32-byte bill private key, got ${got}`);
  }
}

function checkPointShape(caller: string, name: string, point: unknown): asserts point is BabyJubjubPoint {
  if (typeof point !== "object" || point === null) {
    throw new BillFormatError(`${caller}: expected ${name} to be a point {x, y}, got ${describe(point)}`);
  }
  const { x, y } = point as { x?: unknown; y?: unknown };
  checkUint(caller, `${name}.x`, x, SNARK_SCALAR_FIELD - 1n);
  checkUint(caller, `${name}.y`, y, SNARK_SCALAR_FIELD - 1n);
}

function checkSignedBillShape(caller: string, signed: SignedBill): void {
  if (typeof signed !== "object" || signed === null) {
    throw new BillFormatError(`${caller}: expected a signed bill object, got ${describe(signed)}`);
  }
  checkBill(signed.bill, caller);
  checkPointShape(caller, "billKey", signed.billKey);
  if (typeof signed.signature !== "object" || signed.signature === null) {
    throw new BillFormatError(`${caller}: expected a signature {R8, S}, got ${describe(signed.signature)}`);
  }
  checkPointShape(caller, "signature.R8", signed.signature.R8);
  checkUint(caller, "signature.S", signed.signature.S, SNARK_SCALAR_FIELD - 1n);
}

function mod(value: bigint): bigint {
  const r = value % SNARK_SCALAR_FIELD;
  return r < 0n ? r + SNARK_SCALAR_FIELD : r;
}

function inverse(value: bigint): bigint {
  // Fermat: value^(p-2). Callers only invert the non-zero denominators of the complete Edwards addition law.
  let result = 1n;
  let base = mod(value);
  for (let e = SNARK_SCALAR_FIELD - 2n; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * base) % SNARK_SCALAR_FIELD;
    base = (base * base) % SNARK_SCALAR_FIELD;
  }
  return result;
}

function onCurve({ x, y }: BabyJubjubPoint): boolean {
  const x2 = mod(x * x);
  const y2 = mod(y * y);
  return mod(CURVE_A * x2 + y2) === mod(1n + CURVE_D * x2 * y2);
}

function double({ x, y }: BabyJubjubPoint): BabyJubjubPoint {
  const t = mod(CURVE_D * x * x * y * y);
  return {
    x: mod(2n * x * y * inverse(1n + t)),
    y: mod((y * y - CURVE_A * x * x) * inverse(1n - t)),
  };
}

/**
 * Whether 8·P is the identity, i.e. P's order divides the cofactor. EdDSAPoseidonVerifier rejects such keys (it checks
 * that 8·A has x != 0): with one, S·B8 = R8 holds for anyone's (R8, S).
 */
function hasSmallOrder(point: BabyJubjubPoint): boolean {
  return double(double(double(point))).x === 0n;
}

function packPoint(point: BabyJubjubPoint): Uint8Array {
  return toLittleEndian(packPublicKey([point.x, point.y]), 32);
}

function unpackPoint(caller: string, name: string, bytes: Uint8Array): BabyJubjubPoint {
  const packed = fromLittleEndian(bytes);
  let point: BabyJubjubPoint;
  try {
    const [x, y] = unpackPublicKey(packed);
    point = { x, y };
  } catch {
    throw new BillFormatError(`${caller}: expected ${name} to be a packed Baby Jubjub point, got 0x${hex(bytes)}`);
  }
  // unpackPublicKey accepts y = p and a sign bit on x = 0: only the encoding packPoint writes is canonical.
  if (point.y >= SNARK_SCALAR_FIELD || !equalBytes(packPoint(point), bytes)) {
    throw new BillFormatError(`${caller}: expected ${name} in canonical packed form, got 0x${hex(bytes)}`);
  }
  return point;
}

function toBigEndian(value: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let v = value;
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

function toLittleEndian(value: bigint, length: number): Uint8Array {
  return toBigEndian(value, length).reverse();
}

function fromBigEndian(bytes: Uint8Array): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

function fromLittleEndian(bytes: Uint8Array): bigint {
  return fromBigEndian(Uint8Array.from(bytes).reverse());
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function describe(value: unknown): string {
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "string") return `'${value.length > 80 ? value.slice(0, 80) + "…" : value}'`;
  if (value === null) return "null";
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  return typeof value === "object" ? "an object" : `${typeof value} ${String(value)}`;
}
