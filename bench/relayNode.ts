/**
 * The edge node of the relay bench, in a process of its own as the daemon runs (bench/relay.ts starts it):
 *
 *   node -r ts-node/register/transpile-only bench/relayNode.ts <data dir> <next hops: JSON {peerId: multiaddrs[]}> [forward]
 *
 * With `forward` it runs no relay: it copies the bytes of every stream opened to it on the relay protocol, unread, to
 * a stream of its own to the first next hop. That is the floor of any relay on this stack: what libp2p costs to take
 * the same packets in and send them on, with no peel, no replay check and no framing.
 *
 * Once it listens and its peel workers are up it prints one JSON line {peerId, multiaddrs, peelWorkers}
 * (SEND_BENCH_PEEL_WORKERS sets how many). Then it answers each line "cpu" on stdin with a JSON
 * line {cpuMicros, busyMicros} (user + system CPU time of this process so far, all threads, and the time its main
 * thread's event loop was busy), each line "heap" with {heapUsed} (bytes in use after a full collection: run it with
 * --expose-gc), and "profile start" / "profile stop <file>" by profiling its main thread in between (the window the
 * bench measures, without the start-up) and answering {profile: file}. It stops when stdin closes.
 */
import { writeFile } from "node:fs/promises";
import { Session } from "node:inspector/promises";
import { createInterface } from "node:readline";
import type { Stream } from "@libp2p/interface" with { "resolution-mode": "import" };
import { createEdgeHost, type EdgeHost } from "../node/host";
import { drained } from "../sdk/net/drain";
import { readFromNow } from "../sdk/net/reader";
import { RELAY_PROTOCOL } from "../sdk/wire/frame";
import { RELAY_MAX_STREAMS } from "../node/relay";

/** The forwarder's writes: one relay lane batch (14 packets of 4,101 bytes), so it writes as the relay does. */
const FORWARD_WRITE_BYTES = 14 * 4_101;

/**
 * Forward-only mode: the relay is stopped and each inbound relay stream is copied, as it arrives, to a fresh stream to
 * `to` (the bench's sink, which counts the frames as the relay's next hop does).
 */
async function forwardOnly(host: EdgeHost, to: string, addresses: readonly unknown[]): Promise<void> {
  const { peerIdFromString } = await import("@libp2p/peer-id");
  const next = peerIdFromString(to);
  await host.relay.stop();
  await host.libp2p.peerStore.merge(next, { multiaddrs: addresses as never });
  await host.libp2p.handle(
    RELAY_PROTOCOL,
    async (stream: Stream) => {
      const chunks = readFromNow(stream); // before the dial below: sdk/net/reader.ts says why
      const out = await host.libp2p.dialProtocol(next, RELAY_PROTOCOL);
      for await (const chunk of chunks) {
        const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray();
        for (let at = 0; at < bytes.length; at += FORWARD_WRITE_BYTES) {
          if (!out.send(bytes.subarray(at, at + FORWARD_WRITE_BYTES))) await drained(out);
        }
      }
      await out.close();
      await stream.close();
    },
    { maxInboundStreams: RELAY_MAX_STREAMS, maxOutboundStreams: RELAY_MAX_STREAMS },
  );
}

async function main(): Promise<void> {
  const [dataDir, peersJson, mode] = process.argv.slice(2);
  if (dataDir === undefined || peersJson === undefined || (mode !== undefined && mode !== "forward")) {
    throw new Error("usage: relayNode.ts <data dir> <next hops as JSON {peerId: multiaddrs[]}> [forward]");
  }
  const { multiaddr } = await import("@multiformats/multiaddr");
  const hops = JSON.parse(peersJson) as Record<string, string[]>;
  const peers = new Map(Object.entries(hops).map(([id, addrs]) => [id, addrs.map((a) => multiaddr(a))]));
  // SEND_BENCH_PEEL_WORKERS sets the relay's peel workers (default: the daemon's, cores - 1 up to 4).
  const workers = process.env.SEND_BENCH_PEEL_WORKERS;
  // Any rate from the bench's sender, which stands for many clients (the daemon's default is RELAY_PEER_RATE_LIMIT).
  const peerRateLimit = { perSecond: 1e9, burst: 1e9 };
  const relay = { peers, peerRateLimit, ...(workers !== undefined ? { peelWorkers: Number(workers) } : {}) };
  const host = await createEdgeHost({ dataDir, listen: ["/ip4/127.0.0.1/tcp/0"], relay });
  const peelWorkers = await host.relay.peelWorkersReady();
  if (mode === "forward") {
    const [to, addresses] = [...peers][0];
    await forwardOnly(host, to, addresses);
  }
  const say = (value: unknown) => process.stdout.write(JSON.stringify(value) + "\n");
  say({
    peerId: host.libp2p.peerId.toString(),
    multiaddrs: host.libp2p.getMultiaddrs().map((m) => m.toString()),
    peelWorkers,
  });
  let profiler: Session | undefined;
  for await (const line of createInterface({ input: process.stdin })) {
    const [command, argument] = line.trim().split(" ");
    if (command === "profile" && argument === "start") {
      profiler = new Session();
      profiler.connect();
      await profiler.post("Profiler.enable");
      await profiler.post("Profiler.start");
      say({ profiling: true });
    } else if (command === "profile" && argument === "stop") {
      if (profiler === undefined) throw new Error("relayNode: 'profile stop' before 'profile start'");
      const file = line.trim().slice("profile stop ".length);
      const { profile } = await profiler.post("Profiler.stop");
      await writeFile(file, JSON.stringify(profile));
      profiler.disconnect();
      profiler = undefined;
      say({ profile: file });
    } else if (line.trim() === "cpu") {
      const { user, system } = process.cpuUsage();
      // CPU of every thread (peel workers included), and the time the main (relay) thread's event loop was busy.
      say({ cpuMicros: user + system, busyMicros: performance.eventLoopUtilization().active * 1000 });
    } else if (line.trim() === "heap") {
      const gc = (globalThis as { gc?: () => void }).gc;
      if (gc === undefined) throw new Error("relayNode: run with --expose-gc for heap figures");
      gc();
      gc();
      say({ heapUsed: process.memoryUsage().heapUsed });
    }
  }
  await host.stop();
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
