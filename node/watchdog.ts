/**
 * The watchdog daemon: poses as an ordinary client, probes edge nodes, scores them, and acts on the scores.
 *
 * - **Probe loop.** Every round it picks edge nodes from the registry and sends each a probe through a
 *   `ProbeTransport`: a message routed through the node under test to the watchdog's own inbox, timed until it arrives.
 *   Per epoch and node it keeps probes sent, probes delivered and latencies (p50, p99).
 * - **Scores.** Once an epoch has ended it posts a score for every node it probed at least `minProbes` times to the
 *   QualityOracle, before the epoch's posting deadline: the delivery rate in basis points, cut when the median latency
 *   exceeds the target (`scoreOf`). After posting closes it finalizes the nodes it scored, which earns its credits.
 * - **Flags.** A node whose delivery rate in an ended epoch lies below the governed `DeliveryThresholdBps` is flagged
 *   through Slashing (with `FlagStake`), the evidence (its probe statistics) kept in the data directory under its hash.
 *   Its own flags it resolves once every reviewer voted or the window closed.
 * - **Reviews.** When drawn as a reviewer (`NodeFlagged` lists it) it votes by its own probe results for the node, over
 *   the current and the previous epoch, probing the node first if it has too few results.
 *
 * Everything it has done (statistics, posted epochs, flags, votes) is kept in `<dataDir>/watchdog-state.json`, so a
 * restarted watchdog neither posts twice nor forgets what it measured. Before posting it also reads the oracle, so a
 * post whose transaction landed just before a crash is not sent again.
 *
 * `RelayProbeTransport` is a real transport over the layered-packet relay: the probe is a 2-hop packet (the node under
 * test, then the watchdog's home node as exit) carrying an inbox delivery (sdk/wire/messages.ts `encodeDelivery`)
 * whose message id is the probe id; arrivals are matched by that id (`ProbeArrivals`), fed from wherever the watchdog
 * receives its inbox (the SDK client's inbox subscription in production, the exit's delivery hook in tests).
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import {
  JsonRpcProvider,
  Wallet,
  getAddress,
  getBytes,
  keccak256,
  toUtf8Bytes,
  type Provider,
  type Signer,
} from "ethers";
import type { Libp2p } from "@libp2p/interface" with { "resolution-mode": "import" };
import {
  DidRegistry__factory,
  NodeRegistry__factory,
  ProtocolParameters__factory,
  QualityOracle__factory,
  RelayRollup__factory,
  SendToken__factory,
  Slashing__factory,
  type NodeRegistry,
  type ProtocolParameters,
  type QualityOracle,
  type RelayRollup,
  type SendToken,
  type Slashing,
} from "../typechain-types";
import { loadDeployment, type Deployment } from "../sdk/chain/deployment";
import { readEdgeNode, readEdgeNodes, type EdgeNodeInfo } from "../sdk/chain/nodes";
import { NodeRole, parameterIndex } from "../sdk/chain/protocol";
import {
  ERROR_FRAME_TYPE,
  FrameDecoder,
  RELAY_MAX_FRAME_BYTES,
  RELAY_PACKET_TYPE,
  RELAY_PROTOCOL,
  encodeFrame,
  parseErrorAnswer,
} from "../sdk/wire/frame";
import { MESSAGE_ID_BYTES, encodeDelivery, parseDelivery } from "../sdk/wire/messages";
import { wrapPacket, type Hop } from "../sdk/wire/onion";
import { ackInbox, subscribeInbox, type RequestSigner } from "../sdk/net/calls";
import { ClientHost } from "../sdk/net/host";
import { createLogger, type Logger } from "./log";
import { drained } from "../sdk/net/drain";
import { readFromNow } from "../sdk/net/reader";

/** A probe round every 10 s: about 60 probes per node per 10-minute epoch at 8 targets a round on a small network. */
export const DEFAULT_PROBE_INTERVAL_MS = 10_000;
/** Chain work (post, flag, vote, resolve, finalize) every 15 s: deadlines are minutes apart. */
export const DEFAULT_CHAIN_INTERVAL_MS = 15_000;
/** Nodes probed per round: bounds the watchdog's traffic; on a larger network each node is sampled, not all. */
export const DEFAULT_PROBES_PER_ROUND = 8;
/** A probe not delivered in 5 s is lost: a healthy 2-hop delivery takes tens of milliseconds. */
export const DEFAULT_PROBE_TIMEOUT_MS = 5_000;
/** Probes of a node in an epoch before it is scored or flagged: fewer say too little to cost anyone stake. */
export const DEFAULT_MIN_PROBES = 5;
/** Median latency above which a node's score is cut (proportionally, at most by half). */
export const DEFAULT_LATENCY_TARGET_MS = 1_000;
/** Probes a reviewer sends a flagged node when it has fewer than `minProbes` results of its own. */
export const DEFAULT_REVIEW_PROBES = 5;
/** Latencies kept per node and epoch (a bounded sample; counts are exact). */
export const MAX_LATENCIES_KEPT = 512;
/** Epochs of statistics kept: the current, the previous (scored and reviewed) and two more for late reviews. */
export const EPOCHS_KEPT = 4;
/** Seconds before the posting deadline after which the watchdog no longer tries (the transaction would land late). */
const POSTING_MARGIN_S = 5n;
/** TTL of a probe in the home node's inbox: long enough to arrive, short enough not to clutter it. */
const PROBE_TTL_SECONDS = 60;
/** The envelope of a probe: recognisable by the watchdog, opaque to the nodes (it is inside the layers anyway). */
const PROBE_ENVELOPE = new TextEncoder().encode("sending-network.probe.v1");
/** File of the watchdog's state in its data directory. */
export const WATCHDOG_STATE_FILE = "watchdog-state.json";

