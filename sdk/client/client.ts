/**
 * `SendingClient`: end-to-end encrypted chat between wallets over the Sending Network's edge nodes.
 *
 * It ties together what the rest of the SDK provides: the wallet-bound identity and its encrypted store
 * (identity.ts), the DID on chain (did.ts), X3DH and the Double Ratchet (sdk/crypto), sender keys for groups, the
 * layered packet (sdk/wire/onion.ts), the edge-node protocols (sdk/net/calls.ts over a dial-only libp2p host,
 * sdk/net/host.ts), the registry of edge nodes (sdk/chain/nodes.ts) and delivery bills (sdk/bill/bill.ts).
 *
 * Sending a message to an address: read the recipient's DID (UnknownRecipientError when it has none), use the stored
 * ratchet session or open one from a bundle fetched from one of its home nodes (NoPrekeysError when none has one),
 * seal the ratchet message to the recipient's identity key (sdk/client/envelope.ts), wrap it in a delivery with a
 * random message id, and send it as a layered packet through 2 or 3 edge nodes from the registry whose exit is one of
 * the recipient's home nodes. The exit stores it and replicates it to the other home nodes.
 *
 * Receiving: `start()` drains each home node's inbox with FETCH, then keeps a SUBSCRIBE stream open to each (pushed
 * at once, backlog first), reconnecting with backoff. Envelopes are processed one at a time; replicas of one message
 * (the same id from several home nodes) are decrypted once and acknowledged at every node that holds one, and the ids
 * seen are kept in the encrypted store (sdk/client/seen.ts), so a replica met after a restart is dropped too. For each
 * node that delivered, the client counts messages and bytes per epoch and submits a signed cumulative bill to it.
 *
 * Devices: a second app of the same wallet runs as a device account of its own (`createDevice`), linked both ways
 * through the DIDs' `deviceKeys`; a message to a user goes to its account and to each linked device, and a copy of
 * what one client of a user sends goes to the user's other clients. Groups use sender keys
 * (sdk/crypto/senderKeys.ts) whose distribution messages travel over the pairwise sessions; every member's account
 * and linked devices take part, each with a sender key of its own. The creator's account is the group's admin: only
 * it adds and removes members, each change raising a membership version that every key carries, so members follow
 * the admin's newest list and a stale one changes nothing. A client joins a group only on the word of a client of
 * the admin or of its own user (another user's group, by default, only once its user accepts the invitation),
 * asks for a key it missed when a message it cannot open arrives, fans out nothing on the receive path (keys it owes
 * go with its next group message), and a group changes one step at a time (a per-group lock shared by the receive
 * path and the API calls). The backup is parked, sealed under the wallet's backup key, in the user's own inbox, and
 * the previous one deleted once the new one is confirmed there. docs/SDK.md describes all of it and lists what is left.
 */
import { Wallet, getAddress, getBytes, hexlify, parseEther, zeroPadValue, type Provider, type Signer } from "ethers";
import { sha256 } from "@noble/hashes/sha2.js";
import { NodeRegistry__factory, ProtocolParameters__factory } from "../../typechain-types";
import type { NodeRegistry, ProtocolParameters } from "../../typechain-types";
import { nodeIdFromAddress, signBill, type SignedBill } from "../bill/bill";
import type { Deployment } from "../chain/deployment";
import { readEdgeNode, readEdgeNodes, type EdgeNodeInfo } from "../chain/nodes";
import { ByteWriter, ByteReader, bytesEqual, concatBytes, readU32, toHex } from "../crypto/bytes";
import { defaultRandomBytes, type RandomBytes } from "../crypto/primitives";
import { RatchetError, RatchetSession, TamperedMessageError } from "../crypto/ratchet";
import {
  GroupSession,
  GROUP_ID_LENGTH,
  SENDER_KEY_DISTRIBUTION_LENGTH,
  SENDER_KEY_ID_LENGTH,
  SenderKeyError,
} from "../crypto/senderKeys";
import { X3dhError, sameIdentity, verifyPrekeyBundle, type PrekeyBundle, type SignedPrekey } from "../crypto/x3dh";
import {
  ClientHost,
  NetError,
  NodeProtocolError,
  NodeRefusedError,
  NodeUnreachableError,
  type ClientHostOptions,
  type NodeAddress,
} from "../net/host";
import {
  ackInbox,
  fetchBundle,
  fetchInbox,
  publishPrekeys,
  recipientIdOf,
  sendPacket,
  submitBills,
  subscribeInbox,
  type RequestSigner,
} from "../net/calls";
import { peerIdBytes } from "../net/peerId";
import type { StorageAdapter } from "../storage/adapter";
import { WireErrorCode } from "../wire/frame";
import {
  INBOX_MAX_BATCH,
  MAX_ONE_TIME_PREKEYS,
  MAX_TTL_SECONDS,
  encodeDelivery,
  inboxPageInOrder,
  type InboxCursor,
  type StoredEnvelope,
} from "../wire/messages";
import { MAX_HOPS, MIN_HOPS, wrapPacket } from "../wire/onion";
import { backupPointer, openBackup, sealBackup, type BackupContents } from "./backup";
import { DidClient, DidStatus, type DidView } from "./did";
import {
  ContentKind,
  EnvelopeError,
  EnvelopeKind,
  InnerType,
  MAX_GROUP_MEMBERS_ON_WIRE,
  MAX_GROUP_MESSAGE_BYTES,
  MAX_GROUP_VERSION,
  MAX_MESSAGE_BYTES,
  backupChunks,
  encodeContent,
  openEnvelope,
  parseBackupChunk,
  parseContent,
  sealEnvelope,
  type BackupChunk,
  type Content,
  type DirectContent,
  type GroupKeyContent,
} from "./envelope";
import { ClientIdentity, IdentityError } from "./identity";
import { SeenIds } from "./seen";

/** Messages wait 7 days for an offline recipient by default: a week away still finds its messages. */
export const DEFAULT_TTL_SECONDS = 7 * 24 * 3600;
/** The registry's node list is re-read after 30 s: joins and exits take blocks, not milliseconds. */
export const NODE_LIST_MAX_AGE_MS = 30_000;
/** Entries tried when the first fails: a second and third entry hop cover a node that just went away. */
export const SEND_ATTEMPTS = 3;
/** Ether a new device account gets from the wallet for its DID transactions: a few transactions on an L2. */
export const DEFAULT_DEVICE_FUNDING = parseEther("0.01");
/** Who is whose device is re-read from the DIDs after 30 s. */
const DEVICE_LINK_MAX_AGE_MS = 30_000;
/**
 * Storage prefix of the group records: net/g/<group id hex> = GROUP_RECORD_MAGIC (4) || admin (20) || membership
 * version (4) || flags (1: bit 0, `writerLost`; bit 1, a pending list follows) || member count (1) || members (20
 * each) || owed count (2) || participants owed this client's key (20 each) || [pending list: version (4) || lead epoch
 * (4) || member count (1) || members (20 each)] || the serialized GroupSession. Short, because storage keys are at
 * most 120 characters. A record without bit 1 reads as before, so the pending list needs no new layout.
 */
const GROUPS_PREFIX = "net/g/";
/** First bytes of a group record with an admin, a version and the owed set ("SNG" 3): older layouts lack them. */
const GROUP_RECORD_MAGIC = Uint8Array.of(0x53, 0x4e, 0x47, 0x03);
/**
 * A group id is its admin's address (20) || this many random bytes: a GROUP_KEY naming another admin for the id is
 * refused, so nobody can make a client that is not yet in a group take the group's id under an admin of its own.
 * 96 random bits keep one admin's groups apart.
 */
export const GROUP_ID_NONCE_BYTES = GROUP_ID_LENGTH - 20;
/**
 * Storage prefix of the pending group invitations: net/i/<group id hex> = INVITATION_RECORD_MAGIC (4) || received at
 * (ms since the epoch, u32 high || u32 low) || admin (20) || membership version (4) || the admin's client that sent
 * it (20) || member count (1) || members (20 each) || the sender-key distribution message (a secret: the record is
 * encrypted like the group records, and deleted when the invitation goes).
 */
const INVITATIONS_PREFIX = "net/i/";
/** First bytes of an invitation record ("SNI" 1): a record of another layout is reported and deleted. */
const INVITATION_RECORD_MAGIC = Uint8Array.of(0x53, 0x4e, 0x49, 0x01);
/**
 * Group invitations pending at most, in all: a user goes through them as a list, and each holds a stored key; past
 * it the oldest goes (reported).
 */
export const MAX_GROUP_INVITATIONS = 32;
/**
 * Pending invitations from one admin at most: one account that creates group after group cannot push everyone
 * else's invitations out (a third one pushes out its own oldest).
 */
export const MAX_GROUP_INVITATIONS_PER_ADMIN = 2;
/**
 * Storage prefix of the blocked group admins (`blockGroupAdmin`): net/block/<admin address, 40 hex lowercase> =
 * BLOCK_RECORD_MAGIC (4) || blocked at (ms since the epoch, u32 high || u32 low).
 */
const BLOCKED_ADMINS_PREFIX = "net/block/";
/** First bytes of a block record ("SNB" 1): a record of another layout is reported and deleted. */
const BLOCK_RECORD_MAGIC = Uint8Array.of(0x53, 0x4e, 0x42, 0x01);
/** Group admins one client blocks at most: a list a user keeps by hand, every entry a record loaded at create. */
export const MAX_BLOCKED_GROUP_ADMINS = 1024;
/** Storage record (under the wallet's namespace) of the device account's private key. */
const DEVICE_KEY_RECORD = "net/device-key";
/** A home node holding fewer one-time prekeys than this gets a new batch: each new sender takes one. */
export const ONE_TIME_PREKEYS_LOW_WATER = 5;
/** One-time prekeys drawn for a home node that runs low (each is 36 bytes at the node, 68 in the client's store). */
export const ONE_TIME_PREKEYS_BATCH = 20;
/** Group messages held until their sender's key arrives: a key is one message behind at most, 256 covers bursts. */
export const PENDING_GROUP_MESSAGES_KEPT = 256;
/**
 * GROUP_KEYs a client holds until it can tell whether their sender acts for a member (a group it is not in yet, or a
 * member added by a change it has not seen yet): one per participant of a few groups at once.
 */
export const HELD_GROUP_KEYS_KEPT = 64;
/** Held GROUP_KEYs of one sending account at most: a client of a member is in a few new groups at once, not dozens. */
export const HELD_GROUP_KEYS_PER_SENDER = 4;
/**
 * Storage prefix of the held group messages (`#holdGroupMessage`): net/hm/<message id hex, 32 digits> =
 * HELD_MESSAGE_RECORD_MAGIC (4) || held at (ms since the epoch, u32 high || u32 low: `#heldRecord`, the order at load)
 * || group id (32) || the sending client (20) || the user it is shown as (20: the sending client itself, or the user
 * whose device it is) || the operator that delivered it (20) || stored at (ms, u32 high || u32 low) || the sender-key
 * message. The message was acknowledged to the inbox and its pairwise ratchet step spent: this record is all that is
 * left of it until it opens. Written before the batch is acknowledged; deleted when it leaves the buffer.
 */
const HELD_MESSAGES_PREFIX = "net/hm/";
/** First bytes of a held group message record ("SNM" 1): a record of another layout is reported and deleted. */
const HELD_MESSAGE_RECORD_MAGIC = Uint8Array.of(0x53, 0x4e, 0x4d, 0x01);
/**
 * Storage prefix of the held GROUP_KEYs (`#holdGroupKey`): net/hk/<HELD_KEY_NAME_BYTES random bytes hex> =
 * HELD_KEY_RECORD_MAGIC (4) || held at (ms, u32 high || u32 low) || group id (32) || the sending client (20) || the
 * sender-key distribution message (a secret: encrypted like every record, deleted when the key leaves the buffer).
 */
const HELD_KEYS_PREFIX = "net/hk/";
/** First bytes of a held GROUP_KEY record ("SNK" 1): a record of another layout is reported and deleted. */
const HELD_KEY_RECORD_MAGIC = Uint8Array.of(0x53, 0x4e, 0x4b, 0x01);
/** Random bytes naming a held key's record: two keys of one sender for one group are both kept, under two names. */
const HELD_KEY_NAME_BYTES = 8;
/**
 * A client asks one account for its group key at most once a minute per group (and answers one account's requests
 * at most once a minute): a lost request is asked again on a later message, and a burst of unreadable messages, or a
 * member that keeps asking, costs one message a minute.
 */
export const KEY_REQUEST_INTERVAL_MS = 60_000;
/**
 * A held group message asks for its missing keys only after this long: a key sent before the message, on another
 * route, normally comes within milliseconds, and an answer (the key at a later step) overtaking it would leave the
 * message unreadable.
 */
export const KEY_REQUEST_DELAY_MS = 1_000;
/** (group, account) pairs whose last key request is remembered: bounds what a flood of requests takes in memory. */
const KEY_REQUESTS_TRACKED = 1024;
/**
 * How long `stop()` waits for the group fan-outs still running (`sendToGroup` outside the group's lock): a send to
 * a node that does not answer would otherwise hold the stop for its whole dial timeout.
 */
export const STOP_FAN_OUT_WAIT_MS = 5_000;
/**
 * Looks for a new backup's chunks in the inbox, BACKUP_CONFIRM_DELAY_MS apart, before its pointer is set (and for the
 * chunks of the backup to restore): 10 s in all covers the hops and the replication.
 */
export const BACKUP_CONFIRM_ATTEMPTS = 40;
/** Delay between two looks for a new backup's chunks: they travel through 2 or 3 hops and are replicated. */
export const BACKUP_CONFIRM_DELAY_MS = 250;
/**
 * Pages one `sync` reads from one home node at most (4,096 messages): it bounds the work one sync does for a node
 * that keeps making messages up. An inbox holds 1,000 by default (DEFAULT_INBOX_QUOTA, 63 pages of 16), and the
 * node's rate limit on requests (20 a second, 200 at once, a FETCH and an ACK a page) slows a longer sync first.
 */
export const SYNC_MAX_PAGES_PER_NODE = 256;
/** First reconnect delay of a subscription; doubled up to SUBSCRIBE_BACKOFF_MAX_MS. */
export const SUBSCRIBE_BACKOFF_MS = 200;
/** Longest reconnect delay of a subscription: a node back after a restart is found within 5 s. */
export const SUBSCRIBE_BACKOFF_MAX_MS = 5_000;
/**
 * A node learns of DID changes by polling the chain (every ~2 s): a request signed with a key registered a moment
 * ago may be refused UNAUTHORIZED until then. Such refusals are retried this many times, CHAIN_LAG_DELAY_MS apart.
 */
export const CHAIN_LAG_RETRIES = 20;
/** Delay between retries of a request refused because the node has not yet seen a DID change. */
export const CHAIN_LAG_DELAY_MS = 250;
/**
 * Bills are submitted this long after the first delivery of a burst: a cumulative bill supersedes the previous one, so
 * one submission per burst is enough, and signing (EdDSA-Poseidon, milliseconds) stays off the receive path.
 */
export const BILL_SUBMIT_DELAY_MS = 1_000;
/** The current epoch is re-read after 5 s: epochs last hours, bills must name the right one at a boundary. */
const EPOCH_MAX_AGE_MS = 5_000;
/** Storage record of the highest one-time prekey id already handed to home nodes. */
const PUBLISHED_PREKEYS_RECORD = "net/prekeys-published";
/** Storage prefix of the bill counters: net/bills/<epoch, 16 hex>/<operator lowercase>. */
const BILLS_PREFIX = "net/bills/";
/**
 * Storage record of the signed prekey id (u32) every home node was last handed (`publishPrekeys`): a rotation that
 * stopped before its publication is completed when it differs from the current id.
 */
const PUBLISHED_SIGNED_PREKEY_RECORD = "net/spk-published";
/**
 * The signed prekey is replaced once a week by default (X3DH §2.2 suggests weekly or monthly): a leaked signed-prekey
 * secret then opens the initial messages of about two weeks (the week it was current and the grace week after),
 * for a chain transaction and a publication to each home node a week.
 */
export const SIGNED_PREKEY_ROTATION_MS = 7 * 24 * 3_600_000;
/** The shortest rotation interval allowed: each rotation costs a chain transaction and a publication per home node. */
export const MIN_SIGNED_PREKEY_ROTATION_MS = 60_000;
/** The longest rotation interval allowed: past 90 days one leaked signed-prekey secret exposes too much. */
export const MAX_SIGNED_PREKEY_ROTATION_MS = 90 * 24 * 3_600_000;
/** The timer checks the signed prekey's age at most once a minute: a rotation is a chain transaction. */
export const SIGNED_PREKEY_CHECK_MIN_MS = 60_000;
/** The timer checks at least once an hour: a week's rotation is then at most an hour late, and a failed one retried. */
export const SIGNED_PREKEY_CHECK_MAX_MS = 3_600_000;

/**
 * How often a running client checks its signed prekey's age: a 24th of the rotation interval (a rotation is at most
 * ~4% late), within [SIGNED_PREKEY_CHECK_MIN_MS, SIGNED_PREKEY_CHECK_MAX_MS]: an hour for the default week.
 */
export function signedPrekeyCheckMs(rotationMs: number): number {
  return Math.min(SIGNED_PREKEY_CHECK_MAX_MS, Math.max(SIGNED_PREKEY_CHECK_MIN_MS, Math.floor(rotationMs / 24)));
}

/** Why a client call failed (the `code` of ClientError). */
export type ClientErrorCode =
  | "UnknownRecipient"
  | "NoPrekeys"
  | "NoRoute"
  | "NotRegistered"
  | "MessageTooLarge"
  | "UnknownGroup"
  | "NotMember"
  | "NotAdmin"
  | "AlreadyMember"
  | "GroupFull"
  | "InvitationDropped"
  | "BlockListFull"
  | "BackupNotFound"
  | "LookupFailed"
  | "Stopped";

/** A client call that cannot be done; `code` says why. */
export class ClientError extends Error {
  readonly code: ClientErrorCode;
  constructor(code: ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ClientError";
    this.code = code;
  }
}

/** The recipient has no active DID. */
export class UnknownRecipientError extends ClientError {
  /** The address asked for. */
  readonly recipient: string;
  constructor(recipient: string, message: string) {
    super("UnknownRecipient", message);
    this.name = "UnknownRecipientError";
    this.recipient = recipient;
  }
}

/** None of the recipient's home nodes has a prekey bundle for it (it never published, or they are all down). */
export class NoPrekeysError extends ClientError {
  /** The address asked for. */
  readonly recipient: string;
  constructor(recipient: string, message: string, options?: { cause?: unknown }) {
    super("NoPrekeys", message, options);
    this.name = "NoPrekeysError";
    this.recipient = recipient;
  }
}

export { NodeUnreachableError, TamperedMessageError };

/** Options of `SendingClient.create`. */
export interface SendingClientOptions {
  /** The user's wallet: signs the identity message once, and the DID transactions. */
  readonly signer: Signer;
  /** Where the identity, sessions and counters live (MemoryStorage, FileStorage, or an app's adapter). */
  readonly storage: StorageAdapter;
  /** The protocol's addresses (sdk/chain/deployment.ts). */
  readonly deployment: Deployment;
  /** Chain reads; the signer's provider if omitted. */
  readonly provider?: Provider;
  /** Hops per packet (2 or 3); 3 when the registry has enough nodes, else 2. */
  readonly hops?: 2 | 3;
  /** How long home nodes keep a message for an offline recipient; DEFAULT_TTL_SECONDS if omitted. */
  readonly ttlSeconds?: number;
  /** One-time prekeys a new identity draws (published to the home nodes, split between them). */
  readonly oneTimePrekeys?: number;
  /** Submit bills to the delivering nodes after each batch received (default true). */
  readonly autoBills?: boolean;
  /** libp2p host options. */
  readonly host?: ClientHostOptions;
  /** Randomness for message ids, nonces and route choice (tests). */
  readonly randomBytes?: RandomBytes;
  /** For `createDevice`: ether the wallet sends the device account for its DID transactions (default 0.01 ether). */
  readonly deviceFunding?: bigint;
  /**
   * What a group key from another user's client naming this client's user does: "ask" (the default) keeps it as a
   * pending invitation (event `groupInvitation`) until `acceptGroupInvitation` or `declineGroupInvitation`;
   * "accept" joins at once. Groups this client's own user joined or created on another of its clients are joined at
   * once either way: a client of the same user running "accept" therefore makes this one join without asking (the
   * key it owes comes before its first group message). With "ask", a group message of a group not joined makes this
   * client ask only its own user's clients for a key, never another user.
   */
  readonly groupInvitations?: "ask" | "accept";
  /**
   * How old the signed prekey may get before `start()` or the check timer replaces it (ms; default
   * SIGNED_PREKEY_ROTATION_MS, 7 days). Integer in [MIN_SIGNED_PREKEY_ROTATION_MS, MAX_SIGNED_PREKEY_ROTATION_MS]
   * (1 minute to 90 days), else `create` throws RangeError. Rotation cannot be turned off: a signed prekey that is
   * never replaced exposes every initial message ever sent to it once its secret leaks.
   */
  readonly signedPrekeyRotationMs?: number;
  /**
   * The clock the signed prekey's age is measured with (ms since the epoch; default `Date.now`), for tests and apps
   * that control time. Nothing else reads it: timers, timestamps on the wire and storage keep real time.
   */
  readonly now?: () => number;
}

