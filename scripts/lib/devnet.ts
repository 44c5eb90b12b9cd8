/**
 * The local devnet: `setUpDevnet` deploys the protocol on a chain (the in-process Hardhat chain of `npm start`) and
 * registers its nodes with stake; `startDevnetNodes` then runs their daemons in this process, all on 127.0.0.1: the
 * edge nodes (node/edge.ts) under the peer ids they registered, two watchdogs (node/watchdog.ts) whose probes arrive
 * at the first edge node, and a guardian (node/guardian.ts). Everything has an embedded default, so `npm start` needs
 * no configuration; the scenario that exercises them lives in scripts/lib/scenario.ts.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { HDNodeWallet, Wallet, getBytes, hexlify, keccak256, toUtf8Bytes, type Provider, type Signer } from "ethers";
import { deployProtocol, localDeployOptions, LOCAL_PARAMETERS, type ProtocolContracts } from "./deploy";
import { DEV_MNEMONIC } from "./cli";
import type { Deployment } from "../../sdk/chain/deployment";
import { NodeRole, ROLE_NAMES, TOKEN } from "../../sdk/chain/protocol";
import { generateNodeKey } from "../../sdk/net/peerId";
import { billKeyOf } from "../../sdk/bill/bill";
import { generateIdentityKeyPair, generateSignedPrekey } from "../../sdk/crypto/x3dh";
import { startEdgeNode, type EdgeNode } from "../../node/edge";
import { runWatchdog, type WatchdogDaemon } from "../../node/watchdog";
import { runGuardian, type GuardianDaemon } from "../../node/guardian";
import { createLogger, type LogLevel } from "../../node/log";
import { DEVNET_KEY_FILE, NODE_KEY_FILE } from "../../node/host";

/** What the devnet is told; every field has an embedded default, so `npm start` needs no configuration. */
export interface DevnetOptions {
  /** Edge nodes to register. */
  edges: number;
  /** Seconds per epoch. */
  epochLength: number;
  /** First TCP port of the nodes; edge node i listens on basePort + i. */
  basePort: number;
  /** Where node keys and the deployments file are kept. */
  dataDir: string;
  /** Where the deployments file is written for the scripts to read. */
  deploymentFile: string;
  /** Output lines. */
  log: (line: string) => void;
}

/** Devnet epochs are short (the protocol's minimum is a minute): settlement can be watched while the devnet runs. */
export const DEVNET_EPOCH_LENGTH = 300;

export const DEFAULT_DEVNET_OPTIONS: DevnetOptions = {
  edges: 3,
  epochLength: DEVNET_EPOCH_LENGTH,
  basePort: 4001,
  dataDir: ".devnet",
  deploymentFile: "deployments/localhost.json",
  log: () => undefined,
};

/** Watchdogs registered: two, because a flag is reviewed by a watchdog other than the flagger. */
export const DEVNET_WATCHDOGS = 2;
/** Plain token holders funded after the node operators (development accounts right after them). */
const DEVNET_HOLDERS = 3;
const HOLDER_FUNDING = 10_000n * TOKEN;
/** Most edge nodes: the operators, holders and the scenario's two demo accounts must fit in Hardhat's 20 accounts. */
export const MAX_DEVNET_EDGES = 10;
/** Development accounts of the scenario's two demo clients (below 20, above every operator and holder). */
export const DEMO_ACCOUNTS = [17, 18] as const;

/** One registered node of the devnet: its operator account, role, key and addresses. */
export interface DevnetNode {
  name: string;
  role: NodeRole;
  /** Index of the operator's development account (public Hardhat mnemonic). */
  account: number;
  operator: string;
  peerId: string;
  multiaddrs: string[];
  /** The node's data directory; edge nodes keep their key there as `peer-key.json`. */
  dataDir: string;
}

/** A devnet set up on chain. */
export interface DevnetSetup {
  contracts: ProtocolContracts;
  deployment: Deployment;
  nodes: DevnetNode[];
  firstHolderAccount: number;
}

/** A setup failure: not enough accounts, or accounts that are not the development mnemonic's. */
export class DevnetError extends Error {
  readonly code = "DEVNET_SETUP";
  constructor(message: string) {
    super(message);
    this.name = "DevnetError";
  }
}

