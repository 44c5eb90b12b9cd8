import { expect } from "chai";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import path from "node:path";
import { randomBytes } from "@noble/hashes/utils.js";
import { aeadSeal, generateEd25519KeyPair, kdfCk, sign } from "../../sdk/crypto/primitives";
import { RatchetSession } from "../../sdk/crypto/ratchet";
import {
  GroupSession,
  PREVIOUS_EPOCHS_KEPT,
  SENDER_KEY_DISTRIBUTION_LENGTH,
  SENDER_KEY_MAX_SKIP,
  SENDER_KEY_MESSAGE_OVERHEAD,
  SenderKeyError,
  decodeSenderKeyDistribution,
} from "../../sdk/crypto/senderKeys";
import { acceptSession, initiateSession, type PrekeyStore } from "../../sdk/crypto/session";
import {
  generateIdentityKeyPair,
  generateOneTimePrekeys,
  generateSignedPrekey,
  prekeyBundle,
  type IdentityKeyPair,
  type OneTimePrekey,
  type SignedPrekey,
} from "../../sdk/crypto/x3dh";
import { deterministicRandom } from "../vectors/deterministicRandom";
import { expectError, flip, hex, text, unhex, utf8 } from "./cryptoReference";

const vector = JSON.parse(readFileSync(path.join(__dirname, "../vectors/sender-keys.json"), "utf8")) as {
  groupId: string;
  seeds: { alice: string; bob: string };
  selfId: string;
  members: string[];
  distribution: string;
  messages: { plaintext: string; message: string }[];
};

/**
 * Members with identities and prekeys, and the pairwise X3DH + Double Ratchet sessions between them, opened on
 * first use: the transport that carries distribution messages.
 */
class Pairwise {
  readonly #identities = new Map<string, IdentityKeyPair>();
  readonly #stores = new Map<string, PrekeyStore>();
  readonly #sessions = new Map<string, RatchetSession>();

  #member(id: string) {
    if (!this.#identities.has(id)) {
      const identity = generateIdentityKeyPair();
      const spk: SignedPrekey = generateSignedPrekey(identity, 1);
      const opks: OneTimePrekey[] = generateOneTimePrekeys(1, 4);
      this.#identities.set(id, identity);
      this.#stores.set(id, {
        signedPrekey: (n) => (n === spk.id ? spk : undefined),
        oneTimePrekey: (n) => opks.find((k) => k.id === n),
        removeOneTimePrekey: (n) =>
          void opks.splice(
            opks.findIndex((k) => k.id === n),
            1,
          ),
      });
    }
    return this.#identities.get(id)!;
  }

  /** Sends `payload` from `from` to `to` over their pairwise session and returns what `to` decrypts. */
  deliver(from: string, to: string, payload: Uint8Array): Uint8Array {
    const out = this.#sessions.get(`${from}->${to}`);
    if (out !== undefined) return this.#sessions.get(`${to}->${from}`)!.decrypt(out.encrypt(payload));
    const sender = this.#member(from);
    const recipient = this.#member(to);
    const spk = this.#stores.get(to)!.signedPrekey(1)!;
    const opk = this.#stores.get(to)!.oneTimePrekey(1) ?? this.#stores.get(to)!.oneTimePrekey(2);
    const opened = initiateSession(sender, prekeyBundle(recipient, spk, opk), payload);
    const accepted = acceptSession(recipient, this.#stores.get(to)!, opened.message);
    this.#sessions.set(`${from}->${to}`, opened.session);
    this.#sessions.set(`${to}->${from}`, accepted.session);
    return accepted.plaintext;
  }
}

/** A group of `ids`, each member's distribution message delivered to every other member over pairwise sessions. */
function newGroup(ids: string[], net = new Pairwise()) {
  const groupId = randomBytes(32);
  const members = new Map(
    ids.map((id) => [id, GroupSession.create({ groupId, selfId: id, members: ids.filter((m) => m !== id) })]),
  );
  for (const id of ids) distribute(net, members, id, members.get(id)!.distributionMessage(), ids);
  return { groupId, members, net };
}

function distribute(net: Pairwise, members: Map<string, GroupSession>, from: string, skdm: Uint8Array, to: string[]) {
  for (const id of to) if (id !== from) members.get(id)!.processDistribution(from, net.deliver(from, id, skdm));
}

