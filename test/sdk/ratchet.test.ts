import { expect } from "chai";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "@noble/hashes/utils.js";
import {
  RATCHET_ROOT_INFO,
  X3DH_INFO,
  generateX25519KeyPair,
  kdfCk,
  kdfRk,
  x25519PublicKey,
  x3dhKdf,
} from "../../sdk/crypto/primitives";
import {
  DuplicateMessageError,
  MAX_SKIP,
  MAX_SKIPPED_KEYS,
  MalformedRatchetDataError,
  RATCHET_HEADER_LENGTH,
  RATCHET_MESSAGE_OVERHEAD,
  RatchetError,
  RatchetSession,
  RatchetStateError,
  TamperedMessageError,
  TooManySkippedError,
  decodeRatchetHeader,
} from "../../sdk/crypto/ratchet";
import { deterministicRandom } from "../vectors/deterministicRandom";
import { expectError, flip, hex, reference, text, unhex, utf8 } from "./cryptoReference";

const kdfVectors = JSON.parse(readFileSync(path.join(__dirname, "../vectors/ratchet-kdf.json"), "utf8")) as {
  x3dhInfo: string;
  ratchetRootInfo: string;
  x3dhKdf: { keyMaterial: string; output: string }[];
  kdfRk: { rootKey: string; dhOutput: string; nextRootKey: string; chainKey: string }[];
  kdfCk: { chainKey: string; messageKey: string; nextChainKey: string }[];
};
type TranscriptEvent =
  | { op: "send"; from: "alice" | "bob"; id: string; plaintext: string; message: string }
  | { op: "receive"; to: "alice" | "bob"; id: string };
const transcript = JSON.parse(readFileSync(path.join(__dirname, "../vectors/ratchet-transcript.json"), "utf8")) as {
  sharedSecret: string;
  associatedData: string;
  bobRatchetSecret: string;
  seeds: { alice: string; bob: string };
  events: TranscriptEvent[];
};

/** A fresh pair: Alice (initiator) and Bob (responder), as X3DH would leave them. */
function newPair() {
  const sharedSecret = randomBytes(32);
  const associatedData = randomBytes(130);
  const bobKeys = generateX25519KeyPair();
  const alice = RatchetSession.initiator({ sharedSecret, associatedData, remoteRatchetKey: bobKeys.publicKey });
  const bob = RatchetSession.responder({ sharedSecret, associatedData, ratchetKeyPair: bobKeys });
  return { alice, bob };
}

/** A pair after Alice's first message reached Bob, so both can send. */
function established() {
  const { alice, bob } = newPair();
  expect(text(bob.decrypt(alice.encrypt(utf8("hello"))))).to.equal("hello");
  return { alice, bob };
}

const send = (from: RatchetSession, count: number, label = "m") =>
  Array.from({ length: count }, (_, i) => ({ plaintext: `${label}${i}`, message: from.encrypt(utf8(`${label}${i}`)) }));

/** The secrets in a serialized state, by the layout in RatchetSession.serialize. */
function stateSecrets(state: Uint8Array): Uint8Array[] {
  const flags = state[5];
  const out = [state.slice(6, 38), state.slice(38, 70)]; // RK, DHs secret
  let offset = 70 + (flags & 1 ? 32 : 0);
  if (flags & 2) {
    out.push(state.slice(offset, offset + 32)); // CKs
    offset += 32;
  }
  if (flags & 4) out.push(state.slice(offset, offset + 32)); // CKr
  return out;
}

const contains = (haystack: Uint8Array, needle: Uint8Array) => Buffer.from(haystack).indexOf(Buffer.from(needle)) >= 0;

