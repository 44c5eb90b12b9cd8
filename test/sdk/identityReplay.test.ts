/**
 * X3DH §4.2: an initial message sent without a one-time prekey can be replayed to the responder, which would accept it
 * as a new session and show its first message again. ClientIdentity remembers the base keys (EK_A) it accepted per
 * signed prekey and refuses a repeat (X3dhError "Replayed"), across a reopening of its storage; the record goes with
 * its signed prekey. No chain is needed: the wallets sign offline.
 */
import { expect } from "chai";
import { Wallet, type Signer } from "ethers";
import { ClientIdentity, MAX_USED_BASE_KEYS } from "../../sdk/client/identity";
import { X3dhError } from "../../sdk/crypto/x3dh";
import { MemoryStorage, type StorageAdapter } from "../../sdk/storage";
import { expectRejection } from "./cryptoReference";

const utf8 = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const DID_REGISTRY = "0x" + "11".repeat(20);

function open(wallet: Signer, storage: StorageAdapter = new MemoryStorage()): Promise<ClientIdentity> {
  return ClientIdentity.open({
    signer: wallet,
    storage,
    chainId: 31337n,
    didRegistry: DID_REGISTRY,
    oneTimePrekeys: 2,
  });
}

const expectX3dhError = (promise: Promise<unknown>, code: string) => expectRejection(promise, X3dhError, code);

