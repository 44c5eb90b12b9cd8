/**
 * The edge node's half of the layered-packet relay (`/sending/relay/1.0.0`): each inbound stream carries frames of
 * type RELAY_PACKET_TYPE, one PACKET_BYTES packet each (sdk/wire/frame.ts, sdk/wire/onion.ts). The relay peels one
 * layer with its X25519 relay key and either forwards the inner packet to the next hop (a fresh stream to that
 * peer, dialled from the peer map that stands in for discovery from the registry) or, at the exit, hands the payload
 * to `onDeliver`. A frame or packet it cannot use is answered with an error frame (type 0xFF) on the same stream; a
 * successful packet gets no answer. After a framing error the stream is out of sync: the relay answers, closes it
 * and keeps serving other streams.
 *
 * A plain class with start/stop rather than the js-libp2p service factory (`edgeRelay(init) => (components) => …`):
 * a service's components (registrar, connection manager, peer store) are typed in @libp2p/interface-internal, which
 * is not a dependency of this repository, and the relay key comes from the data directory the host opens anyway.
 * The class takes the small part of the Libp2p interface it needs, so moving it into a service later changes only
 * the constructor.
 */
import { x25519 } from "@noble/curves/ed25519.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import type { Connection, Libp2p, Logger, PeerId, Stream } from "@libp2p/interface" with {
  "resolution-mode": "import",
};
import type { Multiaddr } from "@multiformats/multiaddr" with { "resolution-mode": "import" };
import {
  ERROR_FRAME_TYPE,
  FrameDecoder,
  FrameError,
  RELAY_MAX_FRAME_BYTES,
  RELAY_PACKET_TYPE,
  RELAY_PROTOCOL,
  WireErrorCode,
  encodeErrorFrame,
  encodeFrame,
  parseErrorAnswer,
  type ErrorAnswer,
  type Frame,
} from "../sdk/wire/frame";
import { EPK_BYTES, OnionError, PACKET_BYTES, peel, type PeelResult } from "../sdk/wire/onion";

/** A forward gives up after this long: a hop that cannot reach the next one in 10 s will not be helped by waiting. */
export const FORWARD_TIMEOUT_MS = 10_000;
/**
 * Epks of peeled packets remembered against replays: 65,536 × 32 bytes is 2 MiB. The oldest are forgotten first, so
 * a replay older than that many packets passes; a replay cache per relay key lifetime is the daemon's next step.
 */
export const MAX_REPLAY_CACHE = 65_536;
/** Hop records kept for inspection (tests, metrics): the newest 1,024. */
export const MAX_HOP_RECORDS = 1_024;

/** Called at the exit with the recipient id and the (end-to-end encrypted) payload. */
export type DeliverCallback = (recipientId: Uint8Array, payload: Uint8Array) => void | Promise<void>;

export interface EdgeRelayInit {
  /** This node's X25519 relay secret key (32 bytes). */
  readonly relayPrivateKey: Uint8Array;
  /** Next hops this node may forward to, by peer id string ("12D3KooW…"): a stand-in for registry discovery. */
  readonly peers?: ReadonlyMap<string, readonly Multiaddr[]>;
  /** Exit delivery; without one the node refuses deliver layers (NOT_FOUND). */
  readonly onDeliver?: DeliverCallback;
  /** Per-forward timeout; FORWARD_TIMEOUT_MS if omitted. */
  readonly forwardTimeoutMs?: number;
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

/** The part of a libp2p node the relay uses. */
export type RelayHost = Pick<Libp2p, "handle" | "unhandle" | "dialProtocol" | "peerStore" | "logger">;

interface KnownPeer {
  readonly peerId: PeerId;
  readonly multiaddrs: readonly Multiaddr[];
}

/** An answer for the previous hop, or undefined when the packet was handled. */
type Outcome = ErrorAnswer | undefined;

export class EdgeRelay {
  private readonly host: RelayHost;
  private readonly init: EdgeRelayInit;
  private readonly relayPublicKey: Uint8Array;
  private readonly log: Logger;
  private readonly knownPeers = new Map<string, KnownPeer>(); // hex of the peer id multihash → peer
  private readonly replayCache = new Set<string>();
  private readonly records: HopRecord[] = [];
  private controller = new AbortController();
  private started = false;

  constructor(host: RelayHost, init: EdgeRelayInit) {
    if (!(init.relayPrivateKey instanceof Uint8Array) || init.relayPrivateKey.length !== 32) {
      throw new EdgeRelayError("EdgeRelay: expected a 32-byte X25519 relay secret key");
    }
    this.host = host;
    this.init = init;
    this.relayPublicKey = x25519.getPublicKey(init.relayPrivateKey);
    this.log = host.logger.forComponent("sending:relay");
  }

  /** What this node saw of each packet it handled, oldest first. */
  get hopRecords(): readonly HopRecord[] {
    return [...this.records];
  }

  isStarted(): boolean {
    return this.started;
  }

