import { expect } from "chai";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { signMessage } from "@zk-kit/eddsa-poseidon";
import { LeanIMT } from "@zk-kit/lean-imt";
import { id } from "ethers";
import { poseidon2, poseidon5 } from "poseidon-lite";
import * as snarkjs from "snarkjs";
import { compileCircuit, loadCircuitConfig, ROOT } from "../../scripts/lib/circom";
import {
  BILL_DOMAIN,
  SNARK_SCALAR_FIELD,
  billKeyOf,
  billMessageHash,
  nodeIdFromAddress,
  recipientKeyHash,
  signBill,
  type BabyJubjubPoint,
  type Bill,
  type SignedBill,
} from "../../sdk/bill/bill";
import {
  BatchInputError,
  ORDER_KEY_LIMIT,
  PADDING_POINT,
  RELAY_BATCH_PROD_PARAMS,
  RELAY_BATCH_TEST_PARAMS,
  buildRelayBatch,
  leanIMTView,
  membershipPath,
  orderKey,
  publicSignals,
  relayCircuitParams,
  type RelayBatch,
  type RelayBatchInput,
  type SlotClaim,
} from "../../sdk/bill/batchInput";
import { IdentityTree } from "../../sdk/chain/identityTree";

/** Constraints + public inputs must stay below this to fit the local 2^15 ceremony. */
const CEREMONY_CAPACITY = 2 ** 15;

// --- harness: witness generation (circom's own witness calculator) and an R1CS checker --------------------------------

type Signals = object;
interface WitnessCalculator {
  calculateWitness(input: Signals, sanityCheck: boolean): Promise<bigint[]>;
}
type WitnessBuilder = (code: Buffer) => Promise<WitnessCalculator>;
type LinearCombination = [wire: number, coefficient: bigint][];

/** Where a compiled circuit's files are (compileCircuit's CompiledCircuit has these). */
interface CircuitFiles {
  readonly name: string;
  readonly r1cs: string;
  readonly wasm: string;
  readonly sym: string;
}

/** A compiled circuit: its witness calculator, its constraints (read from the .r1cs) and its signal names. */
class Circuit {
  private constructor(
    readonly name: string,
    readonly r1csPath: string,
    private readonly _wasm: Buffer,
    private readonly _builder: WitnessBuilder,
    readonly constraints: [LinearCombination, LinearCombination, LinearCombination][],
    readonly nPublic: number,
    readonly nWires: number,
    /** Signal name to wire; -1 for a signal --O2 replaced by a linear combination of others. */
    private readonly _wires: Map<string, number>,
    /** Wire to the names of the signals it carries. */
    private readonly _names: Map<number, string[]>,
  ) {}

  /** A configured circuit (circuits/config.json), compiled on first use. */
  static async load(name: string): Promise<Circuit> {
    return Circuit.open(compileCircuit(name));
  }

  static async open(files: CircuitFiles): Promise<Circuit> {
    const calculator = path.join(path.dirname(files.wasm), "witness_calculator.js");
    const builder = ((await import(pathToFileURL(calculator).href)) as { default: WitnessBuilder }).default;
    const { constraints, nPublic, nWires } = readR1cs(files.r1cs);
    const wires = new Map<string, number>();
    const names = new Map<number, string[]>();
    for (const line of readFileSync(files.sym, "utf8").split("\n")) {
      const [, wire, , signal] = line.split(",");
      if (signal === undefined) continue;
      wires.set(signal, Number(wire));
      if (Number(wire) >= 0) names.set(Number(wire), [...(names.get(Number(wire)) ?? []), signal]);
    }
    return new Circuit(
      files.name,
      files.r1cs,
      readFileSync(files.wasm),
      builder,
      constraints,
      nPublic,
      nWires,
      wires,
      names,
    );
  }

  /** The full witness, from a fresh instance (a failed run leaves its error text in the instance). */
  async witness(input: Signals): Promise<bigint[]> {
    const calculator = await this._builder(this._wasm);
    return calculator.calculateWitness(input, true);
  }

  /** The indices of the constraints A·B = C the witness violates. */
  violated(witness: bigint[]): number[] {
    return this.constraints.flatMap((_, index) => (this._holds(witness, index) ? [] : [index]));
  }

  /** The index of the first constraint the witness violates, or -1 if it satisfies all of them. */
  firstViolated(witness: bigint[]): number {
    return this.constraints.findIndex((_, index) => !this._holds(witness, index));
  }

  /** Whether constraint `index` has a term in a wire of a signal whose full name starts with `prefix`. */
  involves(index: number, prefix: string): boolean {
    return this.constraints[index].some((lc) =>
      lc.some(([wire]) => (this._names.get(wire) ?? []).some((name) => name.startsWith(prefix))),
    );
  }

  /** The public signals (outputs, then public inputs) as snarkjs reports them: wires 1..nPublic. */
  publicSignals(witness: bigint[]): bigint[] {
    return witness.slice(1, 1 + this.nPublic);
  }

  /** The wire of a signal by its full name ("main.slot[0].recipientKeyHash[1]"); throws if --O2 eliminated it. */
  wire(signal: string): number {
    const wire = this._wires.get(signal);
    if (wire === undefined || wire < 0) throw new Error(`${this.name}: no wire for ${signal}`);
    return wire;
  }

  /**
   * Writes `value` (mod p) as signal `signal` of `witness`. A signal --O2 eliminated has no wire of its own: its value
   * follows from the others', so it is skipped. Throws for a name the circuit does not have.
   */
  assign(witness: bigint[], signal: string, value: bigint): void {
    const wire = this._wires.get(signal);
    if (wire === undefined) throw new Error(`${this.name}: no signal ${signal}`);
    const p = SNARK_SCALAR_FIELD;
    if (wire >= 0) witness[wire] = ((value % p) + p) % p;
  }

  private _holds(witness: bigint[], index: number): boolean {
    const p = SNARK_SCALAR_FIELD;
    const evaluate = (lc: LinearCombination) => lc.reduce((sum, [wire, c]) => (sum + c * witness[wire]) % p, 0n);
    const [a, b, c] = this.constraints[index];
    return (evaluate(a) * evaluate(b) - evaluate(c)) % p === 0n;
  }
}

/** Reads an .r1cs file (iden3 binary format: header section 1, constraints section 2). */
function readR1cs(file: string) {
  const buffer = readFileSync(file);
  let nPublic = 0;
  let nWires = 0;
  let nConstraints = 0;
  let n8 = 32;
  const sections = new Map<number, number>();
  let position = 12;
  for (let i = 0; i < buffer.readUInt32LE(8); i++) {
    sections.set(buffer.readUInt32LE(position), position + 12);
    position += 12 + Number(buffer.readBigUInt64LE(position + 4));
  }
  let at = sections.get(1)!;
  n8 = buffer.readUInt32LE(at);
  at += 4 + n8;
  nWires = buffer.readUInt32LE(at);
  nPublic = buffer.readUInt32LE(at + 4) + buffer.readUInt32LE(at + 8); // outputs + public inputs
  nConstraints = buffer.readUInt32LE(at + 24);

  const readNumber = (offset: number) => {
    let value = 0n;
    for (let i = n8 - 1; i >= 0; i--) value = (value << 8n) | BigInt(buffer[offset + i]);
    return value;
  };
  at = sections.get(2)!;
  const readLc = (): LinearCombination => {
    const terms: LinearCombination = [];
    const count = buffer.readUInt32LE(at);
    at += 4;
    for (let i = 0; i < count; i++, at += 4 + n8) terms.push([buffer.readUInt32LE(at), readNumber(at + 4)]);
    return terms;
  };
  const constraints: [LinearCombination, LinearCombination, LinearCombination][] = [];
  for (let i = 0; i < nConstraints; i++) constraints.push([readLc(), readLc(), readLc()]);
  return { constraints, nPublic, nWires };
}

