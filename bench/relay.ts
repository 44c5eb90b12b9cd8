/**
 * Proof-of-relay benchmark (`npm run bench`): prints, in one run,
 *   - constraints per bill against the floor (one EdDSA-Poseidon verifier plus one membership path of the same depth,
 *     compiled alone with the same flags), at depth 6 (test) and depth 20 (production);
 *   - proving time per bill at the test configuration and at the largest depth-20 batch a cached 2^15 local ceremony
 *     proves (1 slot x 3 bills);
 *   - settlement gas: total per batch, per slot beyond the verifier, per bill, beside the EIP-1108 floor
 *     (181,000 + about 6,150 per public input).
 * Targets (issue 3): constraints per bill within 15% of the floor; contract overhead beyond the verifier at most
 * 30,000 gas per slot (the node's consent puts it near 35,000: docs/PROOF_OF_RELAY.md). The figures are printed,
 * never asserted: speed lives here, not in tests.
 */
import { time } from "@nomicfoundation/hardhat-network-helpers";
import { keccak256, toUtf8Bytes, getBytes, Contract } from "ethers";
import { compileCircuit } from "../scripts/lib/circom";
import { buildCircuit, releaseCurves } from "../scripts/lib/ceremony";
import { rollupFixture } from "../test/fixtures/rollup";
import { IdentityTree } from "../sdk/chain/identityTree";
import { billKeyOf, nodeIdFromAddress, recipientKeyHash, signBill } from "../sdk/bill/bill";
import { buildRelayBatch, RELAY_BATCH_TEST_PARAMS, relayCircuitParams } from "../sdk/bill/batchInput";
import { loadCircuitConfig } from "../scripts/lib/circom";
import { proveRelayBatch } from "../sdk/bill/prove";

/* eslint-disable @typescript-eslint/no-require-imports */
const snarkjs = require("snarkjs") as { r1cs: { info(file: string): Promise<{ nConstraints: number }> } };

const log = (line: string) => console.log(line);
const quiet = () => undefined;

async function constraints(name: string): Promise<number> {
  return (await snarkjs.r1cs.info(compileCircuit(name, quiet).r1cs)).nConstraints;
}

function pct(value: number, floor: number): string {
  return `${value >= floor ? "+" : ""}${(((value - floor) / floor) * 100).toFixed(1)}%`;
}

async function constraintFigures(): Promise<void> {
  log("== constraints per bill (circom2 --O2) ==");
  const floor6 = await constraints("floor_depth_6");
  const floor20 = await constraints("floor_depth_20");
  const test = await constraints("relay_batch_test");
  const one20 = await constraints("relay_bench_d20_1x1");
  const three20 = await constraints("relay_bench_d20_1x3");
  const perBill20 = (three20 - one20) / 2;
  const { slots, bills } = RELAY_BATCH_TEST_PARAMS;
  const perBill6 = test / (slots * bills);
  log(
    `  depth 6:  test batch ${test} for ${slots}x${bills} bills = ${perBill6.toFixed(0)} per bill (slot and batch overhead included); floor ${floor6} (${pct(perBill6, floor6)})`,
  );
  log(
    `  depth 20: one more bill costs ${perBill20} (1x3 ${three20} - 1x1 ${one20}, halved); floor ${floor20} (${pct(perBill20, floor20)}; target within +15%)`,
  );
  const prod = relayCircuitParams(loadCircuitConfig("relay_batch_prod").params);
  const slotCost = one20 - perBill20; // a slot and the batch around it, without bills
  const estimate = slotCost * prod.slots + perBill20 * prod.slots * prod.bills;
  log(
    `  production ${prod.slots}x${prod.bills} at depth ${prod.treeDepth}: about ${Math.round(estimate)} constraints -> needs a 2^${Math.ceil(Math.log2(estimate + 2 + 4 * prod.slots + 1))} public ceremony`,
  );
}

