import { expect } from "chai";
import { readFileSync } from "node:fs";
import path from "node:path";
import { X3DH_INFO, dh, generateX25519KeyPair, sign } from "../../sdk/crypto/primitives";
import { RatchetError, TamperedMessageError } from "../../sdk/crypto/ratchet";
import { acceptSession, initiateSession, type PrekeyStore } from "../../sdk/crypto/session";
import {
  X3DH_AD_LENGTH,
  X3DH_HEADER_LENGTH,
  X3dhError,
  decodeX3dhHeader,
  encodeX3dhHeader,
  generateIdentityKeyPair,
  generateOneTimePrekeys,
  generateSignedPrekey,
  identityKeyPairFromSecrets,
  prekeyBundle,
  signedPrekeyMessage,
  verifyPrekeyBundle,
  x3dhInitiate,
  x3dhRespond,
  type IdentityKeyPair,
  type OneTimePrekey,
  type PrekeyBundle,
  type SignedPrekey,
} from "../../sdk/crypto/x3dh";
import { fixedRandom } from "../vectors/deterministicRandom";
import { expectError, flip, hex, reference, text, unhex, utf8 } from "./cryptoReference";

interface X3dhVector {
  name: string;
  secrets: Record<string, string>;
  signedPrekeyId: number;
  oneTimePrekeyId?: number;
  publicKeys: Record<string, string>;
  signedPrekeySignature: string;
  dh: string[];
  sharedSecret: string;
  associatedData: string;
  header: string;
}
const vectors = JSON.parse(readFileSync(path.join(__dirname, "../vectors/x3dh.json"), "utf8")) as {
  info: string;
  vectors: X3dhVector[];
};

/** A responder's prekey store in memory, recording deletions. */
class MemoryPrekeyStore implements PrekeyStore {
  readonly removed: number[] = [];
  constructor(
    private readonly signed: SignedPrekey[],
    private readonly oneTime: OneTimePrekey[],
  ) {}
  signedPrekey(id: number) {
    return this.signed.find((k) => k.id === id);
  }
  oneTimePrekey(id: number) {
    return this.oneTime.find((k) => k.id === id);
  }
  removeOneTimePrekey(id: number) {
    const i = this.oneTime.findIndex((k) => k.id === id);
    if (i >= 0) this.oneTime.splice(i, 1);
    this.removed.push(id);
  }
  get oneTimeCount() {
    return this.oneTime.length;
  }
}

function setup() {
  const alice = generateIdentityKeyPair();
  const bob = generateIdentityKeyPair();
  const spk = generateSignedPrekey(bob, 1);
  const opks = generateOneTimePrekeys(100, 3);
  const store = new MemoryPrekeyStore([spk], [...opks]);
  return { alice, bob, spk, opks, store };
}

