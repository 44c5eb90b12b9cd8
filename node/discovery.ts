/**
 * Edge node discovery from the NodeRegistry: a live map operator → { peerId, multiaddrs, relayPublicKey } of the
 * active edge nodes, with no hard-coded peers. `sync()` starts from `readEdgeNodes` (sdk/chain/nodes.ts: the
 * registry's `activeNodes` pages), then follows the registry's events since the last block it saw (NodeRegistered,
 * NodeUpdated, Bonded, UnbondingStarted, NodeSlashed, NodeJailed): each names an operator in its first indexed
 * topic, whose node is re-read with `readEdgeNode` and put in or taken out of the map by its `active` flag. A jail
 * that ends emits no event, so the whole map is re-read every DISCOVERY_FULL_REFRESH_MS as well. `start()` runs
 * `sync()` every `pollMs`.
 *
 * The relay asks `resolvePeer(peerId)` for a next hop's addresses, the inbox asks `peerIdOf(operator)` for a
 * replica's peer; both answer from memory.
 */
import { getAddress, type Provider } from "ethers";
import type { NodeRegistry } from "../typechain-types";
import { readEdgeNode, readEdgeNodes, type EdgeNodeInfo } from "../sdk/chain/nodes";
import { CoalescedRun } from "./coalesce";
import { createLogger, type Logger } from "./log";

/** Look for registry events every 2 s: about a block time, so a new or departed node is seen within a block or two. */
export const DISCOVERY_POLL_MS = 2_000;
/** Re-read the whole list every minute: jails end without an event. */
export const DISCOVERY_FULL_REFRESH_MS = 60_000;
/** Most blocks one log query covers: public RPCs refuse wider ranges. */
const MAX_LOG_RANGE = 5_000;
/** The registry events after which a node's entry may have changed; each has the operator as its first topic. */
const NODE_EVENTS = [
  "NodeRegistered",
  "NodeUpdated",
  "Bonded",
  "UnbondingStarted",
  "NodeSlashed",
  "NodeJailed",
] as const;

/** What discovery knows of one active edge node. */
export interface DiscoveredNode {
  readonly operator: string;
  readonly peerId: string;
  readonly multiaddrs: readonly string[];
  readonly relayPublicKey: Uint8Array;
}

/** A change to the map, for listeners (metrics, logs, tests). */
export type DiscoveryChange =
  | { readonly kind: "added" | "updated"; readonly node: DiscoveredNode }
  | { readonly kind: "removed"; readonly operator: string };

export interface NodeDiscoveryOptions {
  /** Block to follow events from; the block of the first full read if omitted. */
  readonly fromBlock?: number;
  readonly pollMs?: number;
  readonly fullRefreshMs?: number;
  readonly logger?: Logger;
  /** Clock in ms, for tests. */
  readonly now?: () => number;
}

/** Discovery that cannot run (no provider behind the registry binding). */
export class DiscoveryError extends Error {
  readonly code = "DISCOVERY_NO_PROVIDER";
  constructor(message: string) {
    super(message);
    this.name = "DiscoveryError";
  }
}

/** The live map of active edge nodes. */
export class NodeDiscovery {
  private readonly registry: NodeRegistry;
  private readonly provider: Provider;
  private readonly options: NodeDiscoveryOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly byOperator = new Map<string, DiscoveredNode>();
  private readonly byPeer = new Map<string, string>(); // peer id → operator
  private readonly listeners = new Set<(change: DiscoveryChange) => void>();
  private readonly topics: string[];
  private nextBlock: number | undefined;
  private lastFullRead = -Infinity;
  private readonly syncs = new CoalescedRun(() => this.run());
  private timer: NodeJS.Timeout | undefined;

  constructor(registry: NodeRegistry, options: NodeDiscoveryOptions = {}) {
    const provider = registry.runner?.provider;
    if (provider === null || provider === undefined) {
      throw new DiscoveryError("NodeDiscovery: expected a registry connected to a provider");
    }
    this.registry = registry;
    this.provider = provider;
    this.options = options;
    this.log = options.logger ?? createLogger("discovery");
    this.now = options.now ?? Date.now;
    this.nextBlock = options.fromBlock;
    this.topics = NODE_EVENTS.map((name) => registry.interface.getEvent(name).topicHash);
  }

