/**
 * libp2p peer ids of Ed25519 keys, and the relay key that goes with them.
 *
 * An edge node's X25519 relay key (the key senders wrap a layer of the onion packet to, sdk/wire/onion.ts) is the
 * Montgomery form of the node's libp2p Ed25519 identity key: the birational map from edwards25519 to curve25519
 * (RFC 7748 §4.1) applied to the public key, and to the secret scalar (SHA-512 of the seed, clamped) on the node.
 * So the peer id a node registers in the NodeRegistry is all a sender needs to wrap a layer for it, and there is no
 * second key to publish, rotate or keep consistent with the stake. Using one key for signatures (Noise handshake,
 * identify) and for X25519 is safe in this direction (Ed25519 signing and X25519 Diffie-Hellman with the converted
 * key do not help each other; libsodium's crypto_sign_ed25519_sk_to_curve25519 does the same); the cost is that the
 * relay key rotates only with the peer id.
 */
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { decodeBase58, encodeBase58, hexlify, toBeArray } from "ethers";

/** Multihash "identity" code: the public key is embedded in the peer id instead of hashed (keys up to 42 bytes). */
const MULTIHASH_IDENTITY = 0x00;
/** libp2p's PublicKey protobuf: field 1 (KeyType) = Ed25519 (1), field 2 (Data) = 32 bytes. */
const ED25519_PUBLIC_KEY_PREFIX = [0x08, 0x01, 0x12, 0x20];
/** Bytes of an Ed25519 peer id's binary multihash: code (1) || length (1) || protobuf prefix (4) || key (32). */
export const ED25519_PEER_ID_BYTES = 2 + ED25519_PUBLIC_KEY_PREFIX.length + 32;

/** A peer id string that is not the base58btc identity multihash of an Ed25519 key. */
export class PeerIdError extends Error {
  /** Always "BadPeerId": the peer id does not parse as an Ed25519 libp2p peer id. */
  readonly code = "BadPeerId";
  constructor(message: string) {
    super(message);
    this.name = "PeerIdError";
  }
}

/**
 * The libp2p peer id (base58btc, "12D3KooW…") of an Ed25519 public key, as libp2p derives it: the identity
 * multihash of the key's protobuf encoding.
 */
export function peerIdFromEd25519PublicKey(publicKey: Uint8Array): string {
  if (publicKey.length !== 32) {
    throw new Error(`peerIdFromEd25519PublicKey: expected a 32-byte Ed25519 public key, got ${publicKey.length} bytes`);
  }
  const protobuf = new Uint8Array([...ED25519_PUBLIC_KEY_PREFIX, ...publicKey]);
  const multihash = new Uint8Array([MULTIHASH_IDENTITY, protobuf.length, ...protobuf]);
  // The multihash starts with a zero byte, which base58btc writes as a leading "1".
  return "1" + encodeBase58(multihash.subarray(1));
}

/** A fresh Ed25519 node key with its peer id. */
export function generateNodeKey(): { privateKey: string; publicKey: string; peerId: string } {
  const secret = ed25519.utils.randomSecretKey();
  const publicKey = ed25519.getPublicKey(secret);
  return { privateKey: hexlify(secret), publicKey: hexlify(publicKey), peerId: peerIdFromEd25519PublicKey(publicKey) };
}

/**
 * The binary multihash of an Ed25519 peer id string (38 bytes: what `peerId.toMultihash().bytes` gives in libp2p,
 * and what a forward layer of the onion packet names the next hop by). Throws PeerIdError for anything else.
 */
export function peerIdBytes(peerId: string): Uint8Array {
  if (typeof peerId !== "string" || !/^1[1-9A-HJ-NP-Za-km-z]{40,60}$/.test(peerId)) {
    throw new PeerIdError(`peerIdBytes: expected a base58btc Ed25519 peer id ("12D3KooW…"), got '${String(peerId)}'`);
  }
  let rest: Uint8Array;
  try {
    rest = toBeArray(decodeBase58(peerId.slice(1)));
  } catch {
    throw new PeerIdError(`peerIdBytes: '${peerId}' is not base58btc`);
  }
  const bytes = new Uint8Array([MULTIHASH_IDENTITY, ...rest]);
  const prefixOk =
    bytes.length === ED25519_PEER_ID_BYTES &&
    bytes[1] === ED25519_PUBLIC_KEY_PREFIX.length + 32 &&
    ED25519_PUBLIC_KEY_PREFIX.every((b, i) => bytes[2 + i] === b);
  if (!prefixOk) throw new PeerIdError(`peerIdBytes: '${peerId}' is not the identity multihash of an Ed25519 key`);
  return bytes;
}

/** The Ed25519 public key (32 bytes) embedded in an Ed25519 peer id string. Throws PeerIdError otherwise. */
export function ed25519PublicKeyOfPeer(peerId: string): Uint8Array {
  return peerIdBytes(peerId).slice(2 + ED25519_PUBLIC_KEY_PREFIX.length);
}

/**
 * The X25519 relay public key of a node, from its peer id alone: the Montgomery form of the Ed25519 key the peer id
 * embeds. Throws PeerIdError for a peer id that is not an Ed25519 identity multihash or whose key is not a valid
 * point of small order free (such a key could not have come from a real node).
 */
export function relayPublicKeyOfPeer(peerId: string): Uint8Array {
  const edwards = ed25519PublicKeyOfPeer(peerId);
  try {
    const point = ed25519.Point.fromBytes(edwards);
    if (point.isSmallOrder()) throw new Error("small order");
  } catch {
    throw new PeerIdError(`relayPublicKeyOfPeer: '${peerId}' does not embed a usable Ed25519 public key`);
  }
  return ed25519.utils.toMontgomery(edwards);
}

/**
 * The node's X25519 relay key pair from its 32-byte Ed25519 secret key (the seed libp2p keeps in node.key, the first
 * half of its 64-byte raw private key): the secret is SHA-512(seed)[0..32] clamped, the public key its X25519
 * image, equal to `relayPublicKeyOfPeer(peer id of this key)`.
 */
export function relayKeyPairFromNodeKey(ed25519PrivateKey32: Uint8Array): {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
} {
  if (!(ed25519PrivateKey32 instanceof Uint8Array) || ed25519PrivateKey32.length !== 32) {
    throw new PeerIdError(
      `relayKeyPairFromNodeKey: expected a 32-byte Ed25519 secret key, got ${
        ed25519PrivateKey32 instanceof Uint8Array ? `${ed25519PrivateKey32.length} bytes` : typeof ed25519PrivateKey32
      }`,
    );
  }
  const privateKey = ed25519.utils.toMontgomerySecret(ed25519PrivateKey32);
  return { privateKey, publicKey: x25519.getPublicKey(privateKey) };
}