// --- probe transport -------------------------------------------------------------------------------------------------

/** How probes travel. */
export interface ProbeTransport {
  /**
   * Sends probe `probeId` (MESSAGE_ID_BYTES) through edge node `target` (as entry; `via` as the second hop when the
   * target is itself the exit) to the watchdog's own inbox, and resolves once it arrived there. Rejects when the
   * probe is refused or `signal` aborts (the watchdog's timeout: the probe is lost).
   */
  probe(target: EdgeNodeInfo, probeId: Uint8Array, signal: AbortSignal, via?: EdgeNodeInfo): Promise<void>;
  /** The edge node the probes exit at (the watchdog's home node), if the transport has a fixed one. */
  readonly exit?: string;
}

export type WatchdogErrorCode =
  | "WATCHDOG_BAD_CONFIG" // a configuration value of the wrong shape
  | "WATCHDOG_BAD_STATE" // the state file exists but does not parse
  | "PROBE_REFUSED" // a hop answered the probe with an error frame
  | "PROBE_ABORTED"; // the wait for a probe was aborted (timed out or stopped)

/** A watchdog or probe failure, with a code. */
export class WatchdogError extends Error {
  constructor(
    readonly code: WatchdogErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "WatchdogError";
  }
}

/** Matches arriving inbox deliveries to the probes waiting for them, by message id. */
export class ProbeArrivals {
  private readonly waiting = new Map<string, () => void>();

  /** Resolves when probe `probeId` arrives; rejects with PROBE_ABORTED when `signal` aborts first. */
  wait(probeId: Uint8Array, signal: AbortSignal): Promise<void> {
    const id = Buffer.from(probeId).toString("hex");
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(new WatchdogError("PROBE_ABORTED", "ProbeArrivals.wait: aborted before waiting"));
        return;
      }
      const onAbort = () => {
        this.waiting.delete(id);
        reject(new WatchdogError("PROBE_ABORTED", `ProbeArrivals.wait: probe ${id} did not arrive`));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiting.set(id, () => {
        signal.removeEventListener("abort", onAbort);
        this.waiting.delete(id);
        resolve();
      });
    });
  }

  /**
   * Offers an inbox payload (an exit delivery, `encodeDelivery`). Returns true if it was a probe someone waited for;
   * anything else (a malformed payload, a real message, a probe nobody waits for) returns false.
   */
  deliver(payload: Uint8Array): boolean {
    let messageId: Uint8Array;
    let envelope: Uint8Array;
    try {
      ({ messageId, envelope } = parseDelivery(payload));
    } catch {
      return false;
    }
    return this.deliverEnvelope(messageId, envelope);
  }

  /** Offers a stored inbox envelope (as a home node hands it out); true if it was a probe someone waited for. */
  deliverEnvelope(messageId: Uint8Array, envelope: Uint8Array): boolean {
    if (!isProbeEnvelope(envelope)) return false;
    const waiter = this.waiting.get(Buffer.from(messageId).toString("hex"));
    waiter?.();
    return waiter !== undefined;
  }
}

/** Whether an inbox envelope is a watchdog probe (their envelope is a fixed marker, inside the layers). */
export function isProbeEnvelope(envelope: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(envelope), Buffer.from(PROBE_ENVELOPE)) === 0;
}

/** First wait before re-subscribing to the home node's inbox, doubled up to INBOX_RESUBSCRIBE_MAX_MS. */
const INBOX_RESUBSCRIBE_MS = 200;
/** Longest wait between re-subscriptions: a home node back up is noticed within 5 s. */
const INBOX_RESUBSCRIBE_MAX_MS = 5_000;

export interface InboxProbeFeedInit {
  /** The watchdog's client host (sdk/net/host.ts). */
  readonly host: ClientHost;
  /** The watchdog's home node, where its probes land (its DID names it). */
  readonly home: EdgeNodeInfo;
  /** The watchdog's recipient id and DID signing key: inbox requests are signed by it. */
  readonly signer: RequestSigner;
  readonly arrivals: ProbeArrivals;
  readonly logger?: Logger;
}

/**
 * Feeds `ProbeArrivals` from the watchdog's inbox: keeps a SUBSCRIBE stream open to its home node (re-subscribing with
 * backoff when it drops), hands each pushed envelope to the arrivals, and acknowledges the probes so the node deletes
 * them. Anything that is not a probe is left in the inbox.
 */
export class InboxProbeFeed {
  private readonly log: Logger;
  private controller = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly init: InboxProbeFeedInit) {
    this.log = init.logger ?? createLogger("watchdog:inbox");
  }

  start(): void {
    if (this.loop !== undefined) return;
    this.controller = new AbortController();
    this.loop = this.run(this.controller.signal);
  }

  async stop(): Promise<void> {
    this.controller.abort(new WatchdogError("PROBE_ABORTED", "InboxProbeFeed: stopped"));
    await this.loop;
    this.loop = undefined;
  }

  private async run(signal: AbortSignal): Promise<void> {
    const { host, home, signer, arrivals } = this.init;
    const node = { peerId: home.peerId, multiaddrs: home.multiaddrs };
    let backoff = INBOX_RESUBSCRIBE_MS;
    while (!signal.aborted) {
      try {
        for await (const batch of subscribeInbox(host, node, signer, { signal })) {
          backoff = INBOX_RESUBSCRIBE_MS;
          const probes = batch.filter((stored) => isProbeEnvelope(stored.envelope));
          for (const stored of probes) arrivals.deliverEnvelope(stored.messageId, stored.envelope);
          if (probes.length > 0) {
            await ackInbox(
              host,
              node,
              signer,
              probes.map((p) => p.messageId),
              { signal },
            ).catch((error: unknown) => this.log.debug("ack failed", { error }));
          }
        }
      } catch (error) {
        if (signal.aborted) return;
        this.log.warn("inbox subscription dropped", { node: home.operator, error });
      }
      if (signal.aborted) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, backoff);
        signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
      });
      backoff = Math.min(backoff * 2, INBOX_RESUBSCRIBE_MAX_MS);
    }
  }
}

