/**
 * The edge node of the relay bench, in a process of its own as the daemon runs (bench/relay.ts starts it):
 *
 *   node -r ts-node/register/transpile-only bench/relayNode.ts <data dir> <next hops: JSON {peerId: multiaddrs[]}>
 *
 * Once it listens and its peel workers are up it prints one JSON line {peerId, multiaddrs, peelWorkers}
 * (SEND_BENCH_PEEL_WORKERS sets how many). Then it answers each line "cpu" on stdin with a JSON
 * line {cpuMicros, busyMicros} (user + system CPU time of this process so far, all threads, and the time its main
 * thread's event loop was busy) and each line "heap" with {heapUsed} (bytes in use
 * after a full collection: run it with --expose-gc), and stops when stdin closes.
 */
import { createInterface } from "node:readline";
import { createEdgeHost } from "../node/host";

async function main(): Promise<void> {
  const [dataDir, peersJson] = process.argv.slice(2);
  if (dataDir === undefined || peersJson === undefined) {
    throw new Error("usage: relayNode.ts <data dir> <next hops as JSON {peerId: multiaddrs[]}>");
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
  const say = (value: unknown) => process.stdout.write(JSON.stringify(value) + "\n");
  say({
    peerId: host.libp2p.peerId.toString(),
    multiaddrs: host.libp2p.getMultiaddrs().map((m) => m.toString()),
    peelWorkers,
  });
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === "cpu") {
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
