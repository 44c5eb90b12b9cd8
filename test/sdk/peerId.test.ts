import { expect } from "chai";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { bytesToHex, hexToBytes } from "@noble/hashes/utils.js";
import {
  PeerIdError,
  ed25519PublicKeyOfPeer,
  peerIdBytes,
  peerIdFromEd25519PublicKey,
  relayKeyPairFromNodeKey,
  relayPublicKeyOfPeer,
} from "../../sdk/net/peerId";

/** RFC 8032 §7.1, TEST 1: an Ed25519 seed and its public key. */
const RFC8032_SEED = hexToBytes("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
const RFC8032_PUBLIC = hexToBytes("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");

/** The birational map edwards25519 → curve25519, u = (1 + y) / (1 - y) mod p (RFC 7748 §4.1), in plain bigints. */
function montgomeryU(edwardsPublic: Uint8Array): Uint8Array {
  const p = 2n ** 255n - 19n;
  const le = Uint8Array.from(edwardsPublic);
  le[31] &= 0x7f; // drop the sign bit of x
  const y = BigInt("0x" + bytesToHex(le.reverse()));
  const pow = (b: bigint, e: bigint): bigint => {
    let r = 1n;
    for (b %= p; e > 0n; e >>= 1n, b = (b * b) % p) if (e & 1n) r = (r * b) % p;
    return r;
  };
  const u = ((1n + y) * pow((1n - y + p) % p, p - 2n)) % p;
  return hexToBytes(u.toString(16).padStart(64, "0")).reverse();
}

describe("sdk/net/peerId: the relay key is the Montgomery form of the node key", () => {
  it("derives the same X25519 public key from the secret as from the public key (RFC 8032 test 1)", () => {
    expect(bytesToHex(ed25519.getPublicKey(RFC8032_SEED))).to.equal(bytesToHex(RFC8032_PUBLIC));
    const pair = relayKeyPairFromNodeKey(RFC8032_SEED);
    const peerId = peerIdFromEd25519PublicKey(RFC8032_PUBLIC);
    expect(bytesToHex(pair.publicKey)).to.equal(bytesToHex(relayPublicKeyOfPeer(peerId)));
    expect(bytesToHex(pair.publicKey)).to.equal(bytesToHex(montgomeryU(RFC8032_PUBLIC)));
    expect(bytesToHex(x25519.getPublicKey(pair.privateKey))).to.equal(bytesToHex(pair.publicKey));
  });

  it("agrees for random keys: a sender's X25519 with the peer's key meets the node's with the derived secret", () => {
    for (let i = 0; i < 20; i++) {
      const seed = ed25519.utils.randomSecretKey();
      const peerId = peerIdFromEd25519PublicKey(ed25519.getPublicKey(seed));
      const node = relayKeyPairFromNodeKey(seed);
      const relayPublic = relayPublicKeyOfPeer(peerId);
      expect(bytesToHex(relayPublic)).to.equal(bytesToHex(node.publicKey));
      const ephemeral = x25519.utils.randomSecretKey();
      const senderShared = x25519.getSharedSecret(ephemeral, relayPublic);
      const nodeShared = x25519.getSharedSecret(node.privateKey, x25519.getPublicKey(ephemeral));
      expect(bytesToHex(senderShared)).to.equal(bytesToHex(nodeShared));
    }
  });

  it("reads peer ids exactly as libp2p writes them, and the key libp2p keeps gives the same relay key", async () => {
    const { generateKeyPair } = await import("@libp2p/crypto/keys");
    const { peerIdFromPrivateKey } = await import("@libp2p/peer-id");
    for (let i = 0; i < 5; i++) {
      const key = await generateKeyPair("Ed25519");
      const peer = peerIdFromPrivateKey(key);
      const id = peer.toString();
      expect(bytesToHex(peerIdBytes(id))).to.equal(bytesToHex(peer.toMultihash().bytes));
      expect(bytesToHex(ed25519PublicKeyOfPeer(id))).to.equal(bytesToHex(key.publicKey.raw));
      expect(peerIdFromEd25519PublicKey(key.publicKey.raw)).to.equal(id);
      const seed = key.raw.subarray(0, 32); // libp2p's raw Ed25519 private key is seed || public key
      expect(bytesToHex(relayKeyPairFromNodeKey(seed).publicKey)).to.equal(bytesToHex(relayPublicKeyOfPeer(id)));
    }
  });

  it("refuses peer ids that are not Ed25519 identity multihashes, and secrets of the wrong size", () => {
    const good = peerIdFromEd25519PublicKey(RFC8032_PUBLIC);
    const bad = [
      "",
      "peer-0x1234",
      good.slice(0, -1),
      good + "1",
      "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", // a sha2-256 (RSA-style) peer id
      good.replace(/.$/, (c) => (c === "A" ? "B" : "A")).replace(/^12D3KooW/, "12D3KooX"),
    ];
    for (const id of bad) expect(() => relayPublicKeyOfPeer(id), id).to.throw(PeerIdError);
    // An identity key that is a small-order point could not belong to a node that signs with it.
    const smallOrder = new Uint8Array(32);
    smallOrder[0] = 1; // the identity point (y = 1)
    expect(() => relayPublicKeyOfPeer(peerIdFromEd25519PublicKey(smallOrder))).to.throw(PeerIdError);
    expect(() => relayKeyPairFromNodeKey(new Uint8Array(64))).to.throw(PeerIdError, /32-byte/);
  });
});
