/**
 * Proof-of-relay benchmark (`npm run bench`): prints, in one run,
 *   - constraints per bill against the floor (one EdDSA-Poseidon verifier plus one membership path of the same depth,
 *     compiled alone with the same flags), at depth 6 (test) and depth 20 (production);
 *   - proving time per bill at the test configuration and at the largest depth-20 batch a cached 2^15 local ceremony
 *     proves (1 slot x 3 bills);
 *   - settlement gas: total per batch, per slot beyond the verifier, per bill, beside the EIP-1108 floor
 *     (181,000 + about 6,150 per public input).
 *   - the edge node's relay (issue 5): messages/s and MB/s of 4,096-byte packets through one edge node, run in a
 *     process of its own as the daemon runs (bench/relayNode.ts), beside a raw libp2p stream between the same two
 *     hosts, with the node's CPU time a packet; the latency one more hop adds (p50/p99); and the memory of 10,000
 *     cached messages (the relay's replay cache, and the inbox's sqlite store); beside them, the floor of any relay on
 *     libp2p: a process that only copies the same frames from the sender to the next hop.
 *     SEND_BENCH_NODE_PROFILE=<dir> writes the node's CPU profile of the through-one-node run (its main thread,
 *     without the start-up) to <dir>/relay-node.cpuprofile.
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
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { PeerId, Stream } from "@libp2p/interface" with { "resolution-mode": "import" };
import { createEdgeHost, type EdgeHost } from "../node/host";
import { RELAY_MAX_STREAMS } from "../node/relay";
import { openNodeDatabase } from "../node/db";
import { InboxStore, DEFAULT_INBOX_QUOTA } from "../node/inbox";
import { wrapPacket, PACKET_BYTES, type Hop } from "../sdk/wire/onion";
import {
  ERROR_FRAME_TYPE,
  FrameDecoder,
  RELAY_MAX_FRAME_BYTES,
  RELAY_PACKET_TYPE,
  RELAY_PROTOCOL,
  encodeFrame,
} from "../sdk/wire/frame";
import { peerIdBytes, relayPublicKeyOfPeer } from "../sdk/net/peerId";
import { drained } from "../sdk/net/drain";
import { readFromNow } from "../sdk/net/reader";

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

/**
 * The bench's relays take any rate from a peer that is not an edge node (the daemon's default is
 * RELAY_PEER_RATE_LIMIT): its one sender stands for many clients, and the figures are the node's capacity.
 */
export const BENCH_NO_PEER_LIMIT = { perSecond: 1e9, burst: 1e9 };
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

/** Writes `chunks` on `stream`, closes it, and returns how many error answers came back (packets refused). */
async function writeAll(stream: Stream, chunks: readonly Uint8Array[]): Promise<number> {
  const answers = readFromNow(stream); // before writing: sdk/net/reader.ts says why
  for (const chunk of chunks) if (!stream.send(chunk)) await drained(stream);
  try {
    await stream.close();
  } catch (error) {
    // libp2p rejects a close that waits for unsent bytes with the stream's close event when the remote ends first.
    throw new Error(`relayFigures: the stream closed with bytes unsent (${stream.status}, ${String(error)})`);
  }
  const decoder = new FrameDecoder(RELAY_MAX_FRAME_BYTES);
  let refused = 0;
  for await (const chunk of answers) refused += decoder.push(chunk).filter((f) => f.type === ERROR_FRAME_TYPE).length;
  return refused;
}

/**
 * Closes a stream whose figures are taken: libp2p rejects a close with the stream's close event (not an Error) when
 * the remote ends first, which says nothing about what was measured; the stream is then reset instead.
 */
async function closeQuietly(stream: Stream): Promise<void> {
  try {
    await stream.close();
  } catch {
    stream.abort(new Error("relayFigures: closed"));
  }
}

