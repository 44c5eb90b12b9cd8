/**
 * Proves relay batches off the main thread. A Groth16 proof of the batch circuit takes seconds (about 3 s for the
 * 2 x 2 test circuit on 2 cores, minutes for production sizes), and snarkjs computes the witness on the thread that
 * calls it: run in the daemon's own thread it would freeze every libp2p stream and timer for that long. So each proof
 * runs in a fresh worker_thread (snarkjs's wtns.calculate then groth16.prove), which reports progress as it goes and
 * is terminated on abort. The result is checked against the TypeScript model's public signals, exactly as
 * sdk/bill/prove.ts does in process, and shaped for `RelayRollup.submitBatch`.
 *
 * Artefacts: `circuitArtifactPaths(name)` reads `build/circuits/<name>/artifacts.json`, which the build script
 * (scripts/build-circuits.ts, scripts/lib/ceremony.ts) writes next to the compiled circuit; the zkey lives in the
 * ceremony cache it names.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { Worker } from "node:worker_threads";
import type { Groth16Proof } from "snarkjs";
import { publicSignals, type RelayBatch } from "../sdk/bill/batchInput";
import { rollupSlots, toSolidityProof, type RollupSlot, type SolidityProof } from "../sdk/bill/prove";

/** Repository root (node/ is one level below it). */
const REPO_ROOT = path.resolve(__dirname, "..");

/**
 * snarkjs's progress messages during groth16.prove, in the order it logs them, with the share of a proof done when
 * each appears (measured on the test circuit: the FFTs and multi-exponentiations dominate, the witness about 15%).
 */
const PROVE_MILESTONES: readonly (readonly [string, number])[] = [
  ["Reading Wtns", 0.2],
  ["Building ABC", 0.25],
  ["Join ABC", 0.5],
  ["Reading A Points", 0.55],
  ["Reading B1 Points", 0.65],
  ["Reading B2 Points", 0.72],
  ["Reading C Points", 0.85],
  ["Reading H Points", 0.9],
];

/** Where a proof stands. `fraction` rises from 0 to 1. */
export interface ProofProgress {
  readonly stage: "witness" | "prove" | "done";
  readonly fraction: number;
  /** snarkjs's own message, when the step came from one. */
  readonly message?: string;
}

/** The paths a prover needs. */
export interface CircuitPaths {
  readonly name: string;
  readonly wasm: string;
  readonly zkey: string;
}

/** What a proof settles, shaped for `RelayRollup.submitBatch`. */
export interface ProvenBatch {
  readonly proof: SolidityProof;
  readonly publicSignals: bigint[];
  readonly slots: RollupSlot[];
  /** Wall-clock time of the proof, worker start to result. */
  readonly elapsedMs: number;
}

/** Options of one proof. */
export interface ProveOptions {
  /** Terminates the worker and rejects with ProverError code PROVER_ABORTED. */
  readonly signal?: AbortSignal;
  /** Called on the main thread as the worker reports progress. */
  readonly onProgress?: (progress: ProofProgress) => void;
}

/** Anything that proves batches: `WorkerProver` here; the guardian takes this interface. */
export interface BatchProver {
  prove(batch: RelayBatch, options?: ProveOptions): Promise<ProvenBatch>;
}

export type ProverErrorCode =
  | "PROVER_NO_ARTIFACTS" // the circuit is not built, or its files moved
  | "PROVER_ABORTED" // the caller aborted
  | "PROVER_FAILED" // snarkjs refused the input or crashed
  | "PROVER_SIGNAL_MISMATCH"; // the circuit's public signals are not the model's: never submit that

/** A proof that could not be made. */
export class ProverError extends Error {
  constructor(
    readonly code: ProverErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "ProverError";
  }
}

/**
 * The wasm and zkey of circuit `name`, from the artefacts record the build script writes
 * (`<root>/build/circuits/<name>/artifacts.json`). Throws ProverError PROVER_NO_ARTIFACTS if it is missing or names
 * files that do not exist.
 */
