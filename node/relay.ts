/**
 * The edge node's half of the layered-packet relay (`/sending/relay/1.0.0`): each inbound stream carries frames of
 * type RELAY_PACKET_TYPE, one PACKET_BYTES packet each (sdk/wire/frame.ts, sdk/wire/onion.ts). The relay peels one
 * layer with its X25519 relay key and either forwards the inner packet to the next hop, on the one long-lived stream
 * (the lane) it keeps to that peer, whose addresses come from `resolvePeer` (the live map node/discovery.ts keeps from
 * the NodeRegistry, or a static `peers` map in tests), or, at the exit, hands the payload to `onDeliver` (node/edge.ts
 * parses it with `parseDelivery` and gives it to the inbox). A frame or packet it cannot use is answered with an error
 * frame (type 0xFF) on the same stream; a successful packet gets no answer. After a framing error the stream is out of
 * sync: the relay answers, closes it and keeps serving other streams.
 *
 * A plain class with start/stop rather than the js-libp2p service factory (`edgeRelay(init) => (components) => …`):
 * a service's components (registrar, connection manager, peer store) are typed in @libp2p/interface-internal, which
 * is not a dependency of this repository, and the relay key comes from the data directory the host opens anyway.
 * The class takes the small part of the Libp2p interface it needs, so moving it into a service later changes only
 * the constructor.
 */
import { x25519 } from "@noble/curves/ed25519.js";
import type { Connection, Libp2p, PeerId, Stream } from "@libp2p/interface" with {
  "resolution-mode": "import",
};
import type { Multiaddr } from "@multiformats/multiaddr" with { "resolution-mode": "import" };
import { ED25519_PEER_ID_BYTES, peerIdFromEd25519PublicKey } from "../sdk/net/peerId";
import { framingRefusal } from "./serve";
import { drained } from "../sdk/net/drain";
import { createLogger, type Logger } from "./log";
import {
  ERROR_FRAME_TYPE,
  FrameDecoder,
  RELAY_MAX_FRAME_BYTES,
  RELAY_PACKET_TYPE,
  RELAY_PROTOCOL,
  WireErrorCode,
  encodeErrorFrame,
  encodeFrames,
  parseErrorAnswer,
  type ErrorAnswer,
  type Frame,
} from "../sdk/wire/frame";
import { EPK_BYTES, OnionError, PACKET_BYTES, peel, type PeelOptions, type PeelResult } from "../sdk/wire/onion";
import { NATIVE_ONION_SYMMETRIC, nativeX25519 } from "./onionNative";
import { DEFAULT_PEEL_WORKERS, PeelPool } from "./peelPool";
import { RateLimiter, type RateLimit } from "./rateLimit";

/** A forward gives up after this long: a hop that cannot reach the next one in 10 s will not be helped by waiting. */
export const FORWARD_TIMEOUT_MS = 10_000;
/**
 * Epks of peeled packets remembered against replays: 65,536 flat hex strings, about 7.5 MB (bench/relay.ts measures
 * 114 bytes each). The oldest are forgotten first, so a replay older than that many packets passes; a replay cache
 * per relay key lifetime is the daemon's next step.
 */
export const MAX_REPLAY_CACHE = 65_536;
/**
 * Forwards one inbound stream may have in flight: a sender pipelining packets is not held to one round trip per
 * packet, and a stream cannot make the relay open more than 16 outbound streams at once.
 */
export const MAX_PIPELINED_FORWARDS = 16;
/**
 * Relay streams a peer may have open to this node, and this node to a peer, at once: libp2p's defaults (32 in, 64 out)
 * would reset the streams of a busy previous hop's pipelined forwards.
 */
export const RELAY_MAX_STREAMS = 256;
/** Forwards in flight towards one next hop: well below RELAY_MAX_STREAMS, so the next hop never resets one. */
export const MAX_FORWARDS_PER_PEER = 32;
/** After a next hop fails to answer a dial, packets for it fail at once for this long (5 s) before it is tried again. */
export const NEXT_HOP_BACKOFF_MS = 5_000;
/** How long `stop()` waits for a lane's queued frames to drain before resetting it. */
export const LANE_CLOSE_TIMEOUT_MS = 2_000;
/**
 * Packets a peer that is not an edge node (a sender's client) may hand this node: 100 a second, 1,000 at once. A chat
 * client sends a packet a message, so that is far above any person's rate, while a flood from one client costs the
 * node at most 100 peels a second (the peel's X25519 is the expensive part: the limit is checked before it). Edge
 * nodes (the static next hops and every node discovery knows) are not limited: their lanes carry many senders.
 */
