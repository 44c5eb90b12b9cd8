import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { getBytes, keccak256, toUtf8Bytes } from "ethers";
import { rm } from "node:fs/promises";
import path from "node:path";
import { deployProtocolFixture } from "../fixtures/protocol";
import { registerEdgeNode, registerRecipient, tempDir, type TestRecipient } from "./edgeFixture";
import { createEdgeHost, type EdgeHost } from "../../node/host";
import { openNodeDatabase, type NodeDatabase } from "../../node/db";
import { BillService, IdentityTreeFollower } from "../../node/bills";
import { exchangeFrames } from "../../node/serve";
import { billKeyOf, nodeIdFromAddress, signBill, type SignedBill } from "../../sdk/bill/bill";
import { generateNodeKey } from "../../sdk/net/peerId";
import { BILLS_MAX_FRAME_BYTES, BILLS_PROTOCOL, type Frame } from "../../sdk/wire/frame";
import {
  BillsType,
  MAX_BILLS_PER_SUBMISSION,
  encodeBillsMessage,
  parseBillsMessage,
  type BillsMessage,
} from "../../sdk/wire/messages";

/** Recipients with DIDs on chain. */
const RECIPIENTS = 8;
/** Bills kept straight into the book for the paging test: with the submitted ones, more than one BILLS page. */
const PAGED_BILLS = MAX_BILLS_PER_SUBMISSION + 6;

