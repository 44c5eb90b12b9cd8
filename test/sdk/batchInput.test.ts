/**
 * The order-key model of sdk/bill/batchInput.ts on its own: orderKey and the slot ordering buildRelayBatch applies
 * (sortByOrderKey). The circuit is checked against this model in test/circuits/relayBatch.test.ts.
 */
import { expect } from "chai";
import fc from "fast-check";
import { SNARK_SCALAR_FIELD } from "../../sdk/bill/bill";
import { BatchInputError, ORDER_KEY_LIMIT, orderKey, sortByOrderKey } from "../../sdk/bill/batchInput";

const p = SNARK_SCALAR_FIELD;
const BLOCK = 2n ** 54n; // key hashes per order key

describe("sdk/bill/batchInput: order keys", () => {
  describe("orderKey", () => {
    it("is the top 200 bits of a 254-bit key hash: floor(keyHash / 2^54)", () => {
      expect(ORDER_KEY_LIMIT).to.equal(2n ** 200n);
      const cases: [bigint, bigint][] = [
        [0n, 0n],
        [BLOCK - 1n, 0n],
        [BLOCK, 1n],
        [5n * BLOCK + 17n, 5n],
        [2n ** 253n, 2n ** 199n],
        [p - 1n, (p - 1n) / BLOCK],
      ];
      for (const [keyHash, key] of cases) expect(orderKey(keyHash), `orderKey(${keyHash})`).to.equal(key);
      expect(orderKey(p - 1n)).to.be.below(ORDER_KEY_LIMIT);
      expect(orderKey(p - 1n)).to.be.above(ORDER_KEY_LIMIT / 2n); // p > 2^253: all 200 bits are used
    });

    it("keeps the order of key hashes, and blocks of 2^54 key hashes share one", () => {
      const field = fc.bigInt({ min: 0n, max: p - 1n });
      fc.assert(
        fc.property(field, field, (x, y) => {
          const [kx, ky] = [orderKey(x), orderKey(y)];
          expect(kx * BLOCK <= x && x < (kx + 1n) * BLOCK).to.equal(true);
          if (x <= y) expect(kx <= ky).to.equal(true);
          expect(kx === ky).to.equal(x / BLOCK === y / BLOCK);
        }),
      );
    });

    it("refuses what is not a field element", () => {
      for (const value of [-1n, p, p + 1n, 2n ** 254n]) {
        expect(() => orderKey(value), String(value)).to.throw(BatchInputError, /orderKey: expected a field element/);
      }
    });
  });

  describe("sortByOrderKey", () => {
    const at = (key: bigint, low = 0n) => ({ keyHash: key * BLOCK + low });

    it("sorts by order key and returns each bill's key", () => {
      const bills = [at(9n, 5n), at(3n, BLOCK - 1n), at(4n)];
      expect(sortByOrderKey("slot 0", 2n, bills)).to.deep.equal([
        { ...bills[1], key: 3n },
        { ...bills[2], key: 4n },
        { ...bills[0], key: 9n },
      ]);
      expect(sortByOrderKey("slot 0", 0n, [])).to.deep.equal([]);
    });

    it("refuses an order key at or below prevBound, naming the bill", () => {
      expect(() => sortByOrderKey("slot 1", 4n, [at(7n), at(4n, BLOCK - 1n)])).to.throw(
        BatchInputError,
        /^slot 1, bill 1: expected an order key above prevBound 4, got 4 \(key hash \d+\)$/,
      );
      expect(() => sortByOrderKey("slot 1", 4n, [at(3n)])).to.throw(BatchInputError, /slot 1, bill 0: .* got 3/);
      expect(sortByOrderKey("slot 1", 4n, [at(5n)])).to.have.length(1);
    });

    it("refuses the same recipient twice", () => {
      expect(() => sortByOrderKey("slot 0", 0n, [at(8n, 1n), at(2n), at(8n, 1n)])).to.throw(
        BatchInputError,
        /^slot 0: expected one bill per recipient, got bills 0 and 2 from key hash \d+$/,
      );
    });

    it("refuses two recipients whose key hashes share an order key (their top 200 bits)", () => {
      // No such pair of real recipients is known (about 2^-100 a pair): key hashes in one block of 2^54 stand in.
      // RelaySlot could take only one of them per node and epoch: the second's order key is not above the first's.
      const top = orderKey(p - 1n);
      const [a, b] = [at(top, 12345n), at(top, 0n)];
      expect(a.keyHash).to.be.below(p);
      expect(() => sortByOrderKey("slot 0", 0n, [a, at(1n), b])).to.throw(
        BatchInputError,
        new RegExp(
          `^slot 0: expected distinct order keys, got bills 0 and 2 whose key hashes ${a.keyHash} and ${b.keyHash} ` +
            `share order key ${top}$`,
        ),
      );
      // One key hash apart across a block boundary: distinct order keys.
      expect(sortByOrderKey("slot 0", 0n, [at(8n), at(7n, BLOCK - 1n)]).map(({ key }) => key)).to.deep.equal([7n, 8n]);
    });
  });
});
