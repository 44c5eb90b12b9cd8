import { expect } from "chai";
import { ethers, network } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { getAddress, getBytes, keccak256, toUtf8Bytes, type Signer, type TypedDataDomain } from "ethers";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { deployProtocolFixture } from "../fixtures/protocol";
import { byOrderKey, registerRecipients, stakeNode } from "../fixtures/rollup";
import { billKeyOf, nodeIdFromAddress, recipientKeyHash, signBill, type SignedBill } from "../../sdk/bill/bill";
import { buildRelayBatch, orderKey, RELAY_BATCH_TEST_PARAMS } from "../../sdk/bill/batchInput";
import { proveRelayBatch, type RollupSlot } from "../../sdk/bill/prove";
import { NO_CONSENT, recoverSlotConsentSigner, rollupDomain, signSlotConsent } from "../../sdk/chain/consent";
import { IdentityTree } from "../../sdk/chain/identityTree";
import { NodeRole, TOKEN, parameterIndex } from "../../sdk/chain/protocol";
import {
  GUARDIAN_STATE_FILE,
  Guardian,
  GuardianError,
  Libp2pBillSource,
  type BillSource,
  type GuardianEvent,
} from "../../node/guardian";
import { BillService, IdentityTreeFollower } from "../../node/bills";
import { openNodeDatabase, type NodeDatabase } from "../../node/db";
import { createEdgeHost, type EdgeHost } from "../../node/host";
import { readEdgeNodes } from "../../sdk/chain/nodes";
import { BILLS_MAX_FRAME_BYTES, BILLS_PROTOCOL, FrameDecoder, encodeFrame } from "../../sdk/wire/frame";
import { BillsType, encodeBillsMessage, parseBillsMessage } from "../../sdk/wire/messages";
import {
  ProverError,
  WorkerProver,
  circuitArtifactPaths,
  type BatchProver,
  type ProofProgress,
} from "../../node/prover";

const RECIPIENTS = 5;

/**
 * Two edge nodes, two guardians (the daemon's and a competitor), and five recipients whose DIDs and bill keys are
 * registered on chain, sorted by order key.
 */
async function guardianFixture() {
  const base = await deployProtocolFixture();
  const { parameters, signers } = base;
  const [, edgeA, edgeB, guardian, rival, outsider] = signers;
  await stakeNode(base, edgeA, NodeRole.Edge, 1_000n * TOKEN);
  await stakeNode(base, edgeB, NodeRole.Edge, 1_000n * TOKEN);
  await stakeNode(base, guardian, NodeRole.Guardian, 2_000n * TOKEN);
  await stakeNode(base, rival, NodeRole.Guardian, 2_000n * TOKEN);
  const recipients = await registerRecipients(base, signers.slice(10, 10 + RECIPIENTS), "guardian-test", edgeA.address);
  recipients.sort(byOrderKey);
  const epoch = await parameters.currentEpoch();
  const epochEnd = await parameters.epochStart(epoch + 1n);
  const billFor = (recipient: number, node: string, messageCount: bigint, forEpoch = epoch): SignedBill =>
    signBill(recipients[recipient].privateKey, {
      nodeId: nodeIdFromAddress(node),
      epoch: forEpoch,
      messageCount,
      byteCount: messageCount * 500n,
    });
  const startBlock = base.deployment.startBlock;
  const domain = rollupDomain((await ethers.provider.getNetwork()).chainId, await base.rollup.getAddress());
  // Each edge node registered with its own account as signer: that wallet signs its consents.
  const nodeSigners = new Map<string, Signer>([edgeA, edgeB].map((s) => [s.address, s]));
  return {
    ...base,
    edgeA,
    edgeB,
    guardian,
    rival,
    outsider,
    recipients,
    epoch,
    epochEnd,
    billFor,
    startBlock,
    domain,
    nodeSigners,
  };
}

type Fixture = Awaited<ReturnType<typeof guardianFixture>>;

/**
 * A bill source holding a fixed list: what the edge nodes would hand over for the epoch. It consents to every slot
 * with the node's registered signer wallet, except for the nodes in `refuse`; `asked` records the consents asked.
 */
