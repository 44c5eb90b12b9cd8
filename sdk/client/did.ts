/**
 * The user's DID on chain, through the DidRegistry typechain bindings: register it from a ClientIdentity, keep it
 * current (signed prekey, devices, home nodes, backup pointer), revoke it; and read another user's DID into a
 * verified X3DH prekey bundle.
 *
 * The registry stores the signed-prekey signature without checking it (Ed25519 costs too much gas), so every reader
 * checks it here, with sdk/crypto's `verifyPrekeyBundle`, before using the bundle: a DID whose signature does not
 * verify is refused with DidError("BadSignature"). One-time prekeys are not on chain: home nodes serve them (left
 * for the transport), so a bundle built from the DID alone has none; X3DH runs without DH4 then.
 */
import { getAddress, hexlify, isCallException, type ContractRunner, type ContractTransactionReceipt } from "ethers";
import {
  DidRegistry__factory,
  ProtocolParameters__factory,
  SendToken__factory,
  type DidRegistry,
} from "../../typechain-types";
import type { DidDocumentStruct } from "../../typechain-types/contracts/identity/DidRegistry";
import type { BabyJubjubPoint } from "../bill/bill";
import { IdentityTree } from "../chain/identityTree";
import type { Deployment } from "../chain/deployment";
import { parameterIndex } from "../chain/protocol";
import { KEY_LENGTH, SIGNATURE_LENGTH } from "../crypto/primitives";
import { X3dhError, verifyPrekeyBundle, type IdentityPublicKey, type PrekeyBundle } from "../crypto/x3dh";
import type { ClientIdentity } from "./identity";

/** `IDidRegistry.DidStatus`, in enum order. */
export enum DidStatus {
  None = 0,
  Active = 1,
  Revoked = 2,
}

/** What went wrong with a DID. */
export type DidErrorCode =
  /** The account has no DID: nobody to send to. */
  | "UnknownRecipient"
  /** The account revoked its DID. */
  | "Revoked"
  /** The DID's signed-prekey signature does not verify under its signing key. */
  | "BadSignature"
  /** The DID's keys have the wrong length or are unusable. */
  | "Malformed"
  /** The registry reverted; `contractError` names the custom error. */
  | "ContractError";

/** The typed error of this module; `code` says what failed. */
export class DidError extends Error {
  /**
   * @param code what failed
   * @param message names the function and what it expected
   * @param account the DID's account, when one is concerned
   * @param contractError the registry's custom error name and arguments, for "ContractError"
   */
  constructor(
    readonly code: DidErrorCode,
    message: string,
    readonly account?: string,
    readonly contractError?: { readonly name: string; readonly args: readonly unknown[] },
  ) {
    super(message);
    this.name = "DidError";
  }
}

/** A DID as read from the registry, with byte values decoded. */
export interface DidView {
  /** The DID's account. */
  readonly account: string;
  /** Active, revoked, or none. */
  readonly status: DidStatus;
  /** The X25519 identity key and Ed25519 signing key. */
  readonly identity: IdentityPublicKey;
  /** The current signed prekey with its id and signature (not checked here: `prekeyBundleOf` checks it). */
  readonly signedPrekey: { readonly id: number; readonly publicKey: Uint8Array; readonly signature: Uint8Array };
  /** X25519 identity keys of the user's other devices. */
  readonly deviceKeys: readonly Uint8Array[];
  /** Operators of the edge nodes holding the user's inbox. */
  readonly homeNodes: readonly string[];
  /** Where the encrypted backup lives. */
  readonly backupPointer: string;
  /** The bill key (Baby Jubjub). */
  readonly billKey: BabyJubjubPoint;
  /** Unix time of the last change. */
  readonly updatedAt: bigint;
}

/** What `DidClient.register` publishes beside the identity's keys. */
export interface RegisterOptions {
  /** X25519 identity keys of the user's other devices (at most the registry's MAX_DEVICES). */
  readonly deviceKeys?: readonly Uint8Array[];
  /** Operators of registered edge nodes that hold the inbox (at most MAX_HOME_NODES). */
  readonly homeNodes?: readonly string[];
  /** Where the encrypted backup lives (at most MAX_BACKUP_POINTER_LENGTH bytes). */
  readonly backupPointer?: string;
}

const bytes32 = (value: Uint8Array) => hexlify(value);
const fromHex = (hex: string) => Uint8Array.from(Buffer.from(hex.slice(2), "hex"));

/** Finds revert data anywhere in an ethers or provider error. */
function revertData(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 6 && current && typeof current === "object"; depth++) {
    const record = current as Record<string, unknown>;
    if (typeof record.data === "string" && record.data.startsWith("0x")) return record.data;
    current = record.info ?? record.error ?? record.cause;
  }
  return undefined;
}

/**
 * Turns a registry revert into DidError("ContractError") carrying the custom error's name and arguments (e.g.
 * `DidAlreadyRegistered(account)`, `DidNotEdgeNode(operator)`); returns any other error unchanged.
 */