/** A message received and decrypted. */
export interface ReceivedMessage {
  /** The message id (hex, 16 bytes), the same at every home node that held a replica. */
  readonly messageId: string;
  /**
   * The sender's wallet address (checksummed), authenticated by the ratchet session; for a message from another
   * device of a user, that user's address (the device's account is in `device`).
   */
  readonly from: string;
  /** The device account that sent it, when it is a device of `from` (both DIDs name each other). */
  readonly device?: string;
  /** "text" or "binary". */
  readonly kind: "text" | "binary";
  /** The text, for a text message. */
  readonly text?: string;
  /** The bytes: UTF-8 of the text, or the binary payload. */
  readonly data: Uint8Array;
  /** The group (hex of the 32-byte id) for a group message. */
  readonly groupId?: string;
  /**
   * True for a copy of a message another client of this user sent (`from` is then this user, `device` the device
   * that sent it, if it was not the wallet's own client, and `to` the recipient).
   */
  readonly sent?: boolean;
  /** For a sent copy: the address the message was sent to. */
  readonly to?: string;
  /** Operator of the home node that delivered it first. */
  readonly deliveredBy: string;
  /** Milliseconds since the epoch, when the home node stored it. */
  readonly storedAt: number;
}

/** What `send` and `sendToGroup` did. */
export interface SendResult {
  /** One message id (hex) per recipient delivery. */
  readonly messageIds: string[];
  /** The route of each delivery, as operator addresses, entry first (the exit is a home node of the recipient). */
  readonly routes: string[][];
  /** `send` only: the message ids (hex) of the sent copies delivered to this user's other clients. */
  readonly copies?: readonly string[];
}

/** A participant of a group (a member's account or a linked device) that a group call could not reach, and why. */
export interface UnreachedParticipant {
  /** The account that was not reached. */
  readonly participant: string;
  /** Why (e.g. NoPrekeysError, NodeUnreachableError, ClientError "NoRoute"). */
  readonly error: Error;
}

/** What `sendToGroup` did, and what the group message looked like on the wire (for apps that keep or forward it). */
export interface GroupSendResult extends SendResult {
  /** The sender-key message every member received (inside its pairwise envelope). */
  readonly ciphertext: Uint8Array;
  /**
   * The participants the message (or, for a device linked since the last message, this client's key first) could
   * not reach; empty when all were. The others got it: a retry would send it to them again.
   */
  readonly unreached: readonly UnreachedParticipant[];
}

/** Options of a network call of the client. */
export interface ClientCallOptions {
  /** Aborts the call. */
  readonly signal?: AbortSignal;
}

/** Events of a client. */
export interface ClientEvents {
  /** A message decrypted. */
  message: (message: ReceivedMessage) => void;
  /** Something failed in the background (a subscription, a message that did not decrypt, a bill submission). */
  error: (error: Error) => void;
  /** A group this client is in changed (joined, a member's key arrived, members added or removed). */
  group: (groupId: string) => void;
  /**
   * A group's admin invited this client's user (option `groupInvitations` "ask"), or sent a newer list for a pending
   * invitation; `acceptGroupInvitation` joins, `declineGroupInvitation` drops it.
   */
  groupInvitation: (invitation: GroupInvitation) => void;
}

interface SessionSlot {
  current: RatchetSession;
  previous?: RatchetSession;
}

interface GroupState {
  /**
   * The sender-key session. Its members are the group's participants other than this client: every member's
   * account and each of its linked devices (each holds a sender key of its own).
   */
  session: GroupSession;
  /** Every member (a user: a wallet address, never a device account) including this client's user, checksummed. */
  members: string[];
  /** The group's admin (the creator's account, checksummed): only that account changes the membership. */
  readonly admin: string;
  /** Membership version of `members`: 0 at create, one more per change (a uint32). */
  version: number;
  /**
   * Participants owed this client's current sender key, sent before its next group message. The receive path never
   * fans out (a GROUP_KEY from anyone must not make this client write to a hundred accounts): a join, a list followed
   * and a rekey it makes fill this set instead. Stored with the group; a participant that missed the key anyway asks
   * for it (GROUP_KEY_REQUEST) when it cannot open this client's next message.
   */
  readonly owed: Set<string>;
  /**
   * Set when the admin's own account joined its group on another client's word at a version above 0: it lost its
   * state (a reinstall) and took a list that may be behind its own last change, so it must not write again (a
   * change from a stale version would be ignored by the others, or bring back a member it had removed).
   */
  writerLost: boolean;
  /**
   * A list from the admin this client followed on the receive path but could not store (its rekey failed: a storage
   * error). Until it is, the members it drops still hold this client's key and would be sent its messages, so the
   * next `sendToGroup`, key request answer, list from the admin and `start` complete it first (`#settleList`), and a
   * send whose completion fails throws before anything leaves. Stored with the group when it can be.
   */
  pending?: PendingList;
}

/** A member list from the admin not yet applied (`GroupState.pending`), with the epoch of the admin's key. */
interface PendingList {
  readonly members: readonly string[];
  readonly version: number;
  readonly leadEpoch: number;
}

/** What `groupInfo` tells an app about a group. */
export interface GroupInfo {
  /** Every member (users, wallet addresses), this client's user included. */
  readonly members: readonly string[];
  /** The group's admin (the creator's account): only that account adds or removes members. */
  readonly admin: string;
  /** Membership version: 0 at create, one more per change. */
  readonly version: number;
}

/** A group this client's user was invited to and has not yet accepted or declined (`groupInvitations`). */
export interface GroupInvitation {
  /** The group id (hex, 64 digits, no 0x): the admin's address followed by GROUP_ID_NONCE_BYTES random bytes. */
  readonly groupId: string;
  /** The group's admin (checksummed): the user who invites. */
  readonly admin: string;
  /** Membership version of `members`, as the admin's newest key for the group says. */
  readonly version: number;
  /** The members (users), this client's user and the admin among them. */
  readonly members: readonly string[];
}

/** A pending invitation with what joining takes: the admin's client that sent it and its key (a secret). */
interface PendingInvitation extends GroupInvitation {
  /** The client of the admin (its account or a device) whose key this is: joining answers it. */
  readonly from: string;
  /** That client's sender-key distribution message; wiped when the invitation goes. */
  readonly distribution: Uint8Array;
  /** When the first key for the group came (ms): the oldest invitation goes first past the bounds. */
  readonly receivedAt: number;
}

/**
 * A GROUP_KEY from a client that may not be trusted yet: for a group this client is not in, from a client of neither
 * the admin nor this client's user (held until one of them names the group); for a group it is in, from a client of
 * a user not (yet) in its member list (held until a list adds that user).
 */
interface HeldGroupKey {
  readonly groupId: string;
  readonly from: string;
  readonly distribution: Uint8Array;
  /** Its record (HELD_KEYS_PREFIX); none for the invitation's key a join takes at once. */
  readonly name?: string;
}

/** A group message held until its key (or group) comes; stored at HELD_MESSAGES_PREFIX + `base.messageId`. */
interface PendingGroupMessage {
  readonly base: Pick<ReceivedMessage, "messageId" | "from" | "device" | "deliveredBy" | "storedAt">;
  readonly from: string;
  readonly groupId: string;
  readonly message: Uint8Array;
}

interface BillCounter {
  messageCount: bigint;
  byteCount: bigint;
}

/**
 * What a failure to reach a participant does: "throw" (an API call, once all were tried), "report" (an event), or
 * "collect" (listed in the result: `sendToGroup`).
 */
type FailureMode = "throw" | "report" | "collect";

/**
 * One group message, planned under the group's lock by `sendToGroup` and fanned out after it (`#fanOut`); or a key
 * request's answer, the key alone (`to` empty).
 */
interface GroupSendPlan {
  readonly id: string;
  /** The group's state when planned: the owed set is updated after the fan-out only if it is still the group's. */
  readonly state: GroupState;
  /** The epoch of this client's sender key when planned: a rekey since makes the key sent with this message old. */
  readonly epoch: number;
  /** Participants owed this client's key (devices linked since among them): it goes to each before the message. */
  readonly keyTo: readonly string[];
  /** The GROUP_KEY content for `keyTo` (this client's key at the message's chain step); wiped after the fan-out. */
  readonly keyContent?: Uint8Array;
  /** Every participant acting for a current member, the message's recipients. */
  readonly to: readonly string[];
  /** The member each of `keyTo` and `to` acts for, to check it is still one when its turn comes (`#stillRecipient`). */
  readonly memberOf: ReadonlyMap<string, string>;
  /** The GROUP_MESSAGE content. */
  readonly body: Uint8Array;
  /** The sender-key message. */
  readonly ciphertext: Uint8Array;
}

const asNode = (info: EdgeNodeInfo): NodeAddress => ({ peerId: info.peerId, multiaddrs: info.multiaddrs });

