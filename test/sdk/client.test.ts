import { expect } from "chai";
import { ethers } from "hardhat";
import {
  impersonateAccount,
  loadFixture,
  setBalance,
  stopImpersonatingAccount,
} from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { hkdfSync, createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { deployProtocolFixture } from "../fixtures/protocol";
import { billKeyHash } from "../../sdk/chain/identityTree";
import { NodeRole, parameterIndex, TOKEN } from "../../sdk/chain/protocol";
import { generateSignedPrekey, sameIdentity } from "../../sdk/crypto/x3dh";
import { toHex } from "../../sdk/crypto/bytes";
import { billKeyOf } from "../../sdk/bill/bill";
import {
  BackupError,
  ClientIdentity,
  DidClient,
  DidError,
  DidStatus,
  EncryptedStore,
  IdentityError,
  MAX_SIGNED_PREKEY_ROTATION_MS,
  MIN_SIGNED_PREKEY_ROTATION_MS,
  SIGNED_PREKEY_ROTATION_MS,
  SendingClient,
  backupPointer,
  signedPrekeyCheckMs,
  openBackup,
  sealBackup,
  walletKeysFromSignature,
  walletMessage,
  type BackupContents,
} from "../../sdk/client";
import { FileStorage, MemoryStorage, type StorageAdapter } from "../../sdk/storage";

const utf8 = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function clientFixture() {
  const base = await deployProtocolFixture();
  const [, edge, alice, bob, carol, mallory] = base.signers;
  const stake = 1_000n * TOKEN;
  await base.token.transfer(edge.address, stake);
  await base.token.connect(edge).approve(await base.registry.getAddress(), stake);
  await base.registry
    .connect(edge)
    .register(NodeRole.Edge, `peer-${edge.address}`, ["/ip4/127.0.0.1/tcp/4001"], edge.address, 0, stake);
  return { ...base, edge, alice, bob, carol, mallory };
}

type Ctx = Awaited<ReturnType<typeof clientFixture>>;

async function open(
  ctx: Ctx,
  signer: HardhatEthersSigner,
  storage: StorageAdapter = new MemoryStorage(),
  now?: () => number,
) {
  return ClientIdentity.open({
    signer,
    storage,
    chainId: ctx.deployment.chainId,
    didRegistry: ctx.deployment.contracts.DidRegistry,
    oneTimePrekeys: 5,
    now,
  });
}

/** A meta record of the first layout (before the signed prekey's creation time was kept): 12 bytes. */
function metaV1(signedPrekeyId: number, nextOneTimePrekeyId: number): Uint8Array {
  const out = new Uint8Array(12);
  out.set(utf8("SNID"));
  new DataView(out.buffer).setUint32(4, signedPrekeyId);
  new DataView(out.buffer).setUint32(8, nextOneTimePrekeyId);
  return out;
}

async function expectRejected<E extends Error>(
  promise: Promise<unknown> | (() => unknown),
  type: new (...args: never[]) => E,
  code: string,
): Promise<E> {
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (error) {
    expect(error, String(error)).to.be.instanceOf(type);
    expect((error as E & { code: string }).code).to.equal(code);
    return error as E;
  }
  return expect.fail(`expected ${type.name} ${code}`);
}

describe("SDK client: wallet identity", () => {
  it("derives the same wallet keys from the same wallet, and other keys for another wallet or deployment", async () => {
    const ctx = await loadFixture(clientFixture);
    const domain = { chainId: ctx.deployment.chainId, didRegistry: ctx.deployment.contracts.DidRegistry };
    const keysOf = async (signer: HardhatEthersSigner, d = domain) =>
      walletKeysFromSignature(await signer.signMessage(walletMessage(signer.address, d)), signer.address, d);
    const a1 = await keysOf(ctx.alice);
    const a2 = await keysOf(ctx.alice);
    const b = await keysOf(ctx.bob);
    const otherChain = await keysOf(ctx.alice, { ...domain, chainId: 1 });
    expect(a1).to.deep.equal(a2);
    expect(toHex(a1.backupKey)).to.not.equal(toHex(b.backupKey));
    expect(toHex(a1.backupKey)).to.not.equal(toHex(otherChain.backupKey));
    expect(new Set([a1.storageKey, a1.backupKey, a1.billSecret].map(toHex)).size).to.equal(3);
    expect(walletMessage(ctx.alice.address, domain)).to.contain(`Chain id: ${ctx.deployment.chainId}`);
  });

  it("derives the wallet keys as docs/SDK.md specifies (checked with node:crypto HKDF)", async () => {
    const ctx = await loadFixture(clientFixture);
    const wallet = new ethers.Wallet("0x" + "11".repeat(32), ethers.provider);
    const domain = { chainId: ctx.deployment.chainId, didRegistry: ctx.deployment.contracts.DidRegistry };
    const signature = ethers.Signature.from(await wallet.signMessage(walletMessage(wallet.address, domain)));
    const ikm = Buffer.concat([ethers.getBytes(signature.r), ethers.getBytes(signature.s)]);
    const chainId = Buffer.alloc(8);
    chainId.writeBigUInt64BE(BigInt(ctx.deployment.chainId));
    const info = Buffer.concat([
      Buffer.from("SendingNetwork_wallet_root_v1"),
      ethers.getBytes(wallet.address),
      chainId,
      ethers.getBytes(domain.didRegistry),
    ]);
    const salt = createHash("sha256").update("SendingNetwork_wallet_root_v1").digest();
    const root = Buffer.from(hkdfSync("sha256", ikm, salt, info, 32));
    const derive = (label: string) => toHex(new Uint8Array(hkdfSync("sha256", root, Buffer.alloc(0), label, 32)));

    const keys = walletKeysFromSignature(signature.serialized, wallet.address, domain);
    expect(toHex(keys.storageKey)).to.equal(derive("SendingNetwork_storage_v1"));
    expect(toHex(keys.backupKey)).to.equal(derive("SendingNetwork_backup_v1"));
    expect(toHex(keys.billSecret)).to.equal(derive("SendingNetwork_bill_v1"));
    const identity = await ClientIdentity.open({ signer: wallet, storage: new MemoryStorage(), ...domain });
    expect(identity.billKey).to.deep.equal(billKeyOf(keys.billSecret));
    expect(toHex(identity.backupKey())).to.equal(toHex(keys.backupKey));
  });

  it("runs storage-changing calls one at a time, so concurrent calls leave a consistent store", async () => {
    const ctx = await loadFixture(clientFixture);
    const storage = new MemoryStorage();
    const alice = await open(ctx, ctx.alice, storage);
    await Promise.all([alice.addOneTimePrekeys(3), alice.rotateSignedPrekey(), alice.addOneTimePrekeys(2)]);
    const reopened = await open(ctx, ctx.alice, storage);
    expect(reopened.oneTimePrekeyIds).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(reopened.signedPrekey.id).to.equal(2);
    expect((await storage.list("")).filter((k) => k.includes("/prekeys/signed/"))).to.have.length(2);
  });

  it("keeps the identity and prekeys encrypted in storage and reloads them with the same wallet", async () => {
    const ctx = await loadFixture(clientFixture);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "sn-client-"));
    const first = await open(ctx, ctx.alice, await FileStorage.open(dir));
    expect(first.oneTimePrekeyIds).to.deep.equal([1, 2, 3, 4, 5]);
    const again = await open(ctx, ctx.alice, await FileStorage.open(dir));
    expect(sameIdentity(again.publicIdentity, first.publicIdentity)).to.equal(true);
    expect(again.signedPrekey.id).to.equal(1);
    expect(toHex(again.signedPrekey.signature)).to.equal(toHex(first.signedPrekey.signature));
    expect(again.oneTimePrekeyIds).to.deep.equal([1, 2, 3, 4, 5]);
    // No secret appears in clear on disk.
    const secrets = [first.identityKeyPair.dh.secretKey, first.identityKeyPair.signing.secretKey].map(toHex);
    for (const name of await fs.readdir(dir)) {
      const content = toHex(new Uint8Array(await fs.readFile(path.join(dir, name))));
      for (const secret of secrets) expect(content).to.not.contain(secret);
    }
  });

  it("refuses a store this wallet's key does not open (WalletMismatch), and altered records", async () => {
    const ctx = await loadFixture(clientFixture);
    const storage = new MemoryStorage();
    const foreign = new EncryptedStore(storage, new Uint8Array(32).fill(7), ctx.alice.address);
    await foreign.put("meta", utf8("SNID"));
    await expectRejected(open(ctx, ctx.alice, storage), IdentityError, "WalletMismatch");

    const good = new MemoryStorage();
    await open(ctx, ctx.bob, good);
    const [identityKey] = (await good.list("")).filter((k) => k.endsWith("/identity"));
    const sealed = (await good.get(identityKey))!;
    sealed[sealed.length - 1] ^= 1;
    await good.put(identityKey, sealed);
    await expectRejected(open(ctx, ctx.bob, good), IdentityError, "CorruptStorage");
  });

  it("refuses a wallet whose signature does not recover to its address", async () => {
    const ctx = await loadFixture(clientFixture);
    const liar = Object.assign(Object.create(ctx.alice) as HardhatEthersSigner, {
      signMessage: (message: string) => ctx.bob.signMessage(message),
    });
    await expectRejected(open(ctx, liar), IdentityError, "WalletSignatureInvalid");
  });

  it("records when the signed prekey was made, keeps it across a reopen, and stamps a rotation anew", async () => {
    const ctx = await loadFixture(clientFixture);
    const storage = new MemoryStorage();
    let t = 1_700_000_000_123;
    const clock = () => t;
    const alice = await open(ctx, ctx.alice, storage, clock);
    expect(alice.signedPrekeyCreatedAt).to.equal(t);
    const made = t;
    t += 3_600_000;
    expect((await open(ctx, ctx.alice, storage, clock)).signedPrekeyCreatedAt).to.equal(made);
    expect((await alice.store.get("meta"))!.length).to.equal(20);

    await alice.rotateSignedPrekey();
    expect(alice.signedPrekeyCreatedAt).to.equal(t);
    const reopened = await open(ctx, ctx.alice, storage, () => t + 1);
    expect(reopened.signedPrekey.id).to.equal(2);
    expect(reopened.signedPrekeyCreatedAt).to.equal(t);
    expect(reopened.signedPrekeyIds).to.deep.equal([1, 2]);
  });

  it("loads a meta record of the old layout as made at load time, and writes the new layout from then on", async () => {
    const ctx = await loadFixture(clientFixture);
    const storage = new MemoryStorage();
    const alice = await open(ctx, ctx.alice, storage);
    await alice.rotateSignedPrekey();
    await alice.store.put("meta", metaV1(2, 6)); // as a client before this layout left it

    const loadedAt = 1_800_000_000_000;
    const upgraded = await open(ctx, ctx.alice, storage, () => loadedAt);
    expect(upgraded.signedPrekeyCreatedAt).to.equal(loadedAt);
    expect(upgraded.signedPrekey.id).to.equal(2);
    expect(upgraded.signedPrekeyIds).to.deep.equal([1, 2]);
    expect(upgraded.oneTimePrekeyIds).to.deep.equal([1, 2, 3, 4, 5]);
    expect((await upgraded.store.get("meta"))!.length).to.equal(20);
    // The load time stuck: a later reopen does not push the rotation back again.
    const later = await open(ctx, ctx.alice, storage, () => loadedAt + 60_000);
    expect(later.signedPrekeyCreatedAt).to.equal(loadedAt);
    expect((await later.addOneTimePrekeys(1))[0].id).to.equal(6);

    // Neither layout (a truncated time) is refused.
    await alice.store.put("meta", (await later.store.get("meta"))!.subarray(0, 16));
    await expectRejected(open(ctx, ctx.alice, storage), IdentityError, "CorruptStorage");
  });

  it("refuses a clock that does not give ms since the epoch", async () => {
    const ctx = await loadFixture(clientFixture);
    await expectRejected(
      open(ctx, ctx.alice, new MemoryStorage(), () => Number.NaN),
      IdentityError,
      "InvalidArgument",
    );
    await expectRejected(
      open(ctx, ctx.alice, new MemoryStorage(), () => -1),
      IdentityError,
      "InvalidArgument",
    );
  });
});

