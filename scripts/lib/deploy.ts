import { ContractFactory, getCreateAddress, type Signer } from "ethers";
import { readFileSync } from "node:fs";
import path from "node:path";
import {
  DidRegistry__factory,
  NodeRegistry__factory,
  PoseidonT3__factory,
  QualityOracle__factory,
  RewardDistributor__factory,
  RelayRollup__factory,
  ProtocolParameters__factory,
  RewardPool__factory,
  SendGovernor__factory,
  SendTimelock__factory,
  SendToken__factory,
  Slashing__factory,
  type DidRegistry,
  type NodeRegistry,
  type ProtocolParameters,
  type QualityOracle,
  type RewardDistributor,
  type RelayRollup,
  type RewardPool,
  type SendGovernor,
  type SendTimelock,
  type SendToken,
  type Slashing,
} from "../../typechain-types";
import type { Deployment } from "../../sdk/chain/deployment";
import { parameterIndex, TOKEN, type ParameterName } from "../../sdk/chain/protocol";
import { loadCircuitConfig, ROOT } from "./circom";
import { verifierName } from "./ceremony";

/** Everything a deploy can be told. Defaults suit a local chain; `PRODUCTION_DEFAULTS` a public one. */
export interface DeployOptions {
  /** Name written into the deployments file. */
  network: string;
  /** When epoch 0 starts (unix seconds); 0 = the deploy block. */
  genesis: number;
  /** Parameters that replace the contract's defaults (each must be within its bounds). */
  parameters: Partial<Record<ParameterName, bigint>>;
  /** Seconds between queueing and executing a governance proposal. */
  timelockDelay: number;
  /** Blocks between proposing and the vote opening. */
  votingDelay: number;
  /** Blocks a vote stays open. */
  votingPeriod: number;
  /** Votes needed to propose, in wei. */
  proposalThreshold: bigint;
  /** Share of supply that must vote for a proposal to pass, in percent. */
  quorumPercent: number;
  /** Tokens minted to the treasury (the timelock). */
  treasurySupply: bigint;
  /** Tokens minted to the reward pool. */
  rewardSupply: bigint;
  /** Tokens minted to other holders at genesis (on a local chain: the deployer, to fund test operators). */
  allocations: { address: string; amount: bigint }[];
  /** The batch circuit whose generated verifier the rollup uses (a configuration in circuits/config.json). */
  circuit: string;
  /** Progress lines; silent by default. */
  log: (line: string) => void;
}

/** Short windows so that a local chain goes through epochs, unbonding and votes in seconds. */
export const LOCAL_PARAMETERS: Partial<Record<ParameterName, bigint>> = {
  MinStakeEdge: 1_000n * TOKEN,
  MinStakeWatchdog: 500n * TOKEN,
  MinStakeGuardian: 2_000n * TOKEN,
  UnbondingPeriod: 300n,
  EpochLength: 600n,
  ChallengeWindow: 120n,
  ReviewWindow: 120n,
  SettlementWindow: 300n,
  ForcedInclusionDelay: 120n,
  DidDeposit: 0n,
  DidRefundDelay: 60n,
  JailPeriod: 600n,
  QualityQuorum: 1n,
  ChallengeBond: 10n * TOKEN,
  FlagStake: 100n * TOKEN,
  ReviewerCount: 1n,
  FlagProtectionPeriod: 600n,
};

/** Local defaults: one-block voting delay, short votes and timelock, generous genesis allocation to the deployer. */
export function localDeployOptions(deployer: string, overrides: Partial<DeployOptions> = {}): DeployOptions {
  return {
    network: "hardhat",
    genesis: 0,
    parameters: LOCAL_PARAMETERS,
    timelockDelay: 60,
    votingDelay: 1,
    votingPeriod: 20,
    proposalThreshold: 0n,
    quorumPercent: 4,
    treasurySupply: 500_000_000n * TOKEN,
    rewardSupply: 300_000_000n * TOKEN,
    allocations: [{ address: deployer, amount: 200_000_000n * TOKEN }],
    circuit: "relay_batch_test",
    log: () => undefined,
    ...overrides,
  };
}

/** Public-network defaults: the contracts' own parameter defaults, a day of voting delay and a week of voting. */
export function productionDeployOptions(overrides: Partial<DeployOptions> = {}): DeployOptions {
  return {
    network: "unknown",
    genesis: 0,
    parameters: {},
    timelockDelay: 2 * 24 * 3600,
    votingDelay: 7_200,
    votingPeriod: 50_400,
    proposalThreshold: 100_000n * TOKEN,
    quorumPercent: 4,
    treasurySupply: 600_000_000n * TOKEN,
    rewardSupply: 400_000_000n * TOKEN,
    allocations: [],
    circuit: "relay_batch_prod",
    log: () => undefined,
    ...overrides,
  };
}

/**
 * Contracts the deployer creates from the token (nonce + 0) to the reward distributor: pool, parameters, registry,
 * slashing, Poseidon library, DID registry, governor, verifier, rollup, quality oracle, then the distributor.
 */
const DISTRIBUTOR_NONCE_OFFSET = 11;