function listSource(
  f: Pick<Fixture, "nodeSigners" | "domain">,
  bills: readonly SignedBill[],
  refuse: ReadonlySet<string> = new Set(),
): BillSource & { calls: bigint[]; asked: string[] } {
  const calls: bigint[] = [];
  const asked: string[] = [];
  return {
    calls,
    asked,
    async collect(epoch) {
      calls.push(epoch);
      return bills.filter((b) => b.bill.epoch === epoch || b.bill.epoch === epoch + 1n);
    },
    async consent(node, epoch, slot) {
      asked.push(node);
      const signer = f.nodeSigners.get(getAddress(node));
      if (signer === undefined || refuse.has(getAddress(node))) throw new Error(`listSource: ${node} refuses`);
      return signSlotConsent(signer, f.domain, epoch, { node, ...slot });
    },
  };
}

/** A settled slot's node, bounds and work, checking on the way that it carries the node's consent. */
function settledSlot(domain: TypedDataDomain, epoch: bigint, slot: RollupSlot) {
  expect(recoverSlotConsentSigner(domain, epoch, slot, slot)).to.equal(slot.node); // each node signs for itself here
  return { node: slot.node, prevBound: slot.prevBound, newBound: slot.newBound, work: slot.work };
}

describe("node/guardian: settles bills with real proofs on the real rollup", function () {
  this.timeout(180_000);

  const artifacts = circuitArtifactPaths("relay_batch_test");
  const prover = new WorkerProver(artifacts);
  let root: string;

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), "sending-guardian-"));
  });
  after(async () => {
    await prover.close();
    await rm(root, { recursive: true, force: true });
  });

  function newGuardian(
    f: Fixture,
    dataDir: string,
    source: BillSource,
    events: GuardianEvent[] = [],
    p: BatchProver = prover,
  ) {
    return new Guardian({
      dataDir,
      contracts: {
        rollup: f.rollup.connect(f.guardian),
        registry: f.registry,
        didRegistry: f.didRegistry,
        parameters: f.parameters,
      },
      startBlock: f.startBlock,
      source,
      circuit: RELAY_BATCH_TEST_PARAMS,
      prover: p,
      onEvent: (event) => events.push(event),
    });
  }

  it("settles two nodes' bills after the epoch ends, three bills for one node over two batches, and nothing twice", async () => {
    const f = await loadFixture(guardianFixture);
    const { edgeA, edgeB, guardian, outsider, billFor, epoch, rollup } = f;
    const tampered = billFor(4, edgeB.address, 9n);
    const bills = [
      billFor(0, edgeA.address, 3n), // superseded by the larger cumulative bill below
      billFor(0, edgeA.address, 40n),
      billFor(1, edgeA.address, 5_000n), // credits 1,000 (the per-bill cap)
      billFor(2, edgeA.address, 2n), // the third bill of A: the circuit's slot holds two, so a second batch
      billFor(3, edgeB.address, 7n),
      { ...tampered, bill: { ...tampered.bill, messageCount: 900n } }, // signature no longer matches
      billFor(4, outsider.address, 50n), // not an edge node
      billFor(4, edgeB.address, 60n, epoch + 1n), // the running epoch, not the ended one
      signBill(getBytes(keccak256(toUtf8Bytes("not registered"))), {
        nodeId: nodeIdFromAddress(edgeB.address),
        epoch,
        messageCount: 70n,
        byteCount: 1n,
      }), // a key outside the identity tree
    ];
    const events: GuardianEvent[] = [];
    const source = listSource(f, bills);
    const daemon = newGuardian(f, path.join(root, "settle"), source, events);

    expect((await daemon.runOnce()).epochs).to.deep.equal([]); // the epoch is still running: nothing to do
    await time.increaseTo(f.epochEnd);

    let ticks = 0;
    const timer = setInterval(() => ticks++, 20);
    const report = await daemon.runOnce().finally(() => clearInterval(timer));

    expect(report.epochs).to.deep.equal([epoch]);
    expect(report.settlements).to.have.length(2);
    const [first, second] = report.settlements;
    // Nodes fill slots in address order.
    const expected: [string, bigint][] = [
      [edgeA.address, 40n + 1_000n],
      [edgeB.address, 7n],
    ];
    expected.sort((x, y) => (BigInt(x[0]) < BigInt(y[0]) ? -1 : 1));
    expect(first.slots.map((s) => [s.node, s.work])).to.deep.equal(expected);
    for (const slot of [...first.slots, ...second.slots]) settledSlot(f.domain, epoch, slot);
    // Each node was asked once per slot, before its batch was proven.
    expect([...source.asked].sort()).to.deep.equal([edgeA.address, edgeA.address, edgeB.address].sort());
    const slotA = first.slots.find((s) => s.node === edgeA.address)!;
    expect(second.slots.map((s) => [s.node, s.prevBound, s.work])).to.deep.equal([[edgeA.address, slotA.newBound, 2n]]);
    expect(await rollup.workOf(edgeA.address, epoch)).to.equal(1_042n);
    expect(await rollup.workOf(edgeB.address, epoch)).to.equal(7n);
    expect(await rollup.boundOf(edgeA.address, epoch)).to.equal(orderKey(f.recipients[2].keyHash));
    expect(await rollup.guardianWorkOf(guardian.address, epoch)).to.equal(1_049n);
    const collected = events.find((e) => e.kind === "collected");
    expect(collected).to.deep.include({ received: 9, accepted: 4 }); // recipient 0 once, at its larger bill

    // Proof progress came through, rising to 1, and the event loop kept running while the worker proved.
    const progress = events
      .filter((e) => e.kind === "progress")
      .map((e) => (e as { progress: ProofProgress }).progress);
    expect(progress[0].stage).to.equal("witness");
    expect(progress.at(-1)).to.deep.include({ stage: "done", fraction: 1 });
    expect(progress.filter((p) => p.stage === "done")).to.have.length(2); // one per proof
    for (let i = 1; i < progress.length; i++) {
      if (progress[i].stage !== "witness") expect(progress[i].fraction).to.be.at.least(progress[i - 1].fraction);
    }
    expect(ticks).to.be.greaterThan(50); // two proofs of seconds each at 20 ms a tick: a blocked loop counts a handful

    // A second round finds every bill at or below the bounds: no proof, no transaction.
    const nonce = await ethers.provider.getTransactionCount(guardian.address);
    const again = await daemon.runOnce();
    expect(again.settlements).to.deep.equal([]);
    expect(await ethers.provider.getTransactionCount(guardian.address)).to.equal(nonce);
    expect(await rollup.workOf(edgeA.address, epoch)).to.equal(1_042n);
  });

  it("recovers from a lost race by rebuilding above the bound another guardian stored, counting no bill twice", async () => {
    const f = await loadFixture(guardianFixture);
    const { edgeA, rival, billFor, epoch, rollup } = f;
    const bills = [billFor(0, edgeA.address, 11n), billFor(1, edgeA.address, 22n)];
    await time.increaseTo(f.epochEnd);

    // While the daemon proves its batch (recipients 0 and 1), a rival guardian settles recipient 0 for node A.
    const tree = IdentityTree.fromEvents(
      (await f.didRegistry.queryFilter(f.didRegistry.filters.IdentityTreeChanged())).map((e) => ({
        index: e.args.index,
        leaf: e.args.leaf,
      })),
    );
    let raced = false;
    const racingProver = {
      prove: async (...args: Parameters<WorkerProver["prove"]>) => {
        if (!raced) {
          raced = true;
          const batch = buildRelayBatch(RELAY_BATCH_TEST_PARAMS, {
            epoch,
            tree,
            slots: [{ nodeId: nodeIdFromAddress(edgeA.address), prevBound: 0n, bills: [bills[0]] }],
          });
          const proof = await proveRelayBatch(batch, artifacts);
          const slots = await Promise.all(
            proof.slots.map(async (slot) =>
              BigInt(slot.node) === 0n ? slot : { ...slot, ...(await signSlotConsent(edgeA, f.domain, epoch, slot)) },
            ),
          );
          await rollup.connect(rival).submitBatch(epoch, tree.root, slots, proof.proof);
        }
        return prover.prove(...args);
      },
    };
    const events: GuardianEvent[] = [];
    const daemon = newGuardian(f, path.join(root, "race"), listSource(f, bills), events, racingProver);
    const report = await daemon.runOnce();

    expect(events.filter((e) => e.kind === "rebuild").map((e) => (e as { reason: string }).reason)).to.deep.equal([
      "RollupBoundMismatch",
    ]);
    expect(report.settlements).to.have.length(1);
    expect(report.settlements[0].slots.map((slot) => settledSlot(f.domain, epoch, slot))).to.deep.equal([
      {
        node: edgeA.address,
        prevBound: orderKey(f.recipients[0].keyHash),
        newBound: orderKey(f.recipients[1].keyHash),
        work: 22n,
      },
    ]);
    expect(await rollup.workOf(edgeA.address, epoch)).to.equal(11n + 22n);
    expect(await rollup.guardianWorkOf(rival.address, epoch)).to.equal(11n);
    expect(await rollup.guardianWorkOf(f.guardian.address, epoch)).to.equal(22n);
  });

  it("after a restart waits for the batch it left in flight instead of sending another", async () => {
    const f = await loadFixture(guardianFixture);
    const { edgeA, edgeB, guardian, billFor, epoch, rollup } = f;
    const source = listSource(f, [billFor(0, edgeA.address, 5n), billFor(1, edgeB.address, 6n)]);
    const dataDir = path.join(root, "restart");
    await time.increaseTo(f.epochEnd);
    const nonce = await ethers.provider.getTransactionCount(guardian.address);
    await network.provider.send("evm_setAutomine", [false]);
    try {
      // The first run proves and sends its batch; it is stopped before the transaction is mined.
      const first = newGuardian(f, dataDir, source);
      await first.start();
      const sentAt = Date.now();
      while (first.pendingTxHash === undefined) {
        if (Date.now() - sentAt > 120_000) throw new Error("the first run never sent its batch");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const txHash = first.pendingTxHash;
      await first.stop();
      const saved = JSON.parse(await readFile(path.join(dataDir, GUARDIAN_STATE_FILE), "utf8")) as {
        pending?: { txHash: string };
      };
      expect(saved.pending?.txHash).to.equal(txHash);

      // The second run, from the same data directory, waits for that transaction; it is mined meanwhile.
      const events: GuardianEvent[] = [];
      const second = newGuardian(f, dataDir, source, events);
      const round = second.runOnce();
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(events).to.deep.equal([]); // still waiting: it has not collected or proved anything
      await network.provider.send("evm_mine", []);
      const report = await round;

      expect(events.map((e) => e.kind)).to.deep.equal(["settled", "resumed", "collected"]);
      expect(events[1]).to.deep.equal({ kind: "resumed", txHash, status: "settled" });
      expect(events.filter((e) => e.kind === "proving")).to.deep.equal([]);
      expect(report.settlements.map((s) => s.txHash)).to.deep.equal([txHash]);
      expect(second.settlements.map((s) => s.txHash)).to.deep.equal([txHash]);
      expect(second.pendingTxHash).to.equal(undefined);
      expect(await ethers.provider.getTransactionCount(guardian.address)).to.equal(nonce + 1); // one batch sent, ever
      expect(await rollup.workOf(edgeA.address, epoch)).to.equal(5n);
      expect(await rollup.workOf(edgeB.address, epoch)).to.equal(6n);
    } finally {
      await network.provider.send("evm_setAutomine", [true]);
    }
  });

  it("leaves out a node that refuses consent and settles the others, all through the settlement window", async () => {
    const f = await loadFixture(guardianFixture);
    const { edgeA, edgeB, billFor, epoch, rollup, parameters } = f;
    const bills = [billFor(0, edgeA.address, 12n), billFor(1, edgeB.address, 34n), billFor(2, edgeB.address, 56n)];
    const events: GuardianEvent[] = [];
    const source = listSource(f, bills, new Set([edgeB.address]));
    const daemon = newGuardian(f, path.join(root, "refuse"), source, events);
    // Past the forced-inclusion delay, inside the window: guardians may still settle (there is no guardian phase).
    const delay = await parameters.get(parameterIndex("ForcedInclusionDelay"));
    const window = await parameters.get(parameterIndex("SettlementWindow"));
    expect(delay).to.be.lessThan(window);
    await time.increaseTo(f.epochEnd + delay + 1n);

    const report = await daemon.runOnce();
    expect(report.epochs).to.deep.equal([epoch]);
    expect(report.settlements).to.have.length(1);
    expect(report.settlements[0].slots.map((slot) => settledSlot(f.domain, epoch, slot))).to.deep.equal([
      { node: edgeA.address, prevBound: 0n, newBound: orderKey(f.recipients[0].keyHash), work: 12n },
    ]);
    const rebuilds = events.filter((e) => e.kind === "rebuild").map((e) => (e as { reason: string }).reason);
    expect(rebuilds).to.have.length(1);
    expect(rebuilds[0]).to.contain(`no consent from ${edgeB.address}`);
    // Asked before proving: the one proof made carried only A's slot.
    const proving = events.filter((e) => e.kind === "proving") as { slots: readonly RollupSlot[] }[];
    expect(proving.map((e) => e.slots.map((s) => s.node))).to.deep.equal([[edgeA.address]]);
    expect(await rollup.workOf(edgeA.address, epoch)).to.equal(12n);
    expect(await rollup.workOf(edgeB.address, epoch)).to.equal(0n);
    expect(await rollup.boundOf(edgeB.address, epoch)).to.equal(0n);

    // Without consent, the rollup refuses a guardian's slot for B outright.
    const tree = IdentityTree.fromEvents(
      (await f.didRegistry.queryFilter(f.didRegistry.filters.IdentityTreeChanged())).map((e) => ({
        index: e.args.index,
        leaf: e.args.leaf,
      })),
    );
    const batch = buildRelayBatch(RELAY_BATCH_TEST_PARAMS, {
      epoch,
      tree,
      slots: [{ nodeId: nodeIdFromAddress(edgeB.address), prevBound: 0n, bills: bills.slice(1) }],
    });
    const proof = await proveRelayBatch(batch, artifacts);
    expect(proof.slots[0]).to.deep.include(NO_CONSENT);
    await expect(rollup.connect(f.guardian).submitBatch(epoch, tree.root, proof.slots, proof.proof))
      .to.be.revertedWithCustomError(rollup, "RollupNoConsent")
      .withArgs(0, edgeB.address);

    // Once B consents, the next round settles it; once the window closes, rounds leave the epoch alone.
    const willing = listSource(f, bills);
    const later = newGuardian(f, path.join(root, "refuse-later"), willing, events);
    const next = await later.runOnce();
    expect(next.settlements.map((s) => s.slots.map((slot) => [slot.node, slot.work]))).to.deep.equal([
      [[edgeB.address, 90n]],
    ]);
    await time.increaseTo(f.epochEnd + window);
    expect((await later.runOnce()).epochs).to.deep.equal([]);
  });
});

