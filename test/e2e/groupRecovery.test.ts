import { expect } from "chai";
import { ethers } from "hardhat";
import { type Provider, type Signer, type TransactionRequest } from "ethers";
import { deployProtocolFixture } from "../fixtures/protocol";
import { createTestClient, fundedWallet, until, useEdgeNetwork } from "../fixtures/edgeNetwork";
import type { EdgeNode } from "../../node/edge";
import { SenderKeyError } from "../../sdk/crypto/senderKeys";
import { MemoryStorage, StorageError, type StorageAdapter } from "../../sdk/storage";
import {
  ClientError,
  STOP_FAN_OUT_WAIT_MS,
  SendingClient,
  type ReceivedMessage,
  type SendingClientOptions,
} from "../../sdk/client";

/** Discovery and directory poll the chain this often in the test (the default 2 s would only slow the test down). */
const POLL_MS = 100;
/** Longest wait for a message on its way: 3 hops on 127.0.0.1 take milliseconds; this only bounds a failure. */
const WAIT_MS = 10_000;
/** Time for a message that should not come to arrive anyway (a send on 127.0.0.1 takes tens of milliseconds). */
const QUIET_MS = 500;

type Ctx = Awaited<ReturnType<typeof deployProtocolFixture>>;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A memory storage whose next write of a group record fails once `failNextGroupWrite` is set (a full disk, say). */
function flakyStorage(): { storage: StorageAdapter; failNextGroupWrite: boolean; failed: number } {
  const base = new MemoryStorage();
  const flaky = {
    failNextGroupWrite: false,
    failed: 0,
    storage: {
      get: (key: string) => base.get(key),
      list: (prefix: string) => base.list(prefix),
      delete: (key: string) => base.delete(key),
      put: (key: string, value: Uint8Array) => {
        if (flaky.failNextGroupWrite && key.includes("/net/g/")) {
          flaky.failNextGroupWrite = false;
          flaky.failed++;
          return Promise.reject(new StorageError("Io", "test: the disk is full"));
        }
        return base.put(key, value);
      },
    } satisfies StorageAdapter,
  };
  return flaky;
}

/**
 * The hardhat provider, except that while `armed` an eth_call whose calldata names `operator` (the registry's
 * `node(operator)` read a send makes for each home node of its recipient) waits until `release()`: a send to a
 * recipient at that home node is then in flight for as long as the test likes, as one to a node that does not answer.
 */