/** A .wtns file image (iden3 binary format, version 2), so snarkjs can check a witness we changed. */
function wtnsBytes(witness: bigint[]): Uint8Array {
  const n8 = 32;
  const out = Buffer.alloc(12 + 12 + 4 + n8 + 4 + 12 + witness.length * n8);
  const writeNumber = (value: bigint, offset: number) => {
    for (let i = 0, v = value; i < n8; i++, v >>= 8n) out[offset + i] = Number(v & 0xffn);
  };
  out.write("wtns", 0, "ascii");
  out.writeUInt32LE(2, 4);
  out.writeUInt32LE(2, 8);
  out.writeUInt32LE(1, 12);
  out.writeBigUInt64LE(BigInt(4 + n8 + 4), 16);
  out.writeUInt32LE(n8, 24);
  writeNumber(SNARK_SCALAR_FIELD, 28);
  out.writeUInt32LE(witness.length, 28 + n8);
  const values = 32 + n8;
  out.writeUInt32LE(2, values);
  out.writeBigUInt64LE(BigInt(witness.length * n8), values + 4);
  witness.forEach((w, i) => writeNumber(w, values + 12 + i * n8));
  return out;
}

const QUIET = { debug() {}, info() {}, warn() {}, error() {} };

/** snarkjs's own R1CS check of a witness (an independent second opinion on `Circuit.firstViolated`). */
async function snarkjsAccepts(circuit: Circuit, witness: bigint[]): Promise<boolean> {
  return (await snarkjs.wtns.check(circuit.r1csPath, { type: "mem", data: wtnsBytes(witness) }, QUIET)) as boolean;
}

/** The source file of every template circom could report, so a failure can be pinned to its constraint's text. */
const TEMPLATE_FILES = (() => {
  const files = new Map<string, string>();
  const dirs = [path.join(ROOT, "circuits"), path.join(ROOT, "node_modules", "circomlib", "circuits")];
  for (const dir of dirs) {
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".circom"))) {
      const text = readFileSync(path.join(dir, file), "utf8");
      for (const match of text.matchAll(/^template\s+(\w+)\s*\(/gm)) {
        if (!files.has(match[1])) files.set(match[1], path.join(dir, file));
      }
    }
  }
  return files;
})();

/** Where a constraint sits: a template and its source line ("RelaySlot: newBound === bound[BILLS];"). */
type Site = [template: string, line: RegExp];

/**
 * Expects the circuit to reject `input`, at a constraint of `template` whose source line matches `line`; with
 * `caller`, the component that failed must have been instantiated at that line (to tell one Num2Bits from another).
 * The witness calculator evaluates every `===` as it goes and stops at the first that fails, reporting the template
 * stack; should it ever produce a witness, the R1CS check must reject that instead.
 */
async function expectRejected(
  circuit: Circuit,
  input: Signals,
  template: string,
  line: RegExp,
  caller?: Site,
): Promise<void> {
  let witness: bigint[] | undefined;
  try {
    witness = await circuit.witness(input);
  } catch (error) {
    const message = (error as Error).message;
    expect(message, "expected an assertion failure").to.match(/Assert Failed\./);
    // The stack, innermost first: "Error in template Num2Bits_2 line: 38\nError in template RelaySlot_184 line: 85".
    const frames = [...message.matchAll(/Error in template (\w+)_\d+ line: (\d+)/g)].map(([, name, lineNumber]) => {
      const file = TEMPLATE_FILES.get(name);
      const text = file ? readFileSync(file, "utf8").split("\n")[Number(lineNumber) - 1] : "";
      return `${name}: ${text.trim()}`;
    });
    expect(frames[0], message).to.match(new RegExp(`^${template}: .*${line.source}`));
    if (caller) expect(frames[1], message).to.match(new RegExp(`^${caller[0]}: .*${caller[1].source}`));
    return;
  }
  expect(circuit.firstViolated(witness), "expected the witness to violate a constraint").to.be.at.least(0);
}

/**
 * Expects the R1CS to reject a forged witness, and only at constraints with a term in component `component`: every
 * other constraint holds, so that component alone stands between the forger and a proof. snarkjs must agree.
 */
async function expectViolatedOnlyIn(circuit: Circuit, witness: bigint[], component: string): Promise<void> {
  const violated = circuit.violated(witness);
  expect(violated.length, `constraints of ${component} violated`).to.be.above(0);
  for (const index of violated) {
    expect(circuit.involves(index, `${component}.`), `constraint ${index} is one of ${component}`).to.equal(true);
  }
  expect(await snarkjsAccepts(circuit, witness), "snarkjs accepts the witness").to.equal(false);
}

// --- forging witnesses: what a prover could write in place of the witness calculator's hints ----------------------

const bit = (value: bigint, i: number) => (value >> BigInt(i)) & 1n;

/** circomlib's CompConstant(ct) on the 254 bits of `value`: its parts, sout, and out (1 iff value > ct). */
function compConstant(value: bigint, ct: bigint): { parts: bigint[]; sout: bigint; out: bigint } {
  const p = SNARK_SCALAR_FIELD;
  const parts: bigint[] = [];
  for (let i = 0, a = 1n, b = (1n << 128n) - 1n, e = 1n; i < 127; i++, b -= e, a += e, e *= 2n) {
    const [clsb, cmsb, slsb, smsb] = [bit(ct, 2 * i), bit(ct, 2 * i + 1), bit(value, 2 * i), bit(value, 2 * i + 1)];
    let part: bigint;
    if (cmsb === 0n && clsb === 0n) part = -b * smsb * slsb + b * smsb + b * slsb;
    else if (cmsb === 0n) part = a * smsb * slsb - a * slsb + b * smsb - a * smsb + a;
    else if (clsb === 0n) part = b * smsb * slsb - a * smsb + a;
    else part = -a * smsb * slsb + a;
    parts.push(((part % p) + p) % p);
  }
  const sout = parts.reduce((sum, part) => sum + part, 0n) % p;
  return { parts, sout, out: bit(sout, 127) };
}

/**
 * Writes the signals of OrderKey instance `component` (its Num2Bits_strict and AliasCheck included) as a prover who
 * decomposes its input into the 254 bits of `bits` would: every one computed from those bits as the witness
 * calculator computes it from the canonical ones. `bits` is the input itself, or an alias: the input + p (< 2^254).
 * Returns the order key those bits give.
 */
