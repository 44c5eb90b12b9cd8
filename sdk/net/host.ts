/**
 * The client's libp2p host: a dialer only (TCP, Noise, Yamux, identify; it listens nowhere), with a fresh Ed25519
 * peer key per host so a client's connections do not carry a long-lived network identity, and the two stream
 * patterns every Sending Network protocol uses:
 *
 *   - `request`: open a stream, send one or more request frames, close the write side, read answer frames until the
 *     node closes its side (or the caller has what it needs), each frame bounded by the protocol's MAX_FRAME_BYTES;
 *   - `subscribe`: open a stream, send one request frame, then yield the frames the node pushes until the caller
 *     stops iterating or aborts (the inbox's live SUBSCRIBE).
 *
 * Every wait on the network takes an AbortSignal and a timeout. Failures are typed: NodeUnreachableError (the dial
 * or the protocol negotiation failed), NodeTimeoutError (no complete answer in time), NodeRefusedError (the node
 * answered with an error frame: its wire code and message), NodeProtocolError (the node sent bytes that are not a
 * valid answer). An abort by the caller rejects with the signal's reason, unchanged.
 *
 * The libp2p stack is ESM-only, the repository CommonJS: it is loaded with `await import(...)` after the
 * Promise.withResolvers polyfill that libp2p needs on Node 20 (sdk/net/polyfill.ts).
 */
import "./polyfill";
import { drained } from "./drain";
import { readFromNow } from "./reader";
import { useHalfWindowUpdates } from "./yamuxWindow";
import type { Libp2p, PeerId, Stream } from "@libp2p/interface" with { "resolution-mode": "import" };
import {
  ERROR_FRAME_TYPE,
  FrameDecoder,
  FrameError,
  MAX_FRAME_BYTES,
  encodeFrame,
  parseErrorAnswer,
  type Frame,
  type ProtocolId,
  type StreamChunk,
  type WireErrorCode,
} from "../wire/frame";

/** A dial (TCP connect, Noise handshake, Yamux, protocol negotiation) that takes 10 s will not succeed by waiting. */
export const DIAL_TIMEOUT_MS = 10_000;
/** A request's answer must be complete within 15 s: nodes answer from memory or one sqlite transaction. */
export const REQUEST_TIMEOUT_MS = 15_000;
/** Most answer frames one request reads: a fetch or a bills page is one frame; 64 bounds a misbehaving node. */
export const MAX_ANSWER_FRAMES = 64;

/** Why a network call failed. */
export type NetErrorCode = "NodeUnreachable" | "NodeTimeout" | "NodeRefused" | "NodeProtocol" | "HostStopped";

/** Base class of the network errors: `code` says which. */
export class NetError extends Error {
  readonly code: NetErrorCode;
  /** Peer id of the node the call went to, when there was one. */
  readonly peerId: string | undefined;
  constructor(code: NetErrorCode, message: string, peerId?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "NetError";
    this.code = code;
    this.peerId = peerId;
  }
}

/** The node could not be dialled, or refused the protocol. */
export class NodeUnreachableError extends NetError {
  constructor(message: string, peerId?: string, options?: { cause?: unknown }) {
    super("NodeUnreachable", message, peerId, options);
    this.name = "NodeUnreachableError";
  }
}

/** The node did not answer completely in time. */
export class NodeTimeoutError extends NetError {
  constructor(message: string, peerId?: string) {
    super("NodeTimeout", message, peerId);
    this.name = "NodeTimeoutError";
  }
}

/** The node answered with an error frame. */
export class NodeRefusedError extends NetError {
  /** The wire error code (sdk/wire/frame.ts WireErrorCode). */
  readonly wireCode: WireErrorCode;
  /** The node's message. */
  readonly wireMessage: string;
  constructor(wireCode: WireErrorCode, wireMessage: string, where: string, peerId?: string) {
    super("NodeRefused", `${where}: node answered error ${wireCode}: ${wireMessage}`, peerId);
    this.name = "NodeRefusedError";
    this.wireCode = wireCode;
    this.wireMessage = wireMessage;
  }
}

/** The node sent something that is not a valid answer (bad framing, an unexpected type, too many frames). */
export class NodeProtocolError extends NetError {
  constructor(message: string, peerId?: string, options?: { cause?: unknown }) {
    super("NodeProtocol", message, peerId, options);
    this.name = "NodeProtocolError";
  }
}

/** Where to reach a node: its peer id and the multiaddrs it registered. */
export interface NodeAddress {
  /** libp2p peer id, base58btc. */
  readonly peerId: string;
  /** Multiaddrs to dial (with or without a /p2p/ suffix). */
  readonly multiaddrs: readonly string[];
}

/** Options of one network call. */
export interface CallOptions {
  /** Aborts the call; it then rejects with `signal.reason`. */
  readonly signal?: AbortSignal;
  /** Overall deadline of the call in ms (dial included). */
  readonly timeoutMs?: number;
}

