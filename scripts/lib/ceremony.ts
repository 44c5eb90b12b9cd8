/**
 * The Groth16 setup, offline. No public powers-of-tau file can be downloaded here, so for development and tests a
 * small local ceremony is generated (cached outside git and reused); anything real takes a path to a public
 * ceremony file. From the ceremony and a compiled circuit it makes the zkey (with one contribution), the
 * verification key, and the Solidity verifier, generated into contracts/verifiers/generated/ and never edited.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { compileCircuit, loadCircuitConfigs, ROOT, type CompiledCircuit } from "./circom";

/** Where ceremonies and zkeys are cached between runs and clones (override with SEND_CACHE_DIR). */
export const CACHE_DIR = process.env.SEND_CACHE_DIR ?? path.join(os.homedir(), ".cache", "sending-network");
export const VERIFIERS_DIR = path.join(ROOT, "contracts", "verifiers", "generated");
/** The largest local ceremony this script will make: 2^16 takes about 18 minutes on 2 cores, 2^17 about 40. */
export const MAX_LOCAL_POWER = 17;

/** A snarkjs logger that turns its section and progress messages into lines. */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

type Log = (line: string) => void;

/* eslint-disable @typescript-eslint/no-require-imports */
// snarkjs ships CommonJS for require; its types come from @types/snarkjs, which lacks the setup functions used here.
interface SnarkjsSetup {
  powersOfTau: {
    newAccumulator(curve: unknown, power: number, file: string, logger?: Logger): Promise<unknown>;
    contribute(oldFile: string, newFile: string, name: string, entropy: string, logger?: Logger): Promise<unknown>;
    preparePhase2(oldFile: string, newFile: string, logger?: Logger): Promise<unknown>;
  };
  zKey: {
    newZKey(r1cs: string, ptau: string, zkey: string, logger?: Logger): Promise<unknown>;
    contribute(oldFile: string, newFile: string, name: string, entropy: string, logger?: Logger): Promise<unknown>;
    exportVerificationKey(zkey: string, logger?: Logger): Promise<object>;
    exportSolidityVerifier(zkey: string, templates: { groth16: string }, logger?: Logger): Promise<string>;
  };
  r1cs: {
    info(file: string, logger?: Logger): Promise<{ nConstraints: number; nPubInputs: number; nOutputs: number }>;
  };
  curves: { getCurveFromName(name: string): Promise<{ terminate(): Promise<void> }> };
}
function snarkjs(): SnarkjsSetup {
  return require("snarkjs") as SnarkjsSetup;
}

/** Progress from snarkjs, thinned: section starts and every tenth of long loops. */
function progressLogger(log: Log, prefix: string): Logger {
  let lastPercent = -1;
  const line = (message: string) => {
    const progress = /(\d+)\/(\d+)/.exec(message);
    if (progress) {
      const percent = Math.floor((100 * Number(progress[1])) / Math.max(1, Number(progress[2])));
      if (percent / 10 === lastPercent / 10 || percent % 10 !== 0) return;
      lastPercent = percent;
    }
    log(`${prefix}${message}`);
  };
  return { debug: line, info: line, warn: line, error: line };
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** The smallest power N whose 2^N exceeds the circuit's constraints plus public inputs (snarkjs's check). */
export function requiredPower(constraints: number, publicInputs: number): number {
  let power = 1;
  while (2 ** power <= constraints + publicInputs) power++;
  return Math.max(power, 8);
}

/** Runs `work` into a temporary file and renames it into place: a crash never leaves a half-written artefact. */
async function atomically(target: string, work: (tmp: string) => Promise<unknown>): Promise<void> {
  const tmp = `${target}.partial`;
  rmSync(tmp, { force: true });
  await work(tmp);
  renameSync(tmp, target);
}

/**
 * A local powers-of-tau of `power`, prepared for phase 2, from the cache or made now (minutes: progress is logged).
 * For development and tests only: one local contribution protects nothing.
 */
export async function localPtau(power: number, log: Log): Promise<string> {
  if (power > MAX_LOCAL_POWER) {
    throw new Error(
      `localPtau: a 2^${power} ceremony is too slow to make here (max 2^${MAX_LOCAL_POWER}); pass a public ceremony file with --ptau`,
    );
  }
  const dir = path.join(CACHE_DIR, "ptau");
  const final = path.join(dir, `local_pot${power}_final.ptau`);
  if (existsSync(final)) return final;
  mkdirSync(dir, { recursive: true });
  // Another process (a parallel test run, a second terminal) may be making the same ceremony: wait for it.
  const lock = `${final}.lock`;
  if (!(await acquireLock(lock, log))) {
    if (existsSync(final)) return final;
    throw new Error(`localPtau: the process making ${final} stopped before finishing; run again`);
  }
  try {
    if (existsSync(final)) return final;
    return await makeLocalPtau(power, dir, final, log);
  } finally {
    rmSync(lock, { force: true });
  }
}

