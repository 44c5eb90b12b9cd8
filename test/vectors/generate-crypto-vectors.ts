/**
 * Writes the known-answer vectors of sdk/crypto/ (run: `npx ts-node --transpile-only
 * test/vectors/generate-crypto-vectors.ts`):
 *
 *   test/vectors/x3dh.json                fixed private keys → public keys, signed-prekey signature, DH1..DH4, SK,
 *                                         AD and the encoded initial header, with and without a one-time prekey
 *   test/vectors/ratchet-kdf.json         the X3DH KDF, KDF_RK and KDF_CK on fixed inputs
 *   test/vectors/ratchet-transcript.json  a short conversation (out-of-order delivery, three DH ratchet steps) with
 *                                         fixed randomness → the exact messages
 *   test/vectors/sender-keys.json         a group distribution and messages with fixed randomness → the exact bytes
 *
 * Inputs are derived from labels with SHA-256 (deterministicRandom.ts), so a reader can recompute them. The tests
 * (test/sdk/x3dh.test.ts, ratchet.test.ts, senderKeys.test.ts) check the code against these files and check the KDF,
 * DH and signature values independently with node:crypto. Regenerate only for a deliberate format change, and say so
 * in the commit.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { sha256 } from "@noble/hashes/sha2.js";
import * as prettier from "prettier";
import {
  RATCHET_ROOT_INFO,
  X3DH_INFO,
  dh,
  kdfCk,
  kdfRk,
  sign,
  x25519PublicKey,
  x3dhKdf,
} from "../../sdk/crypto/primitives";
import { RatchetSession } from "../../sdk/crypto/ratchet";
import { GroupSession } from "../../sdk/crypto/senderKeys";
import {
  encodeX3dhHeader,
  identityKeyPairFromSecrets,
  prekeyBundle,
  signedPrekeyMessage,
  x3dhInitiate,
  x3dhRespond,
  type OneTimePrekey,
  type SignedPrekey,
} from "../../sdk/crypto/x3dh";
import { deterministicRandom, fixedRandom } from "./deterministicRandom";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const label = (s: string) => sha256(new TextEncoder().encode(s));
const utf8 = (s: string) => new TextEncoder().encode(s);

function x3dhVectors() {
  const vectors = [true, false].map((withOneTime) => {
    const alice = identityKeyPairFromSecrets(label("x3dh/alice/identity-dh"), label("x3dh/alice/identity-signing"));
    const bob = identityKeyPairFromSecrets(label("x3dh/bob/identity-dh"), label("x3dh/bob/identity-signing"));
    const ephemeralSecret = label("x3dh/alice/ephemeral");
    const spkSecret = label("x3dh/bob/signed-prekey");
    const opkSecret = label("x3dh/bob/one-time-prekey");
    const spkPublic = x25519PublicKey(spkSecret);
    const spk: SignedPrekey = {
      id: 7,
      keyPair: { secretKey: spkSecret, publicKey: spkPublic },
      signature: sign(bob.signing.secretKey, signedPrekeyMessage(bob.dh.publicKey, 7, spkPublic)),
    };
    const opk: OneTimePrekey = { id: 42, keyPair: { secretKey: opkSecret, publicKey: x25519PublicKey(opkSecret) } };
    const bundle = prekeyBundle(bob, spk, withOneTime ? opk : undefined);
    const initiated = x3dhInitiate(alice, bundle, fixedRandom(ephemeralSecret));
    const responded = x3dhRespond(
      bob,
      {
        signedPrekey: (id) => (id === spk.id ? spk : undefined),
        oneTimePrekey: (id) => (id === opk.id ? opk : undefined),
      },
      initiated.header,
    );
    if (hex(initiated.sharedSecret) !== hex(responded.sharedSecret)) throw new Error("x3dh vectors: SK mismatch");
    const dhs = [
      dh(alice.dh.secretKey, spkPublic),
      dh(ephemeralSecret, bob.dh.publicKey),
      dh(ephemeralSecret, spkPublic),
      ...(withOneTime ? [dh(ephemeralSecret, opk.keyPair.publicKey)] : []),
    ];
    return {
      name: withOneTime ? "with a one-time prekey (DH1..DH4)" : "without a one-time prekey (DH1..DH3)",
      secrets: {
        aliceIdentityDh: hex(alice.dh.secretKey),
        aliceIdentitySigning: hex(alice.signing.secretKey),
        aliceEphemeral: hex(ephemeralSecret),
        bobIdentityDh: hex(bob.dh.secretKey),
        bobIdentitySigning: hex(bob.signing.secretKey),
        bobSignedPrekey: hex(spkSecret),
        ...(withOneTime ? { bobOneTimePrekey: hex(opkSecret) } : {}),
      },
      signedPrekeyId: spk.id,
      ...(withOneTime ? { oneTimePrekeyId: opk.id } : {}),
      publicKeys: {
        aliceIdentityDh: hex(alice.dh.publicKey),
        aliceIdentitySigning: hex(alice.signing.publicKey),
        aliceEphemeral: hex(initiated.header.ephemeralKey),
        bobIdentityDh: hex(bob.dh.publicKey),
        bobIdentitySigning: hex(bob.signing.publicKey),
        bobSignedPrekey: hex(spkPublic),
        ...(withOneTime ? { bobOneTimePrekey: hex(opk.keyPair.publicKey) } : {}),
      },
      signedPrekeySignature: hex(spk.signature),
      dh: dhs.map(hex),
      sharedSecret: hex(initiated.sharedSecret),
      associatedData: hex(initiated.associatedData),
      header: hex(encodeX3dhHeader(initiated.header)),
    };
  });
  return {
    description:
      "X3DH (X25519, SHA-256) with a separate Ed25519 signing key. Secrets are SHA-256 of labels. SK = HKDF-SHA-256(IKM = 32 x 0xFF || DH1 || DH2 || DH3 [|| DH4], salt = 32 zero bytes, info, 32). AD = 0x05||IK_A || 0x05||IK_B || IKsig_A || IKsig_B. Signed prekey signature = Ed25519(IKsig_B, 'SendingNetwork_X3DH_v1/signed-prekey' || 0x05||IK_B || uint32be(id) || 0x05||SPK_B).",
    info: X3DH_INFO,
    vectors,
  };
}

function kdfVectors() {
  const x3dhKdfVectors = [32 * 3, 32 * 4].map((n, i) => {
    const keyMaterial = new Uint8Array(n).map((_, j) => (j * 7 + i) & 0xff);
    return { keyMaterial: hex(keyMaterial), output: hex(x3dhKdf(keyMaterial)) };
  });
  const kdfRkVectors = [0, 1, 2].map((i) => {
    const rootKey = label(`kdf-rk/${i}/root-key`);
    const dhOutput = label(`kdf-rk/${i}/dh-output`);
    const out = kdfRk(rootKey, dhOutput);
    return {
      rootKey: hex(rootKey),
      dhOutput: hex(dhOutput),
      nextRootKey: hex(out.rootKey),
      chainKey: hex(out.chainKey),
    };
  });
  let chainKey: Uint8Array = label("kdf-ck/chain-key");
  const kdfCkChain = [];
  for (let i = 0; i < 4; i++) {
    const out = kdfCk(chainKey);
    kdfCkChain.push({ chainKey: hex(chainKey), messageKey: hex(out.messageKey), nextChainKey: hex(out.chainKey) });
    chainKey = out.chainKey;
  }
  return {
    description:
      "X3DH KDF = HKDF-SHA-256(32 x 0xFF || KM, salt 32 zero bytes, info X3DH_INFO, 32). KDF_RK(rk, dh) = HKDF-SHA-256(IKM = dh, salt = rk, info RATCHET_ROOT_INFO, 64) split 32/32 into (next root key, chain key). KDF_CK(ck) = (HMAC-SHA-256(ck, 0x01), HMAC-SHA-256(ck, 0x02)) = (message key, next chain key); kdfCk is a chain of four steps.",
    x3dhInfo: X3DH_INFO,
    ratchetRootInfo: RATCHET_ROOT_INFO,
    x3dhKdf: x3dhKdfVectors,
    kdfRk: kdfRkVectors,
    kdfCk: kdfCkChain,
  };
}

type TranscriptEvent =
  | { op: "send"; from: "alice" | "bob"; id: string; plaintext: string }
  | { op: "receive"; to: "alice" | "bob"; id: string };

/** Sends, and deliveries in a chosen order: out of order within a chain, across DH ratchet steps, skipped keys. */
const TRANSCRIPT: TranscriptEvent[] = [
  { op: "send", from: "alice", id: "a0", plaintext: "hello bob" },
  { op: "send", from: "alice", id: "a1", plaintext: "second, delivered first" },
  { op: "send", from: "alice", id: "a2", plaintext: "third, delivered after a ratchet step" },
  { op: "receive", to: "bob", id: "a1" },
  { op: "receive", to: "bob", id: "a0" },
  { op: "send", from: "bob", id: "b0", plaintext: "hi alice" },
  { op: "send", from: "bob", id: "b1", plaintext: "b1 before b0" },
  { op: "receive", to: "alice", id: "b1" },
  { op: "send", from: "alice", id: "a3", plaintext: "new chain" },
  { op: "receive", to: "bob", id: "a3" },
  { op: "receive", to: "bob", id: "a2" },
  { op: "receive", to: "alice", id: "b0" },
  { op: "send", from: "bob", id: "b2", plaintext: "" },
  { op: "receive", to: "alice", id: "b2" },
];