/** The bench's edge node, started in a process of its own (bench/relayNode.ts). */
interface NodeProcess {
  readonly peerId: string;
  readonly multiaddrs: string[];
  /** Peel worker threads up in the node process. */
  readonly peelWorkers: number;
  /** CPU time (user + system) the process has used so far, in microseconds. */
  cpuMicros(): Promise<number>;
  /** How long the process's main (relay) thread has been busy so far, in microseconds. */
  busyMicros(): Promise<number>;
  /** The process's heap in use after a full collection, in bytes. */
  heapUsed(): Promise<number>;
  /** Starts profiling the process's main thread. */
  profileStart(): Promise<void>;
  /** Stops profiling and writes the profile (Chrome DevTools' .cpuprofile) to `file`. */
  profileStop(file: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts bench/relayNode.ts: an edge node relaying to `nextHops`, or with `forward`, a process that copies every
 * relay stream, unread, to the first of them (the floor of any relay on libp2p).
 */
async function startNodeProcess(
  dataDir: string,
  nextHops: readonly EdgeHost[],
  mode?: "forward",
): Promise<NodeProcess> {
  const hops = Object.fromEntries(
    nextHops.map((h) => [h.libp2p.peerId.toString(), h.libp2p.getMultiaddrs().map((m) => m.toString())]),
  );
  const child = spawn(
    process.execPath,
    [
      "--expose-gc",
      "-r",
      "ts-node/register/transpile-only",
      path.join(__dirname, "relayNode.ts"),
      dataDir,
      JSON.stringify(hops),
      ...(mode !== undefined ? [mode] : []),
    ],
    { stdio: ["pipe", "pipe", "inherit"], env: { ...process.env, TS_NODE_TRANSPILE_ONLY: "true" } },
  );
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, unknown>> => {
    const line = await lines.next();
    if (line.done === true) throw new Error("relayFigures: the edge node process exited");
    return JSON.parse(line.value) as Record<string, unknown>;
  };
  const ready = await next();
  return {
    peerId: ready.peerId as string,
    multiaddrs: ready.multiaddrs as string[],
    peelWorkers: ready.peelWorkers as number,
    cpuMicros: async () => {
      child.stdin.write("cpu\n");
      return (await next()).cpuMicros as number;
    },
    busyMicros: async () => {
      child.stdin.write("cpu\n");
      return (await next()).busyMicros as number;
    },
    heapUsed: async () => {
      child.stdin.write("heap\n");
      return (await next()).heapUsed as number;
    },
    profileStart: async () => {
      child.stdin.write("profile start\n");
      await next();
    },
    profileStop: async (file) => {
      child.stdin.write(`profile stop ${file}\n`);
      await next();
    },
    stop: async () => {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.stdin.end();
      await exited;
    },
  };
}

export async function relayFigures(print: (line: string) => void): Promise<void> {
  print("== edge node relay (4,096-byte packets, TCP + Noise + Yamux on 127.0.0.1) ==");
  const [{ peerIdFromString }, { multiaddr }] = await Promise.all([
    import("@libp2p/peer-id"),
    import("@multiformats/multiaddr"),
  ]);
  const root = await mkdtemp(path.join(tmpdir(), "sending-bench-relay-"));
  const hosts: EdgeHost[] = [];
  let node: NodeProcess | undefined;
  try {
    let delivered = 0;
    let onDelivered: (() => void) | undefined;
    // Packets a relay refused: counted, so a loss shows in the figures instead of a hang.
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
        peerRateLimit: BENCH_NO_PEER_LIMIT,
        peelWorkers: 0, // it shares the bench's process with the sender: a worker there would take the sender's core
        onDeliver: () => {
          delivered++;
          onDelivered?.();
        },
        onOutcome: (o) => onOutcome(o),
      },
    });
    hosts.push(exit);
    const middle = await createEdgeHost({
      dataDir: path.join(root, "middle"),
      relay: {
        peers: new Map([[exit.libp2p.peerId.toString(), exit.libp2p.getMultiaddrs()]]),
        onOutcome,
        peerRateLimit: BENCH_NO_PEER_LIMIT,
        peelWorkers: 0,
      },
    });
    hosts.push(middle);
    // A next hop that only counts the frames it gets, as the raw stream's reader only counts bytes.
    const sink = await createEdgeHost({ dataDir: path.join(root, "sink") });
    hosts.push(sink);
    await sink.relay.stop();
    await sink.libp2p.handle(
      RELAY_PROTOCOL,
      async (stream) => {
        const decoder = new FrameDecoder(RELAY_MAX_FRAME_BYTES);
        for await (const chunk of stream) {
          for (const frame of decoder.push(chunk)) {
            if (frame.type === RELAY_PACKET_TYPE) delivered++;
            else lost++;
            onDelivered?.();
          }
        }
        await stream.close();
      },
      { maxInboundStreams: RELAY_MAX_STREAMS },
    );
    // The edge node measured: the entry, in its own process (the sender, the sink and the exit share this one).
    node = await startNodeProcess(path.join(root, "entry"), [exit, middle, sink]);
    const entry = node;
    const entryId = peerIdFromString(entry.peerId);
    const sender = await createEdgeHost({ dataDir: path.join(root, "sender") });
    hosts.push(sender);
    await sender.libp2p.peerStore.merge(entryId, { multiaddrs: entry.multiaddrs.map((a) => multiaddr(a)) });
    await sender.libp2p.peerStore.merge(sink.libp2p.peerId, { multiaddrs: sink.libp2p.getMultiaddrs() });
    const entryHop: Hop = { peerId: peerIdBytes(entry.peerId), relayPublicKey: relayPublicKeyOfPeer(entry.peerId) };
    const hop = (h: EdgeHost): Hop => ({
      peerId: h.libp2p.peerId.toMultihash().bytes,
      relayPublicKey: h.relayPublicKey,
    });
    const recipient = new Uint8Array(20).fill(7);
    const payload = new Uint8Array(1_000).fill(1);
    // Wrapping is @noble's X25519, about 2.5 ms a packet: yield to the event loop between packets, so the hosts in this
    // process keep reading their streams while thousands are made (a loop blocked for seconds stalls the node's lanes).
    const packets = async (route: Hop[], n: number) => {
      const out: Uint8Array[] = [];
      for (let i = 0; i < n; i++) {
        out.push(encodeFrame(RELAY_PACKET_TYPE, wrapPacket(route, recipient, payload), RELAY_MAX_FRAME_BYTES));
        await new Promise((resolve) => setImmediate(resolve));
      }
      return out;
    };
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
    /** Sends `frames` to `to` (the entry unless said) on `streams` streams at once; refused packets count as lost. */
    const sendFrames = async (frames: readonly Uint8Array[], streams: number, to: PeerId = entryId) => {
      const refused = await Promise.all(
        Array.from({ length: streams }, async (_, i) => {
          const mine = frames.filter((_, j) => j % streams === i);
          try {
            return await writeAll(await sender.libp2p.dialProtocol(to, RELAY_PROTOCOL), mine);
          } catch (error) {
            // A stream the entry reset (or libp2p's close event thrown as is): its frames count as lost, and the
            // figures say so, instead of the bench stopping.
            const reason = error instanceof Error ? error.message : String((error as Event).type ?? error);
            print(`  (a sender stream failed: ${reason}; its ${mine.length} packets count as lost)`);
            return mine.length;
          }
        }),
      );
      lost += refused.reduce((a, b) => a + b, 0);
      onDelivered?.();
    };

