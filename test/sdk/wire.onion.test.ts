import { expect } from "chai";
import fc from "fast-check";
import { x25519 } from "@noble/curves/ed25519.js";
import { randomBytes } from "node:crypto";
import {
  BODY_BYTES,
  HEADER_BYTES,
  MAX_PAYLOAD_BYTES,
  OnionError,
  PACKET_BYTES,
  peel,
  wrapPacket,
  type Hop,
  type PeelResult,
} from "../../sdk/wire/onion";

interface Node {
  readonly secretKey: Uint8Array;
  readonly hop: Hop;
}

const bytes = (n: number) => Uint8Array.from(randomBytes(n));
const node = (tag: number): Node => {
  const secretKey = bytes(32);
  // A 38-byte id shaped like an Ed25519 peer id multihash, marked by `tag`.
  return { secretKey, hop: { peerId: new Uint8Array(38).fill(tag), relayPublicKey: x25519.getPublicKey(secretKey) } };
};
const RECIPIENT = new Uint8Array(32).fill(0xee);

function forwarded(result: PeelResult): { forward: Uint8Array; packet: Uint8Array } {
  if (!("forward" in result)) throw new Error("expected a forward result");
  return result;
}
function delivered(result: PeelResult): { deliver: Uint8Array; payload: Uint8Array } {
  if (!("deliver" in result)) throw new Error("expected a deliver result");
  return result;
}
function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(haystack).indexOf(Buffer.from(needle)) !== -1;
}
function expectOnionError(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(OnionError);
    expect((e as OnionError).code).to.equal(code);
    return;
  }
  expect.fail(`expected OnionError ${code}`);
}