/** What `RelayProbeTransport` needs of a libp2p node. */
export type ProbeHost = Pick<Libp2p, "dialProtocol" | "peerStore">;

export interface RelayProbeTransportInit {
  /** The watchdog's libp2p host (a client host: it dials, it relays nothing). */
  readonly host: ProbeHost;
  /** The watchdog's home node: every probe exits here and lands in the watchdog's inbox. */
  readonly exit: EdgeNodeInfo;
  /** The watchdog's recipient id on the wire (its 20-byte address). */
  readonly inboxId: Uint8Array;
  /** Where arrivals are matched; feed it the payloads the watchdog's inbox receives. */
  readonly arrivals: ProbeArrivals;
}

/** Probes over the layered-packet relay: [target, exit] packets carrying an inbox delivery to the watchdog itself. */
export class RelayProbeTransport implements ProbeTransport {
  readonly exit: string;

  constructor(private readonly init: RelayProbeTransportInit) {
    if (!(init.inboxId instanceof Uint8Array) || init.inboxId.length === 0) {
      throw new WatchdogError("WATCHDOG_BAD_CONFIG", "RelayProbeTransport: expected an inbox id");
    }
    this.exit = getAddress(init.exit.operator);
  }

  async probe(target: EdgeNodeInfo, probeId: Uint8Array, signal: AbortSignal, via?: EdgeNodeInfo): Promise<void> {
    if (!(probeId instanceof Uint8Array) || probeId.length !== MESSAGE_ID_BYTES) {
      throw new WatchdogError(
        "WATCHDOG_BAD_CONFIG",
        `RelayProbeTransport.probe: expected a ${MESSAGE_ID_BYTES}-byte probe id`,
      );
    }
    const isExit = getAddress(target.operator) === this.exit;
    if (isExit && via === undefined) {
      throw new WatchdogError(
        "WATCHDOG_BAD_CONFIG",
        "RelayProbeTransport.probe: probing the exit needs another entry node",
      );
    }
    const entry = isExit ? via! : target;
    const route = [entry, this.init.exit];
    const { peerIdFromString } = await import("@libp2p/peer-id");
    const { multiaddr } = await import("@multiformats/multiaddr");
    const hops: Hop[] = route.map((node) => ({
      peerId: peerIdFromString(node.peerId).toMultihash().bytes,
      relayPublicKey: node.relayPublicKey,
    }));
    // Copies: the serializers wipe their scratch copies, and a Node Buffer's slice is a view, not a copy.
    const payload = encodeDelivery({
      messageId: Uint8Array.from(probeId),
      ttlSeconds: PROBE_TTL_SECONDS,
      envelope: Uint8Array.from(PROBE_ENVELOPE),
    });
    const packet = wrapPacket(hops, this.init.inboxId, payload);
    const arrived = this.init.arrivals.wait(probeId, signal);
    arrived.catch(() => undefined); // observed below; a refusal must not leave it unhandled
    const entryId = peerIdFromString(entry.peerId);
    await this.init.host.peerStore.merge(
      entryId,
      { multiaddrs: entry.multiaddrs.map((a) => multiaddr(a)) },
      { signal },
    );
    const stream = await this.init.host.dialProtocol(entryId, RELAY_PROTOCOL, { signal });
    const chunks = readFromNow(stream); // before writing: sdk/net/reader.ts says why
    try {
      if (!stream.send(encodeFrame(RELAY_PACKET_TYPE, packet, RELAY_MAX_FRAME_BYTES))) await drained(stream, signal);
      await stream.close({ signal });
      const decoder = new FrameDecoder(RELAY_MAX_FRAME_BYTES);
      for await (const chunk of chunks) {
        for (const frame of decoder.push(chunk)) {
          if (frame.type !== ERROR_FRAME_TYPE) continue;
          const answer = parseErrorAnswer(frame.body);
          throw new WatchdogError(
            "PROBE_REFUSED",
            `RelayProbeTransport.probe: entry answered ${answer.code}: ${answer.message}`,
          );
        }
      }
    } catch (error) {
      stream.abort(error as Error);
      throw error;
    }
    await arrived;
  }
}

// --- statistics ------------------------------------------------------------------------------------------------------

/** A node's probe results in one epoch. */
export interface NodeStats {
  sent: number;
  delivered: number;
  /** Latencies of delivered probes in ms (at most MAX_LATENCIES_KEPT, the newest). */
  latencies: number[];
}

/** A summary of `NodeStats`. */
export interface NodeSummary {
  readonly sent: number;
  readonly delivered: number;
  readonly deliveryBps: number;
  readonly p50Ms: number | undefined;
  readonly p99Ms: number | undefined;
}

/** The nearest-rank percentile `p` (0..100) of `values`; undefined when empty. */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

/** Delivery rate (bps) and latency percentiles of `stats`. */
export function summarize(stats: NodeStats): NodeSummary {
  return {
    sent: stats.sent,
    delivered: stats.delivered,
    deliveryBps: stats.sent === 0 ? 0 : Math.floor((stats.delivered * 10_000) / stats.sent),
    p50Ms: percentile(stats.latencies, 50),
    p99Ms: percentile(stats.latencies, 99),
  };
}

/**
 * A node's score in basis points: its delivery rate, multiplied by `latencyTargetMs / p50` when the median latency
 * exceeds the target (never by less than one half: latency alone does not make a node worthless).
 */
