/**
 * Proof-of-relay benchmark (`npm run bench`): prints, in one run,
 *   - constraints per bill against the floor (one EdDSA-Poseidon verifier plus one membership path of the same depth,
 *     compiled alone with the same flags), at depth 6 (test) and depth 20 (production);
 *   - proving time per bill at the test configuration and at the largest depth-20 batch a cached 2^15 local ceremony
 *     proves (1 slot x 3 bills);
 *   - settlement gas: total per batch, per slot beyond the verifier, per bill, beside the EIP-1108 floor
 *     (181,000 + about 6,150 per public input).
 *   - the edge node's relay (issue 5): messages/s and MB/s of 4,096-byte packets through one edge node beside a raw
 *     libp2p stream between the same two hosts, the latency one more hop adds (p50/p99), and the memory of 10,000
 *     cached messages (the relay's replay cache, and the inbox's sqlite store).
 * Targets (issue 3): constraints per bill within 15% of the floor; contract overhead beyond the verifier at most
 * 30,000 gas per slot (the node's consent puts it near 35,000: docs/PROOF_OF_RELAY.md). The figures are printed,
 * never asserted: speed lives here, not in tests.
 * `SEND_BENCH=relay npm run bench` (or proof, gas, constraints, comma-separated) runs only those sections.
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
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { Multiaddr } from "@multiformats/multiaddr" with { "resolution-mode": "import" };
import type { Stream } from "@libp2p/interface" with { "resolution-mode": "import" };
import { createEdgeHost, type EdgeHost } from "../node/host";
import { openNodeDatabase } from "../node/db";
import { InboxStore, DEFAULT_INBOX_QUOTA } from "../node/inbox";
import { wrapPacket, PACKET_BYTES, type Hop } from "../sdk/wire/onion";
import { RELAY_MAX_FRAME_BYTES, RELAY_PACKET_TYPE, RELAY_PROTOCOL, encodeFrame } from "../sdk/wire/frame";

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

// --- the edge node's relay ------------------------------------------------------------------------------------------

/** Packets per throughput run. */
const RELAY_PACKETS = 2_000;
/** Streams the sender keeps open to the entry at once (the relay peels each stream's frames in order). */
const RELAY_STREAMS = 8;
/** Packets timed one at a time for latency. */
const LATENCY_SAMPLES = 200;
/** Messages in the memory figures. */
const CACHED = 10_000;
const RAW_PROTOCOL = "/sending/bench/raw/1.0.0";

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Heap used after a full collection (v8's gc exposed through a fresh context). */
function heapAfterGc(): number {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

async function writeAll(stream: Stream, chunks: readonly Uint8Array[]): Promise<void> {
  for (const chunk of chunks) if (!stream.send(chunk)) await stream.onDrain();
  await stream.close();
  for await (const chunk of stream) void chunk;
}

export async function relayFigures(print: (line: string) => void): Promise<void> {
  print("== edge node relay (4,096-byte packets, TCP + Noise + Yamux on 127.0.0.1) ==");
  const root = await mkdtemp(path.join(tmpdir(), "sending-bench-relay-"));
  const hosts: EdgeHost[] = [];
  try {
    let delivered = 0;
    let onDelivered: (() => void) | undefined;
    // Packets a relay refused (a forward that failed): counted, so a loss shows in the figures instead of a hang.
    let lost = 0;
    const onOutcome = (o: { kind: string }) => {
      if (o.kind === "refused") {
        lost++;
        onDelivered?.();
      }
    };
    const exit = await createEdgeHost({
      dataDir: path.join(root, "exit"),
      relay: {
        onDeliver: () => {
          delivered++;
          onDelivered?.();
        },
        onOutcome: (o) => onOutcome(o),
      },
    });
    hosts.push(exit);
    const peersOf = (...hs: EdgeHost[]) =>
      new Map<string, Multiaddr[]>(hs.map((h) => [h.libp2p.peerId.toString(), h.libp2p.getMultiaddrs()]));
    const middle = await createEdgeHost({
      dataDir: path.join(root, "middle"),
      relay: { peers: peersOf(exit), onOutcome },
    });
    hosts.push(middle);
    const entry = await createEdgeHost({
      dataDir: path.join(root, "entry"),
      relay: { peers: peersOf(exit, middle), onOutcome },
    });
    hosts.push(entry);
    const sender = await createEdgeHost({ dataDir: path.join(root, "sender") });
    hosts.push(sender);
    for (const h of [entry, exit]) {
      await sender.libp2p.peerStore.merge(h.libp2p.peerId, { multiaddrs: h.libp2p.getMultiaddrs() });
    }
    const hop = (h: EdgeHost): Hop => ({
      peerId: h.libp2p.peerId.toMultihash().bytes,
      relayPublicKey: h.relayPublicKey,
    });
    const recipient = new Uint8Array(20).fill(7);
    const payload = new Uint8Array(1_000).fill(1);
    const packets = (route: EdgeHost[], n: number) =>
      Array.from({ length: n }, () =>
        encodeFrame(RELAY_PACKET_TYPE, wrapPacket(route.map(hop), recipient, payload), RELAY_MAX_FRAME_BYTES),
      );
    const waitFor = (target: number) =>
      new Promise<void>((resolve) => {
        if (delivered + lost >= target) return resolve();
        onDelivered = () => {
          if (delivered + lost >= target) {
            onDelivered = undefined;
            resolve();
          }
        };
      });

    // Throughput through one edge node: sender → entry (peel, forward) → exit (peel, deliver).
    const frames = packets([entry, exit], RELAY_PACKETS + 100);
    const warm = frames.splice(0, 100);
    await writeAll(await sender.libp2p.dialProtocol(entry.libp2p.peerId, RELAY_PROTOCOL), warm);
    await waitFor(100);
    delivered = 0;
    lost = 0;
    let t0 = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: RELAY_STREAMS }, async (_, i) => {
        const mine = frames.filter((_, j) => j % RELAY_STREAMS === i);
        await writeAll(await sender.libp2p.dialProtocol(entry.libp2p.peerId, RELAY_PROTOCOL), mine);
      }),
    );
    await waitFor(RELAY_PACKETS);
    const relaySeconds = Number(process.hrtime.bigint() - t0) / 1e9;

    // The same bytes on a raw libp2p stream between the sender and the exit, read and dropped.
    let rawBytes = 0;
    let rawDone: (() => void) | undefined;
    await exit.libp2p.handle(RAW_PROTOCOL, async (stream) => {
      for await (const chunk of stream) {
        rawBytes += chunk.byteLength;
        if (rawBytes >= RELAY_PACKETS * (PACKET_BYTES + 5)) rawDone?.();
      }
      await stream.close();
    });
    const raw = frames.map(() => new Uint8Array(PACKET_BYTES + 5).fill(3));
    const rawFinished = new Promise<void>((resolve) => (rawDone = resolve));
    t0 = process.hrtime.bigint();
    const rawStream = await sender.libp2p.dialProtocol(exit.libp2p.peerId, RAW_PROTOCOL);
    for (const chunk of raw) if (!rawStream.send(chunk)) await rawStream.onDrain();
    await rawFinished;
    const rawSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    await rawStream.close();

    const throughLost = lost;
    const mb = (RELAY_PACKETS * PACKET_BYTES) / 1e6;
    print(
      `  through one edge node: ${(RELAY_PACKETS / relaySeconds).toFixed(0)} messages/s, ${(mb / relaySeconds).toFixed(1)} MB/s (${RELAY_STREAMS} sender streams, one stream per next hop; ${throughLost} lost)`,
    );
    print(
      `  raw libp2p stream, same two hosts' stack: ${(RELAY_PACKETS / rawSeconds).toFixed(0)} packets/s, ${(mb / rawSeconds).toFixed(1)} MB/s`,
    );

    // Latency: one packet at a time, 2 hops against 3 hops; the difference is what one more hop adds.
    const latency = async (route: EdgeHost[]) => {
      const samples: number[] = [];
      const batch = packets(route, LATENCY_SAMPLES);
      for (const frame of batch) {
        const target = delivered + lost + 1;
        const start = process.hrtime.bigint();
        const done = waitFor(target);
        await writeAll(await sender.libp2p.dialProtocol(entry.libp2p.peerId, RELAY_PROTOCOL), [frame]);
        await done;
        samples.push(Number(process.hrtime.bigint() - start) / 1e6);
      }
      return samples.sort((a, b) => a - b);
    };
    const two = await latency([entry, exit]);
    const three = await latency([entry, middle, exit]);
    print(
      `  send to delivery, 2 hops: p50 ${percentile(two, 50).toFixed(2)} ms, p99 ${percentile(two, 99).toFixed(2)} ms; 3 hops: p50 ${percentile(three, 50).toFixed(2)} ms, p99 ${percentile(three, 99).toFixed(2)} ms`,
    );
    print(
      `  added per hop: p50 ${(percentile(three, 50) - percentile(two, 50)).toFixed(2)} ms, p99 ${(percentile(three, 99) - percentile(two, 99)).toFixed(2)} ms`,
    );

    // Memory: the replay cache after 10,000 more packets, and 10,000 stored 1 KB messages in the inbox.
    const replayFrames = packets([entry, exit], CACHED);
    const before = heapAfterGc();
    const target = delivered + lost + CACHED;
    await Promise.all(
      Array.from({ length: RELAY_STREAMS }, async (_, i) => {
        const mine = replayFrames.filter((_, j) => j % RELAY_STREAMS === i);
        await writeAll(await sender.libp2p.dialProtocol(entry.libp2p.peerId, RELAY_PROTOCOL), mine);
      }),
    );
    await waitFor(target);
    const relayHeap = heapAfterGc() - before;
    if (replayFrames.length !== CACHED) throw new Error("relayFigures: the frames must stay alive while measured");
    // The replay cache alone, built as the relay builds it (flat hex strings of 32-byte epks in a Set).
    const cacheBefore = heapAfterGc();
    const cache = new Set<string>();
    for (let i = 0; i < CACHED; i++) cache.add(Buffer.from(randomBytes(32)).toString("hex"));
    const cacheHeap = heapAfterGc() - cacheBefore;
    if (cache.size !== CACHED) throw new Error("relayFigures: the cache must stay alive while measured");
    print(
      `  replay cache: ${(cacheHeap / 1e6).toFixed(2)} MB per ${CACHED} packets remembered (${(cacheHeap / CACHED).toFixed(0)} bytes each; ${(((cacheHeap / CACHED) * 65_536) / 1e6).toFixed(1)} MB at the 65,536 cap); the whole process's heap moved by ${(relayHeap / 1e6).toFixed(2)} MB over those ${CACHED} relayed packets`,
    );

    const dbFile = path.join(root, "inbox.db");
    const db = openNodeDatabase(dbFile);
    const store = new InboxStore(db);
    const heapBefore = heapAfterGc();
    const now = Date.now();
    for (let i = 0; i < CACHED; i++) {
      const id = new Uint8Array(16);
      new DataView(id.buffer).setUint32(0, i);
      const recipientId = new Uint8Array(20).fill(i % 100);
      store.insert(
        {
          recipientId,
          messageId: id,
          storedAt: now,
          expiresAt: now + 3_600_000,
          envelope: payload,
          promiseSignature: new Uint8Array(65).fill(9),
        },
        DEFAULT_INBOX_QUOTA,
        now,
      );
    }
    const inboxHeap = heapAfterGc() - heapBefore;
    db.close();
    const size = (await stat(dbFile)).size;
    print(
      `  inbox: ${CACHED} messages of ${payload.length} bytes: ${(size / 1e6).toFixed(2)} MB on disk (${(size / CACHED).toFixed(0)} bytes each), ${(inboxHeap / 1e6).toFixed(2)} MB of heap held`,
    );
  } finally {
    await Promise.all(hosts.map((h) => h.stop()));
    await rm(root, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const only = process.env.SEND_BENCH?.split(",").map((s) => s.trim());
  const want = (name: string) => only === undefined || only.includes(name);
  if (want("constraints")) await constraintFigures();
  if (want("proof")) await provingFigures();
  if (want("gas")) await gasFigures();
  if (want("relay")) await relayFigures(log);
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