export function decodeDidError(error: unknown, where: string): unknown {
  const data = revertData(error);
  if (data === undefined || data === "0x") return error;
  const parsed = DidRegistry__factory.createInterface().parseError(data);
  if (parsed === null) return error;
  const args = [...parsed.args];
  return new DidError(
    "ContractError",
    `${where}: the DID registry reverted with ${parsed.name}(${args.map(String).join(", ")})`,
    undefined,
    { name: parsed.name, args },
  );
}

/**
 * The DID registry as a client uses it. Writes go through the runner (the user's wallet); reads need only a
 * provider.
 */
export class DidClient {
  /**
   * @param registry the DidRegistry binding, connected to the runner that signs
   * @param deployment where the other contracts (parameters, token) and the event scan start are
   */
  constructor(
    readonly registry: DidRegistry,
    private readonly deployment: Deployment,
  ) {}

  /** A DidClient on `deployment`'s DidRegistry, connected to `runner`. */
  static connect(deployment: Deployment, runner: ContractRunner): DidClient {
    return new DidClient(DidRegistry__factory.connect(deployment.contracts.DidRegistry, runner), deployment);
  }

  /** The DID document `identity` publishes: its keys, its current signed prekey with its signature, and `options`. */
  static documentOf(identity: ClientIdentity, options: RegisterOptions = {}): DidDocumentStruct {
    const spk = identity.signedPrekey;
    return {
      identityKey: bytes32(identity.publicIdentity.dh),
      signingKey: bytes32(identity.publicIdentity.signing),
      signedPrekey: bytes32(spk.keyPair.publicKey),
      signedPrekeyId: spk.id,
      signedPrekeySignature: hexlify(spk.signature),
      deviceKeys: (options.deviceKeys ?? []).map(bytes32),
      homeNodes: (options.homeNodes ?? []).map((a) => getAddress(a)),
      backupPointer: options.backupPointer ?? "",
    };
  }