export function scoreOf(summary: NodeSummary, latencyTargetMs: number): number {
  const p50 = summary.p50Ms;
  const factor = p50 === undefined || p50 <= latencyTargetMs ? 1 : Math.max(0.5, latencyTargetMs / p50);
  return Math.min(10_000, Math.floor(summary.deliveryBps * factor));
}

// --- the daemon ------------------------------------------------------------------------------------------------------

/** The contracts a watchdog uses; the writes go through `signer`. */
export interface WatchdogContracts {
  readonly registry: NodeRegistry;
  readonly parameters: ProtocolParameters;
  readonly rollup: RelayRollup;
  readonly qualityOracle: QualityOracle;
  readonly slashing: Slashing;
  readonly token: SendToken;
}

export interface WatchdogConfig {
  readonly dataDir: string;
  /** The watchdog operator's signer (a registered, active watchdog), connected to a provider. */
  readonly signer: Signer;
  readonly contracts: WatchdogContracts;
  /** Block the deployment started at: NodeFlagged events are read from here on the first run. */
  readonly startBlock: number;
  readonly transport: ProbeTransport;
  /** The edge nodes to probe; every active edge node in the registry (`readEdgeNodes`) if omitted. */
  readonly listNodes?: (signal: AbortSignal) => Promise<EdgeNodeInfo[]>;
  readonly probeIntervalMs?: number;
  readonly chainIntervalMs?: number;
  readonly probesPerRound?: number;
  readonly probeTimeoutMs?: number;
  readonly minProbes?: number;
  readonly latencyTargetMs?: number;
  readonly reviewProbes?: number;
  /** False: score and review, never flag (an operator who will not stake on flags). True if omitted. */
  readonly flag?: boolean;
  readonly onEvent?: (event: WatchdogEvent) => void;
  readonly logger?: Logger;
}

export type WatchdogEvent =
  | { readonly kind: "probed"; readonly epoch: bigint; readonly node: string; readonly delivered: boolean }
  | {
      readonly kind: "posted";
      readonly epoch: bigint;
      readonly txHash: string;
      readonly scores: Record<string, number>;
    }
  | { readonly kind: "flagged"; readonly node: string; readonly flagId: bigint; readonly txHash: string }
  | { readonly kind: "voted"; readonly flagId: bigint; readonly slash: boolean; readonly txHash: string }
  | { readonly kind: "resolved"; readonly flagId: bigint; readonly txHash: string }
  | { readonly kind: "finalized"; readonly epoch: bigint; readonly node: string };

interface WatchdogState {
  /** epoch → node → stats */
  stats: Record<string, Record<string, NodeStats>>;
  /** epoch → posting transaction ("" when the epoch's deadline passed unposted) */
  posted: Record<string, string>;
  /** epochs whose scored nodes were finalized */
  finalized: Record<string, boolean>;
  /** flags raised: flag id → { node, epoch, resolved } */
  flags: Record<string, { node: string; epoch: string; resolved: boolean }>;
  /** `${epoch}:${node}` flagged already (one flag per node and epoch) */
  flaggedFor: Record<string, string>;
  /** votes cast: flag id → slash */
  votes: Record<string, boolean>;
  /** the last block whose NodeFlagged events were handled */
  flagsScannedTo: number;
}

const EDGE = NodeRole.Edge;
const BALLOT_PENDING = 1n;
const FLAG_OPEN = 1n;

/** The watchdog daemon: `start()` runs the probe and chain loops; `stop()` ends them. */
export class Watchdog {
  private readonly config: WatchdogConfig;
  private readonly log: Logger;
  private readonly provider: Provider;
  private readonly statePath: string;
  private saving: Promise<void> = Promise.resolve();
  private state: WatchdogState;
  private address = "";
  private controller = new AbortController();
  private timers: NodeJS.Timeout[] = [];
  private running = new Set<Promise<unknown>>();
  private loaded = false;

  constructor(config: WatchdogConfig) {
    if (typeof config?.dataDir !== "string" || config.dataDir === "") {
      throw new WatchdogError("WATCHDOG_BAD_CONFIG", "Watchdog: expected a dataDir");
    }
    if (config.signer.provider === null) {
      throw new WatchdogError("WATCHDOG_BAD_CONFIG", "Watchdog: expected a signer connected to a provider");
    }
    this.config = config;
    this.provider = config.signer.provider;
    this.log = config.logger ?? createLogger("watchdog");
    this.statePath = path.join(config.dataDir, WATCHDOG_STATE_FILE);
    this.state = emptyState(config.startBlock);
  }

  /** Per-node summaries of `epoch` as measured so far. */
  summaries(epoch: bigint): Record<string, NodeSummary> {
    const out: Record<string, NodeSummary> = {};
    for (const [node, stats] of Object.entries(this.state.stats[epoch.toString()] ?? {})) out[node] = summarize(stats);
    return out;
  }

  /** Loads the state and runs the probe loop and the chain loop until `stop()`. */
  async start(): Promise<void> {
    if (this.timers.length > 0) return;
    this.controller = new AbortController();
    await this.load();
    const loop = (name: string, run: () => Promise<unknown>, interval: number) => {
      const tick = () => {
        const round = run()
          .catch((error: unknown) => {
            if (!this.controller.signal.aborted) this.log.error(`${name} round failed`, { error });
          })
          .finally(() => {
            this.running.delete(round);
            if (!this.controller.signal.aborted) this.timers.push(setTimeout(tick, interval));
          });
        this.running.add(round);
      };
      tick();
    };
    loop("probe", () => this.probeRound(), this.config.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS);
    loop("chain", () => this.chainRound(), this.config.chainIntervalMs ?? DEFAULT_CHAIN_INTERVAL_MS);
  }

