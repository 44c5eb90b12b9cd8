/**
 * The client's side of each edge-node protocol, one function per exchange, over a ClientHost (sdk/net/host.ts):
 *
 *   relay    sendPacket        one layered packet to the entry hop; an error answer means it was not taken
 *   prekeys  publishPrekeys    PUBLISH (signed by the identity) → PUBLISHED (one-time prekeys held)
 *            fetchBundle       FETCH_BUNDLE → BUNDLE (at most one one-time prekey, never handed out twice)
 *   inbox    fetchInbox        FETCH (signed) → MESSAGES
 *            ackInbox          ACK (signed) → ACKED
 *            subscribeInbox    SUBSCRIBE (signed) → MESSAGES frames pushed until the stream closes
 *   bills    submitBills       SUBMIT → ACCEPTED
 *
 * Signed requests name the node's peer id (its binary multihash) so they cannot be replayed to another node, carry
 * the client's clock in milliseconds and a fresh 16-byte nonce (docs/WIRE.md). Every answer is parsed strictly; an
 * answer of another type than the one expected is a NodeProtocolError.
 */
import { getBytes } from "ethers";
import type { PrekeyBundle } from "../crypto/x3dh";
import { defaultRandomBytes, type RandomBytes } from "../crypto/primitives";
import type { SignedBill } from "../bill/bill";
import { BILLS_PROTOCOL, INBOX_PROTOCOL, PREKEYS_PROTOCOL, RELAY_PACKET_TYPE, RELAY_PROTOCOL } from "../wire/frame";
import { PACKET_BYTES } from "../wire/onion";
import {
  BillsType,
  INBOX_MAX_BATCH,
  InboxType,
  MAX_BILLS_PER_SUBMISSION,
  MAX_ONE_TIME_PREKEYS,
  MessageError,
  NONCE_BYTES,
  PrekeysType,
  encodeBillsMessage,
  encodeInboxMessage,
  encodePrekeysMessage,
  parseBillsMessage,
  parseInboxMessage,
  parsePrekeysMessage,
  signInboxRequest,
  signPublishPrekeys,
  type InboxCursor,
  type StoredEnvelope,
} from "../wire/messages";
import { NodeProtocolError, type CallOptions, type ClientHost, type NodeAddress } from "./host";
import { peerIdBytes } from "./peerId";

/** The keys a recipient signs its inbox and prekey requests with (its X3DH identity). */
export interface RequestSigner {
  /** The recipient id on the wire: the 20 bytes of the wallet address. */
  readonly recipientId: Uint8Array;
  /** The identity's Ed25519 signing secret key (the public half is in the DID document). */
  readonly signingSecretKey: Uint8Array;
}

/** What a prekey publication carries (the public halves only). */
export interface PrekeyPublication {
  readonly identity: { readonly dh: Uint8Array; readonly signing: Uint8Array };
  readonly signedPrekey: { readonly id: number; readonly publicKey: Uint8Array; readonly signature: Uint8Array };
  readonly oneTimePrekeys: readonly { readonly id: number; readonly publicKey: Uint8Array }[];
}

/** The recipient id of a wallet address on the wire (its 20 bytes). */
export function recipientIdOf(address: string): Uint8Array {
  return getBytes(address);
}

function parseAnswer<T>(parse: () => T, where: string, peerId: string): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof MessageError)
      throw new NodeProtocolError(`${where}: ${error.message}`, peerId, { cause: error });
    throw error;
  }
}

function single<T extends { type: number }>(answers: readonly T[], type: number, where: string, peerId: string): T {
  if (answers.length !== 1 || answers[0].type !== type) {
    throw new NodeProtocolError(
      `${where}: expected one answer of type ${type}, got [${answers.map((a) => a.type).join(", ")}]`,
      peerId,
    );
  }
  return answers[0];
}

function freshRequest(signer: RequestSigner, random: RandomBytes) {
  return { recipientId: signer.recipientId, timestamp: Date.now(), nonce: random(NONCE_BYTES) };
}

/** Sends one layered packet (exactly PACKET_BYTES) to the entry hop. Resolves when the hop took it. */
export async function sendPacket(
  host: ClientHost,
  entry: NodeAddress,
  packet: Uint8Array,
  options: CallOptions = {},
): Promise<void> {
  if (packet.length !== PACKET_BYTES) {
    throw new RangeError(`sendPacket: expected a ${PACKET_BYTES}-byte packet, got ${packet.length}`);
  }
  const answers = await host.request(entry, RELAY_PROTOCOL, [{ type: RELAY_PACKET_TYPE, body: packet }], options);
  if (answers.length > 0) {
    throw new NodeProtocolError(`sendPacket: expected no answer, got ${answers.length} frames`, entry.peerId);
  }
}

/** Publishes the identity, signed prekey and one-time prekeys to a home node; returns how many it now holds. */
export async function publishPrekeys(
  host: ClientHost,
  node: NodeAddress,
  signer: RequestSigner,
  publication: PrekeyPublication,
  options: CallOptions & { readonly randomBytes?: RandomBytes } = {},
): Promise<number> {
  const where = "publishPrekeys";
  if (publication.oneTimePrekeys.length > MAX_ONE_TIME_PREKEYS) {
    throw new RangeError(`${where}: expected at most ${MAX_ONE_TIME_PREKEYS} one-time prekeys`);
  }
  const message = signPublishPrekeys(
    peerIdBytes(node.peerId),
    {
      type: PrekeysType.PUBLISH,
      ...freshRequest(signer, options.randomBytes ?? defaultRandomBytes),
      identity: publication.identity,
      signedPrekey: publication.signedPrekey,
      oneTimePrekeys: publication.oneTimePrekeys,
    },
    signer.signingSecretKey,
  );
  const frames = await host.request(node, PREKEYS_PROTOCOL, [encodePrekeysMessage(message)], {
    ...options,
    until: () => true,
  });
  const answers = frames.map((f) => parseAnswer(() => parsePrekeysMessage(f.type, f.body), where, node.peerId));
  const published = single(answers, PrekeysType.PUBLISHED, where, node.peerId);
  return (published as { oneTimePrekeysHeld: number }).oneTimePrekeysHeld;
}