export const RELAY_PEER_RATE_LIMIT: RateLimit = { perSecond: 100, burst: 1_000 };
/** Hop records kept for inspection (tests, metrics): the newest 1,024. */
export const MAX_HOP_RECORDS = 1_024;

/**
 * Called at the exit with the recipient id and the payload (a `Delivery`, sdk/wire/messages.ts). Returns nothing when
 * the payload was taken, or the error answer for the previous hop (NOT_FOUND when this node is not a home node of
 * the recipient, MALFORMED for a payload that does not parse, …).
 */
export type DeliverCallback = (
  recipientId: Uint8Array,
  payload: Uint8Array,
) => void | ErrorAnswer | Promise<void | ErrorAnswer>;

/**
 * Frames written to a lane in one stream write, at most: 14 packets, 57 KB, under a Noise message (65,535 bytes).
 * Frames peeled in the same turn of the event loop go out together, so a busy lane pays one Yamux frame, one Noise
 * encryption and one socket write per batch instead of per packet.
 */
export const MAX_LANE_BATCH_FRAMES = 14;

/** A packet waiting on a lane, with the forward waiting on it. */
interface QueuedPacket {
  readonly packet: Uint8Array;
  readonly written: () => void;
  readonly failed: (error: Error) => void;
}

/** One long-lived stream to a next hop, on which every packet for it goes out. */
interface Lane {
  readonly stream: Stream;
  closed: boolean;
  /** Packets waiting for the lane's next write, with the forwards waiting on them. */
  readonly queued: QueuedPacket[];
  /** Whether a write of the queue is scheduled or running. */
  flushing: boolean;
}

/** A next hop's addresses, as discovery knows them; undefined for a peer that is not a staked edge node. */
export type PeerResolver = (peerId: string) => { readonly multiaddrs: readonly string[] } | undefined;

/** What became of one relay frame, for metrics. */
export type RelayOutcome =
  | { readonly kind: "forwarded" }
  | { readonly kind: "delivered" }
  | { readonly kind: "refused"; readonly code: WireErrorCode };

export interface EdgeRelayInit {
  /** This node's X25519 relay secret key (32 bytes). */
  readonly relayPrivateKey: Uint8Array;
  /** Next hops this node may forward to, by peer id string ("12D3KooW…"): a fixed map, for tests. */
  readonly peers?: ReadonlyMap<string, readonly Multiaddr[]>;
  /** Live next-hop lookup (discovery), asked when `peers` does not know the peer. */
  readonly resolvePeer?: PeerResolver;
  /** Told what became of each frame (metrics). */
  readonly onOutcome?: (outcome: RelayOutcome) => void;
  /** Exit delivery; without one the node refuses deliver layers (NOT_FOUND). */
  readonly onDeliver?: DeliverCallback;
  /** Per-forward timeout; FORWARD_TIMEOUT_MS if omitted. */
  readonly forwardTimeoutMs?: number;
  /** Worker threads that peel packets (node/peelPool.ts); DEFAULT_PEEL_WORKERS (cores - 1, at most 4) if omitted. */
  readonly peelWorkers?: number;
  /** Packets a peer that is not an edge node may send (RATE_LIMITED beyond); RELAY_PEER_RATE_LIMIT if omitted. */
  readonly peerRateLimit?: RateLimit;
}

/** What one hop learned from one packet: the previous hop and either the next hop or the recipient, never the payload. */
export interface HopRecord {
  /** Peer id of the connection the packet came in on. */
  readonly from: string;
  /** Peer id of the next hop, for a forward layer. */
  readonly forwardTo?: string;
  /** Recipient id in hex, for a deliver layer. */
  readonly recipientId?: string;
}

