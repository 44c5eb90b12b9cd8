/**
 * Peels relay packets on worker threads, so an edge node uses more than one core for them.
 *
 * The peel (an X25519 with the packet's ephemeral key, HKDF, HMAC and ChaCha20 over 4 KB) is about half of what an
 * edge node's thread spends on a packet (docs/NODE.md, "Figures"); everything else (libp2p's framing and Noise, the
 * replay cache, the forwards) stays on the relay's thread. The pool hands packets to its workers in batches (those
 * asked for in the same turn of the event loop), each worker peels them in order and answers with the results, and
 * `peel` resolves each packet's promise: packets of one batch come back in order, batches of different workers may
 * overtake each other.
 *
 * Workers start with the first packet, so a host that never relays (a client's, a test's) starts none. Nothing waits
 * for a worker: until one has started (about a second, as it loads the code) and after every one has
 * failed, packets are peeled on the calling thread, as with `workers: 0`. A worker that dies hands its unanswered
 * packets back to be peeled on the calling thread, so no packet is lost to a crash of a worker.
 */
import { availableParallelism } from "node:os";
import path from "node:path";
import { Worker } from "node:worker_threads";
import { OnionError, peel, type OnionErrorCode, type PeelOptions, type PeelResult } from "../sdk/wire/onion";
import type { Logger } from "./log";

/** What a peel worker is started with. */
export interface PeelWorkerData {
  readonly relayPrivateKey: Uint8Array;
}

/** A batch of packets for a worker. */
export interface PeelRequest {
  readonly batch: number;
  readonly packets: readonly Uint8Array[];
}

/** A worker's answer for one packet: the peel's result, or the error it raised. */
export type PeelOutcome = PeelResult | { readonly error: string; readonly code?: OnionErrorCode };

/** A worker's answer to a batch, one outcome per packet in the batch's order. */
export interface PeelReply {
  readonly batch: number;
  readonly results: readonly PeelOutcome[];
}

/**
 * Peel workers by default: one core is the relay thread's, the others peel (at most 4: past that the relay thread's
 * own work a packet is the limit). On a machine with one or two cores that is none or one.
 */
export const DEFAULT_PEEL_WORKERS = Math.max(0, Math.min(4, availableParallelism() - 1));

/** Most packets in one message to a worker: a batch is one structured clone each way, so a few dozen 4 KB packets. */
export const MAX_PEEL_BATCH = 32;

/**
 * A packet that comes at least this long after the one before, to a pool with nothing outstanding, is peeled on the
 * calling thread at once: the relay is not busy (under 1,000 packets a second), and the hand-over to a worker would
 * only add its half millisecond to the hop. Closer together, packets go to the workers even when each finds them idle
 * (one stream feeding the relay a packet per turn, as a previous hop's lane does, would otherwise keep every peel on
 * the relay's thread).
 */
export const INLINE_PEEL_GAP_MS = 1;

/** How long `stop` lets a worker still loading its code finish before terminating it (it takes about a second). */
export const WORKER_LOAD_WAIT_MS = 10_000;

/** The worker's code beside this file: the .ts one under ts-node (tests, the daemon), else the compiled .js. */
const WORKER_FILE = path.join(__dirname, `peelWorker${path.extname(__filename)}`);

interface Waiter {
  readonly packet: Uint8Array;
  resolve(result: PeelResult): void;
  reject(error: Error): void;
}

interface PeelThread {
  readonly worker: Worker;
  ready: boolean;
  dead: boolean;
  /** Settles once the worker has loaded its code (its 'ready' message), or has failed or exited before. */
  readonly loaded: Promise<void>;
  /** Packets asked for this turn, sent as one batch at the end of it. */
  queued: Waiter[];
  /** Batches sent and not yet answered. */
  readonly sent: Map<number, Waiter[]>;
  outstanding: number;
}

/** Peels packets on worker threads, or on the calling thread when none is up. */
export class PeelPool {
  readonly #relayPrivateKey: Uint8Array;
  readonly #options: PeelOptions;
  readonly #log: Logger;
  readonly #threads: PeelThread[] = [];
  #nextBatch = 0;
  #flushScheduled = false;
  #workerPeels = 0;
  /** A packet was peeled on the calling thread in this turn of the event loop. */
  #turnBusy = false;
  /** When the last packet was asked for (performance.now()), and the gap that makes the next one lone. */
  #lastAsked = Number.NEGATIVE_INFINITY;
  readonly #inlineGapMs: number;
  #stopped = false;
  /** Workers to start on the first packet (a host that never relays, a client's say, never starts any). */
  #workers: number;