    // Throughput through one edge node: sender → entry (its own process: peel, forward) → sink (counts the frames).
    // The sink does what the raw stream's reader does, so both runs give this process the same work, and the ratio
    // is the edge node's: does it keep up with what one stream carries?
    const viaSink = await packets([entryHop, hop(sink)], RELAY_PACKETS + 100);
    await sendFrames(viaSink.splice(0, 100), 1);
    await waitFor(100);
    const profileDir = process.env.SEND_BENCH_NODE_PROFILE;
    if (profileDir !== undefined) await entry.profileStart();
    const start = { delivered, lost, cpu: await entry.cpuMicros(), busy: await entry.busyMicros() };
    let t0 = process.hrtime.bigint();
    await sendFrames(viaSink, RELAY_STREAMS);
    await waitFor(start.delivered + start.lost + RELAY_PACKETS);
    const relaySeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    if (profileDir !== undefined) {
      await mkdir(profileDir, { recursive: true });
      await entry.profileStop(path.resolve(profileDir, "relay-node.cpuprofile"));
      print(`  (the node's profile of this run: ${path.resolve(profileDir, "relay-node.cpuprofile")})`);
    }
    const nodeCpuPerPacket = ((await entry.cpuMicros()) - start.cpu) / RELAY_PACKETS;
    const relayThreadPerPacket = ((await entry.busyMicros()) - start.busy) / RELAY_PACKETS;
    const relayLost = lost - start.lost;