describe("SDK client: X3DH replay of an initial message without a one-time prekey", () => {
  const aliceWallet = Wallet.createRandom();
  const bobWallet = Wallet.createRandom();

  it("refuses the same initial message a second time, also after the storage is reopened, and accepts new ones", async () => {
    const storage = new MemoryStorage();
    const alice = await open(aliceWallet, storage);
    const bob = await open(bobWallet);
    const first = bob.initiateSession(alice.prekeyBundle(), utf8("hello alice"));
    expect(text((await alice.acceptSession(first.message)).plaintext)).to.equal("hello alice");
    await expectX3dhError(alice.acceptSession(first.message), "Replayed");

    const reopened = await open(aliceWallet, storage);
    await expectX3dhError(reopened.acceptSession(first.message), "Replayed");
    // A new session from the same sender (a new base key) is accepted, and so is its replay refused.
    const second = bob.initiateSession(reopened.prekeyBundle(), utf8("me again"));
    expect(text((await reopened.acceptSession(second.message)).plaintext)).to.equal("me again");
    await expectX3dhError(reopened.acceptSession(second.message), "Replayed");
  });

  it("leaves a message with a one-time prekey to that prekey's deletion, and does not note a message that fails", async () => {
    const storage = new MemoryStorage();
    const alice = await open(aliceWallet, storage);
    const bob = await open(bobWallet);
    const [opk] = alice.oneTimePrekeyIds;
    const withOpk = bob.initiateSession(alice.prekeyBundle(opk), utf8("with a one-time prekey"));
    await alice.acceptSession(withOpk.message);
    await expectX3dhError(alice.acceptSession(withOpk.message), "MissingPrekey");
    expect(await storage.list("")).to.satisfy((names: string[]) => names.every((n) => !n.includes("used-base-keys")));

    // A tampered copy does not decrypt: its base key is not noted, so the genuine message still opens.
    const genuine = bob.initiateSession(alice.prekeyBundle(), utf8("genuine"));
    const tampered = genuine.message.slice();
    tampered[tampered.length - 1] ^= 1;
    await alice.acceptSession(tampered).then(
      () => expect.fail("expected the tampered copy to fail"),
      (error: Error) => expect(error).to.not.be.instanceOf(X3dhError),
    );
    expect(text((await alice.acceptSession(genuine.message)).plaintext)).to.equal("genuine");
  });

  it("notes nothing until the caller commits: an opened message not committed opens again, a committed one does not", async () => {
    const storage = new MemoryStorage();
    const alice = await open(aliceWallet, storage);
    const bob = await open(bobWallet);
    const [opk] = alice.oneTimePrekeyIds;
    for (const bundle of [alice.prekeyBundle(), alice.prekeyBundle(opk)]) {
      const sent = bob.initiateSession(bundle, utf8("opened twice"));
      const first = await alice.openSession(sent.message); // the app stops before it keeps the session
      const again = await alice.openSession(sent.message); // the message comes again: it still opens
      expect(text(again.plaintext)).to.equal(text(first.plaintext));
      await again.commit();
      await again.commit(); // once only
      await expectX3dhError(alice.acceptSession(sent.message), bundle.oneTimePrekey ? "MissingPrekey" : "Replayed");
      // The first, committed late (its base key noted meanwhile), is refused too.
      if (!bundle.oneTimePrekey) await expectX3dhError(first.commit(), "Replayed");
    }
    expect(alice.oneTimePrekeyIds).to.not.include(opk);
  });

  it("refuses another encoding of the same base key (bit 255 set), which X25519 would take as the same key", async () => {
    const alice = await open(aliceWallet);
    const bob = await open(bobWallet);
    const sent = bob.initiateSession(alice.prekeyBundle(), utf8("once"));
    await alice.acceptSession(sent.message);
    const aliased = sent.message.slice();
    aliased[1 + 32 + 32 + 31] |= 0x80; // the last byte of EK_A: version, IK_A and IKsig_A come before it
    await expectX3dhError(alice.acceptSession(aliased), "Malformed");
  });

  it("reads a damaged record as empty, and drops records of signed prekeys it no longer holds at its next rotation", async () => {
    const alice = await open(aliceWallet);
    const bob = await open(bobWallet);
    const names = async () => (await alice.store.list("")).filter((n) => n.includes("used-base-keys"));
    const spk = alice.signedPrekey.id;
    const record = `prekeys/used-base-keys/${spk.toString(16).padStart(8, "0")}`;
    await alice.store.put(record, new Uint8Array(33)); // not a whole number of keys
    const sent = bob.initiateSession(alice.prekeyBundle(), utf8("after the damage"));
    expect(text((await alice.acceptSession(sent.message)).plaintext)).to.equal("after the damage");
    expect((await alice.store.get(record))!.length).to.equal(32); // replaced by the new note
    await expectX3dhError(alice.acceptSession(sent.message), "Replayed");
    // A record left for a signed prekey already gone (a stop between two deletes) goes at the next rotation.
    const orphan = `prekeys/used-base-keys/${(spk + 1000).toString(16).padStart(8, "0")}`;
    await alice.store.put(orphan, new Uint8Array(32));
    await alice.rotateSignedPrekey();
    expect(await names()).to.deep.equal([record]); // the current one's previous stays
  });

  it("forgets the base keys with their signed prekey: a replay to a deleted one fails as a missing prekey", async () => {
    const alice = await open(aliceWallet);
    const bob = await open(bobWallet);
    const old = bob.initiateSession(alice.prekeyBundle(), utf8("to the first signed prekey"));
    await alice.acceptSession(old.message);
    const names = async () => (await alice.store.list("")).filter((n) => n.includes("used-base-keys"));
    expect(await names()).to.have.length(1);
    await alice.rotateSignedPrekey(); // the first is kept as the previous one
    await expectX3dhError(alice.acceptSession(old.message), "Replayed");
    await alice.rotateSignedPrekey(); // the first is deleted, with its base keys
    expect(await names()).to.deep.equal([]);
    await expectX3dhError(alice.acceptSession(old.message), "MissingPrekey");
  });

  it("keeps at most MAX_USED_BASE_KEYS per signed prekey, oldest forgotten first", async function () {
    this.timeout(120_000);
    const alice = await open(aliceWallet);
    const bob = await open(bobWallet);
    const initial = bob.initiateSession(alice.prekeyBundle(), utf8("the oldest"));
    await alice.acceptSession(initial.message);
    // Fill the record past its bound with base keys written the way acceptSession writes them (32 bytes each).
    const [name] = (await alice.store.list("")).filter((n) => n.includes("used-base-keys"));
    const record = (await alice.store.get(name))!;
    const filler = new Uint8Array(32 * (MAX_USED_BASE_KEYS - 1)).map((_, i) => (i * 7 + 3) & 0xff);
    await alice.store.put(name, new Uint8Array([...record, ...filler]));
    const next = bob.initiateSession(alice.prekeyBundle(), utf8("one more"));
    await alice.acceptSession(next.message);
    expect((await alice.store.get(name))!.length).to.equal(32 * MAX_USED_BASE_KEYS);
    // The oldest base key was pushed out: its replay is no longer recognised.
    expect(text((await alice.acceptSession(initial.message)).plaintext)).to.equal("the oldest");
  });
});