  async start(): Promise<void> {
    if (this.started) return;
    const { peerIdFromString } = await import("@libp2p/peer-id");
    this.knownPeers.clear();
    for (const [id, multiaddrs] of this.init.peers ?? new Map<string, readonly Multiaddr[]>()) {
      const peerId = peerIdFromString(id);
      this.knownPeers.set(bytesToHex(peerId.toMultihash().bytes), { peerId, multiaddrs });
    }
    this.controller = new AbortController();
    await this.host.handle(RELAY_PROTOCOL, (stream, connection) => this.handleStream(stream, connection));
    this.started = true;
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.controller.abort(new EdgeRelayError("EdgeRelay: stopped"));
    await this.host.unhandle(RELAY_PROTOCOL);
  }

  private async handleStream(stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer.toString();
    const decoder = new FrameDecoder(RELAY_MAX_FRAME_BYTES);
    try {
      for await (const chunk of stream) {
        let frames: Frame[];
        try {
          frames = decoder.push(chunk);
        } catch (error) {
          if (!(error instanceof FrameError)) throw error;
          const code = error.code === "FRAME_TOO_LARGE" ? WireErrorCode.TOO_LARGE : WireErrorCode.MALFORMED;
          await this.answer(stream, { code, message: error.message });
          await stream.close();
          await stream.closeRead();
          return;
        }
        for (const frame of frames) {
          const outcome = await this.handleFrame(frame.type, frame.body, from);
          if (outcome !== undefined) await this.answer(stream, outcome);
        }
      }
      try {
        decoder.end();
      } catch (error) {
        if (!(error instanceof FrameError)) throw error;
        await this.answer(stream, { code: WireErrorCode.MALFORMED, message: error.message });
      }
      await stream.close();
    } catch (error) {
      this.log.error("relay stream from %s failed: %s", from, (error as Error).message);
      stream.abort(error as Error);
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
    let result: PeelResult;
    try {
      result = peel(body, this.init.relayPrivateKey, this.relayPublicKey);
    } catch (error) {
      if (!(error instanceof OnionError)) throw error;
      return { code: WireErrorCode.MALFORMED, message: error.message };
    }
    const epk = bytesToHex(body.subarray(0, EPK_BYTES));
    if (this.replayCache.has(epk)) return { code: WireErrorCode.REPLAYED, message: "relay: packet seen before" };
    this.remember(epk);

    if ("forward" in result) {
      const next = this.knownPeers.get(bytesToHex(result.forward));
      if (next === undefined) return { code: WireErrorCode.NOT_FOUND, message: "relay: unknown next hop" };
      this.record({ from, forwardTo: next.peerId.toString() });
      return this.forward(next, result.packet);
    }
    if (this.init.onDeliver === undefined) {
      return { code: WireErrorCode.NOT_FOUND, message: "relay: this node does not deliver" };
    }
    this.record({ from, recipientId: bytesToHex(result.deliver) });
    try {
      await this.init.onDeliver(result.deliver, result.payload);
    } catch (error) {
      this.log.error("delivery failed: %s", (error as Error).message);
      return { code: WireErrorCode.INTERNAL, message: "relay: delivery failed" };
    }
    return undefined;
  }

  /** Sends the peeled packet to the next hop on a fresh stream and reads until that hop closes it. */
  private async forward(next: KnownPeer, packet: Uint8Array): Promise<Outcome> {
    const signal = AbortSignal.any([
      this.controller.signal,
      AbortSignal.timeout(this.init.forwardTimeoutMs ?? FORWARD_TIMEOUT_MS),
    ]);
    let stream: Stream | undefined;
    try {
      await this.host.peerStore.merge(next.peerId, { multiaddrs: [...next.multiaddrs] }, { signal });
      stream = await this.host.dialProtocol(next.peerId, RELAY_PROTOCOL, { signal });
      if (!stream.send(encodeFrame(RELAY_PACKET_TYPE, packet, RELAY_MAX_FRAME_BYTES))) await stream.onDrain({ signal });
      await stream.close({ signal });
      const decoder = new FrameDecoder(RELAY_MAX_FRAME_BYTES);
      for await (const chunk of stream) {
        for (const frame of decoder.push(chunk)) {
          if (frame.type !== ERROR_FRAME_TYPE) continue;
          const answer = parseErrorAnswer(frame.body);
          this.log("next hop %s answered %d: %s", next.peerId.toString(), answer.code, answer.message);
        }
      }
      decoder.end();
      return undefined;
    } catch (error) {
      this.log.error("forward to %s failed: %s", next.peerId.toString(), (error as Error).message);
      stream?.abort(error as Error);
      return { code: WireErrorCode.INTERNAL, message: "relay: next hop unreachable" };
    }
  }

  private async answer(stream: Stream, answer: ErrorAnswer): Promise<void> {
    if (!stream.send(encodeErrorFrame(answer, RELAY_MAX_FRAME_BYTES))) await stream.onDrain();
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
