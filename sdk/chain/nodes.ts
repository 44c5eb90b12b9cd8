/**
 * The edge nodes a client can route through, read from the NodeRegistry: operator, libp2p peer id, multiaddrs and
 * the X25519 relay key (derived from the peer id, sdk/net/peerId.ts). The registry is the only directory: a client
 * picks its hops from `readEdgeNodes`, the node's discovery service follows registry events on top of the same read.
 *
 * A registered peer id that is not an Ed25519 libp2p peer id cannot carry a relay key; such a node cannot relay and
 * is left out (reported through `onInvalid`), never guessed at.
 */
import { getAddress } from "ethers";
import type { NodeRegistry } from "../../typechain-types";
import { NodeRole } from "./protocol";
import { PeerIdError, relayPublicKeyOfPeer } from "../net/peerId";

/** Nodes per `activeNodes` page: each NodeView is a few hundred bytes of ABI, 100 keep one eth_call well under 1 MB. */
export const EDGE_NODES_PAGE_SIZE = 100;

/** An edge node as the client sees it: enough to dial it and to wrap a layer for it. */
export interface EdgeNodeInfo {
  /** Checksummed operator address (the registry key; what a DID names as a home node). */
  readonly operator: string;
  /** libp2p peer id, base58btc ("12D3KooW…"). */
  readonly peerId: string;
  /** Multiaddrs the node registered, without the /p2p/ suffix as registered. */
  readonly multiaddrs: string[];
  /** X25519 relay key: the Montgomery form of the Ed25519 key in the peer id. */
  readonly relayPublicKey: Uint8Array;
  /** True when the registry counts the node as active (staked, not jailed, role Edge). */
  readonly active: boolean;
}

/** The two registry reads this module needs (the NodeRegistry binding, or anything with the same methods). */
export type NodeRegistryReader = Pick<NodeRegistry, "activeNodes" | "node">;

/** Options of `readEdgeNodes`. */
export interface ReadEdgeNodesOptions {
  /** Nodes per registry call; EDGE_NODES_PAGE_SIZE if omitted. */
  readonly pageSize?: number;
  /** Called for each node whose registered peer id carries no usable relay key (the node is left out). */
  readonly onInvalid?: (operator: string, peerId: string, reason: string) => void;
  /** Aborts between registry calls. */
  readonly signal?: AbortSignal;
}

type NodeViewLike = Awaited<ReturnType<NodeRegistry["node"]>>;

function toInfo(view: NodeViewLike, onInvalid?: ReadEdgeNodesOptions["onInvalid"]): EdgeNodeInfo | undefined {
  const operator = getAddress(view.operator);
  if (Number(view.role) !== NodeRole.Edge) return undefined;
  let relayPublicKey: Uint8Array;
  try {
    relayPublicKey = relayPublicKeyOfPeer(view.peerId);
  } catch (error) {
    if (!(error instanceof PeerIdError)) throw error;
    onInvalid?.(operator, view.peerId, error.message);
    return undefined;
  }
  return { operator, peerId: view.peerId, multiaddrs: [...view.multiaddrs], relayPublicKey, active: view.active };
}

/**
 * Every active edge node in the registry, in registry order, paged through `activeNodes(Edge, offset, limit)`.
 * Nodes whose peer id is unusable are left out (see `onInvalid`).
 */
export async function readEdgeNodes(
  registry: NodeRegistryReader,
  opts: ReadEdgeNodesOptions = {},
): Promise<EdgeNodeInfo[]> {
  const pageSize = opts.pageSize ?? EDGE_NODES_PAGE_SIZE;
  if (!Number.isInteger(pageSize) || pageSize < 1) {
    throw new RangeError(`readEdgeNodes: expected pageSize ≥ 1, got ${String(pageSize)}`);
  }
  const out: EdgeNodeInfo[] = [];
  for (let offset = 0; ; offset += pageSize) {
    opts.signal?.throwIfAborted();
    const [page, total] = await registry.activeNodes(NodeRole.Edge, offset, pageSize);
    for (const view of page) {
      const info = toInfo(view, opts.onInvalid);
      if (info !== undefined) out.push(info);
    }
    if (BigInt(offset + pageSize) >= total) break;
  }
  return out;
}

/**
 * One edge node by operator address (active or not), or undefined when the operator is not a registered edge node or
 * its peer id carries no relay key. Used for a recipient's home nodes, which a DID names by operator.
 */
export async function readEdgeNode(
  registry: NodeRegistryReader,
  operator: string,
  opts: Pick<ReadEdgeNodesOptions, "onInvalid"> = {},
): Promise<EdgeNodeInfo | undefined> {
  const view = await registry.node(getAddress(operator));
  return toInfo(view, opts.onInvalid);
}