/** A relay that is asked to do something it cannot do in its current state. */
export class EdgeRelayError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EdgeRelayError";
  }
}

/** A frame queued on a lane that closed before its write. */
class LaneClosedError extends EdgeRelayError {
  constructor() {
    super("EdgeRelay: lane closed");
  }
}

/** The part of a libp2p node the relay uses. */
export type RelayHost = Pick<Libp2p, "handle" | "unhandle" | "dialProtocol" | "hangUp" | "peerStore">;

interface KnownPeer {
  readonly peerId: PeerId;
  readonly multiaddrs: readonly Multiaddr[];
}

/** The ESM helpers the relay needs, loaded once at start. */
interface Libp2pHelpers {
  readonly peerIdFromString: (id: string) => PeerId;
  readonly multiaddr: (address: string) => Multiaddr;
}

/** An answer for the previous hop, or undefined when the packet was handled. */
type Outcome = ErrorAnswer | undefined;

export class EdgeRelay {
  private readonly host: RelayHost;
  private readonly init: EdgeRelayInit;
  /** The relay public key, OpenSSL's X25519 with the relay secret key, and OpenSSL's symmetric primitives. */
  private readonly peelOptions: PeelOptions;
  private readonly log: Logger;
  /** Peels on worker threads while the relay runs (undefined when stopped: then on this thread). */
  private peeler: PeelPool | undefined;
  private readonly knownPeers = new Map<string, KnownPeer>(); // hex of the peer id multihash → peer
  private readonly replayCache = new Set<string>();
  private readonly records: HopRecord[] = [];
  private controller = new AbortController();
  private started = false;
  private helpers: Libp2pHelpers | undefined;
  // next hop → forward slots: how many are taken, and the forwards waiting for one
  private readonly gates = new Map<string, { active: number; waiting: { wake(): void; fail(e: Error): void }[] }>();
  private readonly lanes = new Map<string, Lane>(); // next hop → its open outbound stream
  private readonly openingLanes = new Map<string, Promise<Lane>>();
  private readonly inbound = new Set<Stream>(); // streams previous hops (and senders) keep open to this node
  private readonly peerLimiter: RateLimiter; // packets of peers that are not edge nodes
  private readonly unreachableUntil = new Map<string, number>(); // next hop → end of its backoff after a failed dial

  constructor(host: RelayHost, init: EdgeRelayInit) {
    if (!(init.relayPrivateKey instanceof Uint8Array) || init.relayPrivateKey.length !== 32) {
      throw new EdgeRelayError("EdgeRelay: expected a 32-byte X25519 relay secret key");
    }
    this.host = host;
    this.init = init;
    this.peelOptions = {
      relayPublicKey: x25519.getPublicKey(init.relayPrivateKey),
      sharedSecret: nativeX25519(init.relayPrivateKey),
      symmetric: NATIVE_ONION_SYMMETRIC,
    };
    this.log = createLogger("relay");
    this.peerLimiter = new RateLimiter(init.peerRateLimit ?? RELAY_PEER_RATE_LIMIT);
  }

  /** What this node saw of each packet it handled, oldest first. */
  get hopRecords(): readonly HopRecord[] {
    return [...this.records];
  }

  /**
   * Starts the peel workers if no packet has started them yet, waits until they are up (packets never wait for them:
   * until then they are peeled on this thread) and returns how many are; 0 when stopped. For tests and benchmarks.
   */
  async peelWorkersReady(): Promise<number> {
    return (await this.peeler?.whenReady()) ?? 0;
  }

  isStarted(): boolean {
    return this.started;
  }

