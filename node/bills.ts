/**
 * The edge node's bill book (`/sending/bills/1.0.0`, docs/WIRE.md and docs/PROOF_OF_RELAY.md). Recipients hand the
 * node the bills they signed for it (SUBMIT → ACCEPTED); guardians collect them to prove the node's work (COLLECT →
 * BILLS pages).
 *
 * A submitted bill is kept only if: `verifyBill` accepts it (EdDSA-Poseidon under the bill key it carries); its
 * `nodeId` is this node's operator; its epoch is the current or the previous one (the previous one is still being
 * settled); and the hash of its bill key is a live leaf of the identity tree, which the node rebuilds from the
 * DidRegistry's `IdentityTreeChanged` events (sdk/chain/identityTree.ts) so that a revoked or unknown key is refused.
 * Per (key hash, epoch) the node keeps the bill with the most work (messageCount, then byteCount): a bill is
 * cumulative, so the largest is the one to prove. Bills live in the node database (node/db.ts); epochs older than
 * BILLS_KEEP_EPOCHS are pruned.
 *
 * Consent (CONSENT_REQUEST → CONSENT): a guardian's slot for this node settles on chain only with the node's EIP-712
 * `SlotConsent` (sdk/chain/consent.ts, docs/PROOF_OF_RELAY.md), which stops a guardian from moving the node's bound
 * past bills it holds. The node signs a slot only for an ended epoch, only if `newBound` is the order key of one of its
 * bills for that epoch, and only if `work` is the capped work of all its bills with order keys in (prevBound, newBound]:
 * the slot then skips none of its bills and claims no other work. Bills whose key has left the identity tree are not
 * counted (no proof can carry them, so a guardian could never match them).
 */
import type { Connection, Libp2p, Stream } from "@libp2p/interface" with { "resolution-mode": "import" };
import { getAddress, type Signer, type TypedDataDomain } from "ethers";
import type { DidRegistry } from "../typechain-types";
import {
  BillFormatError,
  creditedWork,
  decodeSignedBill,
  encodeSignedBill,
  nodeIdFromAddress,
  recipientKeyHash,
  verifyBill,
  type SignedBill,
} from "../sdk/bill/bill";
import { orderKey } from "../sdk/bill/batchInput";
import { signSlotConsent, type SlotConsentSignature } from "../sdk/chain/consent";
import { IdentityTree } from "../sdk/chain/identityTree";
import { BILLS_MAX_FRAME_BYTES, BILLS_PROTOCOL, WireErrorCode, type Frame } from "../sdk/wire/frame";
import {
  BillsType,
  MAX_BILLS_PER_SUBMISSION,
  encodeBillsMessage,
  parseBillsMessage,
  type ConsentRequestMessage,
  type SubmitBillsMessage,
} from "../sdk/wire/messages";
import type { Migration, NodeDatabase } from "./db";
import { CoalescedRun } from "./coalesce";
import { createLogger, type Logger } from "./log";
import { RequestRefused, serveFrames, type RefusalHook } from "./serve";
import { RateLimiter, type RateLimit } from "./rateLimit";

/**
 * Requests one peer may make: 20 a second, 200 at once. A client submits a bill per delivery batch; a guardian
 * collects and asks consent once per node and epoch.
 */
export const BILLS_PEER_RATE_LIMIT: RateLimit = { perSecond: 20, burst: 200 };

/** Bills of the last 8 epochs are kept: settlement of an epoch ends a few epochs after it; older ones cannot pay. */
export const BILLS_KEEP_EPOCHS = 8n;
/** Most blocks one log query covers: public RPCs refuse wider ranges. */
const MAX_LOG_RANGE = 5_000;
/** Bits of a key hash below its order key (sdk/bill/batchInput.ts `orderKey` keeps the top 200 of 254). */
const ORDER_KEY_SHIFT = 54n;

