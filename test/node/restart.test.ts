import { expect } from "chai";
import hre, { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { TASK_NODE_CREATE_SERVER } from "hardhat/builtin-tasks/task-names";
import { Wallet, type Provider } from "ethers";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { deployProtocolFixture } from "../fixtures/protocol";
import { registerEdgeNode, registerRecipient, tempDir, withoutPeerId } from "./edgeFixture";
import { DEVNET_KEY_FILE, createEdgeHost, type EdgeHost } from "../../node/host";
import { startEdgeNode, type EdgeNode } from "../../node/edge";
import { exchangeFrames } from "../../node/serve";
import { generateNodeKey, peerIdBytes, relayPublicKeyOfPeer } from "../../sdk/net/peerId";
import {
  INBOX_MAX_FRAME_BYTES,
  INBOX_PROTOCOL,
  RELAY_MAX_FRAME_BYTES,
  RELAY_PACKET_TYPE,
  RELAY_PROTOCOL,
} from "../../sdk/wire/frame";
import {
  InboxType,
  encodeDelivery,
  encodeInboxMessage,
  parseInboxMessage,
  signInboxRequest,
  type InboxMessage,
} from "../../sdk/wire/messages";
import { wrapPacket } from "../../sdk/wire/onion";

const ROOT = path.resolve(__dirname, "..", "..");

interface Server {
  listen(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}

interface Started {
  child: ChildProcessWithoutNullStreams;
  peerId: string;
  addresses: string[];
}

describe("node/cli: an edge node process killed with SIGKILL and restarted on the same data directory", function () {
  this.timeout(120_000);

  const children = new Set<ChildProcessWithoutNullStreams>();
  const killAll = () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  };
  let server: Server;
  let root: string;
  let entry: EdgeNode;
  let client: EdgeHost;
  let f: Awaited<ReturnType<typeof fixture>>;
  let childArgs: string[];

  async function fixture() {
    const base = await deployProtocolFixture();
    const [, entryOp, exitOp] = base.signers;
    const keys = [generateNodeKey(), generateNodeKey()];
    const signers = [Wallet.createRandom(), Wallet.createRandom()];
    await registerEdgeNode(base, entryOp, keys[0].peerId, ["/ip4/127.0.0.1/tcp/1"], signers[0].address);
    await registerEdgeNode(base, exitOp, keys[1].peerId, ["/ip4/127.0.0.1/tcp/2"], signers[1].address);
    const recipient = await registerRecipient(base.didRegistry, base.signers[6], [exitOp.address], "restart/r");
    return { ...base, entryOp, exitOp, keys, signers, recipient };
  }

  /** Starts `node/cli.ts start` as a child process and waits for its "started" line. */
  async function startChild(): Promise<Started> {
    const child = spawn(
      process.execPath,
      ["-r", "ts-node/register/transpile-only", "node/cli.ts", "start", ...childArgs],
      {
        cwd: ROOT,
        env: { ...process.env, TS_NODE_TRANSPILE_ONLY: "true", SEND_LOG_LEVEL: "error" },
        stdio: ["pipe", "pipe", "pipe"],
      },
    );
    children.add(child);
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const lines = createInterface({ input: child.stdout });
    const started = await new Promise<Started>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the node did not start within 60 s:\n${stderr}`)), 60_000);
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`the node exited (${code ?? signal}) before starting:\n${stderr}`));
      });
      lines.on("line", (line) => {
        const event = JSON.parse(line) as { event: string; peerId: string; addresses: string[] };
        if (event.event === "started") {
          clearTimeout(timer);
          resolve({ child, peerId: event.peerId, addresses: event.addresses });
        }
      });
    });
    return started;
  }

  async function killChild(child: ChildProcessWithoutNullStreams): Promise<void> {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
    children.delete(child);
  }

  before(async () => {
    process.once("exit", killAll);
    f = await loadFixture(fixture);
    root = await tempDir("restart");
    server = (await hre.run(TASK_NODE_CREATE_SERVER, {
      hostname: "127.0.0.1",
      port: 0,
      provider: hre.network.provider,
    })) as Server;
    const { port } = await server.listen();
    const deploymentFile = path.join(root, "deployment.json");
    await writeFile(deploymentFile, JSON.stringify(f.deployment));
    const exitDir = path.join(root, "exit");
    await mkdir(exitDir, { recursive: true });
    await writeFile(path.join(exitDir, DEVNET_KEY_FILE), JSON.stringify(f.keys[1]));
    childArgs = [
      "--data-dir",
      exitDir,
      "--listen",
      "/ip4/127.0.0.1/tcp/0",
      "--rpc",
      `http://127.0.0.1:${port}`,
      "--deployment",
      deploymentFile,
      "--operator",
      f.exitOp.address,
      "--signer-key",
      f.signers[1].privateKey,
      "--poll-ms",
      "100",
      "--stop-on-stdin-end",
    ];
    const entryDir = path.join(root, "entry");
    await mkdir(entryDir, { recursive: true });
    await writeFile(path.join(entryDir, DEVNET_KEY_FILE), JSON.stringify(f.keys[0]));
    entry = await startEdgeNode({
      dataDir: entryDir,
      provider: ethers.provider as unknown as Provider,
      deployment: f.deployment,
      operator: f.entryOp.address,
      signerKey: f.signers[0].privateKey,
      pollMs: 100,
    });
    client = await createEdgeHost({ dataDir: path.join(root, "client") });
  });

  after(async () => {
    killAll();
    process.removeListener("exit", killAll);
    await entry?.stop();
    await client?.stop();
    await server?.close();
    await rm(root, { recursive: true, force: true });
  });

  async function dial(peerId: string, addresses: string[], protocol: string) {
    const [{ multiaddr }, { peerIdFromString }] = await Promise.all([
      import("@multiformats/multiaddr"),
      import("@libp2p/peer-id"),
    ]);
    const id = peerIdFromString(peerId);
    await client.libp2p.peerStore.patch(id, { multiaddrs: addresses.map((a) => multiaddr(withoutPeerId(a))) });
    return client.libp2p.dialProtocol(id, protocol, { signal: AbortSignal.timeout(10_000) });
  }

  async function inboxRequest(
    started: Started,
    message: Parameters<typeof signInboxRequest>[1],
  ): Promise<InboxMessage> {
    const signed = signInboxRequest(peerIdBytes(started.peerId), message, f.recipient.identity.signing.secretKey);
    const stream = await dial(started.peerId, started.addresses, INBOX_PROTOCOL);
    const [answer] = await exchangeFrames(stream, [encodeInboxMessage(signed as InboxMessage)], INBOX_MAX_FRAME_BYTES);
    return parseInboxMessage(answer.type, answer.body);
  }

  const fetchRequest = () => ({
    type: InboxType.FETCH,
    recipientId: f.recipient.recipientId,
    timestamp: Date.now(),
    nonce: Uint8Array.from(randomBytes(16)),
    limit: 16,
  });

  it("keeps a stored message through a SIGKILL and hands it out exactly once after the restart", async () => {
    let exit = await startChild();
    expect(exit.peerId).to.equal(f.keys[1].peerId);
    await (
      await f.registry
        .connect(f.exitOp)
        .updateNode(exit.peerId, exit.addresses.map(withoutPeerId), f.signers[1].address)
    ).wait();
    await entry.discovery.sync();

    const messageId = Uint8Array.from(randomBytes(16));
    const envelope = new TextEncoder().encode("stored before the crash");
    const packet = wrapPacket(
      [
        { peerId: peerIdBytes(entry.peerId), relayPublicKey: relayPublicKeyOfPeer(entry.peerId) },
        { peerId: peerIdBytes(exit.peerId), relayPublicKey: relayPublicKeyOfPeer(exit.peerId) },
      ],
      f.recipient.recipientId,
      encodeDelivery({ messageId, ttlSeconds: 3600, envelope }),
    );
    const relayStream = await dial(entry.peerId, entry.multiaddrs(), RELAY_PROTOCOL);
    expect(
      await exchangeFrames(relayStream, [{ type: RELAY_PACKET_TYPE, body: packet }], RELAY_MAX_FRAME_BYTES),
    ).to.deep.equal([]);
    expect(entry.metrics.value("relayed")).to.equal(1);
    // The entry answers once the packet is written to the exit; wait until the exit has stored it (a fetch does not
    // delete), then kill it.
    for (let i = 0; i < 100; i++) {
      const seen = await inboxRequest(exit, fetchRequest());
      if (seen.type === InboxType.MESSAGES && seen.messages.length === 1) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    await killChild(exit.child);
    exit = await startChild();
    expect(exit.peerId).to.equal(f.keys[1].peerId);

    const first = await inboxRequest(exit, fetchRequest());
    if (first.type !== InboxType.MESSAGES) expect.fail(`expected MESSAGES, got ${first.type}`);
    expect(first.messages).to.have.length(1);
    expect(first.messages[0].messageId).to.deep.equal(messageId);
    expect(first.messages[0].envelope).to.deep.equal(envelope);

    const acked = await inboxRequest(exit, {
      type: InboxType.ACK,
      recipientId: f.recipient.recipientId,
      timestamp: Date.now(),
      nonce: Uint8Array.from(randomBytes(16)),
      messageIds: [messageId],
    });
    expect(acked).to.deep.equal({ type: InboxType.ACKED, deleted: 1 });
    const second = await inboxRequest(exit, fetchRequest());
    expect(second).to.deep.equal({ type: InboxType.MESSAGES, messages: [] });

    // A clean stop (stdin closed) ends the process with code 0.
    const exited = new Promise<number | null>((resolve) => exit.child.once("exit", (code) => resolve(code)));
    exit.child.stdin.end();
    expect(await exited).to.equal(0);
  });
});