function transcriptVector() {
  const sharedSecret = label("transcript/shared-secret");
  const associatedData = label("transcript/associated-data");
  const bobRatchetSecret = label("transcript/bob-signed-prekey");
  const seeds = { alice: "transcript/alice", bob: "transcript/bob" };
  const alice = RatchetSession.initiator(
    { sharedSecret, associatedData, remoteRatchetKey: x25519PublicKey(bobRatchetSecret) },
    { randomBytes: deterministicRandom(seeds.alice) },
  );
  const bob = RatchetSession.responder(
    {
      sharedSecret,
      associatedData,
      ratchetKeyPair: { secretKey: bobRatchetSecret, publicKey: x25519PublicKey(bobRatchetSecret) },
    },
    { randomBytes: deterministicRandom(seeds.bob) },
  );
  const sessions = { alice, bob };
  const sent = new Map<string, { plaintext: string; message: Uint8Array }>();
  const events = TRANSCRIPT.map((e) => {
    if (e.op === "send") {
      const message = sessions[e.from].encrypt(utf8(e.plaintext));
      sent.set(e.id, { plaintext: e.plaintext, message });
      return { ...e, message: hex(message) };
    }
    const m = sent.get(e.id)!;
    const plaintext = new TextDecoder().decode(sessions[e.to].decrypt(m.message));
    if (plaintext !== m.plaintext) throw new Error(`transcript: ${e.id} decrypted to ${plaintext}`);
    return e;
  });
  return {
    description:
      "Double Ratchet transcript. Alice is the initiator (remote ratchet key = Bob's signed prekey), Bob the responder. Each side's randomness (ratchet key pairs, then nonces, in call order) is deterministicRandom(seed). Replaying the events in order must produce each 'send' message byte for byte and decrypt each 'receive'.",
    sharedSecret: hex(sharedSecret),
    associatedData: hex(associatedData),
    bobRatchetSecret: hex(bobRatchetSecret),
    seeds,
    events,
  };
}

