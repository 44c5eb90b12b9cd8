import { expect } from "chai";
import { ethers } from "hardhat";
import { Wallet, type Signer } from "ethers";
import path from "node:path";
import { deployProtocolFixture } from "../fixtures/protocol";
import { createTestClient, fundedWallet, until, useEdgeNetwork } from "../fixtures/edgeNetwork";
import type { EdgeNode } from "../../node/edge";
import { SenderKeyError } from "../../sdk/crypto/senderKeys";
import { FileStorage, MemoryStorage, StorageError, type StorageAdapter } from "../../sdk/storage";
import {
  ClientError,
  KEY_REQUEST_DELAY_MS,
  MAX_BLOCKED_GROUP_ADMINS,
  MAX_GROUP_INVITATIONS,
  MAX_GROUP_INVITATIONS_PER_ADMIN,
  SendingClient,
  type GroupInvitation,
  type ReceivedMessage,
  type SendingClientOptions,
} from "../../sdk/client";

/** Discovery and directory poll the chain this often in the test (the default 2 s would only slow the test down). */
const POLL_MS = 100;
/** Longest wait for a message on its way: 3 hops on 127.0.0.1 take milliseconds; this only bounds a failure. */
const WAIT_MS = 10_000;
/**
 * How long a held message's key request is given to leave, past KEY_REQUEST_DELAY_MS, before `settled` pings: a send
 * on 127.0.0.1 takes tens of milliseconds; a request still on its way when the ping overtakes it would go unseen.
 */
const REQUEST_SENT_MS = 1_000;
/** A wait only so that held messages' key requests fire before what follows (nothing is checked after it). */
const QUIET_MS = KEY_REQUEST_DELAY_MS + 1_500;

type Ctx = Awaited<ReturnType<typeof deployProtocolFixture>>;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The ClientError code a promise rejects with (fails the test when it resolves). */
async function codeOf(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => expect.fail("expected a ClientError"),
    (e: unknown) => {
      expect(e).to.be.instanceOf(ClientError);
      return (e as ClientError).code;
    },
  );
}