/** The private key of development account `index` (the devnet only ever runs on a local Hardhat chain). */
export function devAccountKey(index: number): string {
  return HDNodeWallet.fromPhrase(DEV_MNEMONIC, undefined, `m/44'/60'/0'/0/${index}`).privateKey;
}

/** A node key kept in the data folder, so a node keeps its peer id across devnet restarts. */
function loadOrCreateKey(file: string): { privateKey: string; peerId: string } {
  if (existsSync(file)) {
    const stored = JSON.parse(readFileSync(file, "utf8")) as { privateKey?: unknown; peerId?: unknown };
    if (typeof stored.privateKey === "string" && typeof stored.peerId === "string") {
      return { privateKey: stored.privateKey, peerId: stored.peerId };
    }
  }
  const key = generateNodeKey();
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, JSON.stringify({ privateKey: key.privateKey, peerId: key.peerId }, null, 2) + "\n", {
    mode: 0o600,
  });
  return key;
}

/**
 * Removes what a previous devnet run left in a node's folder except its keys: the chain is new on every run, so an
 * old database (inbox, bills) or daemon state (a guardian's transaction in flight) would refer to another chain.
 */
function clearRunState(dir: string): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir)) {
    if (entry === DEVNET_KEY_FILE || entry === NODE_KEY_FILE) continue;
    rmSync(path.join(dir, entry), { recursive: true, force: true });
  }
}

/**
 * Deploys the protocol with local parameters and registers the devnet's nodes with stake: `edges` edge nodes, two
 * watchdogs, one guardian, each from its own development account (edge nodes 1 to `edges`, then the first watchdog
 * and the guardian, three plain holders, the second watchdog), funded from the deployer's genesis allocation. Each node's key is kept in its data folder (`<dataDir>/<name>/peer-key.json`), which is where the
 * edge node daemon reads it, so it runs under the peer id registered here. Writes the deployments file.
 */
export async function setUpDevnet(signers: Signer[], options: DevnetOptions): Promise<DevnetSetup> {
  const { log } = options;
  const [deployer] = signers;
  if (!Number.isInteger(options.edges) || options.edges < 2 || options.edges > MAX_DEVNET_EDGES) {
    throw new DevnetError(`setUpDevnet: expected 2 to ${MAX_DEVNET_EDGES} edge nodes, got ${options.edges}`);
  }
  // Accounts: edge nodes from 1, then the first watchdog and the guardian, then the plain holders, then the other
  // watchdogs (so the holders keep the accounts they had when the devnet ran one watchdog).
  const firstHolderAccount = options.edges + 3;
  const roles: { name: string; role: NodeRole; account: number }[] = [
    ...Array.from({ length: options.edges }, (_, i) => ({
      name: `edge-${i + 1}`,
      role: NodeRole.Edge,
      account: i + 1,
    })),
    { name: "watchdog-1", role: NodeRole.Watchdog, account: options.edges + 1 },
    { name: "guardian-1", role: NodeRole.Guardian, account: options.edges + 2 },
    ...Array.from({ length: DEVNET_WATCHDOGS - 1 }, (_, i) => ({
      name: `watchdog-${i + 2}`,
      role: NodeRole.Watchdog,
      account: firstHolderAccount + DEVNET_HOLDERS + i,
    })),
  ];
  const accountsNeeded = firstHolderAccount + DEVNET_HOLDERS + DEVNET_WATCHDOGS - 1;
  if (signers.length < accountsNeeded) {
    throw new DevnetError(`setUpDevnet: expected at least ${accountsNeeded} funded accounts, got ${signers.length}`);
  }

  const { contracts, deployment } = await deployProtocol(
    deployer,
    localDeployOptions(await deployer.getAddress(), {
      network: "localhost",
      parameters: { ...LOCAL_PARAMETERS, EpochLength: BigInt(options.epochLength) },
      log,
    }),
  );
  mkdirSync(path.dirname(options.deploymentFile), { recursive: true });
  writeFileSync(options.deploymentFile, JSON.stringify(deployment, null, 2) + "\n");
  log(`deployments file written: ${options.deploymentFile}`);

  const { token, registry, parameters } = contracts;
  const nodes: DevnetNode[] = [];
  for (const [i, { name, role, account }] of roles.entries()) {
    const operator = signers[account];
    const address = await operator.getAddress();
    if (new Wallet(devAccountKey(account)).address !== address) {
      throw new DevnetError(
        `setUpDevnet: account ${account} is not the development mnemonic's; the devnet needs its keys`,
      );
    }
    const stake = (await parameters.minStake(role)) * 2n;
    const funding = stake + 10_000n * TOKEN;
    await (await token.transfer(address, funding)).wait();
    const dataDir = path.join(options.dataDir, name);
    clearRunState(dataDir);
    const { peerId } = loadOrCreateKey(path.join(dataDir, DEVNET_KEY_FILE));
    // Only edge nodes are dialled; the others register the address they would listen on.
    const multiaddrs = [`/ip4/127.0.0.1/tcp/${options.basePort + i}`];
    await (await token.connect(operator).approve(await registry.getAddress(), stake)).wait();
    const tx = await registry.connect(operator).register(role, peerId, multiaddrs, address, 500, stake);
    await tx.wait();
    nodes.push({ name, role, account, operator: address, peerId, multiaddrs, dataDir });
    log(
      `  ${name.padEnd(11)} ${ROLE_NAMES[role].padEnd(8)} operator ${address} (account ${account}) staked ${stake / TOKEN} SEND  tx ${tx.hash}`,
    );
    log(`              peer ${peerId}`);
  }
  // A few plain holders, so delegation and governance can be tried at once.
  const holders = signers.slice(firstHolderAccount, firstHolderAccount + DEVNET_HOLDERS);
  for (const holder of holders) {
    await (await token.transfer(await holder.getAddress(), HOLDER_FUNDING)).wait();
  }
  if (holders.length > 0) {
    log(
      `  accounts ${firstHolderAccount} to ${firstHolderAccount + holders.length - 1} hold ${HOLDER_FUNDING / TOKEN} SEND each, to delegate and vote with`,
    );
  }
  return { contracts, deployment, nodes, firstHolderAccount };
}

