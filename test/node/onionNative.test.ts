import { expect } from "chai";
import fc from "fast-check";
import { randomBytes } from "node:crypto";
import { x25519 } from "@noble/curves/ed25519.js";
import { NATIVE_ONION_SYMMETRIC, nativeX25519 } from "../../node/onionNative";
import {
  BODY_BYTES,
  HEADER_BYTES,
  NOBLE_ONION_SYMMETRIC,
  OnionError,
  PACKET_BYTES,
  peel,
  wrapPacket,
  type PeelOptions,
} from "../../sdk/wire/onion";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const bytes = (n: number) => Uint8Array.from(randomBytes(n));

/** Low-order points of Curve25519 (and non-canonical encodings of them): X25519 with any of them is all zero. */
const LOW_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
  "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
].map((h) => Uint8Array.from(Buffer.from(h, "hex")));

describe("node/onionNative: OpenSSL primitives give the onion layer the same bytes as @noble", () => {
  it("HKDF, HMAC and ChaCha20 equal @noble's for random keys, inputs and lengths", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ maxLength: BODY_BYTES + HEADER_BYTES }),
        fc.uint8Array({ maxLength: 80 }),
        fc.integer({ min: 1, max: 255 }),
        (key, data, salt, length) => {
          const n = NATIVE_ONION_SYMMETRIC;
          const j = NOBLE_ONION_SYMMETRIC;
          expect(hex(n.chacha20(key, data))).to.equal(hex(j.chacha20(key, data)));
          expect(hex(n.hmacSha256(key, data))).to.equal(hex(j.hmacSha256(key, data)));
          expect(hex(n.hkdfSha256(key, salt, data.subarray(0, 64), length))).to.equal(
            hex(j.hkdfSha256(key, salt, data.subarray(0, 64), length)),
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it("ChaCha20 is the RFC 8439 keystream with nonce 0 from block 0, and leaves its input alone", () => {
    // RFC 8439 section 2.3.2 style check against the block function run by @noble, over several blocks.
    const key = bytes(32);
    const zeros = new Uint8Array(200);
    const stream = NATIVE_ONION_SYMMETRIC.chacha20(key, zeros);
    expect(zeros.every((b) => b === 0)).to.equal(true);
    expect(stream.length).to.equal(200);
    expect(hex(stream)).to.equal(hex(NOBLE_ONION_SYMMETRIC.chacha20(key, new Uint8Array(200))));
    expect(hex(NATIVE_ONION_SYMMETRIC.chacha20(key, stream))).to.equal(hex(zeros)); // XOR twice is the identity
  });

  it("X25519 equals @noble's and, like it, throws for a low-order or malformed public key", () => {
    for (let i = 0; i < 20; i++) {
      const secret = bytes(32);
      const peer = x25519.getPublicKey(bytes(32));
      expect(hex(nativeX25519(secret)(peer))).to.equal(hex(x25519.getSharedSecret(secret, peer)));
    }
    const dh = nativeX25519(bytes(32));
    for (const point of LOW_ORDER) {
      expect(() => x25519.getSharedSecret(bytes(32), point), hex(point)).to.throw();
      expect(() => dh(point), hex(point)).to.throw();
    }
    expect(() => dh(new Uint8Array(31))).to.throw(RangeError);
    expect(() => nativeX25519(new Uint8Array(33))).to.throw(RangeError);
  });

  it("peels packets wrapped by the SDK exactly as @noble's peel does, and refuses what it refuses", () => {
    const secrets = [bytes(32), bytes(32), bytes(32)];
    const route = secrets.map((s, i) => ({
      peerId: new Uint8Array(38).fill(i + 1),
      relayPublicKey: x25519.getPublicKey(s),
    }));
    const options = (s: Uint8Array): PeelOptions => ({
      relayPublicKey: x25519.getPublicKey(s),
      sharedSecret: nativeX25519(s),
      symmetric: NATIVE_ONION_SYMMETRIC,
    });
    const payload = bytes(700);
    let packet = wrapPacket(route, new Uint8Array(20).fill(9), payload);
    for (let i = 0; i < 3; i++) {
      const native = peel(packet, secrets[i], options(secrets[i]));
      const noble = peel(packet, secrets[i]);
      expect(native).to.deep.equal(noble);
      if (i < 2) {
        if (!("forward" in native)) throw new Error("expected a forward");
        expect(hex(native.forward)).to.equal(hex(route[i + 1].peerId));
        packet = native.packet;
      } else {
        if (!("deliver" in native)) throw new Error("expected a delivery");
        expect(hex(native.payload)).to.equal(hex(payload));
        // A copy, not a view into the peel's 4 KB working buffer.
        expect(native.payload.buffer.byteLength).to.equal(payload.length);
        expect(Buffer.isBuffer(native.payload)).to.equal(false);
      }
    }
    const tampered = wrapPacket(route.slice(0, 2), new Uint8Array(20).fill(9), payload);
    tampered[PACKET_BYTES - 1] ^= 1;
    const error = (() => {
      try {
        peel(tampered, secrets[0], options(secrets[0]));
      } catch (e) {
        return e;
      }
    })();
    expect(error).to.be.instanceOf(OnionError);
    expect((error as OnionError).code).to.equal("ONION_BAD_MAC");
    const lowOrder = new Uint8Array(PACKET_BYTES); // an all-zero ephemeral key
    expect(() => peel(lowOrder, secrets[0], options(secrets[0]))).to.throw(OnionError, /low order/);
  });
});
