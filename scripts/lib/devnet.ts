import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import path from "node:path";
import type { Signer } from "ethers";
import { deployProtocol, localDeployOptions, LOCAL_PARAMETERS, type ProtocolContracts } from "./deploy";
import type { Deployment } from "../../sdk/chain/deployment";
import { NodeRole, ROLE_NAMES, TOKEN } from "../../sdk/chain/protocol";
import { generateNodeKey } from "../../sdk/net/peerId";

/** What the devnet is told; every field has an embedded default, so `npm start` needs no configuration. */
export interface DevnetOptions {
  /** Edge nodes to register. */
  edges: number;
  /** Seconds per epoch. */
  epochLength: number;
  /** First TCP port of the nodes; node i listens on basePort + i. */
  basePort: number;
  /** Where node keys and the deployments file are kept. */
  dataDir: string;
  /** Where the deployments file is written for the scripts to read. */
  deploymentFile: string;
  /** Output lines. */
  log: (line: string) => void;
}

export const DEFAULT_DEVNET_OPTIONS: DevnetOptions = {
  edges: 3,
  epochLength: Number(LOCAL_PARAMETERS.EpochLength),
  basePort: 4001,
  dataDir: ".devnet",
  deploymentFile: "deployments/localhost.json",
  log: () => undefined,
};

/** Plain token holders funded after the node operators (development accounts right after them). */
const DEVNET_HOLDERS = 3;
const HOLDER_FUNDING = 10_000n * TOKEN;

/** One registered node of the devnet: its operator account, role, key and addresses. */
export interface DevnetNode {
  name: string;
  role: NodeRole;
  operator: string;
  peerId: string;
  multiaddrs: string[];
  keyFile: string;
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
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify({ privateKey: key.privateKey, peerId: key.peerId }, null, 2) + "\n", {
    mode: 0o600,
  });
  return key;
}

/**
 * Deploys the protocol with local parameters and registers the devnet's nodes with stake: `edges` edge nodes, one
 * watchdog, one guardian, each from its own development account (1, 2, …), funded from the deployer's genesis
 * allocation. Writes the deployments file. The node daemons themselves start from these registrations.
 */
export async function setUpDevnet(
  signers: Signer[],
  options: DevnetOptions,
): Promise<{ contracts: ProtocolContracts; deployment: Deployment; nodes: DevnetNode[]; firstHolderAccount: number }> {
  const { log } = options;
  const [deployer] = signers;
  const roles: { name: string; role: NodeRole }[] = [
    ...Array.from({ length: options.edges }, (_, i) => ({ name: `edge-${i + 1}`, role: NodeRole.Edge })),
    { name: "watchdog-1", role: NodeRole.Watchdog },
    { name: "guardian-1", role: NodeRole.Guardian },
  ];
  if (signers.length < roles.length + 1) {
    throw new Error(`setUpDevnet: expected at least ${roles.length + 1} funded accounts, got ${signers.length}`);
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
  for (const [i, { name, role }] of roles.entries()) {
    const operator = signers[i + 1];
    const address = await operator.getAddress();
    const stake = (await parameters.minStake(role)) * 2n;
    const funding = stake + 10_000n * TOKEN;
    await (await token.transfer(address, funding)).wait();
    const keyFile = path.join(options.dataDir, name, "peer-key.json");
    const { peerId } = loadOrCreateKey(keyFile);
    const multiaddrs = [
      `/ip4/127.0.0.1/tcp/${options.basePort + i}`,
      `/ip4/127.0.0.1/tcp/${options.basePort + 100 + i}/ws`,
    ];
    await (await token.connect(operator).approve(await registry.getAddress(), stake)).wait();
    const tx = await registry.connect(operator).register(role, peerId, multiaddrs, address, 500, stake);
    await tx.wait();
    nodes.push({ name, role, operator: address, peerId, multiaddrs, keyFile });
    log(
      `  ${name.padEnd(11)} ${ROLE_NAMES[role].padEnd(8)} operator ${address} staked ${stake / TOKEN} SEND  tx ${tx.hash}`,
    );
    log(`              peer ${peerId}`);
  }
  // A few plain holders, so delegation and governance can be tried at once.
  const holders = signers.slice(roles.length + 1, roles.length + 1 + DEVNET_HOLDERS);
  for (const holder of holders) {
    await (await token.transfer(await holder.getAddress(), HOLDER_FUNDING)).wait();
  }
  if (holders.length > 0) {
    log(
      `  accounts ${roles.length + 1} to ${roles.length + holders.length} hold ${HOLDER_FUNDING / TOKEN} SEND each, to delegate and vote with`,
    );
  }
  return { contracts, deployment, nodes, firstHolderAccount: roles.length + 1 };
}