/** Options of `request`. */
export interface RequestOptions extends CallOptions {
  /** Stop reading (and close the stream) once this returns true for an answer frame. */
  readonly until?: (frame: Frame) => boolean;
  /** Most answer frames read; MAX_ANSWER_FRAMES if omitted. */
  readonly maxFrames?: number;
}

/** Options of `ClientHost.create`. */
export interface ClientHostOptions {
  /** Per-dial timeout; DIAL_TIMEOUT_MS if omitted. */
  readonly dialTimeoutMs?: number;
}

/** A frame to send: its type byte and body. */
export interface OutgoingFrame {
  readonly type: number;
  readonly body: Uint8Array;
}

type AnyStream = Stream;

/** The client's dial-only libp2p host. */
export class ClientHost {
  readonly #libp2p: Libp2p;
  readonly #dialTimeoutMs: number;
  readonly #lifetime = new AbortController();
  readonly #peerIdFromString: (id: string) => PeerId;
  readonly #multiaddr: (addr: string) => Parameters<Libp2p["dial"]>[0];

  private constructor(
    libp2p: Libp2p,
    dialTimeoutMs: number,
    peerIdFromString: (id: string) => PeerId,
    multiaddr: (addr: string) => Parameters<Libp2p["dial"]>[0],
  ) {
    this.#libp2p = libp2p;
    this.#dialTimeoutMs = dialTimeoutMs;
    this.#peerIdFromString = peerIdFromString;
    this.#multiaddr = multiaddr;
  }

  /** Starts a dial-only host with a fresh Ed25519 peer key. */
  static async create(options: ClientHostOptions = {}): Promise<ClientHost> {
    await useHalfWindowUpdates(); // fewer yamux frames a packet: sdk/net/yamuxWindow.ts
    const [{ createLibp2p }, { tcp }, { noise }, { yamux }, { identify }, { peerIdFromString }, { multiaddr }] =
      await Promise.all([
        import("libp2p"),
        import("@libp2p/tcp"),
        import("@chainsafe/libp2p-noise"),
        import("@chainsafe/libp2p-yamux"),
        import("@libp2p/identify"),
        import("@libp2p/peer-id"),
        import("@multiformats/multiaddr"),
      ]);
    const libp2p = await createLibp2p({
      addresses: { listen: [] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify() },
    });
    return new ClientHost(libp2p, options.dialTimeoutMs ?? DIAL_TIMEOUT_MS, peerIdFromString, (a) => multiaddr(a));
  }

  /** The underlying libp2p node (for tests and advanced use). */
  get libp2p(): Libp2p {
    return this.#libp2p;
  }

  /** This host's (ephemeral) peer id. */
  get peerId(): string {
    return this.#libp2p.peerId.toString();
  }

  /** Closes every stream and connection; calls in flight reject with NetError("HostStopped"). */
  async stop(): Promise<void> {
    this.#lifetime.abort(new NetError("HostStopped", "ClientHost: stopped"));
    await this.#libp2p.stop();
  }