  async start(): Promise<void> {
    if (this.started) return;
    const [{ peerIdFromString }, { multiaddr }] = await Promise.all([
      import("@libp2p/peer-id"),
      import("@multiformats/multiaddr"),
    ]);
    this.helpers = { peerIdFromString, multiaddr };
    this.knownPeers.clear();
    for (const [id, multiaddrs] of this.init.peers ?? new Map<string, readonly Multiaddr[]>()) {
      const peerId = peerIdFromString(id);
      this.knownPeers.set(hexOf(peerId.toMultihash().bytes), { peerId, multiaddrs });
    }
    this.controller = new AbortController();
    this.peeler = new PeelPool(
      this.init.relayPrivateKey,
      this.peelOptions,
      this.init.peelWorkers ?? DEFAULT_PEEL_WORKERS,
      this.log,
    );
    await this.host.handle(RELAY_PROTOCOL, (stream, connection) => this.handleStream(stream, connection), {
      maxInboundStreams: RELAY_MAX_STREAMS,
      maxOutboundStreams: RELAY_MAX_STREAMS,
    });
    this.started = true;
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.controller.abort(new EdgeRelayError("EdgeRelay: stopped"));
    for (const gate of this.gates.values()) {
      for (const waiter of gate.waiting.splice(0)) waiter.fail(new EdgeRelayError("EdgeRelay: stopped"));
    }
    await this.host.unhandle(RELAY_PROTOCOL);
    await this.peeler?.stop(); // packets it still held are peeled here and go on (or fail) with the lanes below
    this.peeler = undefined;
    // A stopped relay peels nothing more: inbound streams (lanes of previous hops included) are reset.
    for (const stream of this.inbound) stream.abort(new EdgeRelayError("EdgeRelay: stopped"));
    this.inbound.clear();
    await Promise.allSettled([...this.openingLanes.values()]);
    const lanes = [...this.lanes.values()];
    this.lanes.clear();
    await Promise.all(
      lanes.map((lane) => {
        lane.closed = true;
        // Bounded: a next hop that stopped reading must not hold the shutdown.
        return lane.stream
          .close({ signal: AbortSignal.timeout(LANE_CLOSE_TIMEOUT_MS) })
          .catch((error: Error) => lane.stream.abort(error));
      }),
    );
  }

  private async handleStream(stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer.toString();
    const decoder = new FrameDecoder(RELAY_MAX_FRAME_BYTES);
    const inFlight = new Set<Promise<void>>();
    this.inbound.add(stream);
    try {
      for await (const chunk of stream) {
        let frames: Frame[];
        try {
          frames = decoder.push(chunk);
        } catch (error) {
          const refusal = framingRefusal(error);
          this.init.onOutcome?.({ kind: "refused", code: refusal.code });
          await Promise.allSettled(inFlight);
          await this.answer(stream, refusal);
          await stream.close();
          await stream.closeRead();
          return;
        }
        for (const frame of frames) {
          // Frames of one stream are handled in order and overlap, up to MAX_PIPELINED_FORWARDS: their peels (on the
          // pool's workers, in batches) and their forwards.
          const task = this.handleFrame(frame.type, frame.body, from).then(async (outcome) => {
            if (outcome === undefined) return;
            this.init.onOutcome?.({ kind: "refused", code: outcome.code });
            await this.answer(stream, outcome);
          });
          inFlight.add(task);
          void task.finally(() => inFlight.delete(task)).catch(() => undefined);
          if (inFlight.size >= MAX_PIPELINED_FORWARDS) await Promise.race(inFlight);
        }
      }
      await Promise.all(inFlight);
      try {
        decoder.end();
      } catch (error) {
        const refusal = framingRefusal(error);
        this.init.onOutcome?.({ kind: "refused", code: refusal.code });
        await this.answer(stream, refusal);
      }
      await stream.close();
    } catch (error) {
      this.log.debug("relay stream failed", { from, error });
      stream.abort(error as Error);
    } finally {
      this.inbound.delete(stream);
    }
  }