function forgeOrderKey(circuit: Circuit, witness: bigint[], component: string, bits: bigint): bigint {
  expect(bits < 1n << 254n, "a 254-bit decomposition").to.equal(true);
  const strict = `${component}.bits`;
  const check = `${strict}.aliasCheck.compConstant`;
  for (let i = 0; i < 254; i++) {
    for (const alias of [`${strict}.out`, `${strict}.n2b.out`, `${strict}.aliasCheck.in`, `${check}.in`]) {
      circuit.assign(witness, `${alias}[${i}]`, bit(bits, i));
    }
  }
  const { parts, sout, out } = compConstant(bits, SNARK_SCALAR_FIELD - 1n); // AliasCheck: CompConstant(-1)
  parts.forEach((part, i) => circuit.assign(witness, `${check}.parts[${i}]`, part));
  circuit.assign(witness, `${check}.sout`, sout);
  circuit.assign(witness, `${check}.num2bits.in`, sout);
  for (let i = 0; i < 135; i++) circuit.assign(witness, `${check}.num2bits.out[${i}]`, bit(sout, i));
  circuit.assign(witness, `${check}.out`, out);
  const key = bits >> 54n;
  circuit.assign(witness, `${component}.out`, key);
  return key;
}

/** Writes the signals of LessThan(200) instance `component` for in = [a, b], as the witness calculator would. */
function forgeLessThan(circuit: Circuit, witness: bigint[], component: string, a: bigint, b: bigint): bigint {
  const sum = a + ORDER_KEY_LIMIT - b;
  expect(sum >= 0n && sum < 2n * ORDER_KEY_LIMIT, "LessThan(200) inputs below 2^200").to.equal(true);
  circuit.assign(witness, `${component}.in[0]`, a);
  circuit.assign(witness, `${component}.in[1]`, b);
  circuit.assign(witness, `${component}.n2b.in`, sum);
  for (let i = 0; i <= 200; i++) circuit.assign(witness, `${component}.n2b.out[${i}]`, bit(sum, i));
  const out = 1n - bit(sum, 200);
  circuit.assign(witness, `${component}.out`, out);
  return out;
}

/** OrderKey as a main component of its own (order_key_test), so the test can read its output on inputs of its choice
 * (values near p and 2^254 that no Poseidon key hash will hit). */
function compileOrderKeyHarness(): CircuitFiles {
  const { name, r1cs, wasm, sym } = compileCircuit("order_key_test");
  return { name, r1cs, wasm, sym };
}

// --- fixtures ---------------------------------------------------------------------------------------------------------

const EPOCH = 17n;
const NODE_A = nodeIdFromAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
const NODE_B = nodeIdFromAddress("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC");
const CAP = RELAY_BATCH_TEST_PARAMS.maxWorkPerBill;

/**
 * Six recipients with fixed keys, sorted by key hash, hence by order key (its top 200 bits; a test checks the six are
 * distinct), so tests can speak of "the lowest" and so on. The order key is computed here, independently of batchInput.
 */
const RECIPIENTS = Array.from({ length: 6 }, (_, i) => {
  const privateKey = Uint8Array.from(Buffer.from(id(`relayBatch.test recipient ${i}`).slice(2), "hex"));
  const billKey = billKeyOf(privateKey);
  const keyHash = recipientKeyHash(billKey);
  return { privateKey, billKey, keyHash, orderKey: keyHash / 2n ** 54n };
}).sort((a, b) => (a.keyHash < b.keyHash ? -1 : 1));
/** The recipients' order keys, by recipient. */
const KEY = RECIPIENTS.map((r) => r.orderKey);

/** The order key of a disabled bill: that of the padding point (Base8) taken as a key. */
const PADDING_KEY = poseidon2([PADDING_POINT.x, PADDING_POINT.y]) / 2n ** 54n;

/** The identity tree: fillers around the recipients, one filler revoked (a 0 leaf), 13 leaves, depth 4. */
function identityTree(): LeanIMT<bigint> {
  const tree = new LeanIMT<bigint>((a, b) => poseidon2([a, b]));
  for (let i = 1n; i <= 5n; i++) tree.insert(poseidon2([i, 0n]));
  for (const recipient of RECIPIENTS.slice(0, 5)) tree.insert(recipient.keyHash);
  for (let i = 6n; i <= 8n; i++) tree.insert(poseidon2([i, 0n]));
  tree.update(2, 0n);
  return tree;
}

function bill(recipient: number, nodeId: bigint, messageCount: bigint, overrides: Partial<Bill> = {}): SignedBill {
  return signBill(RECIPIENTS[recipient].privateKey, {
    nodeId,
    epoch: EPOCH,
    messageCount,
    byteCount: messageCount * 1000n + 7n,
    ...overrides,
  });
}

/** Signs a bill the SDK refuses to (fields out of bounds), to show the circuit refuses it too. */
function signUnchecked(recipient: number, fields: Bill): SignedBill {
  const M = poseidon5([BILL_DOMAIN, fields.nodeId, fields.epoch, fields.messageCount, fields.byteCount]);
  const { R8, S } = signMessage(RECIPIENTS[recipient].privateKey, M);
  return { bill: fields, billKey: RECIPIENTS[recipient].billKey, signature: { R8: { x: R8[0], y: R8[1] }, S } };
}

/** Writes a signed bill into bill position (s, b) of a circuit input (keeping that position's tree path). */
function putBill(input: RelayBatchInput, s: number, b: number, signed: SignedBill): void {
  input.messageCount[s][b] = signed.bill.messageCount;
  input.byteCount[s][b] = signed.bill.byteCount;
  input.Ax[s][b] = signed.billKey.x;
  input.Ay[s][b] = signed.billKey.y;
  input.S[s][b] = signed.signature.S;
  input.R8x[s][b] = signed.signature.R8.x;
  input.R8y[s][b] = signed.signature.R8.y;
}

const BILL_SIGNALS = ["enabled", "messageCount", "byteCount", "Ax", "Ay", "S", "R8x", "R8y", "treeDepth"] as const;

/** Copies every per-bill signal of `from` at position [slot, bill] into `to` at position `at`. */
function copyBill(
  from: RelayBatchInput,
  [fs, fb]: [number, number],
  to: RelayBatchInput,
  [ts, tb]: [number, number],
): void {
  for (const key of BILL_SIGNALS) to[key][ts][tb] = from[key][fs][fb];
  to.pathIndices[ts][tb] = [...from.pathIndices[fs][fb]];
  to.siblings[ts][tb] = [...from.siblings[fs][fb]];
}

/** Swaps bills 0 and 1 of slot s. */
function swapBills(input: RelayBatchInput, s: number): void {
  const original = structuredClone(input);
  copyBill(original, [s, 1], input, [s, 0]);
  copyBill(original, [s, 0], input, [s, 1]);
}