/** A chat client bound to one wallet. Create with `SendingClient.create`, then `register`, `start`, `send`. */
export class SendingClient {
  readonly #identity: ClientIdentity;
  readonly #did: DidClient;
  readonly #registry: NodeRegistry;
  readonly #parameters: ProtocolParameters;
  readonly #host: ClientHost;
  readonly #options: SendingClientOptions;
  readonly #random: RandomBytes;
  readonly #sessions = new Map<string, SessionSlot>();
  readonly #groups = new Map<string, GroupState>();
  /** Pending group invitations by group id, oldest first (MAX_GROUP_INVITATIONS at most), loaded at create. */
  readonly #invitations = new Map<string, PendingInvitation>();
  /** Group admins blocked (`blockGroupAdmin`), checksummed; loaded at create. */
  readonly #blockedAdmins = new Set<string>();
  /** Invitations being accepted (their group ids): a bound never pushes one of them out meanwhile. */
  readonly #accepting = new Set<string>();
  /** Ids of the messages processed (replicas are dropped), loaded from the store at create. */
  #seen!: SeenIds;
  /** Backup chunks met in the inbox, by message id, with the operators of the home nodes that hold them. */
  readonly #backupChunks = new Map<string, { readonly chunk: BackupChunk; readonly operators: Set<string> }>();
  /** Digests (hex) of backups a newer one replaced: their chunks are acknowledged wherever they are met. */
  readonly #staleBackups = new Set<string>();
  /** Group messages held until their key comes, oldest first (PENDING_GROUP_MESSAGES_KEPT at most), loaded at create. */
  #pendingGroup: PendingGroupMessage[] = [];
  /** The last "held at" stamped on a held message's or key's record (`#heldRecord`). */
  #heldAt = 0;
  /** GROUP_KEYs held until their sender is known to act for a member, oldest first (HELD_GROUP_KEYS_KEPT at most). */
  #heldGroupKeys: HeldGroupKey[] = [];
  /** When a key was last asked of "<group>:<account>" (KEY_REQUEST_INTERVAL_MS). */
  readonly #askedKeys = new Map<string, number>();
  /** When a key request of "<group>:<account>" was last answered. */
  readonly #answeredKeys = new Map<string, number>();
  /** When a sending account's message last made this client ask about a group it is not in. */
  readonly #askingSenders = new Map<string, number>();
  /** When an admin (read from a group id) was last asked about a group this client is not in. */
  readonly #askedAdmins = new Map<string, number>();
  /** Timers of the key requests waiting for KEY_REQUEST_DELAY_MS (cleared by `stop`). */
  readonly #keyRequestTimers = new Set<NodeJS.Timeout>();
  /** The tail of each group's changes: one change at a time per group, receive path and API calls alike. */
  readonly #groupLocks = new Map<string, Promise<unknown>>();
  /**
   * The tail of each group's message fan-outs (`sendToGroup`), outside the group's lock: they leave in the order
   * their messages were encrypted, so a key sent with a later message (a later chain step) never overtakes an
   * earlier message to the same participant, which could then not be opened (chains only move forward).
   */
  readonly #groupFanOuts = new Map<string, Promise<unknown>>();
  /** The user's wallet when this client is a device of it (`createDevice`). */
  #owner: { readonly signer: Signer; readonly address: string } | undefined;
  readonly #ownerOf = new Map<string, { readonly owner: string | undefined; readonly at: number }>();
  readonly #listeners: { [K in keyof ClientEvents]: Set<ClientEvents[K]> } = {
    message: new Set(),
    error: new Set(),
    group: new Set(),
    groupInvitation: new Set(),
  };
  #homeNodes: EdgeNodeInfo[] = [];
  #nodes: { at: number; list: EdgeNodeInfo[] } | undefined;
  #epoch: { at: number; value: bigint } | undefined;
  #running: AbortController | undefined;
  #subscriptions: Promise<void>[] = [];
  /** Received envelopes are processed one at a time, in arrival order: ratchet state must not interleave. */
  #queue: Promise<unknown> = Promise.resolve();
  #billing: Promise<unknown> = Promise.resolve();
  /** Prekey publications run one at a time: two at once could hand the same one-time prekey to two nodes. */
  #prekeyQueue: Promise<unknown> = Promise.resolve();
  #prekeyTimer: NodeJS.Timeout | undefined;
  /** Operators owed a bill submission, and the timer that will send them (bills are cumulative: one per burst). */
  readonly #billsDue = new Set<string>();
  #billTimer: NodeJS.Timeout | undefined;
  /** The start running or done (`start`): a second call shares it. */
  #starting: Promise<void> | undefined;
  /** The signed-prekey check timer (`start` arms it, `stop` clears it; unref'd: it never keeps a process alive). */
  #signedPrekeyTimer: NodeJS.Timeout | undefined;
  /** The signed-prekey check running, if one is: checks never overlap. */
  #signedPrekeyCheck: Promise<boolean> | undefined;
  #stopped = false;

  private constructor(
    identity: ClientIdentity,
    did: DidClient,
    registry: NodeRegistry,
    parameters: ProtocolParameters,
    host: ClientHost,
    options: SendingClientOptions,
  ) {
    this.#identity = identity;
    this.#did = did;
    this.#registry = registry;
    this.#parameters = parameters;
    this.#host = host;
    this.#options = options;
    this.#random = options.randomBytes ?? defaultRandomBytes;
  }

  /**
   * Opens the wallet's identity in `options.storage` (asks the wallet for one signature; creates the identity keys
   * and prekeys the first time) and starts a dial-only libp2p host. Nothing is sent before `register` / `start`.
   */
  static async create(options: SendingClientOptions): Promise<SendingClient> {
    const ttl = options.ttlSeconds ?? DEFAULT_TTL_SECONDS;
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL_SECONDS) {
      throw new RangeError(`SendingClient.create: expected ttlSeconds in [1, ${MAX_TTL_SECONDS}], got ${ttl}`);
    }
    if (options.hops !== undefined && options.hops !== 2 && options.hops !== 3) {
      throw new RangeError(`SendingClient.create: expected hops 2 or 3, got ${String(options.hops)}`);
    }
    const invitations: unknown = options.groupInvitations;
    if (invitations !== undefined && invitations !== "ask" && invitations !== "accept") {
      throw new RangeError(
        `SendingClient.create: expected groupInvitations "ask" or "accept", got ${String(invitations)}`,
      );
    }
    checkSignedPrekeyRotation(options.signedPrekeyRotationMs);
    const identity = await ClientIdentity.open({
      signer: options.signer,
      storage: options.storage,
      chainId: options.deployment.chainId,
      didRegistry: options.deployment.contracts.DidRegistry,
      oneTimePrekeys: options.oneTimePrekeys,
      randomBytes: options.randomBytes,
      now: options.now,
    });
    const reader = options.provider ?? options.signer.provider ?? options.signer;
    const did = DidClient.connect(options.deployment, options.signer);
    const registry = NodeRegistry__factory.connect(options.deployment.contracts.NodeRegistry, reader);
    const parameters = ProtocolParameters__factory.connect(options.deployment.contracts.ProtocolParameters, reader);
    const host = await ClientHost.create(options.host);
    const client = new SendingClient(identity, did, registry, parameters, host, options);
    await client.#loadGroups();
    // The held items first: an invitation the bounds push out at load takes what was held for it along.
    await client.#loadHeld();
    await client.#loadInvitations();
    await client.#loadBlocked(); // and what a stop during a block left of a blocked admin's groups goes

    client.#seen = await SeenIds.load(identity.store, (error) => client.#emit("error", error));
    return client;
  }

  /**
   * A client for another device of the wallet `options.signer` (another app, phone, browser): it runs under a device
   * account of its own (a key drawn once and kept in `options.storage`, encrypted under the wallet's storage key),
   * with its own DID, identity and inbox. `register` funds the device account from the wallet, registers the device's
   * DID naming the wallet, and adds the device to the wallet's DID (`deviceKeys`): senders then deliver every message
   * to the user to each of its devices, and receivers show a device's messages as the user's.
   */
  static async createDevice(options: SendingClientOptions): Promise<SendingClient> {
    const provider = options.provider ?? options.signer.provider;
    if (provider === null || provider === undefined) {
      throw new ClientError("NotRegistered", "SendingClient.createDevice: expected a provider (options or signer)");
    }
    checkSignedPrekeyRotation(options.signedPrekeyRotationMs);
    const owner = await ClientIdentity.open({
      signer: options.signer,
      storage: options.storage,
      chainId: options.deployment.chainId,
      didRegistry: options.deployment.contracts.DidRegistry,
      oneTimePrekeys: 0,
      randomBytes: options.randomBytes,
    });
    let key = await owner.store.get(DEVICE_KEY_RECORD);
    if (key === undefined) {
      key = getBytes(Wallet.createRandom().privateKey);
      await owner.store.put(DEVICE_KEY_RECORD, key);
    }
    const device = new Wallet(hexlify(key), provider);
    const client = await SendingClient.create({ ...options, signer: device, provider });
    client.#owner = { signer: options.signer, address: owner.address };
    return client;
  }

  /** The wallet this client is a device of, or undefined for the wallet's own client. */
  get owner(): string | undefined {
    return this.#owner?.address;
  }

  /** The wallet address (checksummed). */
  get address(): string {
    return this.#identity.address;
  }

  /** The identity underneath (keys, prekeys, sessions). */
  get identity(): ClientIdentity {
    return this.#identity;
  }

  /** The DID client (connected to the wallet). */
  get did(): DidClient {
    return this.#did;
  }

  /** The libp2p host (its peer id is fresh per client). */
  get host(): ClientHost {
    return this.#host;
  }

  /** The home nodes this client reads its inbox from (after `register` or `start`). */
  get homeNodes(): readonly EdgeNodeInfo[] {
    return this.#homeNodes;
  }

  // ------------------------------------------------------------------------------------------------ events

  /** Adds a listener. */
  on<K extends keyof ClientEvents>(event: K, listener: ClientEvents[K]): this {
    this.#listeners[event].add(listener);
    return this;
  }

  /** Removes a listener. */
  off<K extends keyof ClientEvents>(event: K, listener: ClientEvents[K]): this {
    this.#listeners[event].delete(listener);
    return this;
  }

  #emit<K extends keyof ClientEvents>(event: K, ...args: Parameters<ClientEvents[K]>): void {
    for (const listener of this.#listeners[event]) {
      try {
        (listener as (...a: Parameters<ClientEvents[K]>) => void)(...args);
      } catch {
        // A listener's failure is the app's; it must not stop delivery to the others.
      }
    }
  }

  /**
   * The messages received from now on, as an async iterator (until `signal` aborts or the client stops). Messages
   * arriving while the consumer is busy are queued.
   */
  async *messages(options: ClientCallOptions = {}): AsyncGenerator<ReceivedMessage, void, undefined> {
    const queue: ReceivedMessage[] = [];
    let wake: (() => void) | undefined;
    const listener = (m: ReceivedMessage) => {
      queue.push(m);
      wake?.();
    };
    const onAbort = () => wake?.();
    this.on("message", listener);
    options.signal?.addEventListener("abort", onAbort);
    try {
      while (!this.#stopped && !options.signal?.aborted) {
        if (queue.length > 0) {
          yield queue.shift()!;
          continue;
        }
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      this.off("message", listener);
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Resolves with the next message that satisfies `filter` (default: any), or rejects when `signal` aborts. */
  nextMessage(
    filter: (m: ReceivedMessage) => boolean = () => true,
    options: ClientCallOptions = {},
  ): Promise<ReceivedMessage> {
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        this.off("message", listener);
        options.signal?.removeEventListener("abort", onAbort);
      };
      const listener = (m: ReceivedMessage) => {
        if (!filter(m)) return;
        cleanup();
        resolve(m);
      };
      const onAbort = () => {
        cleanup();
        reject(options.signal?.reason);
      };
      if (options.signal?.aborted) return reject(options.signal.reason);
      this.on("message", listener);
      options.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  // ------------------------------------------------------------------------------------------------ registration

  /**
   * Makes the DID match this client: registers it (with `homeNodes`) if the wallet has none; replaces the identity
   * keys if the DID names other ones (a fresh client with the same wallet: older sessions to it stop working, which
   * is what a new device must do to read the inbox); replaces the home nodes if they differ. Then publishes the
   * prekeys to the home nodes. Throws DidError for a revert (e.g. a home node that is not an edge node).
   */
  async register(options: { readonly homeNodes: readonly string[] } & ClientCallOptions): Promise<void> {
    const homeNodes = options.homeNodes.map((a) => getAddress(a));
    if (homeNodes.length === 0) throw new RangeError("SendingClient.register: expected at least one home node");
    if (this.#owner !== undefined) await this.#fundDevice();
    const ownerEntry = this.#owner && deviceLinkEntry(DeviceLink.OWNER, this.#owner.address);
    const view = await this.#did.readDid(this.address);
    if (view.status !== DidStatus.Active) {
      await this.#did.register(this.#identity, { homeNodes, deviceKeys: ownerEntry && [ownerEntry] });
    } else {
      if (ownerEntry !== undefined && !view.deviceKeys.some((k) => bytesEqual(k, ownerEntry))) {
        // An entry naming the wallet without the OWNER role (made before roles existed) would read as a device link.
        const others = view.deviceKeys.filter((k) => accountOfLinkEntry(k, DeviceLink.DEVICE) !== this.#owner!.address);
        await this.#did.setDevices([...others, ownerEntry]);
      }
      const mine = this.#identity.publicIdentity;
      if (!sameIdentity(view.identity, mine)) {
        const spk = this.#identity.signedPrekey;
        await (
          await this.#did.registry.setIdentityKeys(
            hexlify(mine.dh),
            hexlify(mine.signing),
            hexlify(spk.keyPair.publicKey),
            spk.id,
            hexlify(spk.signature),
          )
        ).wait();
        await this.#identity.store.delete(PUBLISHED_PREKEYS_RECORD);
      } else if (view.signedPrekey.id !== this.#identity.signedPrekey.id) {
        await this.#did.publishSignedPrekey(this.#identity); // a local rotation the chain missed
      }
      const same =
        view.homeNodes.length === homeNodes.length && view.homeNodes.every((a, i) => getAddress(a) === homeNodes[i]);
      if (!same) await this.#did.setHomeNodes(homeNodes);
    }
    if (this.#owner !== undefined) await this.#linkToOwner();
    await this.#loadHomeNodes(homeNodes);
    await this.publishPrekeys(options);
  }

  /** Tops the device account up from the wallet when it is below half the funding. */
  async #fundDevice(): Promise<void> {
    const owner = this.#owner!;
    const funding = this.#options.deviceFunding ?? DEFAULT_DEVICE_FUNDING;
    const provider = this.#options.provider ?? owner.signer.provider!;
    if ((await provider.getBalance(this.address)) >= funding / 2n) return;
    await (await owner.signer.sendTransaction({ to: this.address, value: funding })).wait();
  }

  /** Adds this device account to the wallet's DID (the wallet signs `setDevices`). */
  async #linkToOwner(): Promise<void> {
    const owner = this.#owner!;
    const ownerDid = DidClient.connect(this.#options.deployment, owner.signer);
    const view = await ownerDid.readDid(owner.address);
    if (view.status !== DidStatus.Active) {
      throw new ClientError(
        "NotRegistered",
        `register: the wallet ${owner.address} has no active DID to add a device to`,
      );
    }
    const mine = deviceLinkEntry(DeviceLink.DEVICE, this.address);
    if (!view.deviceKeys.some((k) => bytesEqual(k, mine))) await ownerDid.setDevices([...view.deviceKeys, mine]);
  }

  async #loadHomeNodes(operators?: readonly string[]): Promise<void> {
    const list = operators ?? (await this.#did.readDid(this.address)).homeNodes;
    const nodes: EdgeNodeInfo[] = [];
    for (const operator of list) {
      const info = await readEdgeNode(this.#registry, operator);
      if (info !== undefined) nodes.push(info);
    }
    if (nodes.length === 0) {
      throw new ClientError("NotRegistered", `SendingClient: ${this.address} has no usable home node in its DID`);
    }
    this.#homeNodes = nodes;
  }

  get #signer(): RequestSigner {
    return {
      recipientId: recipientIdOf(this.address),
      signingSecretKey: this.#identity.identityKeyPair.signing.secretKey,
    };
  }

  /**
   * Publishes the identity, the current signed prekey and the one-time prekeys not yet published to the home nodes,
   * each one-time prekey to exactly one node (a prekey handed out by two nodes could open two sessions, and the
   * second would fail). A node that then holds fewer than ONE_TIME_PREKEYS_LOW_WATER gets ONE_TIME_PREKEYS_BATCH new
   * ones. Returns how many one-time prekeys each node holds. Calls run one at a time.
   */
  async publishPrekeys(options: ClientCallOptions = {}): Promise<number[]> {
    const run = this.#prekeyQueue.then(() => this.#publishPrekeys(options));
    this.#prekeyQueue = run.catch(() => undefined);
    return run;
  }

  async #publishPrekeys(options: ClientCallOptions): Promise<number[]> {
    if (this.#homeNodes.length === 0) await this.#loadHomeNodes();
    // One signed prekey for every node, even if a rotation makes a newer one meanwhile (the record must not lie).
    const spk = this.#identity.signedPrekey;
    const record = await this.#identity.store.get(PUBLISHED_PREKEYS_RECORD);
    const publishedUpTo = record === undefined ? 0 : new DataView(record.buffer, record.byteOffset).getUint32(0);
    const fresh = this.#identity
      .oneTimePrekeyPublics()
      .filter((p) => p.id > publishedUpTo)
      .slice(0, MAX_ONE_TIME_PREKEYS * this.#homeNodes.length);
    const perNode = this.#homeNodes.map(() => [] as { id: number; publicKey: Uint8Array }[]);
    fresh.forEach((p, i) => perNode[i % perNode.length].push(p));
    let highest = fresh.reduce((m, p) => Math.max(m, p.id), publishedUpTo);
    const held: number[] = [];
    for (const [i, node] of this.#homeNodes.entries()) {
      held.push(await this.#publishTo(node, spk, perNode[i], options));
      if (held[i] < ONE_TIME_PREKEYS_LOW_WATER) {
        const batch = (await this.#identity.addOneTimePrekeys(ONE_TIME_PREKEYS_BATCH)).map((p) => ({
          id: p.id,
          publicKey: p.keyPair.publicKey,
        }));
        held[i] = await this.#publishTo(node, spk, batch, options);
        highest = batch.reduce((m, p) => Math.max(m, p.id), highest);
      }
    }
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, highest);
    await this.#identity.store.put(PUBLISHED_PREKEYS_RECORD, bytes);
    const spkBytes = new Uint8Array(4);
    new DataView(spkBytes.buffer).setUint32(0, spk.id);
    await this.#identity.store.put(PUBLISHED_SIGNED_PREKEY_RECORD, spkBytes);
    return held;
  }

  async #publishTo(
    node: EdgeNodeInfo,
    spk: SignedPrekey,
    oneTimePrekeys: readonly { id: number; publicKey: Uint8Array }[],
    options: ClientCallOptions,
  ): Promise<number> {
    const publication = {
      identity: this.#identity.publicIdentity,
      signedPrekey: { id: spk.id, publicKey: spk.keyPair.publicKey, signature: spk.signature },
      oneTimePrekeys,
    };
    return retryChainLag(
      () =>
        publishPrekeys(this.#host, asNode(node), this.#signer, publication, {
          signal: options.signal,
          randomBytes: this.#random,
        }),
      options.signal,
    );
  }

  /** After a one-time prekey was used: check the home nodes' stock (and top it up) a moment later, once per burst. */
  #schedulePrekeys(): void {
    if (this.#stopped) return;
    this.#prekeyTimer ??= setTimeout(() => {
      this.#prekeyTimer = undefined;
      this.#billing = this.#billing
        .then(() => this.publishPrekeys())
        .catch((error: Error) => this.#emit("error", error));
    }, BILL_SUBMIT_DELAY_MS);
  }

  /**
   * Replaces the signed prekey if it is older than `signedPrekeyRotationMs` (by the `now` clock), and resolves true
   * if it did. What `start()` and the check timer run; an app may call it too (e.g. when a device wakes). In order:
   *
   * 1. The DID and the home nodes catch up with the local signed prekey, if an earlier rotation stopped half-way
   *    (`DidClient.publishSignedPrekey` when the DID names another id; `publishPrekeys` when the nodes were last
   *    handed another). A failure here throws before anything rotates: a prekey is never deleted while the chain or
   *    a node may still hand it out.
   * 2. If due: the local rotation (`ClientIdentity.rotateSignedPrekey`: a new prekey, id + 1, stored before anything
   *    publishes it; the previous kept; the one before deleted), then the chain, then the home nodes, as in step 1.
   *
   * A crash or failure after the local rotation leaves the identity ahead: the next check (or `register`) completes
   * it, and meanwhile the chain and nodes hand out the previous prekey, which still opens. Throws ClientError
   * "NotRegistered" when the DID is not active or names other identity keys (`register` takes it back), DidError or
   * a provider's error for a failed transaction, a net error for a node that cannot be reached. Checks do not
   * overlap: a call while one runs gets that one's result.
   */
  rotateSignedPrekeyIfDue(options: ClientCallOptions = {}): Promise<boolean> {
    this.#signedPrekeyCheck ??= this.#checkSignedPrekey(options).finally(() => {
      this.#signedPrekeyCheck = undefined;
    });
    return this.#signedPrekeyCheck;
  }

  async #checkSignedPrekey(options: ClientCallOptions): Promise<boolean> {
    await this.#syncSignedPrekey(options);
    const now = this.#options.now?.() ?? Date.now();
    if (now - this.#identity.signedPrekeyCreatedAt < this.#rotationMs) return false;
    this.#checkNotStopped("rotateSignedPrekeyIfDue");
    options.signal?.throwIfAborted();
    await this.#identity.rotateSignedPrekey();
    await this.#syncSignedPrekey(options);
    return true;
  }

  /** Brings the DID, then the home nodes, up to the local signed prekey (step 1 of `rotateSignedPrekeyIfDue`). */
  async #syncSignedPrekey(options: ClientCallOptions): Promise<void> {
    const where = "rotateSignedPrekeyIfDue";
    this.#checkNotStopped(where);
    options.signal?.throwIfAborted();
    const spk = this.#identity.signedPrekey;
    const view = await this.#did.readDid(this.address);
    if (view.status !== DidStatus.Active || !sameIdentity(view.identity, this.#identity.publicIdentity)) {
      throw new ClientError(
        "NotRegistered",
        `${where}: expected ${this.address}'s DID to be active with this client's identity keys (register() makes it so)`,
      );
    }
    if (view.signedPrekey.id !== spk.id) await this.#did.publishSignedPrekey(this.#identity);
    const record = await this.#identity.store.get(PUBLISHED_SIGNED_PREKEY_RECORD);
    const published = record?.length === 4 ? readU32(record, 0) : undefined;
    if (published !== spk.id) await this.publishPrekeys(options);
  }

  get #rotationMs(): number {
    return this.#options.signedPrekeyRotationMs ?? SIGNED_PREKEY_ROTATION_MS;
  }

  /** The check timer's tick: a check unless one runs; its failure is an "error" event, tried again at the next tick. */
  #onSignedPrekeyTimer(): void {
    if (this.#stopped || this.#signedPrekeyCheck !== undefined) return;
    this.rotateSignedPrekeyIfDue({ signal: this.#running?.signal }).catch((error: Error) => this.#emit("error", error));
  }

  // ------------------------------------------------------------------------------------------------ receiving

  /**
   * Starts receiving: drains each home node's inbox with FETCH (messages stored while offline), then keeps a live
   * SUBSCRIBE to each, reconnecting with backoff until `stop()`. Resolves once the drain is done, the subscriptions
   * are opening and the signed prekey was checked (`rotateSignedPrekeyIfDue`, run then and by a timer every
   * `signedPrekeyCheckMs` until `stop()`; a failure is an "error" event, retried at the next check). First, a group
   * list followed before but not stored (a storage failure) is completed; a failure there is an "error" event (the
   * next `sendToGroup` tries again, and throws it). Then what was held before the last stop (loaded at create) is
   * taken up: in a group this client is in, the held keys of members' clients are taken and the held messages tried
   * once more (`#retakeHeld`); after the drain, each message still held asks for its key as when it came
   * (`#scheduleKeyRequest`: the same rules, whom and how often; with "ask", for a group not joined, only this user's
   * own clients). A second call while a start runs shares it; one after it resolves at once. A `stop()` during a
   * start ends it after the drain, with nothing subscribed.
   */
  start(options: ClientCallOptions = {}): Promise<void> {
    if (this.#stopped) return Promise.reject(new ClientError("Stopped", "SendingClient.start: the client was stopped"));
    // One start at a time: a second call while the first runs gets its result, one after it returns at once.
    this.#starting ??= this.#start(options).catch((error: unknown) => {
      this.#starting = undefined; // a failed start (the drain's signal aborted, say) may be tried again
      throw error;
    });
    return this.#starting;
  }

  async #start(options: ClientCallOptions): Promise<void> {
    if (this.#homeNodes.length === 0) await this.#loadHomeNodes();
    // A list followed before the last stop whose change could not be stored is completed before anything is read.
    for (const [id, state] of this.#groups) {
      if (state.pending === undefined) continue;
      await this.#withGroup(id, () => this.#settleList(state)).catch((error: Error) => this.#emit("error", error));
    }
    const held = [...this.#pendingGroup];
    for (const id of new Set([...held.map((m) => m.groupId), ...this.#heldGroupKeys.map((k) => k.groupId)])) {
      if (!this.#groups.has(id)) continue;
      await this.#withGroup(id, () => this.#retakeHeld(id)).catch((error: Error) => this.#emit("error", error));
    }
    await this.sync(options); // a key that came while this client was stopped is in the inbox: no request for it
    // Stopped meanwhile: no subscription may start after `stop()` aborted the ones there were (none yet).
    if (this.#stopped) return;
    for (const m of held) if (this.#pendingGroup.includes(m)) this.#scheduleKeyRequest(m);
    this.#running = new AbortController();
    const signal = this.#running.signal;
    this.#subscriptions = this.#homeNodes.map((node) => this.#subscribeLoop(node, signal));
    // Messages flow meanwhile; a failure is an "error" event and the timer's next check tries again.
    await this.rotateSignedPrekeyIfDue({ signal }).catch((error: Error) => this.#emit("error", error));
    if (this.#stopped) return;
    this.#signedPrekeyTimer = setInterval(() => this.#onSignedPrekeyTimer(), signedPrekeyCheckMs(this.#rotationMs));
    this.#signedPrekeyTimer.unref();
  }

  /**
   * Stops receiving, waits for the work in flight (bills included; group fan-outs and key answers at most
   * STOP_FAN_OUT_WAIT_MS) and closes the libp2p host.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#signedPrekeyTimer);
    this.#signedPrekeyTimer = undefined;
    this.#running?.abort(new ClientError("Stopped", "SendingClient: stopped"));
    await Promise.allSettled(this.#subscriptions);
    await this.#queue.catch(() => undefined);
    // Fan-outs run outside the group's lock and the receive queue; what is still waiting on the network after the
    // bound is cut off by the host's stop, and stores nothing after it (`#owedAfterSend`, the key answers check).
    let bound: NodeJS.Timeout | undefined;
    // A signed-prekey check in flight gets the same bound: its chain transaction does not take the stop's signal.
    await Promise.race([
      Promise.allSettled([...this.#groupFanOuts.values(), this.#signedPrekeyCheck]),
      new Promise((resolve) => (bound = setTimeout(resolve, STOP_FAN_OUT_WAIT_MS))),
    ]);
    clearTimeout(bound);
    clearTimeout(this.#prekeyTimer);
    this.#prekeyTimer = undefined;
    for (const timer of this.#keyRequestTimers) clearTimeout(timer);
    this.#keyRequestTimers.clear();
    for (const key of this.#heldGroupKeys) key.distribution.fill(0);
    this.#heldGroupKeys = [];
    // The invitations stay in storage for the next start; their keys need not stay in this process's memory.
    for (const invitation of this.#invitations.values()) invitation.distribution.fill(0);
    this.#invitations.clear();
    this.#flushBills();
    await this.#billing.catch(() => undefined);
    await this.#host.stop();
  }

  /**
   * Fetches every stored message from every home node, page after page (FETCH with the last envelope of the page
   * before as its cursor, so the current backup's chunks, which stay in the inbox, hide nothing behind them),
   * processes and acknowledges them. Returns how many new messages were processed. A home node that cannot be
   * reached is reported through the "error" event and skipped; so is one whose page does not move past its cursor
   * (a node must answer in its order, stored time then id), or that is still handing out pages after
   * SYNC_MAX_PAGES_PER_NODE.
   */
  async sync(options: ClientCallOptions = {}): Promise<number> {
    if (this.#homeNodes.length === 0) await this.#loadHomeNodes();
    let total = 0;
    for (const node of this.#homeNodes) {
      try {
        let after: InboxCursor | undefined;
        for (let page = 0; ; page++) {
          const batch = await retryChainLag(
            () =>
              fetchInbox(this.#host, asNode(node), this.#signer, INBOX_MAX_BATCH, {
                signal: options.signal,
                randomBytes: this.#random,
                ...(after && { after }),
              }),
            options.signal,
          );
          if (!inboxPageInOrder(batch, after)) {
            throw new NodeProtocolError(
              `SendingClient.sync: ${node.operator} answered an inbox page out of order (expected stored time, then ` +
                `id, after the cursor)`,
              node.peerId,
            );
          }
          if (page === SYNC_MAX_PAGES_PER_NODE && batch.length > 0) {
            throw new NodeProtocolError(
              `SendingClient.sync: ${node.operator} still hands out inbox pages after ${SYNC_MAX_PAGES_PER_NODE}`,
              node.peerId,
            );
          }
          total += await this.#enqueue(node, batch);
          if (batch.length < INBOX_MAX_BATCH) break;
          const last = batch[batch.length - 1];
          after = { storedAt: last.storedAt, messageId: last.messageId };
        }
      } catch (error) {
        if (options.signal?.aborted) throw error;
        this.#emit("error", error as Error);
      }
    }
    return total;
  }

  async #subscribeLoop(node: EdgeNodeInfo, signal: AbortSignal): Promise<void> {
    let delay = SUBSCRIBE_BACKOFF_MS;
    while (!signal.aborted) {
      try {
        for await (const batch of subscribeInbox(this.#host, asNode(node), this.#signer, {
          signal,
          randomBytes: this.#random,
        })) {
          delay = SUBSCRIBE_BACKOFF_MS;
          await this.#enqueue(node, batch);
        }
      } catch (error) {
        if (signal.aborted) return;
        this.#emit("error", error as Error);
      }
      if (signal.aborted) return;
      await sleep(delay, signal);
      delay = Math.min(delay * 2, SUBSCRIBE_BACKOFF_MAX_MS);
    }
  }

  /** Processes a batch from one node in the client's queue; resolves with how many messages were new. */
  #enqueue(node: EdgeNodeInfo, batch: readonly StoredEnvelope[]): Promise<number> {
    const run = this.#queue.then(() => this.#processBatch(node, batch));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #processBatch(node: EdgeNodeInfo, batch: readonly StoredEnvelope[]): Promise<number> {
    const ack: Uint8Array[] = [];
    let fresh = 0;
    let bytes = 0n;
    for (const stored of batch) {
      const id = toHex(stored.messageId);
      if (stored.envelope[0] === EnvelopeKind.BACKUP) {
        // Parked on purpose: acknowledged only once a newer backup replaced it.
        if (this.#keepBackupChunk(node, stored) === "stale") {
          ack.push(stored.messageId);
          bytes += BigInt(stored.envelope.length);
        }
        continue;
      }
      ack.push(stored.messageId);
      bytes += BigInt(stored.envelope.length);
      if (this.#seen.has(id)) continue;
      this.#seen.add(id);
      fresh++;
      try {
        await this.#receive(node, stored);
      } catch (error) {
        this.#emit("error", error as Error);
      }
    }
    try {
      await this.#seen.flush(); // before the acknowledgement: a replica met after a restart is known
    } catch (error) {
      // Not acknowledged then: the batch comes again, and a restart before the ids are stored must find it.
      this.#emit("error", error as Error);
      return fresh;
    }
    if (ack.length > 0) {
      try {
        await ackInbox(this.#host, asNode(node), this.#signer, ack, { randomBytes: this.#random });
        await this.#count(node.operator, BigInt(ack.length), bytes);
      } catch (error) {
        this.#emit("error", error as Error);
      }
      if (this.#options.autoBills !== false) this.#scheduleBills(node.operator);
    }
    return fresh;
  }

  async #receive(node: EdgeNodeInfo, stored: StoredEnvelope): Promise<void> {
    const me = this.#identity.identityKeyPair.dh;
    let inner;
    try {
      inner = openEnvelope(stored.envelope, me);
    } catch (error) {
      if (error instanceof EnvelopeError) {
        throw new TamperedMessageError(`SendingClient: envelope ${toHex(stored.messageId)}: ${error.message}`);
      }
      throw error;
    }
    const sender = inner.sender;
    let plaintext: Uint8Array;
    if (inner.type === InnerType.INITIAL) {
      let accepted;
      try {
        accepted = await this.#identity.openSession(inner.body);
      } catch (error) {
        if (!(error instanceof X3dhError) || error.code !== "Replayed") throw error;
        throw new TamperedMessageError(
          `SendingClient: envelope ${toHex(stored.messageId)} from ${sender}: an initial message already accepted, ` +
            `sent again (a replay): ${error.message}`,
        );
      }
      // The X3DH identity must be the one the claimed sender's DID names: the seal does not authenticate.
      const did = await this.#did.readDid(sender);
      if (did.status !== DidStatus.Active || !sameIdentity(did.identity, accepted.peerIdentity)) {
        throw new TamperedMessageError(
          `SendingClient: initial message claims ${sender} but its identity key is not that DID's`,
        );
      }
      const slot = this.#sessions.get(sender);
      this.#sessions.set(sender, { current: accepted.session, previous: slot?.current });
      await this.#identity.saveSession(sender, accepted.session);
      // Only now is its one-time prekey deleted, or its base key noted against a replay: a stop before the session
      // was stored lets the message come again and open, where a note made earlier would refuse it, losing it.
      await accepted.commit().catch((error: Error) => this.#emit("error", error));
      plaintext = accepted.plaintext;
      this.#schedulePrekeys(); // the sender used one of the home nodes' one-time prekeys
    } else {
      const slot = await this.#slot(sender);
      if (slot === undefined) {
        throw new TamperedMessageError(
          `SendingClient: a ratchet message from ${sender}, with whom there is no session`,
        );
      }
      try {
        plaintext = slot.current.decrypt(inner.body);
      } catch (error) {
        if (slot.previous === undefined || !(error instanceof RatchetError)) throw error;
        plaintext = slot.previous.decrypt(inner.body); // both sides opened a session at once: converge on this one
        this.#sessions.set(sender, { current: slot.previous, previous: slot.current });
      }
      await this.#identity.saveSession(sender, this.#sessions.get(sender)!.current);
    }
    await this.#handleContent(node, stored, sender, parseContent(plaintext));
  }

  async #handleContent(node: EdgeNodeInfo, stored: StoredEnvelope, from: string, content: Content): Promise<void> {
    if (content.kind === ContentKind.GROUP_KEY) {
      await this.#withGroup(toHex(content.groupId), () => this.#onGroupKey(from, content));
      return;
    }
    // A linked device's message is shown as its user's, with the device account beside it.
    const user = await this.#shownUser(from);
    const base = {
      messageId: toHex(stored.messageId),
      deliveredBy: node.operator,
      storedAt: stored.storedAt,
      ...(user === from ? { from } : { from: user, device: from }),
    };
    switch (content.kind) {
      case ContentKind.TEXT:
      case ContentKind.BINARY:
        this.#emit("message", { ...base, ...directMessage(content) });
        return;
      case ContentKind.SENT:
        // Only another client of this same user may say "I sent this": anyone else is lying.
        if (user !== this.#user) {
          throw new TamperedMessageError(
            `SendingClient: a sent copy from ${from}, which is no client of ${this.#user}`,
          );
        }
        this.#emit("message", { ...base, ...directMessage(content.content), sent: true, to: content.to });
        return;
      case ContentKind.GROUP_MESSAGE: {
        const pending = { base, from, groupId: toHex(content.groupId), message: content.message };
        await this.#withGroup(pending.groupId, async () => {
          if (await this.#openGroupMessage(pending)) return;
          // A group not joined whose admin is blocked: no key will be taken, so nothing is held or asked for.
          if (!this.#groups.has(pending.groupId) && this.#blockedAdmins.has(adminOfGroup(pending.groupId))) return;
          await this.#holdGroupMessage(pending);
          this.#scheduleKeyRequest(pending);
        });
        return;
      }
      case ContentKind.GROUP_KEY_REQUEST:
        await this.#onKeyRequest(from, content.groupId);
        return;
    }
  }

  /**
   * Decrypts and emits a group message; false when the sender's key (or the group) is not here yet: the key travels
   * in another message, on another route, and may arrive after. False too, with an "error" event, when the group
   * cannot be stored after the decrypt: the session is put back as it was (its chain step not spent), so the message
   * opens later (held: at the next key for the group, or the next start) instead of counting as a duplicate then.
   * Other failures throw.
   */
  async #openGroupMessage(m: PendingGroupMessage): Promise<boolean> {
    const group = this.#groups.get(m.groupId);
    if (group === undefined) return false;
    // The key's owner is checked before the chain step is spent: a participant that forwards another member's
    // message as its own must not make the real one unreadable here.
    const signer = group.session.senderOf(m.message);
    if (signer === undefined) return false;
    if (getAddress(signer) !== m.from) {
      throw new TamperedMessageError(`SendingClient: group message from ${m.from} under the key of ${signer}`);
    }
    const before = group.session.serialize();
    let opened;
    try {
      try {
        opened = group.session.decrypt(m.message);
      } catch (error) {
        if (error instanceof SenderKeyError && error.code === "UnknownSenderKey") return false;
        throw error;
      }
      try {
        await this.#saveGroup(m.groupId);
      } catch (error) {
        group.session = GroupSession.deserialize(before, this.#sessionOptions());
        opened.plaintext.fill(0);
        this.#emit("error", error as Error);
        return false;
      }
    } finally {
      before.fill(0);
    }
    const text = decodeText(opened.plaintext);
    this.#emit("message", {
      ...m.base,
      groupId: m.groupId,
      ...(text === undefined
        ? { kind: "binary" as const, data: opened.plaintext }
        : { kind: "text" as const, text, data: opened.plaintext }),
    });
    return true;
  }

  /**
   * After KEY_REQUEST_DELAY_MS, asks for the keys a held group message still lacks (`#requestKeys`), on the group's
   * lock; failures are "error" events.
   */
  #scheduleKeyRequest(m: PendingGroupMessage): void {
    if (this.#stopped) return;
    const timer = setTimeout(() => {
      this.#keyRequestTimers.delete(timer);
      this.#withGroup(m.groupId, async () => {
        if (!this.#stopped && this.#pendingGroup.includes(m)) await this.#requestKeys(m);
      }).catch((error: Error) => this.#emit("error", error));
    }, KEY_REQUEST_DELAY_MS);
    this.#keyRequestTimers.add(timer);
  }

  /**
   * Asks for the keys a held group message lacks (a key whose delivery failed, or a restart before joining). In a
   * group this client is in: the sending account, only if it acts for a member (an outsider's message must not make
   * this client write to anyone). In a group it is not in: with `groupInvitations` "accept", the sending account,
   * the admin (whose address begins the group id) and its own user's account (whose word a device joins on); with
   * "ask", only its own user's account (and the sender, if it is a device of that user): no other user is written to
   * before the user accepts. One round per sending account per KEY_REQUEST_INTERVAL_MS, whatever group ids it makes
   * up; each account is asked at most once per interval and group. The answer is the current key: this message stays unreadable (a chain only moves forward), the next ones
   * open. A request that cannot be sent is an "error" event.
   */
  async #requestKeys(m: PendingGroupMessage): Promise<void> {
    const state = this.#groups.get(m.groupId);
    const targets = new Set([m.from]);
    if (state !== undefined) {
      const user = await this.#actingUser(m.from).catch(() => undefined);
      if (user === undefined || !state.members.includes(user)) return;
    } else {
      if (!this.#due(this.#askingSenders, m.from)) return;
      if (this.#options.groupInvitations !== "accept") {
        // With "ask", another user's answer could only be an invitation the user did not ask for (or bring back one
        // it declined, or one a bound pushed out, which then pushes out the next): only this client's own user is
        // asked, whose clients in the group answer with a key this client joins on at once.
        targets.clear();
        targets.add(this.#user);
        if ((await this.#actingUser(m.from).catch(() => undefined)) === this.#user) targets.add(m.from);
      } else {
        // The admin is read from a group id the sender chose: asked at most once a minute whatever the group, so no
        // sender, nor many of them, can make this client write to one account more often.
        const admin = getAddress(`0x${m.groupId.slice(0, 40)}`);
        if (this.#due(this.#askedAdmins, admin)) targets.add(admin);
        targets.add(this.#user);
      }
    }
    targets.delete(this.address);
    const groupId = getBytes(`0x${m.groupId}`);
    for (const to of targets) {
      if (this.#due(this.#askedKeys, `${m.groupId}:${to}`)) await this.#sendKeyRequest(groupId, to);
    }
  }

  /** Sends `to` a GROUP_KEY_REQUEST for a group; a failure is an "error" event. */
  async #sendKeyRequest(groupId: Uint8Array, to: string, options: ClientCallOptions = {}): Promise<void> {
    try {
      await this.#sendContent(to, encodeContent({ kind: ContentKind.GROUP_KEY_REQUEST, groupId }), options);
    } catch (error) {
      this.#emit("error", error as Error);
    }
  }

  /**
   * A participant asks for this client's sender key: it got a group message it could not open. Answered (a GROUP_KEY
   * with the current key and list) only if this client is in the group and the requester acts for a current member
   * (of the stored list, and of a pending one: `GroupState.pending`), at most once per KEY_REQUEST_INTERVAL_MS per
   * requester; both checked before anything else, so that no one else can make this client retry a pending list
   * (chain reads, stores). Then, under the group's lock, a pending list is completed (a member it drops is not
   * answered), a device linked since joins the session (owed the key), and the key at the current chain step is
   * taken and queued behind the group's fan-outs (`#queueFanOut`), like a group message: taken and queued under the
   * same lock, the keys leave in the order of their chain steps. The receive path does not wait for the send; its
   * failures are "error" events.
   */
  async #onKeyRequest(from: string, groupId: Uint8Array): Promise<void> {
    const id = toHex(groupId);
    const known = this.#groups.get(id);
    if (known === undefined) {
      throw new ClientError("UnknownGroup", `SendingClient: a key request from ${from} for group ${id}, not joined`);
    }
    const user = await this.#actingUser(from);
    // The admin's newest word: a pending list (completed before the answer) over the stored one.
    const isMember = (state: GroupState) => (state.pending?.members ?? state.members).includes(user);
    if (!isMember(known)) {
      throw new ClientError("NotMember", `SendingClient: a key request for group ${id} from ${from}, no member's`);
    }
    if (!this.#due(this.#answeredKeys, `${id}:${from}`)) return;
    await this.#withGroup(id, async () => {
      const state = this.#groups.get(id);
      if (this.#stopped || state === undefined) return;
      await this.#settleList(state); // a member the admin dropped must not be sent the key this client still has
      if (!isMember(state)) return; // removed since the request came
      if (!state.session.members.includes(from)) {
        state.session.addMember(from).fill(0);
        state.owed.add(from); // until the answer reaches it (`#owedAfterSend`)
        await this.#saveGroup(id);
      }
      const plan: GroupSendPlan = {
        id,
        state,
        epoch: state.session.epoch,
        keyTo: [from],
        keyContent: this.#groupKeyContent(state),
        to: [],
        memberOf: new Map([[from, user]]),
        body: new Uint8Array(0),
        ciphertext: new Uint8Array(0),
      };
      void this.#queueFanOut(id, () => this.#fanOut(plan, {})).then(
        (answered) => answered.unreached.forEach((u) => this.#emit("error", u.error)),
        (error: Error) => this.#emit("error", error),
      );
    });
  }

  /** The GROUP_KEY content with this client's sender key at its current chain step and the group's list. */
  #groupKeyContent(state: GroupState): Uint8Array {
    return encodeContent({
      kind: ContentKind.GROUP_KEY,
      groupId: state.session.groupId,
      admin: state.admin,
      version: state.version,
      members: state.members,
      distribution: state.session.distributionMessage(),
    });
  }

  /**
   * Whether `key` is due in `book` (requests asked, answered, or rounds per sender): never noted, or noted
   * KEY_REQUEST_INTERVAL_MS ago or more; then it is noted now. False too while KEY_REQUESTS_TRACKED recent ones are
   * in that book (each book has its own bound, so a flood of one kind cannot starve another).
   */
  #due(book: Map<string, number>, key: string): boolean {
    const now = Date.now();
    const last = book.get(key);
    if (last !== undefined && now - last < KEY_REQUEST_INTERVAL_MS) return false;
    if (book.size >= KEY_REQUESTS_TRACKED) {
      for (const [k, at] of book) if (now - at >= KEY_REQUEST_INTERVAL_MS) book.delete(k);
      if (book.size >= KEY_REQUESTS_TRACKED) return false;
    }
    book.set(key, now);
    return true;
  }

  /**
   * Holds a group message until its key comes, and stores it (HELD_MESSAGES_PREFIX) unless it was `loaded` from there:
   * it was acknowledged to the inbox, so a restart must find it. A failed write is an "error" event and the message
   * stays held in memory. Past PENDING_GROUP_MESSAGES_KEPT the oldest goes (reported, its record deleted).
   */
  async #holdGroupMessage(m: PendingGroupMessage, loaded = false): Promise<void> {
    let dropped: PendingGroupMessage | undefined;
    if (this.#pendingGroup.length >= PENDING_GROUP_MESSAGES_KEPT) {
      dropped = this.#pendingGroup.shift()!;
      this.#emit(
        "error",
        new ClientError("UnknownGroup", `SendingClient: dropped group message ${dropped.base.messageId}: no key came`),
      );
    }
    this.#pendingGroup.push(m);
    if (dropped !== undefined) await this.#deleteHeld([HELD_MESSAGES_PREFIX + dropped.base.messageId]);
    if (!loaded) await this.#saveHeldMessage(m);
  }

  /**
   * Retries the held messages of a group after a key arrived. One that opens (the group, its chain step spent, stored
   * first: `#openGroupMessage`), or cannot open (reported), leaves the buffer and its record is deleted. The others
   * stay where they are: other groups' holds and drops, on the receive path, may run meanwhile.
   */
  async #retryGroupMessages(groupId: string): Promise<void> {
    for (const m of this.#pendingGroup.filter((p) => p.groupId === groupId)) {
      // Dropped meanwhile (a bound, on the receive path of another group): reported as lost, so not shown now.
      if (!this.#pendingGroup.includes(m)) continue;
      try {
        // Not opened: no key yet, or the group could not be stored after the decrypt (rolled back): stays held.
        if (!(await this.#openGroupMessage(m))) continue;
      } catch (error) {
        this.#emit("error", error as Error); // it cannot open: gone for good
      }
      this.#pendingGroup = this.#pendingGroup.filter((p) => p !== m);
      await this.#deleteHeld([HELD_MESSAGES_PREFIX + m.base.messageId]);
    }
  }

  /**
   * At start, for a group this client is in: the keys held for it whose sender acts for a member now (records left by
   * a stop between a group's store and their deletion) are taken, and its held messages tried once more (their key
   * may have come just before the stop).
   */
  async #retakeHeld(id: string): Promise<void> {
    const state = this.#groups.get(id);
    if (state === undefined) return;
    if (this.#heldGroupKeys.some((k) => k.groupId === id)) {
      const taken = await this.#takeHeldKeys(state, "keep");
      await this.#saveGroup(id);
      await this.#deleteHeld(taken);
    }
    await this.#retryGroupMessages(id);
  }

  /**
   * The head of a new held record: `magic` || held at (ms, u32 high || u32 low) || group id (32) || the sending
   * client (20). "Held at" is now, but past the last one stamped, so that a burst within 1 ms keeps its order.
   */
  #heldRecord(magic: Uint8Array, groupId: string, from: string): ByteWriter {
    this.#heldAt = Math.max(Date.now(), this.#heldAt + 1);
    return new ByteWriter()
      .bytes(magic)
      .u64(this.#heldAt)
      .bytes(getBytes(`0x${groupId}`))
      .bytes(getBytes(from));
  }

  /** Stores a held group message (HELD_MESSAGES_PREFIX); a failure is an "error" event, not thrown. */
  async #saveHeldMessage(m: PendingGroupMessage): Promise<void> {
    const record = this.#heldRecord(HELD_MESSAGE_RECORD_MAGIC, m.groupId, m.from)
      .bytes(getBytes(m.base.from))
      .bytes(getBytes(m.base.deliveredBy))
      .u64(m.base.storedAt)
      .bytes(m.message)
      .finish();
    await this.#identity.store
      .put(HELD_MESSAGES_PREFIX + m.base.messageId, record)
      .catch((error: Error) => this.#emit("error", error));
  }

  /** Stores a held GROUP_KEY (HELD_KEYS_PREFIX); a failure is an "error" event, not thrown. */
  async #saveHeldKey(key: HeldGroupKey): Promise<void> {
    const record = this.#heldRecord(HELD_KEY_RECORD_MAGIC, key.groupId, key.from).bytes(key.distribution).finish();
    try {
      await this.#identity.store.put(key.name!, record);
    } catch (error) {
      this.#emit("error", error as Error);
    } finally {
      record.fill(0);
    }
  }

  /** Deletes the records of held messages or keys that left the buffer; a failure is an "error" event. */
  async #deleteHeld(names: readonly (string | undefined)[]): Promise<void> {
    for (const name of names) {
      if (name !== undefined)
        await this.#identity.store.delete(name).catch((error: Error) => this.#emit("error", error));
    }
  }

  /**
   * Loads the held group messages and GROUP_KEYs (at create, after the groups and invitations), each oldest first,
   * through the bounds they met when they came (`#holdGroupMessage`, `#holdGroupKey`: what is past them goes,
   * reported and deleted). A record that does not open or parse is reported (IdentityError "CorruptStorage") and
   * deleted; a storage that fails to answer keeps it. Those of a group already joined stay held too: `start` tries
   * the messages again, and the keys go the way of any held key when a list next changes.
   */
  async #loadHeld(): Promise<void> {
    const messages = await this.#readHeld(
      HELD_MESSAGES_PREFIX,
      "held group message",
      HELD_MESSAGE_RECORD_MAGIC,
      (id, r, fail) => {
        if (!/^[0-9a-f]{32}$/.test(id)) throw fail("expected a message id of 32 hex digits in the name");
        const groupId = toHex(r.bytes(GROUP_ID_LENGTH, "group id"));
        const from = getAddress(hexlify(r.bytes(20, "sender")));
        const user = getAddress(hexlify(r.bytes(20, "user")));
        const deliveredBy = getAddress(hexlify(r.bytes(20, "delivered by")));
        const storedAt = r.u64("stored at");
        if (r.remaining === 0) throw fail("expected a sender-key message");
        const message = r.bytes(r.remaining, "message");
        const base = {
          messageId: id,
          deliveredBy,
          storedAt,
          ...(user === from ? { from } : { from: user, device: from }),
        };
        return { base, from, groupId, message };
      },
    );
    for (const m of messages) await this.#holdGroupMessage(m, true);
    const keys = await this.#readHeld(HELD_KEYS_PREFIX, "held group key", HELD_KEY_RECORD_MAGIC, (id, r, fail) => {
      if (!new RegExp(`^[0-9a-f]{${2 * HELD_KEY_NAME_BYTES}}$`).test(id)) {
        throw fail(`expected ${2 * HELD_KEY_NAME_BYTES} hex digits in the name`);
      }
      const groupId = toHex(r.bytes(GROUP_ID_LENGTH, "group id"));
      const from = getAddress(hexlify(r.bytes(20, "sender")));
      if (r.remaining !== SENDER_KEY_DISTRIBUTION_LENGTH) throw fail("expected a sender-key distribution message");
      return { groupId, from, distribution: r.bytes(r.remaining, "distribution"), name: HELD_KEYS_PREFIX + id };
    });
    for (const key of keys) await this.#holdGroupKey(key, true);
  }

  /**
   * Reads the held records under `prefix` (`what` names them in errors), oldest first by their "held at": `parse`
   * gets the name past the prefix and a reader past the magic and the "held at", and throws `fail(...)` at anything
   * wrong. A record that does not open or parse is reported and deleted (no key of it stays on disk); one the
   * storage fails to read is reported and kept. The "held at" of new records continues after the newest loaded.
   */
  async #readHeld<T>(
    prefix: string,
    what: string,
    magic: Uint8Array,
    parse: (id: string, r: ByteReader, fail: (message: string) => IdentityError) => T,
  ): Promise<T[]> {
    const where = `SendingClient: ${what} record`;
    const loaded: { heldAt: number; name: string; item: T }[] = [];
    for (const name of await this.#identity.store.list(prefix)) {
      let record: Uint8Array | undefined;
      try {
        record = await this.#identity.store.get(name);
        if (record === undefined) continue;
        const fail = (message: string) => new IdentityError("CorruptStorage", `${where} ${name}: ${message}`);
        const r = new ByteReader(record, `${where} ${name}`, (m) => new IdentityError("CorruptStorage", m));
        if (!bytesEqual(r.bytes(magic.length, "magic"), magic)) throw fail(`expected the magic of a ${what} record`);
        const heldAt = r.u64("held at");
        loaded.push({ heldAt, name, item: parse(name.slice(prefix.length), r, fail) });
      } catch (error) {
        await this.#dropUnreadable(name, error);
      } finally {
        record?.fill(0);
      }
    }
    loaded.sort((a, b) => a.heldAt - b.heldAt || (a.name < b.name ? -1 : 1));
    for (const { heldAt } of loaded) this.#heldAt = Math.max(this.#heldAt, heldAt);
    return loaded.map((l) => l.item);
  }

  /**
   * A record a loader could not take: reported, and deleted if it is there but unreadable (IdentityError: it does not
   * open or parse), so no key of it stays on disk; a storage that failed to answer keeps it for the next load.
   */
  async #dropUnreadable(name: string, error: unknown): Promise<void> {
    this.#emit("error", error as Error);
    if (error instanceof IdentityError) {
      await this.#identity.store.delete(name).catch((e: Error) => this.#emit("error", e));
    }
  }

  async #slot(peer: string): Promise<SessionSlot | undefined> {
    let slot = this.#sessions.get(peer);
    if (slot === undefined) {
      const stored = await this.#identity.loadSession(peer);
      if (stored === undefined) return undefined;
      slot = { current: stored };
      this.#sessions.set(peer, slot);
    }
    return slot;
  }

  // ------------------------------------------------------------------------------------------------ sending

  /**
   * Sends a text (string) or binary (Uint8Array) message to `to` (a wallet address): to its account and each of its
   * linked devices, then a sent copy to each other client of this user (its wallet's client and linked devices), so
   * every one of them shows the whole conversation. Throws UnknownRecipientError, NoPrekeysError,
   * ClientError("MessageTooLarge" | "NoRoute"), NodeUnreachableError when no entry hop took it; a device or a sent
   * copy that cannot be delivered is an "error" event, not a failure of the send.
   */
  async send(to: string, content: string | Uint8Array, options: ClientCallOptions = {}): Promise<SendResult> {
    const direct: DirectContent =
      typeof content === "string"
        ? { kind: ContentKind.TEXT, text: content }
        : { kind: ContentKind.BINARY, data: content };
    const size = typeof content === "string" ? new TextEncoder().encode(content).length : content.length;
    if (size > MAX_MESSAGE_BYTES) {
      throw new ClientError("MessageTooLarge", `send: at most ${MAX_MESSAGE_BYTES} bytes, got ${size}`);
    }
    const body = encodeContent(direct);
    const recipient = getAddress(to);
    const result = await this.#sendToUser(recipient, body, options);
    if (recipient === this.#user) return result; // a note to self already reached every client of the user
    const copy = encodeContent({ kind: ContentKind.SENT, to: recipient, content: direct });
    const copies: string[] = [];
    let siblings: string[];
    try {
      siblings = [this.#user, ...(await this.#devicesOf(this.#user))];
    } catch (error) {
      // The message itself was delivered: a failed lookup of this user's devices costs the copies only.
      if (options.signal?.aborted) throw error;
      this.#emit("error", error as Error);
      siblings = [this.#user];
    }
    for (const sibling of siblings) {
      if (sibling === this.address || sibling === recipient) continue;
      try {
        copies.push(...(await this.#sendContent(sibling, copy, options)).messageIds);
      } catch (error) {
        if (options.signal?.aborted) throw error;
        this.#emit("error", error as Error);
      }
    }
    return { ...result, copies };
  }

  /**
   * Sends to the user's own account, then to each of its devices (accounts its DID lists whose DIDs name it back).
   * A failure to reach the user's account throws; a failure to reach a device, or to read which devices there are, is
   * reported as an "error" event.
   */
  async #sendToUser(to: string, body: Uint8Array, options: ClientCallOptions): Promise<SendResult> {
    const result = await this.#sendContent(to, body, options);
    let devices: string[];
    try {
      devices = await this.#devicesOf(to);
    } catch (error) {
      if (options.signal?.aborted) throw error;
      this.#emit("error", error as Error); // delivered to the account: the devices miss this one
      devices = [];
    }
    for (const device of devices) {
      if (device === this.address) continue;
      try {
        const sent = await this.#sendContent(device, body, options);
        result.messageIds.push(...sent.messageIds);
        result.routes.push(...sent.routes);
      } catch (error) {
        if (options.signal?.aborted) throw error;
        this.#emit("error", error as Error);
      }
    }
    return result;
  }

  /**
   * The device accounts of `user`: named DEVICE in its DID, with an active DID that names `user` as its OWNER. Read
   * from the chain on every call: a device linked a moment ago gets the next message.
   */
  async #devicesOf(user: string): Promise<string[]> {
    const view = await this.#did.readDid(user);
    const back = deviceLinkEntry(DeviceLink.OWNER, user);
    const devices: string[] = [];
    for (const key of view.deviceKeys) {
      const device = accountOfLinkEntry(key, DeviceLink.DEVICE);
      if (device === undefined || devices.includes(device)) continue;
      const dv = await this.#did.readDid(device);
      if (dv.status === DidStatus.Active && dv.deviceKeys.some((k) => bytesEqual(k, back))) devices.push(device);
    }
    return devices;
  }

  /**
   * The user whose device `sender` is (its DID names the user as OWNER, the user's DID names it as a DEVICE), or
   * undefined for an account that is no linked device; cached DEVICE_LINK_MAX_AGE_MS.
   */
  async #userOf(sender: string): Promise<string | undefined> {
    const cached = this.#ownerOf.get(sender);
    if (cached !== undefined && Date.now() - cached.at < DEVICE_LINK_MAX_AGE_MS) return cached.owner;
    let owner: string | undefined;
    for (const key of (await this.#did.readDid(sender)).deviceKeys) {
      const candidate = accountOfLinkEntry(key, DeviceLink.OWNER);
      if (candidate === undefined) continue;
      const view = await this.#did.readDid(candidate);
      const forward = deviceLinkEntry(DeviceLink.DEVICE, sender);
      if (view.status === DidStatus.Active && view.deviceKeys.some((k) => bytesEqual(k, forward))) {
        owner = candidate;
        break;
      }
    }
    this.#ownerOf.set(sender, { owner, at: Date.now() });
    return owner;
  }

  /** The user an account acts for: its user when it is a linked device, else the account itself. */
  async #actingUser(account: string): Promise<string> {
    if (account === this.address) return this.#user;
    return (await this.#userOf(account)) ?? account;
  }

  /**
   * The user a received message is shown from: `#actingUser`, or the account itself when the DIDs cannot be read
   * (reported as ClientError "LookupFailed"): the message is already marked seen and its ratchet step spent, so a
   * failed lookup must not lose it.
   */
  async #shownUser(account: string): Promise<string> {
    try {
      return await this.#actingUser(account);
    } catch (error) {
      this.#emit(
        "error",
        new ClientError("LookupFailed", `SendingClient: could not read whose device ${account} is; shown as its own`, {
          cause: error,
        }),
      );
      return account;
    }
  }

  /** The user this client acts for: the wallet of a device client, else this client's own address. */
  get #user(): string {
    return this.#owner?.address ?? this.address;
  }

  async #recipient(to: string): Promise<DidView> {
    const view = await this.#did.readDid(to);
    if (view.status !== DidStatus.Active) {
      throw new UnknownRecipientError(to, `send: ${to} has no active DID (status ${DidStatus[view.status]})`);
    }
    return view;
  }

  async #sendContent(to: string, content: Uint8Array, options: ClientCallOptions): Promise<SendResult> {
    options.signal?.throwIfAborted();
    const view = await this.#recipient(to);
    const homes: EdgeNodeInfo[] = [];
    for (const operator of view.homeNodes) {
      const info = await readEdgeNode(this.#registry, operator);
      if (info?.active) homes.push(info);
    }
    if (homes.length === 0) throw new ClientError("NoRoute", `send: none of ${to}'s home nodes is an active edge node`);
    const slot = await this.#slot(to);
    // A DID whose identity changed (a new device took over) makes the old session useless: start a new one.
    let inner: { type: (typeof InnerType)[keyof typeof InnerType]; body: Uint8Array };
    if (slot !== undefined && this.#sessionMatches(to, view)) {
      inner = { type: InnerType.RATCHET, body: slot.current.encrypt(content) };
      await this.#identity.saveSession(to, slot.current);
    } else {
      const bundle = await this.#bundle(to, view, homes, options);
      const started = this.#identity.initiateSession(bundle, content);
      this.#sessions.set(to, { current: started.session, previous: slot?.current });
      this.#peerKeys.set(to, view.identity.dh);
      await this.#identity.saveSession(to, started.session);
      inner = { type: InnerType.INITIAL, body: started.message };
    }
    const envelope = sealEnvelope(view.identity.dh, { ...inner, sender: this.address }, this.#random);
    return this.#deliver(to, envelope, homes, options);
  }

  /** The identity key each session was opened to, so a DID whose keys changed gets a new session. */
  readonly #peerKeys = new Map<string, Uint8Array>();

  #sessionMatches(peer: string, view: DidView): boolean {
    const known = this.#peerKeys.get(peer);
    if (known === undefined) {
      this.#peerKeys.set(peer, view.identity.dh); // a session loaded from storage: assume it is to the current key
      return true;
    }
    return bytesEqual(known, view.identity.dh);
  }

  async #bundle(
    to: string,
    view: DidView,
    homes: readonly EdgeNodeInfo[],
    options: ClientCallOptions,
  ): Promise<PrekeyBundle> {
    const failures: string[] = [];
    for (const node of this.#shuffle([...homes])) {
      try {
        const bundle = await fetchBundle(this.#host, asNode(node), recipientIdOf(to), { signal: options.signal });
        if (!sameIdentity(bundle.identity, view.identity)) {
          failures.push(`${node.operator}: bundle identity is not the DID's`);
          continue;
        }
        verifyPrekeyBundle(bundle);
        return bundle;
      } catch (error) {
        if (options.signal?.aborted) throw error;
        if (!(error instanceof NetError) && !(error instanceof X3dhError)) throw error;
        failures.push(`${node.operator}: ${(error as Error).message}`);
      }
    }
    throw new NoPrekeysError(to, `send: no home node of ${to} served a valid prekey bundle (${failures.join("; ")})`);
  }

  async #edgeNodes(): Promise<EdgeNodeInfo[]> {
    if (this.#nodes === undefined || Date.now() - this.#nodes.at > NODE_LIST_MAX_AGE_MS) {
      this.#nodes = { at: Date.now(), list: await readEdgeNodes(this.#registry) };
    }
    return this.#nodes.list;
  }

  #shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const r = this.#random(4);
      const j = (((r[0] << 24) | (r[1] << 16) | (r[2] << 8) | r[3]) >>> 0) % (i + 1);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }

  /** Wraps `envelope` for `to` and hands it to an entry hop, trying other routes when a hop is unreachable. */
  async #deliver(
    to: string,
    envelope: Uint8Array,
    homes: readonly EdgeNodeInfo[],
    options: ClientCallOptions,
  ): Promise<SendResult> {
    const messageId = this.#random(16);
    const payload = encodeDelivery({
      messageId,
      ttlSeconds: this.#options.ttlSeconds ?? DEFAULT_TTL_SECONDS,
      envelope,
    });
    const nodes = await this.#edgeNodes();
    const errors: Error[] = [];
    for (let attempt = 0; attempt < SEND_ATTEMPTS; attempt++) {
      const exit = this.#shuffle([...homes])[0];
      const others = this.#shuffle(nodes.filter((n) => n.operator !== exit.operator));
      const wanted = this.#options.hops ?? MAX_HOPS;
      const hops = Math.min(wanted, others.length + 1);
      if (hops < MIN_HOPS) {
        throw new ClientError(
          "NoRoute",
          `send: need ${MIN_HOPS} edge nodes for a route, the registry lists ${nodes.length}`,
        );
      }
      const route = [...others.slice(0, hops - 1), exit];
      const packet = wrapPacket(
        route.map((n) => ({ peerId: peerIdBytesOf(n), relayPublicKey: n.relayPublicKey })),
        recipientIdOf(to),
        payload,
        this.#random,
      );
      try {
        await sendPacket(this.#host, asNode(route[0]), packet, { signal: options.signal });
        return { messageIds: [toHex(messageId)], routes: [route.map((n) => n.operator)] };
      } catch (error) {
        if (options.signal?.aborted) throw error;
        const retry =
          error instanceof NodeUnreachableError ||
          (error instanceof NodeRefusedError && error.wireCode === WireErrorCode.INTERNAL);
        if (!retry) throw error;
        errors.push(error as Error);
      }
    }
    throw errors[errors.length - 1];
  }

  // ------------------------------------------------------------------------------------------------ groups

  /**
   * Runs `change` on group `id` once the changes queued before it on that group are done: one change at a time per
   * group, for the receive path (GROUP_KEY, GROUP_MESSAGE) and the API calls alike, so that no change works from a
   * member list another one replaces across an await.
   */
  #withGroup<T>(id: string, change: () => Promise<T>): Promise<T> {
    return runInTurn(this.#groupLocks, id, change);
  }

  /**
   * Queues `task` behind the fan-outs of group `id` (`#groupFanOuts`): it starts once every one queued before it is
   * done, so that what it sends cannot overtake a message (and the key sent with it) planned before.
   */
  #queueFanOut<T>(id: string, task: () => Promise<T>): Promise<T> {
    return runInTurn(this.#groupFanOuts, id, task);
  }

  /**
   * Runs `change` on group `id` under its lock (`#withGroup`) once no fan-out of the group is running: a change sends
   * this client's key at its current chain step, which must not reach a participant before the key of a message
   * planned earlier (that key would then be ignored as already held, and the message could not be opened). The
   * fan-outs are awaited outside the lock (a fan-out retakes the lock when it ends), and checked again under it: a
   * send planned meanwhile sends the change back to waiting. While `change` holds the lock no fan-out can start.
   */
  async #withGroupAfterFanOuts<T>(id: string, change: () => Promise<T>): Promise<T> {
    for (;;) {
      await this.#groupFanOuts.get(id);
      const outcome = await this.#withGroup(id, async () =>
        this.#groupFanOuts.has(id) ? undefined : { value: await change() },
      );
      if (outcome !== undefined) return outcome.value;
    }
  }

  /**
   * Creates a group with `members` (addresses; this client's user is added), whose admin is this client's user (on
   * a device client, the wallet's account: it alone changes the membership later), at membership version 0, and sends this client's sender key to every other participant (each member's account and
   * linked devices, this user's other clients included) over the pairwise sessions; each of them answers with its
   * own. Returns the group id (hex): the admin's address followed by GROUP_ID_NONCE_BYTES random bytes. Throws
   * ClientError("GroupFull") above MAX_GROUP_MEMBERS_ON_WIRE members; a member's account that cannot be reached
   * throws once the others were tried, a device that cannot be is an "error" event.
   */
  async createGroup(members: readonly string[], options: ClientCallOptions = {}): Promise<string> {
    const all = [...new Set([this.#user, ...members.map((m) => getAddress(m))])];
    if (all.length > MAX_GROUP_MEMBERS_ON_WIRE) {
      throw new ClientError(
        "GroupFull",
        `createGroup: expected at most ${MAX_GROUP_MEMBERS_ON_WIRE} members, got ${all.length}`,
      );
    }
    const groupId = concatBytes(getBytes(this.#user), this.#random(GROUP_ID_NONCE_BYTES));
    const id = toHex(groupId);
    await this.#withGroup(id, async () => {
      const participants = [...(await this.#participantsOf(all)).keys()];
      const state = this.#newGroup(groupId, { members: all, admin: this.#user, version: 0 }, participants);
      this.#groups.set(id, state);
      await this.#saveGroup(id);
      await this.#distribute(state, state.session.distributionMessage(), state.session.members, options, "throw");
    });
    return id;
  }

  /** The members (users) of a group, this client's user included, or undefined for a group this client is not in. */
  groupMembers(groupId: string): readonly string[] | undefined {
    return this.#groups.get(normalizeGroupId(groupId))?.members;
  }

  /**
   * A group's members, admin and membership version as this client sees them, or undefined for a group this client
   * is not in.
   */
  groupInfo(groupId: string): GroupInfo | undefined {
    const state = this.#groups.get(normalizeGroupId(groupId));
    if (state === undefined) return undefined;
    return { members: [...state.members], admin: state.admin, version: state.version };
  }

  /** A new group state (not yet in `#groups`) for `list`, with a fresh sender key of this client in `epoch`. */
  #newGroup(groupId: Uint8Array, list: GroupInfo, participants: readonly string[], epoch = 0): GroupState {
    const session = GroupSession.create(
      { groupId, selfId: this.address, members: participants.filter((p) => p !== this.address), epoch },
      this.#sessionOptions(),
    );
    return {
      session,
      members: [...list.members],
      admin: list.admin,
      version: list.version,
      owed: new Set(),
      writerLost: false,
    };
  }

  /**
   * Every account that takes part for `members`, mapped to the member it acts for: each member and its linked
   * devices (read from the DIDs), this client left out.
   */
  async #participantsOf(members: readonly string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const member of members) {
      out.set(member, member);
      for (const device of await this.#devicesOf(member)) if (!out.has(device)) out.set(device, member);
    }
    out.delete(this.address);
    return out;
  }

  /**
   * Stores a group's admin, members and version (`next`, or the state's) and its session, encrypted, replacing the
   * previous record (old chain keys must go).
   */
  async #saveGroup(
    id: string,
    next?: { readonly members: readonly string[]; readonly version: number },
  ): Promise<void> {
    const state = this.#groups.get(id);
    if (state === undefined) return;
    const list = next?.members ?? state.members;
    const session = state.session.serialize();
    const record = new ByteWriter()
      .bytes(GROUP_RECORD_MAGIC)
      .bytes(getBytes(state.admin))
      .u32(next?.version ?? state.version)
      .u8((state.writerLost ? 1 : 0) | (state.pending !== undefined ? 2 : 0))
      .u8(list.length);
    for (const m of list) record.bytes(getBytes(m));
    record.u16(state.owed.size);
    for (const p of state.owed) record.bytes(getBytes(p));
    if (state.pending !== undefined) {
      record.u32(state.pending.version).u32(state.pending.leadEpoch).u8(state.pending.members.length);
      for (const m of state.pending.members) record.bytes(getBytes(m));
    }
    const bytes = record.bytes(session).finish();
    try {
      await this.#identity.store.put(GROUPS_PREFIX + id, bytes);
    } finally {
      session.fill(0);
      bytes.fill(0);
    }
  }

  /**
   * Loads every stored group (at create). A record that does not parse is reported (IdentityError "CorruptStorage",
   * or the session's SenderKeyError) and skipped; one of an older layout is deleted too.
   */
  async #loadGroups(): Promise<void> {
    const where = "SendingClient: group record";
    for (const name of await this.#identity.store.list(GROUPS_PREFIX)) {
      const record = await this.#identity.store.get(name);
      if (record === undefined) continue;
      try {
        const r = new ByteReader(record, `${where} ${name}`, (m) => new IdentityError("CorruptStorage", m));
        if (!bytesEqual(r.bytes(GROUP_RECORD_MAGIC.length, "magic"), GROUP_RECORD_MAGIC)) {
          // The layout before admins and versions: its group cannot be followed any more, and its chain keys must
          // not stay on disk.
          await this.#identity.store.delete(name);
          throw new IdentityError(
            "CorruptStorage",
            `${where} ${name}: expected a record of the current layout (an older one: deleted)`,
          );
        }
        const admin = getAddress(hexlify(r.bytes(20, "admin")));
        const version = r.u32("version");
        const flags = r.u8("flags");
        const count = r.u8("member count");
        const members = [...Array(count).keys()].map(() => getAddress(hexlify(r.bytes(20, "member"))));
        const owedCount = r.u16("owed count");
        const owed = new Set([...Array(owedCount).keys()].map(() => getAddress(hexlify(r.bytes(20, "owed")))));
        let pending: PendingList | undefined;
        if ((flags & 2) === 2) {
          const pendingVersion = r.u32("pending version");
          const leadEpoch = r.u32("pending lead epoch");
          const pendingCount = r.u8("pending member count");
          const pendingMembers = [...Array(pendingCount).keys()].map(() =>
            getAddress(hexlify(r.bytes(20, "pending member"))),
          );
          pending = { members: pendingMembers, version: pendingVersion, leadEpoch };
        }
        const session = GroupSession.deserialize(r.bytes(r.remaining, "session"), this.#sessionOptions());
        this.#groups.set(name.slice(GROUPS_PREFIX.length), {
          session,
          members,
          admin,
          version,
          owed,
          writerLost: (flags & 1) === 1,
          pending,
        });
      } catch (error) {
        this.#emit("error", error as Error);
      } finally {
        record.fill(0);
      }
    }
  }

  /**
   * Sends this client's sender-key distribution with the admin, version and member list to each of `to`
   * (participants), pairwise; what a failure does is `onFailure`'s (see `#sendToParticipants`). A participant the key
   * reached is no longer owed it; one it did not reach is (`GroupState.owed`: it goes with the next group message),
   * and the record is stored again when that set changed.
   */
  async #distribute(
    state: GroupState,
    distribution: Uint8Array,
    to: readonly string[],
    options: ClientCallOptions,
    onFailure: FailureMode,
  ): Promise<readonly UnreachedParticipant[]> {
    const content = encodeContent({
      kind: ContentKind.GROUP_KEY,
      groupId: state.session.groupId,
      admin: state.admin,
      version: state.version,
      members: state.members,
      distribution,
    });
    const owedBefore = [...state.owed].join();
    try {
      return (
        await this.#sendToParticipants(state, to, content, options, onFailure, (participant, reached) => {
          if (reached) state.owed.delete(participant);
          else state.owed.add(participant);
        })
      ).unreached;
    } finally {
      if ([...state.owed].join() !== owedBefore) {
        await this.#saveGroup(toHex(state.session.groupId)).catch((error: Error) => this.#emit("error", error));
      }
    }
  }

  /**
   * Sends `content` to each of `to`, every one tried. With `onFailure` "collect", every participant that cannot be
   * reached is listed in `unreached` (nothing thrown or reported). Otherwise a device that cannot be reached is an
   * "error" event; so is a member's account with "report" (the receive path: one unreachable account must not stop
   * the rest), while with "throw" (an API call) the first such failure is thrown once all were tried. With
   * `stillTo`, each participant is checked just before its send and skipped (not listed) when it says no.
   */
  async #sendToParticipants(
    state: GroupState,
    to: readonly string[],
    content: Uint8Array,
    options: ClientCallOptions,
    onFailure: FailureMode,
    onEach?: (participant: string, reached: boolean) => void,
    stillTo?: (participant: string) => boolean,
  ): Promise<SendResult & { unreached: UnreachedParticipant[] }> {
    const result: SendResult & { unreached: UnreachedParticipant[] } = { messageIds: [], routes: [], unreached: [] };
    let failure: unknown;
    for (const participant of to) {
      if (participant === this.address) continue;
      if (stillTo !== undefined && !stillTo(participant)) continue; // removed since `to` was taken: not sent, not owed
      try {
        const sent = await this.#sendContent(participant, content, options);
        result.messageIds.push(...sent.messageIds);
        result.routes.push(...sent.routes);
        onEach?.(participant, true);
      } catch (error) {
        onEach?.(participant, false);
        if (options.signal?.aborted) throw error;
        if (onFailure === "collect") {
          result.unreached.push({ participant, error: error as Error });
          continue;
        }
        if (onFailure === "throw" && failure === undefined && state.members.includes(participant)) {
          failure = error;
          continue;
        }
        this.#emit("error", error as Error);
      }
    }
    if (failure !== undefined) throw failure;
    return result;
  }

  /**
   * A participant's sender key arrived, with the group's admin, membership version and member list as its sender
   * sees them. The group id must begin with the admin's address (GROUP_ID_NONCE_BYTES), and a group this client is
   * in keeps the admin it has.
   *
   * A group this client is not in is joined on the word of a client of the group's admin (its account, or a device
   * of it: a group a device created) or of this client's own user (its account or another of its devices), whose
   * list, version and epoch it takes; one that did not come from the admin's account is checked with the admin
   * (a key request, whose answer carries the admin's list). With `groupInvitations` "ask" (the default), a key from a
   * client of the admin who is another user is kept as a pending invitation instead (`#invite`): nothing is sent
   * until the user accepts it. A key from anyone else is
   * held (HELD_GROUP_KEYS_KEPT) until then, and taken at join only if its sender acts for a member of the trusted
   * list: a removed member who knows the group id could otherwise bring a client in with an old list (itself in it)
   * and any epoch.
   *
   * In a group this client is in, a key from a client of a user the member list lacks is held too (a member added
   * by a change this client has not seen yet, whose key came first; or a removed member's, dropped in time). A
   * member's key is taken first (so that no failure below loses it); a sender not yet known then gets this client's
   * key. The list counts only from the admin's own account (`#followList`): from anyone else, only the key.
   */
  async #onGroupKey(from: string, key: GroupKeyContent): Promise<void> {
    const id = toHex(key.groupId);
    if (!bytesEqual(key.groupId.subarray(0, 20), getBytes(key.admin))) {
      throw new TamperedMessageError(`SendingClient: a group key for ${id} names ${key.admin}, not the id's admin`);
    }
    const sender = await this.#actingUser(from);
    const state = this.#groups.get(id);
    if (state === undefined) {
      // A blocked admin's group is joined only on this user's own word (it joined on another of its clients).
      if (this.#blockedAdmins.has(key.admin) && sender !== this.#user) return;
      if (sender !== key.admin && sender !== this.#user) {
        await this.#holdGroupKey({ groupId: id, from, distribution: key.distribution.slice() });
        return;
      }
      this.#checkList(id, key, sender);
      // Another user's group waits for this user's word; one this user joined or created on another of its
      // clients does not (it already agreed there).
      if (this.#options.groupInvitations !== "accept" && sender !== this.#user && key.admin !== this.#user) {
        await this.#invite(from, key);
        return;
      }
      await this.#joinGroup(from, key);
      return;
    }
    if (key.admin !== state.admin) {
      throw new TamperedMessageError(`SendingClient: a group key for ${id} names ${key.admin}, not its admin`);
    }
    if (!state.members.includes(sender)) {
      await this.#holdGroupKey({ groupId: id, from, distribution: key.distribution.slice() });
      return;
    }
    const newcomer = !state.session.members.includes(from);
    // A newcomer whose key is refused must not stay in the session: it would never be sent this client's key.
    const before = newcomer ? state.session.serialize() : undefined;
    try {
      if (newcomer) state.session.addMember(from);
      state.session.processDistribution(from, key.distribution);
    } catch (error) {
      if (!(error instanceof SenderKeyError) || error.code !== "StaleEpoch") {
        if (before !== undefined) state.session = GroupSession.deserialize(before, this.#sessionOptions());
        throw error;
      }
    } finally {
      before?.fill(0);
    }
    await this.#saveGroup(id);
    await this.#retryGroupMessages(id);
    this.#emit("group", id);
    if (newcomer) await this.#distribute(state, state.session.distributionMessage(), [from], {}, "report");
    if (from === state.admin) {
      this.#checkList(id, key, sender);
      await this.#followList(state, key);
    }
  }

  #sessionOptions(): { randomBytes?: RandomBytes } {
    return { randomBytes: this.#options.randomBytes };
  }

  /** A list that is taken must name its admin, its sender's user and this client's user. */
  #checkList(id: string, key: GroupKeyContent, sender: string): void {
    if (!key.members.includes(key.admin) || !key.members.includes(sender) || !key.members.includes(this.#user)) {
      throw new TamperedMessageError(
        `SendingClient: a member list for group ${id} must name its admin, its sender and this client's user`,
      );
    }
  }

  /**
   * Joins a group on a trusted GROUP_KEY: works out the participants from the DIDs, takes the sender's key in its
   * epoch (a key of an older epoch than the others' would be refused as stale) and the keys held for the group from
   * its members, then sends this client's key to the sender only: the other participants are owed it, and get it
   * before this client's first group message (`GroupState.owed`), so that whoever names a hundred users in a list
   * cannot make this client write to them all. A client that joined on its own user's word (whose list may be
   * behind the admin's) asks the admin for its key, whose answer carries the admin's list. A pending invitation to
   * the group goes once the group is stored; its key, when another client of the admin sent it, is taken like a
   * held key. `options` (an accepted invitation's) bounds the answer and the key request.
   */
  async #joinGroup(from: string, key: GroupKeyContent, options: ClientCallOptions = {}): Promise<void> {
    const id = toHex(key.groupId);
    const participants = [...(await this.#participantsOf(key.members)).keys()];
    if (!participants.includes(from)) participants.push(from); // linked a moment ago: it proved its user above
    options.signal?.throwIfAborted(); // the chain reads take no signal: an accept aborted meanwhile joins nothing
    const state = this.#newGroup(key.groupId, key, participants, distributionEpoch(key.distribution));
    state.session.processDistribution(from, key.distribution);
    const invitation = this.#invitations.get(id);
    if (invitation !== undefined && invitation.from !== from) {
      // Joined on this user's other client's word: the admin's key from the invitation is good for the admin's
      // messages held meanwhile (taken at once below, so it does not count against the held keys' bounds).
      this.#heldGroupKeys.push({ groupId: id, from: invitation.from, distribution: invitation.distribution.slice() });
    }
    const taken = await this.#takeHeldKeys(state, "drop");
    for (const p of state.session.members) if (p !== from) state.owed.add(p);
    state.writerLost = this.address === state.admin && key.version > 0;
    this.#groups.set(id, state);
    try {
      await this.#saveGroup(id);
    } catch (error) {
      this.#groups.delete(id); // not joined: the next key (or an answer to a request), or an accept, tries again
      throw error;
    }
    await this.#deleteHeld(taken); // in the stored session now; until then their records stay for a restart
    // Joined: the invitation's key must not stay on disk. A record left by a failed delete goes at the next start.
    if (this.#invitations.has(id)) await this.#dropInvitation(id).catch((error: Error) => this.#emit("error", error));
    await this.#retryGroupMessages(id);
    this.#emit("group", id);
    await this.#distribute(state, state.session.distributionMessage(), [from], options, "report");
    if (from !== state.admin && state.admin !== this.address && this.#due(this.#askedKeys, `${id}:${state.admin}`)) {
      await this.#sendKeyRequest(key.groupId, state.admin, options);
    }
  }

  /**
   * Keeps a trusted GROUP_KEY from a client of another user, the group's admin, as a pending invitation
   * (`groupInvitations` "ask"): stored encrypted, announced (`groupInvitation`), and nothing sent, neither an answer
   * nor a key request, until the user accepts it. For a pending group:
   * - an older list than the stored one changes nothing;
   * - a key from another client of the admin at the same version (the admin's phone sends its key before its first
   *   group message) is held beside the invitation's (`#holdGroupKey`, taken at acceptance), not instead of it: the
   *   messages of the client that sent the invitation need that one. Only the admin's account takes the
   *   invitation's place from one of its devices, whose key is then held the same way;
   * - a newer list (a higher version) replaces the stored one in its place, with its key; the previous key, if another
   *   client's, is held as above;
   * - the same key again from the same client (a later step of the same chain) keeps the stored one, which opens
   *   every message the later one does and those before it.
   * The record is written only when something in it changed, and the invitation announced again only when its
   * version or members did: an admin that sends its key at every message cannot make this client write or notify at
   * that rate. Past MAX_GROUP_INVITATIONS_PER_ADMIN of one admin, or MAX_GROUP_INVITATIONS in all, the oldest goes
   * (`#enforceInvitationBounds`).
   */
  async #invite(from: string, key: GroupKeyContent): Promise<void> {
    const id = toHex(key.groupId);
    const current = this.#invitations.get(id);
    if (current !== undefined) {
      if (key.version < current.version) return;
      const fromAccount = from === key.admin && current.from !== key.admin;
      if (key.version === current.version && from !== current.from && !fromAccount) {
        await this.#holdGroupKey({ groupId: id, from, distribution: key.distribution.slice() });
        return;
      }
    }
    const sameChain = current?.from === from && sameSenderKey(current.distribution, key.distribution);
    const listChanged = current === undefined || key.version !== current.version || !sameMembers(key, current);
    if (current !== undefined && sameChain && !listChanged) return; // nothing new
    const distribution = sameChain ? current.distribution : key.distribution.slice();
    const invitation: PendingInvitation = {
      groupId: id,
      admin: key.admin,
      version: key.version,
      members: [...key.members],
      from,
      distribution,
      receivedAt: current?.receivedAt ?? Date.now(),
    };
    try {
      await this.#saveInvitation(invitation);
    } catch (error) {
      if (!sameChain) distribution.fill(0);
      throw error;
    }
    if (current !== undefined && !sameChain) {
      // Another client's key stays good for that client's messages held meanwhile; a replaced key of the same
      // client (a new chain) opens nothing the new one needs.
      if (current.from !== from) {
        await this.#holdGroupKey({ groupId: id, from: current.from, distribution: current.distribution });
      } else {
        current.distribution.fill(0);
      }
    }
    this.#invitations.set(id, invitation); // a replaced one keeps its place in the order
    if (current === undefined) await this.#enforceInvitationBounds();
    if (listChanged && this.#invitations.has(id)) this.#emit("groupInvitation", invitationView(invitation));
  }

  /**
   * Applies the bounds on pending invitations: past MAX_GROUP_INVITATIONS_PER_ADMIN of one admin, that admin's oldest
   * go; past MAX_GROUP_INVITATIONS in all, the oldest go. One being accepted is never chosen (it would be reported
   * dropped while it joins). What goes is wiped, deleted and reported (`#pushOut`).
   */
  async #enforceInvitationBounds(): Promise<void> {
    const candidates = () => [...this.#invitations.values()].filter((i) => !this.#accepting.has(i.groupId));
    const perAdmin = new Map<string, number>();
    for (const i of this.#invitations.values()) perAdmin.set(i.admin, (perAdmin.get(i.admin) ?? 0) + 1);
    for (const [admin, count] of perAdmin) {
      const theirs = candidates().filter((i) => i.admin === admin);
      for (const invitation of theirs.slice(0, Math.max(0, count - MAX_GROUP_INVITATIONS_PER_ADMIN))) {
        await this.#pushOut(invitation, `more than ${MAX_GROUP_INVITATIONS_PER_ADMIN} pending from its admin`);
      }
    }
    const excess = this.#invitations.size - MAX_GROUP_INVITATIONS;
    for (const invitation of candidates().slice(0, Math.max(0, excess))) {
      await this.#pushOut(invitation, `more than ${MAX_GROUP_INVITATIONS} pending`);
    }
  }

  /**
   * Drops an invitation past a bound and reports it (ClientError "InvitationDropped"), with what is held for its
   * group (`#forgetHeld`).
   */
  async #pushOut(invitation: PendingInvitation, why: string): Promise<void> {
    this.#emit(
      "error",
      new ClientError(
        "InvitationDropped",
        `SendingClient: dropped the invitation to group ${invitation.groupId} from ${invitation.admin}: ${why}`,
      ),
    );
    await this.#forgetHeld(invitation.groupId);
    // The new invitation is stored and must still be announced: a failed delete is reported, not thrown (the record
    // is then loaded again at the next start, and pushed out again by the bounds there).
    await this.#dropInvitation(invitation.groupId).catch((error: Error) => this.#emit("error", error));
  }

  /** Forgets a pending invitation: out of memory, its key wiped, its record deleted. */
  async #dropInvitation(id: string): Promise<void> {
    const invitation = this.#invitations.get(id);
    if (invitation === undefined) return;
    this.#invitations.delete(id);
    invitation.distribution.fill(0);
    await this.#identity.store.delete(INVITATIONS_PREFIX + id);
  }

  /**
   * Forgets what is held for a group this client is not joining (an invitation declined or dropped): its group
   * messages, which no key will open, and the keys held for it, wiped; their records are deleted (a failure is an
   * "error" event: such a record is loaded again at the next start, held, and goes with the bounds).
   */
  async #forgetHeld(id: string): Promise<void> {
    const messages = this.#pendingGroup.filter((m) => m.groupId === id);
    const keys = this.#heldGroupKeys.filter((k) => k.groupId === id);
    this.#pendingGroup = this.#pendingGroup.filter((m) => m.groupId !== id);
    this.#heldGroupKeys = this.#heldGroupKeys.filter((k) => k.groupId !== id);
    for (const key of keys) key.distribution.fill(0);
    await this.#deleteHeld([
      ...messages.map((m) => HELD_MESSAGES_PREFIX + m.base.messageId),
      ...keys.map((k) => k.name),
    ]);
  }

  /** Stores an invitation (INVITATIONS_PREFIX), encrypted like every record, replacing the previous one. */
  async #saveInvitation(invitation: PendingInvitation): Promise<void> {
    const record = new ByteWriter()
      .bytes(INVITATION_RECORD_MAGIC)
      .u64(invitation.receivedAt)
      .bytes(getBytes(invitation.admin))
      .u32(invitation.version)
      .bytes(getBytes(invitation.from))
      .u8(invitation.members.length);
    for (const m of invitation.members) record.bytes(getBytes(m));
    const bytes = record.bytes(invitation.distribution).finish();
    try {
      await this.#identity.store.put(INVITATIONS_PREFIX + invitation.groupId, bytes);
    } finally {
      bytes.fill(0);
    }
  }

  /**
   * Loads the pending invitations (at create, after the groups), oldest first. A record that does not open or parse
   * is reported (IdentityError "CorruptStorage") and deleted, so no key of it stays on disk; one for a group already
   * joined (a stop between the join and the delete) is deleted. The bounds apply as when they came (records written
   * by another version, or by a failed delete, may exceed them): the oldest past them go, reported.
   */
  async #loadInvitations(): Promise<void> {
    const where = "SendingClient: invitation record";
    const loaded: PendingInvitation[] = [];
    for (const name of await this.#identity.store.list(INVITATIONS_PREFIX)) {
      const id = name.slice(INVITATIONS_PREFIX.length);
      let record: Uint8Array | undefined;
      try {
        record = await this.#identity.store.get(name);
        if (record === undefined) continue;
        if (this.#groups.has(id)) {
          await this.#identity.store.delete(name);
          continue;
        }
        const r = new ByteReader(record, `${where} ${name}`, (m) => new IdentityError("CorruptStorage", m));
        if (!bytesEqual(r.bytes(INVITATION_RECORD_MAGIC.length, "magic"), INVITATION_RECORD_MAGIC)) {
          throw new IdentityError("CorruptStorage", `${where} ${name}: expected the magic of an invitation record`);
        }
        const receivedAt = r.u64("received at");
        const admin = getAddress(hexlify(r.bytes(20, "admin")));
        const version = r.u32("version");
        const from = getAddress(hexlify(r.bytes(20, "sender")));
        const count = r.u8("member count");
        const members = [...Array(count).keys()].map(() => getAddress(hexlify(r.bytes(20, "member"))));
        if (r.remaining !== SENDER_KEY_DISTRIBUTION_LENGTH) {
          throw new IdentityError("CorruptStorage", `${where} ${name}: expected a sender-key distribution message`);
        }
        const distribution = r.bytes(r.remaining, "distribution").slice();
        if (!/^[0-9a-f]{64}$/.test(id) || !id.startsWith(admin.slice(2).toLowerCase()) || !members.includes(admin)) {
          distribution.fill(0);
          throw new IdentityError("CorruptStorage", `${where} ${name}: expected a group id of its admin ${admin}`);
        }
        loaded.push({ groupId: id, admin, version, members, from, distribution, receivedAt });
      } catch (error) {
        await this.#dropUnreadable(name, error);
      } finally {
        record?.fill(0);
      }
    }
    loaded.sort((a, b) => a.receivedAt - b.receivedAt);
    for (const invitation of loaded) this.#invitations.set(invitation.groupId, invitation);
    await this.#enforceInvitationBounds();
  }

  /** The group invitations pending (`groupInvitations` "ask"), oldest first; no keys. */
  groupInvitations(): GroupInvitation[] {
    return [...this.#invitations.values()].map(invitationView);
  }

  /**
   * Accepts a pending invitation: joins the group with the newest key its admin sent (the list, version and epoch
   * of that key), exactly as a join at once would (participants read from the DIDs, keys held for the group taken,
   * the other clients of the admin's among them, this client's key sent to the admin's client that sent it and owed
   * to the others, sent before its first group message), then deletes the invitation; group messages held meanwhile
   * are opened, and those still lacking a key ask their senders for it as in any group this client is in.
   * Throws ClientError("UnknownGroup") when no invitation to `groupId` is pending (none came, or it was declined or
   * pushed out); ClientError("InvitationDropped") when the admin's device that sent it is no longer linked to the
   * admin (it could have been stolen: it is not sent this client's key), and the invitation goes;
   * ClientError("Stopped") after `stop()`. A failure before the group is stored (a chain read, the store, an abort)
   * leaves the invitation pending; an abort after it leaves the group joined and the admin's client owed this
   * client's key. The chain reads take no signal: it is checked after them.
   */
  async acceptGroupInvitation(groupId: string, options: ClientCallOptions = {}): Promise<void> {
    const id = normalizeGroupId(groupId);
    this.#checkNotStopped("acceptGroupInvitation");
    options.signal?.throwIfAborted();
    await this.#withGroup(id, async () => {
      this.#checkNotStopped("acceptGroupInvitation");
      const invitation = this.#invitations.get(id);
      if (invitation === undefined) {
        throw new ClientError("UnknownGroup", `acceptGroupInvitation: expected a pending invitation to ${id}, none`);
      }
      if (this.#groups.has(id)) {
        await this.#dropInvitation(id); // joined meanwhile on this user's other client's word
        return;
      }
      this.#accepting.add(id);
      // A copy: the invitation goes (and its key is wiped) once the group is stored, before the answer is sent.
      const distribution = invitation.distribution.slice();
      try {
        if (invitation.from !== invitation.admin) {
          // The device may have been unlinked since the key came (or since a restart): read afresh, not from the
          // cache of who is whose device, before this client's key is sent to it.
          this.#ownerOf.delete(invitation.from);
          if ((await this.#actingUser(invitation.from)) !== invitation.admin) {
            await this.#forgetHeld(id);
            await this.#dropInvitation(id);
            throw new ClientError(
              "InvitationDropped",
              `acceptGroupInvitation: expected the invitation to ${id} from a device of its admin ${invitation.admin}, ` +
                `but ${invitation.from} is no longer one; dropped`,
            );
          }
        }
        options.signal?.throwIfAborted();
        await this.#joinGroup(
          invitation.from,
          {
            kind: ContentKind.GROUP_KEY,
            groupId: getBytes(`0x${id}`),
            admin: invitation.admin,
            version: invitation.version,
            members: invitation.members,
            distribution,
          },
          options,
        );
      } finally {
        distribution.fill(0);
        this.#accepting.delete(id);
      }
      // Their one key request went while the group was pending (to this user's own clients only): now a member,
      // this client asks their senders, as for any message of a group it is in.
      for (const m of this.#pendingGroup) if (m.groupId === id) this.#scheduleKeyRequest(m);
    });
  }

  /**
   * Declines a pending invitation: it is deleted and its key wiped, with the group's messages and keys held
   * meanwhile; nothing is sent (the admin is not told). Group messages of the group that come later ask only this
   * user's own clients for a key (as for any group not joined, with "ask"). A later key from the admin for the group
   * makes a new invitation, unless `options.block` blocks the admin too (`blockGroupAdmin`). Throws
   * ClientError("UnknownGroup") when no invitation to `groupId` is pending, ClientError("Stopped") after `stop()`, and
   * what `blockGroupAdmin` throws.
   */
  async declineGroupInvitation(groupId: string, options: { readonly block?: boolean } = {}): Promise<void> {
    const id = normalizeGroupId(groupId);
    this.#checkNotStopped("declineGroupInvitation");
    await this.#withGroup(id, async () => {
      this.#checkNotStopped("declineGroupInvitation");
      if (!this.#invitations.has(id)) {
        throw new ClientError("UnknownGroup", `declineGroupInvitation: expected a pending invitation to ${id}, none`);
      }
      await this.#forgetHeld(id);
      await this.#dropInvitation(id);
    });
    if (options.block === true) await this.blockGroupAdmin(adminOfGroup(id));
  }

  /**
   * Blocks a group admin (a user's account): its pending invitations go at once, with the group messages and keys
   * held for its groups (deleted as by a decline; no event), and from now on its keys make no invitation, and no join
   * with `groupInvitations` "accept" either, and its groups' messages are dropped unread, until `unblockGroupAdmin`.
   * Stored: it holds across restarts. Groups this client is already in stay (the block is about being brought in), and
   * a group this user joined on another of its clients is still joined here. Blocking an admin already blocked
   * changes nothing. Throws ClientError("BlockListFull") past MAX_BLOCKED_GROUP_ADMINS, ClientError("Stopped") after
   * `stop()`, and ethers' error for an address that does not parse.
   */
  async blockGroupAdmin(admin: string): Promise<void> {
    const blocked = getAddress(admin);
    this.#checkNotStopped("blockGroupAdmin");
    if (!this.#blockedAdmins.has(blocked)) {
      if (this.#blockedAdmins.size >= MAX_BLOCKED_GROUP_ADMINS) {
        throw new ClientError(
          "BlockListFull",
          `blockGroupAdmin: expected fewer than ${MAX_BLOCKED_GROUP_ADMINS} blocked admins; unblock one first`,
        );
      }
      const at = Date.now();
      const record = new ByteWriter().bytes(BLOCK_RECORD_MAGIC).u64(at).finish();
      await this.#identity.store.put(BLOCKED_ADMINS_PREFIX + blocked.slice(2).toLowerCase(), record);
      this.#blockedAdmins.add(blocked);
    }
    await this.#dropBlockedGroups(blocked);
  }

  /**
   * Lifts a block (`blockGroupAdmin`): the admin's next key for a group makes an invitation again. Invitations and
   * messages dropped while it was blocked do not come back. Unblocking an admin not blocked changes nothing. Throws
   * ClientError("Stopped") after `stop()`, and ethers' error for an address that does not parse.
   */
  async unblockGroupAdmin(admin: string): Promise<void> {
    const unblocked = getAddress(admin);
    this.#checkNotStopped("unblockGroupAdmin");
    await this.#identity.store.delete(BLOCKED_ADMINS_PREFIX + unblocked.slice(2).toLowerCase());
    this.#blockedAdmins.delete(unblocked);
  }

  /** The blocked group admins (`blockGroupAdmin`), checksummed, in address order. */
  blockedGroupAdmins(): string[] {
    return [...this.#blockedAdmins].sort((a, b) => (a.toLowerCase() < b.toLowerCase() ? -1 : 1));
  }

  /**
   * Drops what is pending for the groups of a blocked admin this client is not in: their invitations and the group
   * messages and keys held for them, each under its group's lock, deleted from storage.
   */
  async #dropBlockedGroups(admin: string): Promise<void> {
    const ids = new Set(
      [
        ...this.#invitations.keys(),
        ...this.#pendingGroup.map((m) => m.groupId),
        ...this.#heldGroupKeys.map((k) => k.groupId),
      ].filter((id) => !this.#groups.has(id) && adminOfGroup(id) === admin),
    );
    for (const id of ids) {
      await this.#withGroup(id, async () => {
        if (this.#groups.has(id)) return; // joined meanwhile, on this user's word
        await this.#forgetHeld(id);
        if (this.#invitations.has(id)) await this.#dropInvitation(id);
      });
    }
  }

  /**
   * Loads the blocked admins (at create, after the invitations and held items), and drops what a stop in the middle
   * of a block left of their groups. A record that does not open or parse is reported and deleted (the admin is then
   * not blocked); one the storage fails to read is reported and kept.
   */
  async #loadBlocked(): Promise<void> {
    for (const name of await this.#identity.store.list(BLOCKED_ADMINS_PREFIX)) {
      try {
        const hex = name.slice(BLOCKED_ADMINS_PREFIX.length);
        const record = await this.#identity.store.get(name);
        if (record === undefined) continue;
        if (
          !/^[0-9a-f]{40}$/.test(hex) ||
          record.length !== BLOCK_RECORD_MAGIC.length + 8 ||
          !bytesEqual(record.subarray(0, BLOCK_RECORD_MAGIC.length), BLOCK_RECORD_MAGIC)
        ) {
          throw new IdentityError("CorruptStorage", `SendingClient: block record ${name}: expected "SNB" 1 and a time`);
        }
        this.#blockedAdmins.add(getAddress(`0x${hex}`));
      } catch (error) {
        await this.#dropUnreadable(name, error);
      }
    }
    for (const admin of this.#blockedAdmins) await this.#dropBlockedGroups(admin);
  }

  /** Throws ClientError("Stopped") once `stop()` was called (its invitations are no longer in memory). */
  #checkNotStopped(where: string): void {
    if (this.#stopped) throw new ClientError("Stopped", `${where}: expected a running client, it was stopped`);
  }

  /**
   * Holds a GROUP_KEY until its sender can be trusted. One account holds at most HELD_GROUP_KEYS_PER_SENDER at once
   * (its oldest goes), so one sender cannot push the others' keys out of the buffer; past HELD_GROUP_KEYS_KEPT in
   * all, the oldest goes. What goes is wiped and its record deleted. Two keys of one sender for one group are both
   * kept: the older may be at the step of a message held meanwhile (taken first, it opens it; the newer, the same key
   * further on, changes nothing). The key is stored (HELD_KEYS_PREFIX, under a random name) unless it was loaded from
   * there (`key.name` given): a failed write is an "error" event and the key stays held in memory.
   */
  async #holdGroupKey(key: HeldGroupKey, loaded = false): Promise<void> {
    const gone: HeldGroupKey[] = [];
    const mine = this.#heldGroupKeys.filter((k) => k.from === key.from);
    if (mine.length >= HELD_GROUP_KEYS_PER_SENDER) {
      gone.push(...this.#heldGroupKeys.splice(this.#heldGroupKeys.indexOf(mine[0]), 1));
    }
    if (this.#heldGroupKeys.length >= HELD_GROUP_KEYS_KEPT) {
      const dropped = this.#heldGroupKeys.shift()!;
      gone.push(dropped);
      this.#emit(
        "error",
        new ClientError(
          "UnknownGroup",
          `SendingClient: dropped a key for group ${dropped.groupId} from ${dropped.from}: ` +
            `nobody trusted named its sender a member`,
        ),
      );
    }
    const held = loaded ? key : { ...key, name: HELD_KEYS_PREFIX + toHex(this.#random(HELD_KEY_NAME_BYTES)) };
    this.#heldGroupKeys.push(held);
    for (const k of gone) k.distribution.fill(0);
    await this.#deleteHeld(gone.map((k) => k.name));
    if (!loaded) await this.#saveHeldKey(held);
  }

  /**
   * Takes the keys held for a group: only those from an account acting for a member of its list, as keys (their
   * member lists and epochs were never trusted). The others are dropped and reported (`others` "drop", at join) or
   * stay held ("keep", after a list added members: they may be for a member a later list adds). Returns the records
   * of the keys that left the buffer (taken, or dropped), for the caller to delete once the group is stored: a
   * failure before leaves them on disk, loaded again at the next start.
   */
  async #takeHeldKeys(state: GroupState, others: "drop" | "keep"): Promise<(string | undefined)[]> {
    const id = toHex(state.session.groupId);
    const held = this.#heldGroupKeys.filter((k) => k.groupId === id);
    this.#heldGroupKeys = this.#heldGroupKeys.filter((k) => k.groupId !== id);
    const gone: (string | undefined)[] = [];
    for (const key of held) {
      let member: boolean;
      try {
        member = state.members.includes(await this.#actingUser(key.from));
      } catch (error) {
        this.#emit("error", error as Error);
        member = false;
      }
      if (!member && others === "keep") {
        this.#heldGroupKeys.push(key);
        continue;
      }
      gone.push(key.name);
      try {
        if (!member) {
          throw new ClientError(
            "NotMember",
            `SendingClient: dropped a key for group ${id} from ${key.from}, who acts for no member of it`,
          );
        }
        const newcomer = !state.session.members.includes(key.from);
        const before = newcomer ? state.session.serialize() : undefined;
        try {
          if (newcomer) state.session.addMember(key.from);
          state.session.processDistribution(key.from, key.distribution);
          if (newcomer) state.owed.add(key.from); // sent with this client's next message
        } catch (error) {
          // A participant whose key is refused leaves the session again: it was never sent this client's key.
          if (before !== undefined) state.session = GroupSession.deserialize(before, this.#sessionOptions());
          throw error;
        } finally {
          before?.fill(0);
        }
      } catch (error) {
        this.#emit("error", error as Error);
      } finally {
        key.distribution.fill(0);
      }
    }
    return gone;
  }

  /**
   * Follows a member list from the admin's own account, by its membership version. The admin's account is the one
   * writer, so its versions order every change: a newer list is taken whole (`#applyMembers`, "later": nothing fans
   * out on the receive path), an older or equal one changes nothing (only its key counted). After, the keys held for
   * members the list added are taken. A list still pending (`GroupState.pending`) is the admin's word too: the newer
   * of the two is followed.
   */
  async #followList(state: GroupState, key: GroupKeyContent): Promise<void> {
    const offered = { members: [...key.members], version: key.version, leadEpoch: distributionEpoch(key.distribution) };
    const pending = state.pending;
    await this.#followTo(state, pending !== undefined && pending.version >= offered.version ? pending : offered);
  }

  /**
   * Completes the list this client followed on the receive path but could not store (`GroupState.pending`), if any:
   * before anything of this client's goes to the group, so that no member that list drops is sent it. Throws what
   * the completion threw (the list stays pending).
   */
  async #settleList(state: GroupState): Promise<void> {
    if (state.pending !== undefined) await this.#followTo(state, state.pending);
  }

  /**
   * Moves the group to the admin's list `target` if it is newer than the local version (`#applyMembers`, "later").
   * When that fails before the change is stored (the store, a chain read), the list becomes pending
   * (`GroupState.pending`, stored with the old session when the store takes it) and the failure is thrown: a removal
   * learned here must not be forgotten until the next change, since this client would go on sending to the removed
   * member. A SenderKeyError (the session refused the change: no retry would do better) is only thrown, so that one
   * such list cannot stop this client from ever sending to the group again.
   */
  async #followTo(state: GroupState, target: PendingList): Promise<void> {
    if (target.version <= state.version) return; // as old as what this client has, or older: only its key counted
    const id = toHex(state.session.groupId);
    const added = target.members.some((m) => !state.members.includes(m));
    try {
      await this.#applyMembers(state, target, {}, "report", { leadEpoch: target.leadEpoch, announce: "later" });
    } catch (error) {
      if (!(error instanceof SenderKeyError)) {
        state.pending = target;
        await this.#saveGroup(id).catch((e: Error) => this.#emit("error", e)); // kept in memory if this fails too
      }
      throw error;
    }
    if (added) {
      const taken = await this.#takeHeldKeys(state, "keep");
      await this.#saveGroup(toHex(state.session.groupId));
      await this.#deleteHeld(taken);
      await this.#retryGroupMessages(toHex(state.session.groupId));
    }
  }

  /**
   * Moves a group to `target` (members and version). Members it drops are removed: their accounts and devices leave
   * the session (with devices unlinked since, and any whose user cannot be read at that moment: a device still
   * linked is added back by the next message) and this client rekeys. Members it adds join: their accounts and
   * devices are added to the session (no rekey: they get the chain at its current step, so they cannot read what was
   * sent before). A `leadEpoch` (the admin's key's epoch) beyond this client's makes it rekey into that epoch: it
   * missed a rekey (it was out of the group a while, say), and its old key was dropped by the others.
   *
   * The new session is stored with the new list before the list is taken: a failure before leaves the group as it
   * was, so an API call can be retried. Last, this client's key (the new one after a rekey) goes to every
   * participant at once (`announce` "all": the admin's own change, which the others follow), or is owed to those
   * who lack it until this client's next group message ("later": following a list on the receive path).
   */
  async #applyMembers(
    state: GroupState,
    target: { readonly members: readonly string[]; readonly version: number },
    options: ClientCallOptions,
    onFailure: FailureMode,
    how: { readonly leadEpoch?: number; readonly announce: "all" | "later" },
  ): Promise<void> {
    const id = toHex(state.session.groupId);
    const members = target.members;
    const removed = state.members.filter((m) => !members.includes(m));
    const added = members.filter((m) => !state.members.includes(m));
    const leaving: string[] = [];
    if (removed.length > 0) {
      for (const p of state.session.members) {
        if (members.includes(p)) continue;
        const user = await this.#actingUser(p).catch(() => undefined);
        if (user === undefined || !members.includes(user)) leaving.push(p);
      }
    }
    const joining =
      added.length === 0
        ? []
        : [...(await this.#participantsOf(added)).keys()].filter((p) => !state.session.members.includes(p));
    const lead = how.leadEpoch ?? 0;
    const epoch = state.session.epoch;
    const rekeyTo = removed.length > 0 ? Math.max(epoch + 1, lead) : lead > epoch ? lead : undefined;
    const before = state.session.serialize();
    const owedBefore = [...state.owed];
    const pendingBefore = state.pending;
    let fresh: Uint8Array | undefined;
    try {
      // A pending list at or below this version is done with once this change is stored (stored without it).
      if (pendingBefore !== undefined && pendingBefore.version <= target.version) state.pending = undefined;
      if (rekeyTo !== undefined) fresh = state.session.rekey(leaving, rekeyTo);
      for (const p of joining) state.session.addMember(p);
      for (const p of state.owed) if (!state.session.members.includes(p)) state.owed.delete(p);
      // Following a list (the receive path, "later"): nothing fans out; the key is owed, stored with the change.
      if (how.announce === "later") {
        for (const p of fresh !== undefined ? state.session.members : joining) state.owed.add(p);
      }
      await this.#saveGroup(id, target);
    } catch (error) {
      state.session = GroupSession.deserialize(before, this.#sessionOptions());
      state.owed.clear();
      for (const p of owedBefore) state.owed.add(p);
      state.pending = pendingBefore;
      fresh?.fill(0);
      throw error;
    } finally {
      before.fill(0);
    }
    state.members = [...members];
    state.version = target.version;
    this.#emit("group", id);
    if (how.announce === "later") {
      fresh?.fill(0);
      return;
    }
    try {
      await this.#distribute(
        state,
        fresh ?? state.session.distributionMessage(),
        state.session.members,
        options,
        onFailure,
      );
    } finally {
      fresh?.fill(0);
    }
  }

  /**
   * The group `id` for a membership change by this client: throws ClientError("UnknownGroup") for a group it is not
   * in, and ClientError("NotAdmin") unless this client is the group's admin's own account: one writer, so versions
   * order every change (the admin's devices read and send, but do not change the membership).
   */
  #groupToChange(id: string, where: string): GroupState {
    const state = this.#groups.get(id);
    if (state === undefined) throw new ClientError("UnknownGroup", `${where}: not in group ${id}`);
    if (this.address !== state.admin) {
      throw new ClientError(
        "NotAdmin",
        `${where}: expected the group's admin's own account ${state.admin}, this client is ${this.address}`,
      );
    }
    if (state.writerLost) {
      throw new ClientError(
        "NotAdmin",
        `${where}: this account rejoined its group on another client's word (its state was lost): its membership ` +
          `version may be behind its own last change, so it can no longer change the group`,
      );
    }
    return state;
  }

  /**
   * Adds `member` (a user) to a group; only the group's admin's own account may. Raises the membership version,
   * adds the member's account and linked devices to the session, stores the group, then sends this client's current
   * sender key with the new list to every participant, the newcomer included: the newcomer joins on it, the other
   * members follow the list and send their keys to the newcomer. The newcomer gets every chain at its current step,
   * so it cannot read what was sent before. Throws ClientError "UnknownGroup", "NotAdmin", "AlreadyMember",
   * "GroupFull" (MAX_GROUP_MEMBERS_ON_WIRE members, or the version at 2^32 - 1) before any change; a failure before the
   * change is stored (a chain read, the store) leaves the group as it was; a member's account that cannot be reached
   * throws after it (the others were sent the key), a device that cannot be is an "error" event.
   */
  async addGroupMember(groupId: string, member: string, options: ClientCallOptions = {}): Promise<void> {
    const id = normalizeGroupId(groupId);
    const added = getAddress(member);
    await this.#withGroupAfterFanOuts(id, async () => {
      const state = this.#groupToChange(id, "addGroupMember");
      if (state.members.includes(added)) {
        throw new ClientError("AlreadyMember", `addGroupMember: ${added} is already a member of group ${id}`);
      }
      if (state.members.length >= MAX_GROUP_MEMBERS_ON_WIRE || state.version >= MAX_GROUP_VERSION) {
        throw new ClientError(
          "GroupFull",
          `addGroupMember: expected fewer than ${MAX_GROUP_MEMBERS_ON_WIRE} members and a version below 2^32 - 1`,
        );
      }
      const target = { members: [...state.members, added], version: state.version + 1 };
      await this.#applyMembers(state, target, options, "throw", { announce: "all" });
    });
  }

  /**
   * Removes `member` (a user) from a group; only the group's admin's own account may. Raises the membership version,
   * rekeys (a new sender key in the next epoch; the member's account and devices and their keys dropped) and sends
   * the new key and member list to the remaining participants, who rekey too. Neither the removed member's account
   * nor its devices can read what is sent after. Throws ClientError "UnknownGroup", "NotAdmin", "NotMember" (not a
   * member, or the admin itself), "GroupFull" (the version at 2^32 - 1) before any change; a failure before the rekey
   * is stored (a chain read, the store) leaves the group unchanged; a remaining member's account that cannot be
   * reached throws after the rekey (the others were sent the key), a device that cannot be is an "error" event.
   */
  async removeGroupMember(groupId: string, member: string, options: ClientCallOptions = {}): Promise<void> {
    const id = normalizeGroupId(groupId);
    const removed = getAddress(member);
    await this.#withGroupAfterFanOuts(id, async () => {
      const state = this.#groupToChange(id, "removeGroupMember");
      if (!state.members.includes(removed)) {
        throw new ClientError("NotMember", `removeGroupMember: ${removed} is not a member of group ${id}`);
      }
      if (removed === this.#user) {
        throw new ClientError("NotMember", `removeGroupMember: ${removed} is this client's own user, the admin`);
      }
      if (state.version >= MAX_GROUP_VERSION) {
        throw new ClientError("GroupFull", `removeGroupMember: the membership version of ${id} is at 2^32 - 1`);
      }
      const target = { members: state.members.filter((m) => m !== removed), version: state.version + 1 };
      await this.#applyMembers(state, target, options, "throw", { announce: "all" });
    });
  }

  /**
   * Sends a text or binary message to the group: one sender-key encryption, carried inside the pairwise session to
   * each other participant acting for a current member (every member's account and linked devices, this user's other
   * clients included; a device linked since the last message gets this client's key first). Receivers show a
   * device's message as its user's. Throws ClientError("UnknownGroup" | "MessageTooLarge") before anything is sent,
   * and, also before anything is sent, the failure of a pending list's completion (a removal followed on the receive
   * path whose store failed: `GroupState.pending`) or of the group's store; a participant (a member's account or a
   * device) that cannot be reached does not make it throw: the others got the message, so it resolves and lists that
   * participant in `unreached` (an app retries it alone, or tells the user). The group's lock is held only while the
   * message is planned (`#planGroupSend`), not during the network fan-out (`#fanOut`).
   */
  async sendToGroup(
    groupId: string,
    content: string | Uint8Array,
    options: ClientCallOptions = {},
  ): Promise<GroupSendResult> {
    const id = normalizeGroupId(groupId);
    const plaintext = typeof content === "string" ? new TextEncoder().encode(content) : content;
    if (plaintext.length > MAX_GROUP_MESSAGE_BYTES) {
      throw new ClientError("MessageTooLarge", `sendToGroup: at most ${MAX_GROUP_MESSAGE_BYTES} bytes`);
    }
    // Under the group's lock only what must not interleave with a change: the list completed, the recipients read,
    // the devices linked since added, the message encrypted and the chain step stored. The fan-out goes after, so
    // that the group's receive path (and the client's receive queue behind it) does not wait for a large group's
    // network sends. Fan-outs of one group still leave one after another, in the order of their chain steps.
    const { done } = await this.#withGroup(id, async () => {
      const plan = await this.#planGroupSend(id, plaintext);
      // Not awaited here: the lock goes as soon as the message is planned.
      return { done: this.#queueFanOut(id, () => this.#fanOut(plan, options)) };
    });
    return done;
  }

  /**
   * The locked part of `sendToGroup`: completes a pending list first (`#settleList`: its failure is thrown, nothing
   * is sent), reads the participants from the DIDs and keeps those acting for a current member, adds devices linked
   * since to the session (owed this client's key, like the participants owed it already), takes the key to send them
   * and encrypts the message, and stores the group before anything leaves (a restart must never reuse a chain step).
   */
  async #planGroupSend(id: string, plaintext: Uint8Array): Promise<GroupSendPlan> {
    const state = this.#groups.get(id);
    if (state === undefined) throw new ClientError("UnknownGroup", `sendToGroup: not in group ${id}`);
    await this.#settleList(state); // a member the admin dropped must never be sent this message
    const participants = await this.#participantsOf(state.members);
    // Checked against the live member list after the chain reads: only accounts acting for a member now count.
    const current = [...participants].filter(([, member]) => state.members.includes(member)).map(([p]) => p);
    // A device linked to a member since the last message gets this client's key first, so it reads this one. It is
    // owed the key until a send reaches it, as is a participant owed it from the receive path (a join, a list).
    for (const p of current.filter((q) => !state.session.members.includes(q))) {
      state.session.addMember(p).fill(0);
      state.owed.add(p);
    }
    const keyTo = current.filter((p) => state.owed.has(p) && state.session.members.includes(p));
    // This client's key at the step this message is encrypted at.
    const keyContent = keyTo.length === 0 ? undefined : this.#groupKeyContent(state);
    const ciphertext = state.session.encrypt(plaintext);
    await this.#saveGroup(id); // before anything leaves: a restart must never reuse this chain step
    const body = encodeContent({
      kind: ContentKind.GROUP_MESSAGE,
      groupId: state.session.groupId,
      message: ciphertext,
    });
    const to = state.session.members.filter((p) => current.includes(p));
    return { id, state, epoch: state.session.epoch, keyTo, keyContent, to, memberOf: participants, body, ciphertext };
  }

  /**
   * The network part of `sendToGroup`, outside the group's lock: this client's key to the participants owed it,
   * then the message to every recipient the key did not miss (one it missed could not read the message: it is
   * listed once, in `unreached`). Then, under the lock again, a participant the key reached is no longer owed it and
   * one it missed still is (stored), unless a rekey came meanwhile (its key is then no longer the current one).
   */
  async #fanOut(plan: GroupSendPlan, options: ClientCallOptions): Promise<GroupSendResult> {
    const stillTo = (p: string) => this.#stillRecipient(plan, p);
    const reached: string[] = [];
    const missed = new Set<string>();
    try {
      const keys =
        plan.keyContent === undefined
          ? []
          : (
              await this.#sendToParticipants(
                plan.state,
                plan.keyTo,
                plan.keyContent,
                options,
                "collect",
                (p, ok) => (ok ? reached.push(p) : missed.add(p)),
                stillTo,
              )
            ).unreached;
      const to = plan.to.filter((p) => !missed.has(p));
      const sent = await this.#sendToParticipants(plan.state, to, plan.body, options, "collect", undefined, stillTo);
      return {
        messageIds: sent.messageIds,
        routes: sent.routes,
        ciphertext: plan.ciphertext,
        unreached: [...keys, ...sent.unreached],
      };
    } finally {
      plan.keyContent?.fill(0);
      if (reached.length > 0 || missed.size > 0) {
        await this.#withGroup(plan.id, () => this.#owedAfterSend(plan, reached, missed)).catch((error: Error) =>
          this.#emit("error", error),
        );
      }
    }
  }

  /**
   * Whether participant `p` of a planned group message (`#fanOut`) may still be sent it (and the key with it), checked
   * just before its send: the fan-out runs outside the group's lock, so a removal (an API call, or a list followed on
   * the receive path, applied or still pending) may have come since the plan. Only a participant of the same group
   * state, still in the session and acting for a member of the live list (and of a pending list) is.
   */
  #stillRecipient(plan: GroupSendPlan, p: string): boolean {
    const state = this.#groups.get(plan.id);
    const member = plan.memberOf.get(p);
    return (
      state === plan.state &&
      member !== undefined &&
      state.session.members.includes(p) &&
      state.members.includes(member) &&
      (state.pending === undefined || state.pending.members.includes(member))
    );
  }

  /** Notes who got this client's key with a group message (`#fanOut`), under the group's lock, and stores it. */
  async #owedAfterSend(plan: GroupSendPlan, reached: readonly string[], missed: ReadonlySet<string>): Promise<void> {
    const state = this.#groups.get(plan.id);
    if (this.#stopped) return; // stop() waited for this fan-out no longer: nothing is stored after it
    if (state !== plan.state || state.session.epoch !== plan.epoch) return; // left, or rekeyed: owed the new key
    const before = [...state.owed].join();
    for (const p of reached) state.owed.delete(p);
    for (const p of missed) if (state.session.members.includes(p)) state.owed.add(p);
    if ([...state.owed].join() !== before) await this.#saveGroup(plan.id);
  }

  /**
   * Decrypts a sender-key message of a group with this client's keys (for messages kept or forwarded by the app);
   * `from` is the sending account (a device account for a message a device sent). Throws ClientError("UnknownGroup")
   * or SenderKeyError (e.g. "UnknownSenderKey" for a member removed before it).
   */
  async decryptGroupMessage(groupId: string, ciphertext: Uint8Array): Promise<{ from: string; plaintext: Uint8Array }> {
    const id = normalizeGroupId(groupId);
    return this.#withGroup(id, async () => {
      const state = this.#groups.get(id);
      if (state === undefined) throw new ClientError("UnknownGroup", `decryptGroupMessage: not in group ${id}`);
      const opened = state.session.decrypt(ciphertext);
      await this.#saveGroup(id);
      return { from: getAddress(opened.senderId), plaintext: opened.plaintext };
    });
  }

  // ------------------------------------------------------------------------------------------------ bills

  #scheduleBills(operator: string): void {
    this.#billsDue.add(operator);
    this.#billTimer ??= setTimeout(() => this.#flushBills(), BILL_SUBMIT_DELAY_MS);
  }

  #flushBills(): void {
    clearTimeout(this.#billTimer);
    this.#billTimer = undefined;
    if (this.#billsDue.size === 0) return;
    const operators = [...this.#billsDue];
    this.#billsDue.clear();
    this.#billing = this.#billing
      .then(() => this.submitBills({ operators }))
      .catch((error: Error) => this.#emit("error", error));
  }

  async #currentEpoch(): Promise<bigint> {
    if (this.#epoch === undefined || Date.now() - this.#epoch.at > EPOCH_MAX_AGE_MS) {
      this.#epoch = { at: Date.now(), value: await this.#parameters.currentEpoch() };
    }
    return this.#epoch.value;
  }

  async #count(operator: string, messages: bigint, bytes: bigint): Promise<void> {
    const epoch = await this.#currentEpoch();
    const name = billRecord(epoch, operator);
    const counter = decodeCounter(await this.#identity.store.get(name));
    counter.messageCount += messages;
    counter.byteCount += bytes;
    await this.#identity.store.put(name, encodeCounter(counter));
  }

  /**
   * The cumulative bills this client owes for the current epoch: one per node that delivered to it (or per node of
   * `operators`), signed with the wallet-derived bill key.
   */
  async currentBills(operators?: readonly string[]): Promise<{ operator: string; bill: SignedBill }[]> {
    const wanted = operators?.map((o) => getAddress(o));
    const epoch = await this.#currentEpoch();
    const prefix = `${BILLS_PREFIX}${epoch.toString(16).padStart(16, "0")}/`;
    const out: { operator: string; bill: SignedBill }[] = [];
    for (const name of await this.#identity.store.list(prefix)) {
      const operator = getAddress(name.slice(prefix.length));
      if (wanted !== undefined && !wanted.includes(operator)) continue;
      const counter = decodeCounter(await this.#identity.store.get(name));
      if (counter.messageCount === 0n) continue;
      const key = this.#identity.billPrivateKey();
      try {
        out.push({
          operator,
          bill: signBill(key, {
            nodeId: nodeIdFromAddress(operator),
            epoch,
            messageCount: counter.messageCount,
            byteCount: counter.byteCount,
          }),
        });
      } finally {
        key.fill(0);
      }
    }
    return out;
  }

  /**
   * Signs and submits the current epoch's cumulative bill to each node that delivered (or to `operators` only).
   * Returns, per operator, how many bills the node kept (1, or 0 when it refused it as stale or smaller).
   */
  async submitBills(
    options: ClientCallOptions & { readonly operators?: readonly string[] } = {},
  ): Promise<Map<string, number>> {
    const result = new Map<string, number>();
    for (const { operator, bill } of await this.currentBills(options.operators)) {
      const node =
        this.#homeNodes.find((n) => n.operator === operator) ?? (await readEdgeNode(this.#registry, operator));
      if (node === undefined) continue;
      result.set(operator, await submitBills(this.#host, asNode(node), [bill], { signal: options.signal }));
    }
    return result;
  }

  // ------------------------------------------------------------------------------------------------ backup

  /**
   * Seals `contents` under the wallet's backup key, parks the blob in this client's own inbox at its home nodes (as
   * chunks through the relay, kept for MAX_TTL_SECONDS), where any client of the same wallet finds it, and points the
   * DID at it (`backupPointer`). The pointer is set only once every chunk of the new backup was met in the inbox
   * (read whole, through the subscriptions, BACKUP_CONFIRM_ATTEMPTS × BACKUP_CONFIRM_DELAY_MS at most, whether the
   * client was started or not); then the chunks of the backup the DID named
   * before are acknowledged (deleted) at the home nodes. Throws ClientError("BackupNotFound") when the new chunks did
   * not all arrive: the DID then still names the previous backup, which is kept.
   */
  async backup(contents: BackupContents, options: ClientCallOptions = {}): Promise<string> {
    if (this.#homeNodes.length === 0) await this.#loadHomeNodes();
    const previous = (await this.#did.readDid(this.address)).backupPointer;
    const blob = sealBackup(this.#identity, contents, this.#options.randomBytes);
    const pointer = backupPointer(blob);
    const homes = this.#homeNodes.filter((n) => n.active);
    const chunks = backupChunks(blob);
    for (const chunk of chunks) {
      const messageId = this.#random(16);
      const payload = encodeDelivery({ messageId, ttlSeconds: MAX_TTL_SECONDS, envelope: chunk });
      await this.#deliverPayload(payload, homes, options);
    }
    const digest = pointer.slice("sha256:".length).toLowerCase();
    const arrived = await this.#backupArrived(digest, chunks.length, options);
    if (arrived < chunks.length) {
      throw new ClientError(
        "BackupNotFound",
        `backup: ${arrived} of the ${chunks.length} chunks of ${pointer} reached the inbox; ` +
          `the DID still names ${previous || "no backup"}`,
      );
    }
    await this.#did.setBackupPointer(pointer);
    // Only the backup the DID named before: chunks of another digest may be a backup another app of the same wallet
    // is making right now (its chunks travel before its pointer is set).
    if (previous !== pointer && previous.startsWith("sha256:")) {
      await this.#dropBackup(previous.slice("sha256:".length).toLowerCase(), options);
    }
    return pointer;
  }

  /**
   * How many of the `count` chunks of backup `digest` (hex) this client has met in its inbox, looking until all are
   * there or BACKUP_CONFIRM_ATTEMPTS × BACKUP_CONFIRM_DELAY_MS have passed (`#scanInbox`).
   */
  async #backupArrived(digest: string, count: number, options: ClientCallOptions): Promise<number> {
    const met = () =>
      new Set(
        [...this.#backupChunks.values()].filter((k) => toHex(k.chunk.digest) === digest).map((k) => k.chunk.index),
      ).size;
    await this.#scanInbox(() => met() >= count, options);
    return met();
  }

  /**
   * Reads the whole inbox at every home node until `done()` holds, checking every BACKUP_CONFIRM_DELAY_MS,
   * BACKUP_CONFIRM_ATTEMPTS times at most, through subscriptions: one pages through the whole inbox (its backlog,
   * with a cursor), then pushes what arrives, so chunks still travelling or being replicated are met the moment they
   * land, where repeated `sync`s would page the whole inbox again each time (and meet the node's rate limit). A
   * started client has one per home node already, any other opens them for the time of the scan. What the
   * subscriptions bring is processed as always (`#processBatch`).
   */
  async #scanInbox(done: () => boolean, options: ClientCallOptions): Promise<void> {
    if (done()) return;
    if (this.#homeNodes.length === 0) await this.#loadHomeNodes();
    const scan = this.#running === undefined ? new AbortController() : undefined;
    const onAbort = () => scan?.abort(options.signal?.reason);
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const loops = scan === undefined ? [] : this.#homeNodes.map((node) => this.#subscribeLoop(node, scan.signal));
    try {
      for (let attempt = 0; attempt < BACKUP_CONFIRM_ATTEMPTS && !done(); attempt++) {
        await sleep(BACKUP_CONFIRM_DELAY_MS, options.signal);
        options.signal?.throwIfAborted();
      }
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
      scan?.abort(new ClientError("Stopped", "SendingClient: inbox scan done"));
      await Promise.allSettled(loops);
    }
  }

  async #deliverPayload(
    payload: Uint8Array,
    homes: readonly EdgeNodeInfo[],
    options: ClientCallOptions,
  ): Promise<void> {
    const nodes = await this.#edgeNodes();
    const exit = this.#shuffle([...homes])[0];
    const others = this.#shuffle(nodes.filter((n) => n.operator !== exit.operator));
    const hops = Math.min(this.#options.hops ?? MAX_HOPS, others.length + 1);
    if (hops < MIN_HOPS) throw new ClientError("NoRoute", `backup: need ${MIN_HOPS} edge nodes for a route`);
    const route = [...others.slice(0, hops - 1), exit];
    const packet = wrapPacket(
      route.map((n) => ({ peerId: peerIdBytesOf(n), relayPublicKey: n.relayPublicKey })),
      recipientIdOf(this.address),
      payload,
      this.#random,
    );
    await sendPacket(this.#host, asNode(route[0]), packet, { signal: options.signal });
  }

  /**
   * Finds the backup the DID points at in this wallet's inbox (a drain of the home nodes, then, while chunks are
   * missing, a read of the whole inbox for up to BACKUP_CONFIRM_ATTEMPTS × BACKUP_CONFIRM_DELAY_MS), checks it is the
   * blob the pointer names, and opens it with the wallet's backup key. Throws ClientError("BackupNotFound") when the
   * DID has no pointer or the chunks are not (yet) all there, and BackupError when the blob does not open.
   */
  async restoreBackup(options: ClientCallOptions = {}): Promise<BackupContents> {
    const pointer = (await this.#did.readDid(this.address)).backupPointer;
    if (!pointer.startsWith("sha256:"))
      throw new ClientError("BackupNotFound", "restoreBackup: the DID names no backup");
    await this.sync(options);
    const digest = pointer.slice("sha256:".length).toLowerCase();
    const found = () => [...this.#backupChunks.values()].map((k) => k.chunk).filter((c) => toHex(c.digest) === digest);
    const complete = () => {
      const chunks = found();
      return chunks.length > 0 && new Set(chunks.map((c) => c.index)).size >= chunks[0].count;
    };
    // The sync before met what was in the inbox then; chunks still being replicated come through the scan.
    await this.#scanInbox(complete, options);
    const chunks = found();
    const count = chunks[0]?.count ?? 0;
    const byIndex = new Map(chunks.map((c) => [c.index, c]));
    if (count === 0 || byIndex.size !== count) {
      throw new ClientError(
        "BackupNotFound",
        `restoreBackup: found ${byIndex.size} of ${count || "?"} chunks of ${pointer}`,
      );
    }
    const parts = [...Array(count).keys()].map((i) => byIndex.get(i)!.data);
    const blob = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const p of parts) {
      blob.set(p, offset);
      offset += p.length;
    }
    if (toHex(sha256(blob)) !== digest)
      throw new ClientError("BackupNotFound", "restoreBackup: chunks do not match the pointer");
    return openBackup(this.#identity, blob);
  }

  /**
   * Keeps a backup chunk met at `node` for `restoreBackup`, or says it is "stale" (of a replaced backup: to be
   * acknowledged). A chunk that does not parse is reported and left where it is (it expires).
   */
  #keepBackupChunk(node: EdgeNodeInfo, stored: StoredEnvelope): "kept" | "stale" | "malformed" {
    let chunk: BackupChunk;
    try {
      chunk = parseBackupChunk(stored.envelope);
    } catch (error) {
      this.#emit("error", error as Error);
      return "malformed";
    }
    const id = toHex(stored.messageId);
    if (this.#staleBackups.has(toHex(chunk.digest))) {
      this.#backupChunks.delete(id);
      return "stale";
    }
    const kept = this.#backupChunks.get(id) ?? { chunk, operators: new Set<string>() };
    kept.operators.add(node.operator);
    this.#backupChunks.set(id, kept);
    return "kept";
  }

  /**
   * Deletes the chunks of a replaced backup (`digest`, hex) from the home nodes: those this client has met are
   * acknowledged where they were met, the rest as a drain of the inbox meets them. A failure is an "error" event:
   * the chunks then expire with their TTL.
   */
  async #dropBackup(digest: string, options: ClientCallOptions): Promise<void> {
    this.#staleBackups.add(digest);
    const byOperator = new Map<string, Uint8Array[]>();
    for (const [id, kept] of this.#backupChunks) {
      if (toHex(kept.chunk.digest) !== digest) continue;
      this.#backupChunks.delete(id);
      for (const operator of kept.operators) {
        byOperator.set(operator, [...(byOperator.get(operator) ?? []), getBytes(`0x${id}`)]);
      }
    }
    for (const node of this.#homeNodes) {
      const ids = byOperator.get(node.operator) ?? [];
      for (let i = 0; i < ids.length; i += INBOX_MAX_BATCH) {
        try {
          const slice = ids.slice(i, i + INBOX_MAX_BATCH);
          await ackInbox(this.#host, asNode(node), this.#signer, slice, {
            signal: options.signal,
            randomBytes: this.#random,
          });
        } catch (error) {
          if (options.signal?.aborted) throw error;
          this.#emit("error", error as Error);
        }
      }
    }
    await this.sync(options);
  }
}

function peerIdBytesOf(node: EdgeNodeInfo): Uint8Array {
  return peerIdBytes(node.peerId);
}

/** The admin of a group: the account its id begins with (checksummed). */
function adminOfGroup(groupId: string): string {
  return getAddress(`0x${groupId.slice(0, 40)}`);
}

function normalizeGroupId(groupId: string): string {
  const hex = groupId.toLowerCase().replace(/^0x/, "");
  if (!/^[0-9a-f]{64}$/.test(hex))
    throw new ClientError("UnknownGroup", `expected a 32-byte hex group id, got ${groupId}`);
  return hex;
}

/**
 * Whether two sender-key distribution messages carry the same key (version, group id, epoch and key id), maybe at
 * different steps of its chain.
 */
function sameSenderKey(a: Uint8Array, b: Uint8Array): boolean {
  const head = 1 + GROUP_ID_LENGTH + 4 + SENDER_KEY_ID_LENGTH;
  return bytesEqual(a.subarray(0, head), b.subarray(0, head));
}

/** Whether two lists name the same members (in any order). */
function sameMembers(a: { readonly members: readonly string[] }, b: { readonly members: readonly string[] }): boolean {
  return a.members.length === b.members.length && a.members.every((m) => b.members.includes(m));
}

/** What an app sees of a pending invitation: no key, and copies it cannot change the stored one through. */
function invitationView(invitation: PendingInvitation): GroupInvitation {
  return {
    groupId: invitation.groupId,
    admin: invitation.admin,
    version: invitation.version,
    members: [...invitation.members],
  };
}

/**
 * The epoch of a sender-key distribution message (version 1 || group id 32 || epoch u32 || …), read in place: no
 * copy of its chain key is made (parseContent checked its length).
 */
function distributionEpoch(distribution: Uint8Array): number {
  return readU32(distribution, 1 + GROUP_ID_LENGTH);
}

/** The kind and payload fields of a message for a text or binary content. */
function directMessage(content: DirectContent): Pick<ReceivedMessage, "kind" | "text" | "data"> {
  return content.kind === ContentKind.TEXT
    ? { kind: "text", text: content.text, data: new TextEncoder().encode(content.text) }
    : { kind: "binary", data: content.data };
}

function decodeText(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

function billRecord(epoch: bigint, operator: string): string {
  return `${BILLS_PREFIX}${epoch.toString(16).padStart(16, "0")}/${getAddress(operator).toLowerCase()}`;
}

function decodeCounter(bytes: Uint8Array | undefined): BillCounter {
  if (bytes === undefined || bytes.length !== 16) return { messageCount: 0n, byteCount: 0n };
  const view = new DataView(bytes.buffer, bytes.byteOffset, 16);
  return { messageCount: view.getBigUint64(0), byteCount: view.getBigUint64(8) };
}

function encodeCounter(counter: BillCounter): Uint8Array {
  const out = new Uint8Array(16);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, counter.messageCount);
  view.setBigUint64(8, counter.byteCount);
  return out;
}

/** `create`'s check of the `signedPrekeyRotationMs` option (see SendingClientOptions). */
function checkSignedPrekeyRotation(value: number | undefined): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < MIN_SIGNED_PREKEY_ROTATION_MS || value > MAX_SIGNED_PREKEY_ROTATION_MS) {
    throw new RangeError(
      `SendingClient.create: expected signedPrekeyRotationMs an integer in [${MIN_SIGNED_PREKEY_ROTATION_MS}, ` +
        `${MAX_SIGNED_PREKEY_ROTATION_MS}] (1 minute to 90 days; rotation cannot be turned off), got ${value}`,
    );
  }
}

/** Runs `call`, retrying while the node refuses it as UNAUTHORIZED (its view of the DIDs lags the chain). */
async function retryChainLag<T>(call: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const lagging = error instanceof NodeRefusedError && error.wireCode === WireErrorCode.UNAUTHORIZED;
      if (!lagging || attempt >= CHAIN_LAG_RETRIES || signal?.aborted) throw error;
    }
    await sleep(CHAIN_LAG_DELAY_MS, signal);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** What a `deviceKeys` entry that names an account says about it (byte 11 of the entry). */
const DeviceLink = { DEVICE: 0x00, OWNER: 0x01 } as const;

/**
 * The `deviceKeys` entry naming `account`: 11 zero bytes, the role byte, the 20-byte address. DEVICE (0x00, the
 * address left-padded to 32 bytes) sits in a user's DID and names one of its devices; OWNER (0x01) sits in a device's
 * DID and names the user it belongs to. The role gives the link its direction: both DIDs name each other, so without
 * it a user with one device and that device would look alike. An X25519 key starts with these 11 zero bytes and the
 * role byte with probability 2^-96, so the entries cannot be confused with device identity keys.
 */
function deviceLinkEntry(role: (typeof DeviceLink)[keyof typeof DeviceLink], account: string): Uint8Array {
  const entry = getBytes(zeroPadValue(account, 32));
  entry[11] = role;
  return entry;
}

/** The account a `deviceKeys` entry names in `role`, or undefined for any other entry. */
function accountOfLinkEntry(key: Uint8Array, role: (typeof DeviceLink)[keyof typeof DeviceLink]): string | undefined {
  if (key.length !== 32 || key.subarray(0, 11).some((b) => b !== 0) || key[11] !== role) return undefined;
  return getAddress(hexlify(key.subarray(12)));
}

/**
 * Runs `task` once every task queued before it under `key` in `queues` has settled (one at a time per key, in call
 * order), and returns its result. The queue holds only the tail's settlement, and the key is dropped once idle.
 */
function runInTurn<T>(queues: Map<string, Promise<unknown>>, key: string, task: () => Promise<T>): Promise<T> {
  const run = (queues.get(key) ?? Promise.resolve()).then(task);
  const tail = run.catch(() => undefined);
  queues.set(key, tail);
  void tail.then(() => {
    if (queues.get(key) === tail) queues.delete(key);
  });
  return run;
}