/** Fetches a recipient's prekey bundle from one of its home nodes (not verified here: the caller checks it). */
export async function fetchBundle(
  host: ClientHost,
  node: NodeAddress,
  recipientId: Uint8Array,
  options: CallOptions = {},
): Promise<PrekeyBundle> {
  const where = "fetchBundle";
  const frames = await host.request(
    node,
    PREKEYS_PROTOCOL,
    [encodePrekeysMessage({ type: PrekeysType.FETCH_BUNDLE, recipientId })],
    { ...options, until: () => true },
  );
  const answers = frames.map((f) => parseAnswer(() => parsePrekeysMessage(f.type, f.body), where, node.peerId));
  return (single(answers, PrekeysType.BUNDLE, where, node.peerId) as { bundle: PrekeyBundle }).bundle;
}

/**
 * Fetches up to `limit` (1..INBOX_MAX_BATCH) stored envelopes from a home node, oldest first; with `after` (the last
 * envelope of the previous page), the ones after it, so envelopes left in the inbox do not hide the newer ones.
 */
export async function fetchInbox(
  host: ClientHost,
  node: NodeAddress,
  signer: RequestSigner,
  limit: number = INBOX_MAX_BATCH,
  options: CallOptions & { readonly randomBytes?: RandomBytes; readonly after?: InboxCursor } = {},
): Promise<readonly StoredEnvelope[]> {
  const where = "fetchInbox";
  const fresh = freshRequest(signer, options.randomBytes ?? defaultRandomBytes);
  const request = signInboxRequest(
    peerIdBytes(node.peerId),
    { type: InboxType.FETCH, ...fresh, limit, ...(options.after && { after: options.after }) },
    signer.signingSecretKey,
  );
  const frames = await host.request(node, INBOX_PROTOCOL, [encodeInboxMessage(request)], {
    ...options,
    until: () => true,
  });
  const answers = frames.map((f) => parseAnswer(() => parseInboxMessage(f.type, f.body), where, node.peerId));
  return (single(answers, InboxType.MESSAGES, where, node.peerId) as { messages: readonly StoredEnvelope[] }).messages;
}

/** Acknowledges (deletes) up to INBOX_MAX_BATCH envelopes at a home node; returns how many it deleted. */
export async function ackInbox(
  host: ClientHost,
  node: NodeAddress,
  signer: RequestSigner,
  messageIds: readonly Uint8Array[],
  options: CallOptions & { readonly randomBytes?: RandomBytes } = {},
): Promise<number> {
  const where = "ackInbox";
  const request = signInboxRequest(
    peerIdBytes(node.peerId),
    { type: InboxType.ACK, ...freshRequest(signer, options.randomBytes ?? defaultRandomBytes), messageIds },
    signer.signingSecretKey,
  );
  const frames = await host.request(node, INBOX_PROTOCOL, [encodeInboxMessage(request)], {
    ...options,
    until: () => true,
  });
  const answers = frames.map((f) => parseAnswer(() => parseInboxMessage(f.type, f.body), where, node.peerId));
  return (single(answers, InboxType.ACKED, where, node.peerId) as { deleted: number }).deleted;
}

/**
 * Subscribes to a home node's inbox: yields each batch of envelopes the node pushes (its backlog first, then new
 * ones as they arrive) until the node closes the stream, the caller stops iterating, or `signal` aborts.
 */
export async function* subscribeInbox(
  host: ClientHost,
  node: NodeAddress,
  signer: RequestSigner,
  options: { readonly signal?: AbortSignal; readonly randomBytes?: RandomBytes } = {},
): AsyncGenerator<readonly StoredEnvelope[], void, undefined> {
  const where = "subscribeInbox";
  const request = signInboxRequest(
    peerIdBytes(node.peerId),
    { type: InboxType.SUBSCRIBE, ...freshRequest(signer, options.randomBytes ?? defaultRandomBytes) },
    signer.signingSecretKey,
  );
  for await (const frame of host.subscribe(node, INBOX_PROTOCOL, encodeInboxMessage(request), options)) {
    const message = parseAnswer(() => parseInboxMessage(frame.type, frame.body), where, node.peerId);
    if (message.type !== InboxType.MESSAGES) {
      throw new NodeProtocolError(`${where}: expected MESSAGES frames, got type ${message.type}`, node.peerId);
    }
    yield message.messages;
  }
}

/** Hands signed bills (at most MAX_BILLS_PER_SUBMISSION) to the node they bill; returns how many it kept. */
export async function submitBills(
  host: ClientHost,
  node: NodeAddress,
  bills: readonly SignedBill[],
  options: CallOptions = {},
): Promise<number> {
  const where = "submitBills";
  if (bills.length === 0 || bills.length > MAX_BILLS_PER_SUBMISSION) {
    throw new RangeError(`${where}: expected 1..${MAX_BILLS_PER_SUBMISSION} bills, got ${bills.length}`);
  }
  const frames = await host.request(node, BILLS_PROTOCOL, [encodeBillsMessage({ type: BillsType.SUBMIT, bills })], {
    ...options,
    until: () => true,
  });
  const answers = frames.map((f) => parseAnswer(() => parseBillsMessage(f.type, f.body), where, node.peerId));
  return (single(answers, BillsType.ACCEPTED, where, node.peerId) as { accepted: number }).accepted;
}