  private async handleFrame(type: number, body: Uint8Array, from: string): Promise<Outcome> {
    if (type !== RELAY_PACKET_TYPE) {
      return {
        code: WireErrorCode.UNSUPPORTED,
        message: `relay: expected frame type ${RELAY_PACKET_TYPE}, got ${type}`,
      };
    }
    if (body.length !== PACKET_BYTES) {
      return {
        code: WireErrorCode.MALFORMED,
        message: `relay: expected a ${PACKET_BYTES}-byte packet, got ${body.length}`,
      };
    }
    if (!this.isEdgeNode(from) && !this.peerLimiter.take(from)) {
      const { perSecond, burst } = this.peerLimiter.limit;
      return {
        code: WireErrorCode.RATE_LIMITED,
        message: `relay: too many packets from this peer: at most ${perSecond} a second, ${burst} at once`,
      };
    }
    let result: PeelResult;
    try {
      result =
        this.peeler !== undefined
          ? await this.peeler.peel(body)
          : peel(body, this.init.relayPrivateKey, this.peelOptions);
    } catch (error) {
      if (!(error instanceof OnionError)) throw error;
      return { code: WireErrorCode.MALFORMED, message: error.message };
    }
    // A flat string (Buffer's hex), not a chain of concatenations: the cache holds up to 65,536 of them.
    const epk = Buffer.from(body.buffer, body.byteOffset, EPK_BYTES).toString("hex");
    if (this.replayCache.has(epk)) return { code: WireErrorCode.REPLAYED, message: "relay: packet seen before" };
    this.remember(epk);

    if ("forward" in result) {
      const next = this.nextHop(result.forward);
      if (next === undefined) return { code: WireErrorCode.NOT_FOUND, message: "relay: unknown next hop" };
      this.record({ from, forwardTo: next.peerId.toString() });
      const outcome = await this.forward(next, result.packet);
      if (outcome === undefined) this.init.onOutcome?.({ kind: "forwarded" });
      return outcome;
    }
    if (this.init.onDeliver === undefined) {
      return { code: WireErrorCode.NOT_FOUND, message: "relay: this node does not deliver" };
    }
    this.record({ from, recipientId: Buffer.from(result.deliver).toString("hex") });
    let answer: void | ErrorAnswer;
    try {
      answer = await this.init.onDeliver(result.deliver, result.payload);
    } catch (error) {
      this.log.error("delivery failed", { error });
      return { code: WireErrorCode.INTERNAL, message: "relay: delivery failed" };
    }
    if (answer !== undefined) return answer;
    this.init.onOutcome?.({ kind: "delivered" });
    return undefined;
  }

  /** Whether `peerId` is an edge node this relay knows: a static next hop, or one discovery knows. */
  private isEdgeNode(peerId: string): boolean {
    return this.init.peers?.has(peerId) === true || this.init.resolvePeer?.(peerId) !== undefined;
  }

  /** The next hop named by a forward layer: the static map first, then discovery. */
  private nextHop(multihash: Uint8Array): KnownPeer | undefined {
    const known = this.knownPeers.get(hexOf(multihash));
    if (known !== undefined) return known;
    const helpers = this.helpers;
    if (this.init.resolvePeer === undefined || helpers === undefined) return undefined;
    // Edge nodes have Ed25519 peer ids: identity multihash 0x00 || 36 || protobuf(08 01 12 20 || key).
    if (multihash.length !== ED25519_PEER_ID_BYTES || multihash[0] !== 0x00 || multihash[1] !== 36) return undefined;
    let id: string;
    try {
      id = peerIdFromEd25519PublicKey(multihash.subarray(6));
    } catch {
      return undefined;
    }
    const found = this.init.resolvePeer(id);
    if (found === undefined) return undefined;
    try {
      const peerId = helpers.peerIdFromString(id);
      if (!bytesEqual(peerId.toMultihash().bytes, multihash)) return undefined;
      return { peerId, multiaddrs: found.multiaddrs.map((a) => helpers.multiaddr(a)) };
    } catch (error) {
      this.log.warn("next hop has unusable addresses", { peer: id, error });
      return undefined;
    }
  }