  /** Syncs once, then keeps syncing every `pollMs` in the background until `stop()`. */
  async start(): Promise<void> {
    if (this.timer !== undefined) return;
    await this.sync();
    const tick = () => {
      this.sync()
        .catch((error: unknown) => this.log.warn("discovery sync failed", { error }))
        .finally(() => {
          if (this.timer !== undefined) {
            this.timer = setTimeout(tick, this.options.pollMs ?? DISCOVERY_POLL_MS);
            this.timer.unref();
          }
        });
    };
    this.timer = setTimeout(tick, this.options.pollMs ?? DISCOVERY_POLL_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.syncs.inFlight?.catch(() => undefined);
  }

  /**
   * Reads what changed since the last sync (everything, on the first call or when a full refresh is due). What a
   * caller changed on chain before calling is always seen: a run already in flight may have read the head before that
   * change, so the call is answered by the run after it (one for every caller that came in meanwhile).
   */
  sync(): Promise<void> {
    return this.syncs.call();
  }

  /** Calls `listener` on every change; returns the function that unsubscribes it. */
  onChange(listener: (change: DiscoveryChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The active edge nodes now. */
  nodes(): DiscoveredNode[] {
    return [...this.byOperator.values()];
  }

  /** The node of `operator` if it is an active edge node. */
  node(operator: string): DiscoveredNode | undefined {
    return this.byOperator.get(getAddress(operator));
  }

  /** The peer id of `operator`'s node if it is an active edge node (the inbox's `peerIdOf`). */
  peerIdOf(operator: string): string | undefined {
    return this.node(operator)?.peerId;
  }

  /** The operator running `peerId`, if it is an active edge node. */
  operatorOf(peerId: string): string | undefined {
    return this.byPeer.get(peerId);
  }

  /** A next hop's addresses for the relay, if `peerId` is an active edge node. */
  resolvePeer(peerId: string): { readonly multiaddrs: readonly string[] } | undefined {
    const operator = this.byPeer.get(peerId);
    return operator === undefined ? undefined : this.byOperator.get(operator);
  }

  private async run(): Promise<void> {
    const head = await this.provider.getBlockNumber();
    const fullDue = this.now() - this.lastFullRead >= (this.options.fullRefreshMs ?? DISCOVERY_FULL_REFRESH_MS);
    if (this.nextBlock === undefined || fullDue) {
      const infos = await readEdgeNodes(this.registry, {
        onInvalid: (operator, peerId, reason) =>
          this.log.warn("edge node without a relay key", { operator, peerId, reason }),
      });
      const seen = new Set<string>();
      for (const info of infos) {
        seen.add(info.operator);
        this.put(info);
      }
      for (const operator of [...this.byOperator.keys()]) if (!seen.has(operator)) this.remove(operator);
      this.lastFullRead = this.now();
      // Events up to head are reflected in the full read; later ones are followed from head + 1.
      if (this.nextBlock === undefined || fullDue) this.nextBlock = Math.max(this.nextBlock ?? 0, head + 1);
      return;
    }
    while (this.nextBlock <= head) {
      const to = Math.min(head, this.nextBlock + MAX_LOG_RANGE - 1);
      const logs = await this.provider.getLogs({
        address: await this.registry.getAddress(),
        topics: [this.topics],
        fromBlock: this.nextBlock,
        toBlock: to,
      });
      const operators = new Set<string>();
      for (const log of logs) {
        if (log.topics.length < 2) continue;
        operators.add(getAddress("0x" + log.topics[1].slice(26)));
      }
      for (const operator of operators) {
        const info = await readEdgeNode(this.registry, operator);
        if (info === undefined || !info.active) this.remove(operator);
        else this.put(info);
      }
      this.nextBlock = to + 1;
    }
  }

  private put(info: EdgeNodeInfo): void {
    if (!info.active) {
      this.remove(info.operator);
      return;
    }
    const node: DiscoveredNode = {
      operator: info.operator,
      peerId: info.peerId,
      multiaddrs: [...info.multiaddrs],
      relayPublicKey: info.relayPublicKey,
    };
    const old = this.byOperator.get(info.operator);
    if (old !== undefined && sameNode(old, node)) return;
    if (old !== undefined && this.byPeer.get(old.peerId) === old.operator) this.byPeer.delete(old.peerId);
    this.byOperator.set(node.operator, node);
    this.byPeer.set(node.peerId, node.operator);
    this.emit(old === undefined ? { kind: "added", node } : { kind: "updated", node });
  }

  private remove(operator: string): void {
    const old = this.byOperator.get(operator);
    if (old === undefined) return;
    this.byOperator.delete(operator);
    if (this.byPeer.get(old.peerId) === operator) this.byPeer.delete(old.peerId);
    this.emit({ kind: "removed", operator });
  }

  private emit(change: DiscoveryChange): void {
    this.log.info(`edge node ${change.kind}`, {
      operator: change.kind === "removed" ? change.operator : change.node.operator,
    });
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (error) {
        this.log.warn("discovery listener failed", { error });
      }
    }
  }
}

function sameNode(a: DiscoveredNode, b: DiscoveredNode): boolean {
  return (
    a.peerId === b.peerId &&
    a.multiaddrs.length === b.multiaddrs.length &&
    a.multiaddrs.every((m, i) => m === b.multiaddrs[i])
  );
}