describe("node/guardian: collects bills over libp2p from real edge nodes' bill books", function () {
  this.timeout(120_000);

  it("settles what recipients submitted to two edge nodes, collected with BILLS COLLECT", async () => {
    const f = await loadFixture(guardianFixture);
    const { edgeA, edgeB, billFor, epoch, rollup, registry, parameters, didRegistry } = f;
    const root = await mkdtemp(path.join(tmpdir(), "sending-guardian-p2p-"));
    const hosts: EdgeHost[] = [];
    const books: { service: BillService; db: NodeDatabase }[] = [];
    let prover: WorkerProver | undefined;
    try {
      for (const [name, operator] of [
        ["a", edgeA],
        ["b", edgeB],
      ] as const) {
        const host = await createEdgeHost({ dataDir: path.join(root, name) });
        hosts.push(host);
        const db = openNodeDatabase(path.join(root, `${name}.sqlite`), { withoutInbox: true });
        const service = new BillService(host.libp2p, {
          db,
          operator: operator.address,
          currentEpoch: () => parameters.currentEpoch(),
          identityTree: new IdentityTreeFollower(didRegistry, f.startBlock),
          consent: {
            signer: operator, // registered as its own signer
            domain: f.domain,
            maxWorkPerBill: RELAY_BATCH_TEST_PARAMS.maxWorkPerBill,
          },
        });
        await service.start();
        books.push({ service, db });
        const addrs = host.libp2p.getMultiaddrs().map((a) => a.toString());
        await registry.connect(operator).updateNode(host.libp2p.peerId.toString(), addrs, operator.address);
      }
      // Recipients hand their bills to the nodes over the wire, during the epoch.
      const client = await createEdgeHost({ dataDir: path.join(root, "client") });
      hosts.push(client);
      const submit = async (to: EdgeHost, bills: SignedBill[]) => {
        const stream = await client.libp2p.dialProtocol(to.libp2p.getMultiaddrs(), BILLS_PROTOCOL, {
          signal: AbortSignal.timeout(5_000),
        });
        const { type, body } = encodeBillsMessage({ type: BillsType.SUBMIT, bills });
        stream.send(encodeFrame(type, body, BILLS_MAX_FRAME_BYTES));
        await stream.close();
        const decoder = new FrameDecoder(BILLS_MAX_FRAME_BYTES);
        const answers = [];
        for await (const chunk of stream) answers.push(...decoder.push(chunk));
        return answers.map((frame) => parseBillsMessage(frame.type, frame.body));
      };
      expect(await submit(hosts[0], [billFor(0, edgeA.address, 8n), billFor(1, edgeA.address, 9n)])).to.deep.equal([
        { type: BillsType.ACCEPTED, accepted: 2 },
      ]);
      expect(await submit(hosts[1], [billFor(2, edgeB.address, 10n)])).to.deep.equal([
        { type: BillsType.ACCEPTED, accepted: 1 },
      ]);

      const collector = await createEdgeHost({ dataDir: path.join(root, "guardian") });
      hosts.push(collector);
      const source = new Libp2pBillSource({
        host: collector.libp2p,
        listNodes: (signal) => readEdgeNodes(registry, { signal }),
      });
      prover = new WorkerProver(circuitArtifactPaths("relay_batch_test"));
      const daemon = new Guardian({
        dataDir: path.join(root, "state"),
        contracts: { rollup: rollup.connect(f.guardian), registry, didRegistry, parameters },
        startBlock: f.startBlock,
        source,
        circuit: RELAY_BATCH_TEST_PARAMS,
        prover,
      });
      await time.increaseTo(f.epochEnd);
      const report = await daemon.runOnce();
      expect(report.settlements).to.have.length(1);
      expect(await rollup.workOf(edgeA.address, epoch)).to.equal(17n);
      expect(await rollup.workOf(edgeB.address, epoch)).to.equal(10n);

      // A slot the node's bills do not back, or a node that is not an edge node, is a typed refusal over the wire.
      const key = orderKey(f.recipients[0].keyHash) < orderKey(f.recipients[1].keyHash) ? 0 : 1;
      const slot = { prevBound: 0n, newBound: orderKey(f.recipients[key].keyHash), work: 999n };
      for (const node of [edgeA.address, f.outsider.address]) {
        const refusal = await source.consent(node, epoch, slot).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(refusal).to.be.instanceOf(GuardianError);
        expect((refusal as GuardianError).code).to.equal("GUARDIAN_CONSENT_REFUSED");
        expect((refusal as GuardianError).message).to.match(
          node === edgeA.address ? /refused \(6\): BillService\.consent: expected work 8/ : /not an active edge node/,
        );
      }
    } finally {
      await prover?.close();
      for (const { service, db } of books) {
        await service.stop();
        db.close();
      }
      await Promise.all(hosts.map((h) => h.stop()));
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe("node/guardian: a hostile edge node cannot stall or spoil collection", function () {
  this.timeout(60_000);

  it("keeps only the answering node's own bills, and gives up on a node that never answers consent", async () => {
    const f = await loadFixture(guardianFixture);
    const { edgeA, edgeB, billFor, epoch } = f;
    const root = await mkdtemp(path.join(tmpdir(), "sending-guardian-hostile-"));
    const hosts: EdgeHost[] = [];
    try {
      // Node B's host answers COLLECT with a bill of its own and one naming node A (from a DID it controls, say),
      // and never answers a CONSENT_REQUEST.
      const hostile = await createEdgeHost({ dataDir: path.join(root, "hostile") });
      hosts.push(hostile);
      await hostile.libp2p.handle(BILLS_PROTOCOL, async (stream) => {
        const decoder = new FrameDecoder(BILLS_MAX_FRAME_BYTES);
        for await (const chunk of stream) {
          for (const frame of decoder.push(chunk)) {
            if (parseBillsMessage(frame.type, frame.body).type !== BillsType.COLLECT) continue; // consent: silence
            const bills = [billFor(2, edgeB.address, 5n), billFor(3, edgeA.address, 1_000n)];
            const { type, body } = encodeBillsMessage({ type: BillsType.BILLS, bills, more: false });
            stream.send(encodeFrame(type, body, BILLS_MAX_FRAME_BYTES));
            await stream.close();
          }
        }
      });
      const info = {
        operator: edgeB.address,
        peerId: hostile.libp2p.peerId.toString(),
        multiaddrs: hostile.libp2p.getMultiaddrs().map((a) => a.toString()),
        relayPublicKey: hostile.relayPublicKey,
        active: true,
      };
      const collector = await createEdgeHost({ dataDir: path.join(root, "guardian") });
      hosts.push(collector);
      const source = new Libp2pBillSource({ host: collector.libp2p, listNodes: async () => [info], timeoutMs: 500 });

      const collected = await source.collect(epoch);
      expect(collected.map((b) => b.bill.nodeId)).to.deep.equal([nodeIdFromAddress(edgeB.address)]);

      const started = Date.now();
      const refusal = await source.consent(edgeB.address, epoch, { prevBound: 0n, newBound: 1n, work: 5n }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(refusal).to.be.instanceOf(Error);
      expect(Date.now() - started).to.be.lessThan(5_000); // the 500 ms timeout ends the wait, not the node
    } finally {
      await Promise.all(hosts.map((h) => h.stop()));
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe("node/prover: proofs in a worker thread", function () {
  this.timeout(60_000);

  it("terminates the worker on abort and rejects with PROVER_ABORTED", async () => {
    const tree = new IdentityTree();
    const key = getBytes(keccak256(toUtf8Bytes("prover-test/recipient")));
    tree.insert(recipientKeyHash(billKeyOf(key)));
    const bill = signBill(key, { nodeId: 0x1234n, epoch: 3n, messageCount: 4n, byteCount: 5n });
    const batch = buildRelayBatch(RELAY_BATCH_TEST_PARAMS, {
      epoch: 3n,
      tree,
      slots: [{ nodeId: 0x1234n, prevBound: 0n, bills: [bill] }],
    });
    const prover = new WorkerProver(circuitArtifactPaths("relay_batch_test"));
    const controller = new AbortController();
    const stages: string[] = [];
    const proof = prover.prove(batch, {
      signal: controller.signal,
      onProgress: (p) => {
        stages.push(p.stage);
        if (p.stage === "prove") controller.abort();
      },
    });
    const error = await proof.then(
      () => undefined,
      (e: unknown) => e,
    );
    await prover.close();
    expect(error).to.be.instanceOf(ProverError);
    expect((error as ProverError).code).to.equal("PROVER_ABORTED");
    expect(stages).to.deep.equal(["witness", "prove"]);
    const early = await prover.prove(batch, { signal: controller.signal }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((early as ProverError).code).to.equal("PROVER_ABORTED"); // an aborted signal starts no worker
  });

  it("names the missing build when a circuit's artefacts are absent", () => {
    expect(() => circuitArtifactPaths("no_such_circuit")).to.throw(ProverError, /npm run build:circuits/);
  });
});
