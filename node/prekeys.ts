/**
 * The home node's prekey store (`/sending/prekeys/1.0.0`, docs/WIRE.md): a recipient publishes its X3DH identity,
 * signed prekey and a batch of one-time prekeys (PUBLISH, signed by its Ed25519 signing key for this node's peer
 * id); anyone fetches its bundle (FETCH_BUNDLE → BUNDLE) to start a session with it.
 *
 * What is checked before anything is kept: the publication parses strictly; its signature is by the signing key it
 * carries, for this node, within REQUEST_WINDOW_MS (`checkPublishPrekeys`); that key is the one in the recipient's
 * DID document (the directory, node/directory.ts); the signed prekey's X3DH signature verifies; this node is one of
 * the recipient's home nodes; the nonce was not seen within the window. A one-time prekey is handed out at most
 * once: the bundle is read and the prekey deleted in the same sqlite transaction (better-sqlite3 runs transactions
 * one at a time, so concurrent fetches cannot both get it). Everything lives in the node database
 * (node/db.ts), so a restart loses nothing.
 *
 * Anyone may fetch, so two limits keep one-time prekeys from being drained: each peer may make
 * PREKEYS_PEER_RATE_LIMIT requests (RATE_LIMITED beyond it), and each recipient hands out ONE_TIME_PREKEY_RATE_LIMIT
 * one-time prekeys; beyond that a bundle goes out without one, which X3DH allows (the session then rests on the
 * signed prekey alone until the budget refills), so peers with fresh ids cannot empty a recipient's store either. The
 * budgets live in memory: a restart refills them.
 */
import type { Connection, Libp2p, Stream } from "@libp2p/interface" with { "resolution-mode": "import" };
import { getAddress } from "ethers";
import { X3dhError, verifyPrekeyBundle, type PrekeyBundle } from "../sdk/crypto/x3dh";
import { PREKEYS_MAX_FRAME_BYTES, PREKEYS_PROTOCOL, WireErrorCode, type Frame } from "../sdk/wire/frame";
import {
  PrekeysType,
  REQUEST_WINDOW_MS,
  checkPublishPrekeys,
  encodePrekeysMessage,
  parsePrekeysMessage,
  type PublishPrekeysMessage,
} from "../sdk/wire/messages";
import type { Migration, NodeDatabase } from "./db";
import type { RecipientDirectory } from "./directory";
import { createLogger, type Logger } from "./log";
import { RequestRefused, serveFrames, type RefusalHook } from "./serve";
import { RateLimiter, type RateLimit } from "./rateLimit";

/** Most one-time prekeys held per recipient: 1,000 × ~60 bytes; a client tops up long before that is needed. */
export const MAX_ONE_TIME_PREKEYS_HELD = 1_000;
/** Requests one peer may make: 5 a second, 60 at once (a client fetches a bundle per new contact). */
export const PREKEYS_PEER_RATE_LIMIT: RateLimit = { perSecond: 5, burst: 60 };
/** One-time prekeys one recipient hands out: 100 at once, then one a minute (1,540 a day). */
export const ONE_TIME_PREKEY_RATE_LIMIT: RateLimit = { perSecond: 1 / 60, burst: 100 };
/** The wire answer counts held prekeys in a uint16. */
const MAX_HELD_ON_WIRE = 0xffff;