describe("e2e: group invitations the user accepts, through real edge nodes on 127.0.0.1", function () {
  this.timeout(120_000);

  const network = useEdgeNetwork("invitations", 4, POLL_MS, WAIT_MS);
  const { nodes, clients } = network;
  let ctx: Ctx;
  let root: string;
  let homes = 0;

  /** A client of `signer` with the default options (invitations: "ask") unless `extra` says otherwise. */
  async function client(
    signer: Signer,
    storage: StorageAdapter = new MemoryStorage(),
    extra: Partial<SendingClientOptions> = {},
  ) {
    return createTestClient(ctx, clients, signer, storage, extra);
  }

  /** A new funded wallet's client, registered on one home node (the nodes in turn) and started. */
  async function user(extra: Partial<SendingClientOptions> = {}, storage?: StorageAdapter) {
    const wallet = await fundedWallet();
    const c = await client(wallet, storage, extra);
    const home = nodes[homes++ % nodes.length];
    await c.register({ homeNodes: [home.operator] });
    await c.start();
    return { wallet, client: c, home };
  }

  /** A device of `wallet`'s user, registered on the first node and started (it joins its own user's groups at once). */
  async function device(wallet: Signer) {
    const d = await SendingClient.createDevice({
      signer: wallet,
      storage: new MemoryStorage(),
      deployment: ctx.deployment,
      provider: ethers.provider,
      oneTimePrekeys: 6,
    });
    clients.push(d);
    d.on("error", () => undefined);
    await d.register({ homeNodes: [nodes[0].operator] });
    await d.start();
    return d;
  }

  let marks = 0;
  /**
   * Resolves once `c` has processed what `peer` sent it before, and had time to send the key requests its held
   * messages make and to get `peer`'s answers to them; returns how many messages reached `peer`'s home node meanwhile
   * besides the one this sends (its "stored" counter counts every message whose route ends there). `peer` sends a mark
   * after what it sent, `c` waits for it, then past KEY_REQUEST_DELAY_MS and REQUEST_SENT_MS, and pings `peer`, which
   * pongs. Each client processes what it gets in order, and a home node hands it over in order, so an answer `peer`
   * made to a request sent before the ping comes before the pong. `c` and `peer` must have different home nodes, and
   * nothing else send to `peer`'s meanwhile: then a check that `c` asked `peer` nothing can fail.
   */
  async function settled(c: SendingClient, peer: SendingClient, peerHome: EdgeNode): Promise<number> {
    const n = ++marks;
    const before = peerHome.metrics.value("stored");
    const mark = c.nextMessage((m) => m.text === `mark ${n}`, { signal: AbortSignal.timeout(WAIT_MS) });
    await peer.send(c.address, `mark ${n}`);
    await mark;
    await sleep(KEY_REQUEST_DELAY_MS + REQUEST_SENT_MS);
    const ping = peer.nextMessage((m) => m.text === `ping ${n}`, { signal: AbortSignal.timeout(WAIT_MS) });
    const pong = c.nextMessage((m) => m.text === `pong ${n}`, { signal: AbortSignal.timeout(WAIT_MS) });
    await c.send(peer.address, `ping ${n}`);
    await ping;
    await peer.send(c.address, `pong ${n}`);
    await pong;
    return peerHome.metrics.value("stored") - before - 1;
  }

  /** Every message `c` emits from now on. */
  function collect(c: SendingClient): ReceivedMessage[] {
    const got: ReceivedMessage[] = [];
    c.on("message", (m) => got.push(m));
    return got;
  }

  /** Every invitation `c` announces from now on. */
  function invitations(c: SendingClient): GroupInvitation[] {
    const got: GroupInvitation[] = [];
    c.on("groupInvitation", (i) => got.push(i));
    return got;
  }

  /** The next message `c` shows of `group` with `text`. */
  function next(c: SendingClient, group: string, text: string): Promise<ReceivedMessage> {
    return c.nextMessage((m) => m.groupId === group && m.text === text, { signal: AbortSignal.timeout(WAIT_MS) });
  }

  before(() => {
    ({ ctx, root } = network);
  });

  it("refuses a groupInvitations option other than ask or accept", async () => {
    const create = SendingClient.create({
      signer: Wallet.createRandom().connect(ethers.provider),
      storage: new MemoryStorage(),
      deployment: ctx.deployment,
      provider: ethers.provider,
      groupInvitations: "always" as "accept",
    });
    await create.then(
      (c) => {
        clients.push(c);
        expect.fail("expected a RangeError");
      },
      (e: unknown) => expect((e as Error).message).to.include("groupInvitations"),
    );
  });

  it("asks before joining another user's group, sends nothing meanwhile, and joins with the admin's key once accepted", async () => {
    const { client: admin, wallet: a, home: adminHome } = await user();
    const { client: invited, wallet: b } = await user(); // the default: "ask"
    const { client: member, wallet: c } = await user({ groupInvitations: "accept" });
    const asked = invitations(invited);
    const shown = collect(invited);

    const group = await admin.createGroup([b.address, c.address]);
    await until(() => asked.length === 1 && member.groupInfo(group) !== undefined, "the invitation and C's join");
    const expected = { groupId: group, admin: a.address, version: 0, members: [a.address, b.address, c.address] };
    expect(asked[0]).to.deep.equal(expected); // no key in it
    expect(invited.groupInvitations()).to.deep.equal([expected]);
    expect(invited.groupInfo(group)).to.equal(undefined); // not in the group

    // The admin's message is held, not shown, and makes the invited client ask no other user for a key: nothing
    // reaches the admin's home node from it but the ping of `settled` (an answer would show nothing here: the same
    // key further on its chain is not announced again).
    const atMember = next(member, group, "before");
    await admin.sendToGroup(group, "before");
    await atMember;
    expect(await settled(invited, admin, adminHome)).to.equal(0); // no key request reached the admin
    expect(shown.filter((m) => m.groupId === group)).to.deep.equal([]);
    expect(asked).to.have.length(1);

    await invited.acceptGroupInvitation(group, { signal: AbortSignal.timeout(WAIT_MS) });
    expect(invited.groupInfo(group)).to.deep.equal({ members: expected.members, admin: a.address, version: 0 });
    expect(invited.groupInvitations()).to.deep.equal([]);
    // The message held meanwhile opens with the admin's key from the invitation.
    await until(() => shown.some((m) => m.groupId === group && m.text === "before"), "the held message");

    const atInvited = next(invited, group, "after");
    await admin.sendToGroup(group, "after");
    expect((await atInvited).from).to.equal(a.address);
    // Its reply reaches the admin (its key went to the admin's client at the join) and C (owed: sent first).
    const replies = [next(admin, group, "reply"), next(member, group, "reply")];
    await invited.sendToGroup(group, "reply");
    for (const m of await Promise.all(replies)) expect(m.from).to.equal(b.address);
  });

  it("declines an invitation: it is gone, nothing reaches the admin, and only a later key from the admin invites again", async () => {
    const { client: admin, wallet: a, home: adminHome } = await user();
    const { client: invited, wallet: b } = await user();
    const { wallet: c } = await user({ groupInvitations: "accept" });
    const asked = invitations(invited);
    const shown = collect(invited);
    // The admin's client emits "group" for each member's key it takes: the invited client's would be one.
    const changes: string[] = [];
    admin.on("group", (id) => changes.push(id));

    const group = await admin.createGroup([b.address]);
    await until(() => asked.length === 1, "the invitation");
    await invited.declineGroupInvitation(group);
    expect(invited.groupInvitations()).to.deep.equal([]);
    expect(await codeOf(invited.acceptGroupInvitation(group))).to.equal("UnknownGroup");
    expect(await codeOf(invited.declineGroupInvitation(group))).to.equal("UnknownGroup");

    // The admin writes to the group: the declined client neither shows it nor asks another user for a key (the
    // admin's answer would invite it again).
    await admin.sendToGroup(group, "to the group");
    expect(await settled(invited, admin, adminHome)).to.equal(0); // no key request reached the admin
    expect(changes.filter((id) => id === group)).to.deep.equal([]);
    expect(shown.filter((m) => m.groupId === group)).to.deep.equal([]);
    expect(asked).to.have.length(1);
    expect(invited.groupInvitations()).to.deep.equal([]);

    // A later key from the admin (a change of the list) is a new invitation, with the new list.
    await admin.addGroupMember(group, c.address);
    await until(() => asked.length === 2, "the second invitation");
    expect(invited.groupInvitations()).to.deep.equal([
      { groupId: group, admin: a.address, version: 1, members: [a.address, b.address, c.address] },
    ]);
  });

  it("keeps an invitation across a restart on the same files, deletes an unreadable one, bounds them at load, and joins after", async () => {
    const { client: admin, wallet: a } = await user();
    const dir = path.join(root, "invited");
    const { client: first, wallet: b } = await user({}, await FileStorage.open(dir));
    const asked = invitations(first);

    const group = await admin.createGroup([b.address]);
    await until(() => asked.length === 1, "the invitation");
    // A record under the invitations' prefix that does not parse (another layout, say).
    const bad = `net/i/${a.address.slice(2).toLowerCase()}${"00".repeat(12)}`;
    await first.identity.store.put(bad, Uint8Array.of(1, 2, 3));
    // Two copies of its record under other ids of the same admin, received before it (records a bound did not
    // apply to, written by an older version, say): three from one admin at load, so the oldest goes there.
    const record = (await first.identity.store.get(`net/i/${group}`))!;
    const older = (n: number) => `${a.address.slice(2).toLowerCase()}${"00".repeat(11)}0${n}`;
    for (const n of [1, 2]) {
      const copy = record.slice();
      const view = new DataView(copy.buffer, copy.byteOffset);
      view.setUint32(4, 0); // received at: n ms after the epoch (u32 high, u32 low after the magic)
      view.setUint32(8, n);
      await first.identity.store.put(`net/i/${older(n)}`, copy);
    }
    await first.stop();
    expect(await codeOf(first.acceptGroupInvitation(group))).to.equal("Stopped");
    expect(await codeOf(first.declineGroupInvitation(group))).to.equal("Stopped");

    const again = await client(b, await FileStorage.open(dir));
    expect(again.groupInvitations()).to.deep.equal([{ ...asked[0], groupId: older(2) }, asked[0]]);
    expect(await again.identity.store.list("net/i/")).to.have.members([`net/i/${older(2)}`, `net/i/${group}`]);
    await again.start();
    await again.acceptGroupInvitation(group);
    expect(await again.identity.store.list("net/i/")).to.deep.equal([`net/i/${older(2)}`]);

    const atAgain = next(again, group, "after the restart");
    await admin.sendToGroup(group, "after the restart");
    await atAgain;
    const atAdmin = next(admin, group, "back");
    await again.sendToGroup(group, "back");
    expect((await atAdmin).from).to.equal(b.address);
  });

  it("keeps the group messages held while an invitation is pending across a restart: each shown once, in order, as it came", async () => {
    const { client: admin, wallet: a } = await user();
    const dir = path.join(root, "held-messages");
    const { client: first, wallet: b, home } = await user({}, await FileStorage.open(dir));
    const asked = invitations(first);
    const shownBefore = collect(first);

    const group = await admin.createGroup([b.address]);
    await until(() => asked.length === 1, "the invitation");
    const since = Date.now();
    const texts = ["one", "two", "three"];
    const ids: string[] = [];
    for (const text of texts) {
      const sent = await admin.sendToGroup(group, text);
      expect(sent.messageIds).to.have.length(1); // B's account is the one recipient
      ids.push(sent.messageIds[0]);
    }
    // Held, and stored as held: acknowledged to the inbox, so the records are all that is left of them.
    await until(async () => (await first.identity.store.list("net/hm/")).length === texts.length, "the records");
    expect(await first.identity.store.list("net/hm/")).to.have.members(ids.map((id) => `net/hm/${id}`));
    expect(await first.identity.store.list("net/hk/")).to.deep.equal([]); // the admin's key is the invitation's
    expect(shownBefore.filter((m) => m.groupId === group)).to.deep.equal([]);
    // Records that do not parse under both prefixes (another layout, say): reported and deleted at load.
    await first.identity.store.put(`net/hm/${"00".repeat(16)}`, Uint8Array.of(1, 2, 3));
    await first.identity.store.put(`net/hk/${"00".repeat(8)}`, Uint8Array.of(1, 2, 3));
    await first.stop();

    const again = await client(b, await FileStorage.open(dir));
    expect(await again.identity.store.list("net/hm/")).to.have.members(ids.map((id) => `net/hm/${id}`));
    expect(await again.identity.store.list("net/hk/")).to.deep.equal([]);
    const shown = collect(again);
    await again.start();
    expect(shown.filter((m) => m.groupId === group)).to.deep.equal([]); // still pending: nothing opens
    // Their records as stored, to put back below.
    const saved = await Promise.all(ids.map(async (id) => (await again.identity.store.get(`net/hm/${id}`))!));
    await again.acceptGroupInvitation(group, { signal: AbortSignal.timeout(WAIT_MS) });
    const ofGroup = () => shown.filter((m) => m.groupId === group);
    await until(() => ofGroup().length === texts.length, "the held messages");
    await sleep(500); // a second emission of any would come at once
    expect(ofGroup().map((m) => m.text)).to.deep.equal(texts);
    for (const [i, m] of ofGroup().entries()) {
      expect(m.storedAt).to.be.within(since, Date.now());
      expect({ ...m, storedAt: 0 }).to.deep.equal({
        messageId: ids[i],
        deliveredBy: home.operator,
        storedAt: 0,
        from: a.address,
        groupId: group,
        kind: "text",
        text: texts[i],
        data: new TextEncoder().encode(texts[i]),
      });
    }
    // Opened: no record of them is left.
    expect(await again.identity.store.list("net/hm/")).to.deep.equal([]);
    expect(await again.identity.store.list("net/hk/")).to.deep.equal([]);

    // A crash after they were shown and before their records went: the records of a group now joined are tried
    // again at the next start, their chain steps are spent (reported, SenderKeyError "Duplicate"), and they go,
    // shown no second time.
    await again.stop();
    for (const [i, id] of ids.entries()) await again.identity.store.put(`net/hm/${id}`, saved[i]);
    const third = await client(b, await FileStorage.open(dir));
    const duplicates: string[] = [];
    third.on("error", (e) => {
      if (e instanceof SenderKeyError && e.code === "Duplicate") duplicates.push(e.message);
    });
    const shownThird = collect(third);
    await third.start();
    expect(await third.identity.store.list("net/hm/")).to.deep.equal([]);
    expect(duplicates).to.have.length(texts.length);
    expect(shownThird.filter((m) => m.groupId === group)).to.deep.equal([]);
  });

  it("keeps a held message's record when its group cannot be stored after it opened: the next start shows it", async () => {
    const { client: admin } = await user();
    const dir = path.join(root, "held-store-fails");
    const files = await FileStorage.open(dir);
    // Group records cannot be written once the invitation's record is deleted: the join is stored, then the held
    // message opens and its chain step cannot be.
    let armed = false;
    const storage: StorageAdapter = {
      get: (key) => files.get(key),
      list: (prefix) => files.list(prefix),
      delete: async (key) => {
        await files.delete(key);
        if (key.includes("/net/i/")) armed = true;
      },
      put: async (key, value) => {
        if (armed && key.includes("/net/g/")) throw new StorageError("Io", "test: group records cannot be written");
        await files.put(key, value);
      },
    };
    const { client: first, wallet: b } = await user({}, storage);
    const asked = invitations(first);
    const group = await admin.createGroup([b.address]);
    await until(() => asked.length === 1, "the invitation");
    const [id] = (await admin.sendToGroup(group, "kept")).messageIds;
    await until(async () => (await first.identity.store.list("net/hm/")).includes(`net/hm/${id}`), "its record");
    const shown = collect(first);
    const failures: Error[] = [];
    first.on("error", (e) => {
      if (e instanceof StorageError) failures.push(e);
    });
    await first.acceptGroupInvitation(group, { signal: AbortSignal.timeout(WAIT_MS) }).catch(() => undefined);
    expect(armed).to.equal(true);
    expect(failures).to.not.have.length(0); // the group's write after the message opened
    expect(shown.filter((m) => m.groupId === group)).to.deep.equal([]); // not shown: its step was not stored
    expect(await first.identity.store.list("net/hm/")).to.deep.equal([`net/hm/${id}`]);
    await first.stop();

    const again = await client(b, await FileStorage.open(dir));
    const shownAgain = collect(again);
    await again.start();
    await until(() => shownAgain.some((m) => m.groupId === group), "the held message at start");
    expect(shownAgain.filter((m) => m.groupId === group).map((m) => [m.messageId, m.text])).to.deep.equal([
      [id, "kept"],
    ]);
    expect(await again.identity.store.list("net/hm/")).to.deep.equal([]);
  });

  it("keeps the keys held while an invitation is pending across a restart: a member's and the admin's phone's messages open once accepted", async () => {
    const { client: admin, wallet: a } = await user();
    const phone = await device(a);
    const { client: member, wallet: c } = await user({ groupInvitations: "accept" });
    const dir = path.join(root, "held-keys");
    const { client: first, wallet: b } = await user({}, await FileStorage.open(dir));
    const asked = invitations(first);

    const group = await admin.createGroup([b.address, c.address]);
    await until(
      () => asked.length === 1 && member.groupInfo(group) !== undefined && phone.groupInfo(group) !== undefined,
      "the invitation and the joins",
    );
    // C and the admin's phone each send B their key (owed), then their message: neither key is the invitation's,
    // so both are held, and both messages with them.
    await member.sendToGroup(group, "from a member");
    await phone.sendToGroup(group, "from the phone");
    await until(
      async () =>
        (await first.identity.store.list("net/hm/")).length === 2 &&
        (await first.identity.store.list("net/hk/")).length === 2,
      "the held records",
    );
    await first.stop();

    const again = await client(b, await FileStorage.open(dir));
    expect(await again.identity.store.list("net/hk/")).to.have.length(2);
    const shown = collect(again);
    await again.start();
    await again.acceptGroupInvitation(group, { signal: AbortSignal.timeout(WAIT_MS) });
    const ofGroup = () => shown.filter((m) => m.groupId === group);
    await until(() => ofGroup().length === 2, "both held messages");
    const byText = new Map(ofGroup().map((m) => [m.text, m]));
    expect(byText.get("from a member")).to.include({ from: c.address }).and.not.have.property("device");
    expect(byText.get("from the phone")).to.include({ from: a.address, device: phone.address });
    expect(await again.identity.store.list("net/hm/")).to.deep.equal([]);
    expect(await again.identity.store.list("net/hk/")).to.deep.equal([]);
  });

  it("deletes the records of what was held for a declined invitation", async () => {
    const { client: admin } = await user();
    const { client: member, wallet: c } = await user({ groupInvitations: "accept" });
    const { client: invited, wallet: b } = await user();
    const asked = invitations(invited);

    const group = await admin.createGroup([b.address, c.address]);
    await until(() => asked.length === 1 && member.groupInfo(group) !== undefined, "the invitation and C's join");
    await admin.sendToGroup(group, "from the admin");
    await member.sendToGroup(group, "from a member");
    const records = async () => [
      ...(await invited.identity.store.list("net/hm/")),
      ...(await invited.identity.store.list("net/hk/")),
    ];
    await until(async () => (await records()).length === 3, "two held messages and a held key");
    await invited.declineGroupInvitation(group);
    expect(await records()).to.deep.equal([]);
  });

  it("bounds the invitations of one admin: a third pushes out its oldest, and a newer list replaces one in place", async () => {
    const { client: admin, wallet: a } = await user();
    const { client: other } = await user();
    const { client: invited, wallet: e } = await user();
    const { wallet: c } = await user({ groupInvitations: "accept" });
    const asked = invitations(invited);
    const dropped: ClientError[] = [];
    invited.on("error", (error) => {
      if (error instanceof ClientError && error.code === "InvitationDropped") dropped.push(error);
    });

    const theirs = await other.createGroup([e.address]);
    await until(() => asked.length === 1, "another admin's invitation");
    const groups: string[] = [];
    for (let i = 0; i <= MAX_GROUP_INVITATIONS_PER_ADMIN; i++) {
      groups.push(await admin.createGroup([e.address]));
      await until(() => asked.length === i + 2, `invitation ${i + 1} of the admin`); // in order
    }
    const [oldest, ...kept] = groups;
    expect(invited.groupInvitations().map((i) => i.groupId)).to.deep.equal([theirs, ...kept]);
    expect(dropped).to.have.length(1);
    expect(dropped[0].message).to.include(oldest);
    expect(await invited.identity.store.list("net/i/")).to.have.members([theirs, ...kept].map((g) => `net/i/${g}`));
    expect(await codeOf(invited.acceptGroupInvitation(oldest))).to.equal("UnknownGroup");

    // The admin changes a pending group: the invitation takes the newer list and keeps its place in the order.
    await admin.addGroupMember(kept[0], c.address);
    await until(() => asked.length === groups.length + 2, "the newer list");
    expect(invited.groupInvitations()).to.deep.equal([
      { groupId: theirs, admin: other.address, version: 0, members: [other.address, e.address] },
      { groupId: kept[0], admin: a.address, version: 1, members: [a.address, e.address, c.address] },
      { groupId: kept[1], admin: a.address, version: 0, members: [a.address, e.address] },
    ]);
    expect(dropped).to.have.length(1);
  });

  it("keeps at most MAX_GROUP_INVITATIONS in all: one more, from a new admin, pushes out the oldest", async function () {
    this.timeout(300_000);
    const { client: invited, wallet: e } = await user();
    const asked = invitations(invited);
    const dropped: ClientError[] = [];
    invited.on("error", (error) => {
      if (error instanceof ClientError && error.code === "InvitationDropped") dropped.push(error);
    });
    // Each admin invites twice (its own bound), so the bound in all is reached with MAX / PER_ADMIN admins.
    const admins = MAX_GROUP_INVITATIONS / MAX_GROUP_INVITATIONS_PER_ADMIN;
    const groups: string[] = [];
    for (let i = 0; i <= admins; i++) {
      const { client: admin } = await user();
      for (let j = 0; j < (i < admins ? MAX_GROUP_INVITATIONS_PER_ADMIN : 1); j++) {
        groups.push(await admin.createGroup([e.address]));
        await until(() => asked.length === groups.length, `invitation ${groups.length}`);
      }
    }
    expect(groups).to.have.length(MAX_GROUP_INVITATIONS + 1);
    const [oldest, ...kept] = groups;
    expect(invited.groupInvitations().map((i) => i.groupId)).to.deep.equal(kept);
    expect(dropped).to.have.length(1);
    expect(dropped[0].message).to.include(oldest);
    expect(await invited.identity.store.list("net/i/")).to.have.members(kept.map((g) => `net/i/${g}`));
    expect(await codeOf(invited.acceptGroupInvitation(oldest))).to.equal("UnknownGroup");
  });

  it("blocks an admin: its invitations and what was held for them go, none come while blocked (across a restart), until unblocked", async () => {
    const { client: admin, wallet: a, home: adminHome } = await user();
    const dir = path.join(root, "blocked");
    const { client: first, wallet: b, home: bHome } = await user({}, await FileStorage.open(dir));
    const asked = invitations(first);
    const { client: other } = await user();

    const before = await admin.createGroup([b.address]);
    await until(() => asked.length === 1, "the first invitation");
    await admin.sendToGroup(before, "held while pending");
    await until(async () => (await first.identity.store.list("net/hm/")).length === 1, "the held message's record");
    const theirs = await other.createGroup([b.address]); // another admin's invitation stays
    await until(() => asked.length === 2, "another admin's invitation");

    await first.blockGroupAdmin(a.address.toLowerCase());
    expect(first.blockedGroupAdmins()).to.deep.equal([a.address]);
    expect(first.groupInvitations().map((i) => i.groupId)).to.deep.equal([theirs]);
    expect(await first.identity.store.list("net/i/")).to.deep.equal([`net/i/${theirs}`]);
    expect(await first.identity.store.list("net/hm/")).to.deep.equal([]);
    await first.blockGroupAdmin(a.address); // again: nothing changes

    // While blocked: a new group of the admin, and its message, bring nothing (no invitation, no record, no request).
    const during = await admin.createGroup([b.address]);
    await admin.sendToGroup(during, "dropped unread");
    expect(await settled(first, admin, adminHome)).to.equal(0); // nothing reached the admin's home node from B
    expect(asked).to.have.length(2);
    expect(first.groupInfo(during)).to.equal(undefined);
    expect(await first.identity.store.list("net/hm/")).to.deep.equal([]);
    await first.stop();

    // The block is stored: a new client on the same files keeps it.
    const again = await client(b, await FileStorage.open(dir));
    await again.register({ homeNodes: [bHome.operator] });
    await again.start();
    expect(again.blockedGroupAdmins()).to.deep.equal([a.address]);
    const askedAgain = invitations(again);
    await admin.createGroup([b.address]);
    await settled(again, admin, adminHome);
    expect(askedAgain).to.deep.equal([]);

    await again.unblockGroupAdmin(a.address);
    expect(again.blockedGroupAdmins()).to.deep.equal([]);
    const after = await admin.createGroup([b.address]);
    await until(() => askedAgain.some((i) => i.groupId === after), "an invitation once unblocked");
    // Declining with `block` declines and blocks in one call.
    await again.declineGroupInvitation(after, { block: true });
    expect(again.blockedGroupAdmins()).to.deep.equal([a.address]);
    expect(again.groupInvitations().map((i) => i.groupId)).to.deep.equal([theirs]);
  });

  it("does not join a blocked admin's group with groupInvitations accept, and refuses a block past the bound", async () => {
    const { client: admin, wallet: a, home: adminHome } = await user();
    const { client: joiner, wallet: j } = await user({ groupInvitations: "accept" });
    await joiner.blockGroupAdmin(a.address);
    const group = await admin.createGroup([j.address]);
    await admin.sendToGroup(group, "not for a blocking member");
    await settled(joiner, admin, adminHome);
    expect(joiner.groupInfo(group)).to.equal(undefined);
    await joiner.unblockGroupAdmin(a.address);
    const later = await admin.createGroup([j.address]);
    await until(() => joiner.groupInfo(later) !== undefined, "a join once unblocked");

    // The bound: MAX_BLOCKED_GROUP_ADMINS addresses, then one more is refused (and one already there is not).
    const many = Array.from(
      { length: MAX_BLOCKED_GROUP_ADMINS },
      (_, i) => `0x${(i + 1).toString(16).padStart(40, "0")}`,
    );
    for (const address of many) await joiner.blockGroupAdmin(address);
    expect(joiner.blockedGroupAdmins()).to.have.length(MAX_BLOCKED_GROUP_ADMINS);
    expect(await codeOf(joiner.blockGroupAdmin(a.address))).to.equal("BlockListFull");
    await joiner.blockGroupAdmin(many[0]);
    await joiner.unblockGroupAdmin(many[0]);
    await joiner.blockGroupAdmin(a.address);
    expect(joiner.blockedGroupAdmins()).to.include(a.address);
  });

  it("asks no other user for the key of a group whose invitation a bound pushed out", async () => {
    const { client: admin, home: adminHome } = await user();
    const { client: invited, wallet: e } = await user();
    const asked = invitations(invited);
    const groups: string[] = [];
    for (let i = 0; i <= MAX_GROUP_INVITATIONS_PER_ADMIN; i++) {
      groups.push(await admin.createGroup([e.address]));
      await until(() => asked.length === i + 1, `invitation ${i + 1}`);
    }
    const [oldest, ...kept] = groups;
    expect(invited.groupInvitations().map((i) => i.groupId)).to.deep.equal(kept);

    // The admin still counts E a member of the oldest group and writes to it. Were E to ask the admin for the key,
    // the admin would answer (E is a member), the answer would invite E again, and push out the next oldest.
    await admin.sendToGroup(oldest, "to a group pushed out");
    expect(await settled(invited, admin, adminHome)).to.equal(0); // no key request reached the admin
    expect(asked).to.have.length(groups.length);
    expect(invited.groupInvitations().map((i) => i.groupId)).to.deep.equal(kept);
  });

  it("keeps the admin's account's key when the admin's phone sends its own: both their messages held meanwhile open once accepted", async () => {
    const { client: admin, wallet: a } = await user();
    const phone = await device(a);
    const { client: invited, wallet: b } = await user();
    const asked = invitations(invited);
    const shown = collect(invited);

    const group = await admin.createGroup([b.address]);
    await until(
      () => asked.length === 1 && phone.groupInfo(group) !== undefined,
      "the invitation and the phone's join",
    );
    expect(asked[0]).to.include({ groupId: group, admin: a.address, version: 0 });

    // The account writes, then the phone, whose key, owed to B, goes to B first: a second key from a client of the
    // admin at the same version. The phone's direct message after it, once shown, says B processed both.
    await admin.sendToGroup(group, "from the account");
    await phone.sendToGroup(group, "from the phone");
    const mark = invited.nextMessage((m) => m.text === "phone mark", { signal: AbortSignal.timeout(WAIT_MS) });
    await phone.send(b.address, "phone mark");
    await mark;
    expect(asked).to.have.length(1); // a key alone, of the same list, is not announced again
    expect(invited.groupInvitations()).to.deep.equal([asked[0]]);

    await invited.acceptGroupInvitation(group);
    const texts = () => shown.filter((m) => m.groupId === group).map((m) => m.text);
    await until(() => texts().length === 2, "both held messages");
    expect(texts()).to.have.members(["from the account", "from the phone"]);
  });

  it("refuses an invitation whose sender, the admin's phone, was unlinked since: it goes, and nothing joins", async () => {
    const { client: admin, wallet: a } = await user();
    const phone = await device(a);
    const { client: invited, wallet: b } = await user();
    const asked = invitations(invited);

    // The phone creates the group: its key, the invitation's, came from the phone, a device of the admin then.
    const group = await phone.createGroup([b.address]);
    await until(() => asked.length === 1, "the invitation");
    expect(asked[0]).to.include({ groupId: group, admin: a.address });
    // The admin unlinks the phone (a stolen one, say): joining must not send it B's key.
    await admin.did.setDevices([]);
    expect(await codeOf(invited.acceptGroupInvitation(group))).to.equal("InvitationDropped");
    expect(invited.groupInfo(group)).to.equal(undefined);
    expect(invited.groupInvitations()).to.deep.equal([]);
    expect(await invited.identity.store.list("net/i/")).to.deep.equal([]);
  });

  it("joins at once, without asking, a group its own user created or accepted on another of its clients", async () => {
    const { client: account, wallet: u } = await user(); // the default: "ask"
    const { client: x, wallet: xWallet } = await user();
    const phone = await SendingClient.createDevice({
      signer: u,
      storage: new MemoryStorage(),
      deployment: ctx.deployment,
      provider: ethers.provider,
      oneTimePrekeys: 6,
    });
    clients.push(phone);
    phone.on("error", () => undefined);
    await phone.register({ homeNodes: [nodes[0].operator] });
    await phone.start();
    const askedAccount = invitations(account);
    const askedX = invitations(x);

    // The phone creates the group: U, its wallet, is the admin; U's account joins on its own user's word, while X,
    // another user, is asked.
    const group = await phone.createGroup([xWallet.address]);
    await until(() => account.groupInfo(group) !== undefined && askedX.length === 1, "U's join and X's invitation");
    expect(askedAccount).to.deep.equal([]);
    expect(account.groupInvitations()).to.deep.equal([]);
    expect(askedX[0]).to.include({ groupId: group, admin: u.address });
    expect(x.groupInfo(group)).to.equal(undefined);

    // X invites U: U's account and phone are both asked. The phone accepts; its key, sent before its first group
    // message, makes the account join at once, and the account opens X's message from before with the key of its
    // own invitation (the admin's), which it drops.
    const shownAtAccount = collect(account);
    const theirs = await x.createGroup([u.address]);
    await until(() => askedAccount.length === 1 && phone.groupInvitations().length === 1, "both invitations");
    await x.sendToGroup(theirs, "early");
    await sleep(QUIET_MS); // held at both, asking nobody
    const earlyAtPhone = next(phone, theirs, "early");
    await phone.acceptGroupInvitation(theirs);
    await earlyAtPhone;
    const atX = next(x, theirs, "from the phone");
    await phone.sendToGroup(theirs, "from the phone");
    await atX;
    await until(() => shownAtAccount.some((m) => m.groupId === theirs && m.text === "from the phone"), "the join");
    expect(account.groupInvitations()).to.deep.equal([]);
    expect(await account.identity.store.list("net/i/")).to.deep.equal([]);
    expect(shownAtAccount.filter((m) => m.groupId === theirs).map((m) => m.text)).to.have.members([
      "early",
      "from the phone",
    ]);
  });
});