describe("Sender keys (sdk/crypto/senderKeys)", function () {
  describe("known-answer vector (test/vectors/sender-keys.json)", function () {
    it("fixed randomness reproduces the distribution message and each group message byte for byte", function () {
      const alice = GroupSession.create(
        { groupId: unhex(vector.groupId), selfId: vector.selfId, members: vector.members },
        { randomBytes: deterministicRandom(vector.seeds.alice) },
      );
      expect(hex(alice.distributionMessage())).to.equal(vector.distribution);
      for (const m of vector.messages) expect(hex(alice.encrypt(utf8(m.plaintext)))).to.equal(m.message);
    });

    it("a member holding the distribution decrypts the committed messages and attributes them", function () {
      const bob = GroupSession.create({ groupId: unhex(vector.groupId), selfId: "bob", members: ["alice"] });
      bob.processDistribution("alice", unhex(vector.distribution));
      for (const m of vector.messages) {
        const out = bob.decrypt(unhex(m.message));
        expect([out.senderId, out.epoch, text(out.plaintext)]).to.deep.equal(["alice", 0, m.plaintext]);
      }
      const d = decodeSenderKeyDistribution(unhex(vector.distribution));
      expect([d.epoch, d.iteration, unhex(vector.distribution).length]).to.deep.equal([
        0,
        0,
        SENDER_KEY_DISTRIBUTION_LENGTH,
      ]);
    });
  });

  describe("a group of three", function () {
    it("every member decrypts every other member's messages, each attributed to its sender", function () {
      const { members } = newGroup(["alice", "bob", "carol"]);
      for (const [from, session] of members) {
        const message = session.encrypt(utf8(`from ${from}`));
        expect(message.length).to.equal(`from ${from}`.length + SENDER_KEY_MESSAGE_OVERHEAD);
        for (const [to, other] of members) {
          if (to === from) continue;
          const out = other.decrypt(message);
          expect([out.senderId, text(out.plaintext)]).to.deep.equal([from, `from ${from}`]);
        }
      }
    });

    it("names a message's sender from its key id without touching the session, for a key it holds only", function () {
      const { members } = newGroup(["alice", "bob", "carol"]);
      const [alice, carol] = [members.get("alice")!, members.get("carol")!];
      const message = alice.encrypt(utf8("hi"));
      const before = hex(carol.serialize());
      expect(carol.senderOf(message)).to.equal("alice");
      expect(hex(carol.serialize())).to.equal(before);
      expect(text(carol.decrypt(message).plaintext)).to.equal("hi"); // still at its step: nothing was spent
      const stranger = GroupSession.create({ groupId: randomBytes(32), selfId: "mallory", members: [] });
      expect(carol.senderOf(stranger.encrypt(utf8("?")))).to.equal(undefined);
      expect(carol.senderOf(new Uint8Array(5))).to.equal(undefined);
    });

    it("decrypts out of order, erasing each skipped key once used", function () {
      const { members } = newGroup(["alice", "bob"]);
      const [alice, bob] = [members.get("alice")!, members.get("bob")!];
      const ms = [0, 1, 2, 3, 4].map((i) => alice.encrypt(utf8(`m${i}`)));
      expect(text(bob.decrypt(ms[4]).plaintext)).to.equal("m4");
      expect(bob.skippedKeyCount).to.equal(4);
      for (const i of [1, 3, 0, 2]) expect(text(bob.decrypt(ms[i]).plaintext)).to.equal(`m${i}`);
      expect(bob.skippedKeyCount).to.equal(0);
    });

    it("accepts a gap of exactly SENDER_KEY_MAX_SKIP and refuses one more, unchanged", function () {
      const { members } = newGroup(["alice", "bob"]);
      const [alice, bob] = [members.get("alice")!, members.get("bob")!];
      const ms = Array.from({ length: SENDER_KEY_MAX_SKIP + 2 }, (_, i) => alice.encrypt(utf8(`m${i}`)));
      const before = hex(bob.serialize());
      expectError(() => bob.decrypt(ms[SENDER_KEY_MAX_SKIP + 1]), SenderKeyError, "TooManySkipped");
      expect(hex(bob.serialize())).to.equal(before);
      expect(text(bob.decrypt(ms[SENDER_KEY_MAX_SKIP]).plaintext)).to.equal(`m${SENDER_KEY_MAX_SKIP}`);
      expect(bob.skippedKeyCount).to.equal(SENDER_KEY_MAX_SKIP);
    });

    it("refuses replays: in order, of a skipped message, and after a restore from bytes", function () {
      const { members } = newGroup(["alice", "bob"]);
      const [alice, bob] = [members.get("alice")!, members.get("bob")!];
      const ms = [0, 1, 2].map((i) => alice.encrypt(utf8(`m${i}`)));
      bob.decrypt(ms[2]);
      bob.decrypt(ms[0]);
      expectError(() => bob.decrypt(ms[2]), SenderKeyError, "Duplicate");
      expectError(() => bob.decrypt(ms[0]), SenderKeyError, "Duplicate");
      const restored = GroupSession.deserialize(bob.serialize());
      expect(text(restored.decrypt(ms[1]).plaintext)).to.equal("m1");
      expectError(() => restored.decrypt(ms[1]), SenderKeyError, "Duplicate");
    });

    it("refuses a flipped bit anywhere (header, nonce, ciphertext, tag, signature), unchanged", function () {
      const { members } = newGroup(["alice", "bob"]);
      const [alice, bob] = [members.get("alice")!, members.get("bob")!];
      const good = alice.encrypt(utf8("authentic"));
      const before = hex(bob.serialize());
      for (let i = 1; i < good.length; i++) {
        const e = expectError(
          () => bob.decrypt(flip(good, i)),
          SenderKeyError,
          i <= 16 ? "UnknownSenderKey" : "Tampered",
        );
        expect(e.message).to.match(/^GroupSession\.decrypt: expected /);
      }
      expectError(() => bob.decrypt(flip(good, 0)), SenderKeyError, "Malformed");
      expectError(() => bob.decrypt(good.subarray(0, SENDER_KEY_MESSAGE_OVERHEAD - 1)), SenderKeyError, "Malformed");
      expect(hex(bob.serialize())).to.equal(before);
      expect(text(bob.decrypt(good).plaintext)).to.equal("authentic");
    });

    it("one member cannot forge another's message: it holds the chain key but not the signing key", function () {
      const { groupId, members } = newGroup(["alice", "bob", "carol"]);
      const carol = members.get("carol")!;
      // Bob builds a message under Alice's sender key from the distribution he holds: a valid AEAD, his own signature.
      const skdm = decodeSenderKeyDistribution(members.get("alice")!.distributionMessage());
      const header = new Uint8Array([1, ...skdm.keyId, 0, 0, 0, 0]);
      const nonce = randomBytes(12);
      const plaintext = utf8("from alice (really bob)");
      const context = (rest: Uint8Array) =>
        new Uint8Array([...utf8("SendingNetwork_SenderKey_v1"), ...groupId, 0, 0, 0, 0, ...rest]);
      const sealed = new Uint8Array(plaintext.length + 16);
      aeadSeal(kdfCk(skdm.chainKey).messageKey, nonce, context(header), plaintext, sealed);
      const body = new Uint8Array([...header, ...nonce, ...sealed]);
      const forged = new Uint8Array([...body, ...sign(generateEd25519KeyPair().secretKey, context(body))]);
      const e = expectError(() => carol.decrypt(forged), SenderKeyError, "Tampered");
      expect(e.message).to.equal('GroupSession.decrypt: expected a valid signature by "alice"');
      // The genuine message at that iteration still decrypts.
      expect(text(carol.decrypt(members.get("alice")!.encrypt(utf8("real"))).plaintext)).to.equal("real");
    });
  });

  describe("membership", function () {
    it("after a member is removed and the rest rekey, the removed member cannot read later messages", function () {
      const { members, net } = newGroup(["alice", "bob", "carol"]);
      const [alice, bob, carol] = ["alice", "bob", "carol"].map((id) => members.get(id)!);
      const before = alice.encrypt(utf8("before removal"));
      expect(text(carol.decrypt(before).plaintext)).to.equal("before removal");
      const inFlight = bob.encrypt(utf8("sent by bob just before the rekey"));

      // Carol is removed: every remaining member rekeys and distributes to the remaining members only.
      const remaining = ["alice", "bob"];
      for (const id of remaining) distribute(net, members, id, members.get(id)!.rekey(["carol"]), remaining);
      expect([alice.epoch, bob.epoch]).to.deep.equal([1, 1]);
      expect(alice.members).to.deep.equal(["bob"]);

      const after = alice.encrypt(utf8("after removal"));
      expect(bob.decrypt(after)).to.deep.include({ senderId: "alice", epoch: 1 });
      expectError(() => carol.decrypt(after), SenderKeyError, "UnknownSenderKey");
      expectError(() => carol.decrypt(bob.encrypt(utf8("also after"))), SenderKeyError, "UnknownSenderKey");
      // Carol's own old-epoch messages are no longer accepted, nor her distribution messages.
      expectError(() => alice.decrypt(carol.encrypt(utf8("still here?"))), SenderKeyError, "UnknownSenderKey");
      expectError(() => alice.processDistribution("carol", carol.rekey([])), SenderKeyError, "NotMember");
      // A remaining member's message from the previous epoch, in flight across the rekey, still decrypts.
      expect(alice.decrypt(inFlight)).to.deep.include({ senderId: "bob", epoch: 0 });
    });

    it("rekeys into a later epoch given (a member catching up), never into the current one or an earlier", function () {
      const { members, net } = newGroup(["alice", "bob"]);
      const [alice, bob] = [members.get("alice")!, members.get("bob")!];
      distribute(net, members, "alice", alice.rekey([], 5), ["alice", "bob"]);
      expect(alice.epoch).to.equal(5);
      expect(bob.decrypt(alice.encrypt(utf8("from epoch 5")))).to.deep.include({ senderId: "alice", epoch: 5 });
      for (const epoch of [5, 4, 5.5]) expectError(() => alice.rekey([], epoch), SenderKeyError, "Malformed");
      expectError(() => alice.rekey([], 2 ** 32 - 1), SenderKeyError, "Exhausted");
      expect(alice.epoch).to.equal(5);
      expect(bob.decrypt(alice.encrypt(utf8("still epoch 5")))).to.deep.include({ epoch: 5 });
    });

    it(`keeps received keys of ${PREVIOUS_EPOCHS_KEPT} previous epoch(s) only`, function () {
      const { members, net } = newGroup(["alice", "bob"]);
      const [alice, bob] = [members.get("alice")!, members.get("bob")!];
      const epoch0 = bob.encrypt(utf8("epoch 0"));
      for (let round = 0; round < 2; round++) {
        for (const id of ["alice", "bob"]) distribute(net, members, id, members.get(id)!.rekey(), ["alice", "bob"]);
      }
      expect(alice.epoch).to.equal(2);
      expectError(() => alice.decrypt(epoch0), SenderKeyError, "UnknownSenderKey");
      const stale = GroupSession.create({
        groupId: alice.groupId,
        selfId: "bob",
        members: ["alice"],
      }).distributionMessage();
      expectError(() => alice.processDistribution("bob", stale), SenderKeyError, "StaleEpoch");
    });

    it("a late joiner cannot read earlier messages, only those sent after it received the sender keys", function () {
      const { groupId, members, net } = newGroup(["alice", "bob"]);
      const [alice, bob] = [members.get("alice")!, members.get("bob")!];
      const early = [alice.encrypt(utf8("early 0")), alice.encrypt(utf8("early 1")), bob.encrypt(utf8("early bob"))];
      bob.decrypt(early[0]);

      const dave = GroupSession.create({ groupId, selfId: "dave", members: ["alice", "bob"], epoch: alice.epoch });
      members.set("dave", dave);
      for (const id of ["alice", "bob"])
        dave.processDistribution(id, net.deliver(id, "dave", members.get(id)!.addMember("dave")));
      distribute(net, members, "dave", dave.distributionMessage(), ["alice", "bob"]);

      for (const m of early) expectError(() => dave.decrypt(m), SenderKeyError, "Duplicate");
      const later = alice.encrypt(utf8("welcome dave"));
      expect(text(dave.decrypt(later).plaintext)).to.equal("welcome dave");
      expect(text(bob.decrypt(early[1]).plaintext)).to.equal("early 1"); // others unaffected
      const fromDave = dave.encrypt(utf8("hi all"));
      expect(alice.decrypt(fromDave).senderId).to.equal("dave");
      expect(bob.decrypt(fromDave).senderId).to.equal("dave");
    });

    it("refuses distributions from non-members, for another group, or contradicting a held key", function () {
      const { members } = newGroup(["alice", "bob"]);
      const [alice, bob] = [members.get("alice")!, members.get("bob")!];
      expectError(() => alice.processDistribution("mallory", bob.distributionMessage()), SenderKeyError, "NotMember");
      const otherGroup = GroupSession.create({ groupId: randomBytes(32), selfId: "bob", members: ["alice"] });
      expectError(
        () => alice.processDistribution("bob", otherGroup.distributionMessage()),
        SenderKeyError,
        "Malformed",
      );
      const conflicting = bob.distributionMessage();
      conflicting.set(randomBytes(32), SENDER_KEY_DISTRIBUTION_LENGTH - 32); // same key id, other signing key
      expectError(() => alice.processDistribution("bob", conflicting), SenderKeyError, "Conflict");
      expectError(
        () => alice.processDistribution("bob", bob.distributionMessage().subarray(1)),
        SenderKeyError,
        "Malformed",
      );
      // A repeated distribution is a no-op: it never rewinds the chain, so replays stay refused.
      const m = bob.encrypt(utf8("x"));
      alice.decrypt(m);
      alice.processDistribution("bob", GroupSession.deserialize(bob.serialize()).distributionMessage());
      expectError(() => alice.decrypt(m), SenderKeyError, "Duplicate");
    });

    it("rekey refuses to remove a non-member", function () {
      const { members } = newGroup(["alice", "bob"]);
      expectError(() => members.get("alice")!.rekey(["zed"]), SenderKeyError, "NotMember");
    });
  });

  describe("serialization", function () {
    it("a restored session keeps sending and receiving, and re-serializes to the same bytes", function () {
      const { members } = newGroup(["alice", "bob", "carol"]);
      const [alice, bob] = [members.get("alice")!, members.get("bob")!];
      const ms = [0, 1, 2].map((i) => alice.encrypt(utf8(`m${i}`)));
      bob.decrypt(ms[2]);
      const bytes = bob.serialize();
      const restored = GroupSession.deserialize(bytes);
      expect(hex(restored.serialize())).to.equal(hex(bytes));
      expect([restored.selfId, restored.epoch, restored.members]).to.deep.equal(["bob", 0, ["alice", "carol"]]);
      expect(text(restored.decrypt(ms[0]).plaintext)).to.equal("m0");
      expect(text(alice.decrypt(restored.encrypt(utf8("from restored"))).plaintext)).to.equal("from restored");
      const aliceRestored = GroupSession.deserialize(alice.serialize());
      expect(text(restored.decrypt(aliceRestored.encrypt(utf8("m3"))).plaintext)).to.equal("m3");
    });

    it("parses strictly: any single-byte change parses or fails as Malformed; truncation and extension fail", function () {
      const { members } = newGroup(["alice", "bob"]);
      const bob = members.get("bob")!;
      bob.decrypt(members.get("alice")!.encrypt(utf8("x")));
      bob.decrypt(members.get("alice")!.encrypt(utf8("y")));
      const state = bob.serialize();
      expectError(() => GroupSession.deserialize(state.subarray(0, state.length - 1)), SenderKeyError, "Malformed");
      expectError(() => GroupSession.deserialize(new Uint8Array([...state, 0])), SenderKeyError, "Malformed");
      expectError(() => GroupSession.deserialize(flip(state, 0)), SenderKeyError, "Malformed");
      fc.assert(
        fc.property(fc.nat(state.length - 1), fc.integer({ min: 1, max: 255 }), (at, xor) => {
          const b = state.slice();
          b[at] ^= xor;
          try {
            GroupSession.deserialize(b);
          } catch (e) {
            expect(e).to.be.instanceOf(SenderKeyError);
            expect((e as SenderKeyError).code).to.equal("Malformed");
          }
        }),
        { numRuns: 300 },
      );
    });
  });

  describe("properties (fast-check)", function () {
    it("messages from two senders, delivered in random order with restores, each decrypt exactly once", function () {
      const { members } = newGroup(["alice", "bob", "carol"]);
      const senders = ["alice", "bob"].map((id) => members.get(id)!);
      let carol = members.get("carol")!;
      fc.assert(
        fc.property(
          fc.array(fc.constantFrom(0, 1), { minLength: 1, maxLength: 40 }),
          fc.array(fc.nat(), { maxLength: 40 }),
          fc.nat(),
          (who, order, restoreAt) => {
            const pending = who.map((s, i) => ({
              from: s,
              plaintext: `${s}:${i}`,
              message: senders[s].encrypt(utf8(`${s}:${i}`)),
            }));
            const delivered: Uint8Array[] = [];
            for (let i = 0; pending.length > 0; i++) {
              if (i === restoreAt % 40) carol = GroupSession.deserialize(carol.serialize());
              const [m] = pending.splice((order[i] ?? 0) % pending.length, 1);
              const out = carol.decrypt(m.message);
              expect([out.senderId, text(out.plaintext)]).to.deep.equal([["alice", "bob"][m.from], m.plaintext]);
              delivered.push(m.message);
            }
            expect(carol.skippedKeyCount).to.equal(0);
            const replay = delivered[restoreAt % delivered.length];
            expectError(() => carol.decrypt(replay), SenderKeyError, "Duplicate");
          },
        ),
        { numRuns: 40 },
      );
    });
  });
});