describe("X3DH (sdk/crypto/x3dh)", function () {
  describe("known-answer vectors (test/vectors/x3dh.json), checked against node:crypto", function () {
    it("names the protocol in the KDF info", function () {
      expect(vectors.info).to.equal(X3DH_INFO).and.to.equal("SendingNetwork_X3DH_v1");
    });

    for (const v of vectors.vectors) {
      describe(v.name, function () {
        const s = (k: string) => unhex(v.secrets[k]);
        const p = (k: string) => unhex(v.publicKeys[k]);

        it("public keys and the signed-prekey signature match node:crypto", function () {
          for (const k of [
            "aliceIdentityDh",
            "aliceEphemeral",
            "bobIdentityDh",
            "bobSignedPrekey",
            "bobOneTimePrekey",
          ]) {
            if (v.secrets[k] !== undefined) expect(hex(reference.x25519PublicKey(s(k))), k).to.equal(v.publicKeys[k]);
          }
          for (const k of ["aliceIdentitySigning", "bobIdentitySigning"]) {
            expect(hex(reference.ed25519PublicKey(s(k))), k).to.equal(v.publicKeys[k]);
          }
          const message = signedPrekeyMessage(p("bobIdentityDh"), v.signedPrekeyId, p("bobSignedPrekey"));
          expect(hex(reference.ed25519Sign(s("bobIdentitySigning"), message))).to.equal(v.signedPrekeySignature);
        });

        it("DH1..DH4, SK (HKDF with the 0xFF prefix) and AD match node:crypto", function () {
          const dhs = [
            reference.x25519(s("aliceIdentityDh"), p("bobSignedPrekey")),
            reference.x25519(s("aliceEphemeral"), p("bobIdentityDh")),
            reference.x25519(s("aliceEphemeral"), p("bobSignedPrekey")),
            ...(v.secrets.bobOneTimePrekey ? [reference.x25519(s("aliceEphemeral"), p("bobOneTimePrekey"))] : []),
          ];
          expect(dhs.map(hex)).to.deep.equal(v.dh);
          // The responder's side of each DH agrees (DH is symmetric).
          expect(hex(reference.x25519(s("bobSignedPrekey"), p("aliceIdentityDh")))).to.equal(v.dh[0]);
          const ikm = Buffer.concat([Buffer.alloc(32, 0xff), ...dhs]);
          expect(hex(reference.hkdf(ikm, new Uint8Array(32), "SendingNetwork_X3DH_v1", 32))).to.equal(v.sharedSecret);
          const ad = Buffer.concat([
            Buffer.from([0x05]),
            p("aliceIdentityDh"),
            Buffer.from([0x05]),
            p("bobIdentityDh"),
            p("aliceIdentitySigning"),
            p("bobIdentitySigning"),
          ]);
          expect(hex(ad)).to.equal(v.associatedData);
          expect(ad.length).to.equal(X3DH_AD_LENGTH);
        });

        it("x3dhInitiate and x3dhRespond reproduce SK, AD and the header", function () {
          const alice = identityKeyPairFromSecrets(s("aliceIdentityDh"), s("aliceIdentitySigning"));
          const bob = identityKeyPairFromSecrets(s("bobIdentityDh"), s("bobIdentitySigning"));
          const spk: SignedPrekey = {
            id: v.signedPrekeyId,
            keyPair: { secretKey: s("bobSignedPrekey"), publicKey: p("bobSignedPrekey") },
            signature: unhex(v.signedPrekeySignature),
          };
          const opk: OneTimePrekey | undefined =
            v.oneTimePrekeyId === undefined
              ? undefined
              : {
                  id: v.oneTimePrekeyId,
                  keyPair: { secretKey: s("bobOneTimePrekey"), publicKey: p("bobOneTimePrekey") },
                };
          const initiated = x3dhInitiate(alice, prekeyBundle(bob, spk, opk), fixedRandom(s("aliceEphemeral")));
          expect(hex(initiated.sharedSecret)).to.equal(v.sharedSecret);
          expect(hex(initiated.associatedData)).to.equal(v.associatedData);
          expect(hex(encodeX3dhHeader(initiated.header))).to.equal(v.header);
          const responded = x3dhRespond(
            bob,
            new MemoryPrekeyStore([spk], opk ? [opk] : []),
            decodeX3dhHeader(unhex(v.header)),
          );
          expect(hex(responded.sharedSecret)).to.equal(v.sharedSecret);
          expect(hex(responded.associatedData)).to.equal(v.associatedData);
          expect(responded.oneTimePrekeyId).to.equal(v.oneTimePrekeyId);
        });
      });
    }
  });

  describe("agreement", function () {
    for (const withOneTime of [true, false]) {
      it(`initiator and responder derive the same SK and AD ${withOneTime ? "with" : "without"} a one-time prekey`, function () {
        const { alice, bob, spk, opks, store } = setup();
        const initiated = x3dhInitiate(alice, prekeyBundle(bob, spk, withOneTime ? opks[1] : undefined));
        expect(initiated.header.oneTimePrekeyId).to.equal(withOneTime ? opks[1].id : undefined);
        expect(initiated.remoteRatchetKey).to.deep.equal(spk.keyPair.publicKey);
        const responded = x3dhRespond(bob, store, initiated.header);
        expect(hex(responded.sharedSecret)).to.equal(hex(initiated.sharedSecret));
        expect(hex(responded.associatedData)).to.equal(hex(initiated.associatedData));
        expect(responded.ratchetKeyPair.publicKey).to.deep.equal(spk.keyPair.publicKey);
        expect(responded.oneTimePrekeyId).to.equal(withOneTime ? opks[1].id : undefined);
      });
    }

    it("uses a fresh ephemeral key each time, so two sessions to the same bundle have different secrets", function () {
      const { alice, bob, spk } = setup();
      const bundle = prekeyBundle(bob, spk);
      const a = x3dhInitiate(alice, bundle);
      const b = x3dhInitiate(alice, bundle);
      expect(hex(a.sharedSecret)).to.not.equal(hex(b.sharedSecret));
      expect(hex(a.associatedData)).to.equal(hex(b.associatedData));
    });
  });

  describe("signed prekey checks", function () {
    it("refuses a bundle whose signature has a flipped bit", function () {
      const { alice, bob, spk } = setup();
      const bundle = prekeyBundle(bob, spk);
      const bad: PrekeyBundle = {
        ...bundle,
        signedPrekey: { ...bundle.signedPrekey, signature: flip(bundle.signedPrekey.signature, 5) },
      };
      expectError(() => x3dhInitiate(alice, bad), X3dhError, "BadSignature");
    });

    it("refuses a signed prekey swapped for another key, or another id", function () {
      const { alice, bob, spk } = setup();
      const bundle = prekeyBundle(bob, spk);
      const other = generateX25519KeyPair();
      expectError(
        () => x3dhInitiate(alice, { ...bundle, signedPrekey: { ...bundle.signedPrekey, publicKey: other.publicKey } }),
        X3dhError,
        "BadSignature",
      );
      expectError(
        () => verifyPrekeyBundle({ ...bundle, signedPrekey: { ...bundle.signedPrekey, id: 2 } }),
        X3dhError,
        "BadSignature",
      );
    });

    it("refuses a bundle pairing the signing key with another X25519 identity key (the signature binds both)", function () {
      const { alice, bob, spk } = setup();
      const bundle = prekeyBundle(bob, spk);
      const mallory = generateIdentityKeyPair();
      expectError(
        () =>
          x3dhInitiate(alice, { ...bundle, identity: { dh: mallory.dh.publicKey, signing: bundle.identity.signing } }),
        X3dhError,
        "BadSignature",
      );
    });

    it("refuses a signature by another identity's signing key", function () {
      const { alice, bob } = setup();
      const mallory = generateIdentityKeyPair();
      const forged = generateSignedPrekey(mallory, 1);
      expectError(() => x3dhInitiate(alice, prekeyBundle(bob, forged)), X3dhError, "BadSignature");
    });
  });

  describe("key and prekey checks", function () {
    it("refuses wrong-length keys and signatures with BadKeyLength", function () {
      const { alice, bob, spk, opks } = setup();
      const bundle = prekeyBundle(bob, spk, opks[0]);
      const cases: PrekeyBundle[] = [
        { ...bundle, identity: { ...bundle.identity, dh: new Uint8Array(31) } },
        { ...bundle, identity: { ...bundle.identity, signing: new Uint8Array(33) } },
        { ...bundle, signedPrekey: { ...bundle.signedPrekey, publicKey: new Uint8Array(0) } },
        { ...bundle, signedPrekey: { ...bundle.signedPrekey, signature: new Uint8Array(63) } },
        { ...bundle, oneTimePrekey: { id: 1, publicKey: new Uint8Array(64) } },
      ];
      for (const c of cases) {
        const e = expectError(() => x3dhInitiate(alice, c), X3dhError, "BadKeyLength");
        expect(e.message).to.match(/^verifyPrekeyBundle: expected \d+-byte /);
      }
      const initiated = x3dhInitiate(alice, bundle);
      expectError(
        () =>
          x3dhRespond(bob, new MemoryPrekeyStore([spk], opks), {
            ...initiated.header,
            ephemeralKey: new Uint8Array(16),
          }),
        X3dhError,
        "BadKeyLength",
      );
    });

    it("refuses a low-order X25519 point, even when validly signed, with InvalidKey", function () {
      const { alice, bob, spk: goodSpk, store } = setup();
      const lowOrder = new Uint8Array(32); // u = 0
      const spk: SignedPrekey = {
        id: 9,
        keyPair: { secretKey: new Uint8Array(32), publicKey: lowOrder },
        signature: sign(bob.signing.secretKey, signedPrekeyMessage(bob.dh.publicKey, 9, lowOrder)),
      };
      expectError(() => x3dhInitiate(alice, prekeyBundle(bob, spk)), X3dhError, "InvalidKey");
      const header = x3dhInitiate(alice, prekeyBundle(bob, goodSpk)).header;
      const one = new Uint8Array(32);
      one[0] = 1; // u = 1, order 4
      expectError(() => x3dhRespond(bob, store, { ...header, ephemeralKey: one }), X3dhError, "InvalidKey");
    });

    it("reports a signed or one-time prekey the responder does not hold as MissingPrekey", function () {
      const { alice, bob, spk, opks, store } = setup();
      const initiated = x3dhInitiate(alice, prekeyBundle(bob, spk, opks[0]));
      expectError(
        () => x3dhRespond(bob, store, { ...initiated.header, signedPrekeyId: 2 }),
        X3dhError,
        "MissingPrekey",
      );
      expectError(
        () => x3dhRespond(bob, store, { ...initiated.header, oneTimePrekeyId: 999 }),
        X3dhError,
        "MissingPrekey",
      );
    });
  });

  describe("initial message and one-time prekey consumption (sdk/crypto/session)", function () {
    function open(alice: IdentityKeyPair, bob: IdentityKeyPair, spk: SignedPrekey, opk?: OneTimePrekey) {
      return initiateSession(alice, prekeyBundle(bob, spk, opk), utf8("first message"));
    }

    it("the responder decrypts the first message, learns the initiator, and deletes the one-time prekey", function () {
      const { alice, bob, spk, opks, store } = setup();
      const { session: aliceSession, message } = open(alice, bob, spk, opks[0]);
      const accepted = acceptSession(bob, store, message);
      expect(text(accepted.plaintext)).to.equal("first message");
      expect(accepted.peerIdentity.dh).to.deep.equal(alice.dh.publicKey);
      expect(accepted.peerIdentity.signing).to.deep.equal(alice.signing.publicKey);
      expect(store.removed).to.deep.equal([opks[0].id]);
      expect(store.oneTimeCount).to.equal(2);
      // The session works both ways.
      expect(text(aliceSession.decrypt(accepted.session.encrypt(utf8("reply"))))).to.equal("reply");
      expect(text(accepted.session.decrypt(aliceSession.encrypt(utf8("again"))))).to.equal("again");
    });

    it("a replayed initial message fails once its one-time prekey is consumed", function () {
      const { alice, bob, spk, opks, store } = setup();
      const { message } = open(alice, bob, spk, opks[0]);
      acceptSession(bob, store, message);
      expectError(() => acceptSession(bob, store, message), X3dhError, "MissingPrekey");
    });

    it("a tampered initial message is refused and deletes nothing, so the genuine one still opens", function () {
      const { alice, bob, spk, opks, store } = setup();
      const { message } = open(alice, bob, spk, opks[0]);
      expect(() => acceptSession(bob, store, flip(message, message.length - 1))).to.throw(TamperedMessageError);
      expect(store.removed).to.deep.equal([]);
      expect(text(acceptSession(bob, store, message).plaintext)).to.equal("first message");
    });

    it("a header whose initiator signing key was swapped fails the first AEAD check (AD binds both signing keys)", function () {
      const { alice, bob, spk, opks, store } = setup();
      const { message } = open(alice, bob, spk, opks[0]);
      const mallory = generateIdentityKeyPair();
      const forged = message.slice();
      forged.set(mallory.signing.publicKey, 33); // IK_A Ed25519 key field of the header
      expect(() => acceptSession(bob, store, forged)).to.throw(RatchetError);
      expect(store.removed).to.deep.equal([]);
    });

    it("works without a one-time prekey", function () {
      const { alice, bob, spk, store } = setup();
      const { message } = open(alice, bob, spk);
      expect(text(acceptSession(bob, store, message).plaintext)).to.equal("first message");
      expect(store.removed).to.deep.equal([]);
    });
  });

  describe("header encoding", function () {
    it("round-trips and has the fixed length", function () {
      const { alice, bob, spk, opks } = setup();
      for (const opk of [opks[0], undefined]) {
        const header = x3dhInitiate(alice, prekeyBundle(bob, spk, opk)).header;
        const bytes = encodeX3dhHeader(header);
        expect(bytes.length).to.equal(X3DH_HEADER_LENGTH);
        expect(decodeX3dhHeader(bytes)).to.deep.equal(header);
      }
    });

    it("parses strictly: length, version, flag, unused id", function () {
      const { alice, bob, spk } = setup();
      const bytes = encodeX3dhHeader(x3dhInitiate(alice, prekeyBundle(bob, spk)).header);
      const bad = [
        bytes.subarray(1),
        new Uint8Array([...bytes, 0]),
        flip(bytes, 0),
        (() => {
          const b = bytes.slice();
          b[101] = 2;
          return b;
        })(),
        flip(bytes, X3DH_HEADER_LENGTH - 1),
      ];
      for (const b of bad) expectError(() => decodeX3dhHeader(b), X3dhError, "Malformed");
    });
  });

  it("erases nothing the caller still owns: DH of the returned ratchet key pair still works", function () {
    const { alice, bob, spk, store } = setup();
    const initiated = x3dhInitiate(alice, prekeyBundle(bob, spk));
    const responded = x3dhRespond(bob, store, initiated.header);
    const other = generateX25519KeyPair();
    expect(dh(responded.ratchetKeyPair.secretKey, other.publicKey)).to.deep.equal(
      dh(other.secretKey, spk.keyPair.publicKey),
    );
    expect(spk.keyPair.secretKey.some((b) => b !== 0)).to.equal(true);
  });
});