  /**
   * Registers `identity`'s DID with its wallet-derived bill key. Approves the governed deposit first when it is not
   * zero. Throws DidError("ContractError") for a revert (e.g. DidAlreadyRegistered, DidNotEdgeNode).
   */
  async register(identity: ClientIdentity, options: RegisterOptions = {}): Promise<ContractTransactionReceipt> {
    const runner = this.registry.runner;
    const deposit = await ProtocolParameters__factory.connect(this.deployment.contracts.ProtocolParameters, runner).get(
      parameterIndex("DidDeposit"),
    );
    if (deposit > 0n) {
      const token = SendToken__factory.connect(this.deployment.contracts.SendToken, runner);
      await this.#send("register", () => token.approve(this.deployment.contracts.DidRegistry, deposit));
    }
    const billKey = identity.billKey;
    return this.#send("register", () =>
      this.registry.register(DidClient.documentOf(identity, options), { x: billKey.x, y: billKey.y }),
    );
  }

  /**
   * Rotates `identity`'s signed prekey locally (keeping the previous one) and publishes the new one. If the
   * transaction fails, the identity is ahead of the chain: `publishSignedPrekey` catches the chain up.
   */
  async rotateSignedPrekey(identity: ClientIdentity): Promise<ContractTransactionReceipt> {
    await identity.rotateSignedPrekey();
    return this.publishSignedPrekey(identity);
  }

  /**
   * Puts `identity`'s current signed prekey (id, key, signature) in the runner's DID with the registry's
   * `rotateSignedPrekey`, without rotating anything locally: how a client whose local rotation got ahead of the chain
   * (a failed or interrupted transaction) catches up. Throws DidError("ContractError") for a revert.
   */
  async publishSignedPrekey(identity: ClientIdentity): Promise<ContractTransactionReceipt> {
    const spk = identity.signedPrekey;
    return this.#send("rotateSignedPrekey", () =>
      this.registry.rotateSignedPrekey(bytes32(spk.keyPair.publicKey), spk.id, hexlify(spk.signature)),
    );
  }

  /** Replaces the device keys (X25519 identity keys of the user's other devices). */
  async setDevices(deviceKeys: readonly Uint8Array[]): Promise<ContractTransactionReceipt> {
    for (const key of deviceKeys) {
      if (!(key instanceof Uint8Array) || key.length !== KEY_LENGTH) {
        throw new DidError("Malformed", `setDevices: expected ${KEY_LENGTH}-byte device keys`);
      }
    }
    return this.#send("setDevices", () => this.registry.setDevices(deviceKeys.map(bytes32)));
  }

  /** Replaces the home nodes (operators of registered edge nodes). */
  async setHomeNodes(homeNodes: readonly string[]): Promise<ContractTransactionReceipt> {
    return this.#send("setHomeNodes", () => this.registry.setHomeNodes(homeNodes.map((a) => getAddress(a))));
  }

  /** Replaces the backup pointer (sdk/client/backup.ts `backupPointer`). */
  async setBackupPointer(pointer: string): Promise<ContractTransactionReceipt> {
    return this.#send("setBackupPointer", () => this.registry.setBackupPointer(pointer));
  }

  /**
   * Revokes the runner's DID. The registry wants the sibling nodes of its leaf, so this rebuilds the identity tree
   * from the registry's IdentityTreeChanged events since the deployment's start block.
   */
  async revoke(identity: ClientIdentity): Promise<ContractTransactionReceipt> {
    const tree = await this.identityTree();
    const record = await this.registry.didOf(identity.address);
    const index = tree.indexOf(record.billKeyHash);
    if (index < 0) {
      throw new DidError(
        "UnknownRecipient",
        `revoke: expected an active DID for ${identity.address}`,
        identity.address,
      );
    }
    return this.#send("revoke", () => this.registry.revoke(tree.siblings(index)));
  }

  /** The identity tree as the registry's events describe it now. */
  async identityTree(): Promise<IdentityTree> {
    const events = await this.registry.queryFilter(
      this.registry.filters.IdentityTreeChanged(),
      this.deployment.startBlock,
    );
    return IdentityTree.fromEvents(events.map((e) => ({ index: e.args.index, leaf: e.args.leaf })));
  }

  /** `account`'s DID as stored, whatever its status. */
  async readDid(account: string): Promise<DidView> {
    const address = getAddress(account);
    const r = await this.registry.didOf(address);
    const d = r.document;
    return {
      account: address,
      status: Number(r.status) as DidStatus,
      identity: { dh: fromHex(d.identityKey), signing: fromHex(d.signingKey) },
      signedPrekey: {
        id: Number(d.signedPrekeyId),
        publicKey: fromHex(d.signedPrekey),
        signature: fromHex(d.signedPrekeySignature),
      },
      deviceKeys: d.deviceKeys.map(fromHex),
      homeNodes: [...d.homeNodes],
      backupPointer: d.backupPointer,
      billKey: { x: r.billKey.x, y: r.billKey.y },
      updatedAt: r.updatedAt,
    };
  }

  /**
   * A verified X3DH prekey bundle for `account`, from its DID (no one-time prekey: home nodes serve those). Throws
   * DidError: "UnknownRecipient" (no DID), "Revoked", "BadSignature" (the signed-prekey signature does not verify
   * under the DID's signing key), "Malformed".
   */
  async prekeyBundleOf(account: string): Promise<PrekeyBundle> {
    const did = await this.readDid(account);
    return bundleFromDid(did);
  }

  async #send(
    where: string,
    call: () => Promise<{ wait(): Promise<ContractTransactionReceipt | null> }>,
  ): Promise<ContractTransactionReceipt> {
    try {
      const tx = await call();
      const receipt = await tx.wait();
      if (receipt === null) throw new Error(`${where}: expected a receipt, got none`);
      return receipt;
    } catch (error) {
      const decoded = decodeDidError(error, where);
      if (decoded === error && isCallException(error)) {
        throw new DidError("ContractError", `${where}: ${error.shortMessage}`);
      }
      throw decoded;
    }
  }
}

/**
 * The verified prekey bundle of a DID read from the registry (see `DidClient.prekeyBundleOf` for the errors). Use
 * it to check a DID obtained elsewhere (a home node, a cache) the same way.
 */
export function bundleFromDid(did: DidView): PrekeyBundle {
  const where = "bundleFromDid";
  if (did.status === DidStatus.None) {
    throw new DidError("UnknownRecipient", `${where}: expected ${did.account} to have a DID, got none`, did.account);
  }
  if (did.status === DidStatus.Revoked) {
    throw new DidError("Revoked", `${where}: expected ${did.account}'s DID to be active, got revoked`, did.account);
  }
  if (did.signedPrekey.signature.length !== SIGNATURE_LENGTH) {
    throw new DidError(
      "Malformed",
      `${where}: expected a ${SIGNATURE_LENGTH}-byte signed-prekey signature, got ${did.signedPrekey.signature.length}`,
      did.account,
    );
  }
  const bundle: PrekeyBundle = {
    identity: { dh: did.identity.dh, signing: did.identity.signing },
    signedPrekey: {
      id: did.signedPrekey.id,
      publicKey: did.signedPrekey.publicKey,
      signature: did.signedPrekey.signature,
    },
  };
  try {
    verifyPrekeyBundle(bundle);
  } catch (error) {
    if (error instanceof X3dhError && error.code === "BadSignature") {
      throw new DidError(
        "BadSignature",
        `${where}: expected ${did.account}'s signed prekey ${did.signedPrekey.id} to be signed by its signing key`,
        did.account,
      );
    }
    throw new DidError("Malformed", `${where}: ${(error as Error).message}`, did.account);
  }
  return bundle;
}
