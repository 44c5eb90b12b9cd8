import { expect } from "chai";
import { x25519 } from "@noble/curves/ed25519.js";
import { randomBytes } from "node:crypto";
import { MAX_PAYLOAD_BYTES, PACKET_BYTES, peel, wrapPacket } from "../../sdk/wire/onion";

describe("smoke", () => {
  it("round-trips", () => {
    const hops = [1, 2, 3].map((i) => {
      const sk = Uint8Array.from(randomBytes(32));
      return { sk, hop: { peerId: Uint8Array.of(i, i, i), relayPublicKey: x25519.getPublicKey(sk) } };
    });
    const payload = Uint8Array.from(randomBytes(MAX_PAYLOAD_BYTES));
    const p = wrapPacket(hops.map((h) => h.hop), Uint8Array.of(9, 9), payload);
    expect(p.length).to.equal(PACKET_BYTES);
    const a = peel(p, hops[0].sk);
    if (!("forward" in a)) throw new Error("x");
    const b = peel(a.packet, hops[1].sk);
    if (!("forward" in b)) throw new Error("y");
    const c = peel(b.packet, hops[2].sk);
    if (!("deliver" in c)) throw new Error("z");
    expect(c.payload).to.deep.equal(payload);
  });
});
