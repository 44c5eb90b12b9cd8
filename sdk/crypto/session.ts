/**
 * A pairwise session from X3DH into the Double Ratchet (Double Ratchet §5.1): SK becomes the root key, AD the
 * associated data of every message, and the responder's signed prekey its first ratchet key pair.
 *
 * The initial message is the X3DH header (106 bytes, x3dh.ts `encodeX3dhHeader`) followed by the first ratchet
 * message. The responder deletes the one-time prekey only after that first message decrypts (X3DH §3.4), so a
 * forged header cannot burn a prekey that a genuine initiator used; a replayed initial message then fails with
 * X3dhError "MissingPrekey" (X3DH §4.2). An initial message sent without a one-time prekey could be replayed to create
 * a second responder session (its first reply carries a fresh ratchet key, so the replayer learns nothing): this
 * function keeps no state, and ClientIdentity.acceptSession refuses a base key it already accepted ("Replayed").
 */
import { expectBytes, wipe } from "./bytes";
import type { RandomBytes } from "./primitives";
import { RatchetSession, type RatchetOptions } from "./ratchet";
import {
  X3DH_HEADER_LENGTH,
  X3dhError,
  decodeX3dhHeader,
  encodeX3dhHeader,
  x3dhInitiate,
  x3dhRespond,
  type IdentityKeyPair,
  type IdentityPublicKey,
  type PrekeyBundle,
  type PrekeyLookup,
} from "./x3dh";

/** The responder's prekey store: lookup plus deletion of a used one-time prekey. */
export interface PrekeyStore extends PrekeyLookup {
  /** Deletes the one-time prekey `id` (secret and public) so it is never used again. */
  removeOneTimePrekey(id: number): void;
}

/** A session just opened by the initiator, and the initial message to send. */
export interface InitiatedSession {
  /** The initiator's ratchet session. */
  readonly session: RatchetSession;
  /** X3DH header || first ratchet message. */
  readonly message: Uint8Array;
}

/** A session just accepted by the responder, and the initial message's plaintext. */
export interface AcceptedSession {
  /** The responder's ratchet session (it can send now). */
  readonly session: RatchetSession;
  /** The first message's plaintext. */
  readonly plaintext: Uint8Array;
  /** Who opened the session: check it against the peer's DID document before trusting it (X3DH §4.1). */
  readonly peerIdentity: IdentityPublicKey;
}

/**
 * The initiator: X3DH against `bundle` (signature checked), a ratchet session, and the initial message carrying
 * `plaintext`. Throws X3dhError or RatchetError.
 */
export function initiateSession(
  identity: IdentityKeyPair,
  bundle: PrekeyBundle,
  plaintext: Uint8Array,
  options: RatchetOptions = {},
): InitiatedSession {
  const random: RandomBytes | undefined = options.randomBytes;
  const x3dh = x3dhInitiate(identity, bundle, random);
  try {
    const session = RatchetSession.initiator(
      { sharedSecret: x3dh.sharedSecret, associatedData: x3dh.associatedData, remoteRatchetKey: x3dh.remoteRatchetKey },
      options,
    );
    const header = encodeX3dhHeader(x3dh.header);
    const first = session.encrypt(plaintext);
    const message = new Uint8Array(header.length + first.length);
    message.set(header);
    message.set(first, header.length);
    return { session, message };
  } finally {
    wipe(x3dh.sharedSecret);
  }
}

/**
 * The responder: parses the initial message, runs X3DH with the prekeys it names, decrypts the first message, and
 * only then deletes the one-time prekey from `store`. Throws X3dhError (e.g. "MissingPrekey") or RatchetError
 * (e.g. TamperedMessageError), and then deletes nothing.
 */
export function acceptSession(
  identity: IdentityKeyPair,
  store: PrekeyStore,
  message: Uint8Array,
  options: RatchetOptions = {},
): AcceptedSession {
  expectBytes(message, undefined, "acceptSession", "initial message", (m) => new X3dhError("Malformed", m));
  if (message.length < X3DH_HEADER_LENGTH) {
    throw new X3dhError(
      "Malformed",
      `acceptSession: expected at least ${X3DH_HEADER_LENGTH} bytes, got ${message.length}`,
    );
  }
  const header = decodeX3dhHeader(message.subarray(0, X3DH_HEADER_LENGTH));
  const x3dh = x3dhRespond(identity, store, header);
  try {
    const session = RatchetSession.responder(
      { sharedSecret: x3dh.sharedSecret, associatedData: x3dh.associatedData, ratchetKeyPair: x3dh.ratchetKeyPair },
      options,
    );
    const plaintext = session.decrypt(message.subarray(X3DH_HEADER_LENGTH));
    if (x3dh.oneTimePrekeyId !== undefined) store.removeOneTimePrekey(x3dh.oneTimePrekeyId);
    return { session, plaintext, peerIdentity: header.identity };
  } finally {
    wipe(x3dh.sharedSecret, x3dh.ratchetKeyPair.secretKey);
  }
}