/** A disabled, padded bill at (s, b), as batchInput writes it. */
function padBill(input: RelayBatchInput, s: number, b: number): void {
  input.enabled[s][b] = 0n;
  input.messageCount[s][b] = 0n;
  input.byteCount[s][b] = 0n;
  input.Ax[s][b] = PADDING_POINT.x;
  input.Ay[s][b] = PADDING_POINT.y;
  input.S[s][b] = 0n;
  input.R8x[s][b] = PADDING_POINT.x;
  input.R8y[s][b] = PADDING_POINT.y;
  input.treeDepth[s][b] = 0n;
  input.pathIndices[s][b] = input.pathIndices[s][b].map(() => 0n);
  input.siblings[s][b] = input.siblings[s][b].map(() => 0n);
}

describe("circuits: RelayBatch (relay_batch_test: 2 slots x 2 bills, tree depth 6, cap 1000)", function () {
  let circuit: Circuit;
  let tree: LeanIMT<bigint>;
  /** Slot 0: node A, recipients 0 and 1 (1 capped); slot 1: node B above a non-zero bound, recipients 3 and 2. */
  let batch: RelayBatch;
  let claims: SlotClaim[];

  const fresh = (): RelayBatchInput => structuredClone(batch.input);
  const build = (slots: SlotClaim[]) =>
    buildRelayBatch(RELAY_BATCH_TEST_PARAMS, { epoch: EPOCH, tree: leanIMTView(tree), slots });

  before(async function () {
    circuit = await Circuit.load("relay_batch_test"); // compiles on first use (about 15 s), cached after
    tree = identityTree();
    claims = [
      { nodeId: NODE_A, prevBound: 0n, bills: [bill(1, NODE_A, 5000n), bill(0, NODE_A, 12n)] },
      { nodeId: NODE_B, prevBound: KEY[2] - 12345n, bills: [bill(3, NODE_B, 1000n), bill(2, NODE_B, 999n)] },
    ];
    batch = build(claims);
  });

  describe("configuration", () => {
    it("matches circuits/config.json and fits the 2^15 ceremony", () => {
      const config = loadCircuitConfig("relay_batch_test");
      expect(relayCircuitParams(config.params)).to.deep.equal(RELAY_BATCH_TEST_PARAMS);
      expect(relayCircuitParams(loadCircuitConfig("relay_batch_prod").params)).to.deep.equal(RELAY_BATCH_PROD_PARAMS);
      expect(config.public).to.deep.equal(["epoch", "identityRoot", "nodeId", "prevBound", "newBound", "work"]);
      const { slots } = RELAY_BATCH_TEST_PARAMS;
      expect(circuit.nPublic).to.equal(2 + 4 * slots);
      const size = circuit.constraints.length + circuit.nPublic;
      console.log(
        `      relay_batch_test: ${circuit.constraints.length} constraints + ${circuit.nPublic} public inputs = ${size} (< ${CEREMONY_CAPACITY})`,
      );
      expect(size).to.be.below(CEREMONY_CAPACITY);
    });

    it("orders the public signals [epoch, identityRoot, nodeId[], prevBound[], newBound[], work[]]", () => {
      const names = ["epoch", "identityRoot"];
      for (const array of ["nodeId", "prevBound", "newBound", "work"]) {
        for (let s = 0; s < RELAY_BATCH_TEST_PARAMS.slots; s++) names.push(`${array}[${s}]`);
      }
      expect(names.map((name) => circuit.wire(`main.${name}`))).to.deep.equal(names.map((_, i) => i + 1));
    });

    it("has six recipients with distinct order keys, each below 2^200 (unlike their key hashes)", () => {
      for (let i = 1; i < KEY.length; i++) expect(KEY[i]).to.be.above(KEY[i - 1]);
      for (const recipient of RECIPIENTS) {
        expect(recipient.orderKey).to.be.below(ORDER_KEY_LIMIT);
        expect(recipient.keyHash).to.be.at.least(ORDER_KEY_LIMIT);
      }
    });
  });

  describe("valid batches", () => {
    it("proves two nodes with two bills each; the public signals and order keys are the model's", async () => {
      // Independent of batchInput: bills sorted by order key, bounds are order keys, the cap applied to 5000 messages.
      const expected = [EPOCH, tree.root, NODE_A, NODE_B, 0n, KEY[2] - 12345n, KEY[1], KEY[3], 12n + CAP, 1000n + 999n];
      expect(publicSignals(batch)).to.deep.equal(expected);
      expect(batch.slots[0].recipientKeyHashes).to.deep.equal([RECIPIENTS[0].keyHash, RECIPIENTS[1].keyHash]);

      const witness = await circuit.witness(batch.input);
      expect(circuit.firstViolated(witness)).to.equal(-1);
      expect(await snarkjsAccepts(circuit, witness)).to.equal(true);
      expect(circuit.publicSignals(witness)).to.deep.equal(expected);
      // Each bill's OrderKey output is the model's order key of its key hash.
      const recipients = [
        [0, 1],
        [2, 3],
      ];
      recipients.forEach((row, s) =>
        row.forEach((r, b) => {
          expect(witness[circuit.wire(`main.slot[${s}].recipientKeyHash[${b}]`)]).to.equal(RECIPIENTS[r].keyHash);
          expect(witness[circuit.wire(`main.slot[${s}].orderKey[${b}]`)]).to.equal(KEY[r]);
          expect(orderKey(RECIPIENTS[r].keyHash)).to.equal(KEY[r]);
        }),
      );
    });

    it("proves one node with one bill next to an unused slot", async () => {
      const one = build([{ nodeId: NODE_A, prevBound: 0n, bills: [bill(4, NODE_A, 3n)] }]);
      expect(publicSignals(one)).to.deep.equal([EPOCH, tree.root, NODE_A, 0n, 0n, 0n, KEY[4], 0n, 3n, 0n]);
      const witness = await circuit.witness(one.input);
      expect(circuit.firstViolated(witness)).to.equal(-1);
      expect(circuit.publicSignals(witness)).to.deep.equal(publicSignals(one));
    });

    it("proves a node with no bills: its bound stays (up to the largest, 2^200 - 1), its work is 0", async () => {
      for (const prevBound of [KEY[5], ORDER_KEY_LIMIT - 1n]) {
        const none = build([claims[0], { nodeId: NODE_B, prevBound, bills: [] }]);
        expect(none.slots[1]).to.include({ newBound: prevBound, work: 0n });
        const witness = await circuit.witness(none.input);
        expect(circuit.firstViolated(witness)).to.equal(-1);
        expect(circuit.publicSignals(witness)).to.deep.equal(publicSignals(none));
      }
    });

    it("proves an all-empty batch (every public input still bound by a constraint)", async () => {
      const empty = build([]);
      expect(publicSignals(empty)).to.deep.equal([EPOCH, tree.root, 0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n]);
      const witness = await circuit.witness(empty.input);
      expect(circuit.firstViolated(witness)).to.equal(-1);
      expect(circuit.publicSignals(witness)).to.deep.equal(publicSignals(empty));
      // Each public input wire appears in some constraint.
      for (let wire = 1; wire <= circuit.nPublic; wire++) {
        const used = circuit.constraints.some((abc) => abc.some((lc) => lc.some(([w]) => w === wire)));
        expect(used, `public wire ${wire} in a constraint`).to.equal(true);
      }
    });

    it("builds the same input from sdk/chain/identityTree's IdentityTree", () => {
      const identity = new IdentityTree();
      for (const leaf of tree.leaves) identity.insert(leaf === 0n ? 1n : leaf); // leaf 2 was revoked: insert, then revoke
      identity.remove(2);
      expect(identity.root).to.equal(tree.root);
      const fromIdentity = buildRelayBatch(RELAY_BATCH_TEST_PARAMS, { epoch: EPOCH, tree: identity, slots: claims });
      expect(fromIdentity.input).to.deep.equal(batch.input);
    });

    it("accepts a prevBound one below the first order key", async () => {
      const below = build([{ ...claims[0], prevBound: KEY[0] - 1n }]);
      const witness = await circuit.witness(below.input);
      expect(circuit.firstViolated(witness)).to.equal(-1);
      expect(circuit.publicSignals(witness)).to.deep.equal(publicSignals(below));
    });

    it("continues a node from the newBound its last batch stored", async () => {
      const prevBound = batch.slots[0].newBound;
      const next = build([{ nodeId: NODE_A, prevBound, bills: [bill(3, NODE_A, 1n), bill(2, NODE_A, 2n)] }]);
      expect(next.slots[0]).to.include({ prevBound: KEY[1], newBound: KEY[3], work: 3n });
      const witness = await circuit.witness(next.input);
      expect(circuit.firstViolated(witness)).to.equal(-1);
      expect(circuit.publicSignals(witness)).to.deep.equal(publicSignals(next));
    });

    it("credits nothing for a disabled bill, whatever its private values", async () => {
      const one = build([{ nodeId: NODE_A, prevBound: 0n, bills: [bill(0, NODE_A, 12n)] }, claims[1]]);
      const input = structuredClone(one.input);
      input.messageCount[0][1] = 777n; // garbage in the disabled bill
      const witness = await circuit.witness(input);
      expect(circuit.firstViolated(witness)).to.equal(-1);
      expect(circuit.publicSignals(witness)).to.deep.equal(publicSignals(one));

      input.work[0] += 777n;
      await expectRejected(circuit, input, "RelaySlot", /work === workSum;/);
    });
  });

  describe("must fail", () => {
    const SIGNATURE = /\(1 - isz\.out\)\*enabled === 0;/; // ForceEqualIfEnabled in circomlib's EdDSA verifier
    const ABOVE = /\(1 - aboveBound\[i\]\.out\) \* enabled\[i\] === 0;/;
    const NEW_BOUND = /newBound === bound\[BILLS\];/;
    const NUM2BITS = /lc1 === in;/;

    it("a bad signature", async () => {
      const input = fresh();
      input.S[0][0] += 1n;
      await expectRejected(circuit, input, "ForceEqualIfEnabled", SIGNATURE);

      const other = fresh();
      const byOther = bill(3, NODE_A, 12n);
      other.S[0][0] = byOther.signature.S; // another recipient's signature of the same bill
      other.R8x[0][0] = byOther.signature.R8.x;
      other.R8y[0][0] = byOther.signature.R8.y;
      await expectRejected(circuit, other, "ForceEqualIfEnabled", SIGNATURE);
    });

    it("a bill key not in the identity tree", async () => {
      const wrongRoot = fresh();
      const before = new LeanIMT<bigint>((a, b) => poseidon2([a, b]), tree.leaves.slice(0, 5)); // before any recipient
      wrongRoot.identityRoot = before.root;
      await expectRejected(
        circuit,
        wrongRoot,
        "RelaySlot",
        /\(membership\[i\]\.root - identityRoot\) \* enabled\[i\] === 0;/,
      );

      // Recipient 5 signed, but never registered: no path can lead to the root, so give it recipient 0's.
      const unregistered = fresh();
      putBill(unregistered, 0, 0, bill(5, NODE_A, 12n));
      await expectRejected(circuit, unregistered, "RelaySlot", /membership\[i\]\.root - identityRoot/);
    });

    it("a bill signed for another epoch, or a batch claiming another epoch", async () => {
      const input = fresh();
      putBill(input, 0, 0, bill(0, NODE_A, 12n, { epoch: EPOCH + 1n }));
      await expectRejected(circuit, input, "ForceEqualIfEnabled", SIGNATURE);

      const claimed = fresh();
      claimed.epoch = EPOCH + 1n;
      await expectRejected(circuit, claimed, "ForceEqualIfEnabled", SIGNATURE);
    });

    it("a bill signed for another node, or counted in another node's slot", async () => {
      const input = fresh();
      putBill(input, 0, 0, bill(0, NODE_B, 12n));
      await expectRejected(circuit, input, "ForceEqualIfEnabled", SIGNATURE);

      const swapped = fresh();
      [swapped.nodeId[0], swapped.nodeId[1]] = [swapped.nodeId[1], swapped.nodeId[0]];
      await expectRejected(circuit, swapped, "ForceEqualIfEnabled", SIGNATURE);
    });

    it("a replayed bill (the same recipient twice) or bills out of order", async () => {
      const duplicate = fresh();
      copyBill(duplicate, [0, 0], duplicate, [0, 1]);
      duplicate.newBound[0] = KEY[0];
      duplicate.work[0] = 24n;
      await expectRejected(circuit, duplicate, "RelaySlot", ABOVE);

      const reversed = fresh();
      swapBills(reversed, 0);
      reversed.newBound[0] = KEY[0]; // the last bill now has the lower order key
      await expectRejected(circuit, reversed, "RelaySlot", ABOVE);
    });

    it("a first order key not strictly above prevBound: equal (a recipient settled before), or below", async () => {
      // KEY[0]: recipient 0 again after a batch that settled it; KEY[1]: both bills at or below it; 2^200 - 1: the
      // largest bound, above every order key.
      for (const prevBound of [KEY[0], KEY[0] + 1n, KEY[1], ORDER_KEY_LIMIT - 1n]) {
        const input = fresh();
        input.prevBound[0] = prevBound;
        await expectRejected(circuit, input, "RelaySlot", ABOVE);
      }
    });

    it("a prevBound >= 2^200, by the range check, even in a slot whose bills are all disabled", async () => {
      const RANGE: Site = ["RelaySlot", /prevBoundBits\.in <== prevBound;/];
      // Among them a key hash (what bounds were before order keys) and -1.
      const tooLarge = [ORDER_KEY_LIMIT, ORDER_KEY_LIMIT + KEY[0], RECIPIENTS[0].keyHash, SNARK_SCALAR_FIELD - 1n];
      const unused = build([claims[0]]).input; // slot 1: both bills disabled
      for (const prevBound of tooLarge) {
        const withBills = fresh();
        withBills.prevBound[0] = prevBound;
        await expectRejected(circuit, withBills, "Num2Bits", NUM2BITS, RANGE);

        const empty = structuredClone(unused);
        empty.prevBound[1] = prevBound;
        empty.newBound[1] = prevBound;
        await expectRejected(circuit, empty, "Num2Bits", NUM2BITS, RANGE);
      }
    });

    it("a forged witness with prevBound 2^200 and no bills: only the range check's constraint fails", async () => {
      // LessThan(200) alone would let 2^200 through here (2^200 + 2^200 - key fits its 201 bits; the disabled bills'
      // results are ignored) and the contract would be handed a 201-bit bound: the range check is what stops it.
      const P = ORDER_KEY_LIMIT;
      const honest = await circuit.witness(build([claims[0]]).input);
      const forged = [...honest];
      for (const signal of [
        "main.prevBound[1]",
        "main.newBound[1]",
        "main.slot[1].bound[1]",
        "main.slot[1].bound[2]",
      ]) {
        circuit.assign(forged, signal, P);
      }
      circuit.assign(forged, "main.prevBoundSquare[1]", P * P);
      circuit.assign(forged, "main.newBoundSquare[1]", P * P);
      for (let b = 0; b < RELAY_BATCH_TEST_PARAMS.bills; b++) {
        expect(forgeLessThan(circuit, forged, `main.slot[1].aboveBound[${b}]`, P, PADDING_KEY)).to.equal(0n);
      }
      for (let i = 0; i < 200; i++) circuit.assign(forged, `main.slot[1].prevBoundBits.out[${i}]`, bit(P, i));
      expect(circuit.publicSignals(forged).slice(4, 8)).to.deep.equal([0n, P, KEY[1], P]); // prevBound[], newBound[]
      await expectViolatedOnlyIn(circuit, forged, "main.slot[1].prevBoundBits");
    });

    it("a newBound other than the last order key (or than prevBound for an empty slot)", async () => {
      // The first order key, next to the last, and the last bill's key hash (the bound before order keys).
      for (const newBound of [KEY[0], KEY[1] - 1n, KEY[1] + 1n, RECIPIENTS[1].keyHash]) {
        const input = fresh();
        input.newBound[0] = newBound;
        await expectRejected(circuit, input, "RelaySlot", NEW_BOUND);
      }

      const empty = structuredClone(build([claims[0], { nodeId: NODE_B, prevBound: KEY[5], bills: [] }]).input);
      for (const newBound of [0n, KEY[5] + 1n]) {
        empty.newBound[1] = newBound;
        await expectRejected(circuit, empty, "RelaySlot", NEW_BOUND);
      }
    });

    it("an OrderKey alias: a recipient billed twice, its key hash read the second time as keyHash + p", async () => {
      // Num2Bits(254) alone also holds for the bits of keyHash + p (< 2^254 for recipient 0): their top 200 bits are
      // a second, larger order key for the same recipient, strictly above the first, so the order check would pass.
      const p = SNARK_SCALAR_FIELD;
      const { keyHash } = RECIPIENTS[0];
      expect(keyHash + p < 1n << 254n, "recipient 0's key hash has a 254-bit alias").to.equal(true);
      const ORDER_KEY = "main.slot[0].orderKeys[1]";

      // What the calculator accepts: recipient 0's bill, and a disabled copy of it.
      const input = fresh();
      copyBill(input, [0, 0], input, [0, 1]);
      input.enabled[0][1] = 0n;
      input.newBound[0] = KEY[0];
      input.work[0] = 12n;
      const honest = await circuit.witness(input);
      expect(circuit.firstViolated(honest)).to.equal(-1);
      const same = [...honest];
      forgeOrderKey(circuit, same, ORDER_KEY, keyHash);
      expect(same, "forgeOrderKey reproduces the calculator on the canonical bits").to.deep.equal(honest);

      // Enable the copy, with its key hash decomposed into `bits`, and everything downstream recomputed.
      const billedTwice = (bits: bigint) => {
        const forged = [...honest];
        circuit.assign(forged, "main.enabled[0][1]", 1n);
        const key = forgeOrderKey(circuit, forged, ORDER_KEY, bits);
        circuit.assign(forged, "main.slot[0].orderKey[1]", key);
        forgeLessThan(circuit, forged, "main.slot[0].aboveBound[1]", KEY[0], key);
        for (const signal of ["main.slot[0].bound[2]", "main.newBound[0]"]) circuit.assign(forged, signal, key);
        circuit.assign(forged, "main.newBoundSquare[0]", key * key);
        circuit.assign(forged, "main.slot[0].creditedWork[1]", 12n);
        circuit.assign(forged, "main.work[0]", 24n);
        circuit.assign(forged, "main.workSquare[0]", 24n * 24n);
        return { forged, key };
      };
      // With the canonical bits, the copy's order key equals the first's: the order check rejects it.
      await expectViolatedOnlyIn(circuit, billedTwice(keyHash).forged, "main.slot[0].aboveBound[1]");
      // With the alias bits the order check passes; only AliasCheck (CompConstant(-1): bits above p - 1) fails.
      const { forged, key } = billedTwice(keyHash + p);
      expect(key).to.equal((keyHash + p) >> 54n);
      expect(key).to.be.above(KEY[0]).and.below(ORDER_KEY_LIMIT);
      expect(compConstant(keyHash + p, p - 1n).out).to.equal(1n);
      expect(circuit.publicSignals(forged).slice(6, 10)).to.deep.equal([key, KEY[3], 24n, 1999n]);
      await expectViolatedOnlyIn(circuit, forged, `${ORDER_KEY}.bits.aliasCheck`);
    });

    it("claimed work that differs from the capped sum", async () => {
      for (const work of [12n + CAP + 1n, 12n + CAP - 1n, 12n + 5000n, 0n]) {
        const input = fresh();
        input.work[0] = work;
        await expectRejected(circuit, input, "RelaySlot", /work === workSum;/);
      }
      const empty = structuredClone(build([claims[0]]).input);
      empty.work[1] = 1n;
      await expectRejected(circuit, empty, "RelaySlot", /work === workSum;/);
    });

    it("a validly signed messageCount >= 2^32 or byteCount >= 2^48 (overflow)", async () => {
      const MESSAGE_COUNT: Site = ["RelaySlot", /messageCountBits\[i\]\.in <== messageCount\[i\];/];
      const BYTE_COUNT: Site = ["RelaySlot", /byteCountBits\[i\]\.in <== byteCount\[i\];/];
      const overflows: [Bill, Site][] = [
        [{ nodeId: NODE_A, epoch: EPOCH, messageCount: 1n << 32n, byteCount: 0n }, MESSAGE_COUNT],
        [{ nodeId: NODE_A, epoch: EPOCH, messageCount: SNARK_SCALAR_FIELD - 1n, byteCount: 0n }, MESSAGE_COUNT], // "-1"
        [{ nodeId: NODE_A, epoch: EPOCH, messageCount: 12n, byteCount: 1n << 48n }, BYTE_COUNT],
      ];
      for (const [fields, site] of overflows) {
        const input = fresh();
        putBill(input, 0, 0, signUnchecked(0, fields));
        await expectRejected(circuit, input, "Num2Bits", NUM2BITS, site);
      }
    });

    it("enabled bills that are not a prefix, or an enabled flag that is not a bit", async () => {
      const gap = fresh();
      copyBill(gap, [0, 0], gap, [0, 1]); // position 1 holds bill 0 ...
      padBill(gap, 0, 0); // ... behind a disabled position 0
      gap.newBound[0] = KEY[0];
      gap.work[0] = 12n;
      await expectRejected(circuit, gap, "RelaySlot", /enabled\[i\] \* \(1 - enabled\[i - 1\]\) === 0;/);

      const notBit = fresh();
      notBit.enabled[1][1] = 2n;
      await expectRejected(circuit, notBit, "RelaySlot", /enabled\[i\] \* \(enabled\[i\] - 1\) === 0;/);
    });

    it("a tree path with a depth beyond TREE_DEPTH or non-bit indices", async () => {
      const deep = fresh();
      deep.treeDepth[0][0] = BigInt(RELAY_BATCH_TEST_PARAMS.treeDepth + 1);
      await expectRejected(circuit, deep, "LeanIMTRoot", /depthMatches === 1;/);

      const notBit = fresh();
      notBit.pathIndices[0][0][0] = 2n;
      await expectRejected(circuit, notBit, "LeanIMTRoot", /pathIndices\[j\] \* \(pathIndices\[j\] - 1\) === 0;/);
    });

    it("a pair of tree nodes posing as a bill key (a leaf's parent reached by a shorter path)", async () => {
      // Recipient 1 sits at leaf 6 of 13; its parent is Poseidon2(leaf 6, leaf 7). Claim (leaf 6, leaf 7) as a key.
      const index = tree.indexOf(RECIPIENTS[1].keyHash);
      const input = fresh();
      const path = membershipPath(leanIMTView(tree), RECIPIENTS[1].keyHash, RELAY_BATCH_TEST_PARAMS.treeDepth);
      const pair =
        index % 2 === 0 ? [tree.leaves[index], tree.leaves[index + 1]] : [tree.leaves[index - 1], tree.leaves[index]];
      input.Ax[0][1] = pair[0];
      input.Ay[0][1] = pair[1];
      input.treeDepth[0][1] = BigInt(path.depth - 1);
      input.pathIndices[0][1] = [...path.pathIndices.slice(1), 0n];
      input.siblings[0][1] = [...path.siblings.slice(1), 0n];
      await expectRejected(circuit, input, "BabyCheck", /a\*x2 \+ y2 === 1 \+ d\*x2\*y2;/);
    });

    it("an epoch >= 2^64 or a node id >= 2^160", async () => {
      const epoch = fresh();
      epoch.epoch = 1n << 64n;
      await expectRejected(circuit, epoch, "Num2Bits", NUM2BITS, ["RelayBatch", /epochBits\.in <== epoch;/]);
      const node = fresh();
      node.nodeId[1] = 1n << 160n;
      await expectRejected(circuit, node, "Num2Bits", NUM2BITS, ["RelayBatch", /nodeIdBits\[s\]\.in <== nodeId\[s\];/]);
    });

    it("a tampered witness: the R1CS itself rejects it, not only the witness calculator", async () => {
      const witness = await circuit.witness(batch.input);
      expect(circuit.firstViolated(witness)).to.equal(-1);
      const targets = [
        "main.work[0]", // a public input
        "main.newBound[1]",
        "main.prevBound[1]",
        "main.slot[0].recipientKeyHash[1]", // internal signals
        "main.slot[0].orderKey[1]",
        "main.slot[1].orderKeys[0].bits.out[100]",
        "main.slot[1].aboveBound[1].out",
        "main.slot[0].prevBoundBits.out[0]",
        "main.slot[1].creditedWork[0]",
        "main.epochSquare",
      ];
      for (const target of targets) {
        const tampered = [...witness];
        tampered[circuit.wire(target)] += 1n;
        expect(circuit.firstViolated(tampered), target).to.be.at.least(0);
        expect(await snarkjsAccepts(circuit, tampered), target).to.equal(false);
      }
    });
  });

  describe("sdk/bill/batchInput", () => {
    it("refuses claims the circuit would reject, naming the slot and bill", () => {
      const refuse = (slots: SlotClaim[], pattern: RegExp) => {
        expect(() => build(slots)).to.throw(BatchInputError, pattern);
      };
      refuse(
        [{ ...claims[0], bills: [bill(0, NODE_A, 1n, { epoch: EPOCH + 1n })] }],
        /slot 0, bill 0: expected a bill for epoch 17/,
      );
      refuse([{ ...claims[0], bills: [bill(0, NODE_B, 1n)] }], /slot 0, bill 0: expected a bill for node/);
      refuse([{ ...claims[0], bills: [bill(5, NODE_A, 1n)] }], /expected the bill key in the identity tree/);
      refuse(
        [{ ...claims[0], bills: [bill(0, NODE_A, 1n), bill(0, NODE_A, 2n)] }],
        /slot 0: expected one bill per recipient, got bills 0 and 1 from key hash/,
      );
      // claims[0] lists recipient 1, then recipient 0.
      refuse([{ ...claims[0], prevBound: KEY[1] }], /slot 0, bill 0: expected an order key above prevBound/);
      refuse([{ ...claims[0], prevBound: KEY[0] }], /slot 0, bill 1: expected an order key above prevBound/);
      refuse([claims[0], claims[1], { nodeId: 1n, prevBound: 0n, bills: [] }], /expected at most 2 slots, got 3/);
      refuse([claims[0], { ...claims[0], bills: [] }], /slot 1: expected each node in one slot/);
      refuse(
        [{ ...claims[0], bills: [bill(0, NODE_A, 1n), bill(1, NODE_A, 1n), bill(2, NODE_A, 1n)] }],
        /expected at most 2 bills, got 3/,
      );
      refuse([{ ...claims[0], nodeId: 0n, bills: [] }], /expected a non-zero uint160 nodeId/);
      const forged = bill(0, NODE_A, 12n);
      refuse(
        [{ ...claims[0], bills: [{ ...forged, bill: { ...forged.bill, messageCount: 13n } }] }],
        /expected a valid signature/,
      );
    });

    it("refuses a prevBound that is not an order key (2^200 or more, a key hash, negative), takes 2^200 - 1", () => {
      for (const prevBound of [ORDER_KEY_LIMIT, RECIPIENTS[0].keyHash, SNARK_SCALAR_FIELD - 1n, -1n]) {
        expect(() => build([{ nodeId: NODE_A, prevBound, bills: [] }])).to.throw(
          BatchInputError,
          /slot 0: expected prevBound to be an order key \(< 2\^200\)/,
        );
      }
      const largest = build([{ nodeId: NODE_A, prevBound: ORDER_KEY_LIMIT - 1n, bills: [] }]);
      expect(largest.slots[0]).to.include({ prevBound: ORDER_KEY_LIMIT - 1n, newBound: ORDER_KEY_LIMIT - 1n });
    });

    it("pads disabled bills with the Base8 point and S = 0", () => {
      const one = build([{ nodeId: NODE_A, prevBound: 0n, bills: [bill(0, NODE_A, 1n)] }]);
      const base8: BabyJubjubPoint = PADDING_POINT;
      expect([one.input.Ax[0][1], one.input.Ay[0][1], one.input.R8x[1][0], one.input.R8y[1][1]]).to.deep.equal([
        base8.x,
        base8.y,
        base8.x,
        base8.y,
      ]);
      expect(one.input.S[1]).to.deep.equal([0n, 0n]);
      expect(one.input.enabled).to.deep.equal([
        [1n, 0n],
        [0n, 0n],
      ]);
    });
  });
});

