import { readFileSync } from "node:fs";

/** What a deploy leaves behind: every address the rest of the system reads, and where the chain was then. */
export interface Deployment {
  network: string;
  chainId: number;
  deployer: string;
  /** The block of the first deploy transaction: where event scans start. */
  startBlock: number;
  contracts: {
    SendToken: string;
    SendTimelock: string;
    RewardPool: string;
    ProtocolParameters: string;
    NodeRegistry: string;
    PoseidonT3: string;
    DidRegistry: string;
    SendGovernor: string;
    RelayRollup: string;
    RelayBatchVerifier: string;
    QualityOracle: string;
    RewardDistributor: string;
    Slashing: string;
  };
  /** The batch circuit configuration (circuits/config.json) the rollup's verifier was generated from. */
  circuit: string;
  governor: { votingDelay: number; votingPeriod: number; timelockDelay: number; quorumPercent: number };
}

/** Thrown when a deployments file is missing or does not have the shape of a `Deployment`. */
export class DeploymentFileError extends Error {
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`deployment file ${path}: ${reason}`);
    this.name = "DeploymentFileError";
  }
}

const CONTRACT_NAMES = [
  "SendToken",
  "SendTimelock",
  "RewardPool",
  "ProtocolParameters",
  "NodeRegistry",
  "PoseidonT3",
  "DidRegistry",
  "SendGovernor",
  "RelayRollup",
  "RelayBatchVerifier",
  "QualityOracle",
  "RewardDistributor",
  "Slashing",
] as const;

/** Reads and checks a deployments file written by `scripts/deploy.ts`. */
export function loadDeployment(path: string): Deployment {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new DeploymentFileError(path, `cannot read it (${(error as Error).message}); run the deploy script first`);
  }
  return parseDeployment(raw, path);
}

/** Checks that `raw` has the shape of a `Deployment`. */
export function parseDeployment(raw: unknown, path = "<memory>"): Deployment {
  if (typeof raw !== "object" || raw === null) throw new DeploymentFileError(path, "expected a JSON object");
  const d = raw as Record<string, unknown>;
  if (typeof d.network !== "string") throw new DeploymentFileError(path, "expected 'network' to be a string");
  if (typeof d.chainId !== "number") throw new DeploymentFileError(path, "expected 'chainId' to be a number");
  if (typeof d.startBlock !== "number") throw new DeploymentFileError(path, "expected 'startBlock' to be a number");
  const contracts = d.contracts as Record<string, unknown> | undefined;
  if (typeof contracts !== "object" || contracts === null) {
    throw new DeploymentFileError(path, "expected a 'contracts' object");
  }
  for (const name of CONTRACT_NAMES) {
    const address = contracts[name];
    if (typeof address !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(address)) {
      throw new DeploymentFileError(path, `expected contracts.${name} to be an address, got ${String(address)}`);
    }
  }
  return raw as Deployment;
}
