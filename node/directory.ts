/**
 * Who a recipient is, as the edge node needs it: the Ed25519 signing key that must sign its inbox and prekey
 * requests (the X3DH identity's `signing` key in its DID document) and the operators of its home nodes (the edge
 * nodes that hold its inbox). A recipient is named by its wallet address (on the wire: the 20 address bytes).
 *
 * `ChainDirectory` reads the DidRegistry through its typechain binding (`didOf`), caches each answer, and keeps the
 * cache honest by scanning the registry's DID events (DidRegistered, IdentityKeysChanged, HomeNodesChanged,
 * DidRevoked) since the last block it saw: each event drops the cached entry of its account. `start()` runs that scan
 * every `pollMs`; `sync()` runs it once (tests call it to be deterministic). Entries also age out after `maxAgeMs`,
 * so a missed scan cannot keep a revoked key alive for long. Only an Active DID has a signing key and home nodes; a
 * revoked or unknown account has neither.
 */
import { getAddress, hexlify, isAddress, type Provider } from "ethers";
import type { DidRegistry } from "../typechain-types";
import { createLogger, type Logger } from "./log";

/** What the inbox and the prekey store ask about a recipient. */
export interface RecipientDirectory {
  /** The recipient's Ed25519 signing key (32 bytes), or undefined when it has no active DID. */
  signingKey(recipient: string): Promise<Uint8Array | undefined>;
  /** Operator addresses (checksummed) of the recipient's home nodes; empty when it has no active DID. */
  homeNodes(recipient: string): Promise<string[]>;
}

/** Why a directory call failed. */
export type DirectoryErrorCode = "DIRECTORY_BAD_RECIPIENT" | "DIRECTORY_NO_PROVIDER" | "DIRECTORY_LOOKUP_FAILED";

/** A directory call given a bad argument, or a chain read that failed. */
export class DirectoryError extends Error {
  readonly code: DirectoryErrorCode;
  constructor(code: DirectoryErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DirectoryError";
    this.code = code;
  }
}

/** `IDidRegistry.DidStatus.Active`. */
const DID_ACTIVE = 1n;
/** Bytes of an Ed25519 public key. */
const SIGNING_KEY_BYTES = 32;
/** Scan for DID events every 2 s: about a block time on most chains, so a key change is seen within a block or two. */
export const DIRECTORY_POLL_MS = 2_000;
/** Forget a cached entry after 5 min even without an event: bounds the damage of a missed scan. */
export const DIRECTORY_MAX_AGE_MS = 5 * 60 * 1000;
/** Most cached recipients (an entry is ~200 bytes): the oldest are dropped first. */
export const DIRECTORY_MAX_ENTRIES = 100_000;
/** Most blocks one log query covers: public RPCs refuse wider ranges. */
const MAX_LOG_RANGE = 5_000;
/** The events after which a cached entry is stale. */
const INVALIDATING_EVENTS = ["DidRegistered", "IdentityKeysChanged", "HomeNodesChanged", "DidRevoked"] as const;

interface Entry {
  readonly signingKey: Uint8Array | undefined;
  readonly homeNodes: readonly string[];
  readonly fetchedAt: number;
}

/** Options of a ChainDirectory. */
export interface ChainDirectoryOptions {
  /** Block to start the event scan from; the current block at the first `sync()` if omitted. */
  readonly fromBlock?: number;
  /** Interval of the background scan after `start()`; DIRECTORY_POLL_MS if omitted. */
  readonly pollMs?: number;
  /** Lifetime of a cached entry; DIRECTORY_MAX_AGE_MS if omitted. */
  readonly maxAgeMs?: number;
  /** Clock in ms, for tests; Date.now if omitted. */
  readonly now?: () => number;
  readonly logger?: Logger;
}

/** Normalises a recipient (an address) or throws DirectoryError. */
function recipientAddress(recipient: string, where: string): string {
  if (typeof recipient !== "string" || !isAddress(recipient)) {
    throw new DirectoryError(
      "DIRECTORY_BAD_RECIPIENT",
      `${where}: expected a recipient address, got ${String(recipient)}`,
    );
  }
  return getAddress(recipient);
}

/** The recipient address named by a wire recipient id (exactly 20 bytes), or undefined for any other id. */
export function recipientFromId(recipientId: Uint8Array): string | undefined {
  return recipientId.length === 20 ? getAddress(hexlify(recipientId)) : undefined;
}

/** The wire recipient id (20 bytes) of an address. */
export function recipientIdOf(address: string): Uint8Array {
  return Uint8Array.from(Buffer.from(recipientAddress(address, "recipientIdOf").slice(2), "hex"));
}

/** The directory read from the DidRegistry, cached and invalidated by DID events. */
export class ChainDirectory implements RecipientDirectory {
  private readonly registry: DidRegistry;
  private readonly provider: Provider;
  private readonly options: ChainDirectoryOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly cache = new Map<string, Entry>();
  private readonly pending = new Map<string, Promise<Entry>>();
  private readonly generation = new Map<string, number>(); // bumped on each invalidation of an account
  private nextBlock: number | undefined;
  private syncing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly topics: string[];

  /** @param registry the DidRegistry binding; its runner must have a provider (a signer's or a plain one). */
  constructor(registry: DidRegistry, options: ChainDirectoryOptions = {}) {
    const provider = registry.runner?.provider;
    if (provider === null || provider === undefined) {
      throw new DirectoryError("DIRECTORY_NO_PROVIDER", "ChainDirectory: expected a registry connected to a provider");
    }
    this.registry = registry;
    this.provider = provider;
    this.options = options;
    this.nextBlock = options.fromBlock;
    this.now = options.now ?? Date.now;
    this.log = options.logger ?? createLogger("directory");
    this.topics = INVALIDATING_EVENTS.map((name) => registry.interface.getEvent(name).topicHash);
  }

