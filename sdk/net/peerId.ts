import { ed25519 } from "@noble/curves/ed25519.js";
import { encodeBase58, hexlify } from "ethers";

/** Multihash "identity" code: the public key is embedded in the peer id instead of hashed (keys up to 42 bytes). */
const MULTIHASH_IDENTITY = 0x00;
/** libp2p's PublicKey protobuf: field 1 (KeyType) = Ed25519 (1), field 2 (Data) = 32 bytes. */
const ED25519_PUBLIC_KEY_PREFIX = [0x08, 0x01, 0x12, 0x20];

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