export function circuitArtifactPaths(name: string, root: string = REPO_ROOT): CircuitPaths {
  if (typeof name !== "string" || !/^[A-Za-z0-9_-]+$/.test(name)) {
    throw new ProverError("PROVER_NO_ARTIFACTS", `circuitArtifactPaths: expected a circuit name, got ${String(name)}`);
  }
  const file = path.join(root, "build", "circuits", name, "artifacts.json");
  if (!existsSync(file)) {
    throw new ProverError(
      "PROVER_NO_ARTIFACTS",
      `circuitArtifactPaths: ${file} is missing; run 'npm run build:circuits' for circuit ${name}`,
    );
  }
  let record: { wasm?: unknown; zkey?: unknown };
  try {
    record = JSON.parse(readFileSync(file, "utf8")) as { wasm?: unknown; zkey?: unknown };
  } catch (error) {
    throw new ProverError("PROVER_NO_ARTIFACTS", `circuitArtifactPaths: ${file} does not parse: ${String(error)}`);
  }
  for (const key of ["wasm", "zkey"] as const) {
    const value = record[key];
    if (typeof value !== "string" || !existsSync(value)) {
      throw new ProverError(
        "PROVER_NO_ARTIFACTS",
        `circuitArtifactPaths: expected ${file} to name an existing ${key} file, got ${String(value)}`,
      );
    }
  }
  return { name, wasm: record.wasm as string, zkey: record.zkey as string };
}

/** Messages from the worker to the main thread; `job` is the number of the proof they belong to. */
type WorkerMessage =
  | { kind: "progress"; job: number; stage: "witness" | "prove"; message?: string }
  | { kind: "result"; job: number; proof: Groth16Proof; publicSignals: string[] }
  | { kind: "error"; job: number; message: string };

/**
 * The worker's code, evaluated as CommonJS in a worker_thread that lives across proofs (snarkjs and its curve, with
 * their own helper threads, load once): for each job, compute the witness, prove, post the result. Progress lines go
 * back as messages. The main thread sends one job at a time.
 */
const WORKER_SOURCE = `
const threads = require("node:worker_threads");
const { parentPort, workerData } = threads;
// web-worker (under snarkjs's ffjavascript) decides at load time which side of a thread boundary it is on, by
// isMainThread. This thread is snarkjs's main thread: it must build its own helper workers, not act as one.
Object.defineProperty(threads, "isMainThread", { value: true });
const snarkjs = require(workerData.snarkjs);
parentPort.on("message", async ({ job, input, wasm, zkey }) => {
  const progress = (stage, message) => parentPort.postMessage({ kind: "progress", job, stage, message });
  const logger = {
    debug: (m) => progress("prove", String(m)),
    info: (m) => progress("prove", String(m)),
    warn: () => undefined,
    error: () => undefined,
  };
  try {
    progress("witness");
    const wtns = { type: "mem" };
    await snarkjs.wtns.calculate(input, wasm, wtns);
    progress("prove");
    const { proof, publicSignals } = await snarkjs.groth16.prove(zkey, wtns, logger);
    parentPort.postMessage({ kind: "result", job, proof, publicSignals });
  } catch (error) {
    parentPort.postMessage({ kind: "error", job, message: String((error && error.message) || error).split("\\n")[0] });
  }
});
`;

/**
 * Proves batches in a worker_thread, so the caller's event loop stays free. One worker serves every proof in turn
 * (unref'd: it never keeps the process alive); an abort terminates it, and the next proof starts a fresh one.
 * `close()` ends it.
 */
export class WorkerProver implements BatchProver {
  private readonly snarkjsEntry: string;
  private worker: Worker | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private jobs = 0;

  constructor(readonly circuit: CircuitPaths) {
    if (typeof circuit?.wasm !== "string" || typeof circuit.zkey !== "string") {
      throw new ProverError("PROVER_NO_ARTIFACTS", "WorkerProver: expected circuit paths {name, wasm, zkey}");
    }
    this.snarkjsEntry = require.resolve("snarkjs");
  }