/** How the devnet's daemons run; defaults in DEFAULT_DAEMON_OPTIONS. */
export interface DevnetDaemonOptions {
  /** The chain, in process (the Hardhat provider) or over JSON-RPC. */
  provider: Provider;
  /** First port of the edge nodes' 127.0.0.1 health and metrics endpoints (edge i on metricsBasePort + i); none if undefined. */
  metricsBasePort?: number;
  /** How often the edge nodes look for registry and DID events. */
  pollMs: number;
  /** How often the guardian looks for an ended epoch. */
  guardianPollMs: number;
  /** Watchdog timing: a probe round, a chain round, a probe's timeout; and the probes a node needs to be scored. */
  probeIntervalMs: number;
  chainIntervalMs: number;
  probeTimeoutMs: number;
  minProbes: number;
  /** Level of the daemons' JSON logs (stderr); SEND_LOG_LEVEL or `warn` if undefined. */
  logLevel?: LogLevel;
  log: (line: string) => void;
}

/**
 * Devnet timing: probes every second and chain work every two (epochs are minutes long here, and the scenario moves
 * the clock by hours), a guardian that looks every two seconds.
 */
export const DEFAULT_DAEMON_OPTIONS: Omit<DevnetDaemonOptions, "provider"> = {
  metricsBasePort: 9101,
  pollMs: 500,
  guardianPollMs: 2_000,
  probeIntervalMs: 1_000,
  chainIntervalMs: 2_000,
  probeTimeoutMs: 3_000,
  minProbes: 3,
  log: () => undefined,
};

