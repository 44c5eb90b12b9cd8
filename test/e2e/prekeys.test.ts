import { expect } from "chai";
import { ethers } from "hardhat";
import { setBalance } from "@nomicfoundation/hardhat-network-helpers";
import { parseEther, type Signer } from "ethers";
import { deployProtocolFixture } from "../fixtures/protocol";
import { createTestClient, fundedWallet, until, useEdgeNetwork } from "../fixtures/edgeNetwork";
import type { EdgeNode } from "../../node/edge";
import { X3dhError } from "../../sdk/crypto/x3dh";
import { recipientIdOf } from "../../sdk/net/calls";
import { MemoryStorage, type StorageAdapter } from "../../sdk/storage";
import {
  ClientError,
  MIN_SIGNED_PREKEY_ROTATION_MS,
  SIGNED_PREKEY_CHECK_MIN_MS,
  SendingClient,
  type ReceivedMessage,
  type SendingClientOptions,
} from "../../sdk/client";

/** Discovery and directory poll the chain this often in the test (the default 2 s would only slow the test down). */
const POLL_MS = 100;
/** Longest wait for a message on its way: 3 hops on 127.0.0.1 take milliseconds; this only bounds a failure. */
const WAIT_MS = 10_000;
/** The shortest interval the option allows: the check timer then runs every SIGNED_PREKEY_CHECK_MIN_MS (1 minute). */
const INTERVAL = MIN_SIGNED_PREKEY_ROTATION_MS;

type Ctx = Awaited<ReturnType<typeof deployProtocolFixture>>;

/** A clock the test moves: the signed prekey's age is read from it, nothing else. */
function testClock() {
  const clock = { t: Date.now(), now: () => clock.t };
  return clock;
}