/** The deployed contracts, typed, connected to the deployer. */
export interface ProtocolContracts {
  token: SendToken;
  timelock: SendTimelock;
  rewardPool: RewardPool;
  parameters: ProtocolParameters;
  registry: NodeRegistry;
  didRegistry: DidRegistry;
  governor: SendGovernor;
  rollup: RelayRollup;
  qualityOracle: QualityOracle;
  distributor: RewardDistributor;
  slashing: Slashing;
  verifier: string;
}

/** Deploys the verifier generated for `circuit` (scripts/build-circuits.ts makes it; compiling makes its artifact). */
async function deployVerifier(deployer: Signer, circuit: string): Promise<string> {
  const name = verifierName(circuit);
  const file = path.join(ROOT, "artifacts", "contracts", "verifiers", "generated", `${name}.sol`, `${name}.json`);
  let artifact: { abi: []; bytecode: string };
  try {
    artifact = JSON.parse(readFileSync(file, "utf8")) as { abi: []; bytecode: string };
  } catch {
    throw new Error(
      `deployProtocol: no verifier artifact for circuit ${circuit} (${file}); run 'npm run build:circuits -- --circuit ${circuit}' then 'npm run build'`,
    );
  }
  const verifier = await new ContractFactory(artifact.abi, artifact.bytecode, deployer).deploy();
  await verifier.waitForDeployment();
  return verifier.getAddress();
}

/**
 * Deploys the whole protocol and wires it: the timelock owns every parameter and the treasury, the Governor alone
 * proposes to the timelock, anyone executes, and the deployer keeps no role. Tests run this same code as their fixture.
 */