  async signingKey(recipient: string): Promise<Uint8Array | undefined> {
    return (await this.entry(recipientAddress(recipient, "ChainDirectory.signingKey"))).signingKey;
  }

  async homeNodes(recipient: string): Promise<string[]> {
    return [...(await this.entry(recipientAddress(recipient, "ChainDirectory.homeNodes"))).homeNodes];
  }

  /** Drops the cached entry of `recipient` (or of everyone). */
  invalidate(recipient?: string): void {
    if (recipient === undefined) {
      for (const account of this.cache.keys()) this.bump(account);
      this.cache.clear();
      return;
    }
    const account = recipientAddress(recipient, "ChainDirectory.invalidate");
    this.bump(account);
    this.cache.delete(account);
  }

  /** Scans the DID events since the last scan and drops the entries they concern; concurrent calls share one scan. */
  async sync(): Promise<void> {
    this.syncing ??= this.scan().finally(() => {
      this.syncing = undefined;
    });
    return this.syncing;
  }

  /** Scans once now, then every `pollMs` until `stop()`. */
  async start(): Promise<void> {
    if (this.timer !== undefined) return;
    await this.sync();
    const poll = () => {
      this.sync()
        .catch((error: unknown) => this.log.warn("DID event scan failed", { error }))
        .finally(() => {
          if (this.timer !== undefined) this.timer = setTimeout(poll, this.options.pollMs ?? DIRECTORY_POLL_MS);
        });
    };
    this.timer = setTimeout(poll, this.options.pollMs ?? DIRECTORY_POLL_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.syncing?.catch(() => undefined);
  }

  private async scan(): Promise<void> {
    const latest = await this.provider.getBlockNumber();
    if (this.nextBlock === undefined) {
      // First scan without a start block: nothing is cached yet that an older event could make stale.
      this.nextBlock = latest + 1;
      return;
    }
    const address = await this.registry.getAddress();
    while (this.nextBlock <= latest) {
      const toBlock = Math.min(latest, this.nextBlock + MAX_LOG_RANGE - 1);
      const logs = await this.provider.getLogs({ address, topics: [this.topics], fromBlock: this.nextBlock, toBlock });
      for (const log of logs) {
        const account = log.topics[1] === undefined ? undefined : getAddress("0x" + log.topics[1].slice(26));
        if (account === undefined) continue;
        this.bump(account);
        if (this.cache.delete(account))
          this.log.debug("directory entry invalidated", { account, block: log.blockNumber });
      }
      this.nextBlock = toBlock + 1;
    }
  }

  private bump(account: string): void {
    this.generation.set(account, (this.generation.get(account) ?? 0) + 1);
    this.pending.delete(account);
  }

  private async entry(account: string): Promise<Entry> {
    const cached = this.cache.get(account);
    if (cached !== undefined && this.now() - cached.fetchedAt <= (this.options.maxAgeMs ?? DIRECTORY_MAX_AGE_MS)) {
      return cached;
    }
    let pending = this.pending.get(account);
    if (pending === undefined) {
      const generation = this.generation.get(account) ?? 0;
      pending = this.fetch(account).then((entry) => {
        if ((this.generation.get(account) ?? 0) === generation) {
          if (this.cache.size >= DIRECTORY_MAX_ENTRIES) {
            const oldest = this.cache.keys().next().value;
            if (oldest !== undefined) this.cache.delete(oldest);
          }
          this.cache.delete(account);
          this.cache.set(account, entry);
        }
        return entry;
      });
      pending
        .finally(() => {
          if (this.pending.get(account) === pending) this.pending.delete(account);
        })
        .catch(() => undefined);
      this.pending.set(account, pending);
    }
    return pending;
  }

  private async fetch(account: string): Promise<Entry> {
    let record: Awaited<ReturnType<DidRegistry["didOf"]>>;
    try {
      record = await this.registry.didOf(account);
    } catch (error) {
      throw new DirectoryError(
        "DIRECTORY_LOOKUP_FAILED",
        `ChainDirectory: reading the DID of ${account} failed: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const fetchedAt = this.now();
    if (record.status !== DID_ACTIVE) return { signingKey: undefined, homeNodes: [], fetchedAt };
    const key = Uint8Array.from(Buffer.from(record.document.signingKey.slice(2), "hex"));
    return {
      signingKey: key.length === SIGNING_KEY_BYTES ? key : undefined,
      homeNodes: record.document.homeNodes.map((a) => getAddress(a)),
      fetchedAt,
    };
  }
}

/**
 * A fixed directory held in memory: for a node run without a chain (a local demo) and for tests of services that use
 * a directory without testing it.
 */
export class StaticDirectory implements RecipientDirectory {
  private readonly entries = new Map<string, { signingKey: Uint8Array; homeNodes: string[] }>();

  /** Sets (or, with `undefined`, removes) what the directory says about `recipient`. */
  set(recipient: string, value: { signingKey: Uint8Array; homeNodes: readonly string[] } | undefined): void {
    const account = recipientAddress(recipient, "StaticDirectory.set");
    if (value === undefined) this.entries.delete(account);
    else
      this.entries.set(account, { signingKey: value.signingKey, homeNodes: value.homeNodes.map((a) => getAddress(a)) });
  }

  async signingKey(recipient: string): Promise<Uint8Array | undefined> {
    return this.entries.get(recipientAddress(recipient, "StaticDirectory.signingKey"))?.signingKey;
  }

  async homeNodes(recipient: string): Promise<string[]> {
    return [...(this.entries.get(recipientAddress(recipient, "StaticDirectory.homeNodes"))?.homeNodes ?? [])];
  }
}