  /**
   * Sends `packet` to the next hop on the lane (one long-lived stream) to it, opening the lane if there is none; a lane
   * that fails is dropped and the packet tried once more on a fresh one. A forward is done once its frame is written:
   * the next hop's error answers arrive on the lane's reader and are logged (they were never passed back).
   */
  private async forward(next: KnownPeer, packet: Uint8Array): Promise<Outcome> {
    const key = next.peerId.toString();
    const backoff = this.unreachableUntil.get(key);
    if (backoff !== undefined) {
      // A next hop that just failed to answer a dial is not dialled again for a while: packets for it fail at once
      // instead of holding the previous hop's lane (whose other packets wait behind them) for a dial timeout each.
      if (Date.now() < backoff) return { code: WireErrorCode.INTERNAL, message: "relay: next hop unreachable" };
      this.unreachableUntil.delete(key);
    }
    try {
      await this.acquire(key);
    } catch {
      return { code: WireErrorCode.INTERNAL, message: "relay: stopped" };
    }
    try {
      for (let attempt = 0; ; attempt++) {
        let lane: Lane | undefined;
        try {
          lane = await this.lane(next);
          await this.write(lane, packet);
          return undefined;
        } catch (error) {
          // A lane that closed meanwhile (stop, or the next hop ended it) is not aborted: that would throw away the
          // frames of earlier batches still in its buffer. The packet is tried once more on a fresh lane.
          if (lane !== undefined && !(error instanceof LaneClosedError)) this.dropLane(key, lane, error as Error);
          if (attempt >= 1 || this.controller.signal.aborted) {
            if (lane === undefined && !this.controller.signal.aborted) {
              this.unreachableUntil.set(key, Date.now() + NEXT_HOP_BACKOFF_MS);
            }
            this.log.warn("forward failed", { peer: key, error });
            return { code: WireErrorCode.INTERNAL, message: "relay: next hop unreachable" };
          }
        }
      }
    } finally {
      this.release(key);
    }
  }

  /**
   * Queues `packet` on `lane`; resolves once its frame is handed to the stream (after a drain the stream asked for),
   * and rejects if the write fails or the stream does not drain within the forward timeout.
   */
  private write(lane: Lane, packet: Uint8Array): Promise<void> {
    return new Promise<void>((written, failed) => {
      lane.queued.push({ packet, written, failed });
      if (!lane.flushing) {
        lane.flushing = true;
        // After this turn's peels, so the frames they queue share one write.
        setImmediate(() => void this.flush(lane));
      }
    });
  }

  private async flush(lane: Lane): Promise<void> {
    while (lane.queued.length > 0) {
      const batch = lane.queued.splice(0, MAX_LANE_BATCH_FRAMES);
      try {
        if (lane.closed) throw new LaneClosedError();
        // The batch's frames in one buffer: one allocation and one copy a packet.
        const bytes = encodeFrames(
          RELAY_PACKET_TYPE,
          batch.map((q) => q.packet),
          RELAY_MAX_FRAME_BYTES,
        );
        if (!lane.stream.send(bytes)) {
          // Not stream.onDrain(): sdk/net/drain.ts says why.
          await drained(
            lane.stream,
            AbortSignal.any([
              this.controller.signal,
              AbortSignal.timeout(this.init.forwardTimeoutMs ?? FORWARD_TIMEOUT_MS),
            ]),
          );
        }
        for (const q of batch) q.written();
      } catch (error) {
        for (const q of batch) q.failed(error as Error);
      }
    }
    lane.flushing = false;
  }

  /** The open lane to `next`, or a new one (one dial at a time per next hop). */
  private lane(next: KnownPeer): Promise<Lane> {
    const key = next.peerId.toString();
    const open = this.lanes.get(key);
    if (open !== undefined && !open.closed) return Promise.resolve(open);
    let opening = this.openingLanes.get(key);
    if (opening === undefined) {
      opening = this.openLane(next).finally(() => this.openingLanes.delete(key));
      this.openingLanes.set(key, opening);
    }
    return opening;
  }