/** The prekey store's tables. */
export const PREKEY_MIGRATIONS: readonly Migration[] = [
  {
    id: "prekeys/1-bundles",
    up: `
      CREATE TABLE prekey_identities (
        recipient      BLOB    PRIMARY KEY,   -- the 20-byte address
        identity_dh    BLOB    NOT NULL,
        identity_sign  BLOB    NOT NULL,
        signed_id      INTEGER NOT NULL,
        signed_key     BLOB    NOT NULL,
        signed_sig     BLOB    NOT NULL,
        published_at   INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE prekey_one_time (
        recipient  BLOB    NOT NULL REFERENCES prekey_identities (recipient) ON DELETE CASCADE,
        id         INTEGER NOT NULL,
        public_key BLOB    NOT NULL,
        PRIMARY KEY (recipient, id)
      ) WITHOUT ROWID;
      CREATE TABLE prekey_nonces (
        nonce      BLOB    PRIMARY KEY,
        expires_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE INDEX prekey_nonces_by_expiry ON prekey_nonces (expires_at);
    `,
  },
  {
    // One-time prekeys already handed out, so a re-published batch (its PUBLISHED answer lost, say) cannot bring one
    // back: a one-time prekey is used at most once, whatever the client sends. Cleared with a new identity.
    id: "prekeys/2-handed-out",
    up: `
      CREATE TABLE prekey_handed_out (
        recipient  BLOB NOT NULL,
        public_key BLOB NOT NULL,
        PRIMARY KEY (recipient, public_key)
      ) WITHOUT ROWID;
    `,
  },
];

/** The part of a libp2p node the service uses. */
export type PrekeyHost = Pick<Libp2p, "handle" | "unhandle" | "peerId">;

export interface PrekeyServiceInit {
  readonly db: NodeDatabase;
  readonly directory: RecipientDirectory;
  /** This node's operator address: a publication is kept only when the recipient names it as a home node. */
  readonly operator: string;
  /** Clock in ms, for tests; Date.now if omitted. */
  readonly now?: () => number;
  readonly logger?: Logger;
  /** Told about each refused request (metrics). */
  readonly onRefused?: RefusalHook;
  /** Requests a peer may make (PREKEYS_PEER_RATE_LIMIT if omitted). */
  readonly peerRateLimit?: RateLimit;
  /** One-time prekeys a recipient hands out (ONE_TIME_PREKEY_RATE_LIMIT if omitted). */
  readonly oneTimePrekeyRateLimit?: RateLimit;
}

interface IdentityRow {
  identity_dh: Buffer;
  identity_sign: Buffer;
  signed_id: number;
  signed_key: Buffer;
  signed_sig: Buffer;
}

const u8 = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.length).slice();

/** The prekey store of one home node. */
export class PrekeyService {
  private readonly host: PrekeyHost;
  private readonly init: PrekeyServiceInit;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly operator: string;
  private readonly nodePeerId: Uint8Array;
  private readonly peerLimiter: RateLimiter;
  private readonly oneTimeLimiter: RateLimiter;
  private started = false;

  constructor(host: PrekeyHost, init: PrekeyServiceInit) {
    this.host = host;
    this.init = init;
    this.operator = getAddress(init.operator);
    this.now = init.now ?? Date.now;
    this.log = init.logger ?? createLogger("prekeys");
    this.nodePeerId = host.peerId.toMultihash().bytes;
    this.peerLimiter = new RateLimiter(init.peerRateLimit ?? PREKEYS_PEER_RATE_LIMIT, { now: this.now });
    this.oneTimeLimiter = new RateLimiter(init.oneTimePrekeyRateLimit ?? ONE_TIME_PREKEY_RATE_LIMIT, { now: this.now });
    init.db.migrate(PREKEY_MIGRATIONS);
  }

  async start(): Promise<void> {
    if (this.started) return;
    await this.host.handle(PREKEYS_PROTOCOL, (stream: Stream, connection: Connection) =>
      serveFrames(
        stream,
        connection,
        PREKEYS_MAX_FRAME_BYTES,
        (f) => this.handle(f),
        this.log,
        this.init.onRefused,
        this.peerLimiter,
      ),
    );
    this.started = true;
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    await this.host.unhandle(PREKEYS_PROTOCOL);
  }

  /** One-time prekeys held for `recipient` (an address). */
  oneTimePrekeysHeld(recipient: string): number {
    const id = Buffer.from(getAddress(recipient).slice(2), "hex");
    return this.init.db.sqlite
      .prepare<[Buffer], number>("SELECT count(*) FROM prekey_one_time WHERE recipient = ?")
      .pluck()
      .get(id) as number;
  }