  /** Stops both loops and waits for the rounds in progress to unwind. */
  async stop(): Promise<void> {
    this.controller.abort(new WatchdogError("PROBE_ABORTED", "Watchdog: stopped"));
    for (const timer of this.timers) clearTimeout(timer);
    this.timers = [];
    await Promise.allSettled([...this.running]);
  }

  // --- probing -------------------------------------------------------------------------------------------------------

  /**
   * One probe round: up to `probesPerRound` active edge nodes, each probed once, in parallel; the exit node last, entered
   * through the node that delivered best so far. A round in which every probe was lost is discarded: the fault is then
   * most likely the watchdog's own (its network, its home node), not every node's.
   */
  async probeRound(signal: AbortSignal = this.controller.signal): Promise<Record<string, boolean>> {
    await this.load();
    const epoch = await this.config.contracts.parameters.currentEpoch();
    const nodes = (await this.listNodes(signal)).filter((n) => n.active);
    const exit = this.config.transport.exit;
    const others = shuffle(nodes.filter((n) => getAddress(n.operator) !== exit));
    const limit = this.config.probesPerRound ?? DEFAULT_PROBES_PER_ROUND;
    const targets = others.slice(0, limit);
    const results: Record<string, boolean> = {};
    const measured: [string, boolean, number][] = [];
    await Promise.all(
      targets.map(async (node) => {
        const [ok, ms] = await this.probeOnce(node, signal);
        results[getAddress(node.operator)] = ok;
        measured.push([getAddress(node.operator), ok, ms]);
      }),
    );
    const exitNode = nodes.find((n) => getAddress(n.operator) === exit);
    if (exitNode !== undefined) {
      const via = this.bestEntry(epoch, others, results);
      if (via !== undefined) {
        const [ok, ms] = await this.probeOnce(exitNode, signal, via);
        results[exit!] = ok;
        measured.push([exit!, ok, ms]);
      }
    }
    if (measured.length > 1 && measured.every(([, ok]) => !ok)) {
      this.log.warn("every probe of the round was lost; not counting the round", { epoch, probes: measured.length });
      return results;
    }
    for (const [node, ok, ms] of measured) {
      this.record(epoch, node, ok, ms);
      this.emit({ kind: "probed", epoch, node, delivered: ok });
    }
    await this.save();
    return results;
  }

  private async probeOnce(node: EdgeNodeInfo, signal: AbortSignal, via?: EdgeNodeInfo): Promise<[boolean, number]> {
    const timeout = AbortSignal.timeout(this.config.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS);
    const started = performance.now();
    try {
      const probeId = Uint8Array.from(randomBytes(MESSAGE_ID_BYTES)); // a plain array, not a view of Buffer's pool
      await this.config.transport.probe(node, probeId, AbortSignal.any([signal, timeout]), via);
      return [true, Math.round(performance.now() - started)];
    } catch (error) {
      signal.throwIfAborted(); // stopping is not a lost probe
      this.log.debug("probe lost", { node: node.operator, error });
      return [false, Math.round(performance.now() - started)];
    }
  }

  /** The entry for probing the exit: the other node with the best delivery in `epoch` (this round counted). */
  private bestEntry(epoch: bigint, others: EdgeNodeInfo[], round: Record<string, boolean>): EdgeNodeInfo | undefined {
    const stats = this.state.stats[epoch.toString()] ?? {};
    const rate = (n: EdgeNodeInfo) => {
      const a = getAddress(n.operator);
      const s = stats[a] ?? { sent: 0, delivered: 0 };
      const sent = s.sent + (a in round ? 1 : 0);
      const delivered = s.delivered + (round[a] ? 1 : 0);
      return sent === 0 ? 0 : delivered / sent;
    };
    return [...others].sort((x, y) => rate(y) - rate(x))[0];
  }

  private record(epoch: bigint, node: string, delivered: boolean, ms: number): void {
    const e = epoch.toString();
    const byNode = (this.state.stats[e] ??= {});
    const stats = (byNode[node] ??= { sent: 0, delivered: 0, latencies: [] });
    stats.sent++;
    if (delivered) {
      stats.delivered++;
      stats.latencies.push(ms);
      if (stats.latencies.length > MAX_LATENCIES_KEPT) stats.latencies.shift();
    }
    const epochs = Object.keys(this.state.stats)
      .map(BigInt)
      .sort((a, b) => (a < b ? -1 : 1));
    while (epochs.length > EPOCHS_KEPT) delete this.state.stats[epochs.shift()!.toString()];
  }

  private listNodes(signal: AbortSignal): Promise<EdgeNodeInfo[]> {
    if (this.config.listNodes) return this.config.listNodes(signal);
    return readEdgeNodes(this.config.contracts.registry, { signal });
  }

  // --- chain ---------------------------------------------------------------------------------------------------------

  /** One chain round: post scores of ended epochs, flag, review, resolve own flags, finalize. */
  async chainRound(signal: AbortSignal = this.controller.signal): Promise<void> {
    await this.load();
    const latest = await this.provider.getBlock("latest");
    if (latest === null) throw new WatchdogError("WATCHDOG_BAD_STATE", "Watchdog.chainRound: no latest block");
    const now = BigInt(latest.timestamp);
    const current = await this.config.contracts.parameters.currentEpoch();
    for (const e of Object.keys(this.state.stats)
      .map(BigInt)
      .sort((a, b) => (a < b ? -1 : 1))) {
      signal.throwIfAborted();
      if (e >= current) continue;
      await this.postScores(e, now);
      if (this.config.flag !== false) await this.flagNodes(e, now);
    }
    await this.review(latest.number, now, current, signal);
    await this.resolveOwnFlags(now);
    await this.finalizeScored(now);
    await this.save();
  }