  /**
   * Dials a lane to `next`, giving up after the forward timeout or on stop. The signal handed to libp2p belongs to
   * the dial alone and can no longer fire once the lane is open: a lane lives far longer than any one forward.
   */
  private async openLane(next: KnownPeer): Promise<Lane> {
    const dial = new AbortController();
    const timer = setTimeout(
      () => dial.abort(new EdgeRelayError("EdgeRelay: dial timed out")),
      this.init.forwardTimeoutMs ?? FORWARD_TIMEOUT_MS,
    );
    const onStop = () => dial.abort(this.controller.signal.reason);
    if (this.controller.signal.aborted) onStop(); // stopped already: the listener below would never fire
    this.controller.signal.addEventListener("abort", onStop, { once: true });
    const signal = dial.signal;
    let stream: Stream;
    try {
      signal.throwIfAborted();
      await this.host.peerStore.merge(next.peerId, { multiaddrs: [...next.multiaddrs] }, { signal });
      try {
        stream = await this.host.dialProtocol(next.peerId, RELAY_PROTOCOL, { signal });
      } catch (error) {
        // A connection whose muxer died can linger in the connection list: drop it and dial afresh, once.
        if ((error as Error).name !== "ConnectionClosedError") throw error;
        await this.host.hangUp(next.peerId, { signal }).catch(() => undefined);
        stream = await this.host.dialProtocol(next.peerId, RELAY_PROTOCOL, { signal });
      }
    } finally {
      clearTimeout(timer);
      this.controller.signal.removeEventListener("abort", onStop);
    }
    if (signal.aborted || !this.started) {
      // Stopped while dialling: do not leave a lane behind.
      stream.abort(new EdgeRelayError("EdgeRelay: stopped"));
      throw new EdgeRelayError("EdgeRelay: stopped");
    }
    const key = next.peerId.toString();
    const lane: Lane = { stream, closed: false, queued: [], flushing: false };
    this.lanes.set(key, lane);
    void this.readLane(key, lane);
    return lane;
  }

  /** Logs the error answers the next hop sends back on a lane, until the lane ends. */
  private async readLane(key: string, lane: Lane): Promise<void> {
    const decoder = new FrameDecoder(RELAY_MAX_FRAME_BYTES);
    try {
      for await (const chunk of lane.stream) {
        for (const frame of decoder.push(chunk)) {
          if (frame.type !== ERROR_FRAME_TYPE) continue;
          const answer = parseErrorAnswer(frame.body);
          this.log.debug("next hop answered", { peer: key, code: answer.code, answer: answer.message });
        }
      }
    } catch (error) {
      this.log.debug("lane ended", { peer: key, error });
    } finally {
      lane.closed = true;
      if (this.lanes.get(key) === lane) this.lanes.delete(key);
    }
  }

  private dropLane(key: string, lane: Lane, error: Error): void {
    lane.closed = true;
    if (this.lanes.get(key) === lane) this.lanes.delete(key);
    lane.stream.abort(error);
  }

  /**
   * Waits for one of the MAX_FORWARDS_PER_PEER forward slots towards `peer`. A wait has no timer of its own (an
   * AbortSignal per waiting packet cost more than its peel): the slots' holders are bounded by the drain and dial
   * timeouts, and `stop()` fails every waiter.
   */
  private async acquire(peer: string): Promise<void> {
    let gate = this.gates.get(peer);
    if (gate === undefined) {
      gate = { active: 0, waiting: [] };
      this.gates.set(peer, gate);
    }
    if (gate.active < MAX_FORWARDS_PER_PEER) {
      gate.active++;
      return;
    }
    const waiting = gate.waiting;
    await new Promise<void>((wake, fail) => waiting.push({ wake, fail }));
  }

  /** Frees a forward slot towards `peer`, handing it to the next waiter if any. */
  private release(peer: string): void {
    const gate = this.gates.get(peer);
    if (gate === undefined) return;
    const next = gate.waiting.shift();
    if (next !== undefined) {
      next.wake(); // the slot passes on: active stays the same
      return;
    }
    gate.active--;
    if (gate.active === 0) this.gates.delete(peer);
  }

  private async answer(stream: Stream, answer: ErrorAnswer): Promise<void> {
    if (!stream.send(encodeErrorFrame(answer, RELAY_MAX_FRAME_BYTES))) await drained(stream);
  }

  private remember(epk: string): void {
    if (this.replayCache.size >= MAX_REPLAY_CACHE) {
      const oldest = this.replayCache.values().next().value;
      if (oldest !== undefined) this.replayCache.delete(oldest);
    }
    this.replayCache.add(epk);
  }

  private record(record: HopRecord): void {
    if (this.records.length >= MAX_HOP_RECORDS) this.records.shift();
    this.records.push(record);
  }
}

/** Lower-case hex of `bytes`, through Buffer (a packet's next hop is looked up this way: noble's loop is 10x slower). */
function hexOf(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