export async function deployProtocol(
  deployer: Signer,
  options: DeployOptions,
): Promise<{ contracts: ProtocolContracts; deployment: Deployment }> {
  const { log } = options;
  const provider = deployer.provider;
  if (!provider) throw new Error("deployProtocol: expected a signer connected to a provider");
  const deployerAddress = await deployer.getAddress();
  const chainId = Number((await provider.getNetwork()).chainId);
  const startBlock = await provider.getBlockNumber();

  log(`deploying from ${deployerAddress} on chain ${chainId}`);
  const timelock = await new SendTimelock__factory(deployer).deploy(
    options.timelockDelay,
    [],
    [],
    deployerAddress, // temporary admin, renounced below
  );
  await timelock.waitForDeployment();
  log(`  SendTimelock        ${await timelock.getAddress()}`);

  // The token mints to the reward pool, which needs the token's address: the pool's address is fixed in advance
  // from the deployer's nonce (the pool is the very next contract this deployer creates).
  const nonce = await provider.getTransactionCount(deployerAddress, "pending");
  const rewardPoolAddress = getCreateAddress({ from: deployerAddress, nonce: nonce + 1 });
  // The reward distributor is the pool's distributor and the registry's stake hook from their constructors (the
  // timelock owns both): its address is fixed in advance too. It is created DISTRIBUTOR_NONCE_OFFSET contracts after
  // the token, right after the rollup and the quality oracle; a deploy-order change fails loudly below.
  const distributorAddress = getCreateAddress({ from: deployerAddress, nonce: nonce + DISTRIBUTOR_NONCE_OFFSET });
  const recipients = [await timelock.getAddress(), rewardPoolAddress, ...options.allocations.map((a) => a.address)];
  const amounts = [options.treasurySupply, options.rewardSupply, ...options.allocations.map((a) => a.amount)];
  const token = await new SendToken__factory(deployer).deploy(recipients, amounts, { nonce });
  await token.waitForDeployment();
  log(`  SendToken           ${await token.getAddress()}`);

  const rewardPool = await new RewardPool__factory(deployer).deploy(
    await token.getAddress(),
    await timelock.getAddress(),
    distributorAddress,
    {
      nonce: nonce + 1,
    },
  );
  await rewardPool.waitForDeployment();
  if ((await rewardPool.getAddress()) !== rewardPoolAddress) {
    throw new Error(
      `deployProtocol: reward pool landed at ${await rewardPool.getAddress()}, expected ${rewardPoolAddress}`,
    );
  }
  log(`  RewardPool          ${rewardPoolAddress}`);

  const initialValues = Object.entries(options.parameters).map(([name, value]) => ({
    parameter: parameterIndex(name as ParameterName),
    value: value as bigint,
  }));
  const parameters = await new ProtocolParameters__factory(deployer).deploy(
    await timelock.getAddress(),
    options.genesis,
    initialValues,
  );
  await parameters.waitForDeployment();
  log(`  ProtocolParameters  ${await parameters.getAddress()}`);

  // The registry takes its slasher in the constructor and the slashing contract takes the registry: the slashing
  // contract's address is fixed in advance (it is the very next contract this deployer creates after the registry).
  const registryNonce = await provider.getTransactionCount(deployerAddress, "pending");
  const slashingAddress = getCreateAddress({ from: deployerAddress, nonce: registryNonce + 1 });
  const registry = await new NodeRegistry__factory(deployer).deploy(
    await token.getAddress(),
    await parameters.getAddress(),
    await timelock.getAddress(),
    slashingAddress,
    distributorAddress, // stake hook
    { nonce: registryNonce },
  );
  await registry.waitForDeployment();
  log(`  NodeRegistry        ${await registry.getAddress()}`);
  const slashing = await new Slashing__factory(deployer).deploy(
    await token.getAddress(),
    await parameters.getAddress(),
    await registry.getAddress(),
    await timelock.getAddress(), // treasury
    { nonce: registryNonce + 1 },
  );
  await slashing.waitForDeployment();
  if ((await slashing.getAddress()) !== slashingAddress) {
    throw new Error(`deployProtocol: slashing landed at ${await slashing.getAddress()}, expected ${slashingAddress}`);
  }
  log(`  Slashing            ${slashingAddress}`);

  const poseidon = await new PoseidonT3__factory(deployer).deploy();
  await poseidon.waitForDeployment();
  const didRegistry = await new DidRegistry__factory(
    { "poseidon-solidity/PoseidonT3.sol:PoseidonT3": await poseidon.getAddress() },
    deployer,
  ).deploy(await token.getAddress(), await parameters.getAddress(), await registry.getAddress());
  await didRegistry.waitForDeployment();
  log(`  DidRegistry         ${await didRegistry.getAddress()}`);

  const governor = await new SendGovernor__factory(deployer).deploy(
    await token.getAddress(),
    await registry.getAddress(),
    await timelock.getAddress(),
    options.votingDelay,
    options.votingPeriod,
    options.proposalThreshold,
    options.quorumPercent,
  );
  await governor.waitForDeployment();
  log(`  SendGovernor        ${await governor.getAddress()}`);

  const verifier = await deployVerifier(deployer, options.circuit);
  const slots = loadCircuitConfig(options.circuit).params[0];
  const rollup = await new RelayRollup__factory(deployer).deploy(
    await parameters.getAddress(),
    await registry.getAddress(),
    await didRegistry.getAddress(),
    distributorAddress, // settled epochs close for good once the distributor has fixed them
    verifier,
    slots,
  );
  await rollup.waitForDeployment();
  log(`  RelayRollup         ${await rollup.getAddress()} (${options.circuit}: ${slots} slots, verifier ${verifier})`);

  const qualityOracle = await new QualityOracle__factory(deployer).deploy(
    await parameters.getAddress(),
    await registry.getAddress(),
    await rollup.getAddress(),
  );
  await qualityOracle.waitForDeployment();
  log(`  QualityOracle       ${await qualityOracle.getAddress()}`);
  const distributor = await new RewardDistributor__factory(deployer).deploy(
    await parameters.getAddress(),
    await registry.getAddress(),
    await rollup.getAddress(),
    await qualityOracle.getAddress(),
    rewardPoolAddress,
    0, // pays from genesis
  );
  await distributor.waitForDeployment();
  if ((await distributor.getAddress()) !== distributorAddress) {
    throw new Error(
      `deployProtocol: reward distributor landed at ${await distributor.getAddress()}, expected ${distributorAddress}; ` +
        "the deploy order changed: update DISTRIBUTOR_NONCE_OFFSET",
    );
  }
  log(`  RewardDistributor   ${distributorAddress} (the pool's distributor, the registry's stake hook)`);

  const governorAddress = await governor.getAddress();
  await (await timelock.grantRole(await timelock.PROPOSER_ROLE(), governorAddress)).wait();
  await (await timelock.grantRole(await timelock.CANCELLER_ROLE(), governorAddress)).wait();
  await (await timelock.grantRole(await timelock.EXECUTOR_ROLE(), "0x0000000000000000000000000000000000000000")).wait();
  await (await timelock.renounceRole(await timelock.DEFAULT_ADMIN_ROLE(), deployerAddress)).wait();
  log("  timelock wired: the Governor proposes, anyone executes, the deployer holds no role");

  const deployment: Deployment = {
    network: options.network,
    chainId,
    deployer: deployerAddress,
    startBlock,
    contracts: {
      SendToken: await token.getAddress(),
      SendTimelock: await timelock.getAddress(),
      RewardPool: rewardPoolAddress,
      ProtocolParameters: await parameters.getAddress(),
      NodeRegistry: await registry.getAddress(),
      PoseidonT3: await poseidon.getAddress(),
      DidRegistry: await didRegistry.getAddress(),
      SendGovernor: governorAddress,
      RelayRollup: await rollup.getAddress(),
      RelayBatchVerifier: verifier,
      QualityOracle: await qualityOracle.getAddress(),
      RewardDistributor: distributorAddress,
      Slashing: slashingAddress,
    },
    circuit: options.circuit,
    governor: {
      votingDelay: options.votingDelay,
      votingPeriod: options.votingPeriod,
      timelockDelay: options.timelockDelay,
      quorumPercent: options.quorumPercent,
    },
  };
  return {
    contracts: {
      token,
      timelock,
      rewardPool,
      parameters,
      registry,
      didRegistry,
      governor,
      rollup,
      slashing,
      qualityOracle,
      distributor,
      verifier,
    },
    deployment,
  };
}