  /** Posts `epoch`'s scores once, before its posting deadline, leaving out nodes it has scored already on chain. */
  private async postScores(epoch: bigint, now: bigint): Promise<void> {
    const key = epoch.toString();
    if (key in this.state.posted) return;
    const { qualityOracle, registry } = this.config.contracts;
    const deadline = await this.postingDeadline(epoch);
    if (now + POSTING_MARGIN_S >= deadline) {
      this.log.warn("posting deadline passed before the scores were posted", { epoch, deadline });
      this.state.posted[key] = "";
      return;
    }
    const minProbes = this.config.minProbes ?? DEFAULT_MIN_PROBES;
    const target = this.config.latencyTargetMs ?? DEFAULT_LATENCY_TARGET_MS;
    const nodes: string[] = [];
    const scores: number[] = [];
    for (const [node, stats] of Object.entries(this.state.stats[key] ?? {})) {
      if (stats.sent < minProbes) continue;
      if (Number(await registry.roleOf(node)) !== EDGE) continue;
      const [watchdogs] = await qualityOracle.scoresOf(node, epoch);
      if (watchdogs.some((w) => getAddress(w) === this.address)) continue; // posted before a crash
      nodes.push(node);
      scores.push(scoreOf(summarize(stats), target));
    }
    if (nodes.length === 0) {
      this.state.posted[key] = "";
      return;
    }
    const tx = await qualityOracle.connect(this.config.signer).postScores(epoch, nodes, scores);
    await tx.wait();
    this.state.posted[key] = tx.hash;
    await this.save();
    const posted = Object.fromEntries(nodes.map((n, i) => [n, scores[i]]));
    this.emit({ kind: "posted", epoch, txHash: tx.hash, scores: posted });
    this.log.info("scores posted", { epoch, txHash: tx.hash, scores: posted });
  }

  private async postingDeadline(epoch: bigint): Promise<bigint> {
    const [rules, fixed] = await this.config.contracts.qualityOracle.rulesOf(epoch);
    return fixed ? rules.postingDeadline : await this.config.contracts.rollup.settlementDeadline(epoch);
  }

  /** Flags every node of `epoch` measured below the delivery threshold (once per node and epoch). */
  private async flagNodes(epoch: bigint, now: bigint): Promise<void> {
    const { parameters, slashing, registry } = this.config.contracts;
    const threshold = Number(await parameters.get(parameterIndex("DeliveryThresholdBps")));
    const minProbes = this.config.minProbes ?? DEFAULT_MIN_PROBES;
    for (const [node, stats] of Object.entries(this.state.stats[epoch.toString()] ?? {})) {
      const summary = summarize(stats);
      const id = `${epoch}:${node}`;
      if (stats.sent < minProbes || summary.deliveryBps >= threshold || id in this.state.flaggedFor) continue;
      if (Number(await registry.roleOf(node)) !== EDGE) continue;
      const protectedUntil = await slashing.protectedUntil(node);
      if (protectedUntil > now) {
        this.log.info("node below threshold but protected from flags", { node, epoch, protectedUntil });
        this.state.flaggedFor[id] = "protected";
        continue;
      }
      const evidence = { epoch: epoch.toString(), node, watchdog: this.address, threshold, summary, stats };
      const text = JSON.stringify(evidence);
      const evidenceHash = keccak256(toUtf8Bytes(text));
      await mkdir(path.join(this.config.dataDir, "evidence"), { recursive: true });
      await writeFile(path.join(this.config.dataDir, "evidence", `${evidenceHash}.json`), text);
      await this.ensureFlagStake();
      const tx = await slashing.connect(this.config.signer).flag(node, evidenceHash);
      const receipt = await tx.wait();
      let flagId: bigint | undefined;
      for (const log of receipt?.logs ?? []) {
        try {
          const parsed = slashing.interface.parseLog(log);
          if (parsed?.name === "NodeFlagged") flagId = parsed.args.flagId as bigint;
        } catch {
          // another contract's log
        }
      }
      if (flagId === undefined) throw new WatchdogError("WATCHDOG_BAD_STATE", "Watchdog.flagNodes: no NodeFlagged log");
      this.state.flaggedFor[id] = flagId.toString();
      this.state.flags[flagId.toString()] = { node, epoch: epoch.toString(), resolved: false };
      await this.save();
      this.emit({ kind: "flagged", node, flagId, txHash: tx.hash });
      this.log.info("node flagged", { node, epoch, flagId, deliveryBps: summary.deliveryBps, evidenceHash });
    }
  }

  private async ensureFlagStake(): Promise<void> {
    const { parameters, token, slashing } = this.config.contracts;
    const stake = await parameters.get(parameterIndex("FlagStake"));
    const spender = await slashing.getAddress();
    if ((await token.allowance(this.address, spender)) >= stake) return;
    await (await token.connect(this.config.signer).approve(spender, stake)).wait();
  }

  /** Votes on every open flag it was drawn for, by its own probe results (probing the node first if it must). */
  private async review(head: number, now: bigint, current: bigint, signal: AbortSignal): Promise<void> {
    const { slashing, parameters } = this.config.contracts;
    if (head <= this.state.flagsScannedTo) return;
    const events = await slashing.queryFilter(slashing.filters.NodeFlagged(), this.state.flagsScannedTo + 1, head);
    const threshold = Number(await parameters.get(parameterIndex("DeliveryThresholdBps")));
    for (const event of events) {
      const { flagId, node, reviewers, deadline } = event.args;
      const key = flagId.toString();
      if (!reviewers.some((r) => getAddress(r) === this.address) || key in this.state.votes) continue;
      if (deadline <= now || (await slashing.ballotOf(flagId, this.address)) !== BALLOT_PENDING) continue;
      const summary = await this.ownView(getAddress(node), current, signal);
      const slash = summary.deliveryBps < threshold;
      const tx = await slashing.connect(this.config.signer).vote(flagId, slash);
      await tx.wait();
      this.state.votes[key] = slash;
      await this.save();
      this.emit({ kind: "voted", flagId, slash, txHash: tx.hash });
      this.log.info("voted on a flag", { flagId, node, slash, deliveryBps: summary.deliveryBps });
    }
    this.state.flagsScannedTo = head;
  }