  /** Terminates the worker (a proof in progress rejects with PROVER_FAILED). */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  /**
   * Proves `batch` and checks that the circuit's public signals are the model's (`publicSignals(batch)`). Proofs
   * queue: one runs at a time. Rejects with ProverError: PROVER_ABORTED on abort (the worker is terminated at once),
   * PROVER_FAILED if snarkjs refuses or the worker dies, PROVER_SIGNAL_MISMATCH if the circuit and the model disagree.
   */
  prove(batch: RelayBatch, options: ProveOptions = {}): Promise<ProvenBatch> {
    const run = this.queue.then(() => this.run(batch, options));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private workerFor(): Worker {
    if (this.worker !== undefined) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { snarkjs: this.snarkjsEntry } });
    worker.unref();
    const forget = () => {
      if (this.worker === worker) this.worker = undefined;
    };
    worker.on("exit", forget);
    worker.on("error", forget); // between jobs: the next proof starts a fresh worker

    this.worker = worker;
    return worker;
  }

  private run(batch: RelayBatch, options: ProveOptions): Promise<ProvenBatch> {
    const { signal, onProgress } = options;
    if (signal?.aborted) {
      return Promise.reject(new ProverError("PROVER_ABORTED", "WorkerProver.prove: aborted before it started"));
    }
    const started = Date.now();
    const expected = publicSignals(batch);
    const job = ++this.jobs;
    const worker = this.workerFor();
    return new Promise<ProvenBatch>((resolve, reject) => {
      let settled = false;
      let fraction = 0;
      let lastStage: ProofProgress["stage"] | undefined;
      const finish = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener("abort", onAbort);
        worker.off("message", onMessage);
        worker.off("error", onError);
        worker.off("exit", onExit);
        outcome();
      };
      const report = (progress: ProofProgress) => {
        if (progress.stage === lastStage && progress.fraction <= fraction) return; // nothing new
        lastStage = progress.stage;
        fraction = Math.max(fraction, progress.fraction);
        try {
          onProgress?.({ ...progress, fraction });
        } catch {
          // A progress listener's failure must not break the proof.
        }
      };
      const onAbort = () =>
        finish(() => {
          if (this.worker === worker) this.worker = undefined;
          void worker.terminate();
          reject(new ProverError("PROVER_ABORTED", "WorkerProver.prove: aborted, worker terminated"));
        });
      const onError = (error: Error) =>
        finish(() => {
          if (this.worker === worker) this.worker = undefined;
          void worker.terminate();
          reject(new ProverError("PROVER_FAILED", `WorkerProver.prove: worker failed: ${error.message}`));
        });
      const onExit = (code: number) =>
        finish(() =>
          reject(new ProverError("PROVER_FAILED", `WorkerProver.prove: worker exited (code ${code}) without a result`)),
        );
      const onMessage = (message: WorkerMessage) => {
        if (settled || message.job !== job) return;
        if (message.kind === "progress") {
          if (message.stage === "witness") report({ stage: "witness", fraction: 0 });
          else if (message.message === undefined) report({ stage: "prove", fraction: 0.15 });
          else {
            const milestone = PROVE_MILESTONES.find(([prefix]) => message.message?.startsWith(prefix));
            report({ stage: "prove", fraction: milestone?.[1] ?? fraction, message: message.message });
          }
          return;
        }
        if (message.kind === "error") {
          finish(() =>
            reject(
              new ProverError("PROVER_FAILED", `WorkerProver.prove: the circuit refused the batch: ${message.message}`),
            ),
          );
          return;
        }
        const actual = message.publicSignals.map((v) => BigInt(v));
        if (actual.length !== expected.length || actual.some((v, i) => v !== expected[i])) {
          finish(() =>
            reject(
              new ProverError(
                "PROVER_SIGNAL_MISMATCH",
                `WorkerProver.prove: expected public signals [${expected.join(", ")}], the circuit gave [${actual.join(", ")}]`,
              ),
            ),
          );
          return;
        }
        finish(() => {
          report({ stage: "done", fraction: 1 });
          resolve({
            proof: toSolidityProof(message.proof),
            publicSignals: actual,
            slots: rollupSlots(batch),
            elapsedMs: Date.now() - started,
          });
        });
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      worker.on("message", onMessage);
      worker.on("error", onError);
      worker.on("exit", onExit);
      worker.postMessage({ job, input: batch.input, wasm: this.circuit.wasm, zkey: this.circuit.zkey });
    });
  }
}
