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
  PADDING_POINT,
  RELAY_BATCH_PROD_PARAMS,
  RELAY_BATCH_TEST_PARAMS,
  buildRelayBatch,
  leanIMTView,
  membershipPath,
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
    private readonly _wires: Map<string, number>,
  ) {}

  static async load(name: string): Promise<Circuit> {
    const compiled = compileCircuit(name);
    const calculator = path.join(path.dirname(compiled.wasm), "witness_calculator.js");
    const builder = ((await import(pathToFileURL(calculator).href)) as { default: WitnessBuilder }).default;
    const { constraints, nPublic, nWires } = readR1cs(compiled.r1cs);
    const wires = new Map<string, number>();
    for (const line of readFileSync(compiled.sym, "utf8").split("\n")) {
      const [, wire, , signal] = line.split(",");
      if (signal !== undefined) wires.set(signal, Number(wire));
    }
    return new Circuit(name, compiled.r1cs, readFileSync(compiled.wasm), builder, constraints, nPublic, nWires, wires);
  }

  /** The full witness, from a fresh instance (a failed run leaves its error text in the instance). */
  async witness(input: Signals): Promise<bigint[]> {
    const calculator = await this._builder(this._wasm);
    return calculator.calculateWitness(input, true);
  }

  /** The index of the first constraint A·B = C the witness violates, or -1 if it satisfies all of them. */
  firstViolated(witness: bigint[]): number {
    const p = SNARK_SCALAR_FIELD;
    const evaluate = (lc: LinearCombination) => lc.reduce((sum, [wire, c]) => (sum + c * witness[wire]) % p, 0n);
    return this.constraints.findIndex(([a, b, c]) => (evaluate(a) * evaluate(b) - evaluate(c)) % p !== 0n);
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

/**
 * Expects the circuit to reject `input`, at a constraint of `template` whose source line matches `line`. The witness
 * calculator evaluates every `===` as it goes and stops at the first that fails; should it ever produce a witness, the
 * R1CS check must reject that instead.
 */
async function expectRejected(circuit: Circuit, input: Signals, template: string, line: RegExp): Promise<void> {
  let witness: bigint[] | undefined;
  try {
    witness = await circuit.witness(input);
  } catch (error) {
    const message = (error as Error).message;
    const where = /Assert Failed\.\s*Error in template (\w+)_\d+ line: (\d+)/.exec(message);
    expect(where, `expected an assertion failure, got: ${message}`).to.not.equal(null);
    const [, failedTemplate, lineNumber] = where!;
    const file = TEMPLATE_FILES.get(failedTemplate);
    const text = file ? readFileSync(file, "utf8").split("\n")[Number(lineNumber) - 1] : "";
    expect(`${failedTemplate}: ${text.trim()}`).to.match(new RegExp(`^${template}: .*${line.source}`));
    return;
  }
  expect(circuit.firstViolated(witness), "expected the witness to violate a constraint").to.be.at.least(0);
}

// --- fixtures ---------------------------------------------------------------------------------------------------------

const EPOCH = 17n;
const NODE_A = nodeIdFromAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
const NODE_B = nodeIdFromAddress("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC");
const CAP = RELAY_BATCH_TEST_PARAMS.maxWorkPerBill;

/** Six recipients with fixed keys, sorted by recipientKeyHash so tests can speak of "the lowest" and so on. */
const RECIPIENTS = Array.from({ length: 6 }, (_, i) => {
  const privateKey = Uint8Array.from(Buffer.from(id(`relayBatch.test recipient ${i}`).slice(2), "hex"));
  const billKey = billKeyOf(privateKey);
  return { privateKey, billKey, keyHash: recipientKeyHash(billKey) };
}).sort((a, b) => (a.keyHash < b.keyHash ? -1 : 1));

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

const high = (v: bigint) => v >> 128n;
const low = (v: bigint) => v & ((1n << 128n) - 1n);

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
      {
        nodeId: NODE_B,
        prevBound: RECIPIENTS[2].keyHash - 12345n,
        bills: [bill(3, NODE_B, 1000n), bill(2, NODE_B, 999n)],
      },
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
  });

  describe("valid batches", () => {
    it("proves two nodes with two bills each; the public signals are the model's", async () => {
      const [r0, r1, r2, r3] = RECIPIENTS.map((r) => r.keyHash);
      // Independent of batchInput: bills sorted by key hash, the cap applied to the 5000-message bill.
      const expected = [EPOCH, tree.root, NODE_A, NODE_B, 0n, r2 - 12345n, r1, r3, 12n + CAP, 1000n + 999n];
      expect(publicSignals(batch)).to.deep.equal(expected);
      expect(batch.slots[0].recipientKeyHashes).to.deep.equal([r0, r1]);

      const witness = await circuit.witness(batch.input);
      expect(circuit.firstViolated(witness)).to.equal(-1);
      expect(await snarkjsAccepts(circuit, witness)).to.equal(true);
      expect(circuit.publicSignals(witness)).to.deep.equal(expected);
    });

    it("proves one node with one bill next to an unused slot", async () => {
      const one = build([{ nodeId: NODE_A, prevBound: 0n, bills: [bill(4, NODE_A, 3n)] }]);
      expect(publicSignals(one)).to.deep.equal([
        EPOCH,
        tree.root,
        NODE_A,
        0n,
        0n,
        0n,
        RECIPIENTS[4].keyHash,
        0n,
        3n,
        0n,
      ]);
      const witness = await circuit.witness(one.input);
      expect(circuit.firstViolated(witness)).to.equal(-1);
      expect(circuit.publicSignals(witness)).to.deep.equal(publicSignals(one));
    });

    it("proves a node with no bills: its bound stays, its work is 0", async () => {
      const prevBound = RECIPIENTS[5].keyHash;
      const none = build([claims[0], { nodeId: NODE_B, prevBound, bills: [] }]);
      expect(none.slots[1]).to.include({ newBound: prevBound, work: 0n });
      const witness = await circuit.witness(none.input);
      expect(circuit.firstViolated(witness)).to.equal(-1);
      expect(circuit.publicSignals(witness)).to.deep.equal(publicSignals(none));
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

    it("accepts a prevBound just below the first key hash, in either half", async () => {
      const k = RECIPIENTS[0].keyHash;
      expect(low(k)).to.be.above(0n);
      for (const prevBound of [k - 1n, ((high(k) - 1n) << 128n) + (1n << 128n) - 1n]) {
        const below = build([{ ...claims[0], prevBound }]);
        const witness = await circuit.witness(below.input);
        expect(circuit.firstViolated(witness)).to.equal(-1);
      }
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
      const ABOVE = /\(1 - aboveBound\[i\]\.out\) \* enabled\[i\] === 0;/;
      const duplicate = fresh();
      copyBill(duplicate, [0, 0], duplicate, [0, 1]);
      duplicate.newBound[0] = RECIPIENTS[0].keyHash;
      duplicate.work[0] = 24n;
      await expectRejected(circuit, duplicate, "RelaySlot", ABOVE);

      const reversed = fresh();
      swapBills(reversed, 0);
      reversed.newBound[0] = RECIPIENTS[0].keyHash; // the last bill is now the lower key hash
      await expectRejected(circuit, reversed, "RelaySlot", ABOVE);
    });

    it("a first key hash not strictly above prevBound, in either half", async () => {
      const k = RECIPIENTS[0].keyHash;
      const cases = [k, k + 1n, k + (1n << 128n), (high(k) + 1n) << 128n, SNARK_SCALAR_FIELD - 1n];
      for (const prevBound of cases) {
        expect(prevBound < SNARK_SCALAR_FIELD).to.equal(true);
        const input = fresh();
        input.prevBound[0] = prevBound;
        await expectRejected(circuit, input, "RelaySlot", /\(1 - aboveBound\[i\]\.out\) \* enabled\[i\] === 0;/);
      }
    });

    it("a newBound other than the last key hash (or than prevBound for an empty slot)", async () => {
      const input = fresh();
      input.newBound[0] = RECIPIENTS[0].keyHash;
      await expectRejected(circuit, input, "RelaySlot", /newBound === bound\[BILLS\];/);

      const empty = structuredClone(build([claims[0]]).input);
      empty.newBound[1] = 1n;
      await expectRejected(circuit, empty, "RelaySlot", /newBound === bound\[BILLS\];/);
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
      const NUM2BITS = /lc1 === in;/;
      const overflows: Bill[] = [
        { nodeId: NODE_A, epoch: EPOCH, messageCount: 1n << 32n, byteCount: 0n },
        { nodeId: NODE_A, epoch: EPOCH, messageCount: SNARK_SCALAR_FIELD - 1n, byteCount: 0n }, // "-1"
        { nodeId: NODE_A, epoch: EPOCH, messageCount: 12n, byteCount: 1n << 48n },
      ];
      for (const fields of overflows) {
        const input = fresh();
        putBill(input, 0, 0, signUnchecked(0, fields));
        await expectRejected(circuit, input, "Num2Bits", NUM2BITS);
      }
    });

    it("enabled bills that are not a prefix, or an enabled flag that is not a bit", async () => {
      const gap = fresh();
      copyBill(gap, [0, 0], gap, [0, 1]); // position 1 holds bill 0 ...
      padBill(gap, 0, 0); // ... behind a disabled position 0
      gap.newBound[0] = RECIPIENTS[0].keyHash;
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
      await expectRejected(circuit, epoch, "Num2Bits", /lc1 === in;/);
      const node = fresh();
      node.nodeId[1] = 1n << 160n;
      await expectRejected(circuit, node, "Num2Bits", /lc1 === in;/);
    });

    it("a tampered witness: the R1CS itself rejects it, not only the witness calculator", async () => {
      const witness = await circuit.witness(batch.input);
      expect(circuit.firstViolated(witness)).to.equal(-1);
      const targets = [
        "main.work[0]", // a public input
        "main.newBound[1]",
        "main.slot[0].recipientKeyHash[1]", // an internal signal
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
      refuse([{ ...claims[0], bills: [bill(0, NODE_A, 1n), bill(0, NODE_A, 2n)] }], /expected one bill per recipient/);
      refuse(
        [{ ...claims[0], prevBound: RECIPIENTS[1].keyHash }],
        /slot 0, bill 0: expected a key hash above prevBound/,
      );
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
