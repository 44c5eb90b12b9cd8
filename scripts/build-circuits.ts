/**
 * Builds the circuits from source: compile (circom2 --O2), ceremony (local and cached, or a public file), zkey with
 * a contribution, verification key, and the generated Solidity verifier. Idempotent: skips what is up to date.
 *
 *   npm run build:circuits                      the circuits tests use ("test": true in circuits/config.json)
 *   npm run build:circuits -- --circuit NAME    one circuit
 *   npm run build:circuits -- --circuit relay_batch_prod --ptau /path/to/public.ptau
 */
import { parseArgs } from "node:util";
import { buildCircuit, buildTestCircuits, CACHE_DIR, releaseCurves } from "./lib/ceremony";
import { loadCircuitConfigs } from "./lib/circom";

const HELP = `Usage: npm run build:circuits -- [--circuit NAME] [--ptau FILE]

  --circuit NAME  build this configuration of circuits/config.json (default: every one marked "test")
  --ptau FILE     a public powers-of-tau file (prepared for phase 2); without it a local ceremony of the needed
                  power is generated and cached in ${CACHE_DIR} (override with SEND_CACHE_DIR)
  --help          this text

Configurations: ${Object.keys(loadCircuitConfigs()).join(", ")}`;

async function main(): Promise<number> {
  let values: { circuit?: string; ptau?: string; help?: boolean };
  try {
    values = parseArgs({
      options: { circuit: { type: "string" }, ptau: { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
    }).values;
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const log = (line: string) => console.log(line);
  const started = Date.now();
  const built = values.circuit
    ? [await buildCircuit(values.circuit, { ptau: values.ptau, log })]
    : await buildTestCircuits(log);
  for (const a of built) {
    console.log(`${a.name}: ${a.constraints} constraints, 2^${a.power} ceremony, verifier ${a.verifierContract}`);
  }
  console.log(`circuits up to date (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  return 0;
}

main()
  .then(async (code) => {
    await releaseCurves();
    process.exit(code);
  })
  .catch(async (error: Error) => {
    console.error(`error: ${error.message}`);
    await releaseCurves();
    process.exit(1);
  });