  /** Handles one frame of the protocol; throws RequestRefused or MessageError for the error answer. */
  async handle(frame: Frame): Promise<Frame[]> {
    const message = parsePrekeysMessage(frame.type, frame.body);
    if (message.type === PrekeysType.PUBLISH) {
      const held = await this.publish(message);
      const out = encodePrekeysMessage({ type: PrekeysType.PUBLISHED, oneTimePrekeysHeld: held });
      return [out];
    }
    if (message.type === PrekeysType.FETCH_BUNDLE) {
      const bundle = this.takeBundle(message.recipientId);
      if (bundle === undefined) throw new RequestRefused(WireErrorCode.NOT_FOUND, "prekeys: no bundle for recipient");
      return [encodePrekeysMessage({ type: PrekeysType.BUNDLE, bundle })];
    }
    throw new RequestRefused(WireErrorCode.UNSUPPORTED, `prekeys: a node does not accept type ${message.type}`);
  }

  /** Checks and keeps a publication; returns the one-time prekeys now held. */
  async publish(message: PublishPrekeysMessage): Promise<number> {
    const where = "PrekeyService.publish";
    if (message.recipientId.length !== 20) {
      throw new RequestRefused(WireErrorCode.MALFORMED, `${where}: expected a 20-byte recipient id`);
    }
    const recipient = getAddress("0x" + Buffer.from(message.recipientId).toString("hex"));
    const now = this.now();
    const check = checkPublishPrekeys(this.nodePeerId, message, now);
    if (check === "stale") throw new RequestRefused(WireErrorCode.REPLAYED, `${where}: timestamp outside the window`);
    if (check !== "ok") throw new RequestRefused(WireErrorCode.UNAUTHORIZED, `${where}: bad signature`);
    const signingKey = await this.init.directory.signingKey(recipient);
    if (signingKey === undefined || !equal(signingKey, message.identity.signing)) {
      throw new RequestRefused(WireErrorCode.UNAUTHORIZED, `${where}: not signed by the DID's signing key`);
    }
    try {
      verifyPrekeyBundle({ identity: message.identity, signedPrekey: message.signedPrekey });
    } catch (error) {
      if (!(error instanceof X3dhError)) throw error;
      throw new RequestRefused(WireErrorCode.UNAUTHORIZED, `${where}: signed prekey: ${error.message}`);
    }
    const homeNodes = await this.init.directory.homeNodes(recipient);
    if (!homeNodes.includes(this.operator)) {
      throw new RequestRefused(WireErrorCode.NOT_FOUND, `${where}: this node is not a home node of the recipient`);
    }
    const sqlite = this.init.db.sqlite;
    const id = Buffer.from(message.recipientId);
    return this.init.db.transaction(() => {
      sqlite.prepare("DELETE FROM prekey_nonces WHERE expires_at < ?").run(now);
      const nonce = Buffer.from(message.nonce);
      if (sqlite.prepare("SELECT 1 FROM prekey_nonces WHERE nonce = ?").get(nonce) !== undefined) {
        throw new RequestRefused(WireErrorCode.REPLAYED, `${where}: nonce seen before`);
      }
      sqlite
        .prepare("INSERT INTO prekey_nonces (nonce, expires_at) VALUES (?, ?)")
        .run(nonce, now + 2 * REQUEST_WINDOW_MS);
      const old = sqlite.prepare<[Buffer], IdentityRow>("SELECT * FROM prekey_identities WHERE recipient = ?").get(id);
      const sameIdentity =
        old !== undefined &&
        equal(u8(old.identity_dh), message.identity.dh) &&
        equal(u8(old.identity_sign), message.identity.signing);
      // A new identity invalidates every one-time prekey published under the old one.
      if (old !== undefined && !sameIdentity) {
        sqlite.prepare("DELETE FROM prekey_one_time WHERE recipient = ?").run(id);
        sqlite.prepare("DELETE FROM prekey_handed_out WHERE recipient = ?").run(id);
      }
      sqlite
        .prepare(
          `INSERT INTO prekey_identities
             (recipient, identity_dh, identity_sign, signed_id, signed_key, signed_sig, published_at)
           VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (recipient) DO UPDATE SET identity_dh = excluded.identity_dh,
             identity_sign = excluded.identity_sign, signed_id = excluded.signed_id, signed_key = excluded.signed_key,
             signed_sig = excluded.signed_sig, published_at = excluded.published_at`,
        )
        .run(
          id,
          Buffer.from(message.identity.dh),
          Buffer.from(message.identity.signing),
          message.signedPrekey.id,
          Buffer.from(message.signedPrekey.publicKey),
          Buffer.from(message.signedPrekey.signature),
          now,
        );
      const held = sqlite
        .prepare<[Buffer], number>("SELECT count(*) FROM prekey_one_time WHERE recipient = ?")
        .pluck()
        .get(id) as number;
      const seenIds = new Set<number>();
      const fresh = message.oneTimePrekeys.filter((p) => {
        if (seenIds.has(p.id)) return false; // a repeated id within one publication: the first one counts
        seenIds.add(p.id);
        const held = sqlite.prepare("SELECT 1 FROM prekey_one_time WHERE recipient = ? AND id = ?").get(id, p.id);
        const used = sqlite
          .prepare("SELECT 1 FROM prekey_handed_out WHERE recipient = ? AND public_key = ?")
          .get(id, Buffer.from(p.publicKey));
        return held === undefined && used === undefined;
      });
      if (held + fresh.length > MAX_ONE_TIME_PREKEYS_HELD) {
        throw new RequestRefused(
          WireErrorCode.QUOTA_EXCEEDED,
          `${where}: expected at most ${MAX_ONE_TIME_PREKEYS_HELD} one-time prekeys held, would hold ${held + fresh.length}`,
        );
      }
      const insert = sqlite.prepare("INSERT INTO prekey_one_time (recipient, id, public_key) VALUES (?, ?, ?)");
      for (const p of fresh) insert.run(id, p.id, Buffer.from(p.publicKey));
      return Math.min(held + fresh.length, MAX_HELD_ON_WIRE);
    });
  }