describe("sdk/wire onion: layered fixed-size packets", () => {
  const [entry, middle, exit] = [node(0xa1), node(0xa2), node(0xa3)];
  const route3 = [entry.hop, middle.hop, exit.hop];

  it("keeps the arithmetic of the layout: payload room is the body less three headers", () => {
    expect(BODY_BYTES).to.equal(PACKET_BYTES - 48);
    expect(MAX_PAYLOAD_BYTES).to.equal(BODY_BYTES - 3 * HEADER_BYTES);
  });

  for (const hops of [2, 3]) {
    it(`delivers payloads of 0, 1, and MAX_PAYLOAD_BYTES bytes through ${hops} hops, every packet PACKET_BYTES`, () => {
      const route = hops === 2 ? [entry.hop, exit.hop] : route3;
      const keys = hops === 2 ? [entry.secretKey, exit.secretKey] : [entry.secretKey, middle.secretKey, exit.secretKey];
      for (const size of [0, 1, 200, MAX_PAYLOAD_BYTES]) {
        const payload = bytes(size);
        let packet = wrapPacket(route, RECIPIENT, payload);
        for (let i = 0; i < hops - 1; i++) {
          expect(packet.length).to.equal(PACKET_BYTES);
          const step = forwarded(peel(packet, keys[i]));
          expect(step.forward).to.deep.equal(route[i + 1].peerId);
          packet = step.packet;
        }
        expect(packet.length).to.equal(PACKET_BYTES);
        const end = delivered(peel(packet, keys[hops - 1]));
        expect(end.deliver).to.deep.equal(RECIPIENT);
        expect(end.payload).to.deep.equal(payload);
      }
    });
  }

  it("tells the entry hop the next hop only: neither the recipient nor the payload appears in what it holds", () => {
    const payload = new TextEncoder().encode("meet at the usual place ".repeat(8));
    const packet = wrapPacket(route3, RECIPIENT, payload);
    const step = forwarded(peel(packet, entry.secretKey));
    expect(step.forward).to.deep.equal(middle.hop.peerId);
    expect(Object.keys(step).sort()).to.deep.equal(["forward", "packet"]);
    for (const seen of [packet, step.packet]) {
      expect(contains(seen, RECIPIENT)).to.equal(false);
      expect(contains(seen, exit.hop.peerId)).to.equal(false);
      expect(contains(seen, payload.subarray(0, 16))).to.equal(false);
    }
  });

  it("tells an intermediate hop only its neighbours, and its output shares no run of bytes with its input", () => {
    const packet = wrapPacket(route3, RECIPIENT, bytes(100));
    const atMiddle = forwarded(peel(packet, entry.secretKey)).packet;
    const step = forwarded(peel(atMiddle, middle.secretKey));
    expect(step.forward).to.deep.equal(exit.hop.peerId);
    expect(contains(step.packet, RECIPIENT)).to.equal(false);
    expect(contains(atMiddle, RECIPIENT)).to.equal(false);
    // Unlinkable by content: no 16-byte window of the incoming packet survives into the outgoing one.
    for (let i = 0; i + 16 <= PACKET_BYTES; i += 256) {
      expect(contains(step.packet, atMiddle.subarray(i, i + 16))).to.equal(false);
    }
  });

  it("tells the exit hop the recipient and payload but nothing of the sender or the earlier hops", () => {
    const payload = bytes(64);
    const packet = wrapPacket(route3, RECIPIENT, payload);
    const atExit = forwarded(peel(forwarded(peel(packet, entry.secretKey)).packet, middle.secretKey)).packet;
    const end = delivered(peel(atExit, exit.secretKey));
    expect(Object.keys(end).sort()).to.deep.equal(["deliver", "payload"]);
    expect(end.deliver).to.deep.equal(RECIPIENT);
    expect(contains(atExit, entry.hop.peerId)).to.equal(false);
    expect(contains(atExit, middle.hop.peerId)).to.equal(false);
  });

  it("makes every hop refuse a packet with any one byte changed (epk, mac, header or padding)", () => {
    const packet = wrapPacket(route3, RECIPIENT, bytes(10));
    const atMiddle = forwarded(peel(packet, entry.secretKey)).packet;
    const atExit = forwarded(peel(atMiddle, middle.secretKey)).packet;
    const cases: [Uint8Array, Uint8Array][] = [
      [packet, entry.secretKey],
      [atMiddle, middle.secretKey],
      [atExit, exit.secretKey],
    ];
    for (const [p, key] of cases) {
      for (const at of [0, 31, 32, 47, 48, 200, 3000, PACKET_BYTES - 1]) {
        const tampered = p.slice();
        tampered[at] ^= 0x01;
        expectOnionError(() => peel(tampered, key), "ONION_BAD_MAC");
      }
    }
  });

  it("is refused under the wrong relay key", () => {
    const packet = wrapPacket(route3, RECIPIENT, bytes(10));
    expectOnionError(() => peel(packet, middle.secretKey), "ONION_BAD_MAC");
    expectOnionError(() => peel(packet, bytes(32)), "ONION_BAD_MAC");
  });

  it("refuses packets of any other size and a bad key length, with typed errors", () => {
    expectOnionError(() => peel(new Uint8Array(PACKET_BYTES - 1), entry.secretKey), "ONION_BAD_SIZE");
    expectOnionError(() => peel(new Uint8Array(PACKET_BYTES + 1), entry.secretKey), "ONION_BAD_SIZE");
    expectOnionError(() => peel(new Uint8Array(PACKET_BYTES), new Uint8Array(31)), "ONION_BAD_KEY");
    // An all-zero epk is of low order: refused, not a crash.
    expectOnionError(() => peel(new Uint8Array(PACKET_BYTES), entry.secretKey), "ONION_BAD_MAC");
  });

  it("refuses a payload one byte too large, and routes of 1 or 4 hops or with bad ids", () => {
    expectOnionError(() => wrapPacket(route3, RECIPIENT, bytes(MAX_PAYLOAD_BYTES + 1)), "ONION_PAYLOAD_TOO_LARGE");
    expectOnionError(() => wrapPacket([entry.hop], RECIPIENT, bytes(1)), "ONION_BAD_ROUTE");
    expectOnionError(() => wrapPacket([...route3, entry.hop], RECIPIENT, bytes(1)), "ONION_BAD_ROUTE");
    expectOnionError(() => wrapPacket(route3, new Uint8Array(65), bytes(1)), "ONION_BAD_ROUTE");
    expectOnionError(() => wrapPacket(route3, new Uint8Array(0), bytes(1)), "ONION_BAD_ROUTE");
    const badKey = { peerId: Uint8Array.of(1), relayPublicKey: new Uint8Array(31) };
    expectOnionError(() => wrapPacket([entry.hop, badKey], RECIPIENT, bytes(1)), "ONION_BAD_KEY");
  });

  it("fuzz: 10,000 random and mutated packets only ever raise OnionError; valid ones still deliver", function () {
    this.timeout(120_000);
    const valid = wrapPacket([entry.hop, exit.hop], RECIPIENT, bytes(50));
    const packetArb = fc.oneof(
      fc.uint8Array({ minLength: 0, maxLength: PACKET_BYTES + 8 }),
      fc.uint8Array({ minLength: PACKET_BYTES, maxLength: PACKET_BYTES }),
      fc
        .array(fc.tuple(fc.nat(PACKET_BYTES - 1), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 })
        .map((flips) => {
          const p = valid.slice();
          for (const [at, x] of flips) p[at] ^= x;
          return p;
        }),
    );
    fc.assert(
      fc.property(packetArb, (p) => {
        const untouched = Buffer.from(p).equals(Buffer.from(valid)); // two flips of one byte can cancel
        try {
          peel(p, entry.secretKey, { relayPublicKey: entry.hop.relayPublicKey });
          return untouched; // nothing but the untouched packet may peel
        } catch (e) {
          return e instanceof OnionError;
        }
      }),
      { numRuns: 10_000 },
    );
    expect(forwarded(peel(valid, entry.secretKey)).forward).to.deep.equal(exit.hop.peerId);
  });
});