/** The bill book's table. */
export const BILL_MIGRATIONS: readonly Migration[] = [
  {
    id: "bills/1-bills",
    up: `
      CREATE TABLE bills (
        key_hash      TEXT    NOT NULL,   -- recipientKeyHash, 64 hex digits (sorts like the number)
        epoch         INTEGER NOT NULL,
        message_count INTEGER NOT NULL,
        byte_count    INTEGER NOT NULL,
        bill          BLOB    NOT NULL,   -- the 135-byte signed bill
        received_at   INTEGER NOT NULL,
        PRIMARY KEY (epoch, key_hash)
      ) WITHOUT ROWID;
    `,
  },
];

/** Why a bill was not kept. */
export type BillRejection = "bad-format" | "bad-signature" | "wrong-node" | "stale-epoch" | "unknown-key" | "smaller";

/** A bill the book refused, and why. */
export class BillRejectedError extends Error {
  readonly code: BillRejection;
  constructor(code: BillRejection, message: string) {
    super(message);
    this.name = "BillRejectedError";
    this.code = code;
  }
}

/**
 * The identity tree as the DidRegistry's events build it, followed incrementally: `sync()` reads the events since
 * the last block it saw (in ranges of at most MAX_LOG_RANGE blocks) and replays them.
 */
export class IdentityTreeFollower {
  private readonly registry: DidRegistry;
  private tree = new IdentityTree();
  private readonly fromBlock: number;
  private nextBlock: number;
  private readonly syncs = new CoalescedRun(() => this.run());

  constructor(registry: DidRegistry, fromBlock: number) {
    this.registry = registry;
    this.fromBlock = fromBlock;
    this.nextBlock = fromBlock;
  }

  /** Whether `keyHash` is a live leaf as of the last sync. */
  has(keyHash: bigint): boolean {
    return this.tree.has(keyHash);
  }

  /** The tree's root as of the last sync. */
  get root(): bigint {
    return this.tree.root;
  }

  /** Replays the events up to now; a call during a run is answered by the run after it (CoalescedRun). */
  sync(): Promise<void> {
    return this.syncs.call();
  }

  /** Replays one event as IdentityTree.fromEvents does: an insert at `size`, else an update or (leaf 0) a removal. */
  private apply(index: bigint, leaf: bigint): void {
    if (index === BigInt(this.tree.size)) this.tree.insert(leaf);
    else if (leaf === 0n) this.tree.remove(index);
    else this.tree.update(index, leaf);
  }

  private async run(): Promise<void> {
    const provider = this.registry.runner?.provider;
    if (provider === null || provider === undefined) {
      throw new Error("IdentityTreeFollower.sync: expected a registry connected to a provider");
    }
    const head = await provider.getBlockNumber();
    while (this.nextBlock <= head) {
      const to = Math.min(head, this.nextBlock + MAX_LOG_RANGE - 1);
      const events = await this.registry.queryFilter(this.registry.filters.IdentityTreeChanged(), this.nextBlock, to);
      events.sort((a, b) => a.blockNumber - b.blockNumber || a.index - b.index);
      try {
        for (const e of events) this.apply(e.args.index, e.args.leaf);
      } catch (error) {
        // Events that do not replay (a reorg under us): start over from the first block next time.
        this.tree = new IdentityTree();
        this.nextBlock = this.fromBlock;
        throw error;
      }
      this.nextBlock = to + 1;
    }
  }
}

/** What the node needs to consent to guardians' slots (CONSENT_REQUEST). */
export interface BillConsentInit {
  /** The node's registered signer (`NodeRegistry.signerOf(operator)`): the edge node's `signerKey` wallet. */
  readonly signer: Signer;
  /** The rollup's EIP-712 domain (sdk/chain/consent.ts `rollupDomain`). */
  readonly domain: TypedDataDomain;
  /** The circuit's per-bill work cap (`RelayCircuitParams.maxWorkPerBill`): work is counted as the proof counts it. */
  readonly maxWorkPerBill: bigint;
}

/** The part of a libp2p node the service uses. */
export type BillsHost = Pick<Libp2p, "handle" | "unhandle">;