describe("SDK client: DID on chain", () => {
  it("registers a DID; another client reads it, X3DH accepts the bundle, and both exchange messages", async () => {
    const ctx = await loadFixture(clientFixture);
    const alice = await open(ctx, ctx.alice);
    const bob = await open(ctx, ctx.bob);
    const aliceDid = DidClient.connect(ctx.deployment, ctx.alice);
    const bobDid = DidClient.connect(ctx.deployment, ctx.bob);
    await aliceDid.register(alice, { homeNodes: [ctx.edge.address], backupPointer: "" });
    await bobDid.register(bob);

    const record = await ctx.didRegistry.didOf(ctx.alice.address);
    expect(record.status).to.equal(BigInt(DidStatus.Active));
    expect(record.billKeyHash).to.equal(billKeyHash(alice.billKey));
    expect([...record.document.homeNodes]).to.deep.equal([ctx.edge.address]);

    // Bob reads Alice's DID, with its signed prekey checked, and opens a session (plus a one-time prekey a home
    // node would serve).
    const bundle = await bobDid.prekeyBundleOf(ctx.alice.address);
    expect(sameIdentity(bundle.identity, alice.publicIdentity)).to.equal(true);
    const [opk] = alice.oneTimePrekeyPublics();
    const initiated = bob.initiateSession({ ...bundle, oneTimePrekey: opk }, utf8("hello alice"));

    const accepted = await alice.acceptSession(initiated.message);
    expect(text(accepted.plaintext)).to.equal("hello alice");
    // Alice checks who opened the session against Bob's DID (X3DH §4.1).
    const bobView = await aliceDid.readDid(ctx.bob.address);
    expect(sameIdentity(accepted.peerIdentity, bobView.identity)).to.equal(true);
    expect(alice.oneTimePrekeyIds).to.not.include(opk.id);

    const reply = accepted.session.encrypt(utf8("hi bob"));
    expect(text(initiated.session.decrypt(reply))).to.equal("hi bob");
    expect(text(accepted.session.decrypt(initiated.session.encrypt(utf8("how are you?"))))).to.equal("how are you?");
  });

  it("saves a session encrypted, and a reopened client continues it", async () => {
    const ctx = await loadFixture(clientFixture);
    const aliceStorage = new MemoryStorage();
    const alice = await open(ctx, ctx.alice, aliceStorage);
    const bob = await open(ctx, ctx.bob);
    await DidClient.connect(ctx.deployment, ctx.alice).register(alice);
    const bundle = await DidClient.connect(ctx.deployment, ctx.bob).prekeyBundleOf(ctx.alice.address);
    const initiated = bob.initiateSession(bundle, utf8("first"));
    const accepted = await alice.acceptSession(initiated.message);
    await alice.saveSession(ctx.bob.address, accepted.session);

    const reopened = await open(ctx, ctx.alice, aliceStorage);
    const session = (await reopened.loadSession(ctx.bob.address))!;
    expect(text(session.decrypt(initiated.session.encrypt(utf8("second"))))).to.equal("second");
    expect(text(initiated.session.decrypt(session.encrypt(utf8("reply"))))).to.equal("reply");
    expect(await reopened.loadSession(ctx.carol.address)).to.equal(undefined);
    await reopened.deleteSession(ctx.bob.address);
    expect(await reopened.loadSession(ctx.bob.address)).to.equal(undefined);
    await expectRejected(reopened.loadSession("bob"), IdentityError, "InvalidArgument");
  });

  it("rotates the signed prekey on chain and still opens sessions sent to the previous one", async () => {
    const ctx = await loadFixture(clientFixture);
    const alice = await open(ctx, ctx.alice);
    const bob = await open(ctx, ctx.bob);
    const aliceDid = DidClient.connect(ctx.deployment, ctx.alice);
    await aliceDid.register(alice);
    const oldBundle = await DidClient.connect(ctx.deployment, ctx.bob).prekeyBundleOf(ctx.alice.address);
    await aliceDid.rotateSignedPrekey(alice);
    const view = await aliceDid.readDid(ctx.alice.address);
    expect(view.signedPrekey.id).to.equal(2);
    const newBundle = await DidClient.connect(ctx.deployment, ctx.bob).prekeyBundleOf(ctx.alice.address);
    for (const b of [oldBundle, newBundle]) {
      const sent = bob.initiateSession(b, utf8(`to prekey ${b.signedPrekey.id}`));
      expect(text((await alice.acceptSession(sent.message)).plaintext)).to.equal(`to prekey ${b.signedPrekey.id}`);
    }
  });

  it("puts a local rotation the chain missed on chain (publishSignedPrekey)", async () => {
    const ctx = await loadFixture(clientFixture);
    const alice = await open(ctx, ctx.alice);
    const aliceDid = DidClient.connect(ctx.deployment, ctx.alice);
    await aliceDid.register(alice);
    await alice.rotateSignedPrekey(); // as if the transaction had failed after it
    expect((await aliceDid.readDid(ctx.alice.address)).signedPrekey.id).to.equal(1);
    await aliceDid.publishSignedPrekey(alice);
    const bundle = await DidClient.connect(ctx.deployment, ctx.bob).prekeyBundleOf(ctx.alice.address);
    expect(bundle.signedPrekey.id).to.equal(2);
    expect(toHex(bundle.signedPrekey.publicKey)).to.equal(toHex(alice.signedPrekey.keyPair.publicKey));
  });

  it("sets devices, home nodes and backup pointer, and decodes registry reverts into DidError", async () => {
    const ctx = await loadFixture(clientFixture);
    const alice = await open(ctx, ctx.alice);
    const did = DidClient.connect(ctx.deployment, ctx.alice);
    await did.register(alice);
    const device = new Uint8Array(32).fill(9);
    await did.setDevices([device]);
    await did.setHomeNodes([ctx.edge.address]);
    await did.setBackupPointer("sha256:" + "ab".repeat(32));
    const view = await did.readDid(ctx.alice.address);
    expect(view.deviceKeys.map(toHex)).to.deep.equal([toHex(device)]);
    expect(view.homeNodes).to.deep.equal([ctx.edge.address]);
    expect(view.backupPointer).to.equal("sha256:" + "ab".repeat(32));

    const again = await expectRejected(did.register(alice), DidError, "ContractError");
    expect(again.contractError?.name).to.equal("DidAlreadyRegistered");
    const notEdge = await expectRejected(did.setHomeNodes([ctx.carol.address]), DidError, "ContractError");
    expect(notEdge.contractError?.name).to.equal("DidNotEdgeNode");
    expect(notEdge.contractError?.args).to.deep.equal([ctx.carol.address]);
  });

  it("pays the governed deposit when there is one", async () => {
    const ctx = await loadFixture(clientFixture);
    const timelock = await ctx.timelock.getAddress();
    await impersonateAccount(timelock);
    await setBalance(timelock, 10n ** 18n);
    await ctx.parameters.connect(await ethers.getSigner(timelock)).setParameter(parameterIndex("DidDeposit"), TOKEN);
    await stopImpersonatingAccount(timelock);
    await ctx.token.transfer(ctx.alice.address, 5n * TOKEN);
    const alice = await open(ctx, ctx.alice);
    await DidClient.connect(ctx.deployment, ctx.alice).register(alice);
    expect((await ctx.didRegistry.didOf(ctx.alice.address)).deposit).to.equal(TOKEN);
    expect(await ctx.token.balanceOf(ctx.alice.address)).to.equal(4n * TOKEN);
  });

  it("refuses an unknown recipient, a revoked DID and a bad signed-prekey signature with typed errors", async () => {
    const ctx = await loadFixture(clientFixture);
    const reader = DidClient.connect(ctx.deployment, ctx.bob);
    const unknown = await expectRejected(reader.prekeyBundleOf(ctx.carol.address), DidError, "UnknownRecipient");
    expect(unknown.account).to.equal(ctx.carol.address);

    const alice = await open(ctx, ctx.alice);
    const aliceDid = DidClient.connect(ctx.deployment, ctx.alice);
    await aliceDid.register(alice);
    await reader.prekeyBundleOf(ctx.alice.address);
    await aliceDid.revoke(alice);
    await expectRejected(reader.prekeyBundleOf(ctx.alice.address), DidError, "Revoked");
    expect(await ctx.didRegistry.isActive(ctx.alice.address)).to.equal(false);

    // Mallory publishes Carol-shaped keys with a signature made by another identity's signing key.
    const mallory = await open(ctx, ctx.mallory);
    const other = await open(ctx, ctx.carol);
    const forged = generateSignedPrekey(other.identityKeyPair, 1);
    const document = {
      ...DidClient.documentOf(mallory),
      signedPrekey: ethers.hexlify(forged.keyPair.publicKey),
      signedPrekeySignature: ethers.hexlify(forged.signature),
    };
    await ctx.didRegistry.connect(ctx.mallory).register(document, mallory.billKey);
    await expectRejected(reader.prekeyBundleOf(ctx.mallory.address), DidError, "BadSignature");

    // The same with a signature that does not even parse as a point.
    await ctx.didRegistry
      .connect(ctx.carol)
      .register({ ...DidClient.documentOf(other), signedPrekeySignature: "0x" + "5a".repeat(64) }, other.billKey);
    await expectRejected(reader.prekeyBundleOf(ctx.carol.address), DidError, "BadSignature");
  });
});

