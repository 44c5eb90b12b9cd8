import { expect } from "chai";
import hre, { ethers } from "hardhat";
import { TASK_NODE_CREATE_SERVER } from "hardhat/builtin-tasks/task-names";
import { mkdtempSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { DEFAULT_DEVNET_OPTIONS, setUpDevnet } from "../../scripts/lib/devnet";
import { main as operator } from "../../scripts/operator";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";
import type { ProtocolContracts } from "../../scripts/lib/deploy";

interface Server {
  listen(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}

/** Runs an operator command in-process, as `npm run operator -- …` would, and captures what it prints. */
async function run(...args: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const original = { log: console.log, error: console.error };
  console.log = (...parts: unknown[]) => lines.push(parts.join(" "));
  console.error = (...parts: unknown[]) => lines.push(parts.join(" "));
  try {
    const code = await operator(args);
    return { code, out: lines.join("\n") };
  } finally {
    console.log = original.log;
    console.error = original.error;
  }
}

describe("devnet and operator commands, through a real JSON-RPC endpoint on 127.0.0.1", function () {
  let server: Server;
  let snapshot: string;
  let rpc: string;
  let deploymentFile: string;
  let contracts: ProtocolContracts;
  let firstEdge: string;
  let common: string[];

  before(async () => {
    snapshot = (await ethers.provider.send("evm_snapshot", [])) as string;
    server = (await hre.run(TASK_NODE_CREATE_SERVER, {
      hostname: "127.0.0.1",
      port: 0,
      provider: hre.network.provider,
    })) as Server;
    const { port } = await server.listen();
    rpc = `http://127.0.0.1:${port}`;
    const dataDir = mkdtempSync(path.join(os.tmpdir(), "devnet-"));
    deploymentFile = path.join(dataDir, "deployment.json");
    const devnet = await setUpDevnet(await ethers.getSigners(), { ...DEFAULT_DEVNET_OPTIONS, dataDir, deploymentFile });
    contracts = devnet.contracts;
    firstEdge = devnet.nodes[0].operator;
    common = ["--rpc", rpc, "--deployment", deploymentFile];
  });

  /** `register` for development account 6 as an edge node on port 4010, staking `stake` tokens. */
  const registerAccount6 = (stake: string, ...extra: string[]) => [
    "register",
    ...common,
    "--account",
    "6",
    "--role",
    "edge",
    "--peer-id",
    "12D3KooWTest",
    "--addr",
    "/ip4/127.0.0.1/tcp/4010",
    "--stake",
    stake,
    ...extra,
  ];

  after(async () => {
    await server.close();
    await ethers.provider.send("evm_revert", [snapshot]);
  });

  it("registers three edge nodes, two watchdogs and a guardian, each with a real peer id, and writes the deployments file", async () => {
    const written = JSON.parse(readFileSync(deploymentFile, "utf8")) as { contracts: Record<string, string> };
    expect(written.contracts.NodeRegistry).to.equal(await contracts.registry.getAddress());
    const [edges, total] = await contracts.registry.activeNodes(NodeRole.Edge, 0, 10);
    expect(total).to.equal(3n);
    expect(edges.map((n) => n.peerId).every((p) => /^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$/.test(p))).to.equal(true);
    expect((await contracts.registry.activeNodes(NodeRole.Watchdog, 0, 10))[1]).to.equal(2n);
    expect((await contracts.registry.activeNodes(NodeRole.Guardian, 0, 10))[1]).to.equal(1n);
  });

  it("prints help for every command and exits 0", async () => {
    const { code, out } = await run("help");
    expect(code).to.equal(0);
    for (const command of [
      "register",
      "stake",
      "delegate",
      "undelegate",
      "unbond",
      "withdraw",
      "set-commission",
      "status",
    ]) {
      expect(out).to.contain(command);
      const help = await run(command, "--help");
      expect(help.code, command).to.equal(0);
      expect(help.out, command).to.contain("Usage: npm run operator --");
    }
  });

  it("refuses a malformed amount with what was expected and exit code 2, sending nothing", async () => {
    const { code, out } = await run("stake", ...common, "--account", "1", "--amount", "ten");
    expect(code).to.equal(2);
    expect(out).to.contain("--amount: expected a positive amount of whole tokens");
  });

  it("decodes a refused registration into the custom error with how much stake is missing", async () => {
    const { code, out } = await run(...registerAccount6("500"));
    expect(code).to.equal(1);
    expect(out).to.match(
      /StakingInsufficientStake\(operator=0x[0-9a-fA-F]{40}, stake=500000000000000000000, minimum=1000000000000000000000, missing=500000000000000000000\)/,
    );
  });

  it("registers a node, approving the registry first, and prints the transaction hashes", async () => {
    const { code, out } = await run(...registerAccount6("1000", "--commission", "300"));
    expect(code, out).to.equal(0);
    expect(out).to.match(/approve .* tx 0x[0-9a-f]{64}/);
    expect(out).to.match(/registered edge node .* tx 0x[0-9a-f]{64}/);
    const [holder6] = (await ethers.getSigners()).slice(6);
    expect(await contracts.registry.isActive(holder6.address)).to.equal(true);
    expect(await contracts.registry.stakeOf(holder6.address, holder6.address)).to.equal(1000n * TOKEN);
  });

  it("delegates, shows the delegation in status, and undelegates all of it", async () => {
    const [holder7] = (await ethers.getSigners()).slice(7);
    expect(
      (await run("delegate", ...common, "--account", "7", "--operator", firstEdge, "--amount", "250")).code,
    ).to.equal(0);
    expect(await contracts.registry.stakeOf(firstEdge, holder7.address)).to.equal(250n * TOKEN);
    const status = await run("status", ...common, "--account", "7");
    expect(status.out).to.contain(`delegation   250.0 SEND to ${firstEdge}`);
    expect(status.out).to.contain("stake votes  250.0 SEND");
    expect(
      (await run("undelegate", ...common, "--account", "7", "--operator", firstEdge, "--amount", "all")).code,
    ).to.equal(0);
    expect(await contracts.registry.stakeOf(firstEdge, holder7.address)).to.equal(0n);
    const after = await run("status", ...common, "--account", "7");
    expect(after.out).to.match(/unbonding {4}250\.0 SEND from 0x[0-9a-fA-F]{40}, free at/);
  });

  it("withdraws only after the unbonding period, with the contract's reason before it", async () => {
    const early = await run("withdraw", ...common, "--account", "7");
    expect(early.code).to.equal(1);
    expect(early.out).to.contain("StakingNothingToWithdraw");
    await ethers.provider.send("evm_increaseTime", [301]);
    await ethers.provider.send("evm_mine", []);
    const [holder7] = (await ethers.getSigners()).slice(7);
    const before = await contracts.token.balanceOf(holder7.address);
    const { code, out } = await run("withdraw", ...common, "--account", "7");
    expect(code, out).to.equal(0);
    expect(out).to.match(/withdrew 250\.0 SEND: tx 0x[0-9a-f]{64}/);
    expect(await contracts.token.balanceOf(holder7.address)).to.equal(before + 250n * TOKEN);
  });

  it("sets a commission that applies from the next epoch", async () => {
    expect((await run("set-commission", ...common, "--account", "1", "--bps", "800")).code).to.equal(0);
    const epoch = await contracts.parameters.currentEpoch();
    expect(await contracts.registry.commissionAt(firstEdge, epoch)).to.equal(500n);
    expect(await contracts.registry.commissionAt(firstEdge, epoch + 1n)).to.equal(800n);
  });

  it("lists the active edge nodes with their addresses, as discovery reads them", async () => {
    const { code, out } = await run("nodes", ...common, "--role", "edge");
    expect(code).to.equal(0);
    expect(out.split("\n")).to.have.length(4);
    expect(out).to.contain("/ip4/127.0.0.1/tcp/4010");
  });

  it("claims a node's finished epochs, shows its rewards, and explains when there is nothing to withdraw", async () => {
    // Past epoch 0's end and its settlement window (local: 600 s epochs, 300 s window).
    await ethers.provider.send("evm_increaseTime", [1_200]);
    await ethers.provider.send("evm_mine", []);
    const claim = await run("claim", ...common, "--account", "1");
    expect(claim.code, claim.out).to.equal(0);
    expect(claim.out).to.match(/claimed epochs 0 to \d+ for 0x[0-9a-fA-F]{40}: 0\.0 SEND: tx 0x[0-9a-f]{64}/);
    const next = await contracts.distributor.nextEpochOf(firstEdge);
    expect(next).to.be.greaterThan(0n);
    const again = await run("claim", ...common, "--account", "1");
    expect(again.code).to.equal(2);
    expect(again.out).to.contain(`has no claimable epoch yet (next unclaimed: ${next})`);
    const rewards = await run("rewards", ...common, "--account", "1");
    expect(rewards.out).to.contain(`next epoch    ${next}`);
    const withdraw = await run("withdraw-rewards", ...common, "--account", "1");
    expect(withdraw.code).to.equal(1);
    expect(withdraw.out).to.contain("RewardsNothingToWithdraw");
  });

  it("says no chain answers, with exit code 2, when the endpoint is down", async () => {
    const { code, out } = await run("status", "--rpc", "http://127.0.0.1:1", "--deployment", deploymentFile);
    expect(code).to.equal(2);
    expect(out).to.contain("no chain answers at http://127.0.0.1:1");
  });
});
