/**
 * The typed data that slashing evidence is made of (contracts/slashing/Slashing.sol): store promises an edge node
 * signs when it takes a message for an offline recipient, acknowledgements a recipient signs when it has the message,
 * and statements a node signs that must be unique per (epoch, slot). The edge node signs with these helpers, clients
 * and watchdogs check and keep what they receive, and anyone submits them to the slashing contract as evidence.
 */
import { AbiCoder, getAddress, isHexString, keccak256, toUtf8Bytes, verifyTypedData, type BytesLike } from "ethers";
import type { Signer, TypedDataDomain, TypedDataField } from "ethers";

/** EIP-712 domain name of every slashing signature. */
export const SLASHING_DOMAIN_NAME = "SendingNetwork";
/** EIP-712 domain version; a change of any type below bumps it. */
export const SLASHING_DOMAIN_VERSION = "1";

/** The EIP-712 domain of the slashing contract `verifyingContract` on chain `chainId`. */
export function slashingDomain(chainId: bigint | number, verifyingContract: string): TypedDataDomain {
  return {
    name: SLASHING_DOMAIN_NAME,
    version: SLASHING_DOMAIN_VERSION,
    chainId: BigInt(chainId),
    verifyingContract: getAddress(verifyingContract),
  };
}

/** `StorePromise(bytes32 messageHash,address recipient,uint64 expiry)`. */
export const STORE_PROMISE_TYPES: Record<string, TypedDataField[]> = {
  StorePromise: [
    { name: "messageHash", type: "bytes32" },
    { name: "recipient", type: "address" },
    { name: "expiry", type: "uint64" },
  ],
};

/** `Ack(bytes32 messageHash,address node)`: `node` is the node's operator address, as registered. */
export const ACK_TYPES: Record<string, TypedDataField[]> = {
  Ack: [
    { name: "messageHash", type: "bytes32" },
    { name: "node", type: "address" },
  ],
};

/** `Statement(uint64 epoch,bytes32 slot,bytes32 content)`. */
export const STATEMENT_TYPES: Record<string, TypedDataField[]> = {
  Statement: [
    { name: "epoch", type: "uint64" },
    { name: "slot", type: "bytes32" },
    { name: "content", type: "bytes32" },
  ],
};

/** A node's promise to hold the message hashing to `messageHash` for `recipient` until `expiry` (unix seconds). */
export interface StorePromise {
  messageHash: string;
  recipient: string;
  expiry: bigint;
}

/** A recipient's acknowledgement that it has the message hashing to `messageHash`, delivered by `node`. */
export interface Ack {
  messageHash: string;
  node: string;
}

/** A statement that a node makes once per (`epoch`, `slot`); two with different `content` get it slashed. */
export interface Statement {
  epoch: bigint;
  slot: string;
  content: string;
}

const UINT64_MAX = 2n ** 64n - 1n;

function checkBytes32(fn: string, field: string, value: string): void {
  if (!isHexString(value, 32)) throw new Error(`${fn}: expected ${field} to be 32 bytes of hex, got '${value}'`);
}

function checkUint64(fn: string, field: string, value: bigint): void {
  if (value < 0n || value > UINT64_MAX) throw new Error(`${fn}: expected ${field} to fit in uint64, got ${value}`);
}

/** Checks and normalises a store promise (checksummed recipient). */
export function parseStorePromise(promise: StorePromise): StorePromise {
  checkBytes32("parseStorePromise", "messageHash", promise.messageHash);
  checkUint64("parseStorePromise", "expiry", promise.expiry);
  return { messageHash: promise.messageHash, recipient: getAddress(promise.recipient), expiry: promise.expiry };
}

/** Checks and normalises an acknowledgement (checksummed node). */
export function parseAck(ack: Ack): Ack {
  checkBytes32("parseAck", "messageHash", ack.messageHash);
  return { messageHash: ack.messageHash, node: getAddress(ack.node) };
}

/** Checks a statement. */
export function parseStatement(statement: Statement): Statement {
  checkUint64("parseStatement", "epoch", statement.epoch);
  checkBytes32("parseStatement", "slot", statement.slot);
  checkBytes32("parseStatement", "content", statement.content);
  return { epoch: statement.epoch, slot: statement.slot, content: statement.content };
}

