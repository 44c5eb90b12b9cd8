import { expect } from "chai";
import hre, { ethers } from "hardhat";
import { loadFixture, setBalance } from "@nomicfoundation/hardhat-network-helpers";
import { TASK_NODE_CREATE_SERVER } from "hardhat/builtin-tasks/task-names";
import { Wallet } from "ethers";
import { spawn } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { deployProtocolFixture } from "../fixtures/protocol";
import { tempDir } from "./edgeFixture";
import { main } from "../../node/cli";
import { NodeRole } from "../../sdk/chain/protocol";
import { DEVNET_KEY_FILE } from "../../node/host";
import { generateNodeKey } from "../../sdk/net/peerId";

const ROOT = path.resolve(__dirname, "..", "..");

/** Runs `main(argv)` in process and returns its exit code and what it wrote to stdout and stderr. */
async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const write = { out: process.stdout.write.bind(process.stdout), err: process.stderr.write.bind(process.stderr) };
  process.stdout.write = ((chunk: string) => ((out += chunk), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string) => ((err += chunk), true)) as typeof process.stderr.write;
  try {
    const code = await main(argv, {});
    return { code, out, err };
  } finally {
    process.stdout.write = write.out;
    process.stderr.write = write.err;
  }
}

describe("node/cli: the guardian and watchdog commands", function () {
  this.timeout(120_000);

  it("lists every command and prints each command's help", async () => {
    const general = await run(["help"]);
    expect(general.code).to.equal(0);
    for (const command of ["start", "init", "guardian", "watchdog", "status"]) {
      expect(general.out).to.include(`  ${command}`);
      const help = await run([command, "--help"]);
      expect(help.code).to.equal(0);
      expect(help.out).to.match(new RegExp(`^Usage: npm run node -- ${command}`));
    }
  });

  it("refuses a watchdog without its keys, and a malformed key, with the command's usage", async () => {
    const deploymentFile = path.join(await tempDir("cli-usage"), "deployment.json");
    const { deployment } = await loadFixture(deployProtocolFixture);
    await writeFile(deploymentFile, JSON.stringify(deployment));
    const missing = await run(["watchdog", "--deployment", deploymentFile]);
    expect(missing.code).to.equal(2);
    expect(missing.err).to.match(/^--operator-key: expected/);
    expect(missing.err).to.include("Usage: npm run node -- watchdog");
    const key = Wallet.createRandom().privateKey;
    const noInboxKey = await run(["watchdog", "--deployment", deploymentFile, "--operator-key", key]);
    expect(noInboxKey.code).to.equal(2);
    expect(noInboxKey.err).to.match(/^--inbox-signing-key: expected/);
    const bad = await run(["guardian", "--deployment", deploymentFile, "--operator-key", "0x1234"]);
    expect(bad.code).to.equal(2);
    expect(bad.err).to.match(/^--operator-key: expected/);
  });

  it("runs a registered guardian as a process until SIGTERM, then stops cleanly", async () => {
    const base = await loadFixture(deployProtocolFixture);
    const guardian = Wallet.createRandom().connect(ethers.provider);
    await setBalance(guardian.address, 10n ** 20n);
    const stake = await base.parameters.minStake(NodeRole.Guardian);
    await (await base.token.transfer(guardian.address, stake)).wait();
    await (await base.token.connect(guardian).approve(await base.registry.getAddress(), stake)).wait();
    // The guardian's data folder holds its libp2p key, and the registration names that key's peer id (the daemon
    // refuses to run otherwise: edge nodes hand bills only to registered guardian peers).
    const root = await tempDir("cli-guardian");
    const key = generateNodeKey();
    await mkdir(path.join(root, "guardian"), { recursive: true });
    await writeFile(path.join(root, "guardian", DEVNET_KEY_FILE), JSON.stringify({ privateKey: key.privateKey }));
    await (
      await base.registry
        .connect(guardian)
        .register(NodeRole.Guardian, key.peerId, ["/ip4/127.0.0.1/tcp/1"], guardian.address, 0, stake)
    ).wait();

    const server = (await hre.run(TASK_NODE_CREATE_SERVER, {
      hostname: "127.0.0.1",
      port: 0,
      provider: hre.network.provider,
    })) as { listen(): Promise<{ port: number }>; close(): Promise<void> };
    const { port } = await server.listen();
    const deploymentFile = path.join(root, "deployment.json");
    await writeFile(deploymentFile, JSON.stringify(base.deployment));
    const child = spawn(
      process.execPath,
      [
        "-r",
        "ts-node/register/transpile-only",
        "node/cli.ts",
        "guardian",
        ...["--operator-key", guardian.privateKey, "--rpc", `http://127.0.0.1:${port}`],
        ...["--deployment", deploymentFile, "--data-dir", path.join(root, "guardian"), "--poll-ms", "200"],
      ],
      { cwd: ROOT, env: { ...process.env, SEND_LOG_LEVEL: "error" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    try {
      let stderr = "";
      child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
      const events: { event: string; role: string; address: string }[] = [];
      const lines = createInterface({ input: child.stdout });
      lines.on("line", (line) => events.push(JSON.parse(line) as (typeof events)[number]));
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      for (let i = 0; i < 600 && events.length === 0 && child.exitCode === null; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(events[0], stderr).to.deep.include({ event: "started", role: "guardian", address: guardian.address });
      child.kill("SIGTERM");
      expect(await exited).to.equal(0);
      expect(events.map((e) => e.event)).to.deep.equal(["started", "stopped"]);

      // With another key in its data folder the guardian would collect under a peer id edge nodes do not know: it
      // refuses to start, naming both.
      const mismatch = await run([
        "guardian",
        ...["--operator-key", guardian.privateKey, "--rpc", `http://127.0.0.1:${port}`],
        ...["--deployment", deploymentFile, "--data-dir", path.join(root, "other-key")],
      ]);
      expect(mismatch.code).to.equal(1);
      expect(mismatch.err).to.contain(`registered with peer id ${key.peerId}`);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      await server.close();
      await rm(root, { recursive: true, force: true });
    }
  });
});