describe("SDK client: signed-prekey rotation option", () => {
  const DAY = 24 * 3_600_000;

  it("accepts signedPrekeyRotationMs from 1 minute to 90 days and refuses anything else, 0 and Infinity included", async () => {
    const ctx = await loadFixture(clientFixture);
    const create = (signedPrekeyRotationMs: number) =>
      SendingClient.create({
        signer: ctx.alice,
        storage: new MemoryStorage(),
        deployment: ctx.deployment,
        signedPrekeyRotationMs,
      });
    expect(SIGNED_PREKEY_ROTATION_MS).to.equal(7 * DAY);
    expect(MIN_SIGNED_PREKEY_ROTATION_MS).to.equal(60_000);
    expect(MAX_SIGNED_PREKEY_ROTATION_MS).to.equal(90 * DAY);
    for (const bad of [0, 59_999, 90 * DAY + 1, Infinity, Number.NaN, 60_000.5, -60_000]) {
      const error = await create(bad).then(
        () => expect.fail(`expected ${bad} to be refused`),
        (e: unknown) => e as Error,
      );
      expect(error, String(bad)).to.be.instanceOf(RangeError);
      expect(error.message).to.contain("expected signedPrekeyRotationMs an integer in [60000, 7776000000]");
    }
    for (const good of [60_000, 90 * DAY]) await (await create(good)).stop();
  });

  it("checks the signed prekey's age every 24th of the interval, between a minute and an hour", () => {
    expect(signedPrekeyCheckMs(60_000)).to.equal(60_000);
    expect(signedPrekeyCheckMs(24 * 60_000)).to.equal(60_000);
    expect(signedPrekeyCheckMs(12 * 3_600_000)).to.equal(1_800_000);
    expect(signedPrekeyCheckMs(DAY)).to.equal(3_600_000);
    expect(signedPrekeyCheckMs(SIGNED_PREKEY_ROTATION_MS)).to.equal(3_600_000);
    expect(signedPrekeyCheckMs(90 * DAY)).to.equal(3_600_000);
  });
});