  /** The watchdog's own results for `node` over the current and previous epoch, probing it if they are too few. */
  private async ownView(node: string, current: bigint, signal: AbortSignal): Promise<NodeSummary> {
    const combined = (): NodeStats => {
      const parts = [current, current - 1n].map((e) => this.state.stats[e.toString()]?.[node]);
      return {
        sent: parts.reduce((n, s) => n + (s?.sent ?? 0), 0),
        delivered: parts.reduce((n, s) => n + (s?.delivered ?? 0), 0),
        latencies: parts.flatMap((s) => s?.latencies ?? []),
      };
    };
    const minProbes = this.config.minProbes ?? DEFAULT_MIN_PROBES;
    if (combined().sent < minProbes) {
      const nodes = await this.listNodes(signal);
      const target = nodes.find((n) => getAddress(n.operator) === node);
      const exit = this.config.transport.exit;
      const others = nodes.filter(
        (n) => n.active && getAddress(n.operator) !== exit && getAddress(n.operator) !== node,
      );
      const via = node === exit ? this.bestEntry(current, others, {}) : undefined;
      if (target !== undefined && (node !== exit || via !== undefined)) {
        for (let i = 0; i < (this.config.reviewProbes ?? DEFAULT_REVIEW_PROBES); i++) {
          const [ok, ms] = await this.probeOnce(target, signal, via);
          this.record(current, node, ok, ms);
        }
      }
    }
    return summarize(combined());
  }

  /** Resolves its own open flags once every reviewer voted or the review window closed. */
  private async resolveOwnFlags(now: bigint): Promise<void> {
    const { slashing } = this.config.contracts;
    for (const [key, flag] of Object.entries(this.state.flags)) {
      if (flag.resolved) continue;
      const view = await slashing.flagOf(BigInt(key));
      if (view.status !== FLAG_OPEN) {
        flag.resolved = true;
        continue;
      }
      const allVoted = view.slashVotes + view.keepVotes === BigInt(view.reviewers.length);
      if (!allVoted && now < view.deadline) continue;
      const tx = await slashing.connect(this.config.signer).resolveFlag(BigInt(key));
      await tx.wait();
      flag.resolved = true;
      await this.save();
      this.emit({ kind: "resolved", flagId: BigInt(key), txHash: tx.hash });
      this.log.info("flag resolved", { flagId: key, node: flag.node });
    }
  }

  /** After posting closes (and before the credit deadline), finalizes the nodes it scored: that is what credits it. */
  private async finalizeScored(now: bigint): Promise<void> {
    const { qualityOracle } = this.config.contracts;
    for (const [key, txHash] of Object.entries(this.state.posted)) {
      if (txHash === "" || this.state.finalized[key]) continue;
      const epoch = BigInt(key);
      const [rules, fixed] = await qualityOracle.rulesOf(epoch);
      if (!fixed || now < rules.postingDeadline) continue;
      if (now >= rules.creditDeadline) {
        this.state.finalized[key] = true; // too late to earn anything by it
        continue;
      }
      for (const node of Object.keys(this.state.stats[key] ?? {})) {
        const [watchdogs] = await qualityOracle.scoresOf(node, epoch);
        if (!watchdogs.some((w) => getAddress(w) === this.address)) continue;
        if (await qualityOracle.isFinalized(node, epoch)) continue;
        await (await qualityOracle.connect(this.config.signer).finalize(epoch, node)).wait();
        this.emit({ kind: "finalized", epoch, node });
      }
      this.state.finalized[key] = true;
    }
  }

  // --- state ---------------------------------------------------------------------------------------------------------

