/**
 * The edge node daemon, assembled: `startEdgeNode(config)` opens the node database, starts discovery from the
 * NodeRegistry, the libp2p host with the relay (next hops from discovery, exit deliveries into the inbox), the inbox,
 * the prekey store, the bill book and the metrics endpoint, in that order; `stop()` stops them in reverse, waits for
 * replications in flight and closes the database last, so nothing acknowledged is lost.
 *
 * Chain access goes through the typechain bindings at the addresses of a deployment file (sdk/chain/deployment.ts),
 * over `config.provider` or a JSON-RPC provider for `config.rpcUrl`.
 */
import { Wallet, JsonRpcProvider, getAddress, type Provider } from "ethers";
import path from "node:path";
import { DidRegistry__factory, NodeRegistry__factory, ProtocolParameters__factory } from "../typechain-types";
import type { Deployment } from "../sdk/chain/deployment";
import { rollupDomain } from "../sdk/chain/consent";
import { slashingDomain } from "../sdk/chain/slashing";
import { WireErrorCode, type ErrorAnswer } from "../sdk/wire/frame";
import { MessageError, parseDelivery } from "../sdk/wire/messages";
import { BillService, IdentityTreeFollower } from "./bills";
import { openNodeDatabase, type NodeDatabase } from "./db";
import { ChainDirectory } from "./directory";
import { NodeDiscovery } from "./discovery";
import { circuitParamsFromConfig } from "./guardian";
import { createEdgeHost, type EdgeHost } from "./host";
import { InboxError, InboxService, type InboxLimits, type InboxQuota } from "./inbox";
import { createLogger, type Logger } from "./log";
import { MetricsServer, NodeMetrics } from "./metrics";
import { PrekeyService } from "./prekeys";
import { GuardianPeers } from "./guardians";

/** The database file inside the data directory. */
export const DATABASE_FILE = "node.db";

/** What an edge node is started with. */
export interface EdgeNodeConfig {
  /** Directory of the node key and database; created (0700) if missing. */
  readonly dataDir: string;
  /** TCP multiaddrs to listen on; 127.0.0.1 on a random port if omitted. */
  readonly listen?: readonly string[];
  /** Multiaddrs to announce (as registered on chain) instead of the listen addresses. */
  readonly announce?: readonly string[];
  /** JSON-RPC endpoint of the chain; ignored when `provider` is given. */
  readonly rpcUrl?: string;
  /** A provider to use instead of `rpcUrl` (tests pass the in-process Hardhat provider). */
  readonly provider?: Provider;
  /** Addresses of the protocol's contracts. */
  readonly deployment: Deployment;
  /** The operator's private key (0x hex); only its address is used: the node never sends transactions. */
  readonly operatorKey?: string;
  /** The operator address, when `operatorKey` is not given. */
  readonly operator?: string;
  /** Private key (0x hex) of the node's registered signer: signs StorePromises and guardians' slot consents. */
  readonly signerKey: string;
  /**
   * The rollup circuit's per-bill work cap, with which the node checks the work of a slot it consents to; read from
   * circuits/config.json for the deployment's circuit if omitted (1,000 in every configuration).
   */
  readonly maxWorkPerBill?: bigint;
  /** Port of the 127.0.0.1 health and metrics endpoint (0 for a free one); no endpoint if omitted. */
  readonly metricsPort?: number;
  /** Per-recipient inbox quota and inbox limits (node/inbox.ts defaults if omitted). */
  readonly inboxQuota?: Partial<InboxQuota>;
  readonly inboxLimits?: Partial<InboxLimits>;
  /** How often discovery and the directory look for registry events; their defaults if omitted. */
  readonly pollMs?: number;
  readonly logger?: Logger;
}

/** A running edge node. */
export interface EdgeNode {
  readonly operator: string;
  readonly peerId: string;
  readonly host: EdgeHost;
  readonly db: NodeDatabase;
  readonly discovery: NodeDiscovery;
  readonly directory: ChainDirectory;
  readonly inbox: InboxService;
  readonly prekeys: PrekeyService;
  readonly bills: BillService;
  readonly metrics: NodeMetrics;
  /** The port of the metrics endpoint, when one was asked for. */
  readonly metricsPort: number | undefined;
  /** The multiaddrs the host listens on, with /p2p/<peer id>. */
  multiaddrs(): string[];
  /** Stops every service, then the host, then closes the database. Safe to call twice. */
  stop(): Promise<void>;
}

/** A configuration that cannot start a node. */
export class EdgeConfigError extends Error {
  readonly code = "EDGE_BAD_CONFIG";
  constructor(message: string) {
    super(message);
    this.name = "EdgeConfigError";
  }
}

function operatorOf(config: EdgeNodeConfig): string {
  try {
    if (config.operatorKey !== undefined) return new Wallet(config.operatorKey).address;
    if (config.operator !== undefined) return getAddress(config.operator);
  } catch (error) {
    throw new EdgeConfigError(`startEdgeNode: bad operator key or address: ${(error as Error).message}`);
  }
  throw new EdgeConfigError("startEdgeNode: expected operatorKey or operator");
}