function senderKeyVector() {
  const groupId = label("sender-keys/group");
  const seeds = { alice: "sender-keys/alice", bob: "sender-keys/bob" };
  const alice = GroupSession.create(
    { groupId, selfId: "alice", members: ["bob"] },
    { randomBytes: deterministicRandom(seeds.alice) },
  );
  const bob = GroupSession.create(
    { groupId, selfId: "bob", members: ["alice"] },
    { randomBytes: deterministicRandom(seeds.bob) },
  );
  const distribution = alice.distributionMessage();
  bob.processDistribution("alice", distribution);
  const plaintexts = ["hello group", "second", ""];
  const messages = plaintexts.map((p) => alice.encrypt(utf8(p)));
  messages.forEach((m, i) => {
    if (new TextDecoder().decode(bob.decrypt(m).plaintext) !== plaintexts[i]) throw new Error("sender-key vector");
  });
  return {
    description:
      "Sender keys. Alice's randomness (key id 16, chain key 32, Ed25519 seed 32, then one 12-byte nonce per message) is deterministicRandom(seed). Creating Alice's session and encrypting the plaintexts in order must give these bytes.",
    groupId: hex(groupId),
    seeds,
    selfId: "alice",
    members: ["bob"],
    distribution: hex(distribution),
    messages: plaintexts.map((plaintext, i) => ({ plaintext, message: hex(messages[i]) })),
  };
}

async function main(): Promise<void> {
  const write = async (name: string, value: unknown) => {
    const file = path.join(__dirname, name);
    // Formatted as `npm run lint` (prettier --check) expects.
    const options = { ...(await prettier.resolveConfig(file)), filepath: file };
    writeFileSync(file, await prettier.format(JSON.stringify(value, null, 2), options));
    console.log(`wrote test/vectors/${name}`);
  };
  await write("x3dh.json", x3dhVectors());
  await write("ratchet-kdf.json", kdfVectors());
  await write("ratchet-transcript.json", transcriptVector());
  await write("sender-keys.json", senderKeyVector());
}

// Hardhat's test runner loads every file under test/: write only when run directly.
if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