/** The hash a store promise and an acknowledgement name a message by: keccak256 of its bytes as stored. */
export function messageHash(message: BytesLike): string {
  return keccak256(message);
}

/**
 * Signs `promise` as the node's signer (the address the registry holds for the node). The node gives the signature to
 * the sender when it takes a message for an offline recipient.
 */
export async function signStorePromise(
  signer: Signer,
  domain: TypedDataDomain,
  promise: StorePromise,
): Promise<string> {
  return signer.signTypedData(domain, STORE_PROMISE_TYPES, parseStorePromise(promise));
}

/**
 * Signs an acknowledgement as the recipient, for the node that delivered the message. `signer` must hold the key of
 * the promise's recipient address: the contract accepts plain ECDSA only, never a contract wallet's (ERC-1271)
 * signature, which could be revoked after the node deleted the message.
 */
export async function signAck(signer: Signer, domain: TypedDataDomain, ack: Ack): Promise<string> {
  return signer.signTypedData(domain, ACK_TYPES, parseAck(ack));
}

/** Signs `statement` as the node's signer. Sign at most one content per (epoch, slot), ever. */
export async function signStatement(signer: Signer, domain: TypedDataDomain, statement: Statement): Promise<string> {
  return signer.signTypedData(domain, STATEMENT_TYPES, parseStatement(statement));
}

/** The address that signed `promise` (compare it with the registry's `signerOf(node)`). */
export function recoverStorePromiseSigner(domain: TypedDataDomain, promise: StorePromise, signature: string): string {
  return verifyTypedData(domain, STORE_PROMISE_TYPES, parseStorePromise(promise), signature);
}

/** The address that signed `ack` (compare it with the promise's recipient). */
export function recoverAckSigner(domain: TypedDataDomain, ack: Ack, signature: string): string {
  return verifyTypedData(domain, ACK_TYPES, parseAck(ack), signature);
}

/** The address that signed `statement` (compare it with the registry's `signerOf(node)`). */
export function recoverStatementSigner(domain: TypedDataDomain, statement: Statement, signature: string): string {
  return verifyTypedData(domain, STATEMENT_TYPES, parseStatement(statement), signature);
}

/** The id the slashing contract gives the challenges of `promise` made to `node` (`Slashing.promiseId`). */
export function promiseId(node: string, promise: StorePromise): string {
  const p = parseStorePromise(promise);
  return keccak256(
    AbiCoder.defaultAbiCoder().encode(
      ["address", "bytes32", "address", "uint64"],
      [getAddress(node), p.messageHash, p.recipient, p.expiry],
    ),
  );
}

/**
 * The kinds of statement a node makes, each with slots of its own, so that two kinds never share a slot (a bill and
 * an inbox head for the same recipient and epoch must not look like two conflicting statements).
 * - `bill`: the final bill for one recipient in one epoch that the node hands to guardians; key = the recipient's bill
 *   key hash, content = the bill's hash. Handing two guardians different final bills is equivocation.
 * - `inboxHead`: the head of one recipient's inbox hash chain at the end of an epoch; key = the recipient's key hash
 *   (or address, padded to 32 bytes), content = the head. Telling two replicas or the recipient different histories is
 *   equivocation.
 */
export const STATEMENT_KINDS = ["bill", "inboxHead"] as const;
export type StatementKind = (typeof STATEMENT_KINDS)[number];

/** The tag a kind's slots are derived under: keccak256("SendingNetwork.statement.<kind>"). */
export function statementTag(kind: StatementKind): string {
  if (!STATEMENT_KINDS.includes(kind)) {
    throw new Error(`statementTag: expected one of ${STATEMENT_KINDS.join(", ")}, got '${String(kind)}'`);
  }
  return keccak256(toUtf8Bytes(`SendingNetwork.statement.${kind}`));
}

/** The slot of a statement of `kind` about `key` (32 bytes): keccak256(abi.encode(tag, key)). */
export function statementSlot(kind: StatementKind, key: string): string {
  checkBytes32("statementSlot", "key", key);
  return keccak256(AbiCoder.defaultAbiCoder().encode(["bytes32", "bytes32"], [statementTag(kind), key]));
}