describe("e2e: scheduled signed-prekey rotation, through real edge nodes on 127.0.0.1", function () {
  this.timeout(150_000);

  const network = useEdgeNetwork("prekeys", 3, POLL_MS, WAIT_MS);
  const { nodes, clients } = network;
  let ctx: Ctx;

  before(() => {
    ctx = network.ctx;
  });

  function client(
    signer: Signer,
    extra: Partial<SendingClientOptions> = {},
    storage: StorageAdapter = new MemoryStorage(),
  ) {
    return createTestClient(ctx, clients, signer, storage, extra);
  }

  /** A new funded wallet's client on `home`, rotating every INTERVAL by `clock`, registered (not started). */
  async function rotatingUser(home: EdgeNode, clock: { now: () => number }) {
    const wallet = await fundedWallet();
    const c = await client(wallet, { signedPrekeyRotationMs: INTERVAL, now: clock.now });
    await c.register({ homeNodes: [home.operator] });
    return { wallet, client: c };
  }

  /** A new funded wallet's client on `home` with the default options, registered and started. */
  async function peer(home: EdgeNode) {
    const c = await client(await fundedWallet());
    await c.register({ homeNodes: [home.operator] });
    await c.start();
    return c;
  }

  /** The signed prekey id in `account`'s DID on chain. */
  async function chainSpk(c: SendingClient, account = c.address): Promise<number> {
    return (await c.did.readDid(account)).signedPrekey.id;
  }

  /** The signed prekey id `node` hands out in `account`'s bundles (takes one of its one-time prekeys). */
  function nodeSpk(node: EdgeNode, account: string): number | undefined {
    return node.prekeys.takeBundle(recipientIdOf(account))?.signedPrekey.id;
  }

  /** Every error `c` reports from now on. */
  function errors(c: SendingClient): Error[] {
    const got: Error[] = [];
    c.on("error", (e) => got.push(e));
    return got;
  }

  function next(c: SendingClient, text: string): Promise<ReceivedMessage> {
    return c.nextMessage((m) => m.text === text, { signal: AbortSignal.timeout(WAIT_MS) });
  }

  it("rotates at start a signed prekey older than the interval: chain and home node move on, a new peer chats", async () => {
    const [home, other] = nodes;
    const clock = testClock();
    const { client: alice } = await rotatingUser(home, clock);
    expect(await chainSpk(alice)).to.equal(1);
    expect(nodeSpk(home, alice.address)).to.equal(1);

    clock.t += INTERVAL;
    await alice.start();
    expect(alice.identity.signedPrekey.id).to.equal(2);
    expect(alice.identity.signedPrekeyCreatedAt).to.equal(clock.t);
    expect(alice.identity.signedPrekeyIds).to.deep.equal([1, 2]); // the previous one kept for the grace period
    expect(await chainSpk(alice)).to.equal(2);
    expect(nodeSpk(home, alice.address)).to.equal(2);

    const bob = await peer(other);
    const hi = next(alice, "hi alice");
    await bob.send(alice.address, "hi alice");
    expect((await hi).from).to.equal(bob.address);
    const reply = next(bob, "hi bob");
    await alice.send(bob.address, "hi bob");
    expect((await reply).from).to.equal(alice.address);

    // Not due again: a check within the interval changes nothing.
    clock.t += INTERVAL - 1;
    expect(await alice.rotateSignedPrekeyIfDue()).to.equal(false);
    expect(await chainSpk(alice)).to.equal(2);
  });

  it("opens an initial message sent to the previous signed prekey after a rotation, not one sent two back", async () => {
    const [home, other, third] = nodes;
    const clock = testClock();
    const { client: alice } = await rotatingUser(home, clock);
    const seen: ReceivedMessage[] = [];
    alice.on("message", (m) => seen.push(m));
    const failed = errors(alice);
    const stored = () => home.metrics.value("stored");

    // Bob fetches Alice's bundle (signed prekey 1) and his message waits in her inbox while she rotates twice.
    const bob = await peer(other);
    let before = stored();
    await bob.send(alice.address, "to prekey 1");
    await until(() => stored() > before, "Bob's message at Alice's home node");

    clock.t += INTERVAL;
    expect(await alice.rotateSignedPrekeyIfDue()).to.equal(true);
    expect(await chainSpk(alice)).to.equal(2);

    // Carol fetches the bundle of signed prekey 2; her message is delivered after the next rotation.
    const carol = await peer(third);
    before = stored();
    await carol.send(alice.address, "to prekey 2");
    await until(() => stored() > before, "Carol's message at Alice's home node");

    clock.t += INTERVAL;
    expect(await alice.rotateSignedPrekeyIfDue()).to.equal(true);
    expect(await chainSpk(alice)).to.equal(3);
    expect(alice.identity.signedPrekeyIds).to.deep.equal([2, 3]);

    await alice.start(); // drains both
    expect(seen.map((m) => [m.from, m.text])).to.deep.equal([[carol.address, "to prekey 2"]]);
    const missing = failed.filter((e) => e instanceof X3dhError);
    expect(missing).to.have.length(1);
    expect((missing[0] as X3dhError).code).to.equal("MissingPrekey");
    expect(missing[0].message).to.contain("signed prekey with id 1");

    // The session Carol's message opened works both ways.
    const reply = next(carol, "hi carol");
    await alice.send(carol.address, "hi carol");
    expect((await reply).from).to.equal(alice.address);
  });

  it("reports a rotation whose transaction fails, keeps working, and completes it at the next timer check", async () => {
    const [home, other] = nodes;
    const clock = testClock();
    const { wallet, client: alice } = await rotatingUser(home, clock);
    const failed = errors(alice);

    await setBalance(wallet.address, 0n); // the rotation's transaction cannot pay for its gas
    clock.t += INTERVAL;
    await alice.start(); // does not throw
    expect(failed).to.have.length(1);
    expect(failed[0].message).to.match(/funds/i); // "insufficient funds", or Hardhat's "doesn't have enough funds"
    expect(alice.identity.signedPrekey.id).to.equal(2); // the local rotation is done, the chain and node lag
    expect(await chainSpk(alice)).to.equal(1);
    expect(nodeSpk(home, alice.address)).to.equal(1);

    // Still working: a new peer's initial message, sent to signed prekey 1 (kept), opens; Alice replies.
    const bob = await peer(other);
    const hi = next(alice, "still there?");
    await bob.send(alice.address, "still there?");
    expect((await hi).from).to.equal(bob.address);
    const reply = next(bob, "yes");
    await alice.send(bob.address, "yes");
    await reply;

    // Funds back: the next tick of the timer (SIGNED_PREKEY_CHECK_MIN_MS) puts signed prekey 2 on chain and node.
    await setBalance(wallet.address, parseEther("10"));
    await until(
      async () => (await chainSpk(alice)) === 2,
      "the timer's check to complete the rotation",
      2 * SIGNED_PREKEY_CHECK_MIN_MS,
    );
    await until(() => nodeSpk(home, alice.address) === 2, "the home node to hand out signed prekey 2");
    expect(alice.identity.signedPrekey.id).to.equal(2); // completed, not rotated again
    expect(alice.identity.signedPrekeyIds).to.deep.equal([1, 2]);
    expect(failed).to.have.length(1);
  });

  it("rotates a device's own signed prekey in its own DID, leaving the wallet's alone", async () => {
    const [home] = nodes;
    const clock = testClock();
    const wallet = await fundedWallet();
    const owner = await client(wallet);
    await owner.register({ homeNodes: [home.operator] });
    const device = await SendingClient.createDevice({
      signer: wallet,
      storage: new MemoryStorage(),
      deployment: ctx.deployment,
      provider: ethers.provider,
      oneTimePrekeys: 6,
      signedPrekeyRotationMs: INTERVAL,
      now: clock.now,
    });
    clients.push(device);
    const failed = errors(device);
    await device.register({ homeNodes: [home.operator] });
    expect(await chainSpk(device)).to.equal(1);

    clock.t += INTERVAL;
    await device.start();
    expect(failed).to.deep.equal([]);
    expect(await chainSpk(device)).to.equal(2);
    expect(nodeSpk(home, device.address)).to.equal(2);
    expect(await chainSpk(device, wallet.address)).to.equal(1);
  });

  it("reports, without rotating, a client whose DID another client of the same wallet took over", async () => {
    const [home] = nodes;
    const clock = testClock();
    const { wallet, client: first } = await rotatingUser(home, clock);
    const second = await client(wallet);
    await second.register({ homeNodes: [home.operator] }); // new identity keys in the DID

    clock.t += INTERVAL;
    const error = await first.rotateSignedPrekeyIfDue().then(
      () => expect.fail("expected ClientError NotRegistered"),
      (e: unknown) => e,
    );
    expect(error).to.be.instanceOf(ClientError);
    expect((error as ClientError).code).to.equal("NotRegistered");
    expect(first.identity.signedPrekeyIds).to.deep.equal([1]); // nothing rotated, nothing deleted
    const did = await first.did.readDid(wallet.address);
    expect(did.signedPrekey.publicKey).to.deep.equal(second.identity.signedPrekey.keyPair.publicKey);
  });
});