describe("circuits: OrderKey (order_key_test, its own main component)", () => {
  const p = SNARK_SCALAR_FIELD;
  /** Below this, a key hash x has a second 254-bit reading, x + p. */
  const ALIAS_LIMIT = (1n << 254n) - p;
  /** The lowest field element with the largest order key, (p - 1) >> 54. */
  const TOP_BLOCK = ((p - 1n) >> 54n) << 54n;
  const CASES: [string, bigint][] = [
    ["0", 0n],
    ["1", 1n],
    ["2^54 - 1", (1n << 54n) - 1n],
    ["2^54", 1n << 54n],
    ["2^54 + 1", (1n << 54n) + 1n],
    ["2^200 - 1", ORDER_KEY_LIMIT - 1n],
    ["2^253 - 1", (1n << 253n) - 1n],
    ["2^253", 1n << 253n],
    ["2^254 - p - 1 (the largest with an alias)", ALIAS_LIMIT - 1n],
    ["2^254 - p (the smallest without)", ALIAS_LIMIT],
    ["the top block - 1", TOP_BLOCK - 1n],
    ["the top block", TOP_BLOCK],
    ["p - 2", p - 2n],
    ["p - 1", p - 1n],
    ...RECIPIENTS.map((r, i): [string, bigint] => [`recipient ${i}'s key hash`, r.keyHash]),
  ];
  let circuit: Circuit;

  before(async () => {
    circuit = await Circuit.open(compileOrderKeyHarness());
  });

  it("outputs orderKey(x), the top 200 bits of x, at the 2^54, 2^253, alias and p boundaries", async () => {
    expect(circuit.constraints.length).to.be.below(600);
    for (const [name, x] of CASES) {
      const witness = await circuit.witness({ in: x });
      expect(circuit.firstViolated(witness), name).to.equal(-1);
      const [out, input] = circuit.publicSignals(witness);
      expect(input, name).to.equal(x);
      expect(out, name).to.equal(orderKey(x));
      expect(out * 2n ** 54n <= x && x < (out + 1n) * 2n ** 54n, name).to.equal(true);
      expect(out, name).to.be.below(ORDER_KEY_LIMIT);
      // The forger's model of OrderKey's internals (used on relay_batch_test) matches the calculator here too.
      const same = [...witness];
      forgeOrderKey(circuit, same, "main", x);
      expect(same, name).to.deep.equal(witness);
    }
    expect(orderKey(p - 1n)).to.equal(TOP_BLOCK >> 54n);
  });

  it("rejects the alias bits of x + p, at AliasCheck alone, for every x below 2^254 - p", async () => {
    const aliased = CASES.filter(([, x]) => x < ALIAS_LIMIT);
    expect(aliased.map(([name]) => name)).to.include.members(["0", "2^254 - p - 1 (the largest with an alias)"]);
    for (const [name, x] of aliased) {
      const forged = await circuit.witness({ in: x });
      const key = forgeOrderKey(circuit, forged, "main", x + p);
      expect(key, name).to.not.equal(orderKey(x));
      expect(circuit.publicSignals(forged), name).to.deep.equal([key, x]);
      await expectViolatedOnlyIn(circuit, forged, "main.bits.aliasCheck");
    }
  });
});

