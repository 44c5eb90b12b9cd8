import { expect } from "chai";
import { ethers } from "hardhat";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { setBalance } from "@nomicfoundation/hardhat-network-helpers";
import { Wallet, getBytes, parseEther, type Signer, type TransactionRequest } from "ethers";
import path from "node:path";
import { deployProtocolFixture } from "../fixtures/protocol";
import { createTestClient, fundedWallet, until, useEdgeNetwork } from "../fixtures/edgeNetwork";
import type { EdgeNode } from "../../node/edge";
import { DEFAULT_INBOX_QUOTA } from "../../node/inbox";
import { GroupSession, SenderKeyError } from "../../sdk/crypto/senderKeys";
import { RatchetError, TamperedMessageError } from "../../sdk/crypto/ratchet";
import { readEdgeNodes } from "../../sdk/chain/nodes";
import { sendPacket, recipientIdOf } from "../../sdk/net/calls";
import { peerIdBytes } from "../../sdk/net/peerId";
import {
  ContentKind,
  EnvelopeKind,
  InnerType,
  encodeContent,
  parseBackupChunk,
  sealEnvelope,
} from "../../sdk/client/envelope";
import { concatBytes, toHex } from "../../sdk/crypto/bytes";
import { INBOX_MAX_BATCH, encodeDelivery } from "../../sdk/wire/messages";
import { wrapPacket } from "../../sdk/wire/onion";
import { FileStorage, MemoryStorage, StorageError, type StorageAdapter } from "../../sdk/storage";
import {
  ClientError,
  MAX_MESSAGE_BYTES,
  NoPrekeysError,
  ONE_TIME_PREKEYS_BATCH,
  SendingClient,
  UnknownRecipientError,
  type ReceivedMessage,
  type SendingClientOptions,
} from "../../sdk/client";

/** Discovery and directory poll the chain this often in the test (the default 2 s would only slow the test down). */
const POLL_MS = 100;
/** Longest wait for a message on its way: 3 hops on 127.0.0.1 take milliseconds; this only bounds a failure. */
const WAIT_MS = 10_000;

type Ctx = Awaited<ReturnType<typeof deployProtocolFixture>>;

/** Resolves with the next message matching `filter`, or fails after WAIT_MS. */
function next(client: SendingClient, filter: (m: ReceivedMessage) => boolean = () => true): Promise<ReceivedMessage> {
  return client.nextMessage(filter, { signal: AbortSignal.timeout(WAIT_MS) });
}

/** Waits until `check` is true, polling; fails after WAIT_MS. */
/** A memory storage that refuses to write keys containing `part` while `failing` is set (a full disk, say). */
function flakyStorage(part: string): { storage: StorageAdapter; failing: boolean } {
  const base = new MemoryStorage();
  const flaky: { storage: StorageAdapter; failing: boolean } = {
    failing: false,
    storage: {
      get: (key: string) => base.get(key),
      list: (prefix: string) => base.list(prefix),
      delete: (key: string) => base.delete(key),
      put: (key: string, value: Uint8Array) =>
        flaky.failing && key.includes(part)
          ? Promise.reject(new StorageError("Io", "test: the disk is full"))
          : base.put(key, value),
    },
  };
  return flaky;
}

/** The digests (as backup pointers) of the backup chunks parked for `recipient` at `node`, oldest first. */
function parkedBackups(node: EdgeNode, recipient: Uint8Array): string[] {
  return node.inbox.store
    .page(recipient, Date.now(), 100)
    .filter((row) => row.envelope[0] === EnvelopeKind.BACKUP)
    .map((row) => `sha256:${toHex(parseBackupChunk(row.envelope).digest)}`);
}