  /**
   * @param relayPrivateKey the node's X25519 relay secret key (each worker gets a copy)
   * @param options the calling thread's peel options, for packets peeled there
   * @param workers how many worker threads to start (0: every packet is peeled on the calling thread)
   * @param inlineGapMs how long after the packet before one must come to be peeled on the calling thread when the
   *   workers are idle (INLINE_PEEL_GAP_MS; tests set it)
   */
  constructor(
    relayPrivateKey: Uint8Array,
    options: PeelOptions,
    workers: number,
    log: Logger,
    inlineGapMs = INLINE_PEEL_GAP_MS,
  ) {
    if (!Number.isInteger(workers) || workers < 0) {
      throw new RangeError(`PeelPool: expected a whole number of workers >= 0, got ${workers}`);
    }
    if (!(inlineGapMs >= 0)) throw new RangeError(`PeelPool: expected inlineGapMs >= 0, got ${inlineGapMs}`);
    this.#inlineGapMs = inlineGapMs;
    this.#relayPrivateKey = relayPrivateKey;
    this.#options = options;
    this.#log = log;
    this.#workers = workers;
  }

  /** Packets the workers peeled so far (the rest were peeled on the calling thread). */
  get workerPeels(): number {
    return this.#workerPeels;
  }

  /** How many workers are up and peeling. */
  get activeWorkers(): number {
    return this.#threads.filter((t) => t.ready && !t.dead).length;
  }

