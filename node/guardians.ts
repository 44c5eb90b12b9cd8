/**
 * Which libp2p peers are the registry's active guardians: the edge node answers COLLECT and CONSENT_REQUEST
 * (node/bills.ts) only to them. Bills become public when a guardian settles them, but before that they show which
 * recipients a node served, so they are handed only to the peers that prove them.
 *
 * The set is read from `NodeRegistry.activeNodes(Guardian, …)` in pages and kept for GUARDIAN_PEERS_MAX_AGE_MS; a
 * peer id not in it makes a fresh read, at most once every GUARDIAN_PEERS_MIN_REFRESH_MS, so a guardian that just
 * registered is let in within seconds while unknown peers cannot make the node read the chain at their pace.
 */
import { NodeRole } from "../sdk/chain/protocol";
import type { NodeRegistry } from "../typechain-types";

/** A known guardian set is trusted for a minute: a guardian that stopped or was jailed loses access within it. */
export const GUARDIAN_PEERS_MAX_AGE_MS = 60_000;
/** An unknown peer makes the set be read again at most every 5 s. */
export const GUARDIAN_PEERS_MIN_REFRESH_MS = 5_000;
/** Guardians per `activeNodes` page. */
const PAGE_SIZE = 100;

export interface GuardianPeersOptions {
  readonly maxAgeMs?: number;
  readonly minRefreshMs?: number;
  /** Clock in ms, for tests. */
  readonly now?: () => number;
}

/** The peer ids of the active guardians, read from the registry and kept for a while. */
export class GuardianPeers {
  private readonly registry: Pick<NodeRegistry, "activeNodes">;
  private readonly maxAgeMs: number;
  private readonly minRefreshMs: number;
  private readonly now: () => number;
  private peers = new Set<string>();
  private readAt = Number.NEGATIVE_INFINITY;
  private reading: Promise<void> | undefined; // one read at a time: callers meanwhile share it

  constructor(registry: Pick<NodeRegistry, "activeNodes">, options: GuardianPeersOptions = {}) {
    this.registry = registry;
    this.maxAgeMs = options.maxAgeMs ?? GUARDIAN_PEERS_MAX_AGE_MS;
    this.minRefreshMs = options.minRefreshMs ?? GUARDIAN_PEERS_MIN_REFRESH_MS;
    this.now = options.now ?? Date.now;
  }

  /** Whether `peerId` is the registered peer id of an active guardian (reading the registry when due). */
  async has(peerId: string): Promise<boolean> {
    const age = this.now() - this.readAt;
    if (age >= this.maxAgeMs || (!this.peers.has(peerId) && age >= this.minRefreshMs)) {
      this.reading ??= this.read().finally(() => (this.reading = undefined));
      await this.reading;
    }
    return this.peers.has(peerId);
  }

  private async read(): Promise<void> {
    const peers = new Set<string>();
    for (let offset = 0; ; offset += PAGE_SIZE) {
      const [page, total] = await this.registry.activeNodes(NodeRole.Guardian, offset, PAGE_SIZE);
      for (const view of page) peers.add(view.peerId);
      if (BigInt(offset + PAGE_SIZE) >= total) break;
    }
    this.peers = peers;
    this.readAt = this.now();
  }
}
