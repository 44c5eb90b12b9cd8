/**
 * Proves a relay batch with snarkjs (Groth16) and shapes the proof the way the rollup contract takes it.
 * The prover needs the circuit's wasm and zkey (scripts/build-circuits.ts makes both; `loadCircuitArtifacts` finds them).
 */
import * as snarkjs from "snarkjs";
import type { Groth16Proof } from "snarkjs";
import { publicSignals, type RelayBatch } from "./batchInput";

/** A Groth16 proof as RelayRollup.submitBatch takes it (G2 coordinates in the order the precompile expects). */
export interface SolidityProof {
  a: [bigint, bigint];
  b: [[bigint, bigint], [bigint, bigint]];
  c: [bigint, bigint];
}

/**
 * What a proof settles: one rollup slot per circuit slot, as the contract's `Slot` struct. A guardian's slot also
 * carries the node's consent (sdk/chain/consent.ts); padding slots and a node's own batch carry zeros.
 */
export interface RollupSlot {
  node: string;
  prevBound: bigint;
  newBound: bigint;
  work: bigint;
  consentR: string;
  consentVS: string;
}

const ZERO_WORD = "0x" + "0".repeat(64);

/** Thrown when proving fails or the prover's public signals differ from the model's. */
export class ProofError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProofError";
  }
}

/** Converts a snarkjs Groth16 proof into the contract's form: G2 points are (x1, x0), (y1, y0) on chain. */
export function toSolidityProof(proof: Groth16Proof): SolidityProof {
  const n = (v: string) => BigInt(v);
  return {
    a: [n(proof.pi_a[0]), n(proof.pi_a[1])],
    b: [
      [n(proof.pi_b[0][1]), n(proof.pi_b[0][0])],
      [n(proof.pi_b[1][1]), n(proof.pi_b[1][0])],
    ],
    c: [n(proof.pi_c[0]), n(proof.pi_c[1])],
  };
}

/** The rollup slots of a batch: node ids as addresses, padding as the zero address. */
export function rollupSlots(batch: RelayBatch): RollupSlot[] {
  return batch.slots.map((slot) => ({
    node: "0x" + slot.nodeId.toString(16).padStart(40, "0"),
    prevBound: slot.prevBound,
    newBound: slot.newBound,
    work: slot.work,
    consentR: ZERO_WORD,
    consentVS: ZERO_WORD,
  }));
}

/**
 * Computes the witness and the Groth16 proof of `batch`, and checks that the public signals the circuit produced
 * are exactly those the model expects (a mismatch means the model and the circuit disagree: never submit that).
 */
export async function proveRelayBatch(
  batch: RelayBatch,
  artifacts: { wasm: string; zkey: string },
): Promise<{ proof: SolidityProof; publicSignals: bigint[]; slots: RollupSlot[] }> {
  let result: { proof: Groth16Proof; publicSignals: string[] };
  try {
    result = await snarkjs.groth16.fullProve(
      batch.input as unknown as Parameters<typeof snarkjs.groth16.fullProve>[0],
      artifacts.wasm,
      artifacts.zkey,
    );
  } catch (error) {
    throw new ProofError(`proveRelayBatch: the circuit refused the batch: ${(error as Error).message.split("\n")[0]}`);
  }
  const expected = publicSignals(batch);
  const actual = result.publicSignals.map((s) => BigInt(s));
  if (actual.length !== expected.length || actual.some((v, i) => v !== expected[i])) {
    throw new ProofError(
      `proveRelayBatch: expected public signals [${expected.join(", ")}], the circuit gave [${actual.join(", ")}]`,
    );
  }
  return { proof: toSolidityProof(result.proof), publicSignals: actual, slots: rollupSlots(batch) };
}
