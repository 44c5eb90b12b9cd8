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
import { RequestRefused, exchangeFrames } from "../../node/serve";
import { billKeyOf, nodeIdFromAddress, signBill, type SignedBill } from "../../sdk/bill/bill";
import { buildRelayBatch, orderKey, RELAY_BATCH_TEST_PARAMS } from "../../sdk/bill/batchInput";
import { proveRelayBatch } from "../../sdk/bill/prove";
import { recoverSlotConsentSigner, rollupDomain, type SlotConsentSignature } from "../../sdk/chain/consent";
import { IdentityTree } from "../../sdk/chain/identityTree";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";
import { loadCircuitArtifacts } from "../../scripts/lib/ceremony";
import { generateNodeKey } from "../../sdk/net/peerId";
import {
  BILLS_MAX_FRAME_BYTES,
  BILLS_PROTOCOL,
  ERROR_FRAME_TYPE,
  WireErrorCode,
  parseErrorAnswer,
  type ErrorAnswer,
  type Frame,
} from "../../sdk/wire/frame";
import {
  BillsType,
  MAX_BILLS_PER_SUBMISSION,
  encodeBillsMessage,
  parseBillsMessage,
  type BillsMessage,
  type ConsentRequestMessage,
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
    const [deployer, op, other, guardian] = base.signers;
    await registerEdgeNode(base, op, generateNodeKey().peerId, ["/ip4/127.0.0.1/tcp/1"]); // its own signer
    await registerEdgeNode(base, other, generateNodeKey().peerId, ["/ip4/127.0.0.1/tcp/2"]);
    const guardianStake = 2_000n * TOKEN;
    await (await base.token.transfer(guardian.address, guardianStake)).wait();
    await (await base.token.connect(guardian).approve(await base.registry.getAddress(), guardianStake)).wait();
    await (
      await base.registry
        .connect(guardian)
        .register(
          NodeRole.Guardian,
          generateNodeKey().peerId,
          ["/ip4/127.0.0.1/tcp/3"],
          guardian.address,
          0,
          guardianStake,
        )
    ).wait();
    const recipients: TestRecipient[] = [];
    for (let i = 0; i < RECIPIENTS; i++) {
      const wallet = ethers.Wallet.createRandom().connect(ethers.provider);
      await (await deployer.sendTransaction({ to: wallet.address, value: ethers.parseEther("1") })).wait();
      recipients.push(await registerRecipient(base.didRegistry, wallet, [op.address], `bills/${i}`));
    }
    const domain = rollupDomain((await ethers.provider.getNetwork()).chainId, await base.rollup.getAddress());
    return { ...base, op, guardian, operator: op.address, otherOperator: other.address, recipients, domain };
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
      consent: { signer: f.op, domain: f.domain, maxWorkPerBill: RELAY_BATCH_TEST_PARAMS.maxWorkPerBill },
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

  async function exchange(messages: BillsMessage[]): Promise<Frame[]> {
    const stream = await guardian.libp2p.dialProtocol(node.libp2p.peerId, BILLS_PROTOCOL, {
      signal: AbortSignal.timeout(10_000),
    });
    return exchangeFrames(stream, messages.map(encodeBillsMessage), BILLS_MAX_FRAME_BYTES);
  }

  async function send(messages: BillsMessage[]): Promise<BillsMessage[]> {
    return (await exchange(messages)).map((frame) => parseBillsMessage(frame.type, frame.body));
  }

  /** Asks the node for consent over the wire: the signature, or the error answer. */
  async function askConsent(request: Omit<ConsentRequestMessage, "type">): Promise<SlotConsentSignature | ErrorAnswer> {
    const [frame, ...rest] = await exchange([{ type: BillsType.CONSENT_REQUEST, ...request }]);
    expect(rest).to.deep.equal([]);
    if (frame.type === ERROR_FRAME_TYPE) return parseErrorAnswer(frame.body);
    const answer = parseBillsMessage(frame.type, frame.body);
    if (answer.type !== BillsType.CONSENT) expect.fail(`expected CONSENT, got ${answer.type}`);
    return { consentR: answer.consentR, consentVS: answer.consentVS };
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
  it("consents to a slot that matches its bills of an ended epoch, and the rollup settles the guardian's batch with it", async () => {
    const epoch = await f.parameters.currentEpoch();
    // Three recipients' bills for this node, in order-key order; one above the per-bill cap, one resubmitted larger.
    const picked = f.recipients.slice(0, 3).sort((x, y) => (orderKey(x.keyHash) < orderKey(y.keyHash) ? -1 : 1));
    const counts = [30n, 4_000n, 7n];
    expect(await submit(picked.map((r, i) => bill(r, counts[i] - 1n, epoch)))).to.equal(3);
    expect(await submit(picked.map((r, i) => bill(r, counts[i], epoch)))).to.equal(3);
    const keys = picked.map((r) => orderKey(r.keyHash));
    const slot = { epoch, prevBound: 0n, newBound: keys[1], work: 30n + 1_000n }; // the first two, capped

    // The epoch is still running: no consent yet (bills may still grow).
    const early = await askConsent(slot);
    expect(early).to.deep.include({ code: WireErrorCode.NOT_FOUND });
    expect((early as ErrorAnswer).message).to.match(/BillService\.consent: expected an ended epoch/);

    await time.increaseTo((await f.parameters.epochStart(epoch + 1n)) + 1n);
    const consent = await askConsent(slot);
    expect(consent).to.have.keys(["consentR", "consentVS"]);
    const signed = consent as SlotConsentSignature;
    expect(recoverSlotConsentSigner(f.domain, epoch, { node: f.operator, ...slot }, signed)).to.equal(f.operator);
    expect(await f.registry.signerOf(f.operator)).to.equal(f.operator);
    // The rest of the epoch, from the first slot's bound: the third bill alone.
    const rest = await askConsent({ epoch, prevBound: keys[1], newBound: keys[2], work: 7n });
    expect(rest).to.have.keys(["consentR", "consentVS"]);

    // A guardian proves exactly that slot and settles it with the consent: the rollup recovers the node's signer.
    const tree = IdentityTree.fromEvents(
      (await f.didRegistry.queryFilter(f.didRegistry.filters.IdentityTreeChanged())).map((e) => ({
        index: e.args.index,
        leaf: e.args.leaf,
      })),
    );
    const held = service.bills(epoch).filter((b) => picked.slice(0, 2).some((r) => r.billKey.x === b.billKey.x));
    const batch = buildRelayBatch(RELAY_BATCH_TEST_PARAMS, {
      epoch,
      tree,
      slots: [{ nodeId: nodeIdFromAddress(f.operator), prevBound: 0n, bills: held }],
    });
    expect([batch.slots[0].newBound, batch.slots[0].work]).to.deep.equal([slot.newBound, slot.work]);
    const proof = await proveRelayBatch(batch, loadCircuitArtifacts("relay_batch_test"));
    const slots = proof.slots.map((s, i) => (i === 0 ? { ...s, ...signed } : s));
    await (await f.rollup.connect(f.guardian).submitBatch(epoch, tree.root, slots, proof.proof)).wait();
    expect(await f.rollup.boundOf(f.operator, epoch)).to.equal(keys[1]);
    expect(await f.rollup.workOf(f.operator, epoch)).to.equal(1_030n);
    // The same consent cannot settle anything again: it names prevBound 0, which the settlement moved.
    await expect(
      f.rollup.connect(f.guardian).submitBatch(epoch, tree.root, slots, proof.proof),
    ).to.be.revertedWithCustomError(f.rollup, "RollupBoundMismatch");
  });

  it("refuses consent to a slot that skips a bill, claims other work, ends off its keys or is not its own", async () => {
    const epoch = (await f.parameters.currentEpoch()) - 1n; // the epoch the test above ended
    const picked = f.recipients.slice(0, 3).sort((x, y) => (orderKey(x.keyHash) < orderKey(y.keyHash) ? -1 : 1));
    const keys = picked.map((r) => orderKey(r.keyHash));
    const refused = async (request: Omit<ConsentRequestMessage, "type">, why: RegExp) => {
      const answer = await askConsent(request);
      expect(answer).to.deep.include({ code: WireErrorCode.NOT_FOUND });
      expect((answer as ErrorAnswer).message).to.match(why);
    };
    // Skips the first bill: a bound past it, crediting only the second.
    await refused({ epoch, prevBound: 0n, newBound: keys[1], work: 1_000n }, /expected work 1030 \(2 bills/);
    // Starts past the first bill: the guardian's own choice of prevBound cannot hide it either.
    await refused({ epoch, prevBound: keys[0], newBound: keys[2], work: 7n }, /expected work 1007/);
    // Claims more, or uncapped, work.
    await refused({ epoch, prevBound: 0n, newBound: keys[1], work: 1_031n }, /expected work 1030/);
    await refused({ epoch, prevBound: 0n, newBound: keys[1], work: 4_030n }, /expected work 1030/);
    // A bound that is no bill's order key (between two of them, or past them all).
    await refused({ epoch, prevBound: 0n, newBound: keys[1] + 1n, work: 1_030n }, /newBound .* order key of a bill/);
    await refused({ epoch, prevBound: 0n, newBound: (1n << 200n) - 1n, work: 1_037n }, /newBound/);
    // An epoch it holds nothing for.
    await refused({ epoch: epoch - 1n, prevBound: 0n, newBound: keys[0], work: 30n }, /newBound/);
    // The running epoch.
    await refused({ epoch: epoch + 1n, prevBound: 0n, newBound: keys[0], work: 30n }, /ended epoch/);

    // A bill whose key left the identity tree is not counted: no proof could carry it.
    const follower = {
      has: (keyHash: bigint) => keyHash !== picked[0].keyHash,
      sync: () => Promise.resolve(),
    };
    const withoutFirst = new BillService(node.libp2p, {
      db,
      operator: f.operator,
      currentEpoch: () => f.parameters.currentEpoch(),
      identityTree: follower,
      consent: { signer: f.op, domain: f.domain, maxWorkPerBill: RELAY_BATCH_TEST_PARAMS.maxWorkPerBill },
    });
    const request = { type: BillsType.CONSENT_REQUEST, epoch, prevBound: 0n, newBound: keys[1], work: 1_000n } as const;
    const consent = await withoutFirst.consent(request);
    expect(recoverSlotConsentSigner(f.domain, epoch, { node: f.operator, ...request }, consent)).to.equal(f.operator);

    // A node run without a consent signer says so.
    const unsigned = new BillService(node.libp2p, {
      db,
      operator: f.operator,
      currentEpoch: () => f.parameters.currentEpoch(),
      identityTree: follower,
    });
    const error = await unsigned.consent(request).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(RequestRefused);
    expect((error as RequestRefused).code).to.equal(WireErrorCode.UNSUPPORTED);
  });
});