    // The same bytes on a raw libp2p stream from the sender to the sink, read and dropped.
    let rawBytes = 0;
    let rawDone: (() => void) | undefined;
    await sink.libp2p.handle(RAW_PROTOCOL, async (stream) => {
      for await (const chunk of stream) {
        rawBytes += chunk.byteLength;
        if (rawBytes >= RELAY_PACKETS * (PACKET_BYTES + 5)) rawDone?.();
      }
      await stream.close();
    });
    const raw = viaSink.map(() => new Uint8Array(PACKET_BYTES + 5).fill(3));
    const rawFinished = new Promise<void>((resolve) => (rawDone = resolve));
    t0 = process.hrtime.bigint();
    const rawStream = await sender.libp2p.dialProtocol(sink.libp2p.peerId, RAW_PROTOCOL);
    for (const chunk of raw) if (!rawStream.send(chunk)) await drained(rawStream);
    await rawFinished;
    const rawSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    await closeQuietly(rawStream);

    // The floor of any relay on this stack: a process that copies the same frames, unread, from the sender's streams
    // to the sink (one stream on for each stream in). Its packets count as the relay's do.
    const forwarder = await startNodeProcess(path.join(root, "forwarder"), [sink], "forward");
    let forwardSeconds: number;
    let forwardBusyPerPacket: number;
    try {
      const forwarderId = peerIdFromString(forwarder.peerId);
      await sender.libp2p.peerStore.merge(forwarderId, { multiaddrs: forwarder.multiaddrs.map((a) => multiaddr(a)) });
      const warm = delivered + lost + 100;
      await sendFrames(viaSink.slice(0, 100), 1, forwarderId);
      await waitFor(warm);
      const target = delivered + lost + RELAY_PACKETS;
      const busy = await forwarder.busyMicros();
      t0 = process.hrtime.bigint();
      await sendFrames(viaSink, RELAY_STREAMS, forwarderId);
      await waitFor(target);
      forwardSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
      forwardBusyPerPacket = ((await forwarder.busyMicros()) - busy) / RELAY_PACKETS;
    } finally {
      await forwarder.stop();
    }

    // End to end through an entry and an exit, as a message goes: sender → entry → exit (peel, deliver).
    const twoHops = [entryHop, hop(exit)];
    const viaExit = await packets(twoHops, RELAY_PACKETS);
    const atExit = delivered + lost + RELAY_PACKETS;
    t0 = process.hrtime.bigint();
    await sendFrames(viaExit, RELAY_STREAMS);
    await waitFor(atExit);
    const endToEndSeconds = Number(process.hrtime.bigint() - t0) / 1e9;

    const mb = (RELAY_PACKETS * PACKET_BYTES) / 1e6;
    const relayRate = RELAY_PACKETS / relaySeconds;
    const rawRate = RELAY_PACKETS / rawSeconds;
    print(
      `  through one edge node (its own process, ${entry.peelWorkers} peel worker thread(s); ${RELAY_STREAMS} sender streams, one stream to the next hop): ${relayRate.toFixed(0)} messages/s, ${(mb / relaySeconds).toFixed(1)} MB/s, ${relayLost} lost; the node used ${nodeCpuPerPacket.toFixed(0)} µs of CPU a packet (${(1e6 / nodeCpuPerPacket).toFixed(0)} packets/s a core); its relay thread was busy ${relayThreadPerPacket.toFixed(0)} µs a packet (${(1e6 / relayThreadPerPacket).toFixed(0)} packets/s with cores enough for the peel workers)`,
    );
    print(
      `  raw libp2p stream between the same two hosts: ${rawRate.toFixed(0)} packets/s, ${(mb / rawSeconds).toFixed(1)} MB/s; through the node: ${((relayRate / rawRate) * 100).toFixed(0)}% of it (target >= 50%)`,
    );
    const forwardRate = RELAY_PACKETS / forwardSeconds;
    print(
      `  a process that only forwards the same frames with libp2p, unread (the floor of any relay on this stack; one stream on per stream in): ${forwardRate.toFixed(0)} packets/s, ${((forwardRate / rawRate) * 100).toFixed(0)}% of the raw stream, its thread busy ${forwardBusyPerPacket.toFixed(0)} µs a packet; the edge node reaches ${((relayRate / forwardRate) * 100).toFixed(0)}% of it`,
    );
    print(
      `  end to end through an entry and an exit (the exit peels and delivers, in the sender's process): ${(RELAY_PACKETS / endToEndSeconds).toFixed(0)} messages/s`,
    );