async function provingFigures(): Promise<void> {
  log("== proving time (snarkjs groth16 fullProve, in process) ==");
  for (const name of ["relay_batch_test", "relay_bench_d20_1x3"]) {
    const artifacts = await buildCircuit(name, { log: quiet });
    const params = relayCircuitParams(loadCircuitConfig(name).params);
    const billsTotal = params.slots * params.bills;
    const tree = new IdentityTree();
    const keys = Array.from({ length: billsTotal }, (_, i) => getBytes(keccak256(toUtf8Bytes(`bench/${name}/${i}`))));
    for (const key of keys) tree.insert(recipientKeyHash(billKeyOf(key)));
    const node = (s: number) => nodeIdFromAddress("0x" + (s + 1).toString(16).padStart(40, "0"));
    const claims = Array.from({ length: params.slots }, (_, s) => ({
      nodeId: node(s),
      prevBound: 0n,
      bills: keys
        .slice(s * params.bills, (s + 1) * params.bills)
        .map((key) => signBill(key, { nodeId: node(s), epoch: 1n, messageCount: 10n, byteCount: 7_000n })),
    }));
    const batch = buildRelayBatch(params, { epoch: 1n, tree, slots: claims });
    await proveRelayBatch(batch, artifacts); // warm-up: wasm compilation, curve threads
    const runs = 3;
    const started = process.hrtime.bigint();
    for (let i = 0; i < runs; i++) await proveRelayBatch(batch, artifacts);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9 / runs;
    log(
      `  ${name} (${params.slots}x${params.bills}, depth ${params.treeDepth}, ${artifacts.constraints} constraints): ${seconds.toFixed(2)} s per proof, ${((seconds / billsTotal) * 1000).toFixed(0)} ms per bill, ${(artifacts.constraints / seconds / 1000).toFixed(1)}k constraints/s`,
    );
  }
}

async function gasFigures(): Promise<void> {
  log("== settlement gas (relay_batch_test: 2 slots, real proofs) ==");
  const f = await rollupFixture();
  const { rollup, parameters, verifier, guardian, edgeA, edgeB, epoch, epochEnd, tree, prove, billFor } = f;
  const claim = (node: string, recipients: number[], forEpoch: bigint) => ({
    nodeId: nodeIdFromAddress(node),
    prevBound: 0n,
    bills: recipients.map((r) => billFor(r, node, 10n, forEpoch)),
  });
  // Two fresh epochs, so both batches pay the same first-write costs: epoch E settles one node, E + 1 two nodes.
  const one = await prove([claim(edgeA.address, [0, 1], epoch)], epoch);
  const two = await prove(
    [claim(edgeA.address, [0, 1], epoch + 1n), claim(edgeB.address, [2], epoch + 1n)],
    epoch + 1n,
  );
  const signals = two.publicSignals;
  const verifierContract = new Contract(
    verifier,
    [`function verifyProof(uint256[2],uint256[2][2],uint256[2],uint256[${signals.length}]) view returns (bool)`],
    guardian,
  );
  const verifierGas = await verifierContract.verifyProof.estimateGas(two.proof.a, two.proof.b, two.proof.c, signals);
  await time.increaseTo(epochEnd);
  const gasOne = (await (await rollup.connect(guardian).submitBatch(epoch, tree.root, one.slots, one.proof)).wait())!
    .gasUsed;
  await time.increaseTo(await parameters.epochStart(epoch + 2n));
  const gasTwo = (await (
    await rollup.connect(guardian).submitBatch(epoch + 1n, tree.root, two.slots, two.proof)
  ).wait())!.gasUsed;
  const floor = 181_000n + 6_150n * BigInt(signals.length);
  const perSlot = gasTwo - gasOne;
  log(`  verifier alone (a transaction calling verifyProof; 21,000 base and calldata included): ${verifierGas}`);
  log(`  EIP-1108 floor: 181,000 + 6,150 x ${signals.length} public inputs = ${floor}`);
  log(`  submitBatch, 1 node slot + 1 padding slot: ${gasOne}; 2 node slots: ${gasTwo} (2 + 1 bills)`);
  log(`  per node slot beyond the verifier (the difference): ${perSlot} (target <= 30,000)`);
  log(
    `  per batch beyond the verifier and its slots (epoch totals, guardian share, checks, events): ${gasOne - verifierGas - perSlot}`,
  );
  log(`  per bill settled in the 2-slot batch: ${gasTwo / 3n}`);
}

async function main(): Promise<void> {
  const started = Date.now();
  await constraintFigures();
  await provingFigures();
  await gasFigures();
  log(`bench done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  await releaseCurves();
}

main()
  .then(() => process.exit(0))
  .catch(async (error: Error) => {
    console.error(error);
    await releaseCurves();
    process.exit(1);
  });
