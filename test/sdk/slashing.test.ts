import { expect } from "chai";
import { AbiCoder, Wallet, concat, id, keccak256, recoverAddress, toUtf8Bytes, zeroPadValue } from "ethers";
import fc from "fast-check";
import {
  SLASHING_DOMAIN_NAME,
  SLASHING_DOMAIN_VERSION,
  STATEMENT_KINDS,
  messageHash,
  parseStatement,
  parseStorePromise,
  promiseId,
  recoverAckSigner,
  recoverStatementSigner,
  recoverStorePromiseSigner,
  signAck,
  signStatement,
  signStorePromise,
  slashingDomain,
  statementSlot,
  statementTag,
} from "../../sdk/chain/slashing";

/** A fixed key, so that the signatures below are the same on every run (ECDSA in ethers is deterministic). */
const NODE_KEY = "0x" + "11".repeat(32);
const RECIPIENT_KEY = "0x" + "22".repeat(32);
const CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
const abi = AbiCoder.defaultAbiCoder();

/** EIP-712 written out by hand, independently of ethers' TypedDataEncoder: the digest the contract recomputes. */
function digest(chainId: bigint, verifyingContract: string, typeString: string, types: string[], values: unknown[]) {
  const domainSeparator = keccak256(
    abi.encode(
      ["bytes32", "bytes32", "bytes32", "uint256", "address"],
      [
        id("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
        id("SendingNetwork"),
        id("1"),
        chainId,
        verifyingContract,
      ],
    ),
  );
  const structHash = keccak256(abi.encode(["bytes32", ...types], [id(typeString), ...values]));
  return keccak256(concat(["0x1901", domainSeparator, structHash]));
}

describe("sdk/chain/slashing", () => {
  const node = new Wallet(NODE_KEY);
  const recipient = new Wallet(RECIPIENT_KEY);
  const domain = slashingDomain(31337, CONTRACT.toLowerCase());
  const promise = {
    messageHash: messageHash(toUtf8Bytes("sealed envelope")),
    recipient: recipient.address,
    expiry: 1_800_000_000n,
  };

  it("names the domain once: SendingNetwork, version 1, checksummed verifying contract", () => {
    expect(domain).to.deep.equal({
      name: SLASHING_DOMAIN_NAME,
      version: SLASHING_DOMAIN_VERSION,
      chainId: 31337n,
      verifyingContract: CONTRACT,
    });
    expect([SLASHING_DOMAIN_NAME, SLASHING_DOMAIN_VERSION]).to.deep.equal(["SendingNetwork", "1"]);
  });

  it("signs a store promise over the EIP-712 digest the contract computes", async () => {
    const signature = await signStorePromise(node, domain, promise);
    const expected = digest(
      31337n,
      CONTRACT,
      "StorePromise(bytes32 messageHash,address recipient,uint64 expiry)",
      ["bytes32", "address", "uint64"],
      [promise.messageHash, promise.recipient, promise.expiry],
    );
    expect(recoverAddress(expected, signature)).to.equal(node.address);
    expect(recoverStorePromiseSigner(domain, promise, signature)).to.equal(node.address);
    // Another chain, another contract: another digest.
    expect(recoverStorePromiseSigner(slashingDomain(1, CONTRACT), promise, signature)).to.not.equal(node.address);
  });

  it("signs an acknowledgement and a statement over their EIP-712 digests", async () => {
    const ack = { messageHash: promise.messageHash, node: node.address };
    const ackSignature = await signAck(recipient, domain, ack);
    expect(
      recoverAddress(
        digest(
          31337n,
          CONTRACT,
          "Ack(bytes32 messageHash,address node)",
          ["bytes32", "address"],
          [ack.messageHash, ack.node],
        ),
        ackSignature,
      ),
    ).to.equal(recipient.address);
    expect(recoverAckSigner(domain, ack, ackSignature)).to.equal(recipient.address);

    const statement = { epoch: 42n, slot: statementSlot("bill", id("recipient key hash")), content: id("bill hash") };
    const statementSignature = await signStatement(node, domain, statement);
    expect(
      recoverAddress(
        digest(
          31337n,
          CONTRACT,
          "Statement(uint64 epoch,bytes32 slot,bytes32 content)",
          ["uint64", "bytes32", "bytes32"],
          [statement.epoch, statement.slot, statement.content],
        ),
        statementSignature,
      ),
    ).to.equal(node.address);
    expect(recoverStatementSigner(domain, statement, statementSignature)).to.equal(node.address);
  });

  it("computes the contract's challenge id: keccak256(abi.encode(node, messageHash, recipient, expiry))", () => {
    expect(promiseId(node.address.toLowerCase(), promise)).to.equal(
      keccak256(
        abi.encode(
          ["address", "bytes32", "address", "uint64"],
          [node.address, promise.messageHash, promise.recipient, promise.expiry],
        ),
      ),
    );
  });

  it("derives statement slots under a tag per kind, so kinds never share a slot", () => {
    expect(statementTag("bill")).to.equal(id("SendingNetwork.statement.bill"));
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
        const key = zeroPadValue(bytes, 32);
        const slots = STATEMENT_KINDS.map((kind) => statementSlot(kind, key));
        expect(new Set(slots).size).to.equal(STATEMENT_KINDS.length);
        expect(slots[0]).to.equal(keccak256(abi.encode(["bytes32", "bytes32"], [statementTag("bill"), key])));
      }),
    );
  });

  it("refuses malformed input, naming the function and what it expected", async () => {
    expect(() => parseStorePromise({ ...promise, messageHash: "0x1234" })).to.throw(
      "parseStorePromise: expected messageHash to be 32 bytes of hex, got '0x1234'",
    );
    expect(() => parseStorePromise({ ...promise, expiry: 2n ** 64n })).to.throw(
      "parseStorePromise: expected expiry to fit in uint64",
    );
    expect(() => parseStorePromise({ ...promise, expiry: -1n })).to.throw(
      "parseStorePromise: expected expiry to fit in uint64",
    );
    expect(() => parseStorePromise({ ...promise, recipient: "0xnot-an-address" })).to.throw();
    expect(() => parseStatement({ epoch: 2n ** 64n, slot: id("s"), content: id("c") })).to.throw(
      "parseStatement: expected epoch to fit in uint64",
    );
    expect(() => statementSlot("bill", "0x00")).to.throw(
      "statementSlot: expected key to be 32 bytes of hex, got '0x00'",
    );
    expect(() => statementTag("score" as "bill")).to.throw(
      "statementTag: expected one of bill, inboxHead, got 'score'",
    );
    let rejected = false;
    await signStatement(node, domain, { epoch: 1n, slot: "0x", content: id("c") }).catch(() => (rejected = true));
    expect(rejected).to.equal(true);
  });
});