    // Latency: one packet at a time on one open stream to the entry, 2-hop and 3-hop packets taken in turn (so drift
    // falls on both alike); the difference is what one more hop adds.
    const lane = await sender.libp2p.dialProtocol(entryId, RELAY_PROTOCOL);
    const routes = { two: twoHops, three: [entryHop, hop(middle), hop(exit)] };
    const samples = { two: [] as number[], three: [] as number[] };
    for (let i = -1; i < LATENCY_SAMPLES; i++) {
      // Round -1 warms up: the middle's first packet opens its lane to the exit.
      for (const kind of ["two", "three"] as const) {
        const [frame] = await packets(routes[kind], 1);
        const done = waitFor(delivered + lost + 1);
        const start = process.hrtime.bigint();
        if (!lane.send(frame)) await drained(lane);
        await done;
        if (i >= 0) samples[kind].push(Number(process.hrtime.bigint() - start) / 1e6);
      }
    }
    await closeQuietly(lane);
    const two = samples.two.sort((a, b) => a - b);
    const three = samples.three.sort((a, b) => a - b);
    print(
      `  send to delivery on an open stream, 2 hops: p50 ${percentile(two, 50).toFixed(2)} ms, p99 ${percentile(two, 99).toFixed(2)} ms; 3 hops: p50 ${percentile(three, 50).toFixed(2)} ms, p99 ${percentile(three, 99).toFixed(2)} ms`,
    );
    print(
      `  added per hop: p50 ${(percentile(three, 50) - percentile(two, 50)).toFixed(2)} ms, p99 ${(percentile(three, 99) - percentile(two, 99)).toFixed(2)} ms (target <= 2 ms at p50)`,
    );

    // Memory: the replay cache after 10,000 more packets, and 10,000 stored 1 KB messages in the inbox.
    const replayFrames = await packets(twoHops, CACHED);
    const before = await entry.heapUsed();
    const target = delivered + lost + CACHED;
    await sendFrames(replayFrames, RELAY_STREAMS);
    await waitFor(target);
    const relayHeap = (await entry.heapUsed()) - before;
    // The replay cache alone, built as the relay builds it (flat hex strings of 32-byte epks in a Set).
    const cacheBefore = heapAfterGc();
    const cache = new Set<string>();
    for (let i = 0; i < CACHED; i++) cache.add(Buffer.from(randomBytes(32)).toString("hex"));
    const cacheHeap = heapAfterGc() - cacheBefore;
    if (cache.size !== CACHED) throw new Error("relayFigures: the cache must stay alive while measured");
    print(
      `  replay cache: ${(cacheHeap / 1e6).toFixed(2)} MB per ${CACHED} packets remembered (${(cacheHeap / CACHED).toFixed(0)} bytes each; ${(((cacheHeap / CACHED) * 65_536) / 1e6).toFixed(1)} MB at the 65,536 cap); the node process's heap moved by ${(relayHeap / 1e6).toFixed(2)} MB over those ${CACHED} relayed packets`,
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
    await node?.stop();
    await Promise.all(hosts.map((h) => h.stop()));
    await rm(root, { recursive: true, force: true });
  }
}

/** The bench's sections, in the order they run. */
const SECTIONS = ["constraints", "proof", "gas", "relay"] as const;

const USAGE = `Usage: [SEND_BENCH=<sections>] npm run bench

Prints the project's figures: circuit constraints, proving time and memory, gas per operation, and the edge node's
relay (throughput against a raw libp2p stream and a bare forwarder, added latency per hop, replay cache and inbox
memory). Every section by default; a few minutes.

Environment:
  SEND_BENCH                 comma-separated sections to run: ${SECTIONS.join(", ")}; "help" prints this
  SEND_BENCH_PEEL_WORKERS    the measured edge node's peel workers (default: cores less one, at most 4)
  SEND_BENCH_NODE_PROFILE    a folder: the edge node's CPU profile of the measured window goes there
docs/NODE.md ("Figures") and docs/PROOF_OF_RELAY.md explain the figures.`;

async function main(): Promise<void> {
  const started = Date.now();
  const only = process.env.SEND_BENCH?.split(",").map((s) => s.trim());
  if (only?.includes("help")) {
    log(USAGE);
    return;
  }
  const unknown = only?.filter((name) => !(SECTIONS as readonly string[]).includes(name)) ?? [];
  if (unknown.length > 0) {
    throw new Error(
      `bench: SEND_BENCH names ${unknown.join(", ")}: expected some of ${SECTIONS.join(", ")}\n\n${USAGE}`,
    );
  }
  const want = (name: (typeof SECTIONS)[number]) => only === undefined || only.includes(name);
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