describe("Double Ratchet (sdk/crypto/ratchet)", function () {
  describe("KDF known-answer vectors (test/vectors/ratchet-kdf.json), checked against node:crypto", function () {
    it("the X3DH KDF is HKDF-SHA-256 over 32 0xFF bytes || KM with a 32-byte zero salt", function () {
      expect(kdfVectors.x3dhInfo).to.equal(X3DH_INFO);
      for (const v of kdfVectors.x3dhKdf) {
        const km = unhex(v.keyMaterial);
        expect(hex(x3dhKdf(km))).to.equal(v.output);
        const ikm = Buffer.concat([Buffer.alloc(32, 0xff), km]);
        expect(hex(reference.hkdf(ikm, new Uint8Array(32), X3DH_INFO, 32))).to.equal(v.output);
      }
    });

    it("KDF_RK is HKDF-SHA-256 (salt = root key, IKM = DH output), split into next root key and chain key", function () {
      expect(kdfVectors.ratchetRootInfo).to.equal(RATCHET_ROOT_INFO).and.to.equal("SendingNetwork_DoubleRatchet_v1");
      for (const v of kdfVectors.kdfRk) {
        const out = kdfRk(unhex(v.rootKey), unhex(v.dhOutput));
        expect([hex(out.rootKey), hex(out.chainKey)]).to.deep.equal([v.nextRootKey, v.chainKey]);
        const ref = reference.hkdf(unhex(v.dhOutput), unhex(v.rootKey), RATCHET_ROOT_INFO, 64);
        expect([hex(ref.subarray(0, 32)), hex(ref.subarray(32))]).to.deep.equal([v.nextRootKey, v.chainKey]);
      }
    });

    it("KDF_CK is HMAC-SHA-256 with 0x01 for the message key and 0x02 for the next chain key", function () {
      for (let i = 0; i < kdfVectors.kdfCk.length; i++) {
        const v = kdfVectors.kdfCk[i];
        const out = kdfCk(unhex(v.chainKey));
        expect([hex(out.messageKey), hex(out.chainKey)]).to.deep.equal([v.messageKey, v.nextChainKey]);
        expect(hex(reference.hmac(unhex(v.chainKey), Uint8Array.of(1)))).to.equal(v.messageKey);
        expect(hex(reference.hmac(unhex(v.chainKey), Uint8Array.of(2)))).to.equal(v.nextChainKey);
        if (i > 0) expect(v.chainKey).to.equal(kdfVectors.kdfCk[i - 1].nextChainKey);
      }
    });

    it("KDF_CK and KDF_RK agree with node:crypto on random inputs (property)", function () {
      const key = fc.uint8Array({ minLength: 32, maxLength: 32 });
      fc.assert(
        fc.property(key, key, (a, b) => {
          const ck = kdfCk(a);
          expect(hex(ck.messageKey)).to.equal(hex(reference.hmac(a, Uint8Array.of(1))));
          expect(hex(ck.chainKey)).to.equal(hex(reference.hmac(a, Uint8Array.of(2))));
          const rk = kdfRk(a, b);
          expect(hex(rk.rootKey) + hex(rk.chainKey)).to.equal(hex(reference.hkdf(b, a, RATCHET_ROOT_INFO, 64)));
        }),
        { numRuns: 200 },
      );
    });
  });

  describe("transcript vector (test/vectors/ratchet-transcript.json)", function () {
    function replay() {
      const sharedSecret = unhex(transcript.sharedSecret);
      const associatedData = unhex(transcript.associatedData);
      const bobSecret = unhex(transcript.bobRatchetSecret);
      const sessions = {
        alice: RatchetSession.initiator(
          { sharedSecret, associatedData, remoteRatchetKey: x25519PublicKey(bobSecret) },
          { randomBytes: deterministicRandom(transcript.seeds.alice) },
        ),
        bob: RatchetSession.responder(
          {
            sharedSecret,
            associatedData,
            ratchetKeyPair: { secretKey: bobSecret, publicKey: x25519PublicKey(bobSecret) },
          },
          { randomBytes: deterministicRandom(transcript.seeds.bob) },
        ),
      };
      return sessions;
    }

    it("replaying the conversation with its fixed randomness reproduces every message byte for byte", function () {
      const sessions = replay();
      const sent = new Map<string, { plaintext: string; message: string }>();
      for (const e of transcript.events) {
        if (e.op === "send") {
          expect(hex(sessions[e.from].encrypt(utf8(e.plaintext))), e.id).to.equal(e.message);
          sent.set(e.id, e);
        } else {
          const m = sent.get(e.id)!;
          expect(text(sessions[e.to].decrypt(unhex(m.message))), e.id).to.equal(m.plaintext);
        }
      }
      expect(sent.size).to.equal(7);
    });

    it("its headers carry the expected counters (out-of-order delivery and three DH ratchet steps)", function () {
      const sends = transcript.events.filter((e): e is Extract<TranscriptEvent, { op: "send" }> => e.op === "send");
      const headers = sends.map((e) => decodeRatchetHeader(unhex(e.message)));
      expect(headers.map((h) => [h.pn, h.n])).to.deep.equal([
        [0, 0],
        [0, 1],
        [0, 2],
        [0, 0],
        [0, 1],
        [3, 0],
        [2, 0],
      ]);
      expect(new Set(headers.map((h) => hex(h.dh))).size).to.equal(4);
    });
  });

  describe("delivery", function () {
    it("decrypts in order, in both directions, across many DH ratchet steps", function () {
      const { alice, bob } = established();
      for (let round = 0; round < 20; round++) {
        for (const m of send(alice, 3, `a${round}-`)) expect(text(bob.decrypt(m.message))).to.equal(m.plaintext);
        for (const m of send(bob, 2, `b${round}-`)) expect(text(alice.decrypt(m.message))).to.equal(m.plaintext);
      }
      expect(alice.skippedKeyCount + bob.skippedKeyCount).to.equal(0);
    });

    it("the responder cannot send before its first decrypt", function () {
      const { bob } = newPair();
      expect(bob.canSend).to.equal(false);
      expectError(() => bob.encrypt(utf8("too early")), RatchetStateError, "InvalidState");
    });

    it("decrypts out of order within a chain, storing skipped keys and erasing each once used", function () {
      const { alice, bob } = established();
      const ms = send(alice, 6);
      expect(text(bob.decrypt(ms[5].message))).to.equal("m5");
      expect(bob.skippedKeyCount).to.equal(5);
      for (const i of [2, 0, 4, 1, 3]) expect(text(bob.decrypt(ms[i].message))).to.equal(`m${i}`);
      expect(bob.skippedKeyCount).to.equal(0);
    });

    it("decrypts messages of a previous chain after the next DH ratchet step", function () {
      const { alice, bob } = established();
      const old = send(alice, 3, "old");
      bob.decrypt(old[0].message);
      alice.decrypt(bob.encrypt(utf8("turn")));
      const fresh = send(alice, 2, "new");
      expect(text(bob.decrypt(fresh[1].message))).to.equal("new1"); // PN = 3: old1, old2 and new0 are skipped
      expect(bob.skippedKeyCount).to.equal(3);
      expect(text(bob.decrypt(old[2].message))).to.equal("old2");
      expect(text(bob.decrypt(fresh[0].message))).to.equal("new0");
      expect(text(bob.decrypt(old[1].message))).to.equal("old1");
      expect(bob.skippedKeyCount).to.equal(0);
    });

    it("handles empty and 64 KiB plaintexts, with a fixed overhead", function () {
      const { alice, bob } = established();
      for (const size of [0, 1, 1024, 65536]) {
        const plaintext = randomBytes(size);
        const message = alice.encrypt(plaintext);
        expect(message.length).to.equal(size + RATCHET_MESSAGE_OVERHEAD);
        expect(bob.decrypt(message)).to.deep.equal(plaintext);
      }
    });
  });

  describe("MAX_SKIP", function () {
    it("accepts a gap of exactly MAX_SKIP in a chain and refuses MAX_SKIP + 1, leaving the session unchanged", function () {
      const { alice, bob } = established(); // Bob's Nr is 1
      const ms = send(alice, MAX_SKIP + 2); // n = 1 .. MAX_SKIP + 2
      const e = expectError(() => bob.decrypt(ms[MAX_SKIP + 1].message), TooManySkippedError, "TooManySkipped");
      expect(e.message).to.match(/^RatchetSession\.decrypt: expected to skip at most 1000 keys, got 1001$/);
      expect(bob.skippedKeyCount).to.equal(0);
      expect(text(bob.decrypt(ms[MAX_SKIP].message))).to.equal(`m${MAX_SKIP}`); // gap of exactly MAX_SKIP
      expect(bob.skippedKeyCount).to.equal(MAX_SKIP);
      expect(text(bob.decrypt(ms[MAX_SKIP + 1].message))).to.equal(`m${MAX_SKIP + 1}`);
    });

    it("refuses a new chain whose first message is past MAX_SKIP", function () {
      const { alice, bob } = newPair();
      const ms = send(alice, MAX_SKIP + 2);
      expectError(() => bob.decrypt(ms[MAX_SKIP + 1].message), TooManySkippedError, "TooManySkipped");
      expect(bob.canSend).to.equal(false);
      expect(text(bob.decrypt(ms[MAX_SKIP].message))).to.equal(`m${MAX_SKIP}`);
    });

    it("refuses a ratchet step that would skip more than MAX_SKIP keys of the previous chain (PN)", function () {
      const { alice, bob } = established(); // Bob's Nr is 1
      const old = send(alice, MAX_SKIP + 1, "old"); // Alice's Ns reaches MAX_SKIP + 2
      alice.decrypt(bob.encrypt(utf8("turn")));
      const fresh = alice.encrypt(utf8("new chain")); // PN = MAX_SKIP + 2: Bob would skip MAX_SKIP + 1
      expectError(() => bob.decrypt(fresh), TooManySkippedError, "TooManySkipped");
      bob.decrypt(old[0].message); // now the previous chain has exactly MAX_SKIP unread
      expect(text(bob.decrypt(fresh))).to.equal("new chain");
    });

    it(`keeps at most MAX_SKIPPED_KEYS (${MAX_SKIPPED_KEYS}) skipped keys, evicting the oldest`, function () {
      const { alice, bob } = established();
      const chains: { plaintext: string; message: Uint8Array }[][] = [];
      for (let c = 0; c < 3; c++) {
        const ms = send(alice, MAX_SKIP + 1, `c${c}-`);
        chains.push(ms);
        bob.decrypt(ms[MAX_SKIP].message); // skips MAX_SKIP keys of this chain
        alice.decrypt(bob.encrypt(utf8("turn")));
      }
      expect(bob.skippedKeyCount).to.equal(MAX_SKIPPED_KEYS);
      // The first chain's keys were evicted (erased): its messages are now refused as replays.
      expectError(() => bob.decrypt(chains[0][5].message), DuplicateMessageError, "Duplicate");
      expect(text(bob.decrypt(chains[1][5].message))).to.equal("c1-5");
      expect(text(bob.decrypt(chains[2][0].message))).to.equal("c2-0");
      expect(bob.skippedKeyCount).to.equal(MAX_SKIPPED_KEYS - 2);
    });
  });

  describe("replays and tampering", function () {
    it("refuses a replay in the current chain, of a skipped message, and of a previous chain", function () {
      const { alice, bob } = established();
      const ms = send(alice, 3);
      bob.decrypt(ms[2].message);
      bob.decrypt(ms[0].message);
      expectError(() => bob.decrypt(ms[2].message), DuplicateMessageError, "Duplicate");
      expectError(() => bob.decrypt(ms[0].message), DuplicateMessageError, "Duplicate");
      alice.decrypt(bob.encrypt(utf8("turn")));
      bob.decrypt(alice.encrypt(utf8("next chain")));
      expectError(() => bob.decrypt(ms[2].message), DuplicateMessageError, "Duplicate");
      expect(text(bob.decrypt(ms[1].message))).to.equal("m1"); // still held as a skipped key
      expectError(() => bob.decrypt(ms[1].message), DuplicateMessageError, "Duplicate");
    });

    const regions: [string, number | "tag" | "body", string][] = [
      ["ratchet public key", 5, "Tampered"],
      ["PN", 35, "Tampered"], // PN + 256
      ["N", 39, "Tampered"], // N + 256, within MAX_SKIP
      ["nonce", RATCHET_HEADER_LENGTH + 3, "Tampered"],
      ["ciphertext", "body", "Tampered"],
      ["tag", "tag", "Tampered"],
      ["version", 0, "Malformed"],
    ];
    for (const firstOfChain of [false, true]) {
      for (const [name, at, code] of regions) {
        it(`refuses a message with a flipped bit in its ${name}${firstOfChain ? " (first of a new chain)" : ""}, session unchanged`, function () {
          const { alice, bob } = established();
          if (firstOfChain) alice.decrypt(bob.encrypt(utf8("turn")));
          const good = alice.encrypt(utf8("a message long enough to flip"));
          const index = at === "tag" ? good.length - 1 : at === "body" ? RATCHET_MESSAGE_OVERHEAD - 16 + 4 : at;
          const before = bob.serialize();
          const e = expectError(() => bob.decrypt(flip(good, index)), RatchetError, code);
          expect(e.message).to.match(/^RatchetSession\.decrypt: expected /);
          expect(hex(bob.serialize())).to.equal(hex(before));
          expect(text(bob.decrypt(good))).to.equal("a message long enough to flip");
        });
      }
    }

    it("refuses truncated messages and other sessions' messages", function () {
      const { alice, bob } = established();
      const other = established();
      const good = alice.encrypt(utf8("x"));
      expectError(
        () => bob.decrypt(good.subarray(0, RATCHET_MESSAGE_OVERHEAD - 1)),
        MalformedRatchetDataError,
        "Malformed",
      );
      expectError(() => bob.decrypt(other.alice.encrypt(utf8("x"))), TamperedMessageError, "Tampered");
      expect(text(bob.decrypt(good))).to.equal("x");
    });

    it("refuses a low-order ratchet key in a header as Malformed", function () {
      const { alice, bob } = established();
      const forged = alice.encrypt(utf8("x"));
      forged.fill(0, 1, 33);
      expectError(() => bob.decrypt(forged), MalformedRatchetDataError, "Malformed");
    });

    it("refuses a message under the initiator's initial ratchet key (the responder never sends with it)", function () {
      const { alice, bob } = newPair();
      const first = alice.encrypt(utf8("x"));
      // A forged "reply" from Bob under his signed prekey, which Alice holds as DHr without a receiving chain.
      const forged = first.slice();
      forged.set(x25519PublicKey(bob.serialize().subarray(38, 70)), 1); // Bob's initial ratchet (DHs) public key
      expectError(() => alice.decrypt(forged), TamperedMessageError, "Tampered");
    });
  });

  describe("serialization", function () {
    it("a restored session keeps working: both directions, skipped keys, byte-identical re-serialization", function () {
      const { alice, bob } = established();
      const ms = send(alice, 4);
      bob.decrypt(ms[3].message); // 3 skipped keys in the state
      const bobBytes = bob.serialize();
      const restored = RatchetSession.deserialize(bobBytes);
      expect(hex(restored.serialize())).to.equal(hex(bobBytes));
      expect(restored.skippedKeyCount).to.equal(3);
      expect(text(restored.decrypt(ms[1].message))).to.equal("m1");
      const aliceRestored = RatchetSession.deserialize(alice.serialize());
      expect(text(aliceRestored.decrypt(restored.encrypt(utf8("from restored"))))).to.equal("from restored");
      expect(text(restored.decrypt(aliceRestored.encrypt(utf8("and back"))))).to.equal("and back");
      expect(text(restored.decrypt(ms[0].message))).to.equal("m0");
    });

    it("round-trips the initial states of both sides", function () {
      const { alice, bob } = newPair();
      const a = RatchetSession.deserialize(alice.serialize());
      const b = RatchetSession.deserialize(bob.serialize());
      expect(b.canSend).to.equal(false);
      expect(text(b.decrypt(a.encrypt(utf8("first"))))).to.equal("first");
    });

    it("parses strictly: length, magic, version, flags, counters, bounds and duplicates are checked", function () {
      const { alice, bob } = established();
      bob.decrypt(send(alice, 3)[2].message); // two skipped keys
      const state = bob.serialize(); // flags 7
      const initial = newPair().bob.serialize(); // flags 0
      const set = (bytes: Uint8Array, at: number, ...values: number[]) => {
        const b = bytes.slice();
        b.set(values, at);
        return b;
      };
      const skippedAt = 6 + 32 * 5 + 12 + 2 + 130 + 2; // the first skipped entry (68 bytes) in a flags-7 state
      const cases: [Uint8Array, RegExp][] = [
        [state.subarray(0, state.length - 1), /expected 1 more bytes for previous-chain count/],
        [new Uint8Array([...state, 0]), /expected end of input at offset \d+, got 1 more bytes/],
        [flip(state, 0), /expected magic "SNDR"/],
        [set(state, 4, 2), /expected version 1, got 2/],
        [set(state, 5, 1), /expected flags 0, 3 or 7, got 1/],
        [set(state, 5, 5), /expected flags 0, 3 or 7, got 5/],
        [set(initial, 70, 0, 0, 0, 1), /expected zero counters without chains, got Ns 1 Nr 0 PN 0/],
        [set(initial, 74, 0, 0, 0, 1), /expected zero counters without chains, got Ns 0 Nr 1 PN 0/],
        [set(initial, 82, 0x04, 0x01), /expected AD of at most 1024 bytes, got 1025/],
        [new Uint8Array(0), /expected 4 more bytes for magic/],
        [
          set(state, skippedAt + 68, ...state.subarray(skippedAt, skippedAt + 68)),
          /expected unique skipped keys, got message 1 twice/,
        ],
      ];
      for (const [bytes, expected] of cases) {
        const e = expectError(() => RatchetSession.deserialize(bytes), MalformedRatchetDataError, "Malformed");
        expect(e.message)
          .to.match(/^RatchetSession\.deserialize: /)
          .and.to.match(expected);
      }
    });

    it("any single-byte change either parses or fails as Malformed, never otherwise (property)", function () {
      const { alice, bob } = established();
      bob.decrypt(send(alice, 3)[2].message);
      const state = bob.serialize();
      fc.assert(
        fc.property(fc.nat(state.length - 1), fc.integer({ min: 1, max: 255 }), (at, xor) => {
          const b = state.slice();
          b[at] ^= xor;
          try {
            RatchetSession.deserialize(b);
          } catch (e) {
            expect(e).to.be.instanceOf(MalformedRatchetDataError);
          }
        }),
        { numRuns: 300 },
      );
    });
  });

  describe("erasure and post-compromise security", function () {
    it("a chain step drops the previous receiving chain key from the state", function () {
      const { alice, bob } = established();
      const before = stateSecrets(bob.serialize());
      bob.decrypt(alice.encrypt(utf8("x")));
      const after = bob.serialize();
      expect(contains(after, before[3]), "old CKr").to.equal(false);
      expect(contains(after, before[0]), "RK unchanged within a chain").to.equal(true);
    });

    it("a DH ratchet step drops the previous root key, ratchet secret key and both chain keys", function () {
      const { alice, bob } = established();
      alice.decrypt(bob.encrypt(utf8("turn")));
      const before = stateSecrets(bob.serialize());
      expect(before.length).to.equal(4);
      bob.decrypt(alice.encrypt(utf8("new chain")));
      const after = bob.serialize();
      for (const [i, name] of ["RK", "DHs", "CKs", "CKr"].entries())
        expect(contains(after, before[i]), name).to.equal(false);
    });

    it("a message key is gone once used: not even a snapshot taken afterwards decrypts the message again", function () {
      const { alice, bob } = established();
      const m = alice.encrypt(utf8("once"));
      bob.decrypt(m);
      expectError(() => RatchetSession.deserialize(bob.serialize()).decrypt(m), DuplicateMessageError, "Duplicate");
    });

    it("a copy of a compromised state stops decrypting once its owner has completed a DH ratchet round trip", function () {
      const { alice, bob } = established();
      // Eve copies Bob's whole state, then sees every message Alice sends Bob (a passive attacker).
      const eve = RatchetSession.deserialize(bob.serialize());
      const m1 = alice.encrypt(utf8("m1"));
      bob.decrypt(m1);
      expect(text(eve.decrypt(m1))).to.equal("m1"); // same chain: the compromise exposes it
      alice.decrypt(bob.encrypt(utf8("r1"))); // Bob's ratchet key is still the stolen one
      const m2 = alice.encrypt(utf8("m2")); // Alice's new key, but DH with Bob's stolen key
      bob.decrypt(m2);
      expect(text(eve.decrypt(m2))).to.equal("m2");
      alice.decrypt(bob.encrypt(utf8("r2"))); // Bob's fresh ratchet key, generated after the compromise
      const m3 = alice.encrypt(utf8("m3"));
      expect(text(bob.decrypt(m3))).to.equal("m3");
      expectError(() => eve.decrypt(m3), TamperedMessageError, "Tampered");
      const m4 = alice.encrypt(utf8("m4"));
      expect(text(bob.decrypt(m4))).to.equal("m4");
      expect(() => eve.decrypt(m4)).to.throw(RatchetError);
    });
  });

  describe("properties (fast-check)", function () {
    type Op =
      { kind: "send"; from: 0 | 1 } | { kind: "deliver"; to: 0 | 1; pick: number } | { kind: "persist"; who: 0 | 1 };
    const party = fc.constantFrom<0 | 1>(0, 1);
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 4, arbitrary: party.map((from): Op => ({ kind: "send", from })) },
      { weight: 4, arbitrary: fc.record({ to: party, pick: fc.nat() }).map((r): Op => ({ kind: "deliver", ...r })) },
      { weight: 1, arbitrary: party.map((who): Op => ({ kind: "persist", who })) },
    );

    it("random interleavings of two senders, delivered in random order, each decrypt exactly once", function () {
      fc.assert(
        fc.property(
          fc.array(op, { maxLength: 60 }),
          fc.array(fc.nat(), { maxLength: 80 }),
          fc.nat(),
          (ops, finalPicks, replayPick) => {
            const { alice, bob } = newPair();
            const sessions = [alice, bob];
            const pending: { plaintext: string; message: Uint8Array }[][] = [[], []];
            const delivered: { to: number; message: Uint8Array }[] = [];
            let sent = 0;
            const deliver = (to: number, pick: number) => {
              const queue = pending[to];
              const [m] = queue.splice(pick % queue.length, 1);
              expect(text(sessions[to].decrypt(m.message))).to.equal(m.plaintext);
              delivered.push({ to, message: m.message });
            };
            for (const o of ops) {
              if (o.kind === "send") {
                if (!sessions[o.from].canSend) continue;
                const plaintext = `${o.from}:${sent++}`;
                pending[1 - o.from].push({ plaintext, message: sessions[o.from].encrypt(utf8(plaintext)) });
              } else if (o.kind === "deliver") {
                if (pending[o.to].length > 0) deliver(o.to, o.pick);
              } else {
                sessions[o.who] = RatchetSession.deserialize(sessions[o.who].serialize());
              }
            }
            let i = 0;
            for (const to of [0, 1])
              while (pending[to].length > 0) deliver(to, finalPicks[i++ % Math.max(1, finalPicks.length)] ?? 0);
            expect(delivered.length).to.equal(sent);
            expect(sessions[0].skippedKeyCount + sessions[1].skippedKeyCount).to.equal(0);
            if (delivered.length > 0) {
              const { to, message } = delivered[replayPick % delivered.length];
              expect(() => sessions[to].decrypt(message)).to.throw(RatchetError);
            }
          },
        ),
        { numRuns: 150 },
      );
    });
  });
});
