import { expect } from "chai";
import { id } from "ethers";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import path from "node:path";
import { signMessage, verifySignature } from "@zk-kit/eddsa-poseidon";
import { poseidon5 } from "poseidon-lite";
import {
  BABY_JUBJUB_SUBORDER,
  BILL_DOMAIN,
  BillFormatError,
  MAX_BYTE_COUNT,
  MAX_EPOCH,
  MAX_MESSAGE_COUNT,
  MAX_NODE_ID,
  SIGNED_BILL_LENGTH,
  SNARK_SCALAR_FIELD,
  addressFromNodeId,
  billKeyOf,
  billMessageHash,
  creditedWork,
  decodeSignedBill,
  encodeSignedBill,
  nodeIdFromAddress,
  recipientKeyHash,
  signBill,
  verifyBill,
  type BabyJubjubPoint,
  type Bill,
  type SignedBill,
} from "../../sdk/bill/bill";

interface PointJson {
  x: string;
  y: string;
}
interface BillVector {
  privateKey: string;
  billKey: PointJson;
  recipientKeyHash: string;
  bill: { nodeId: string; epoch: string; messageCount: string; byteCount: string };
  messageHash: string;
  signature: { R8: PointJson; S: string };
  encoded: string;
}
interface BillVectors {
  billDomain: { preimage: string; value: string };
  circomlibjs: { privateKey: string; publicKey: PointJson; message: string; signature: { R8: PointJson; S: string } };
  vectors: BillVector[];
}

const VECTORS = JSON.parse(readFileSync(path.join(__dirname, "..", "vectors", "bills.json"), "utf8")) as BillVectors;

const bytesOf = (hex: string) => Uint8Array.from(Buffer.from(hex.replace(/^0x/, ""), "hex"));
const hexOf = (bytes: Uint8Array) => "0x" + Buffer.from(bytes).toString("hex");
const pointOf = (p: PointJson): BabyJubjubPoint => ({ x: BigInt(p.x), y: BigInt(p.y) });

/**
 * Baby Jubjub arithmetic written out here, independent of @zk-kit, so the vectors' signatures are checked against the
 * verification equation itself: S·B8 = R8 + 8·Poseidon5(R8, A, M)·A.
 */
const edwards = (() => {
  const p = SNARK_SCALAR_FIELD;
  const a = 168700n;
  const d = 168696n;
  const mod = (v: bigint) => ((v % p) + p) % p;
  const inv = (v: bigint) => {
    let result = 1n;
    let base = mod(v);
    for (let e = p - 2n; e > 0n; e >>= 1n) {
      if (e & 1n) result = (result * base) % p;
      base = (base * base) % p;
    }
    return result;
  };
  const add = (P: BabyJubjubPoint, Q: BabyJubjubPoint): BabyJubjubPoint => {
    const t = mod(d * P.x * Q.x * P.y * Q.y);
    return {
      x: mod((P.x * Q.y + P.y * Q.x) * inv(1n + t)),
      y: mod((P.y * Q.y - a * P.x * Q.x) * inv(1n - t)),
    };
  };
  const mul = (P: BabyJubjubPoint, k: bigint): BabyJubjubPoint => {
    let result = { x: 0n, y: 1n };
    let base = P;
    for (let e = k; e > 0n; e >>= 1n) {
      if (e & 1n) result = add(result, base);
      base = add(base, base);
    }
    return result;
  };
  const B8 = {
    x: 5299619240641551281634865583518297030282874472190772894086521144482721001553n,
    y: 16950150798460657717958625567821834550301663161624707787222815936182638968203n,
  };
  return {
    onCurve: (P: BabyJubjubPoint) => mod(a * P.x * P.x + P.y * P.y) === mod(1n + d * P.x * P.x * P.y * P.y),
    verify(M: bigint, A: BabyJubjubPoint, R8: BabyJubjubPoint, S: bigint): boolean {
      const h = poseidon5([R8.x, R8.y, A.x, A.y, M]);
      const left = mul(B8, S);
      const right = add(R8, mul(A, 8n * h));
      return left.x === right.x && left.y === right.y;
    },
  };
})();

function billOf(v: BillVector): Bill {
  return {
    nodeId: BigInt(v.bill.nodeId),
    epoch: BigInt(v.bill.epoch),
    messageCount: BigInt(v.bill.messageCount),
    byteCount: BigInt(v.bill.byteCount),
  };
}

function expectFormatError(fn: () => unknown, pattern: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, "expected a BillFormatError").to.be.instanceOf(BillFormatError);
  expect((thrown as Error).message).to.match(pattern);
}

/** A few fixed keys: deriving a key costs a scalar multiplication, too slow to do per property run. */
const KEYS = Array.from({ length: 4 }, (_, i) => bytesOf(id(`bill.test key ${i}`)));