describe("node/bills: the edge node's bill book, with bills signed by DIDs on the real chain", function () {
  this.timeout(120_000);

  let root: string;
  let node: EdgeHost;
  let guardian: EdgeHost;
  let db: NodeDatabase;
  let service: BillService;
  let f: Awaited<ReturnType<typeof fixture>>;

  async function fixture() {
    const base = await deployProtocolFixture();
    const [deployer, op, other] = base.signers;
    await registerEdgeNode(base, op, generateNodeKey().peerId, ["/ip4/127.0.0.1/tcp/1"]);
    await registerEdgeNode(base, other, generateNodeKey().peerId, ["/ip4/127.0.0.1/tcp/2"]);
    const recipients: TestRecipient[] = [];
    for (let i = 0; i < RECIPIENTS; i++) {
      const wallet = ethers.Wallet.createRandom().connect(ethers.provider);
      await (await deployer.sendTransaction({ to: wallet.address, value: ethers.parseEther("1") })).wait();
      recipients.push(await registerRecipient(base.didRegistry, wallet, [op.address], `bills/${i}`));
    }
    return { ...base, operator: op.address, otherOperator: other.address, recipients };
  }

  before(async () => {
    root = await tempDir("bills");
    f = await loadFixture(fixture);
    node = await createEdgeHost({ dataDir: path.join(root, "node") });
    guardian = await createEdgeHost({ dataDir: path.join(root, "guardian") });
    db = openNodeDatabase(path.join(root, "node", "node.db"));
    service = new BillService(node.libp2p, {
      db,
      operator: f.operator,
      currentEpoch: () => f.parameters.currentEpoch(),
      identityTree: new IdentityTreeFollower(f.didRegistry, f.deployment.startBlock),
    });
    await service.start();
    await guardian.libp2p.peerStore.merge(node.libp2p.peerId, { multiaddrs: node.libp2p.getMultiaddrs() });
  });

  after(async () => {
    await service?.stop();
    await Promise.all([node?.stop(), guardian?.stop()]);
    db?.close();
    await rm(root, { recursive: true, force: true });
  });

  async function send(messages: BillsMessage[]): Promise<BillsMessage[]> {
    const stream = await guardian.libp2p.dialProtocol(node.libp2p.peerId, BILLS_PROTOCOL, {
      signal: AbortSignal.timeout(10_000),
    });
    const frames: Frame[] = await exchangeFrames(stream, messages.map(encodeBillsMessage), BILLS_MAX_FRAME_BYTES);
    return frames.map((frame) => parseBillsMessage(frame.type, frame.body));
  }

  const bill = (r: TestRecipient, messageCount: bigint, epoch: bigint, node = f.operator): SignedBill =>
    signBill(r.billPrivateKey, {
      nodeId: nodeIdFromAddress(node),
      epoch,
      messageCount,
      byteCount: messageCount * 700n,
    });

  const submit = async (bills: SignedBill[]) => {
    const [answer] = await send([{ type: BillsType.SUBMIT, bills }]);
    if (answer.type !== BillsType.ACCEPTED) expect.fail(`expected ACCEPTED, got ${answer.type}`);
    return answer.accepted;
  };

  it("keeps valid bills and refuses a bad signature, another node's bill, a key not in the tree and a wrong epoch", async () => {
    const epoch = await f.parameters.currentEpoch();
    const [r0, r1, r2, r3] = f.recipients;
    const good = bill(r0, 40n, epoch);
    const tampered: SignedBill = { ...bill(r1, 10n, epoch), bill: { ...bill(r1, 10n, epoch).bill, messageCount: 11n } };
    const otherNode = bill(r2, 10n, epoch, f.otherOperator);
    const outsiderKey = getBytes(keccak256(toUtf8Bytes("bills/not-registered")));
    const notInTree = signBill(outsiderKey, {
      nodeId: nodeIdFromAddress(f.operator),
      epoch,
      messageCount: 5n,
      byteCount: 5n,
    });
    const future = bill(r3, 10n, epoch + 1n);
    expect(notInTree.billKey).to.deep.equal(billKeyOf(outsiderKey));

    const results = await service.submit({
      type: BillsType.SUBMIT,
      bills: [good, tampered, otherNode, notInTree, future],
    });
    expect(results).to.deep.equal([true, "bad-signature", "wrong-node", "unknown-key", "stale-epoch"]);
    // Over the wire: the same checks, answered with the count kept (the good bill again is not larger: 0).
    expect(await submit([good, tampered, otherNode, notInTree, future])).to.equal(0);
    expect(await submit([bill(r1, 10n, epoch)])).to.equal(1);
    expect(
      service
        .bills(epoch)
        .map((b) => b.bill.messageCount)
        .sort(),
    ).to.deep.equal([10n, 40n]);
  });

  it("keeps only the bill with the most work per recipient and epoch", async () => {
    const epoch = await f.parameters.currentEpoch();
    const r = f.recipients[5];
    expect(await submit([bill(r, 40n, epoch)])).to.equal(1);
    expect(await submit([bill(r, 10n, epoch)])).to.equal(0);
    expect(await submit([bill(r, 50n, epoch), bill(r, 45n, epoch)])).to.equal(1);
    const kept = service.bills(epoch).filter((b) => b.billKey.x === r.billKey.x);
    expect(kept.map((b) => b.bill.messageCount)).to.deep.equal([50n]);
  });

  it("returns an epoch's bills to COLLECT in pages of at most 64, the last without `more`", async () => {
    const epoch = await f.parameters.currentEpoch();
    const before = service.bills(epoch);
    // The paging is under test here, not the checks (above): these go into the book directly.
    for (let i = 0; i < PAGED_BILLS; i++) {
      const key = getBytes(keccak256(toUtf8Bytes(`bills/paged/${i}`)));
      const signed = signBill(key, {
        nodeId: nodeIdFromAddress(f.operator),
        epoch,
        messageCount: BigInt(1_000 + i),
        byteCount: 1n,
      });
      expect(service.keep(signed)).to.equal(true);
    }
    const total = before.length + PAGED_BILLS;

    const pages = await send([{ type: BillsType.COLLECT, epoch }]);
    expect(pages.map((p) => (p.type === BillsType.BILLS ? [p.bills.length, p.more] : p.type))).to.deep.equal([
      [64, true],
      [total - 64, false],
    ]);
    const collected = pages.flatMap((p) => (p.type === BillsType.BILLS ? p.bills : []));
    expect(collected.map((b) => b.bill.messageCount).sort((a, b) => Number(a - b))).to.deep.equal(
      service
        .bills(epoch)
        .map((b) => b.bill.messageCount)
        .sort((a, b) => Number(a - b)),
    );
    expect(new Set(collected.map((b) => `${b.billKey.x}`)).size).to.equal(total);
    expect(await send([{ type: BillsType.COLLECT, epoch: epoch + 5n }])).to.deep.equal([
      { type: BillsType.BILLS, bills: [], more: false },
    ]);
  });

  it("accepts the previous epoch's bills while it settles, and refuses older ones", async () => {
    const epoch = await f.parameters.currentEpoch();
    const length = (await f.parameters.epochStart(epoch + 1n)) - (await f.parameters.epochStart(epoch));
    const r = f.recipients[7];
    await time.increase(length);
    expect(await f.parameters.currentEpoch()).to.equal(epoch + 1n);
    expect(await submit([bill(r, 500n, epoch)])).to.equal(1);
    await time.increase(length);
    expect(await submit([bill(r, 600n, epoch)])).to.equal(0);
    const results = await service.submit({ type: BillsType.SUBMIT, bills: [bill(r, 600n, epoch)] });
    expect(results).to.deep.equal(["stale-epoch"]);
  });
});