  /** Resolves once every worker is up or has failed (for tests and benchmarks: nothing else needs to wait). */
  async whenReady(timeoutMs = 30_000): Promise<number> {
    this.#startWorkers();
    const deadline = Date.now() + timeoutMs;
    while (this.#threads.some((t) => !t.ready && !t.dead) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return this.activeWorkers;
  }

  /**
   * Peels `packet`: rejects with the OnionError `peel` raises for a packet that does not open. A lone packet (at
   * least INLINE_PEEL_GAP_MS after the one before, every worker idle, none queued this turn) is peeled here, at once:
   * it would only wait for the hand-over to a thread (about half a millisecond a hop), and a relay that is not busy
   * has the time. Under load packets come closer together, and go to the workers.
   */
  peel(packet: Uint8Array): Promise<PeelResult> {
    this.#startWorkers();
    const now = performance.now();
    const lone = now - this.#lastAsked >= this.#inlineGapMs;
    this.#lastAsked = now;
    const idle = lone && !this.#turnBusy && this.#threads.every((t) => t.outstanding === 0);
    if (idle) {
      this.#turnBusy = true; // the next packets of this turn go to the workers
      queueMicrotask(() => (this.#turnBusy = false));
    }
    const thread = idle ? undefined : this.#pick();
    if (thread === undefined) {
      try {
        return Promise.resolve(peel(packet, this.#relayPrivateKey, this.#options));
      } catch (error) {
        return Promise.reject(error as Error);
      }
    }
    return new Promise<PeelResult>((resolve, reject) => {
      thread.queued.push({ packet, resolve, reject });
      thread.outstanding++;
      if (thread.queued.length >= MAX_PEEL_BATCH) this.#send(thread);
      else if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        // After this turn's I/O, not after this microtask: one stream's packets reach the relay one microtask apart
        // (each read of the stream resumes its reader), and a message to a worker costs about 25 µs whatever it holds.
        setImmediate(() => this.#flush());
      }
    });
  }

  /**
   * Stops the workers; packets they had not answered are peeled on the calling thread. A worker still loading its
   * code is let finish first (at most WORKER_LOAD_WAIT_MS): Node 20 aborts the whole process ("FATAL ERROR:
   * v8::Module::IsGraphAsync must be used on an instantiated module") when a worker is terminated while it
   * require()s an ES module, as this one does @noble's. Seen once in a full test run, where edge nodes stop a second
   * after their first packet started the worker.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#workers = 0;
    await Promise.all(
      this.#threads.map(async (thread) => {
        this.#retire(thread);
        let bound: NodeJS.Timeout | undefined;
        const late = new Promise<void>((resolve) => (bound = setTimeout(resolve, WORKER_LOAD_WAIT_MS)));
        await Promise.race([thread.loaded, late]);
        clearTimeout(bound);
        await thread.worker.terminate();
      }),
    );
  }

  /**
   * The worker for the next packet: the one already gathering this turn's batch while it has room (so the packets of
   * one turn, often one stream's, stay in order), else the live worker with the fewest packets outstanding; undefined
   * when none is up.
   */
  #pick(): PeelThread | undefined {
    let best: PeelThread | undefined;
    for (const thread of this.#threads) {
      if (!thread.ready || thread.dead) continue;
      if (thread.queued.length > 0 && thread.queued.length < MAX_PEEL_BATCH) return thread;
      if (best === undefined || thread.outstanding < best.outstanding) best = thread;
    }
    return best;
  }

  #startWorkers(): void {
    if (this.#stopped) return;
    for (; this.#workers > 0; this.#workers--) {
      try {
        this.#threads.push(this.#spawn());
      } catch (error) {
        this.#log.warn("peel worker did not start: packets are peeled on the relay's thread", { error });
      }
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    for (const thread of this.#threads) if (thread.queued.length > 0) this.#send(thread);
  }

  #send(thread: PeelThread): void {
    const waiters = thread.queued;
    thread.queued = [];
    if (thread.dead) {
      this.#peelHere(waiters);
      return;
    }
    const batch = this.#nextBatch++;
    thread.sent.set(batch, waiters);
    thread.worker.postMessage({ batch, packets: waiters.map((w) => w.packet) } satisfies PeelRequest);
  }

  #spawn(): PeelThread {
    const worker = new Worker(WORKER_FILE, {
      workerData: { relayPrivateKey: this.#relayPrivateKey } satisfies PeelWorkerData,
      // Under ts-node the worker compiles its TypeScript the same way (transpile only: the types were checked).
      execArgv: WORKER_FILE.endsWith(".ts") ? ["--require", "ts-node/register/transpile-only"] : [],
    });
    worker.unref(); // a pool never keeps the process alive on its own
    let loaded!: () => void;
    const thread: PeelThread = {
      worker,
      ready: false,
      dead: false,
      loaded: new Promise<void>((resolve) => (loaded = resolve)),
      queued: [],
      sent: new Map(),
      outstanding: 0,
    };
    worker.once("error", () => loaded());
    worker.once("exit", () => loaded());
    worker.on("message", (message: PeelReply | { ready: true }) => {
      if ("ready" in message) {
        thread.ready = true;
        loaded();
        return;
      }
      this.#answer(thread, message);
    });
    worker.on("error", (error) => {
      this.#log.warn("peel worker failed: its packets are peeled on the relay's thread", { error });
      this.#retire(thread);
    });
    worker.on("exit", (code) => {
      if (!thread.dead && !this.#stopped) this.#log.warn("peel worker exited", { code });
      this.#retire(thread);
    });
    return thread;
  }

  #answer(thread: PeelThread, reply: PeelReply): void {
    const waiters = thread.sent.get(reply.batch);
    if (waiters === undefined) return;
    thread.sent.delete(reply.batch);
    thread.outstanding -= waiters.length;
    this.#workerPeels += waiters.length;
    waiters.forEach((waiter, i) => {
      const outcome = reply.results[i];
      if (outcome === undefined) waiter.reject(new Error("PeelPool: a worker answered a batch short"));
      else if ("error" in outcome) {
        waiter.reject(
          outcome.code !== undefined ? new OnionError(outcome.code, outcome.error) : new Error(outcome.error),
        );
      } else waiter.resolve(outcome);
    });
  }

  /** Marks a worker gone and peels what it still held on the calling thread. */
  #retire(thread: PeelThread): void {
    if (thread.dead) return;
    thread.dead = true;
    const held = [...thread.queued, ...[...thread.sent.values()].flat()];
    thread.queued = [];
    thread.sent.clear();
    thread.outstanding = 0;
    this.#peelHere(held);
  }

  #peelHere(waiters: readonly Waiter[]): void {
    for (const waiter of waiters) {
      try {
        waiter.resolve(peel(waiter.packet, this.#relayPrivateKey, this.#options));
      } catch (error) {
        waiter.reject(error as Error);
      }
    }
  }
}