/** Takes `lock` for this process; if a live process holds it, waits for it to go and returns false. */
async function acquireLock(lock: string, log: Log): Promise<boolean> {
  for (let waited = 0; ; waited++) {
    try {
      writeFileSync(lock, String(process.pid), { flag: "wx" });
      return true;
    } catch {
      const holder = Number(readFileSync(lock, "utf8"));
      if (!isAlive(holder)) {
        rmSync(lock, { force: true });
        continue;
      }
      if (waited % 30 === 0) log(`waiting for process ${holder}, which is making ${path.basename(lock, ".lock")}`);
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      if (!existsSync(lock)) return false;
    }
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function makeLocalPtau(power: number, dir: string, final: string, log: Log): Promise<string> {
  const { powersOfTau, curves } = snarkjs();
  const curve = await curves.getCurveFromName("bn128");
  const started = Date.now();
  const stage = (name: string) =>
    log(`ceremony 2^${power}: ${name} (${((Date.now() - started) / 1000).toFixed(0)} s so far)`);
  const p0 = path.join(dir, `local_pot${power}_0000.ptau`);
  const p1 = path.join(dir, `local_pot${power}_0001.ptau`);
  stage("new accumulator");
  await atomically(p0, (tmp) => powersOfTau.newAccumulator(curve, power, tmp, progressLogger(log, "  ")));
  stage("contribution");
  await atomically(p1, (tmp) =>
    powersOfTau.contribute(
      p0,
      tmp,
      "sending-network local",
      randomBytes(32).toString("hex"),
      progressLogger(log, "  "),
    ),
  );
  stage("prepare phase 2 (the long step: about 2 minutes at 2^13, 9 at 2^15, 18 at 2^16 on 2 cores)");
  await atomically(final, (tmp) => powersOfTau.preparePhase2(p1, tmp, progressLogger(log, "  ")));
  rmSync(p0, { force: true });
  rmSync(p1, { force: true });
  stage("done");
  return final;
}

/** What a built circuit is made of: everything a prover or a deploy needs. */
export interface CircuitArtifacts {
  name: string;
  wasm: string;
  r1cs: string;
  zkey: string;
  vkey: string;
  constraints: number;
  publicInputs: number;
  power: number;
  ptau: string;
  verifierContract: string;
  verifierFile: string;
  /** The compile's source hash these artefacts were made from (see compileCircuit). */
  sourceHash: string;
}

/** The verifier contract's name for a circuit: relay_batch_test → RelayBatchTestVerifier. */
export function verifierName(circuit: string): string {
  return (
    circuit
      .split(/[_-]/)
      .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
      .join("") + "Verifier"
  );
}

/**
 * Compiles a configured circuit, makes or reuses its zkey, and generates its verifier contract, skipping every step
 * that is up to date. `ptau` is a public ceremony file; without it a local one of the needed power is used.
 */
export async function buildCircuit(name: string, options: { ptau?: string; log: Log }): Promise<CircuitArtifacts> {
  const { log } = options;
  const compiled: CompiledCircuit = compileCircuit(name, log);
  const recorded = upToDate(compiled, options.ptau);
  if (recorded) return recorded;
  const { r1cs: r1csApi, zKey } = snarkjs();
  const info = await r1csApi.info(compiled.r1cs);
  const publicInputs = info.nPubInputs + info.nOutputs;
  const power = requiredPower(info.nConstraints, publicInputs);
  log(`${name}: ${info.nConstraints} constraints, ${publicInputs} public inputs, needs a 2^${power} ceremony`);

  let ptau = options.ptau;
  if (ptau) {
    if (!existsSync(ptau)) throw new Error(`buildCircuit: ceremony file ${ptau} does not exist`);
  } else {
    ptau = await localPtau(power, log);
  }

  const r1csHash = await sha256File(compiled.r1cs);
  const ptauHash = await sha256File(ptau);
  const zkeyDir = path.join(CACHE_DIR, "zkeys");
  mkdirSync(zkeyDir, { recursive: true });
  const key = `${name}-${r1csHash.slice(0, 16)}-${ptauHash.slice(0, 16)}`;
  const zkey = path.join(zkeyDir, `${key}.zkey`);
  if (!existsSync(zkey) && (await acquireLock(`${zkey}.lock`, log))) {
    try {
      if (!existsSync(zkey)) await makeZkey(name, compiled, ptau, zkeyDir, key, zkey, log);
    } finally {
      rmSync(`${zkey}.lock`, { force: true });
    }
  }
  if (!existsSync(zkey))
    throw new Error(`buildCircuit: the process making ${zkey} stopped before finishing; run again`);
  const vkey = path.join(zkeyDir, `${key}.vkey.json`);
  if (!existsSync(vkey)) writeFileSync(vkey, JSON.stringify(await zKey.exportVerificationKey(zkey), null, 2));

  const contractName = verifierName(name);
  const verifierFile = path.join(VERIFIERS_DIR, `${contractName}.sol`);
  const stamp = `// zkey ${key}`;
  if (!existsSync(verifierFile) || !readFileSync(verifierFile, "utf8").includes(stamp)) {
    const template = readFileSync(
      path.join(ROOT, "node_modules", "snarkjs", "templates", "verifier_groth16.sol.ejs"),
      "utf8",
    );
    const source = await zKey.exportSolidityVerifier(zkey, { groth16: template });
    const renamed = source.replace(/contract Groth16Verifier\b/, `contract ${contractName}`);
    if (renamed === source)
      throw new Error("buildCircuit: snarkjs verifier template no longer names 'Groth16Verifier'");
    mkdirSync(VERIFIERS_DIR, { recursive: true });
    writeFileSync(
      verifierFile,
      `// GENERATED by scripts/build-circuits.ts from circuit ${name} with snarkjs. Do not edit.\n${stamp}\n${renamed}`,
    );
    log(`${name}: verifier generated: ${path.relative(ROOT, verifierFile)}`);
  }

  const artifacts: CircuitArtifacts = {
    name,
    wasm: compiled.wasm,
    r1cs: compiled.r1cs,
    zkey,
    vkey,
    constraints: info.nConstraints,
    publicInputs,
    power,
    ptau,
    verifierContract: contractName,
    verifierFile,
    sourceHash: compiled.sourceHash,
  };
  writeFileSync(path.join(compiled.dir, "artifacts.json"), JSON.stringify(artifacts, null, 2) + "\n");
  return artifacts;
}

async function makeZkey(
  name: string,
  compiled: CompiledCircuit,
  ptau: string,
  zkeyDir: string,
  key: string,
  zkey: string,
  log: Log,
): Promise<void> {
  const { zKey } = snarkjs();
  const started = Date.now();
  const zkey0 = path.join(zkeyDir, `${key}_0000.zkey`);
  log(`${name}: groth16 setup`);
  await atomically(zkey0, (tmp) => zKey.newZKey(compiled.r1cs, ptau as string, tmp, progressLogger(log, "  ")));
  log(`${name}: zkey contribution`);
  await atomically(zkey, (tmp) =>
    zKey.contribute(zkey0, tmp, "sending-network local", randomBytes(32).toString("hex"), progressLogger(log, "  ")),
  );
  rmSync(zkey0, { force: true });
  log(`${name}: zkey ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

/**
 * The artefacts a previous build recorded, if nothing has changed since: same sources, same ceremony file, and the
 * zkey, verification key and stamped verifier all still in place. Spares every compile the hashing of the r1cs and
 * the ceremony file (most of a second) when the circuits are up to date.
 */
function upToDate(compiled: CompiledCircuit, ptau: string | undefined): CircuitArtifacts | undefined {
  const file = path.join(compiled.dir, "artifacts.json");
  if (!existsSync(file)) return undefined;
  const recorded = JSON.parse(readFileSync(file, "utf8")) as Partial<CircuitArtifacts>;
  if (recorded.sourceHash !== compiled.sourceHash || (ptau !== undefined && recorded.ptau !== ptau)) return undefined;
  const { zkey, vkey, verifierFile } = recorded;
  if (
    !zkey ||
    !vkey ||
    !verifierFile ||
    !recorded.ptau ||
    ![zkey, vkey, verifierFile, recorded.ptau].every(existsSync)
  ) {
    return undefined;
  }
  const stamp = `// zkey ${path.basename(zkey, ".zkey")}`;
  if (!readFileSync(verifierFile, "utf8").includes(stamp)) return undefined;
  return recorded as CircuitArtifacts;
}

/** Reads the artefacts a previous build recorded for `name` (run the build first). */
export function loadCircuitArtifacts(name: string): CircuitArtifacts {
  const file = path.join(ROOT, "build", "circuits", name, "artifacts.json");
  if (!existsSync(file)) throw new Error(`circuit ${name} is not built: run 'npm run build:circuits'`);
  return JSON.parse(readFileSync(file, "utf8")) as CircuitArtifacts;
}

/** Builds every circuit that tests use (`"test": true` in circuits/config.json). */
export async function buildTestCircuits(log: Log): Promise<CircuitArtifacts[]> {
  const built: CircuitArtifacts[] = [];
  for (const [name, config] of Object.entries(loadCircuitConfigs())) {
    if (config.test) built.push(await buildCircuit(name, { log }));
  }
  return built;
}

/** Stops snarkjs's worker threads so the process can exit. */
export async function releaseCurves(): Promise<void> {
  const global = globalThis as { curve_bn128?: { terminate(): Promise<void> } };
  if (global.curve_bn128) {
    await global.curve_bn128.terminate();
    delete global.curve_bn128;
  }
}