describe("e2e: chat between wallets through real edge nodes on 127.0.0.1", function () {
  this.timeout(120_000);

  const network = useEdgeNetwork("chat", 4, POLL_MS, WAIT_MS);
  const { nodes, clients } = network;
  let ctx: Ctx;
  let root: string;
  let alice: HardhatEthersSigner;
  let bob: HardhatEthersSigner;
  let carol: HardhatEthersSigner;
  let dave: HardhatEthersSigner;

  async function client(
    signer: Signer,
    storage: StorageAdapter = new MemoryStorage(),
    extra: Partial<SendingClientOptions> = {},
  ) {
    // The group tests here are about membership, keys and rekeys once in a group: their clients join at once.
    // Invitations (the default, "ask") are tested in invitations.test.ts.
    return createTestClient(ctx, clients, signer, storage, { groupInvitations: "accept", ...extra });
  }

  /** A second app of `signer`'s wallet: a device account linked both ways, registered on `homeNode` and started. */
  async function device(signer: HardhatEthersSigner, homeNode: string, start = true) {
    const d = await SendingClient.createDevice({
      signer,
      storage: new MemoryStorage(),
      deployment: ctx.deployment,
      provider: ethers.provider,
      oneTimePrekeys: 6,
      groupInvitations: "accept", // as `client` above
    });
    clients.push(d);
    d.on("error", () => undefined);
    await d.register({ homeNodes: [homeNode] });
    if (start) await d.start();
    return d;
  }

  /** Every message `client` emits from now on. */
  function collect(c: SendingClient): ReceivedMessage[] {
    const got: ReceivedMessage[] = [];
    c.on("message", (m) => got.push(m));
    return got;
  }

  /** Sends `envelope` to `recipient` through 3 hops ending at its home node `exitOperator`, outside any client. */
  async function deliverRaw(from: SendingClient, recipient: string, exitOperator: string, envelope: Uint8Array) {
    const edges = await readEdgeNodes(ctx.registry);
    const exit = edges.find((n) => n.operator === exitOperator)!;
    const [entry, middle] = edges.filter((n) => n.operator !== exitOperator);
    const payload = encodeDelivery({ messageId: crypto.getRandomValues(new Uint8Array(16)), ttlSeconds: 60, envelope });
    const route = [entry, middle, exit].map((n) => ({
      peerId: peerIdBytes(n.peerId),
      relayPublicKey: n.relayPublicKey,
    }));
    await sendPacket(
      from.host,
      { peerId: entry.peerId, multiaddrs: entry.multiaddrs },
      wrapPacket(route, recipientIdOf(recipient), payload),
    );
  }

  before(() => {
    ({ ctx, root } = network);
    [alice, bob, carol, dave] = ctx.signers.slice(5, 9);
  });

  let aliceClient: SendingClient;
  let bobClient: SendingClient;
  /** Dave has a DID but no prekeys: nobody can open a session to him (he can open one to others). */
  let daveClient: SendingClient;
  const bobStorage = new MemoryStorage();

  it("refuses to send to an address without a DID, and to one whose home nodes hold no prekeys", async () => {
    aliceClient = await client(alice);
    await aliceClient.register({ homeNodes: [nodes[0].operator] });
    await aliceClient.start();
    const error = await aliceClient.send(dave.address, "anyone there?").then(
      () => expect.fail("expected UnknownRecipientError"),
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(UnknownRecipientError);
    // Dave registers a DID on chain but never publishes prekeys to his home node.
    daveClient = await client(dave);
    await daveClient.did.register(daveClient.identity, { homeNodes: [nodes[3].operator] });
    const noPrekeys = await aliceClient.send(dave.address, "hello?").then(
      () => expect.fail("expected NoPrekeysError"),
      (e: unknown) => e,
    );
    expect(noPrekeys).to.be.instanceOf(NoPrekeysError);
  });

  it("chats both ways in text and binary; replicas from two home nodes arrive once, billed per node", async () => {
    bobClient = await client(bob, bobStorage);
    await bobClient.register({ homeNodes: [nodes[1].operator, nodes[2].operator] });
    // Bob's 6 one-time prekeys were split 3 and 3, each below the low-water mark: each node got a batch of 20 more.
    for (const node of [nodes[1], nodes[2]]) {
      expect(node.prekeys.oneTimePrekeysHeld(bob.address)).to.equal(3 + ONE_TIME_PREKEYS_BATCH);
    }
    expect(nodes[0].prekeys.oneTimePrekeysHeld(alice.address)).to.equal(6);
    await bobClient.start();
    const received: ReceivedMessage[] = [];
    bobClient.on("message", (m) => received.push(m));

    const arriving = next(bobClient);
    const sent = await aliceClient.send(bob.address, "hi bob");
    const first = await arriving;
    expect(first.from).to.equal(alice.address);
    expect(first.text).to.equal("hi bob");
    expect(first.messageId).to.equal(sent.messageIds[0]);
    // 3 hops by default (four nodes registered), ending at one of Bob's home nodes.
    expect(sent.routes[0]).to.have.length(3);
    expect([nodes[1].operator, nodes[2].operator]).to.include(sent.routes[0][2]);

    const reply = next(aliceClient);
    await bobClient.send(alice.address, "hi alice");
    expect((await reply).text).to.equal("hi alice");

    const binary = next(bobClient, (m) => m.kind === "binary");
    await aliceClient.send(bob.address, new Uint8Array([0, 1, 2, 255]));
    expect((await binary).data).to.deep.equal(new Uint8Array([0, 1, 2, 255]));

    // The exit replicated each message to Bob's other home node; both copies reached Bob, one was delivered.
    await until(
      async () => nodes[1].inbox.store.totalMessages() === 0 && nodes[2].inbox.store.totalMessages() === 0,
      "both home nodes to be acknowledged",
    );
    expect(received.map((m) => m.text ?? "<binary>")).to.deep.equal(["hi bob", "<binary>"]);

    // Bob signed a cumulative bill for each home node that delivered, and the nodes kept them.
    // (The count follows each acknowledgement, so it may trail the emptied inboxes by a moment.)
    await until(
      async () => (await bobClient.currentBills()).every((b) => b.bill.bill.messageCount === 2n),
      "Bob's bills to count both messages",
    );
    const bills = await bobClient.currentBills();
    expect(bills.map((b) => b.operator).sort()).to.deep.equal([nodes[1].operator, nodes[2].operator].sort());
    await until(() => nodes[1].bills.count() + nodes[2].bills.count() === 2, "the nodes to keep Bob's bills");
  });

  it("reports and drops a tampered or forged envelope, keeps receiving, and aborts a send on request", async () => {
    const errors: Error[] = [];
    const listener = (e: Error) => errors.push(e);
    bobClient.on("error", listener);
    const [entry, middle] = (await readEdgeNodes(ctx.registry)).filter((n) => n.operator !== nodes[1].operator);
    const exit = (await readEdgeNodes(ctx.registry)).find((n) => n.operator === nodes[1].operator)!;
    const deliver = async (envelope: Uint8Array) => {
      const payload = encodeDelivery({
        messageId: crypto.getRandomValues(new Uint8Array(16)),
        ttlSeconds: 60,
        envelope,
      });
      const route = [entry, middle, exit].map((n) => ({
        peerId: peerIdBytes(n.peerId),
        relayPublicKey: n.relayPublicKey,
      }));
      await sendPacket(
        aliceClient.host,
        { peerId: entry.peerId, multiaddrs: entry.multiaddrs },
        wrapPacket(route, recipientIdOf(bob.address), payload),
      );
    };
    const garbage = crypto.getRandomValues(new Uint8Array(120));
    garbage[0] = 0x01; // claims to be sealed; the seal does not open
    await deliver(garbage);
    // Sealed correctly to Bob, claiming Alice, but not from her session.
    const bobKey = bobClient.identity.publicIdentity.dh;
    await deliver(
      sealEnvelope(bobKey, {
        type: InnerType.RATCHET,
        sender: alice.address,
        body: crypto.getRandomValues(new Uint8Array(90)),
      }),
    );
    await until(() => errors.length === 2, "both envelopes to be refused");
    expect(errors[0]).to.be.instanceOf(TamperedMessageError);
    expect(errors[1]).to.be.instanceOf(RatchetError);
    await until(() => nodes[1].inbox.store.totalMessages() === 0, "the refused envelopes to be acknowledged");
    bobClient.off("error", listener);

    const still = next(bobClient);
    await aliceClient.send(bob.address, "still here");
    expect((await still).text).to.equal("still here");

    const controller = new AbortController();
    controller.abort(new Error("changed my mind"));
    await aliceClient.send(bob.address, "never", { signal: controller.signal }).then(
      () => expect.fail("expected an abort"),
      (e: Error) => expect(e.message).to.equal("changed my mind"),
    );
  });

  it("converges when two users open sessions to each other at the same time", async () => {
    const [erin, frank] = ctx.signers.slice(9, 11);
    const e = await client(erin);
    const f = await client(frank);
    await e.register({ homeNodes: [nodes[0].operator] });
    await f.register({ homeNodes: [nodes[2].operator] });
    const atErin: string[] = [];
    const atFrank: string[] = [];
    e.on("message", (m) => atErin.push(m.text!));
    f.on("message", (m) => atFrank.push(m.text!));
    // Both send before either receives anything (neither has started receiving): two initial messages cross.
    await Promise.all([e.send(frank.address, "e1"), f.send(erin.address, "f1")]);
    await Promise.all([e.start(), f.start()]);
    await until(() => atErin.length === 1 && atFrank.length === 1, "the crossing first messages");
    for (let i = 2; i <= 4; i++) {
      await e.send(frank.address, `e${i}`);
      await f.send(erin.address, `f${i}`);
    }
    await until(() => atErin.length === 4 && atFrank.length === 4, "the following messages");
    expect(atFrank).to.deep.equal(["e1", "e2", "e3", "e4"]);
    expect(atErin).to.deep.equal(["f1", "f2", "f3", "f4"]);
  });

  it("keeps messages for a recipient that is offline and delivers them when it comes back", async () => {
    await bobClient.stop();
    await aliceClient.send(bob.address, "while you were away 1");
    await aliceClient.send(bob.address, "while you were away 2");
    await until(() => nodes[1].inbox.store.totalMessages() === 2, "the messages to wait at Bob's home node");

    // Bob comes back: a new client over the same storage (sessions survived), draining the inbox on start.
    const back = await client(bob, bobStorage);
    const received: ReceivedMessage[] = [];
    back.on("message", (m) => received.push(m));
    await back.start();
    await until(() => received.length === 2, "the stored messages");
    expect(received.map((m) => m.text)).to.deep.equal(["while you were away 1", "while you were away 2"]);
    bobClient = back;

    const live = next(aliceClient);
    await bobClient.send(alice.address, "back online");
    expect((await live).text).to.equal("back online");
  });

  let bobPhone: SendingClient;

  it("delivers to every device of a user, and shows a device's messages as its user's", async () => {
    // Bob opens a second app: a device account of its own, linked both ways with Bob's DID.
    const phone = await SendingClient.createDevice({
      signer: bob,
      storage: new MemoryStorage(),
      deployment: ctx.deployment,
      provider: ethers.provider,
      oneTimePrekeys: 6,
      groupInvitations: "accept", // it takes part in the group tests below, as `client` above
    });
    clients.push(phone);
    phone.on("error", () => undefined);
    expect(phone.owner).to.equal(bob.address);
    expect(phone.address).to.not.equal(bob.address);
    await phone.register({ homeNodes: [nodes[3].operator] });
    await phone.start();
    bobPhone = phone;

    const atBob = next(bobClient);
    const atPhone = next(phone);
    const sent = await aliceClient.send(bob.address, "to every device of bob");
    expect(sent.messageIds).to.have.length(2);
    expect((await atBob).text).to.equal("to every device of bob");
    const onPhone = await atPhone;
    expect(onPhone.text).to.equal("to every device of bob");
    expect(onPhone.from).to.equal(alice.address);

    const atAlice = next(aliceClient);
    await phone.send(alice.address, "from bob's phone");
    const fromPhone = await atAlice;
    expect(fromPhone.text).to.equal("from bob's phone");
    expect(fromPhone.from).to.equal(bob.address);
    expect(fromPhone.device).to.equal(phone.address);

    // Bob's own account (linked to a device now) is still shown as Bob, not as a device of its phone.
    const fromLaptop = next(aliceClient);
    await bobClient.send(alice.address, "from bob's laptop");
    expect((await fromLaptop).from).to.equal(bob.address);
    expect((await fromLaptop).device).to.equal(undefined);
  });

  it("copies what one client of a user sends to the user's other clients, marked as sent to its recipient", async () => {
    const atAlice = collect(aliceClient);
    const copyAtPhone = next(bobPhone, (m) => m.sent === true && m.text === "sent from the laptop");
    const sent = await bobClient.send(alice.address, "sent from the laptop");
    expect(sent.copies).to.have.length(1); // to the phone
    const copy = await copyAtPhone;
    expect(copy).to.include({ sent: true, to: alice.address, from: bob.address, text: "sent from the laptop" });
    expect(copy.device).to.equal(undefined); // the wallet's own client sent it

    // The other way: the phone sends, the wallet's client gets the copy naming the phone.
    const copyAtBob = next(bobClient, (m) => m.sent === true && m.kind === "binary");
    await bobPhone.send(alice.address, new Uint8Array([7, 7, 7]));
    const back = await copyAtBob;
    expect(back).to.include({ sent: true, to: alice.address, from: bob.address, device: bobPhone.address });
    expect(back.kind).to.equal("binary");
    expect(back.data).to.deep.equal(new Uint8Array([7, 7, 7]));

    // The largest message still has room for its copy; one byte more is refused before anything leaves.
    const largest = new Uint8Array(MAX_MESSAGE_BYTES).fill(1);
    const bigCopy = next(bobPhone, (m) => m.sent === true && m.data.length === MAX_MESSAGE_BYTES);
    await bobClient.send(alice.address, largest);
    expect((await bigCopy).data).to.deep.equal(largest);
    for (const tooLarge of [new Uint8Array(MAX_MESSAGE_BYTES + 1), "x".repeat(5_000)]) {
      await bobClient.send(alice.address, tooLarge).then(
        () => expect.fail("expected MessageTooLarge"),
        (e: unknown) => expect(e).to.be.instanceOf(ClientError).with.property("code", "MessageTooLarge"),
      );
    }

    // Alice got each message once, as Bob's, and no copy.
    await until(() => atAlice.length >= 3, "the three messages at Alice");
    await new Promise((resolve) => setTimeout(resolve, 300));
    // (Each went its own route: the order of arrival is not fixed.)
    expect(atAlice.map((m) => [m.text ?? `<${m.data.length} bytes>`, m.from, m.sent])).to.have.deep.members([
      ["sent from the laptop", bob.address, undefined],
      ["<3 bytes>", bob.address, undefined],
      [`<${MAX_MESSAGE_BYTES} bytes>`, bob.address, undefined],
    ]);
  });

  it("refuses a sent copy from someone who is not a client of the same user", async () => {
    // Henry chats with Bob, then forges, over his real session, a copy "sent by Bob to Carol".
    const henry = await client(ctx.signers[12]);
    await henry.register({ homeNodes: [nodes[0].operator] });
    const hello = next(bobClient, (m) => m.from === henry.address);
    await henry.send(bob.address, "hi bob, it's henry");
    await hello;
    const session = (await henry.identity.loadSession(bob.address))!;
    const forged = encodeContent({
      kind: ContentKind.SENT,
      to: carol.address,
      content: { kind: ContentKind.TEXT, text: "I never sent this" },
    });
    const envelope = sealEnvelope(bobClient.identity.publicIdentity.dh, {
      type: InnerType.RATCHET,
      sender: henry.address,
      body: session.encrypt(forged),
    });
    const errors: Error[] = [];
    const listener = (e: Error) => errors.push(e);
    bobClient.on("error", listener);
    const got = collect(bobClient);
    await deliverRaw(henry, bob.address, nodes[1].operator, envelope);
    await until(() => errors.length === 1, "the forged copy to be refused");
    bobClient.off("error", listener);
    expect(errors[0]).to.be.instanceOf(TamperedMessageError);
    expect(errors[0].message).to.match(/sent copy/);
    expect(got).to.deep.equal([]);
  });

  it("shows an initial message without a one-time prekey once, and reports it sent again (a replay) as tampered", async () => {
    // Ivy opens a session to Bob from the bundle his DID names (no one-time prekey: the case a replay could reopen),
    // and the same sealed envelope reaches Bob's home node twice, under two message ids (as a node could replay it).
    const ivy = await client(ctx.signers[13]);
    await ivy.register({ homeNodes: [nodes[0].operator] });
    const bundle = await ivy.did.prekeyBundleOf(bob.address);
    expect(bundle.oneTimePrekey).to.equal(undefined);
    const initiated = ivy.identity.initiateSession(
      bundle,
      encodeContent({ kind: ContentKind.TEXT, text: "only once, ivy" }),
    );
    await ivy.identity.saveSession(bob.address, initiated.session); // as Ivy's client keeps a session it opens
    const envelope = sealEnvelope(bobClient.identity.publicIdentity.dh, {
      type: InnerType.INITIAL,
      sender: ivy.address,
      body: initiated.message,
    });
    const errors: Error[] = [];
    const listener = (e: Error) => errors.push(e);
    bobClient.on("error", listener);
    const got = collect(bobClient);
    try {
      await deliverRaw(ivy, bob.address, nodes[1].operator, envelope);
      await until(() => got.length === 1, "the first delivery to be shown");
      await deliverRaw(ivy, bob.address, nodes[1].operator, envelope);
      await until(() => errors.length === 1, "the replay to be refused");
    } finally {
      bobClient.off("error", listener);
    }
    expect(errors[0]).to.be.instanceOf(TamperedMessageError);
    expect(errors[0].message).to.match(/replay/);
    expect(got.map((m) => [m.from, m.text])).to.deep.equal([[ivy.address, "only once, ivy"]]);
    // The session the first delivery opened is the one kept: Bob's reply opens at Ivy.
    const reply = ivy.nextMessage((m) => m.from === bob.address, { signal: AbortSignal.timeout(WAIT_MS) });
    await ivy.start();
    await bobClient.send(ivy.address, "hi ivy");
    expect((await reply).text).to.equal("hi ivy");
  });

  let groupId: string;
  let carolClient: SendingClient;

  it("runs a group by sender keys across members' devices; a removed member's account and devices cannot read on", async () => {
    carolClient = await client(carol);
    await carolClient.register({ homeNodes: [nodes[3].operator] });
    await carolClient.start();
    const carolTablet = await device(carol, nodes[2].operator);

    groupId = await aliceClient.createGroup([bob.address, carol.address]);
    // Every participant (Bob, his phone, Carol, her tablet) joins and answers with its own sender key.
    const joined = (c: SendingClient) => c.groupMembers(groupId)?.length === 3;
    await until(() => [bobClient, bobPhone, carolClient, carolTablet].every(joined), "the group to form");
    expect(carolTablet.groupMembers(groupId)).to.have.members([alice.address, bob.address, carol.address]);

    const inGroup = (c: SendingClient) => next(c, (m) => m.groupId === groupId);
    const everyone = [bobClient, bobPhone, carolClient, carolTablet];
    let arriving = everyone.map(inGroup);
    const first = await aliceClient.sendToGroup(groupId, "hello group");
    expect(first.messageIds).to.have.length(4); // Bob, his phone, Carol, her tablet
    for (const m of await Promise.all(arriving)) expect(m).to.include({ text: "hello group", from: alice.address });

    // A device sends into the group: its message is shown as its user's, on every other client, Carol's too.
    arriving = [aliceClient, bobClient, bobPhone, carolClient].map(inGroup);
    await carolTablet.sendToGroup(groupId, "from carol's tablet");
    for (const m of await Promise.all(arriving)) {
      expect(m).to.include({ text: "from carol's tablet", from: carol.address, device: carolTablet.address });
    }

    arriving = [aliceClient, carolClient].map(inGroup);
    await until(async () => {
      try {
        await bobClient.sendToGroup(groupId, "bob to the group");
        return true;
      } catch {
        return false; // Carol's key may still be on its way to Bob
      }
    }, "Bob to send to the group");
    for (const m of await Promise.all(arriving)) expect(m).to.include({ text: "bob to the group", from: bob.address });

    // A message on its way while Carol is removed: the removal waits for it (one change at a time per group), so it
    // reaches Carol and her tablet under the old key, and the new key never does.
    const carolErrors: Error[] = [];
    carolClient.on("error", (e) => carolErrors.push(e));
    const justBefore = [carolClient, carolTablet].map((c) => next(c, (m) => m.text === "just before the removal"));
    const sending = aliceClient.sendToGroup(groupId, "just before the removal");
    await aliceClient.removeGroupMember(groupId, carol.address);
    expect((await sending).messageIds).to.have.length(4);
    await Promise.all(justBefore);
    expect(carolErrors).to.deep.equal([]); // no key came with a list that lacks her
    await until(
      () => bobClient.groupMembers(groupId)?.length === 2 && bobPhone.groupMembers(groupId)?.length === 2,
      "Bob and his phone to rekey without Carol",
    );
    const carolGot = collect(carolClient);
    const tabletGot = collect(carolTablet);
    arriving = [bobClient, bobPhone].map(inGroup);
    const secret = await aliceClient.sendToGroup(groupId, "carol is gone");
    for (const m of await Promise.all(arriving)) expect(m.text).to.equal("carol is gone");
    expect(secret.messageIds).to.have.length(2); // Bob and his phone only
    // Even holding the ciphertext, neither Carol's account nor her tablet can open it.
    for (const removed of [carolClient, carolTablet]) {
      await removed.decryptGroupMessage(groupId, secret.ciphertext).then(
        () => expect.fail("a removed member's client opened a message sent after the removal"),
        (e: unknown) => expect(e).to.be.instanceOf(SenderKeyError),
      );
    }
    // Nor what Bob's phone sends after the removal (it rekeyed too).
    arriving = [aliceClient, bobClient].map(inGroup);
    const fromPhone = await bobPhone.sendToGroup(groupId, "phone after the removal");
    expect(fromPhone.messageIds).to.have.length(2); // Alice and Bob's own account
    for (const m of await Promise.all(arriving)) {
      expect(m).to.include({ text: "phone after the removal", from: bob.address, device: bobPhone.address });
    }
    for (const removed of [carolClient, carolTablet]) {
      await removed.decryptGroupMessage(groupId, fromPhone.ciphertext).then(
        () => expect.fail("a removed member's client opened a message sent after the removal"),
        (e: unknown) => expect(e).to.be.instanceOf(SenderKeyError),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(carolGot).to.deep.equal([]);
    expect(tabletGot).to.deep.equal([]);

    // A device linked after the group formed joins once a client of its own user names the group to it (Alice's
    // next message); the key Bob's phone sent it first is held until then, and the phone's message with it.
    const aliceTablet = await device(alice, nodes[1].operator);
    const atTablet = collect(aliceTablet);
    await bobPhone.sendToGroup(groupId, "welcome, new device");
    await aliceClient.sendToGroup(groupId, "alice names the group to her tablet");
    await until(() => atTablet.length === 2, "both group messages at Alice's new tablet");
    expect(atTablet.map((m) => [m.text, m.from, m.device])).to.have.deep.members([
      ["welcome, new device", bob.address, bobPhone.address],
      ["alice names the group to her tablet", alice.address, undefined],
    ]);
    expect(aliceTablet.groupMembers(groupId)).to.have.members([alice.address, bob.address]);

    // The group survives a restart: Bob's new client over the same storage still reads and writes it.
    await bobClient.stop();
    bobClient = await client(bob, bobStorage);
    await bobClient.start();
    expect(bobClient.groupMembers(groupId)).to.have.members([alice.address, bob.address]);
    const afterRestart = next(bobClient, (m) => m.groupId === groupId);
    await aliceClient.sendToGroup(groupId, "still in the group");
    expect((await afterRestart).text).to.equal("still in the group");
    const atAlice = next(aliceClient, (m) => m.groupId === groupId);
    await bobClient.sendToGroup(groupId, "bob after restart");
    expect((await atAlice).text).to.equal("bob after restart");
  });

  it("does not let a removed member bring a device linked since into the group with its old list and epoch", async () => {
    // Bob links a tablet after Carol was removed. Carol still knows the group id and holds a session with the tablet.
    const tablet = await device(bob, nodes[0].operator, false);
    const stored = () => nodes[0].inbox.store.usage(recipientIdOf(tablet.address), Date.now()).count;
    await carolClient.send(tablet.address, "hi from carol");
    const session = (await carolClient.identity.loadSession(tablet.address))!;
    const stale = GroupSession.create({
      groupId: getBytes(`0x${groupId}`),
      selfId: carol.address,
      members: [alice.address, bob.address, tablet.address],
      epoch: 1_000_000, // far ahead: joined in it, the tablet would refuse every real list after
    });
    // Her old list under the real admin, far ahead; and the same id claimed with herself as its admin.
    const forged = [alice.address, carol.address].map((admin) =>
      encodeContent({
        kind: ContentKind.GROUP_KEY,
        groupId: getBytes(`0x${groupId}`),
        admin,
        version: 1_000_000,
        members: [alice.address, bob.address, carol.address],
        distribution: stale.distributionMessage(),
      }),
    );
    for (const content of forged) {
      const envelope = sealEnvelope(tablet.identity.publicIdentity.dh, {
        type: InnerType.RATCHET,
        sender: carol.address,
        body: session.encrypt(content),
      });
      await deliverRaw(carolClient, tablet.address, nodes[0].operator, envelope);
    }
    await until(() => stored() === 3, "Carol's message and her two forged keys at the tablet's home node");
    const carolGroups: string[] = [];
    carolClient.on("group", (id) => carolGroups.push(id));
    const errors: Error[] = [];
    tablet.on("error", (e) => errors.push(e));
    const shown = collect(tablet);
    await tablet.start(); // drains all three, in order
    expect(shown.map((m) => m.text)).to.deep.equal(["hi from carol"]);
    expect(tablet.groupMembers(groupId)).to.equal(undefined); // held: Carol is a client of neither Alice nor Bob
    // The id begins with its admin's address: a key naming Carol as the admin of Alice's group is refused.
    expect(errors.filter((e) => e instanceof TamperedMessageError).map((e) => e.message)).to.have.length(1);
    expect(errors.find((e) => e instanceof TamperedMessageError)!.message).to.match(/not the id's admin/);

    // Bob's next message names the group to his tablet: it joins with the real list, in the real epoch.
    const fromBob = next(tablet, (m) => m.groupId === groupId);
    await bobClient.sendToGroup(groupId, "bob names the group to his tablet");
    expect((await fromBob).text).to.equal("bob names the group to his tablet");
    expect(tablet.groupMembers(groupId)).to.have.members([alice.address, bob.address]);
    expect(errors.some((e) => e instanceof ClientError && e.code === "NotMember")).to.equal(true); // Carol's key
    // It reads Alice and Alice reads it; Carol got nothing from it.
    const fromAlice = next(tablet, (m) => m.groupId === groupId);
    await aliceClient.sendToGroup(groupId, "hello, bob's tablet");
    expect((await fromAlice).text).to.equal("hello, bob's tablet");
    const atAlice = next(aliceClient, (m) => m.groupId === groupId);
    const fromTablet = await tablet.sendToGroup(groupId, "the tablet to the group");
    expect(await atAlice).to.include({ text: "the tablet to the group", from: bob.address, device: tablet.address });
    await carolClient.decryptGroupMessage(groupId, fromTablet.ciphertext).then(
      () => expect.fail("Carol opened the tablet's message"),
      (e: unknown) => expect(e).to.be.instanceOf(SenderKeyError),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(carolGroups).to.deep.equal([]);
  });

  it("leaves a group as it was when a removal fails before it is stored, and follows a removal past an unreachable member", async () => {
    const [ivan, judy, kate] = ctx.signers.slice(13, 16);
    // Ivan's storage refuses to write group records while `failing` is set.
    const flaky = flakyStorage("/net/g/");
    const ivanClient = await client(ivan, flaky.storage);
    const judyClient = await client(judy);
    const kateClient = await client(kate);
    for (const c of [ivanClient, judyClient, kateClient]) {
      await c.register({ homeNodes: [nodes[2].operator] });
      await c.start();
    }
    // Dave has no prekeys: only Ivan, to whom Dave wrote first, has a session to him; Judy cannot reach him.
    const hi = next(ivanClient, (m) => m.from === dave.address);
    await daveClient.send(ivan.address, "hi ivan");
    await hi;
    const group = await ivanClient.createGroup([judy.address, kate.address, dave.address]);
    await until(
      () => judyClient.groupMembers(group)?.length === 4 && kateClient.groupMembers(group)?.length === 4,
      "Judy and Kate to join",
    );

    flaky.failing = true;
    await ivanClient.removeGroupMember(group, kate.address).then(
      () => expect.fail("expected the store's failure"),
      (e: unknown) => expect(e).to.be.instanceOf(StorageError),
    );
    expect(ivanClient.groupMembers(group)).to.include(kate.address); // nothing changed
    flaky.failing = false;
    await ivanClient.removeGroupMember(group, kate.address); // the retry is a removal like the first
    expect(ivanClient.groupMembers(group)).to.have.members([ivan.address, judy.address, dave.address]);

    // Judy rekeys on Ivan's removal; her new key cannot reach Dave, yet she took Ivan's new key first.
    await until(() => judyClient.groupMembers(group)?.length === 3, "Judy to follow the removal");
    const atJudy = next(judyClient, (m) => m.groupId === group);
    const after = await ivanClient.sendToGroup(group, "kate is gone");
    expect((await atJudy).text).to.equal("kate is gone");
    await kateClient.decryptGroupMessage(group, after.ciphertext).then(
      () => expect.fail("Kate opened a message sent after her removal"),
      (e: unknown) => expect(e).to.be.instanceOf(SenderKeyError),
    );

    // Judy's group message reaches Ivan but not Dave: it resolves, naming Dave as not reached (a throw would make
    // the app retry, and Ivan would get it twice).
    const atIvan = next(ivanClient, (m) => m.groupId === group);
    const partial = await judyClient.sendToGroup(group, "dave cannot be reached");
    expect(partial.messageIds).to.have.length(1); // Ivan
    expect(partial.unreached.map((u) => u.participant)).to.deep.equal([dave.address]);
    expect(partial.unreached[0].error).to.be.instanceOf(NoPrekeysError);
    expect((await atIvan).text).to.equal("dave cannot be reached");
    expect(after.unreached).to.deep.equal([]); // Ivan has a session to Dave

    // An add whose store fails leaves the group as it was too; the retry brings Kate back, and she reads again.
    flaky.failing = true;
    await ivanClient.addGroupMember(group, kate.address).then(
      () => expect.fail("expected the store's failure"),
      (e: unknown) => expect(e).to.be.instanceOf(StorageError),
    );
    const removed = { members: [ivan.address, judy.address, dave.address], admin: ivan.address, version: 1 };
    expect(ivanClient.groupInfo(group)).to.deep.equal(removed);
    flaky.failing = false;
    await ivanClient.addGroupMember(group, kate.address);
    const back = { ...removed, members: [...removed.members, kate.address], version: 2 };
    await until(
      () => [judyClient, kateClient].every((c) => c.groupInfo(group)?.version === 2),
      "Judy and Kate to take Kate's return",
    );
    for (const c of [ivanClient, judyClient, kateClient]) expect(c.groupInfo(group)).to.deep.equal(back);
    const atKate = next(kateClient, (m) => m.groupId === group && m.text === "kate is back");
    const welcome = await ivanClient.sendToGroup(group, "kate is back");
    expect((await atKate).from).to.equal(ivan.address);
    expect(welcome.unreached).to.deep.equal([]);
  });

  /** Expects `call` to reject with ClientError `code`. */
  async function refused(call: () => Promise<unknown>, code: string) {
    await call().then(
      () => expect.fail(`expected ClientError ${code}`),
      (e: unknown) => expect(e).to.be.instanceOf(ClientError).with.property("code", code),
    );
  }

  /** Expects `c` to fail to open `ciphertext` of `group` with SenderKeyError (`code`, if given). */
  async function cannotOpen(c: SendingClient, group: string, ciphertext: Uint8Array, code?: string) {
    await c.decryptGroupMessage(group, ciphertext).then(
      () => expect.fail(`${c.address} opened a group message it must not read`),
      (e: unknown) => {
        expect(e).to.be.instanceOf(SenderKeyError);
        if (code !== undefined) expect(e).to.have.property("code", code);
      },
    );
  }

  it("lets only the group's admin add members; a newcomer reads what is sent after, never before, and comes back after a removal", async () => {
    // A (the admin), B, N and X are fresh wallets funded for their DID transactions; X never starts.
    const fresh = [0, 1, 2, 3].map(() => Wallet.createRandom().connect(ethers.provider));
    for (const w of fresh) await setBalance(w.address, parseEther("10"));
    const [a, b, n, x] = await Promise.all(fresh.map((w) => client(w)));
    for (const [i, c] of [a, b, n, x].entries()) {
      await c.register({ homeNodes: [nodes[(i + 1) % nodes.length].operator] });
    }
    for (const c of [a, b, n]) await c.start();
    const group = await a.createGroup([b.address]);
    expect(group.slice(0, 40)).to.equal(a.address.slice(2).toLowerCase()); // the id begins with its admin
    await until(() => b.groupMembers(group)?.length === 2, "B to join");
    const inGroup = (c: SendingClient, text: string) => next(c, (m) => m.groupId === group && m.text === text);
    /** N reads A and B, and both read N: each sends one message tagged with `when`. */
    const nReadsAndIsRead = async (when: string) => {
      for (const from of [a, b]) {
        const atN = inGroup(n, `${when} from ${from.address}`);
        await from.sendToGroup(group, `${when} from ${from.address}`);
        expect((await atN).from).to.equal(from.address);
      }
      const fromN = [a, b].map((c) => inGroup(c, `${when} from N`));
      await n.sendToGroup(group, `${when} from N`);
      for (const m of await Promise.all(fromN)) expect(m.from).to.equal(n.address);
    };
    const atB = inGroup(b, "before N");
    const before = await a.sendToGroup(group, "before N");
    await atB;

    // Only a client of the admin changes the membership; nothing changes when another tries.
    await refused(() => b.addGroupMember(group, n.address), "NotAdmin");
    await refused(() => b.removeGroupMember(group, a.address), "NotAdmin");
    await refused(() => a.addGroupMember(group, b.address), "AlreadyMember");
    const start = { members: [a.address, b.address], admin: a.address, version: 0 };
    for (const c of [a, b]) expect(c.groupInfo(group)).to.deep.equal(start);
    expect(n.groupInfo(group)).to.equal(undefined);

    await a.addGroupMember(group, n.address);
    const added = { members: [a.address, b.address, n.address], admin: a.address, version: 1 };
    expect(a.groupInfo(group)).to.deep.equal(added);
    await until(() => [b, n].every((c) => c.groupInfo(group)?.version === 1), "B and N to take the new list");
    for (const c of [b, n]) expect(c.groupInfo(group)).to.deep.equal(added);

    // N reads the admin and the other member from now on, and both read N.
    await nReadsAndIsRead("after N came");
    // N holds A's key, but at the step A had reached when N came: the message before is out of reach.
    await cannotOpen(n, group, before.ciphertext, "Duplicate");

    // A removes N, who cannot read on; A adds N back: N reads again, and is read (it takes the epoch it missed).
    await a.removeGroupMember(group, n.address);
    await until(() => b.groupInfo(group)?.version === 2, "B to follow N's removal");
    const gone = await a.sendToGroup(group, "N is out");
    expect(gone.messageIds).to.have.length(1); // B
    await cannotOpen(n, group, gone.ciphertext);
    await a.addGroupMember(group, n.address);
    await until(() => [b, n].every((c) => c.groupInfo(group)?.version === 3), "B and N to take N's return");
    for (const c of [a, b, n]) expect(c.groupInfo(group)).to.deep.equal({ ...added, version: 3 });
    await nReadsAndIsRead("N is back");

    // A list from a member who is not the admin, naming X too and far ahead, adds nobody: only its key counts.
    const session = (await b.identity.loadSession(n.address))!;
    const forged = encodeContent({
      kind: ContentKind.GROUP_KEY,
      groupId: getBytes(`0x${group}`),
      admin: a.address,
      version: 99,
      members: [a.address, b.address, n.address, x.address],
      distribution: GroupSession.create({
        groupId: getBytes(`0x${group}`),
        selfId: b.address,
        members: [],
      }).distributionMessage(),
    });
    let keysAtN = 0;
    n.on("group", () => keysAtN++);
    const envelope = sealEnvelope(n.identity.publicIdentity.dh, {
      type: InnerType.RATCHET,
      sender: b.address,
      body: session.encrypt(forged),
    });
    await deliverRaw(b, n.address, nodes[3].operator, envelope);
    await until(() => keysAtN > 0, "N to take B's forged key");
    const last = await n.sendToGroup(group, "X is no member"); // queued behind the key: it sees what the key did
    expect(last.messageIds).to.have.length(2); // A and B, not X
    expect(n.groupInfo(group)).to.deep.equal({ ...added, version: 3 });
  });

  it("lets only the admin's own account change the group: its devices are refused, and lists from them count for nothing", async () => {
    // P (the admin) and Q are hardhat accounts; M, D and N are fresh wallets funded for their DID transactions.
    const admin = ctx.signers[18];
    const fresh = [0, 1, 2].map(() => Wallet.createRandom().connect(ethers.provider));
    for (const w of fresh) await setBalance(w.address, parseEther("10"));
    const [p, q, m, d, n] = await Promise.all([admin, ctx.signers[19], ...fresh].map((s) => client(s)));
    // One home node each (N shares P's): a burst of connections from 127.0.0.1 to one node would be throttled.
    for (const [i, c] of [p, q, m, d, n].entries()) await c.register({ homeNodes: [nodes[i % nodes.length].operator] });
    for (const c of [p, q, m, d, n]) await c.start();
    // R, P's second app, is never started: it reads its inbox only when the test syncs it, so it can be kept behind.
    const r = await device(admin, nodes[1].operator, false);
    const group = await p.createGroup([q.address, m.address, d.address]);
    await until(async () => {
      await r.sync();
      return [q, r, m, d].every((c) => c.groupMembers(group)?.length === 4);
    }, "everyone to join");

    // P removes M; Q follows. R does not sync: it still has version 0, with M.
    await p.removeGroupMember(group, m.address);
    await until(() => q.groupInfo(group)?.version === 1, "Q to follow the removal of M");
    expect(q.groupMembers(group)).to.not.include(m.address);
    expect(r.groupInfo(group)).to.deep.include({ version: 0 });
    expect(r.groupMembers(group)).to.include(m.address);

    // R, P's second app, cannot change the group: one writer (P's account) orders every change by its version, so two
    // of P's apps can never make two different version 1s.
    for (const change of [() => r.removeGroupMember(group, d.address), () => r.addGroupMember(group, n.address)]) {
      await change().then(
        () => expect.fail("expected NotAdmin"),
        (e: unknown) => expect((e as ClientError).code).to.equal("NotAdmin"),
      );
    }
    expect(r.groupInfo(group)).to.deep.include({ version: 0 });
    // Once R reads its inbox, it follows P's list.
    await until(async () => {
      await r.sync();
      return r.groupInfo(group)?.version === 1;
    }, "R to follow P's removal of M");
    expect(r.groupMembers(group)).to.have.members([p.address, q.address, d.address]);

    // P adds N (version 2). Then P's third app, behind, sends Q lists of its own: an old one (version 0: M in, no N)
    // and one far ahead (version 9: M back, N out). Neither comes from P's account: only their keys count.
    await p.addGroupMember(group, n.address);
    await until(() => [q, n].every((c) => c.groupInfo(group)?.version === 2), "Q and N to take N's add");
    const behind = await device(admin, nodes[2].operator, false); // P's third app, never started
    await behind.send(q.address, "hi Q, from P's third app"); // opens a session to Q
    const session = (await behind.identity.loadSession(q.address))!;
    const groupBytes = getBytes(`0x${group}`);
    let keysAtQ = 0;
    q.on("group", () => keysAtQ++);
    for (const version of [0, 9]) {
      const forged = encodeContent({
        kind: ContentKind.GROUP_KEY,
        groupId: groupBytes,
        admin: p.address,
        version,
        members: [p.address, q.address, m.address, d.address],
        distribution: GroupSession.create({
          groupId: groupBytes,
          selfId: behind.address,
          members: [],
        }).distributionMessage(),
      });
      const envelope = sealEnvelope(q.identity.publicIdentity.dh, {
        type: InnerType.RATCHET,
        sender: behind.address,
        body: session.encrypt(forged),
      });
      await deliverRaw(behind, q.address, nodes[1].operator, envelope);
    }
    await until(() => keysAtQ >= 2, "Q to take both keys");
    const atN = next(n, (msg) => msg.groupId === group && msg.text === "after the lists of P's third app");
    const last = await q.sendToGroup(group, "after the lists of P's third app"); // queued behind the keys
    expect((await atN).from).to.equal(q.address);
    expect(q.groupInfo(group)).to.deep.include({ admin: p.address, version: 2 });
    expect(q.groupMembers(group)).to.have.members([p.address, q.address, d.address, n.address]);
    await cannotOpen(m, group, last.ciphertext);
  });

  it("lets a device create a group its wallet's account administers, and bounds the key requests a made-up id can cause", async () => {
    const u = ctx.signers[13];
    const fresh = [0, 1, 2, 3].map(() => Wallet.createRandom().connect(ethers.provider));
    for (const w of fresh) await setBalance(w.address, parseEther("10"));
    const [account, x, y, o1, o2] = await Promise.all([u, ...fresh].map((s) => client(s)));
    for (const [i, c] of [account, x, y, o1, o2].entries()) await c.register({ homeNodes: [nodes[i % 4].operator] });
    for (const c of [account, x, y, o1, o2]) await c.start();
    const errorsAtAccount: Error[] = [];
    account.on("error", (e) => errorsAtAccount.push(e));
    const phone = await device(u, nodes[3].operator);

    // The phone creates the group: U (its wallet) is the admin. U's account joins on the phone's word, without
    // asking itself for its own key; X joins too and asks U for its list.
    const group = await phone.createGroup([x.address]);
    await until(() => [account, x].every((c) => c.groupInfo(group)?.version === 0), "U's account and X to join");
    expect(account.groupInfo(group)).to.deep.equal({ members: [u.address, x.address], admin: u.address, version: 0 });
    // The phone cannot change the group; U's account can.
    await phone.addGroupMember(group, y.address).then(
      () => expect.fail("expected NotAdmin"),
      (e: unknown) => expect((e as ClientError).code).to.equal("NotAdmin"),
    );
    await account.addGroupMember(group, y.address);
    await until(() => [x, y, phone].every((c) => c.groupInfo(group)?.version === 1), "X, Y and the phone to follow");
    const atY = next(y, (m) => m.groupId === group && m.text === "from the phone");
    await phone.sendToGroup(group, "from the phone");
    expect((await atY).from).to.equal(u.address);
    expect(errorsAtAccount.map((e) => e.message)).to.deep.equal([]);
    expect(await account.identity.loadSession(u.address), "a session with itself").to.equal(undefined);

    // Two outsiders send X group messages under made-up ids that begin with Y's address. X, in no such group, asks
    // each sender and "the admin" (Y) for a key: Y is asked once, however many senders point at it.
    const errorsAtY: Error[] = [];
    y.on("error", (e) => errorsAtY.push(e));
    for (const o of [o1, o2]) {
      const hello = next(x, (m) => m.from === o.address);
      await o.send(x.address, "hello X");
      await hello;
      const session = (await o.identity.loadSession(x.address))!;
      const madeUp = concatBytes(getBytes(y.address), crypto.getRandomValues(new Uint8Array(12)));
      const content = encodeContent({
        kind: ContentKind.GROUP_MESSAGE,
        groupId: madeUp,
        message: crypto.getRandomValues(new Uint8Array(150)),
      });
      const envelope = sealEnvelope(x.identity.publicIdentity.dh, {
        type: InnerType.RATCHET,
        sender: o.address,
        body: session.encrypt(content),
      });
      await deliverRaw(o, x.address, nodes[1].operator, envelope);
    }
    const requestsAtY = () => errorsAtY.filter((e) => e.message.includes(`key request from ${x.address}`)).length;
    await until(() => requestsAtY() >= 1, "X's request to reach Y");
    await new Promise((resolve) => setTimeout(resolve, 2_500)); // the second sender's round is due by now
    expect(requestsAtY()).to.equal(1);
  });

  it("asks for the keys it missed: a member no key reached joins on the admin's answer and reads the message that asked", async () => {
    // A (the admin), B and T are fresh wallets. T registers its DID but no prekeys yet: nobody can open a session to
    // it, so A's key does not reach it when the group forms.
    const fresh = [0, 1, 2].map(() => Wallet.createRandom().connect(ethers.provider));
    for (const w of fresh) await setBalance(w.address, parseEther("10"));
    const [a, b, t] = await Promise.all(fresh.map((w) => client(w)));
    for (const [i, c] of [a, b].entries()) await c.register({ homeNodes: [nodes[i].operator] });
    for (const c of [a, b]) await c.start();
    await t.did.register(t.identity, { homeNodes: [nodes[2].operator] });
    const joinedAtB: string[] = [];
    b.on("group", (id) => joinedAtB.push(id));
    await a.createGroup([b.address, t.address]).then(
      () => expect.fail("expected T's account to be unreachable"),
      (e: unknown) => expect(e).to.be.instanceOf(NoPrekeysError),
    );
    await until(() => joinedAtB.length > 0, "B to join");
    const group = joinedAtB[0];
    const list = { members: [a.address, b.address, t.address], admin: a.address, version: 0 };
    expect(b.groupInfo(group)).to.deep.equal(list);

    // T publishes prekeys and starts: a member on A's list, but in no group.
    await t.register({ homeNodes: [nodes[2].operator] });
    const shownAtT = collect(t);
    await t.start();
    expect(t.groupInfo(group)).to.equal(undefined);

    // B owes T its key since it joined (nothing fans out on the receive path): its first message takes the key
    // along, then the message. T holds both (B is neither the admin nor T's own user) and, a second later, asks B and
    // the admin (whose address begins the group id) for their keys. A's answer brings T in, with A's list; B's key,
    // held, then opens the held message.
    await b.sendToGroup(group, "before T asked");
    await until(() => shownAtT.some((m) => m.text === "before T asked"), "T to read B's first message");
    expect(shownAtT.find((m) => m.text === "before T asked")).to.include({ from: b.address, groupId: group });
    expect(t.groupInfo(group)).to.deep.equal(list);
    const atT = next(t, (m) => m.groupId === group && m.text === "and from the admin");
    await a.sendToGroup(group, "and from the admin");
    expect((await atT).from).to.equal(a.address);
    // T joined, and its key goes with its first message to both.
    const fromT = [a, b].map((c) => next(c, (m) => m.groupId === group && m.text === "T is in"));
    await t.sendToGroup(group, "T is in");
    for (const m of await Promise.all(fromT)) expect(m.from).to.equal(t.address);

    // Someone who acts for no member asks A for its key over a real session: refused, nothing is sent.
    const stranger = await fundedWallet();
    const outsider = await client(stranger);
    await outsider.register({ homeNodes: [nodes[3].operator] });
    await outsider.start();
    const hello = next(a, (m) => m.from === outsider.address);
    await outsider.send(a.address, "hi A");
    await hello;
    const errorsAtA: Error[] = [];
    a.on("error", (e) => errorsAtA.push(e));
    const errorsAtOutsider: Error[] = [];
    outsider.on("error", (e) => errorsAtOutsider.push(e));
    const session = (await outsider.identity.loadSession(a.address))!;
    const request = encodeContent({ kind: ContentKind.GROUP_KEY_REQUEST, groupId: getBytes(`0x${group}`) });
    const envelope = sealEnvelope(a.identity.publicIdentity.dh, {
      type: InnerType.RATCHET,
      sender: outsider.address,
      body: session.encrypt(request),
    });
    await deliverRaw(outsider, a.address, nodes[0].operator, envelope);
    await until(() => errorsAtA.some((e) => e instanceof ClientError && e.code === "NotMember"), "A to refuse");
    await new Promise((resolve) => setTimeout(resolve, 300)); // an answer would be on its way by now
    expect(errorsAtOutsider).to.deep.equal([]);
  });

  it("shows a message whose device link cannot be read as the device's own, and a send survives a failed copy lookup", async () => {
    const nora = ctx.signers[16];
    // Nora's chain reads of the DID of `failReadsOf` fail while it is set (an RPC node that is down for a moment).
    let failReadsOf: string | undefined;
    const flaky = new Proxy(nora, {
      get(target, property) {
        if (property === "call") {
          return async (tx: TransactionRequest) => {
            const data = String(tx.data ?? "").toLowerCase();
            if (failReadsOf !== undefined && data.includes(failReadsOf.slice(2).toLowerCase())) {
              throw new Error("test: the RPC node is down");
            }
            return target.call(tx);
          };
        }
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const noraClient = await client(flaky);
    const errors: Error[] = [];
    noraClient.on("error", (e) => errors.push(e));
    await noraClient.register({ homeNodes: [nodes[1].operator] });
    await noraClient.start();

    // Whose device Bob's phone is cannot be read: the message is shown as the phone's own, and the failure reported.
    failReadsOf = bob.address;
    const shown = next(noraClient);
    await bobPhone.send(nora.address, "the link cannot be read");
    const m = await shown;
    expect(m).to.include({ text: "the link cannot be read", from: bobPhone.address });
    expect(m.device).to.equal(undefined);
    expect(errors.some((e) => e instanceof ClientError && e.code === "LookupFailed")).to.equal(true);

    // Nora's own devices cannot be read after her message went out: the send resolves, without copies.
    failReadsOf = nora.address;
    errors.length = 0;
    const atAlice = next(aliceClient, (m) => m.from === nora.address);
    const sent = await noraClient.send(alice.address, "no copies this time");
    expect(sent.copies).to.deep.equal([]);
    expect((await atAlice).text).to.equal("no copies this time");
    expect(errors.map((e) => e.message)).to.deep.equal(["test: the RPC node is down"]);
    failReadsOf = undefined;
  });

  it("does not acknowledge a batch whose seen ids could not be stored, and acknowledges it once they are", async () => {
    const liam = ctx.signers[17];
    const flaky = flakyStorage("/net/seen/");
    const liamClient = await client(liam, flaky.storage);
    await liamClient.register({ homeNodes: [nodes[3].operator] });
    await liamClient.start();
    const held = () => nodes[3].inbox.store.usage(recipientIdOf(liam.address), Date.now()).count;
    flaky.failing = true;
    const shown = collect(liamClient);
    await aliceClient.send(liam.address, "only once, whatever the disk does");
    await until(() => shown.length === 1, "the message to be shown");
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(held()).to.equal(1); // not acknowledged: a restart now would not know its id
    flaky.failing = false;
    await liamClient.sync(); // it comes again: known, its id stored now, acknowledged
    expect(held()).to.equal(0);
    expect(shown).to.have.length(1);
  });

  it("does not show again, after a restart, a late replica of a message it already showed", async () => {
    const grace = ctx.signers[11];
    const dir = path.join(root, "grace");
    const first = await client(grace, await FileStorage.open(dir));
    await first.register({ homeNodes: [nodes[1].operator, nodes[2].operator] });
    const recipient = recipientIdOf(grace.address);
    const held = (node: EdgeNode) => node.inbox.store.usage(recipient, Date.now()).count;

    // Grace is offline; Alice's message waits at both home nodes (the exit replicated it).
    await aliceClient.send(grace.address, "only once");
    await until(() => held(nodes[1]) === 1 && held(nodes[2]) === 1, "the message at both home nodes");
    // The replica at the second node is late: take it out now, put it back after Grace has shown the message.
    const [replica] = nodes[2].inbox.store.page(recipient, Date.now(), 10);
    nodes[2].inbox.store.remove(recipient, [replica.messageId]);

    const shown = collect(first);
    await first.start();
    await until(() => shown.length === 1 && held(nodes[1]) === 0, "the message shown and acknowledged");
    expect(shown[0].text).to.equal("only once");
    await first.stop();

    // The replica arrives; Grace restarts on the same files.
    expect(nodes[2].inbox.store.insert(replica, DEFAULT_INBOX_QUOTA, Date.now()).outcome).to.equal("stored");
    const again = await client(grace, await FileStorage.open(dir));
    const errors: Error[] = [];
    again.on("error", (e) => errors.push(e));
    const shownAgain = collect(again);
    await again.start(); // drains the inbox: the replica is in it
    expect(held(nodes[2])).to.equal(0); // acknowledged
    expect(shownAgain).to.deep.equal([]);
    expect(errors).to.deep.equal([]); // known, so not even tried (it would fail to decrypt: its keys are gone)

    const live = next(again);
    await aliceClient.send(grace.address, "and this one");
    expect((await live).text).to.equal("and this one");
  });

  it("deletes the chunks of a backup from the home nodes once a newer backup replaced it", async () => {
    const recipient = recipientIdOf(alice.address);
    const parked = () => parkedBackups(nodes[0], recipient);
    const long = { peer: bob.address, direction: "sent" as const, timestamp: 1, text: "x".repeat(5_000) };
    const first = await aliceClient.backup({ contacts: [], history: [long] }); // two chunks
    await until(() => parked().length === 2, "the first backup's two chunks");
    expect(parked()).to.deep.equal([first, first]);

    const second = await aliceClient.backup({ contacts: [], history: [] });
    await until(() => parked().length === 1 && parked()[0] === second, "only the second backup's chunk to stay");
    expect((await aliceClient.did.readDid(alice.address)).backupPointer).to.equal(second);
  });

  it("ends a sync whose acknowledgements the node keeps refusing", async () => {
    const recipient = recipientIdOf(alice.address);
    const parked = () =>
      nodes[0].inbox.store.page(recipient, Date.now(), 100).filter((row) => row.envelope[0] === EnvelopeKind.BACKUP);
    // A backup of 20 chunks: once replaced, a drain meets a full batch of its chunks.
    const long = { peer: bob.address, direction: "sent" as const, timestamp: 1, text: "x".repeat(70_000) };
    await aliceClient.backup({ contacts: [], history: [long] });
    await until(() => parked().length > INBOX_MAX_BATCH, "the large backup's chunks");
    const store = nodes[0].inbox.store;
    const remove = store.remove.bind(store);
    store.remove = () => {
      throw new Error("test: acknowledgements refused");
    };
    try {
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("backup (and its sync) did not end")), 20_000);
      });
      try {
        await Promise.race([aliceClient.backup({ contacts: [], history: [] }), hung]);
      } finally {
        clearTimeout(timer);
      }
      expect(parked().length).to.be.greaterThan(INBOX_MAX_BATCH); // nothing was deleted
    } finally {
      store.remove = remove;
    }
    await aliceClient.sync(); // the node takes acknowledgements again: the replaced chunks go
    await until(() => parked().length === 1, "only the newest backup's chunk to stay");
  });

  it("keeps the previous backup, and the DID's pointer to it, when the new backup's chunks do not reach the inbox", async () => {
    const recipient = recipientIdOf(alice.address);
    const parked = () => parkedBackups(nodes[0], recipient);
    const before = (await aliceClient.did.readDid(alice.address)).backupPointer;
    expect(parked()).to.deep.equal([before]);
    const store = nodes[0].inbox.store;
    const insert = store.insert.bind(store);
    store.insert = (row) => ({ outcome: "duplicate", row }); // the exit answers as if it held it, and keeps nothing
    try {
      await aliceClient.backup({ contacts: [], history: [] }).then(
        () => expect.fail("expected BackupNotFound"),
        (e: unknown) => expect(e).to.be.instanceOf(ClientError).with.property("code", "BackupNotFound"),
      );
    } finally {
      store.insert = insert;
    }
    expect((await aliceClient.did.readDid(alice.address)).backupPointer).to.equal(before);
    expect(parked()).to.deep.equal([before]);
  });

  it("confirms a backup on a client that was never started, past a full batch of parked chunks, and restores a large one", async () => {
    const wallet = await fundedWallet();
    const olivia = await client(wallet);
    await olivia.register({ homeNodes: [nodes[3].operator] }); // never started: it reads its inbox only when asked
    const recipient = recipientIdOf(wallet.address);
    const parked = () => parkedBackups(nodes[3], recipient);
    const history = (n: number, text: string) => [
      { peer: bob.address, direction: "sent" as const, timestamp: n, text },
    ];
    const first = await olivia.backup({ contacts: [], history: history(1, "a".repeat(31_000)) });
    expect(parked()).to.deep.equal(Array<string>(9).fill(first)); // nine chunks
    // Nine parked chunks and nine new ones: more than one FETCH page (16), met whole through the subscriptions.
    const second = await olivia.backup({ contacts: [], history: history(2, "b".repeat(31_000)) });
    expect(parked()).to.deep.equal(Array<string>(9).fill(second));
    expect((await olivia.did.readDid(wallet.address)).backupPointer).to.equal(second);

    // A backup of 20 chunks, more than a page: a fresh client of the same wallet restores it.
    const contents = { contacts: [], history: history(3, "c".repeat(70_000)) };
    const third = await olivia.backup(contents);
    expect(parked()).to.have.length(20);
    expect(new Set(parked())).to.deep.equal(new Set([third]));
    await olivia.stop();
    const fresh = await client(wallet);
    await fresh.register({ homeNodes: [nodes[3].operator] });
    expect(await fresh.restoreBackup()).to.deep.equal(contents);
  });

  it("starts once when start is called twice at once, and opens nothing when stopped while starting", async () => {
    const wallet = await fundedWallet();
    const twice = await client(wallet);
    await twice.register({ homeNodes: [nodes[2].operator] });
    await Promise.all([twice.start(), twice.start()]);
    await twice.start(); // after it: at once
    await until(() => nodes[2].inbox.subscriberCount(wallet.address) > 0, "its subscription");
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(nodes[2].inbox.subscriberCount(wallet.address)).to.equal(1);
    await twice.stop();
    await until(() => nodes[2].inbox.subscriberCount(wallet.address) === 0, "the subscription to close");

    // Stopped while its start is still draining: no subscription loop starts after the stop (it would retry, and
    // report its failures, for ever).
    const other = await fundedWallet();
    const brief = await client(other);
    await brief.register({ homeNodes: [nodes[2].operator] });
    const errors: Error[] = [];
    brief.on("error", (e) => errors.push(e));
    const starting = brief.start();
    await brief.stop();
    await starting.catch(() => undefined);
    const after = errors.length;
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // several reconnect delays (200 ms, doubling)
    expect(errors.length - after, errors.map((e) => e.message).join("; ")).to.equal(0);
    expect(nodes[2].inbox.subscriberCount(other.address)).to.equal(0);
  });

  it("syncs a message stored behind a full page of the current backup's chunks, on a client never started", async () => {
    const wallet = await fundedWallet();
    const pia = await client(wallet);
    await pia.register({ homeNodes: [nodes[3].operator] }); // never started: it reads its inbox only when asked
    const parked = () => parkedBackups(nodes[3], recipientIdOf(wallet.address));
    const history = [{ peer: bob.address, direction: "sent" as const, timestamp: 1, text: "d".repeat(70_000) }];
    const pointer = await pia.backup({ contacts: [], history });
    expect(parked()).to.deep.equal(Array<string>(20).fill(pointer)); // more than a page: they stay, oldest first
    await bobClient.send(wallet.address, "behind the backup");
    const stored = () =>
      nodes[3].inbox.store
        .page(recipientIdOf(wallet.address), Date.now(), 100)
        .filter((r) => r.envelope[0] !== EnvelopeKind.BACKUP);
    await until(() => stored().length === 1, "bob's message in pia's inbox");
    const got = next(pia, (m) => m.text === "behind the backup");
    expect(await pia.sync()).to.equal(1);
    expect((await got).from).to.equal(bob.address);
    expect(stored()).to.deep.equal([]); // acknowledged
    expect(parked()).to.deep.equal(Array<string>(20).fill(pointer)); // the current backup stays
    await pia.stop();
  });

  it("restores the backup in a fresh client of the same wallet, which then takes over the chat", async () => {
    const contents = {
      contacts: [{ address: bob.address, name: "Bob", addedAt: 1_700_000_000_000 }],
      history: [{ peer: bob.address, direction: "received" as const, timestamp: 1_700_000_000_001, text: "hi alice" }],
    };
    const pointer = await aliceClient.backup(contents);
    expect((await aliceClient.did.readDid(alice.address)).backupPointer).to.equal(pointer);
    await aliceClient.stop();

    const dir = path.join(root, "alice-new-app");
    const fresh = await client(alice, await FileStorage.open(dir));
    expect(fresh.identity.publicIdentity.dh).to.not.deep.equal(aliceClient.identity.publicIdentity.dh);
    await fresh.register({ homeNodes: [nodes[0].operator] }); // the new identity keys go on chain
    expect(await fresh.restoreBackup()).to.deep.equal(contents);
    await fresh.start();

    const atFresh = next(fresh);
    await bobClient.send(alice.address, "welcome back");
    expect((await atFresh).text).to.equal("welcome back");
    const atBob = next(bobClient);
    await fresh.send(bob.address, "thanks");
    expect((await atBob).text).to.equal("thanks");
  });
});