function gatedProvider(operator: string) {
  const needle = operator.slice(2).toLowerCase();
  let open: () => void = () => undefined;
  const gate = {
    armed: false,
    hits: 0,
    wait: Promise.resolve(),
    arm() {
      gate.wait = new Promise<void>((resolve) => (open = resolve));
      gate.armed = true;
    },
    release() {
      gate.armed = false;
      open();
    },
    provider: new Proxy(ethers.provider, {
      get(target, prop) {
        if (prop === "call") {
          return async (tx: TransactionRequest) => {
            if (gate.armed && typeof tx.data === "string" && tx.data.toLowerCase().includes(needle)) {
              gate.hits++;
              await gate.wait;
            }
            return target.call(tx);
          };
        }
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    }) as Provider,
  };
  return gate;
}

describe("e2e: groups recover from failed stores, send outside their lock, and refuse a reinstalled admin", function () {
  this.timeout(120_000);

  const network = useEdgeNetwork("group-recovery", 4, POLL_MS, WAIT_MS);
  const { nodes, clients } = network;
  let ctx: Ctx;

  async function client(
    signer: Signer,
    storage: StorageAdapter = new MemoryStorage(),
    extra: Partial<SendingClientOptions> = {},
  ) {
    // About membership, keys and rekeys once in a group: the clients join at once (invitations.test.ts tests "ask").
    return createTestClient(ctx, clients, signer, storage, { groupInvitations: "accept", ...extra });
  }

  /** A new wallet's client, registered on `home` and started. */
  async function user(home: EdgeNode, storage?: StorageAdapter, extra: Partial<SendingClientOptions> = {}) {
    const w = await fundedWallet();
    const c = await client(w, storage, extra);
    await c.register({ homeNodes: [home.operator] });
    await c.start();
    return { wallet: w, client: c };
  }

  /** Every message `c` emits from now on. */
  function collect(c: SendingClient): ReceivedMessage[] {
    const got: ReceivedMessage[] = [];
    c.on("message", (m) => got.push(m));
    return got;
  }

  /** Every error `c` reports from now on. */
  function errorsOf(c: SendingClient): Error[] {
    const got: Error[] = [];
    c.on("error", (e) => got.push(e));
    return got;
  }

  const next = (c: SendingClient, text: string) =>
    c.nextMessage((m) => m.text === text, { signal: AbortSignal.timeout(WAIT_MS) });

  /** Expects `c` to fail to open `ciphertext` of `group` (a removed member's client). */
  async function cannotOpen(c: SendingClient, group: string, ciphertext: Uint8Array) {
    await c.decryptGroupMessage(group, ciphertext).then(
      () => expect.fail(`${c.address} opened a group message sent after its removal`),
      (e: unknown) => expect(e).to.be.instanceOf(SenderKeyError),
    );
  }

  before(() => {
    ctx = network.ctx;
  });

  it("completes a removal it followed but could not store before its next group message, and at its next start", async () => {
    const flaky = flakyStorage();
    const { client: a } = await user(nodes[0]);
    const { client: b, wallet: bWallet } = await user(nodes[1], flaky.storage);
    const { client: c } = await user(nodes[2]);
    const { client: d } = await user(nodes[3]);
    const group = await a.createGroup([b.address, c.address, d.address]);
    await until(() => [b, c, d].every((x) => x.groupMembers(group)?.length === 4), "B, C and D to join");
    await sleep(QUIET_MS); // nothing else is on its way to B: its next group event is A's removal key

    // B takes A's key for the removal (stored, then the "group" event), then follows its list: that store fails.
    const errorsAtB = errorsOf(b);
    let armed = true;
    b.on("group", () => {
      if (armed) flaky.failNextGroupWrite = true;
      armed = false;
    });
    await a.removeGroupMember(group, c.address);
    await until(() => errorsAtB.some((e) => e instanceof StorageError), "B's store of the removal to fail");
    expect(flaky.failed).to.equal(1);
    expect(b.groupInfo(group)).to.deep.include({ version: 0 }); // not applied: C still in B's stored list

    // B's next message completes the removal first: it goes to A and D only, and C cannot open it.
    const atC = collect(c);
    const arriving = [a, d].map((x) => next(x, "after C left"));
    const sent = await b.sendToGroup(group, "after C left");
    for (const m of await Promise.all(arriving)) expect(m.from).to.equal(b.address);
    expect(sent.messageIds).to.have.length(2);
    expect(sent.unreached).to.deep.equal([]);
    expect(b.groupInfo(group)).to.deep.equal({
      members: [a.address, b.address, d.address],
      admin: a.address,
      version: 1,
    });
    await cannotOpen(c, group, sent.ciphertext);
    await sleep(QUIET_MS);
    expect(atC).to.deep.equal([]);

    // Again for D's removal, and B restarts before it sends: the pending removal was stored, and the start completes it.
    armed = true;
    await a.removeGroupMember(group, d.address);
    await until(() => flaky.failed === 2, "B's store of the second removal to fail");
    await until(() => errorsAtB.filter((e) => e instanceof StorageError).length === 2, "B to report it");
    expect(b.groupInfo(group)).to.deep.include({ version: 1 });
    await b.stop();
    const b2 = await client(bWallet, flaky.storage);
    expect(b2.groupInfo(group)).to.deep.include({ version: 1 }); // loaded as stored: the change is still owed
    await b2.start();
    expect(b2.groupInfo(group)).to.deep.equal({ members: [a.address, b.address], admin: a.address, version: 2 });
    const atD = collect(d);
    const atA = next(a, "after D left");
    const last = await b2.sendToGroup(group, "after D left");
    expect((await atA).from).to.equal(b.address);
    expect(last.messageIds).to.have.length(1);
    await cannotOpen(d, group, last.ciphertext);
    await sleep(QUIET_MS);
    expect(atD).to.deep.equal([]);
  });

  it("processes the group's incoming messages while one of its own sends is still on its way", async () => {
    // P's home node is nodes[3], used by nobody else here: S's sends to P wait on the gate, nothing else does.
    const { client: p } = await user(nodes[3]);
    const gate = gatedProvider(nodes[3].operator);
    const { client: s } = await user(nodes[0], undefined, { provider: gate.provider });
    const { client: q } = await user(nodes[1]);
    const group = await s.createGroup([p.address, q.address]);
    await until(() => [p, q].every((x) => x.groupMembers(group)?.length === 3), "P and Q to join");
    const warmUp = next(s, "Q is in");
    await q.sendToGroup(group, "Q is in");
    await warmUp;

    gate.arm();
    try {
      let done = false;
      const sending = s.sendToGroup(group, "slow to P").finally(() => (done = true));
      await until(() => gate.hits > 0, "S's send to P to wait on P's home node");
      // Q writes to the group meanwhile: S reads it at once, while its own send is still in flight (under the group's
      // lock for the whole fan-out, Q's message would wait behind it, and the client's receive queue with it).
      const atS = next(s, "while S sends");
      const fromQ = q.sendToGroup(group, "while S sends");
      expect((await atS).from).to.equal(q.address);
      expect(done, "S's send finished before the gate opened").to.equal(false);
      expect((await fromQ).unreached).to.deep.equal([]);

      const atP = next(p, "slow to P");
      gate.release();
      const sent = await sending;
      expect(sent.messageIds).to.have.length(2);
      expect(sent.unreached).to.deep.equal([]);
      expect((await atP).from).to.equal(s.address);
    } finally {
      gate.release(); // a failure above must not leave S's send waiting (its stop would wait for it)
    }
  });

  it("stops while a group send waits on a node that does not answer: it waits STOP_FAN_OUT_WAIT_MS for it, no longer", async () => {
    // S's sends to P (home node nodes[3], used by nobody else here) wait on the gate until the test releases it.
    const { client: p } = await user(nodes[3]);
    const gate = gatedProvider(nodes[3].operator);
    const { client: s } = await user(nodes[0], undefined, { provider: gate.provider });
    const group = await s.createGroup([p.address]);
    await until(() => p.groupMembers(group)?.length === 2, "P to join");
    gate.arm();
    try {
      let done = false;
      const sending = s.sendToGroup(group, "never leaves").finally(() => (done = true));
      await until(() => gate.hits > 0, "S's send to P to wait on P's home node");
      const started = Date.now();
      await s.stop();
      const took = Date.now() - started;
      expect(done, "stop waited for the send to end").to.equal(false);
      expect(took).to.be.at.least(STOP_FAN_OUT_WAIT_MS - 100); // it gave the send its time
      expect(took).to.be.below(STOP_FAN_OUT_WAIT_MS + 5_000); // and no more (the gate never opened meanwhile)
      gate.release();
      await sending.catch(() => undefined); // cut off with the host: whatever it ends with, nothing is left running
    } finally {
      gate.release();
    }
  });

  it("does not send a message still on its way to a member removed meanwhile on the admin's word", async () => {
    // S's sends to P (home node nodes[3]) wait on the gate; S's recipients come in the order A, P, X, so X's turn
    // comes only after the gate opens.
    const { client: a } = await user(nodes[0]);
    const { client: p } = await user(nodes[3]);
    const { client: x } = await user(nodes[1]);
    const gate = gatedProvider(nodes[3].operator);
    const { client: s } = await user(nodes[2], undefined, { provider: gate.provider });
    const group = await a.createGroup([s.address, p.address, x.address]);
    await until(() => [s, p, x].every((c) => c.groupMembers(group)?.length === 4), "S, P and X to join");
    const warmUp = [a, p, x].map((c) => next(c, "S is in"));
    await s.sendToGroup(group, "S is in");
    await Promise.all(warmUp);

    gate.arm();
    try {
      const atX = collect(x);
      const sending = s.sendToGroup(group, "planned before X left");
      await until(() => gate.hits > 0, "S's send to P to wait on P's home node");
      await sleep(QUIET_MS);
      expect(atX, "X's turn came before P's: the test's premise").to.deep.equal([]);
      // A removes X; S follows on its receive path while its message is still on its way.
      await a.removeGroupMember(group, x.address);
      await until(() => s.groupInfo(group)?.version === 1, "S to follow X's removal");

      const atP = next(p, "planned before X left");
      gate.release();
      const sent = await sending;
      expect((await atP).from).to.equal(s.address);
      expect(sent.messageIds, "to A and P only").to.have.length(2);
      expect(sent.unreached).to.deep.equal([]);
      await sleep(QUIET_MS);
      expect(atX).to.deep.equal([]);
    } finally {
      gate.release();
    }
  });

  it("sends a membership change only after the group messages planned before it", async () => {
    // S's sends to P (home node nodes[3]) wait on the gate; S's participants come in the order S, Q, P.
    const { client: q } = await user(nodes[1]);
    const { client: p } = await user(nodes[3]);
    const { client: z } = await user(nodes[0]);
    const gate = gatedProvider(nodes[3].operator);
    const { client: s } = await user(nodes[2], undefined, { provider: gate.provider });
    const group = await s.createGroup([q.address, p.address]);
    await until(() => [q, p].every((c) => c.groupMembers(group)?.length === 3), "Q and P to join");

    gate.arm();
    try {
      const atQ = next(q, "planned before Z came");
      const sending = s.sendToGroup(group, "planned before Z came");
      await atQ;
      await until(() => gate.hits > 0, "S's send to P to wait on P's home node");
      // Without the ordering, the change's key and list would reach Q now, and P's before the message planned first.
      let added = false;
      const adding = s.addGroupMember(group, z.address).then(() => (added = true));
      await sleep(QUIET_MS);
      expect(q.groupInfo(group)?.version, "the change went out during the message's fan-out").to.equal(0);
      expect(added).to.equal(false);

      const atP = next(p, "planned before Z came");
      gate.release();
      expect((await sending).unreached).to.deep.equal([]);
      expect((await atP).from).to.equal(s.address);
      await adding;
      await until(() => [q, p, z].every((c) => c.groupInfo(group)?.version === 1), "Q, P and Z to follow the change");
    } finally {
      gate.release();
    }
  });

  it("refuses membership changes from an admin account reinstalled with empty storage that rejoined on its device's word", async () => {
    const aWallet = await fundedWallet();
    const a = await client(aWallet);
    await a.register({ homeNodes: [nodes[0].operator] });
    await a.start();
    const phone = await SendingClient.createDevice({
      signer: aWallet,
      storage: new MemoryStorage(),
      deployment: ctx.deployment,
      provider: ethers.provider,
      oneTimePrekeys: 6,
      groupInvitations: "accept",
    });
    clients.push(phone);
    phone.on("error", () => undefined);
    await phone.register({ homeNodes: [nodes[1].operator] });
    await phone.start();
    const { client: b } = await user(nodes[2]);
    const { client: c } = await user(nodes[3]);

    const group = await a.createGroup([b.address, c.address]);
    await until(() => [phone, b, c].every((x) => x.groupMembers(group)?.length === 3), "the phone, B and C to join");
    await a.removeGroupMember(group, c.address);
    await until(() => [phone, b].every((x) => x.groupInfo(group)?.version === 1), "the phone and B to follow");

    // A's app is reinstalled: the same wallet, empty storage, new identity keys on chain.
    await a.stop();
    const fresh = await client(aWallet);
    await fresh.register({ homeNodes: [nodes[0].operator] });
    await fresh.start();
    expect(fresh.groupInfo(group)).to.equal(undefined);

    // The phone's next message reaches the new app, which asks the phone (its own user's device) for its key and
    // joins on its answer, at version 1: a list it cannot know is its own last one.
    const atFresh = next(fresh, "from A's phone");
    await phone.sendToGroup(group, "from A's phone");
    expect((await atFresh).groupId).to.equal(group);
    const list = { members: [a.address, b.address], admin: a.address, version: 1 };
    expect(fresh.groupInfo(group)).to.deep.equal(list);

    for (const change of [
      () => fresh.addGroupMember(group, c.address),
      () => fresh.removeGroupMember(group, b.address),
    ]) {
      await change().then(
        () => expect.fail("expected NotAdmin"),
        (e: unknown) => {
          expect(e).to.be.instanceOf(ClientError).with.property("code", "NotAdmin");
          expect((e as Error).message).to.match(/rejoined its group/);
        },
      );
    }
    expect(fresh.groupInfo(group)).to.deep.equal(list);
    await sleep(QUIET_MS);
    expect(b.groupInfo(group)).to.deep.equal(list); // no change went out
  });
});