  /** Opens a stream of `protocol` to `node` (dialling it if no connection is open). */
  async openStream(node: NodeAddress, protocol: ProtocolId, options: CallOptions = {}): Promise<AnyStream> {
    const where = `ClientHost.openStream(${protocol})`;
    this.#lifetime.signal.throwIfAborted();
    options.signal?.throwIfAborted();
    let peer: PeerId;
    try {
      peer = this.#peerIdFromString(node.peerId);
    } catch (error) {
      throw new NodeUnreachableError(`${where}: bad peer id '${node.peerId}'`, node.peerId, { cause: error });
    }
    const timeout = AbortSignal.timeout(Math.min(this.#dialTimeoutMs, options.timeoutMs ?? Infinity));
    const signal = AbortSignal.any([this.#lifetime.signal, timeout, ...(options.signal ? [options.signal] : [])]);
    try {
      const addrs = node.multiaddrs.map((a) => this.#multiaddr(a.includes("/p2p/") ? a : `${a}/p2p/${node.peerId}`));
      await this.#libp2p.peerStore.merge(peer, { multiaddrs: addrs as never }, { signal });
      return await this.#libp2p.dialProtocol(peer, protocol, { signal });
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (this.#lifetime.signal.aborted) throw this.#lifetime.signal.reason;
      throw new NodeUnreachableError(
        `${where}: cannot reach ${node.peerId}${timeout.aborted ? " (timed out)" : ""}: ${(error as Error).message}`,
        node.peerId,
        { cause: error },
      );
    }
  }

  /**
   * Sends `frames` on a fresh stream, closes the write side and returns the answer frames (none is an error frame:
   * that throws NodeRefusedError). Reads until the node closes, `until` is satisfied, or `maxFrames` frames came.
   */
  async request(
    node: NodeAddress,
    protocol: ProtocolId,
    frames: readonly OutgoingFrame[],
    options: RequestOptions = {},
  ): Promise<Frame[]> {
    const where = `ClientHost.request(${protocol})`;
    const deadline = options.timeoutMs ?? REQUEST_TIMEOUT_MS;
    const timeout = AbortSignal.timeout(deadline);
    const signal = AbortSignal.any([timeout, ...(options.signal ? [options.signal] : [])]);
    const stream = await this.openStream(node, protocol, { signal, timeoutMs: deadline });
    const chunks = readFromNow(stream); // before writing: sdk/net/reader.ts says why
    const maxFrameBytes = MAX_FRAME_BYTES[protocol];
    const answers: Frame[] = [];
    try {
      for (const frame of frames) {
        if (!stream.send(encodeFrame(frame.type, frame.body, maxFrameBytes))) await drained(stream, signal);
      }
      await stream.close({ signal });
      const maxFrames = options.maxFrames ?? MAX_ANSWER_FRAMES;
      let satisfied = false;
      for await (const frame of this.#read(stream, chunks, protocol, node.peerId, signal, where)) {
        answers.push(frame);
        if (options.until?.(frame)) {
          satisfied = true;
          break;
        }
        if (answers.length >= maxFrames) {
          throw new NodeProtocolError(`${where}: more than ${maxFrames} answer frames`, node.peerId);
        }
      }
      // Got what was asked for before the node closed its side: stop reading (no reset, the node did nothing wrong).
      if (satisfied) await stream.closeRead().catch(() => stream.abort(new Error(`${where}: done`)));
      return answers;
    } catch (error) {
      stream.abort(error as Error);
      throw this.#translate(error, options.signal, timeout, where, node.peerId);
    }
  }

  /**
   * Sends one frame on a fresh stream and yields every frame the node pushes on it until the node closes the
   * stream, the caller stops iterating (the stream is then closed), or `options.signal` aborts. An error frame throws
   * NodeRefusedError. Only the dial is bounded by a timeout: a subscription lasts as long as the caller wants.
   */
  async *subscribe(
    node: NodeAddress,
    protocol: ProtocolId,
    frame: OutgoingFrame,
    options: { readonly signal?: AbortSignal } = {},
  ): AsyncGenerator<Frame, void, undefined> {
    const where = `ClientHost.subscribe(${protocol})`;
    const signal = AbortSignal.any([this.#lifetime.signal, ...(options.signal ? [options.signal] : [])]);
    const stream = await this.openStream(node, protocol, { signal });
    const chunks = readFromNow(stream); // before writing: sdk/net/reader.ts says why
    const onAbort = () => stream.abort(signal.reason as Error);
    signal.addEventListener("abort", onAbort, { once: true });
    let done = false;
    try {
      if (!stream.send(encodeFrame(frame.type, frame.body, MAX_FRAME_BYTES[protocol]))) await drained(stream, signal);
      yield* this.#read(stream, chunks, protocol, node.peerId, signal, where);
      done = true;
    } catch (error) {
      throw this.#translate(error, options.signal, undefined, where, node.peerId);
    } finally {
      signal.removeEventListener("abort", onAbort);
      if (!done) stream.abort(new Error(`${where}: closed by the client`));
      else await stream.close().catch(() => undefined);
    }
  }

  async *#read(
    stream: AnyStream,
    chunks: AsyncIterable<StreamChunk>,
    protocol: ProtocolId,
    peerId: string,
    signal: AbortSignal,
    where: string,
  ): AsyncGenerator<Frame, void, undefined> {
    const decoder = new FrameDecoder(MAX_FRAME_BYTES[protocol]);
    const onAbort = () => stream.abort(signal.reason as Error);
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const chunk of chunks) {
        signal.throwIfAborted();
        for (const frame of decoder.push(chunk)) {
          if (frame.type === ERROR_FRAME_TYPE) {
            const answer = parseErrorAnswer(frame.body);
            throw new NodeRefusedError(answer.code, answer.message, where, peerId);
          }
          yield frame;
        }
      }
      signal.throwIfAborted();
      decoder.end();
    } catch (error) {
      if (error instanceof FrameError) {
        throw new NodeProtocolError(`${where}: ${error.message}`, peerId, { cause: error });
      }
      throw error;
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  #translate(
    error: unknown,
    callerSignal: AbortSignal | undefined,
    timeout: AbortSignal | undefined,
    where: string,
    peerId: string,
  ): unknown {
    if (error instanceof NetError) return error;
    if (callerSignal?.aborted) return callerSignal.reason;
    if (this.#lifetime.signal.aborted) return this.#lifetime.signal.reason;
    if (timeout?.aborted) return new NodeTimeoutError(`${where}: no complete answer from ${peerId} in time`, peerId);
    return new NodeUnreachableError(`${where}: stream to ${peerId} failed: ${(error as Error).message}`, peerId, {
      cause: error,
    });
  }
}