describe("SDK client: backup", () => {
  const contents = (ctx: Ctx): BackupContents => ({
    contacts: [{ address: ctx.bob.address, name: "Bob", addedAt: 1_700_000_000_000 }],
    history: [
      { peer: ctx.bob.address, direction: "sent", timestamp: 1_700_000_000_001, text: "hello" },
      { peer: ctx.bob.address, direction: "received", timestamp: 1_700_000_000_002, text: "hi ✓" },
    ],
  });

  it("restores contacts and history in a fresh client with the same wallet and empty storage", async () => {
    const ctx = await loadFixture(clientFixture);
    const alice = await open(ctx, ctx.alice);
    const did = DidClient.connect(ctx.deployment, ctx.alice);
    await did.register(alice);
    const blob = sealBackup(alice, contents(ctx));
    const pointer = backupPointer(blob);
    const blobStore = new MemoryStorage(); // stands for the edge nodes that will hold backups
    await blobStore.put(pointer, blob);
    await did.setBackupPointer(pointer);

    // Another app, the same wallet, nothing stored.
    const fresh = await open(ctx, ctx.alice, new MemoryStorage());
    expect(sameIdentity(fresh.publicIdentity, alice.publicIdentity)).to.equal(false); // a new device's keys
    expect(fresh.billKey).to.deep.equal(alice.billKey); // the same wallet-derived bill key
    const found = (await DidClient.connect(ctx.deployment, ctx.alice).readDid(fresh.address)).backupPointer;
    expect(found).to.equal(pointer);
    const restored = openBackup(fresh, (await blobStore.get(found))!);
    expect(restored).to.deep.equal(contents(ctx));
  });

  it("refuses another wallet's backup, a relabelled one, and any tampering", async () => {
    const ctx = await loadFixture(clientFixture);
    const alice = await open(ctx, ctx.alice);
    const bob = await open(ctx, ctx.bob);
    const blob = sealBackup(alice, contents(ctx));
    await expectRejected(() => openBackup(bob, blob), BackupError, "WrongWallet");

    const relabelled = blob.slice();
    relabelled.set(ethers.getBytes(ctx.bob.address), 5);
    await expectRejected(() => openBackup(bob, relabelled), BackupError, "Tampered");

    for (const at of [5 + 20, 40, blob.length - 1]) {
      const tampered = blob.slice();
      tampered[at] ^= 0x01;
      await expectRejected(() => openBackup(alice, tampered), BackupError, "Tampered");
    }
    const future = blob.slice();
    future[4] = 2;
    await expectRejected(() => openBackup(alice, future), BackupError, "UnsupportedVersion");
    await expectRejected(() => openBackup(alice, blob.subarray(0, 30)), BackupError, "Malformed");
    await expectRejected(
      () => sealBackup(alice, { contacts: [{ address: "bob", addedAt: 1 }], history: [] }),
      BackupError,
      "Malformed",
    );
  });
});