  private async load(): Promise<void> {
    if (this.loaded) return;
    this.address = getAddress(await this.config.signer.getAddress());
    await mkdir(this.config.dataDir, { recursive: true, mode: 0o700 });
    let text: string | undefined;
    try {
      text = await readFile(this.statePath, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    if (text !== undefined) {
      let parsed: Partial<WatchdogState>;
      try {
        parsed = JSON.parse(text) as Partial<WatchdogState>;
      } catch (error) {
        throw new WatchdogError("WATCHDOG_BAD_STATE", `Watchdog: ${this.statePath} does not parse: ${String(error)}`);
      }
      if (typeof parsed !== "object" || parsed === null || typeof parsed.stats !== "object") {
        throw new WatchdogError("WATCHDOG_BAD_STATE", `Watchdog: expected ${this.statePath} to hold a watchdog state`);
      }
      this.state = { ...emptyState(this.config.startBlock), ...parsed };
    }
    this.loaded = true;
  }

  /** Writes the state atomically (temporary file, then rename). */
  /**
   * Writes the state atomically (a temporary file, then a rename). The probe loop and the chain loop both save: the
   * writes run one after another on one chain, so neither renames the other's half-written temporary file away.
   */
  private save(): Promise<void> {
    const write = async () => {
      const temporary = `${this.statePath}.tmp`;
      await writeFile(temporary, JSON.stringify(this.state));
      await rename(temporary, this.statePath);
    };
    const next = this.saving.then(write, write);
    this.saving = next.catch(() => undefined);
    return next;
  }

  private emit(event: WatchdogEvent): void {
    try {
      this.config.onEvent?.(event);
    } catch (error) {
      this.log.warn("event listener failed", { error });
    }
  }
}

function emptyState(startBlock: number): WatchdogState {
  return { stats: {}, posted: {}, finalized: {}, flags: {}, flaggedFor: {}, votes: {}, flagsScannedTo: startBlock - 1 };
}

function shuffle<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = randomBytes(4).readUInt32BE(0) % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

// --- daemon entry point ----------------------------------------------------------------------------------------------

/** What `runWatchdog` needs. */
export interface WatchdogDaemonConfig {
  readonly dataDir: string;
  readonly rpcUrl?: string;
  readonly provider?: Provider;
  /** The deployment (or the path of its file). */
  readonly deployment: Deployment | string;
  /** Hex private key of the watchdog operator (registered, staked, active). */
  readonly watchdogKey: string;
  /**
   * Hex Ed25519 secret key of the watchdog's DID signing key (the DID of the watchdog operator's address, whose home
   * node receives the probes): signs its inbox subscription. Needed unless `transport` is given.
   */
  readonly inboxSigningKey?: string;
  /** The home node the probes exit at (an operator address); the DID's first home node if omitted. */
  readonly homeNode?: string;
  /** How probes travel; by default a `RelayProbeTransport` over a client host, fed by an `InboxProbeFeed`. */
  readonly transport?: ProbeTransport;
  readonly options?: Partial<
    Pick<
      WatchdogConfig,
      | "probeIntervalMs"
      | "chainIntervalMs"
      | "probesPerRound"
      | "probeTimeoutMs"
      | "minProbes"
      | "latencyTargetMs"
      | "reviewProbes"
      | "flag"
    >
  >;
  readonly logger?: Logger;
}

/** A running watchdog daemon. */
export interface WatchdogDaemon {
  readonly watchdog: Watchdog;
  readonly address: string;
  /** Stops the watchdog, its inbox feed and its client host. */
  stop(): Promise<void>;
}

/**
 * Connects to the chain, checks the key is an active watchdog, sets up the probe transport (a client host and the
 * inbox subscription at the watchdog's home node, unless `transport` is given) and starts a Watchdog.
 */
export async function runWatchdog(config: WatchdogDaemonConfig): Promise<WatchdogDaemon> {
  const deployment = typeof config.deployment === "string" ? loadDeployment(config.deployment) : config.deployment;
  const provider = config.provider ?? (config.rpcUrl ? new JsonRpcProvider(config.rpcUrl) : undefined);
  if (provider === undefined)
    throw new WatchdogError("WATCHDOG_BAD_CONFIG", "runWatchdog: expected rpcUrl or provider");
  const signer = new Wallet(config.watchdogKey, provider);
  const c = deployment.contracts;
  const contracts: WatchdogContracts = {
    registry: NodeRegistry__factory.connect(c.NodeRegistry, provider),
    parameters: ProtocolParameters__factory.connect(c.ProtocolParameters, provider),
    rollup: RelayRollup__factory.connect(c.RelayRollup, provider),
    qualityOracle: QualityOracle__factory.connect(c.QualityOracle, provider),
    slashing: Slashing__factory.connect(c.Slashing, provider),
    token: SendToken__factory.connect(c.SendToken, provider),
  };
  const view = await contracts.registry.node(signer.address);
  if (Number(view.role) !== NodeRole.Watchdog || !view.active) {
    throw new WatchdogError("WATCHDOG_BAD_CONFIG", `runWatchdog: ${signer.address} is not an active watchdog`);
  }
  let transport = config.transport;
  let feed: InboxProbeFeed | undefined;
  let host: ClientHost | undefined;
  if (transport === undefined) {
    if (config.inboxSigningKey === undefined || !/^0x[0-9a-fA-F]{64}$/.test(config.inboxSigningKey)) {
      throw new WatchdogError(
        "WATCHDOG_BAD_CONFIG",
        "runWatchdog: expected inboxSigningKey (0x and 64 hex digits: the DID's Ed25519 signing secret) or a transport",
      );
    }
    let homeNode = config.homeNode;
    if (homeNode === undefined) {
      const did = await DidRegistry__factory.connect(c.DidRegistry, provider).didOf(signer.address);
      homeNode = did.document.homeNodes[0];
      if (homeNode === undefined) {
        throw new WatchdogError("WATCHDOG_BAD_CONFIG", `runWatchdog: ${signer.address} has no DID with a home node`);
      }
    }
    const exit = await readEdgeNode(contracts.registry, homeNode);
    if (exit === undefined) {
      throw new WatchdogError("WATCHDOG_BAD_CONFIG", `runWatchdog: home node ${homeNode} is not a usable edge node`);
    }
    const arrivals = new ProbeArrivals();
    const inboxId = getBytes(signer.address);
    host = await ClientHost.create();
    transport = new RelayProbeTransport({ host: host.libp2p, exit, inboxId, arrivals });
    feed = new InboxProbeFeed({
      host,
      home: exit,
      signer: { recipientId: inboxId, signingSecretKey: getBytes(config.inboxSigningKey) },
      arrivals,
      logger: config.logger?.child("inbox"),
    });
    feed.start();
  }
  const watchdog = new Watchdog({
    dataDir: config.dataDir,
    signer,
    contracts,
    startBlock: deployment.startBlock,
    transport,
    logger: config.logger,
    ...config.options,
  });
  await watchdog.start();
  return {
    watchdog,
    address: signer.address,
    async stop() {
      await watchdog.stop();
      await feed?.stop();
      await host?.stop();
    },
  };
}
