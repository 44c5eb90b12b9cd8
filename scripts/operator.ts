/**
 * Node operator commands: register a node, stake, delegate, unbond, withdraw, set commission, show status.
 * Run `npm run operator -- help` for the list and `npm run operator -- <command> --help` for each command.
 */
import { parseArgs } from "node:util";
import type { ContractTransactionResponse, Signer } from "ethers";
import {
  NodeRegistry__factory,
  ProtocolParameters__factory,
  RelayRollup__factory,
  RewardDistributor__factory,
  SendToken__factory,
} from "../typechain-types";
import { loadDeployment, type Deployment } from "../sdk/chain/deployment";
import { NodeRole, parseNodeRole, ROLE_NAMES } from "../sdk/chain/protocol";
import { describeError } from "./lib/errors";
import {
  connect,
  formatTokens,
  parseAddress,
  parseInteger,
  parseTokens,
  UsageError,
  type ConnectionOptions,
} from "./lib/cli";

const COMMON_OPTIONS = {
  rpc: { type: "string" },
  key: { type: "string" },
  account: { type: "string" },
  deployment: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

const COMMON_HELP = `Connection (every command):
  --rpc URL          JSON-RPC endpoint (env SEND_RPC_URL; default http://127.0.0.1:8545, the devnet)
  --key HEX          the operator's private key (env SEND_PRIVATE_KEY)
  --account N        on a local Hardhat chain only: development account N instead of a key (default 0)
  --deployment FILE  deployments file written by the deploy (env SEND_DEPLOYMENT; default deployments/localhost.json)
  --help             this text`;

type Values = Record<string, string | string[] | boolean | undefined>;

interface Command {
  summary: string;
  usage: string;
  options: Record<string, { type: "string" | "boolean"; multiple?: boolean }>;
  run(ctx: Context, values: Values): Promise<void>;
}

interface Context {
  signer: Signer;
  address: string;
  deployment: Deployment;
}

function contracts(ctx: Context) {
  return {
    token: SendToken__factory.connect(ctx.deployment.contracts.SendToken, ctx.signer),
    registry: NodeRegistry__factory.connect(ctx.deployment.contracts.NodeRegistry, ctx.signer),
    parameters: ProtocolParameters__factory.connect(ctx.deployment.contracts.ProtocolParameters, ctx.signer),
    rollup: RelayRollup__factory.connect(ctx.deployment.contracts.RelayRollup, ctx.signer),
    distributor: RewardDistributor__factory.connect(ctx.deployment.contracts.RewardDistributor, ctx.signer),
  };
}

/**
 * The last epoch `node` can claim through now: the newest ended epoch whose claim would go through (final, and for a
 * watchdog past its credit deadline), at most MAX_CLAIM_EPOCHS after the node's next unclaimed epoch.
 */
async function lastClaimableEpoch(ctx: Context, node: string): Promise<bigint | undefined> {
  const { distributor, parameters } = contracts(ctx);
  const next = await distributor.nextEpochOf(node);
  const current = await parameters.currentEpoch();
  const cap = next + (await distributor.MAX_CLAIM_EPOCHS()) - 1n;
  for (let epoch = current < cap + 1n ? current - 1n : cap; epoch >= next && epoch >= 0n; epoch--) {
    try {
      await distributor.claim.staticCall(node, epoch);
      return epoch;
    } catch {
      // Not claimable through this epoch yet (not final, credits open): try one epoch earlier.
    }
  }
  return undefined;
}

/** Sends a transaction, waits for it, and prints its hash. */
async function send(what: string, tx: Promise<ContractTransactionResponse>): Promise<void> {
  const response = await tx;
  const receipt = await response.wait();
  console.log(`${what}: tx ${response.hash} (block ${receipt?.blockNumber}, gas ${receipt?.gasUsed})`);
}

/** Approves the registry for `amount` if the current allowance is short. */
async function ensureAllowance(ctx: Context, amount: bigint): Promise<void> {
  const { token, registry } = contracts(ctx);
  const spender = await registry.getAddress();
  const balance = await token.balanceOf(ctx.address);
  if (balance < amount) {
    throw new UsageError(`${ctx.address} holds ${formatTokens(balance)}, needs ${formatTokens(amount)}`);
  }
  if ((await token.allowance(ctx.address, spender)) < amount) {
    await send(`approve ${formatTokens(amount)} to the registry`, token.approve(spender, amount));
  }
}

function strings(value: Values[string]): string[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [String(value)];
}

function str(value: Values[string]): string | undefined {
  return typeof value === "string" ? value : undefined;
}

/** Resolves "all" or a token amount against what the caller holds in `operator`'s node. */
async function amountOrAll(ctx: Context, operator: string, text: string | undefined): Promise<bigint> {
  if (text === "all") {
    const held = await contracts(ctx).registry.stakeOf(operator, ctx.address);
    if (held === 0n) throw new UsageError(`${ctx.address} has no stake in ${operator}`);
    return held;
  }
  return parseTokens(text, "--amount");
}

const COMMANDS: Record<string, Command> = {
  register: {
    summary: "register a node for one role and bond its minimum stake",
    usage: `register --role edge|watchdog|guardian --peer-id ID --addr MULTIADDR [--addr ...] --stake TOKENS
         [--signer ADDRESS] [--commission BPS]
  --role        the node's one role
  --peer-id     the node's libp2p peer id
  --addr        a multiaddr the node listens on (repeat for several, at most 8)
  --stake       tokens to bond (at least the role's minimum; the error says how many are missing)
  --signer      the address that signs store promises and statements for the node (default: the operator)
  --commission  share of delegators' rewards kept by the operator, in basis points (default 0)`,
    options: {
      role: { type: "string" },
      "peer-id": { type: "string" },
      addr: { type: "string", multiple: true },
      stake: { type: "string" },
      signer: { type: "string" },
      commission: { type: "string" },
    },
    async run(ctx, v) {
      if (str(v.role) === undefined) throw new UsageError(`--role: expected one of ${ROLE_NAMES.slice(1).join(", ")}`);
      const role = parseNodeRole(str(v.role) as string);
      const peerId = str(v["peer-id"]);
      if (!peerId) throw new UsageError("--peer-id: expected the node's libp2p peer id");
      const addrs = strings(v.addr);
      if (addrs.length === 0)
        throw new UsageError("--addr: expected at least one multiaddr, e.g. /ip4/127.0.0.1/tcp/4001");
      const amount = parseTokens(str(v.stake), "--stake");
      const signer = v.signer === undefined ? ctx.address : parseAddress(str(v.signer), "--signer");
      const commission = v.commission === undefined ? 0 : parseInteger(str(v.commission), "--commission", 0, 10_000);
      await ensureAllowance(ctx, amount);
      await send(
        `registered ${ROLE_NAMES[role]} node ${ctx.address} with ${formatTokens(amount)}`,
        contracts(ctx).registry.register(role, peerId, addrs, signer, commission, amount),
      );
    },
  },
  update: {
    summary: "replace the node's peer id, multiaddrs and signer",
    usage: `update --peer-id ID --addr MULTIADDR [--addr ...] [--signer ADDRESS]`,
    options: { "peer-id": { type: "string" }, addr: { type: "string", multiple: true }, signer: { type: "string" } },
    async run(ctx, v) {
      const { registry } = contracts(ctx);
      const current = await registry.node(ctx.address);
      const peerId = str(v["peer-id"]) ?? current.peerId;
      const addrs = strings(v.addr).length > 0 ? strings(v.addr) : [...current.multiaddrs];
      const signer = v.signer === undefined ? current.signer : parseAddress(str(v.signer), "--signer");
      await send("updated node", registry.updateNode(peerId, addrs, signer));
    },
  },
  stake: {
    summary: "bond more of your own tokens to your node",
    usage: `stake --amount TOKENS`,
    options: { amount: { type: "string" } },
    async run(ctx, v) {
      const amount = parseTokens(str(v.amount), "--amount");
      await ensureAllowance(ctx, amount);
      await send(`staked ${formatTokens(amount)}`, contracts(ctx).registry.stake(amount));
    },
  },
  delegate: {
    summary: "bond tokens to an operator's active node and share its rewards and slashes",
    usage: `delegate --operator ADDRESS --amount TOKENS`,
    options: { operator: { type: "string" }, amount: { type: "string" } },
    async run(ctx, v) {
      const operator = parseAddress(str(v.operator), "--operator");
      const amount = parseTokens(str(v.amount), "--amount");
      await ensureAllowance(ctx, amount);
      await send(
        `delegated ${formatTokens(amount)} to ${operator}`,
        contracts(ctx).registry.delegate(operator, amount),
      );
    },
  },
  undelegate: {
    summary: "start unbonding a delegation (withdraw after the unbonding period)",
    usage: `undelegate --operator ADDRESS --amount TOKENS|all`,
    options: { operator: { type: "string" }, amount: { type: "string" } },
    async run(ctx, v) {
      const operator = parseAddress(str(v.operator), "--operator");
      const amount = await amountOrAll(ctx, operator, str(v.amount));
      await send(
        `unbonding ${formatTokens(amount)} from ${operator}`,
        contracts(ctx).registry.unbond(operator, amount),
      );
    },
  },
  unbond: {
    summary: "start unbonding your own stake; 'all' leaves the network (withdraw after the unbonding period)",
    usage: `unbond --amount TOKENS|all`,
    options: { amount: { type: "string" } },
    async run(ctx, v) {
      const amount = await amountOrAll(ctx, ctx.address, str(v.amount));
      await send(`unbonding ${formatTokens(amount)}`, contracts(ctx).registry.unbond(ctx.address, amount));
    },
  },
  withdraw: {
    summary: "pay out every unbonding whose period has passed",
    usage: `withdraw`,
    options: {},
    async run(ctx) {
      const amount = await contracts(ctx).registry.withdraw.staticCall();
      await send(`withdrew ${formatTokens(amount)}`, contracts(ctx).registry.withdraw());
    },
  },
  "set-commission": {
    summary: "set your commission (basis points), in force from the next epoch",
    usage: `set-commission --bps N`,
    options: { bps: { type: "string" } },
    async run(ctx, v) {
      const bps = parseInteger(str(v.bps), "--bps", 0, 10_000);
      await send(`commission set to ${bps} bps from the next epoch`, contracts(ctx).registry.setCommission(bps));
    },
  },
  claim: {
    summary: "process a node's finished epochs into rewards its stakers can withdraw (anyone may claim any node)",
    usage: `claim [--node ADDRESS] [--through EPOCH]
  --node     the node to claim for (default: the signer's own node)
  --through  the last epoch to claim (default: the newest claimable one)`,
    options: { node: { type: "string" }, through: { type: "string" } },
    async run(ctx, v) {
      const { distributor } = contracts(ctx);
      const node = v.node === undefined ? ctx.address : parseAddress(str(v.node), "--node");
      const next = await distributor.nextEpochOf(node);
      let through: bigint;
      if (v.through !== undefined) {
        through = BigInt(parseInteger(str(v.through), "--through", 0, Number.MAX_SAFE_INTEGER));
      } else {
        const last = await lastClaimableEpoch(ctx, node);
        if (last === undefined)
          throw new UsageError(`node ${node} has no claimable epoch yet (next unclaimed: ${next})`);
        through = last;
      }
      const reward = await distributor.claim.staticCall(node, through);
      await send(
        `claimed epochs ${next} to ${through} for ${node}: ${formatTokens(reward)}`,
        distributor.claim(node, through),
      );
    },
  },
  rewards: {
    summary: "show what you can withdraw from a node, and its unclaimed epochs",
    usage: `rewards [--node ADDRESS]   (default: the signer's own node)`,
    options: { node: { type: "string" } },
    async run(ctx, v) {
      const { distributor, parameters } = contracts(ctx);
      const node = v.node === undefined ? ctx.address : parseAddress(str(v.node), "--node");
      const next = await distributor.nextEpochOf(node);
      const current = await parameters.currentEpoch();
      console.log(`node          ${node}`);
      console.log(
        `withdrawable  ${formatTokens(await distributor.pendingRewards(node, ctx.address))} (for ${ctx.address})`,
      );
      console.log(`next epoch    ${next} (current ${current})`);
      for (let epoch = next; epoch < current && epoch < next + 10n; epoch++) {
        console.log(
          `  epoch ${epoch}   ${formatTokens(await distributor.rewardOf(node, epoch))} before commission (preview)`,
        );
      }
    },
  },
  "withdraw-rewards": {
    summary: "withdraw what you earned as a staker of a node (the operator: with its commission)",
    usage: `withdraw-rewards [--node ADDRESS]   (default: the signer's own node)`,
    options: { node: { type: "string" } },
    async run(ctx, v) {
      const { distributor } = contracts(ctx);
      const node = v.node === undefined ? ctx.address : parseAddress(str(v.node), "--node");
      const amount = await distributor.withdrawRewards.staticCall(node);
      await send(`withdrew ${formatTokens(amount)} of rewards from ${node}`, distributor.withdrawRewards(node));
    },
  },
  status: {
    summary: "show stake, delegations, unbondings, jail and the epoch for an address",
    usage: `status [--address ADDRESS]   (default: the signer's address)`,
    options: { address: { type: "string" } },
    async run(ctx, v) {
      const { token, registry, parameters } = contracts(ctx);
      const who = v.address === undefined ? ctx.address : parseAddress(str(v.address), "--address");
      const epoch = await parameters.currentEpoch();
      const nextStart = await parameters.epochStart(epoch + 1n);
      console.log(`address      ${who}`);
      console.log(`epoch        ${epoch} (ends ${new Date(Number(nextStart) * 1000).toISOString()})`);
      console.log(`balance      ${formatTokens(await token.balanceOf(who))}`);
      console.log(`stake votes  ${formatTokens(await registry.getVotes(who))}`);
      const node = await registry.node(who);
      if (Number(node.role) !== NodeRole.None) {
        const jailed = node.jailedUntil > BigInt(Math.floor(Date.now() / 1000));
        console.log(
          `node         ${ROLE_NAMES[Number(node.role)]}, ${node.active ? "active" : "inactive"}${jailed ? `, jailed until ${new Date(Number(node.jailedUntil) * 1000).toISOString()}` : ""}`,
        );
        console.log(`  peer id    ${node.peerId}`);
        for (const addr of node.multiaddrs) console.log(`  addr       ${addr}`);
        console.log(`  signer     ${node.signer}`);
        console.log(`  commission ${node.commissionBps} bps`);
        console.log(
          `  self stake ${formatTokens(node.selfStake)} (minimum ${formatTokens(await parameters.minStake(node.role))})`,
        );
        console.log(`  delegated  ${formatTokens(node.delegatedStake)}`);
        console.log(`  unbonding  ${formatTokens(node.unbondingStake)}`);
      } else {
        console.log("node         none registered");
      }
      const operators = new Set<string>();
      const logs = await registry.queryFilter(registry.filters.Bonded(undefined, who), ctx.deployment.startBlock);
      for (const log of logs) operators.add(log.args.operator);
      for (const operator of operators) {
        if (operator.toLowerCase() === who.toLowerCase()) continue;
        const held = await registry.stakeOf(operator, who);
        if (held > 0n) console.log(`delegation   ${formatTokens(held)} to ${operator}`);
      }
      const now = BigInt(Math.floor(Date.now() / 1000));
      for (const entry of await registry.unbondings(who)) {
        const value = await registry.unbondingValue({
          operator: entry.operator,
          releaseTime: entry.releaseTime,
          shares: entry.shares,
        });
        const when =
          entry.releaseTime <= now
            ? "withdrawable now"
            : `free at ${new Date(Number(entry.releaseTime) * 1000).toISOString()}`;
        console.log(`unbonding    ${formatTokens(value)} from ${entry.operator}, ${when}`);
      }
    },
  },
  nodes: {
    summary: "list the active nodes of a role, with their addresses (what discovery reads)",
    usage: `nodes --role edge|watchdog|guardian`,
    options: { role: { type: "string" } },
    async run(ctx, v) {
      const role = parseNodeRole(str(v.role) ?? "");
      const { registry } = contracts(ctx);
      const PAGE = 50n;
      for (let offset = 0n; ; offset += PAGE) {
        const [nodes, total] = await registry.activeNodes(role, offset, PAGE);
        for (const n of nodes) {
          console.log(
            `${n.operator} ${n.peerId} ${[...n.multiaddrs].join(",")} stake=${formatTokens(n.selfStake + n.delegatedStake)}`,
          );
        }
        if (offset + PAGE >= total) break;
      }
    },
  },
};

function printHelp(): void {
  console.log(`Usage: npm run operator -- <command> [options]\n\nCommands:`);
  for (const [name, command] of Object.entries(COMMANDS)) console.log(`  ${name.padEnd(15)} ${command.summary}`);
  console.log(`\nRun 'npm run operator -- <command> --help' for a command's options.\n\n${COMMON_HELP}`);
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    printHelp();
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`unknown command '${name}'`);
    printHelp();
    return 2;
  }
  const printUsage = () => console.log(`Usage: npm run operator -- ${command.usage}\n\n${COMMON_HELP}`);
  let values: Values;
  try {
    values = parseArgs({ args: rest, options: { ...COMMON_OPTIONS, ...command.options }, strict: true })
      .values as Values;
  } catch (error) {
    console.error((error as Error).message);
    printUsage();
    return 2;
  }
  if (values.help) {
    console.log(`${command.summary}\n`);
    printUsage();
    return 0;
  }
  try {
    const connection: ConnectionOptions = {
      rpc: str(values.rpc) ?? process.env.SEND_RPC_URL ?? "http://127.0.0.1:8545",
      key: str(values.key) ?? process.env.SEND_PRIVATE_KEY,
      account: str(values.account),
    };
    const deployment = loadDeployment(
      str(values.deployment) ?? process.env.SEND_DEPLOYMENT ?? "deployments/localhost.json",
    );
    const { signer } = await connect(connection);
    await command.run({ signer, address: await signer.getAddress(), deployment }, values);
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`error: ${error.message}`);
      return 2;
    }
    console.error(`error: ${describeError(error)}`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