export interface BillServiceInit {
  readonly db: NodeDatabase;
  /** This node's operator address: the `nodeId` every kept bill names. */
  readonly operator: string;
  /** The current epoch (ProtocolParameters.currentEpoch() in the daemon). */
  readonly currentEpoch: () => Promise<bigint>;
  /** The identity tree (a live follower of the DidRegistry in the daemon). */
  readonly identityTree: Pick<IdentityTreeFollower, "has" | "sync">;
  /**
   * Whether a peer may COLLECT and send CONSENT_REQUEST; everyone if omitted. The daemon lets in only the registry's
   * active guardians (node/guardians.ts).
   */
  readonly mayCollect?: (peerId: string) => boolean | Promise<boolean>;
  /** Signs consent to guardians' slots; without it CONSENT_REQUEST is answered UNSUPPORTED. */
  readonly consent?: BillConsentInit;
  /** Told how many bills each SUBMIT kept (metrics). */
  readonly onKept?: (count: number) => void;
  readonly onRefused?: RefusalHook;
  /** Requests a peer may make (BILLS_PEER_RATE_LIMIT if omitted). */
  readonly peerRateLimit?: RateLimit;
  readonly logger?: Logger;
  readonly now?: () => number;
}

const keyHex = (keyHash: bigint): string => keyHash.toString(16).padStart(64, "0");

/** The bill book of one edge node. */
export class BillService {
  private readonly host: BillsHost;
  private readonly init: BillServiceInit;
  private readonly nodeId: bigint;
  private readonly log: Logger;
  private readonly now: () => number;
  private started = false;
  private readonly peerLimiter: RateLimiter;
  private prunedBelow = -1n;

  constructor(host: BillsHost, init: BillServiceInit) {
    this.host = host;
    this.init = init;
    this.nodeId = nodeIdFromAddress(getAddress(init.operator));
    this.log = init.logger ?? createLogger("bills");
    this.now = init.now ?? Date.now;
    this.peerLimiter = new RateLimiter(init.peerRateLimit ?? BILLS_PEER_RATE_LIMIT, { now: this.now });
    init.db.migrate(BILL_MIGRATIONS);
  }