describe("circuits: BillMessage (bill_message_test)", () => {
  it("hashes with the BILL_DOMAIN of sdk/bill/bill.ts: the circuit's M is billMessageHash", async () => {
    const circuit = await Circuit.load("bill_message_test");
    const bills: Bill[] = [
      { nodeId: NODE_A, epoch: EPOCH, messageCount: 12n, byteCount: 3400n },
      {
        nodeId: (1n << 160n) - 1n,
        epoch: (1n << 64n) - 1n,
        messageCount: (1n << 32n) - 1n,
        byteCount: (1n << 48n) - 1n,
      },
      { nodeId: 0n, epoch: 0n, messageCount: 0n, byteCount: 0n },
    ];
    for (const b of bills) {
      const witness = await circuit.witness({ ...b });
      expect(circuit.firstViolated(witness)).to.equal(-1);
      expect(circuit.publicSignals(witness)[0]).to.equal(billMessageHash(b));
    }
  });
});

describe("circuits: LeanIMTRoot (lean_imt_root_test, MAX_DEPTH 6)", () => {
  it("reproduces the LeanIMT root from generateProof for every leaf of trees of 1..20 leaves, after updates and removals", async function () {
    const circuit = await Circuit.load("lean_imt_root_test");
    const maxDepth = loadCircuitConfig("lean_imt_root_test").params[0];
    // One calculator for all runs: none of them is expected to fail (a failure would only garble later messages).
    const calculator = await (async () => {
      const compiled = compileCircuit("lean_imt_root_test");
      const file = path.join(path.dirname(compiled.wasm), "witness_calculator.js");
      const builder = ((await import(pathToFileURL(file).href)) as { default: WitnessBuilder }).default;
      return builder(readFileSync(compiled.wasm));
    })();
    const pad = (values: bigint[]) => [...values, ...Array<bigint>(maxDepth - values.length).fill(0n)];
    let checked = 0;

    const checkAll = async (tree: LeanIMT<bigint>) => {
      for (let index = 0; index < tree.size; index++) {
        const proof = tree.generateProof(index);
        const bits = proof.siblings.map((_, j) => BigInt((proof.index >> j) & 1));
        const input = {
          leaf: proof.leaf,
          depth: proof.siblings.length,
          pathIndices: pad(bits),
          siblings: pad(proof.siblings),
        };
        const witness = await calculator.calculateWitness(input, true);
        expect(circuit.firstViolated(witness)).to.equal(-1);
        expect(witness[1], `size ${tree.size}, leaf ${index}`).to.equal(tree.root);
        // batchInput computes the same path from the tree's shape alone.
        if (proof.leaf !== 0n) {
          const path = membershipPath(leanIMTView(tree), proof.leaf, maxDepth);
          expect(path).to.deep.equal({
            depth: proof.siblings.length,
            pathIndices: pad(bits),
            siblings: pad(proof.siblings),
          });
        }
        checked++;
      }
    };

    for (let size = 1; size <= 20; size++) {
      const tree = new LeanIMT<bigint>(
        (a, b) => poseidon2([a, b]),
        Array.from({ length: size }, (_, i) => poseidon2([BigInt(size), BigInt(i + 1)])),
      );
      await checkAll(tree);
      tree.update((size * 7) % size, poseidon2([BigInt(size), 1000n])); // a rotation
      await checkAll(tree);
      if (size > 1) {
        tree.update((size * 3 + 1) % size, 0n); // a revocation
        await checkAll(tree);
      }
    }
    expect(checked).to.equal(3 * 210 - 1);
  });
});