const arbitraryBill = fc.record({
  nodeId: fc.bigInt({ min: 0n, max: MAX_NODE_ID }),
  epoch: fc.bigInt({ min: 0n, max: MAX_EPOCH }),
  messageCount: fc.bigInt({ min: 0n, max: MAX_MESSAGE_COUNT }),
  byteCount: fc.bigInt({ min: 0n, max: MAX_BYTE_COUNT }),
});

describe("sdk/bill", () => {
  const sample: SignedBill = signBill(KEYS[0], { nodeId: 0xbeefn, epoch: 7n, messageCount: 12n, byteCount: 3400n });
  const sampleBytes = encodeSignedBill(sample);

  describe("BILL_DOMAIN", () => {
    it("is keccak256('sending-network.bill.v1') reduced into the BN254 scalar field", () => {
      expect(VECTORS.billDomain.preimage).to.equal("sending-network.bill.v1");
      expect(BILL_DOMAIN).to.equal(BigInt(id(VECTORS.billDomain.preimage)) % SNARK_SCALAR_FIELD);
      expect(BILL_DOMAIN.toString()).to.equal(VECTORS.billDomain.value);
    });

    it("is the constant circuits/bill_message.circom hashes (the circuit test checks the hash itself)", () => {
      const source = readFileSync(path.join(__dirname, "..", "..", "circuits", "bill_message.circom"), "utf8");
      expect(source).to.match(new RegExp(`var BILL_DOMAIN = ${BILL_DOMAIN};`));
    });
  });

  describe("known answers", () => {
    it("derives circomlibjs's public key and signature for its test key (compatibility with circomlib)", () => {
      const external = VECTORS.circomlibjs;
      const privateKey = bytesOf(external.privateKey);
      expect(billKeyOf(privateKey)).to.deep.equal(pointOf(external.publicKey));
      const { R8, S } = signMessage(privateKey, BigInt(external.message));
      expect({ R8: { x: R8[0], y: R8[1] }, S }).to.deep.equal({
        R8: pointOf(external.signature.R8),
        S: BigInt(external.signature.S),
      });
      expect(
        edwards.verify(BigInt(external.message), pointOf(external.publicKey), pointOf(external.signature.R8), S),
      ).to.equal(true);
    });

    for (const [i, vector] of VECTORS.vectors.entries()) {
      it(`vector ${i}: key, key hash, message hash, signature and wire form`, () => {
        const privateKey = bytesOf(vector.privateKey);
        const bill = billOf(vector);
        const billKey = pointOf(vector.billKey);

        expect(billKeyOf(privateKey)).to.deep.equal(billKey);
        expect(edwards.onCurve(billKey)).to.equal(true);
        expect(recipientKeyHash(billKey).toString()).to.equal(vector.recipientKeyHash);
        expect(billMessageHash(bill).toString()).to.equal(vector.messageHash);

        const signed = signBill(privateKey, bill);
        expect(signed).to.deep.equal({
          bill,
          billKey,
          signature: { R8: pointOf(vector.signature.R8), S: BigInt(vector.signature.S) },
        });
        expect(edwards.verify(BigInt(vector.messageHash), billKey, signed.signature.R8, signed.signature.S)).to.equal(
          true,
        );
        expect(verifyBill(signed)).to.equal(true);

        expect(hexOf(encodeSignedBill(signed))).to.equal(vector.encoded);
        expect(decodeSignedBill(bytesOf(vector.encoded))).to.deep.equal(signed);
      });
    }
  });

  describe("signBill / verifyBill", () => {
    it("round-trips random bills through sign, encode, decode and verify", () => {
      fc.assert(
        fc.property(arbitraryBill, fc.nat({ max: KEYS.length - 1 }), (bill, k) => {
          const signed = signBill(KEYS[k], bill);
          const bytes = encodeSignedBill(signed);
          expect(bytes.length).to.equal(SIGNED_BILL_LENGTH);
          const decoded = decodeSignedBill(bytes);
          expect(decoded).to.deep.equal(signed);
          expect(verifyBill(decoded)).to.equal(true);
        }),
        { numRuns: 40 },
      );
    });

    it("rejects a signature over any other bill, by any other key, or with a changed S or R8", () => {
      const { bill, billKey, signature } = sample;
      const other = signBill(KEYS[1], bill);
      const variants: SignedBill[] = [
        { ...sample, bill: { ...bill, messageCount: bill.messageCount + 1n } },
        { ...sample, bill: { ...bill, byteCount: bill.byteCount + 1n } },
        { ...sample, bill: { ...bill, epoch: bill.epoch + 1n } },
        { ...sample, bill: { ...bill, nodeId: bill.nodeId + 1n } },
        { ...sample, billKey: other.billKey },
        { ...sample, signature: other.signature },
        { ...sample, signature: { ...signature, S: signature.S + 1n } },
        // S and S + subgroup order give the same S·B8: only the reduced S is accepted, as in the circuit.
        { ...sample, signature: { ...signature, S: signature.S + BABY_JUBJUB_SUBORDER } },
        { ...sample, signature: { ...signature, R8: { x: signature.R8.x, y: signature.R8.y + 1n } } },
        { ...sample, billKey: { x: billKey.x, y: billKey.y + 1n } },
      ];
      for (const variant of variants) expect(verifyBill(variant)).to.equal(false);
    });

    it("rejects a small-order bill key, with which S·B8 = R8 would verify for anyone", () => {
      // The identity (0, 1): 8·A is the identity, so h·8·A vanishes and (R8, S) = (B8, 1) "verifies".
      const forged: SignedBill = {
        bill: sample.bill,
        billKey: { x: 0n, y: 1n },
        signature: {
          R8: {
            x: 5299619240641551281634865583518297030282874472190772894086521144482721001553n,
            y: 16950150798460657717958625567821834550301663161624707787222815936182638968203n,
          },
          S: 1n,
        },
      };
      expect(
        verifySignature(billMessageHash(forged.bill), { R8: [forged.signature.R8.x, forged.signature.R8.y], S: 1n }, [
          0n,
          1n,
        ]),
      ).to.equal(true); // the library alone accepts it
      expect(verifyBill(forged)).to.equal(false);
    });

    it("refuses fields outside the circuit's bounds with a BillFormatError naming the field", () => {
      const bill = sample.bill;
      const cases: [Bill, RegExp][] = [
        [
          { ...bill, messageCount: MAX_MESSAGE_COUNT + 1n },
          /signBill: expected messageCount to be a bigint in \[0, 4294967295\], got 4294967296n/,
        ],
        [{ ...bill, byteCount: MAX_BYTE_COUNT + 1n }, /signBill: expected byteCount .* got 281474976710656n/],
        [{ ...bill, epoch: MAX_EPOCH + 1n }, /signBill: expected epoch/],
        [{ ...bill, nodeId: MAX_NODE_ID + 1n }, /signBill: expected nodeId/],
        [{ ...bill, messageCount: -1n }, /signBill: expected messageCount .* got -1n/],
        [{ ...bill, messageCount: 5 as unknown as bigint }, /signBill: expected messageCount .* got number 5/],
      ];
      for (const [badBill, pattern] of cases) expectFormatError(() => signBill(KEYS[0], badBill), pattern);
      expectFormatError(
        () => billMessageHash({ ...bill, byteCount: MAX_BYTE_COUNT + 1n }),
        /^billMessageHash: expected byteCount/,
      );
      expectFormatError(
        () => verifyBill({ ...sample, bill: { ...bill, messageCount: MAX_MESSAGE_COUNT + 1n } }),
        /^verifyBill: expected messageCount/,
      );
      expectFormatError(
        () => verifyBill({ ...sample, billKey: { x: SNARK_SCALAR_FIELD, y: 1n } }),
        /^verifyBill: expected billKey.x to be a bigint in \[0, /,
      );
    });

    it("refuses a bill private key that is not 32 bytes", () => {
      expectFormatError(
        () => signBill(new Uint8Array(31), sample.bill),
        /^signBill: expected a 32-byte bill private key, got 31 bytes$/,
      );
      expectFormatError(
        () => billKeyOf("0x01" as unknown as Uint8Array),
        /^billKeyOf: expected a 32-byte bill private key, got '0x01'$/,
      );
    });
  });

  describe("creditedWork", () => {
    it("is min(messageCount, cap)", () => {
      fc.assert(
        fc.property(arbitraryBill, fc.bigInt({ min: 0n, max: MAX_MESSAGE_COUNT }), (bill, cap) => {
          const credited = creditedWork(bill, cap);
          expect(credited).to.equal(bill.messageCount < cap ? bill.messageCount : cap);
          expect(credited <= cap && credited <= bill.messageCount).to.equal(true);
        }),
      );
      expect(creditedWork({ ...sample.bill, messageCount: 999n }, 1000n)).to.equal(999n);
      expect(creditedWork({ ...sample.bill, messageCount: 1000n }, 1000n)).to.equal(1000n);
      expect(creditedWork({ ...sample.bill, messageCount: 1001n }, 1000n)).to.equal(1000n);
      expectFormatError(() => creditedWork(sample.bill, -1n), /^creditedWork: expected cap/);
    });
  });

  describe("decodeSignedBill", () => {
    const withBytes = (offset: number, bytes: number[] | Uint8Array) => {
      const copy = Uint8Array.from(sampleBytes);
      copy.set(bytes, offset);
      return copy;
    };
    const littleEndian = (v: bigint) => Uint8Array.from(Buffer.from(v.toString(16).padStart(64, "0"), "hex").reverse());

    it("refuses anything but exactly 135 bytes", () => {
      expectFormatError(
        () => decodeSignedBill(sampleBytes.subarray(0, 134)),
        /^decodeSignedBill: expected 135 bytes, got 134$/,
      );
      expectFormatError(() => decodeSignedBill(new Uint8Array(136)), /^decodeSignedBill: expected 135 bytes, got 136$/);
      expectFormatError(() => decodeSignedBill(new Uint8Array(0)), /expected 135 bytes, got 0/);
      expectFormatError(
        () => decodeSignedBill(hexOf(sampleBytes) as unknown as Uint8Array),
        /^decodeSignedBill: expected a Uint8Array, got '0x01/,
      );
    });

    it("refuses an unknown version", () => {
      expectFormatError(() => decodeSignedBill(withBytes(0, [0])), /^decodeSignedBill: expected version 1, got 0$/);
      expectFormatError(() => decodeSignedBill(withBytes(0, [2])), /expected version 1, got 2/);
    });

    it("refuses a bill key or R8 that is not a point of Baby Jubjub", () => {
      // y = 2 has no x on the curve: (1 - 4) / (a - 4d) is not a square.
      const offCurve = littleEndian(2n);
      expectFormatError(
        () => decodeSignedBill(withBytes(39, offCurve)),
        /^decodeSignedBill: expected bill key to be a packed Baby Jubjub point/,
      );
      expectFormatError(
        () => decodeSignedBill(withBytes(71, offCurve)),
        /^decodeSignedBill: expected R8 to be a packed Baby Jubjub point/,
      );
    });

    it("refuses non-canonical point encodings", () => {
      // The identity (0, 1) packs as y = 1; with the sign bit set it unpacks to the same point (x = -0), and y = p
      // unpacks like y = 0: neither is the encoding packPoint writes.
      const identity = littleEndian(1n);
      expect(decodeSignedBill(withBytes(39, identity)).billKey).to.deep.equal({ x: 0n, y: 1n });
      const signedZero = Uint8Array.from(identity);
      signedZero[31] |= 0x80;
      expectFormatError(
        () => decodeSignedBill(withBytes(39, signedZero)),
        /expected bill key in canonical packed form/,
      );
      expectFormatError(
        () => decodeSignedBill(withBytes(71, littleEndian(SNARK_SCALAR_FIELD))),
        /expected R8 (in canonical packed form|to be a packed)/,
      );
    });

    it("refuses S at or above the subgroup order", () => {
      expectFormatError(
        () => decodeSignedBill(withBytes(103, littleEndian(BABY_JUBJUB_SUBORDER))),
        /^decodeSignedBill: expected S < the Baby Jubjub subgroup order/,
      );
      expect(decodeSignedBill(withBytes(103, littleEndian(BABY_JUBJUB_SUBORDER - 1n))).signature.S).to.equal(
        BABY_JUBJUB_SUBORDER - 1n,
      );
    });

    it("either refuses a corrupted encoding or reads one that re-encodes to the same bytes", () => {
      fc.assert(
        fc.property(fc.nat({ max: SIGNED_BILL_LENGTH - 1 }), fc.integer({ min: 1, max: 255 }), (offset, flip) => {
          const corrupted = Uint8Array.from(sampleBytes);
          corrupted[offset] ^= flip;
          let decoded: SignedBill;
          try {
            decoded = decodeSignedBill(corrupted);
          } catch (error) {
            expect(error).to.be.instanceOf(BillFormatError);
            return;
          }
          expect(hexOf(encodeSignedBill(decoded))).to.equal(hexOf(corrupted));
          expect(verifyBill(decoded)).to.equal(false);
        }),
        { numRuns: 100 },
      );
    });
  });

  describe("node ids", () => {
    it("reads an operator address as a uint160 and back", () => {
      const address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
      const nodeId = nodeIdFromAddress(address);
      expect(nodeId).to.equal(0x70997970c51812dc3a010c7d01b50e0d17dc79c8n);
      expect(addressFromNodeId(nodeId)).to.equal(address.toLowerCase());
      expect(addressFromNodeId(0n)).to.equal("0x" + "0".repeat(40));
      expectFormatError(
        () => nodeIdFromAddress("0x1234"),
        /^nodeIdFromAddress: expected a 20-byte 0x-prefixed hex address, got '0x1234'$/,
      );
      expectFormatError(() => addressFromNodeId(MAX_NODE_ID + 1n), /^addressFromNodeId: expected nodeId/);
    });
  });
});