  async start(): Promise<void> {
    if (this.started) return;
    await this.host.handle(BILLS_PROTOCOL, (stream: Stream, connection: Connection) =>
      serveFrames(
        stream,
        connection,
        BILLS_MAX_FRAME_BYTES,
        (f, from) => this.handle(f, from),
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
    await this.host.unhandle(BILLS_PROTOCOL);
  }

  /** Handles one frame of the protocol; throws RequestRefused or MessageError for the error answer. */
  async handle(frame: Frame, from: string): Promise<Frame[]> {
    const message = parseBillsMessage(frame.type, frame.body);
    if (message.type === BillsType.SUBMIT) {
      const kept = await this.submit(message);
      return [encodeBillsMessage({ type: BillsType.ACCEPTED, accepted: kept.filter((k) => k === true).length })];
    }
    if (message.type === BillsType.COLLECT) {
      if (this.init.mayCollect !== undefined && !(await this.init.mayCollect(from))) {
        throw new RequestRefused(WireErrorCode.UNAUTHORIZED, "bills: this peer may not collect");
      }
      const all = this.bills(message.epoch);
      const pages: Frame[] = [];
      for (let i = 0; i === 0 || i < all.length; i += MAX_BILLS_PER_SUBMISSION) {
        const bills = all.slice(i, i + MAX_BILLS_PER_SUBMISSION);
        const more = i + MAX_BILLS_PER_SUBMISSION < all.length;
        pages.push(encodeBillsMessage({ type: BillsType.BILLS, bills, more }));
      }
      return pages;
    }
    if (message.type === BillsType.CONSENT_REQUEST) {
      if (this.init.mayCollect !== undefined && !(await this.init.mayCollect(from))) {
        throw new RequestRefused(WireErrorCode.UNAUTHORIZED, "bills: this peer may not ask for consent");
      }
      const signature = await this.consent(message);
      return [encodeBillsMessage({ type: BillsType.CONSENT, ...signature })];
    }
    throw new RequestRefused(WireErrorCode.UNSUPPORTED, `bills: a node does not accept type ${message.type}`);
  }

  /** Checks and keeps each bill; returns, per bill, true if kept or the reason it was not. */
  async submit(message: SubmitBillsMessage): Promise<(true | BillRejection)[]> {
    const current = await this.init.currentEpoch();
    this.prune(current);
    await this.init.identityTree.sync();
    const out: (true | BillRejection)[] = [];
    for (const bill of message.bills) {
      try {
        this.check(bill, current);
        out.push(this.keep(bill) ? true : "smaller"); // re-checked in the transaction
      } catch (error) {
        if (!(error instanceof BillRejectedError)) throw error;
        this.log.debug("bill refused", { reason: error.code, message: error.message });
        out.push(error.code);
      }
    }
    const kept = out.filter((k) => k === true).length;
    if (kept > 0) this.init.onKept?.(kept);
    return out;
  }

  /**
   * Throws BillRejectedError unless `signed` may be kept in epoch `current`. The cheap checks (node, epoch, identity
   * tree, more work than the bill held) run before the signature, which costs about 80 ms: a peer cannot make the node
   * verify bills it would not keep anyway.
   */
  check(signed: SignedBill, current: bigint): void {
    const where = "BillService.check";
    if (signed.bill.nodeId !== this.nodeId) {
      throw new BillRejectedError(
        "wrong-node",
        `${where}: expected a bill for node ${this.nodeId}, got one for another`,
      );
    }
    if (signed.bill.epoch !== current && signed.bill.epoch + 1n !== current) {
      throw new BillRejectedError(
        "stale-epoch",
        `${where}: expected epoch ${current} or ${current - 1n}, got ${signed.bill.epoch}`,
      );
    }
    let keyHash: bigint;
    try {
      keyHash = recipientKeyHash(signed.billKey);
    } catch (error) {
      if (!(error instanceof BillFormatError)) throw error;
      throw new BillRejectedError("bad-format", `${where}: ${error.message}`);
    }
    if (!this.init.identityTree.has(keyHash)) {
      throw new BillRejectedError("unknown-key", `${where}: the bill key is not a live leaf of the identity tree`);
    }
    if (!this.larger(signed)) throw new BillRejectedError("smaller", `${where}: a bill with as much work is held`);
    let valid: boolean;
    try {
      valid = verifyBill(signed);
    } catch (error) {
      if (!(error instanceof BillFormatError)) throw error;
      throw new BillRejectedError("bad-format", `${where}: ${error.message}`);
    }
    if (!valid) throw new BillRejectedError("bad-signature", `${where}: the signature does not verify`);
  }

  /** Whether `signed` carries more work than the bill held for its key and epoch (messages, then bytes). */
  private larger(signed: SignedBill): boolean {
    const held = this.init.db.sqlite
      .prepare<[bigint, string], { message_count: number; byte_count: number }>(
        "SELECT message_count, byte_count FROM bills WHERE epoch = ? AND key_hash = ?",
      )
      .get(signed.bill.epoch, keyHex(recipientKeyHash(signed.billKey)));
    if (held === undefined) return true;
    const m = BigInt(held.message_count);
    const b = BigInt(held.byte_count);
    return signed.bill.messageCount > m || (signed.bill.messageCount === m && signed.bill.byteCount > b);
  }

  /** Keeps `signed` if it carries more work than the bill held for its key and epoch; true when kept. */
  keep(signed: SignedBill): boolean {
    const sqlite = this.init.db.sqlite;
    const key = keyHex(recipientKeyHash(signed.billKey));
    const epoch = signed.bill.epoch;
    return this.init.db.transaction(() => {
      if (!this.larger(signed)) return false;
      sqlite
        .prepare(
          `INSERT INTO bills (key_hash, epoch, message_count, byte_count, bill, received_at) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (epoch, key_hash) DO UPDATE SET message_count = excluded.message_count,
             byte_count = excluded.byte_count, bill = excluded.bill, received_at = excluded.received_at`,
        )
        .run(
          key,
          epoch,
          signed.bill.messageCount,
          signed.bill.byteCount,
          Buffer.from(encodeSignedBill(signed)),
          this.now(),
        );
      return true;
    });
  }

  /** The bills kept for `epoch`, ordered by key hash. */
  bills(epoch: bigint): SignedBill[] {
    if (epoch < 0n || epoch > BigInt(Number.MAX_SAFE_INTEGER)) return [];
    return this.init.db.sqlite
      .prepare<[bigint], Buffer>("SELECT bill FROM bills WHERE epoch = ? ORDER BY key_hash")
      .pluck()
      .all(epoch)
      .map((b) => decodeSignedBill(new Uint8Array(b)));
  }

  /**
   * Signs this node's consent to the slot `request` describes, or throws RequestRefused: UNSUPPORTED without a consent
   * signer; NOT_FOUND, saying which check failed, unless the epoch has ended, `newBound` is the order key of one of
   * the node's bills for it, and `work` is the capped work of all its bills with order keys in (prevBound, newBound].
   */
  async consent(request: ConsentRequestMessage): Promise<SlotConsentSignature> {
    const where = "BillService.consent";
    const consent = this.init.consent;
    if (consent === undefined) {
      throw new RequestRefused(WireErrorCode.UNSUPPORTED, `${where}: this node does not sign slot consents`);
    }
    const { epoch, prevBound, newBound, work } = request;
    const refuse = (why: string) => new RequestRefused(WireErrorCode.NOT_FOUND, `${where}: ${why}`);
    const current = await this.init.currentEpoch();
    if (epoch >= current) throw refuse(`expected an ended epoch (below ${current}), got ${epoch}`);
    await this.init.identityTree.sync();
    const held = this.slotWork(epoch, prevBound, newBound, consent.maxWorkPerBill);
    if (!held.hasNewBound) {
      throw refuse(`expected newBound ${newBound} to be the order key of a bill held for epoch ${epoch}; it is not`);
    }
    if (held.work !== work) {
      throw refuse(
        `expected work ${held.work} (${held.bills} bills held in (${prevBound}, ${newBound}] for epoch ${epoch}), ` +
          `got ${work}`,
      );
    }
    const signature = await signSlotConsent(consent.signer, consent.domain, epoch, {
      node: this.init.operator,
      prevBound,
      newBound,
      work,
    });
    this.log.info("slot consent signed", { epoch, prevBound, newBound, work, bills: held.bills });
    return signature;
  }

  /**
   * The capped work of the live bills held for `epoch` with order keys in (prevBound, newBound], how many, and whether
   * one has order key `newBound`. Order keys are key hashes shifted right, so the range is a key-hash range.
   */
  private slotWork(
    epoch: bigint,
    prevBound: bigint,
    newBound: bigint,
    cap: bigint,
  ): { work: bigint; bills: number; hasNewBound: boolean } {
    const out = { work: 0n, bills: 0, hasNewBound: false };
    if (epoch < 0n || epoch > BigInt(Number.MAX_SAFE_INTEGER) || newBound <= prevBound) return out;
    const rows = this.init.db.sqlite
      .prepare<[bigint, string, string], { key_hash: string; message_count: number; byte_count: number }>(
        "SELECT key_hash, message_count, byte_count FROM bills WHERE epoch = ? AND key_hash >= ? AND key_hash < ?",
      )
      .all(epoch, keyHex((prevBound + 1n) << ORDER_KEY_SHIFT), keyHex((newBound + 1n) << ORDER_KEY_SHIFT));
    for (const row of rows) {
      const keyHash = BigInt(`0x${row.key_hash}`);
      if (!this.init.identityTree.has(keyHash)) continue; // left the tree since: no proof can carry it
      const bill = {
        nodeId: this.nodeId,
        epoch,
        messageCount: BigInt(row.message_count),
        byteCount: BigInt(row.byte_count),
      };
      out.work += creditedWork(bill, cap);
      out.bills++;
      if (orderKey(keyHash) === newBound) out.hasNewBound = true;
    }
    return out;
  }

  /** How many bills are kept, over all epochs. */
  count(): number {
    return this.init.db.sqlite.prepare<[], number>("SELECT count(*) FROM bills").pluck().get() as number;
  }

  private prune(current: bigint): void {
    const below = current - BILLS_KEEP_EPOCHS;
    if (below <= this.prunedBelow) return;
    this.init.db.sqlite.prepare("DELETE FROM bills WHERE epoch < ?").run(below);
    this.prunedBelow = below;
  }
}