/** The devnet's running daemons. */
export interface DevnetDaemons {
  edges: EdgeNode[];
  watchdogs: WatchdogDaemon[];
  guardian: GuardianDaemon;
  /** Stops every daemon (watchdogs and guardian first, then the edge nodes); safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Registers a DID for a watchdog operator whose first home node is `homeNode` (its probes exit there, into its
 * inbox) and returns the DID's Ed25519 signing secret, which the watchdog signs its inbox subscription with.
 */
async function registerWatchdogDid(
  contracts: ProtocolContracts,
  operator: Signer,
  homeNode: string,
  seed: string,
): Promise<string> {
  const identity = generateIdentityKeyPair();
  const prekey = generateSignedPrekey(identity, 1);
  const billKey = billKeyOf(getBytes(keccak256(toUtf8Bytes(`devnet/${seed}/bill-key`))));
  const document = {
    identityKey: hexlify(identity.dh.publicKey),
    signingKey: hexlify(identity.signing.publicKey),
    signedPrekey: hexlify(prekey.keyPair.publicKey),
    signedPrekeyId: prekey.id,
    signedPrekeySignature: hexlify(prekey.signature),
    deviceKeys: [],
    homeNodes: [homeNode],
    backupPointer: "",
  };
  await (await contracts.didRegistry.connect(operator).register(document, billKey)).wait();
  return hexlify(identity.signing.secretKey);
}

/**
 * Starts the daemons of a set-up devnet in this process: each edge node from its data folder (the registered key) on
 * its registered 127.0.0.1 port, both watchdogs (their DIDs registered here, home node the first edge node) and the
 * guardian. On failure stops whatever had started and rethrows.
 */
export async function startDevnetNodes(
  setup: DevnetSetup,
  signers: Signer[],
  options: DevnetDaemonOptions,
): Promise<DevnetDaemons> {
  const { log } = options;
  const edges: EdgeNode[] = [];
  const watchdogs: WatchdogDaemon[] = [];
  let guardian: GuardianDaemon | undefined;
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await Promise.allSettled([...watchdogs.map((w) => w.stop()), guardian?.stop()]);
      await Promise.allSettled(edges.map((e) => e.stop()));
    })());

  const logger = (name: string) => createLogger(name, options.logLevel);
  try {
    const edgeNodes = setup.nodes.filter((n) => n.role === NodeRole.Edge);
    for (const [i, node] of edgeNodes.entries()) {
      const key = devAccountKey(node.account);
      const edge = await startEdgeNode({
        dataDir: node.dataDir,
        listen: node.multiaddrs,
        provider: options.provider,
        deployment: setup.deployment,
        operatorKey: key,
        signerKey: key, // the devnet registers each operator as its own signer
        pollMs: options.pollMs,
        ...(options.metricsBasePort !== undefined && { metricsPort: options.metricsBasePort + i }),
        logger: logger(node.name),
      });
      edges.push(edge);
      if (edge.peerId !== node.peerId) {
        throw new DevnetError(`startDevnetNodes: ${node.name} runs as ${edge.peerId}, registered ${node.peerId}`);
      }
      const metrics = edge.metricsPort === undefined ? "" : `, metrics http://127.0.0.1:${edge.metricsPort}/metrics`;
      log(`  ${node.name.padEnd(11)} listening on ${edge.multiaddrs()[0]}${metrics}`);
    }
    await Promise.all(edges.map((e) => e.discovery.sync()));

    const home = edgeNodes[0].operator;
    for (const node of setup.nodes.filter((n) => n.role === NodeRole.Watchdog)) {
      const inboxSigningKey = await registerWatchdogDid(setup.contracts, signers[node.account], home, node.name);
      const daemon = await runWatchdog({
        dataDir: node.dataDir,
        provider: options.provider,
        deployment: setup.deployment,
        watchdogKey: devAccountKey(node.account),
        inboxSigningKey,
        options: {
          probeIntervalMs: options.probeIntervalMs,
          chainIntervalMs: options.chainIntervalMs,
          probeTimeoutMs: options.probeTimeoutMs,
          minProbes: options.minProbes,
          reviewProbes: options.minProbes,
        },
        logger: logger(node.name),
      });
      watchdogs.push(daemon);
      log(`  ${node.name.padEnd(11)} probing every edge node, probes arriving in its inbox at edge-1 (${home})`);
    }

    const guardianNode = setup.nodes.find((n) => n.role === NodeRole.Guardian);
    if (guardianNode === undefined) throw new DevnetError("startDevnetNodes: the devnet has no guardian registered");
    guardian = await runGuardian({
      dataDir: guardianNode.dataDir,
      provider: options.provider,
      deployment: setup.deployment,
      guardianKey: devAccountKey(guardianNode.account),
      pollIntervalMs: options.guardianPollMs,
      logger: logger(guardianNode.name),
    });
    log(
      `  ${guardianNode.name.padEnd(11)} collecting bills from the edge nodes after each epoch, proving with ${setup.deployment.circuit}`,
    );
    return { edges, watchdogs, guardian, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