/** Starts an edge node; on failure, stops whatever had started and rethrows. */
export async function startEdgeNode(config: EdgeNodeConfig): Promise<EdgeNode> {
  const log = config.logger ?? createLogger("edge");
  const operator = operatorOf(config);
  let signer: Wallet;
  try {
    signer = new Wallet(config.signerKey);
  } catch (error) {
    throw new EdgeConfigError(`startEdgeNode: bad signer key: ${(error as Error).message}`);
  }
  let maxWorkPerBill: bigint;
  try {
    maxWorkPerBill = config.maxWorkPerBill ?? circuitParamsFromConfig(config.deployment.circuit).maxWorkPerBill;
  } catch (error) {
    throw new EdgeConfigError(
      `startEdgeNode: no work cap for circuit ${config.deployment.circuit}: ${(error as Error).message}`,
    );
  }
  if (typeof maxWorkPerBill !== "bigint" || maxWorkPerBill <= 0n) {
    throw new EdgeConfigError(`startEdgeNode: expected maxWorkPerBill > 0n, got ${String(maxWorkPerBill)}`);
  }
  if (config.provider === undefined && config.rpcUrl === undefined) {
    throw new EdgeConfigError("startEdgeNode: expected rpcUrl or provider");
  }
  const ownProvider =
    config.provider === undefined
      ? new JsonRpcProvider(config.rpcUrl, config.deployment.chainId, { staticNetwork: true })
      : undefined;
  const provider: Provider = config.provider ?? (ownProvider as Provider);
  const { contracts, startBlock, chainId } = config.deployment;
  const registry = NodeRegistry__factory.connect(contracts.NodeRegistry, provider);
  const didRegistry = DidRegistry__factory.connect(contracts.DidRegistry, provider);
  const parameters = ProtocolParameters__factory.connect(contracts.ProtocolParameters, provider);

  const cleanup: (() => Promise<void> | void)[] = [];
  const unwind = async () => {
    for (const step of cleanup.reverse()) {
      try {
        await step();
      } catch (error) {
        log.warn("stop step failed", { error });
      }
    }
    cleanup.length = 0;
  };
  if (ownProvider !== undefined) cleanup.push(() => ownProvider.destroy());

  try {
    const metrics = new NodeMetrics();
    const db = openNodeDatabase(path.join(config.dataDir, DATABASE_FILE));
    cleanup.push(() => db.close());

    const discovery = new NodeDiscovery(registry, { pollMs: config.pollMs });
    const directory = new ChainDirectory(didRegistry, { fromBlock: startBlock, pollMs: config.pollMs });
    /** The inbox, once started: the relay is up (and may deliver) before it. */
    const late: { inbox?: InboxService } = {};

    const host = await createEdgeHost({
      dataDir: config.dataDir,
      listen: config.listen,
      announce: config.announce,
      relay: {
        resolvePeer: (peerId) => discovery.resolvePeer(peerId),
        onDeliver: (recipientId, payload) => deliver(recipientId, payload),
        onOutcome: (outcome) => {
          if (outcome.kind === "forwarded") metrics.increment("relayed");
          else if (outcome.kind === "delivered") metrics.increment("delivered");
          else metrics.error("relay", outcome.code);
        },
      },
    });
    cleanup.push(() => host.stop());
    const peerId = host.libp2p.peerId.toString();

    /** The exit: parse the payload, store it in the inbox, map refusals to the answer for the previous hop. */
    async function deliver(recipientId: Uint8Array, payload: Uint8Array): Promise<ErrorAnswer | undefined> {
      const inbox = late.inbox;
      if (inbox === undefined || !inbox.isStarted()) {
        return { code: WireErrorCode.INTERNAL, message: "exit: the inbox is not running" };
      }
      let delivery;
      try {
        delivery = parseDelivery(payload);
      } catch (error) {
        if (!(error instanceof MessageError)) throw error;
        return { code: WireErrorCode.MALFORMED, message: error.message };
      }
      try {
        const result = await inbox.accept(recipientId, delivery);
        if (!result.duplicate) metrics.increment("stored");
        return undefined;
      } catch (error) {
        if (!(error instanceof InboxError)) throw error;
        return { code: error.wireCode, message: error.message };
      }
    }

    // Discovery feeds the peer store, so the inbox can dial other home nodes by peer id.
    const { peerIdFromString } = await import("@libp2p/peer-id");
    const { multiaddr } = await import("@multiformats/multiaddr");
    const learn = async (id: string, addresses: readonly string[]) => {
      if (id === peerId) return;
      try {
        await host.libp2p.peerStore.merge(peerIdFromString(id), { multiaddrs: addresses.map((a) => multiaddr(a)) });
      } catch (error) {
        log.warn("cannot use a discovered node's addresses", { peer: id, error });
      }
    };
    const unsubscribe = discovery.onChange((change) => {
      if (change.kind !== "removed") void learn(change.node.peerId, change.node.multiaddrs);
    });
    cleanup.push(unsubscribe);
    await discovery.start();
    cleanup.push(() => discovery.stop());
    await Promise.all(discovery.nodes().map((n) => learn(n.peerId, n.multiaddrs)));
    await directory.start();
    cleanup.push(() => directory.stop());

    const registered = discovery.node(operator);
    if (registered === undefined) {
      log.warn("this operator is not an active edge node: no sender will route through it", { operator });
    } else if (registered.peerId !== peerId) {
      log.warn("the registered peer id is not this node's", { operator, registered: registered.peerId, peerId });
    } else {
      // Senders and other nodes dial what the registry says: at least one registered address must be this node's.
      const own = host.libp2p.getMultiaddrs().map((m) => m.toString().split("/p2p/")[0]);
      if (!registered.multiaddrs.some((a) => own.includes(a.split("/p2p/")[0]))) {
        log.warn("none of the registered addresses is one this node listens on or announces: nobody can dial it", {
          operator,
          registered: registered.multiaddrs,
          own,
          fix: `npm run operator -- update ${own.map((a) => `--addr ${a}`).join(" ")} (with the operator's key)`,
        });
      }
    }
    const registeredSigner = await registry.signerOf(operator);
    if (registered !== undefined && getAddress(registeredSigner) !== signer.address) {
      log.warn("the signer key is not the operator's registered signer: its StorePromises will not count", {
        operator,
        registeredSigner,
      });
    }

    const inboxService = new InboxService(host.libp2p, {
      db,
      directory,
      nodeSigner: signer,
      operator,
      promiseDomain: slashingDomain(chainId, contracts.Slashing),
      peerIdOf: (op) => discovery.peerIdOf(op),
      quota: config.inboxQuota,
      limits: config.inboxLimits,
    });
    await inboxService.start();
    late.inbox = inboxService;
    cleanup.push(() => inboxService.stop());

    const prekeys = new PrekeyService(host.libp2p, {
      db,
      directory,
      operator,
      onRefused: (code) => metrics.error("prekeys", code),
    });
    await prekeys.start();
    cleanup.push(() => prekeys.stop());

    const guardians = new GuardianPeers(registry);
    const bills = new BillService(host.libp2p, {
      db,
      operator,
      currentEpoch: () => parameters.currentEpoch(),
      identityTree: new IdentityTreeFollower(didRegistry, startBlock),
      consent: {
        signer,
        domain: rollupDomain(chainId, contracts.RelayRollup),
        maxWorkPerBill,
      },
      // Only the registry's active guardians collect bills and ask for consent.
      mayCollect: (peerId) => guardians.has(peerId),
      onKept: (n) => metrics.increment("bills_kept", n),
      onRefused: (code) => metrics.error("bills", code),
    });
    await bills.start();
    cleanup.push(() => bills.stop());

    metrics.gauge({ name: "bills_held", help: "Bills held for the kept epochs.", read: () => bills.count() });
    metrics.gauge({
      name: "inbox_messages",
      help: "Messages held in the inbox.",
      read: () => inboxService.store.totalMessages(),
    });
    metrics.gauge({
      name: "edge_nodes_known",
      help: "Active edge nodes discovered.",
      read: () => discovery.nodes().length,
    });
    metrics.gauge({
      name: "connections",
      help: "Open libp2p connections.",
      read: () => host.libp2p.getConnections().length,
    });

    const startedAt = Date.now();
    let server: MetricsServer | undefined;
    let metricsPort: number | undefined;
    if (config.metricsPort !== undefined) {
      server = new MetricsServer(metrics, () => ({
        status: "ok",
        peerId,
        operator,
        uptimeSeconds: Math.floor((Date.now() - startedAt) / 1000),
        registered: discovery.node(operator) !== undefined,
        edgeNodesKnown: discovery.nodes().length,
        connections: host.libp2p.getConnections().length,
      }));
      metricsPort = await server.start(config.metricsPort);
      const started = server;
      cleanup.push(() => started.stop());
    }

    log.info("edge node started", {
      operator,
      peerId,
      addresses: host.libp2p.getMultiaddrs().map(String),
      metricsPort,
    });
    let stopping: Promise<void> | undefined;
    return {
      operator,
      peerId,
      host,
      db,
      discovery,
      directory,
      inbox: inboxService,
      prekeys,
      bills,
      metrics,
      metricsPort,
      multiaddrs: () => host.libp2p.getMultiaddrs().map((m) => m.toString()),
      stop() {
        stopping ??= unwind().then(() => log.info("edge node stopped", { operator, peerId }));
        return stopping;
      },
    };
  } catch (error) {
    await unwind();
    throw error;
  }
}