  /**
   * The bundle of `recipientId` with its lowest one-time prekey, deleted in the same transaction (without one when
   * none is held or the recipient's one-time prekey budget is spent); or undefined.
   */
  takeBundle(recipientId: Uint8Array): PrekeyBundle | undefined {
    if (recipientId.length !== 20) return undefined;
    const sqlite = this.init.db.sqlite;
    const id = Buffer.from(recipientId);
    return this.init.db.transaction(() => {
      const row = sqlite.prepare<[Buffer], IdentityRow>("SELECT * FROM prekey_identities WHERE recipient = ?").get(id);
      if (row === undefined) return undefined;
      const identity = { dh: u8(row.identity_dh), signing: u8(row.identity_sign) };
      const signedPrekey = { id: row.signed_id, publicKey: u8(row.signed_key), signature: u8(row.signed_sig) };
      const oneTime = sqlite
        .prepare<[Buffer], { id: number; public_key: Buffer }>(
          "SELECT id, public_key FROM prekey_one_time WHERE recipient = ? ORDER BY id LIMIT 1",
        )
        .get(id);
      if (oneTime === undefined || !this.oneTimeLimiter.take(id.toString("hex"))) return { identity, signedPrekey };
      sqlite.prepare("DELETE FROM prekey_one_time WHERE recipient = ? AND id = ?").run(id, oneTime.id);
      sqlite
        .prepare("INSERT OR IGNORE INTO prekey_handed_out (recipient, public_key) VALUES (?, ?)")
        .run(id, oneTime.public_key);
      return { identity, signedPrekey, oneTimePrekey: { id: oneTime.id, publicKey: u8(oneTime.public_key) } };
    });
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
