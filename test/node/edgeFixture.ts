/**
 * Shared set-up of the edge node tests: recipients with real DIDs and edge nodes with real stake on the in-process
 * Hardhat chain deployed by the real deploy fixture, and temporary data directories.
 */
import { getBytes, hexlify, keccak256, toUtf8Bytes, type Signer } from "ethers";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { billKeyOf, recipientKeyHash, type BabyJubjubPoint } from "../../sdk/bill/bill";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";
import {
  generateIdentityKeyPair,
  generateSignedPrekey,
  type IdentityKeyPair,
  type SignedPrekey,
} from "../../sdk/crypto/x3dh";
import type { DidRegistry, NodeRegistry, SendToken } from "../../typechain-types";

/** A recipient with an active DID: its X3DH identity, signed prekey and bill key. */
export interface TestRecipient {
  readonly address: string;
  readonly recipientId: Uint8Array;
  readonly identity: IdentityKeyPair;
  readonly signedPrekey: SignedPrekey;
  readonly billPrivateKey: Uint8Array;
  readonly billKey: BabyJubjubPoint;
  readonly keyHash: bigint;
}

/** Registers a DID for `account` naming `homeNodes` (operator addresses) and returns its keys. */
export async function registerRecipient(
  didRegistry: DidRegistry,
  account: Signer,
  homeNodes: readonly string[],
  seed: string,
): Promise<TestRecipient> {
  const address = await account.getAddress();
  const identity = generateIdentityKeyPair();
  const signedPrekey = generateSignedPrekey(identity, 1);
  const billPrivateKey = getBytes(keccak256(toUtf8Bytes(`edge-node-test/${seed}`)));
  const billKey = billKeyOf(billPrivateKey);
  await (
    await didRegistry.connect(account).register(
      {
        identityKey: hexlify(identity.dh.publicKey),
        signingKey: hexlify(identity.signing.publicKey),
        signedPrekey: hexlify(signedPrekey.keyPair.publicKey),
        signedPrekeyId: signedPrekey.id,
        signedPrekeySignature: hexlify(signedPrekey.signature),
        deviceKeys: [],
        homeNodes: [...homeNodes],
        backupPointer: "",
      },
      billKey,
    )
  ).wait();
  return {
    address,
    recipientId: getBytes(address),
    identity,
    signedPrekey,
    billPrivateKey,
    billKey,
    keyHash: recipientKeyHash(billKey),
  };
}

/**
 * Registers `operator` as an edge node with `peerId`, `multiaddrs` and `signer` (the operator itself if omitted),
 * staking 1,000 tokens from the deployer.
 */
export async function registerEdgeNode(
  contracts: { token: SendToken; registry: NodeRegistry },
  operator: Signer,
  peerId: string,
  multiaddrs: readonly string[],
  signer?: string,
): Promise<void> {
  const { token, registry } = contracts;
  const address = await operator.getAddress();
  const stake = 1_000n * TOKEN;
  await (await token.transfer(address, stake)).wait();
  await (await token.connect(operator).approve(await registry.getAddress(), stake)).wait();
  await (
    await registry.connect(operator).register(NodeRole.Edge, peerId, [...multiaddrs], signer ?? address, 0, stake)
  ).wait();
}

/** A fresh temporary directory. */
export function tempDir(prefix: string): Promise<string> {
  return mkdtemp(path.join(tmpdir(), `sending-${prefix}-`));
}

/** A multiaddr as a node registers it: without its /p2p/<peer id> suffix. */
export function withoutPeerId(address: string): string {
  return address.split("/p2p/")[0];
}

/** Waits until `check()` is true, polling every 20 ms; fails after `timeoutMs` (a bound, not a timed assertion). */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`eventually: ${what} did not happen within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
