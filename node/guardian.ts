/**
 * The guardian daemon: settles edge nodes' relay work on chain. For every ended epoch whose settlement window is open
 * ([epoch end, epoch end + SettlementWindow), docs/PROOF_OF_RELAY.md; from end + ForcedInclusionDelay a node may also
 * settle its own bills), it
 *
 *   1. collects signed bills from a `BillSource` (the edge nodes, over libp2p, in production);
 *   2. checks every bill again, trusting no source: `verifyBill`, the epoch, the bill key a live leaf of the identity
 *      tree (rebuilt from DidRegistry `IdentityTreeChanged` events, sdk/chain/identityTree.ts), the node an active
 *      edge node; keeps one bill per (node, recipient): the largest, since bills are cumulative;
 *   3. reads each node's stored bound (`RelayRollup.boundOf`) and keeps only bills whose order key lies above it, so a
 *      recipient once settled for a node and epoch is never counted again, whoever settled it;
 *   4. fills the circuit's slots (nodes by address, each node's bills by order key, at most BILLS a slot; what does
 *      not fit waits for the next batch);
 *   5. asks each slot's node for its consent (`BillSource.consent`: the node's EIP-712 `SlotConsent`, which the rollup
 *      requires, sdk/chain/consent.ts) and checks it recovers to the node's registered signer; a node that refuses or
 *      does not answer has its bills dropped for this round and the batch is rebuilt without it (it can still settle
 *      itself by forced inclusion);
 *   6. proves in a worker thread (node/prover.ts), attaches the consents and submits;
 *   7. on `RollupBoundMismatch` (another guardian moved a bound first) or `RollupUnknownRoot` (the identity tree moved
 *      on while proving) re-reads and rebuilds; on `RollupNoConsent` drops that node, as in 5; repeats until no bill
 *      above the bounds is left.
 *
 * Progress lives in `<dataDir>/guardian-state.json`: the transaction in flight (written as soon as it is sent) and the
 * settlements made. A guardian restarted while a batch was in flight waits for that transaction before building
 * anything, so it never sends a second batch for bills already on their way. It posts nothing else: quality scores are
 * the watchdogs'.
 */
import { readFileSync } from "node:fs";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import {
  Wallet,
  JsonRpcProvider,
  getAddress,
  type Provider,
  type TransactionReceipt,
  type TypedDataDomain,
} from "ethers";
import type { Libp2p } from "@libp2p/interface" with { "resolution-mode": "import" };
import {
  DidRegistry__factory,
  NodeRegistry__factory,
  ProtocolParameters__factory,
  RelayRollup__factory,
  type DidRegistry,
  type NodeRegistry,
  type ProtocolParameters,
  type RelayRollup,
} from "../typechain-types";
import { addressFromNodeId, nodeIdFromAddress, recipientKeyHash, verifyBill, type SignedBill } from "../sdk/bill/bill";
import {
  buildRelayBatch,
  orderKey,
  relayCircuitParams,
  type RelayBatch,
  type RelayCircuitParams,
  type SlotClaim,
} from "../sdk/bill/batchInput";
import type { RollupSlot, SolidityProof } from "../sdk/bill/prove";
import { NO_CONSENT, recoverSlotConsentSigner, rollupDomain, type SlotConsentSignature } from "../sdk/chain/consent";
import { IdentityTree } from "../sdk/chain/identityTree";
import { readEdgeNodes, type EdgeNodeInfo } from "../sdk/chain/nodes";
import {
  BILLS_MAX_FRAME_BYTES,
  BILLS_PROTOCOL,
  ERROR_FRAME_TYPE,
  FrameDecoder,
  encodeFrame,
  parseErrorAnswer,
} from "../sdk/wire/frame";
import { BillsType, encodeBillsMessage, parseBillsMessage } from "../sdk/wire/messages";
import { loadDeployment, type Deployment } from "../sdk/chain/deployment";
import { NodeRole, parameterIndex } from "../sdk/chain/protocol";
import { createEdgeHost } from "./host";
import { createLogger, type Logger } from "./log";
import { drained } from "../sdk/net/drain";
import { readFromNow } from "../sdk/net/reader";
import { WorkerProver, circuitArtifactPaths, type BatchProver, type ProofProgress } from "./prover";

/** A round every 15 s: an epoch's settlement window lasts minutes (300 s locally), bills trickle in until it ends. */
export const DEFAULT_GUARDIAN_POLL_MS = 15_000;
/** Rebuilds of one epoch in one round before giving up until the next round: each costs a proof. */
export const MAX_REBUILDS_PER_ROUND = 4;
/** Settlements remembered in the state file: enough for an operator's report, bounded so the file stays small. */
export const MAX_SETTLEMENTS_KEPT = 1_000;
/** File of the guardian's progress in its data directory. */
export const GUARDIAN_STATE_FILE = "guardian-state.json";
/** How often a transaction left in flight by a previous run is looked for. */
const RECEIPT_POLL_MS = 500;

/** The fields of a slot a node consents to (its node is the one asked). */
export interface ConsentSlot {
  readonly prevBound: bigint;
  readonly newBound: bigint;
  readonly work: bigint;
}

/** Where the guardian gets bills, and the nodes' consent to its slots. The guardian re-verifies everything it gets. */
export interface BillSource {
  /** The signed bills the source holds for `epoch`, for any nodes (duplicates and junk are tolerated). */
  collect(epoch: bigint, signal?: AbortSignal): Promise<readonly SignedBill[]>;
  /**
   * Node `node`'s consent to `slot` in `epoch` (its registered signer's `SlotConsent`, sdk/chain/consent.ts); rejects
   * if the node refuses or cannot be asked. The guardian checks the signature itself.
   */
  consent(node: string, epoch: bigint, slot: ConsentSlot, signal?: AbortSignal): Promise<SlotConsentSignature>;
}

/** Per-node wait for a COLLECT answer: a node that cannot page out its bills in 10 s is skipped this round. */
export const COLLECT_TIMEOUT_MS = 10_000;
/** Most BILLS pages read from one node (64 bills each): 1,024 pages is 65,536 recipients, far above any real node. */
export const MAX_COLLECT_PAGES = 1_024;
/** Per-node wait for a CONSENT answer: one database range query and one signature; 10 s means the node is not there. */
export const CONSENT_TIMEOUT_MS = 10_000;

/** What `Libp2pBillSource` needs of a libp2p node. */
export type CollectHost = Pick<Libp2p, "dialProtocol" | "peerStore">;

export interface Libp2pBillSourceInit {
  /** The guardian's libp2p host (it only dials). */
  readonly host: CollectHost;
  /** The edge nodes to collect from: every active edge node in the registry (`readEdgeNodes`) in the daemon. */
  readonly listNodes: (signal?: AbortSignal) => Promise<EdgeNodeInfo[]>;
  /** Per-node wait for COLLECT (COLLECT_TIMEOUT_MS if omitted) and for CONSENT (CONSENT_TIMEOUT_MS if omitted). */
  readonly timeoutMs?: number;
  readonly logger?: Logger;
}

/**
 * Collects bills from the edge nodes over `/sending/bills/1.0.0`: COLLECT(epoch) to each node, BILLS pages back until
 * one without `more`. A node that is unreachable, answers with an error or sends garbage is skipped (and logged); the
 * others' bills are still returned. Asks a node for its consent to a slot with CONSENT_REQUEST → CONSENT.
 */
export class Libp2pBillSource implements BillSource {
  private readonly log: Logger;
  /** The nodes of the last listing, by operator address: where to ask for consent. */
  private known = new Map<string, EdgeNodeInfo>();

  constructor(private readonly init: Libp2pBillSourceInit) {
    this.log = init.logger ?? createLogger("guardian:collect");
  }

  async collect(epoch: bigint, signal?: AbortSignal): Promise<readonly SignedBill[]> {
    const nodes = await this.list(signal);
    const pages = await Promise.all(
      nodes.map((node) =>
        this.collectFrom(node, epoch, signal).catch((error: unknown) => {
          signal?.throwIfAborted();
          this.log.warn("collect failed", { node: node.operator, epoch, error });
          return [] as SignedBill[];
        }),
      ),
    );
    return pages.flat();
  }

  /**
   * Asks `node` (an operator address) for its consent to `slot` in `epoch`. Throws GuardianError
   * GUARDIAN_CONSENT_REFUSED when the node is not an active edge node, answers with an error or with anything but
   * CONSENT; a dial or stream failure (or the CONSENT_TIMEOUT_MS timeout) is thrown as it comes.
   */
  async consent(node: string, epoch: bigint, slot: ConsentSlot, signal?: AbortSignal): Promise<SlotConsentSignature> {
    const where = "Libp2pBillSource.consent";
    const operator = getAddress(node);
    let info = this.known.get(operator);
    if (info === undefined) info = (await this.list(signal)).find((n) => getAddress(n.operator) === operator);
    if (info === undefined) {
      throw new GuardianError("GUARDIAN_CONSENT_REFUSED", `${where}: ${operator} is not an active edge node`);
    }
    const timeout = AbortSignal.timeout(this.init.timeoutMs ?? CONSENT_TIMEOUT_MS);
    const combined = signal === undefined ? timeout : AbortSignal.any([signal, timeout]);
    const stream = await this.dial(info, combined);
    const stopWaiting = abortOnSignal(stream, combined);
    const chunks = readFromNow(stream); // before writing: sdk/net/reader.ts says why
    try {
      const { type, body } = encodeBillsMessage({ type: BillsType.CONSENT_REQUEST, epoch, ...pickSlot(slot) });
      if (!stream.send(encodeFrame(type, body, BILLS_MAX_FRAME_BYTES))) await drained(stream, combined);
      await stream.close({ signal: combined });
      const decoder = new FrameDecoder(BILLS_MAX_FRAME_BYTES);
      for await (const chunk of chunks) {
        combined.throwIfAborted();
        const [frame] = decoder.push(chunk);
        if (frame === undefined) continue;
        if (frame.type === ERROR_FRAME_TYPE) {
          const answer = parseErrorAnswer(frame.body);
          throw new GuardianError(
            "GUARDIAN_CONSENT_REFUSED",
            `${where}: ${operator} refused (${answer.code}): ${answer.message}`,
          );
        }
        const message = parseBillsMessage(frame.type, frame.body);
        if (message.type !== BillsType.CONSENT) {
          throw new GuardianError(
            "GUARDIAN_CONSENT_REFUSED",
            `${where}: expected CONSENT from ${operator}, got type ${message.type}`,
          );
        }
        return { consentR: message.consentR, consentVS: message.consentVS };
      }
      combined.throwIfAborted();
      throw new GuardianError("GUARDIAN_CONSENT_REFUSED", `${where}: ${operator} closed the stream without answering`);
    } catch (error) {
      stream.abort(error as Error);
      combined.throwIfAborted(); // a read cut short by the timeout ends as the timeout, not as a stream error
      throw error;
    } finally {
      stopWaiting();
    }
  }

  /** The active edge nodes now, remembered by operator for `consent`. */
  private async list(signal?: AbortSignal): Promise<EdgeNodeInfo[]> {
    const nodes = await this.init.listNodes(signal);
    this.known = new Map(nodes.map((n) => [getAddress(n.operator), n]));
    return nodes;
  }

  /** A bills-protocol stream to `node`, its registered addresses added to the peer store first. */
  private async dial(node: EdgeNodeInfo, signal: AbortSignal) {
    const { peerIdFromString } = await import("@libp2p/peer-id");
    const { multiaddr } = await import("@multiformats/multiaddr");
    const peer = peerIdFromString(node.peerId);
    await this.init.host.peerStore.merge(peer, { multiaddrs: node.multiaddrs.map((a) => multiaddr(a)) }, { signal });
    return this.init.host.dialProtocol(peer, BILLS_PROTOCOL, { signal });
  }

  /** The bills one node hands over for `epoch`. */
  async collectFrom(node: EdgeNodeInfo, epoch: bigint, signal?: AbortSignal): Promise<SignedBill[]> {
    const timeout = AbortSignal.timeout(this.init.timeoutMs ?? COLLECT_TIMEOUT_MS);
    const combined = signal === undefined ? timeout : AbortSignal.any([signal, timeout]);
    const stream = await this.dial(node, combined);
    const stopWaiting = abortOnSignal(stream, combined);
    const nodeId = nodeIdFromAddress(getAddress(node.operator));
    const bills: SignedBill[] = [];
    const chunks = readFromNow(stream); // before writing: sdk/net/reader.ts says why
    try {
      const { type, body } = encodeBillsMessage({ type: BillsType.COLLECT, epoch });
      if (!stream.send(encodeFrame(type, body, BILLS_MAX_FRAME_BYTES))) await drained(stream, combined);
      const decoder = new FrameDecoder(BILLS_MAX_FRAME_BYTES);
      let pages = 0;
      read: for await (const chunk of chunks) {
        combined.throwIfAborted();
        for (const frame of decoder.push(chunk)) {
          if (frame.type === ERROR_FRAME_TYPE) {
            const answer = parseErrorAnswer(frame.body);
            throw new GuardianError(
              "GUARDIAN_COLLECT_REFUSED",
              `Libp2pBillSource: ${node.operator} answered ${answer.code}: ${answer.message}`,
            );
          }
          const message = parseBillsMessage(frame.type, frame.body);
          if (message.type !== BillsType.BILLS) {
            throw new GuardianError(
              "GUARDIAN_COLLECT_REFUSED",
              `Libp2pBillSource: expected BILLS from ${node.operator}, got type ${message.type}`,
            );
          }
          // Only the answering node's own bills: another node's would let any node build (and so spoil) its slots.
          bills.push(...message.bills.filter((bill) => bill.bill.nodeId === nodeId));
          if (!message.more) break read;
          if (++pages >= MAX_COLLECT_PAGES) {
            throw new GuardianError(
              "GUARDIAN_COLLECT_REFUSED",
              `Libp2pBillSource: ${node.operator} sent more than ${MAX_COLLECT_PAGES} pages`,
            );
          }
        }
      }
      await stream.close({ signal: combined });
    } catch (error) {
      stream.abort(error as Error);
      combined.throwIfAborted();
      throw error;
    } finally {
      stopWaiting();
    }
    return bills;
  }
}

/**
 * Aborts `stream` when `signal` fires: a libp2p read (`for await`) only sees the signal when a chunk arrives, so a node
 * that never answers would hold the guardian's round forever. Returns the function that stops listening.
 */
function abortOnSignal(stream: { abort(error: Error): void }, signal: AbortSignal): () => void {
  const onAbort = () => stream.abort(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
  signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}

/** The contracts a guardian reads and writes; `rollup` must be connected to the guardian's signer. */
export interface GuardianContracts {
  readonly rollup: RelayRollup;
  readonly registry: NodeRegistry;
  readonly didRegistry: DidRegistry;
  readonly parameters: ProtocolParameters;
}

export interface GuardianConfig {
  /** Where the state file lives; created if missing. */
  readonly dataDir: string;
  readonly contracts: GuardianContracts;
  /** The block the deployment started at: identity-tree events are read from here. */
  readonly startBlock: number;
  readonly source: BillSource;
  /** The rollup's circuit (slots, bills, tree depth, work cap). */
  readonly circuit: RelayCircuitParams;
  readonly prover: BatchProver;
  /** Time between rounds; DEFAULT_GUARDIAN_POLL_MS if omitted. */
  readonly pollIntervalMs?: number;
  /** Structured events (settlements, rebuilds, proof progress) for a caller that reports them. */
  readonly onEvent?: (event: GuardianEvent) => void;
  readonly logger?: Logger;
}

/** One settled batch. */
export interface GuardianSettlement {
  readonly epoch: bigint;
  readonly txHash: string;
  readonly blockNumber: number;
  /** Work settled by the batch, all slots together. */
  readonly work: bigint;
  /** The non-padding slots. */
  readonly slots: readonly RollupSlot[];
  /** Bills the batch carried. */
  readonly bills: number;
}

export type GuardianEvent =
  | { readonly kind: "collected"; readonly epoch: bigint; readonly received: number; readonly accepted: number }
  | { readonly kind: "proving"; readonly epoch: bigint; readonly slots: readonly RollupSlot[] }
  | { readonly kind: "progress"; readonly epoch: bigint; readonly progress: ProofProgress }
  | { readonly kind: "submitted"; readonly epoch: bigint; readonly txHash: string }
  | { readonly kind: "settled"; readonly settlement: GuardianSettlement }
  | { readonly kind: "rebuild"; readonly epoch: bigint; readonly reason: string }
  | { readonly kind: "resumed"; readonly txHash: string; readonly status: "settled" | "reverted" | "dropped" };

/** What one round did. */
export interface GuardianRoundReport {
  /** Ended epochs whose settlement window was open. */
  readonly epochs: bigint[];
  readonly settlements: GuardianSettlement[];
}

export type GuardianErrorCode =
  | "GUARDIAN_BAD_CONFIG" // a configuration value of the wrong shape
  | "GUARDIAN_BAD_STATE" // the state file exists but does not parse
  | "GUARDIAN_TREE_MISMATCH" // the identity tree rebuilt from events does not have the registry's root
  | "GUARDIAN_COLLECT_REFUSED" // an edge node answered COLLECT with an error or with something else than BILLS
  | "GUARDIAN_CONSENT_REFUSED" // an edge node refused its consent to a slot, or its consent is not its signer's
  | "GUARDIAN_STOPPED"; // stopped while working

/** A guardian failure, with a code. */
export class GuardianError extends Error {
  constructor(
    readonly code: GuardianErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "GuardianError";
  }
}

/** A submission to build again, and why; `node` names the node a `RollupNoConsent` was about. */
interface Rebuild {
  kind: "rebuild";
  reason: string;
  node?: string;
}

/** The consent fields of a slot, and nothing else. */
function pickSlot(slot: ConsentSlot): ConsentSlot {
  return { prevBound: slot.prevBound, newBound: slot.newBound, work: slot.work };
}

interface PendingBatch {
  epoch: bigint;
  txHash: string;
  slots: RollupSlot[];
  bills: number;
}

interface GuardianState {
  pending?: PendingBatch;
  settlements: GuardianSettlement[];
}

/** A bill that passed every check, with what ordering needs. */
interface CheckedBill {
  readonly signed: SignedBill;
  readonly node: string;
  readonly keyHash: bigint;
  readonly key: bigint;
}

/** The guardian daemon: `start()` runs a round now and every poll interval; `stop()` ends it. */
export class Guardian {
  private readonly config: GuardianConfig;
  private readonly log: Logger;
  private readonly provider: Provider;
  private readonly statePath: string;
  private state: GuardianState = { settlements: [] };
  private tree = new IdentityTree();
  private treeScannedTo: number;
  private controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<unknown> | undefined;
  private loaded = false;
  private domain: TypedDataDomain | undefined;

  constructor(config: GuardianConfig) {
    if (typeof config?.dataDir !== "string" || config.dataDir === "") {
      throw new GuardianError("GUARDIAN_BAD_CONFIG", "Guardian: expected a dataDir");
    }
    if (!Number.isSafeInteger(config.startBlock) || config.startBlock < 0) {
      throw new GuardianError("GUARDIAN_BAD_CONFIG", `Guardian: expected startBlock >= 0, got ${config.startBlock}`);
    }
    const provider = config.contracts.rollup.runner?.provider;
    if (!provider) {
      throw new GuardianError(
        "GUARDIAN_BAD_CONFIG",
        "Guardian: expected the rollup connected to a signer with a provider",
      );
    }
    this.config = config;
    this.provider = provider;
    this.log = config.logger ?? createLogger("guardian");
    this.statePath = path.join(config.dataDir, GUARDIAN_STATE_FILE);
    this.treeScannedTo = config.startBlock - 1;
  }

  /** Settlements this guardian made (from its state file, newest last). */
  get settlements(): readonly GuardianSettlement[] {
    return [...this.state.settlements];
  }

  /** The transaction a previous round left in flight, if any. */
  get pendingTxHash(): string | undefined {
    return this.state.pending?.txHash;
  }

  /** Loads the state and runs rounds until `stop()`. */
  async start(): Promise<void> {
    if (this.timer !== undefined || this.round !== undefined) return;
    this.controller = new AbortController();
    await this.loadState();
    const tick = () => {
      this.round = this.runOnce()
        .catch((error: unknown) => {
          if (!this.controller.signal.aborted) this.log.error("round failed", { error });
        })
        .finally(() => {
          this.round = undefined;
          if (!this.controller.signal.aborted) {
            this.timer = setTimeout(tick, this.config.pollIntervalMs ?? DEFAULT_GUARDIAN_POLL_MS);
          }
        });
    };
    tick();
  }

  /** Stops the loop: aborts a proof or a wait in progress and returns once the round has unwound. */
  async stop(): Promise<void> {
    this.controller.abort(new GuardianError("GUARDIAN_STOPPED", "Guardian: stopped"));
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.round?.catch(() => undefined);
    this.round = undefined;
  }

  /**
   * One round: first the transaction a previous run left in flight, then every ended epoch whose settlement window is
   * open.
   * Returns what it settled. Throws if stopped or if a read fails; a revert it knows how to handle is handled.
   */
  async runOnce(signal: AbortSignal = this.controller.signal): Promise<GuardianRoundReport> {
    if (!this.loaded) await this.loadState();
    const settlements: GuardianSettlement[] = [];
    const resumed = await this.resumePending(signal);
    if (resumed !== undefined) settlements.push(resumed);

    const { parameters } = this.config.contracts;
    const latest = await this.provider.getBlock("latest");
    if (latest === null) throw new GuardianError("GUARDIAN_BAD_STATE", "Guardian.runOnce: no latest block");
    const now = BigInt(latest.timestamp);
    const window = await parameters.get(parameterIndex("SettlementWindow"));
    const current = await parameters.currentEpoch();
    const epochs: bigint[] = [];
    for (let epoch = current - 1n; epoch >= 0n; epoch--) {
      const end = await parameters.epochStart(epoch + 1n);
      if (now >= end + window) break; // this epoch's window and every earlier one's are closed
      if (now >= end) epochs.push(epoch);
    }
    for (const epoch of epochs.reverse()) {
      signal.throwIfAborted();
      settlements.push(...(await this.settleEpoch(epoch, signal)));
    }
    return { epochs, settlements };
  }

  /** Collects, checks and settles `epoch`'s bills, batch after batch, until none above the bounds is left. */
  async settleEpoch(epoch: bigint, signal: AbortSignal = this.controller.signal): Promise<GuardianSettlement[]> {
    const received = await this.config.source.collect(epoch, signal);
    await this.refreshTree(signal);
    let bills = await this.checkBills(epoch, received);
    this.emit({ kind: "collected", epoch, received: received.length, accepted: bills.length });
    this.log.info("collected bills", { epoch, received: received.length, accepted: bills.length });

    const settlements: GuardianSettlement[] = [];
    const dropNode = (node: string, reason: string) => {
      bills = bills.filter((b) => b.node !== node);
      this.emit({ kind: "rebuild", epoch, reason });
      this.log.warn("leaving a node out of this round", { epoch, node, reason });
    };
    let rebuilds = 0;
    for (;;) {
      signal.throwIfAborted();
      const claims = await this.nextClaims(epoch, bills);
      if (claims.length === 0) return settlements;
      await this.refreshTree(signal);
      const batch = buildRelayBatch(this.config.circuit, { epoch, tree: this.tree, slots: claims });
      const slots: RollupSlot[] = batch.slots.map((s) => ({
        node: getAddress(addressFromNodeId(s.nodeId)),
        prevBound: s.prevBound,
        newBound: s.newBound,
        work: s.work,
        ...NO_CONSENT,
      }));
      // Before proving: a node that does not consent would make the proof worthless (RollupNoConsent).
      const refusals = await this.gatherConsents(epoch, batch.slots, slots, signal);
      if (refusals.length > 0) {
        for (const { node, reason } of refusals) dropNode(node, `no consent from ${node}: ${reason}`);
        continue; // each refusal removes a node, so this ends
      }
      const billCount = batch.slots.reduce((n, slot) => n + slot.bills.length, 0);
      this.emit({ kind: "proving", epoch, slots: slots.filter((s) => BigInt(s.node) !== 0n) });
      const proven = await this.config.prover.prove(batch, {
        signal,
        onProgress: (progress) => this.emit({ kind: "progress", epoch, progress }),
      });
      signal.throwIfAborted();
      const consented = proven.slots.map((slot, i) => ({
        ...slot,
        consentR: slots[i].consentR,
        consentVS: slots[i].consentVS,
      }));
      const outcome = await this.submit(epoch, batch.identityRoot, { ...proven, slots: consented }, billCount, signal);
      if (outcome.kind === "settled") {
        settlements.push(outcome.settlement);
        continue;
      }
      if (outcome.kind === "stop") return settlements;
      if (outcome.reason === "RollupNoConsent" && outcome.node !== undefined) {
        // The node changed its signer (or its consent went stale) between asking and mining.
        dropNode(outcome.node, `RollupNoConsent for ${outcome.node}`);
        if (++rebuilds >= MAX_REBUILDS_PER_ROUND) return settlements;
        continue;
      }
      if (outcome.reason === "RollupNodeNotEligible") {
        // A node was jailed or left while the batch was proven: check them again and drop the ineligible ones' bills.
        const eligible = new Map<string, boolean>();
        for (const node of new Set(bills.map((b) => b.node))) eligible.set(node, await this.isActiveEdge(node));
        bills = bills.filter((b) => eligible.get(b.node));
      }
      rebuilds++;
      this.emit({ kind: "rebuild", epoch, reason: outcome.reason });
      this.log.warn("rebuilding the batch", { epoch, reason: outcome.reason, rebuilds });
      if (rebuilds >= MAX_REBUILDS_PER_ROUND) return settlements;
    }
  }

  // --- consent -------------------------------------------------------------------------------------------------------

  /**
   * Asks every non-padding slot's node for its consent at once and writes each good one into `slots` (same index as
   * `batchSlots`). A consent counts only if it recovers to the node's registered signer (`NodeRegistry.signerOf`), as
   * the rollup checks. Returns the nodes that refused, did not answer, or signed with another key.
   */
  private async gatherConsents(
    epoch: bigint,
    batchSlots: RelayBatch["slots"],
    slots: RollupSlot[],
    signal: AbortSignal,
  ): Promise<{ node: string; reason: string }[]> {
    const domain = await this.consentDomain();
    const refusals: { node: string; reason: string }[] = [];
    await Promise.all(
      batchSlots.map(async (batchSlot, i) => {
        if (batchSlot.nodeId === 0n) return;
        const slot = slots[i];
        const signer = await this.config.contracts.registry.signerOf(slot.node); // a failed read fails the round
        try {
          const consent = await this.config.source.consent(slot.node, epoch, pickSlot(slot), signal);
          let recovered: string;
          try {
            recovered = recoverSlotConsentSigner(domain, epoch, slot, consent);
          } catch (error) {
            throw new GuardianError(
              "GUARDIAN_CONSENT_REFUSED",
              `Guardian.gatherConsents: ${slot.node}'s consent is not a signature: ${(error as Error).message}`,
            );
          }
          if (getAddress(recovered) !== getAddress(signer)) {
            throw new GuardianError(
              "GUARDIAN_CONSENT_REFUSED",
              `Guardian.gatherConsents: ${slot.node}'s consent is signed by ${recovered}, not its signer ${signer}`,
            );
          }
          slots[i] = { ...slot, consentR: consent.consentR, consentVS: consent.consentVS };
        } catch (error) {
          signal.throwIfAborted();
          refusals.push({ node: slot.node, reason: (error as Error).message ?? String(error) });
        }
      }),
    );
    return refusals;
  }

  /** The rollup's EIP-712 domain, read once. */
  private async consentDomain(): Promise<TypedDataDomain> {
    if (this.domain === undefined) {
      const { chainId } = await this.provider.getNetwork();
      this.domain = rollupDomain(chainId, await this.config.contracts.rollup.getAddress());
    }
    return this.domain;
  }

  // --- bills and slots -----------------------------------------------------------------------------------------------

  /** Keeps the bills that pass every check, one per (node, recipient): the largest (bills are cumulative). */
  private async checkBills(epoch: bigint, received: readonly SignedBill[]): Promise<CheckedBill[]> {
    const best = new Map<string, CheckedBill>();
    const eligible = new Map<string, boolean>();
    for (const signed of received) {
      let valid: boolean;
      try {
        valid = verifyBill(signed);
      } catch {
        valid = false; // out-of-range fields: not a bill the circuit takes
      }
      if (!valid || signed.bill.epoch !== epoch || signed.bill.nodeId === 0n) continue;
      const keyHash = recipientKeyHash(signed.billKey);
      if (!this.tree.has(keyHash)) continue;
      const node = getAddress(addressFromNodeId(signed.bill.nodeId));
      if (!eligible.has(node)) eligible.set(node, await this.isActiveEdge(node));
      if (!eligible.get(node)) continue;
      const id = `${node}:${keyHash}`;
      const held = best.get(id);
      const larger =
        held === undefined ||
        signed.bill.messageCount > held.signed.bill.messageCount ||
        (signed.bill.messageCount === held.signed.bill.messageCount &&
          signed.bill.byteCount > held.signed.bill.byteCount);
      if (larger) best.set(id, { signed, node, keyHash, key: orderKey(keyHash) });
    }
    return [...best.values()];
  }

  private async isActiveEdge(node: string): Promise<boolean> {
    const view = await this.config.contracts.registry.node(node);
    return Number(view.role) === NodeRole.Edge && view.active;
  }

  /**
   * The next batch's slots: each node's stored bound read now, only its bills above it (by order key), the nodes in
   * address order, at most the circuit's slots and bills. Empty when nothing is left to settle.
   */
  private async nextClaims(epoch: bigint, bills: readonly CheckedBill[]): Promise<SlotClaim[]> {
    const { rollup } = this.config.contracts;
    const { slots, bills: perSlot } = this.config.circuit;
    const byNode = new Map<string, CheckedBill[]>();
    for (const bill of bills) byNode.set(bill.node, [...(byNode.get(bill.node) ?? []), bill]);
    const claims: SlotClaim[] = [];
    const nodes = [...byNode.keys()].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0));
    for (const node of nodes) {
      if (claims.length >= slots) break;
      const bound = await rollup.boundOf(node, epoch);
      const above = byNode
        .get(node)!
        .filter((bill) => bill.key > bound) // at or below the bound: settled already (or passed over for good)
        .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      if (above.length === 0) continue;
      claims.push({
        nodeId: nodeIdFromAddress(node),
        prevBound: bound,
        bills: above.slice(0, perSlot).map((bill) => bill.signed),
      });
    }
    return claims;
  }

  // --- submission ----------------------------------------------------------------------------------------------------

  private async submit(
    epoch: bigint,
    identityRoot: bigint,
    proven: { proof: SolidityProof; slots: RollupSlot[] },
    bills: number,
    signal: AbortSignal,
  ): Promise<{ kind: "settled"; settlement: GuardianSettlement } | Rebuild | { kind: "stop"; reason: string }> {
    const { rollup } = this.config.contracts;
    let txHash: string;
    try {
      const tx = await rollup.submitBatch(epoch, identityRoot, proven.slots, proven.proof);
      txHash = tx.hash;
    } catch (error) {
      return this.classify(epoch, error);
    }
    const slots = proven.slots
      .filter((slot) => BigInt(slot.node) !== 0n)
      .map((slot) => ({ ...slot, node: getAddress(slot.node) }));
    this.state.pending = { epoch, txHash, slots, bills };
    await this.saveState();
    this.emit({ kind: "submitted", epoch, txHash });
    this.log.info("batch submitted", { epoch, txHash });
    const receipt = await this.waitForReceipt(txHash, signal);
    this.state.pending = undefined;
    if (receipt === null || receipt.status !== 1) {
      await this.saveState();
      // Mined and reverted (a race the gas estimate did not see) or dropped: the bounds on chain decide what is left.
      return { kind: "rebuild", reason: `transaction ${txHash} ${receipt === null ? "dropped" : "reverted"}` };
    }
    const settlement = this.record(epoch, txHash, receipt.blockNumber, slots, bills);
    await this.saveState();
    return { kind: "settled", settlement };
  }

  /**
   * Sorts a submission failure: races, a stale root, an ineligible node and a missing consent are rebuilt; a closed
   * window stops; the rest is thrown.
   */
  private classify(epoch: bigint, error: unknown): Rebuild | { kind: "stop"; reason: string } {
    const revert = decodeRevert(this.config.contracts.rollup, error);
    const name = revert?.name;
    if (name === "RollupBoundMismatch" || name === "RollupUnknownRoot") return { kind: "rebuild", reason: name };
    if (name === "RollupNoConsent") {
      const node = revert?.args[1];
      return { kind: "rebuild", reason: name, node: typeof node === "string" ? getAddress(node) : undefined };
    }
    if (name === "RollupNotAuthorized" || name === "RollupWindowClosed" || name === "RollupEpochClaimed") {
      this.log.warn("batch refused; leaving the epoch", { epoch, reason: name });
      return { kind: "stop", reason: name };
    }
    if (name === "RollupNodeNotEligible") return { kind: "rebuild", reason: name };
    throw error;
  }

  private record(
    epoch: bigint,
    txHash: string,
    blockNumber: number,
    slots: RollupSlot[],
    bills: number,
  ): GuardianSettlement {
    const work = slots.reduce((sum, slot) => sum + slot.work, 0n);
    const settlement: GuardianSettlement = { epoch, txHash, blockNumber, work, slots, bills };
    this.state.settlements.push(settlement);
    if (this.state.settlements.length > MAX_SETTLEMENTS_KEPT) this.state.settlements.shift();
    this.emit({ kind: "settled", settlement });
    this.log.info("batch settled", { epoch, txHash, blockNumber, work, bills, nodes: slots.map((s) => s.node) });
    return settlement;
  }

  /** Settles the books on a transaction a previous run (or round) left in flight: waits for it first. */
  private async resumePending(signal: AbortSignal): Promise<GuardianSettlement | undefined> {
    const pending = this.state.pending;
    if (pending === undefined) return undefined;
    this.log.info("waiting for a batch left in flight", { txHash: pending.txHash });
    const receipt = await this.waitForReceipt(pending.txHash, signal);
    this.state.pending = undefined;
    let settlement: GuardianSettlement | undefined;
    if (receipt !== null && receipt.status === 1) {
      settlement = this.record(pending.epoch, pending.txHash, receipt.blockNumber, pending.slots, pending.bills);
    }
    const status = receipt === null ? "dropped" : receipt.status === 1 ? "settled" : "reverted";
    this.emit({ kind: "resumed", txHash: pending.txHash, status });
    await this.saveState();
    return settlement;
  }

  /** The receipt of `txHash` once mined; null if the node no longer knows the transaction (dropped). */
  private async waitForReceipt(txHash: string, signal: AbortSignal): Promise<TransactionReceipt | null> {
    for (;;) {
      signal.throwIfAborted();
      const receipt = await this.provider.getTransactionReceipt(txHash);
      if (receipt !== null) return receipt;
      if ((await this.provider.getTransaction(txHash)) === null) return null;
      await sleep(RECEIPT_POLL_MS, signal);
    }
  }

  // --- identity tree -------------------------------------------------------------------------------------------------

  /** Applies the identity-tree events since the last scan; rebuilds from the start if the root disagrees. */
  private async refreshTree(signal: AbortSignal): Promise<void> {
    const { didRegistry } = this.config.contracts;
    for (let attempt = 0; attempt < 2; attempt++) {
      signal.throwIfAborted();
      const head = await this.provider.getBlockNumber();
      if (head > this.treeScannedTo) {
        const events = await didRegistry.queryFilter(
          didRegistry.filters.IdentityTreeChanged(),
          this.treeScannedTo + 1,
          head,
        );
        for (const event of events) applyTreeChange(this.tree, event.args.index, event.args.leaf);
        this.treeScannedTo = head;
      }
      const root = await didRegistry.root({ blockTag: head });
      if (root === this.tree.root) return;
      this.tree = new IdentityTree(); // out of step (a reorg, or a missed range): read everything again
      this.treeScannedTo = this.config.startBlock - 1;
    }
    throw new GuardianError(
      "GUARDIAN_TREE_MISMATCH",
      "Guardian.refreshTree: the tree rebuilt from IdentityTreeChanged events does not reach DidRegistry.root()",
    );
  }

  // --- state ---------------------------------------------------------------------------------------------------------

  private async loadState(): Promise<void> {
    await mkdir(this.config.dataDir, { recursive: true, mode: 0o700 });
    let text: string;
    try {
      text = await readFile(this.statePath, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      this.state = { settlements: [] };
      this.loaded = true;
      return;
    }
    this.state = parseState(text, this.statePath);
    this.loaded = true;
  }

  /** Writes the state atomically (temporary file, then rename), so a crash leaves the old or the new one. */
  private async saveState(): Promise<void> {
    const temporary = `${this.statePath}.tmp`;
    await writeFile(
      temporary,
      JSON.stringify(this.state, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v)),
    );
    await rename(temporary, this.statePath);
  }

  private emit(event: GuardianEvent): void {
    try {
      this.config.onEvent?.(event);
    } catch (error) {
      this.log.warn("event listener failed", { error });
    }
  }
}

function applyTreeChange(tree: IdentityTree, index: bigint, leaf: bigint): void {
  const size = BigInt(tree.size);
  if (index === size) tree.insert(leaf);
  else if (leaf === 0n) tree.remove(index);
  else tree.update(index, leaf);
}

function parseState(text: string, file: string): GuardianState {
  let raw: unknown;
  try {
    raw = JSON.parse(text, (_k, v: unknown) =>
      typeof v === "string" && /^\d+n$/.test(v) ? BigInt(v.slice(0, -1)) : v,
    );
  } catch (error) {
    throw new GuardianError("GUARDIAN_BAD_STATE", `Guardian: ${file} does not parse: ${(error as Error).message}`);
  }
  const state = raw as Partial<GuardianState> | null;
  if (state === null || typeof state !== "object" || !Array.isArray(state.settlements)) {
    throw new GuardianError("GUARDIAN_BAD_STATE", `Guardian: expected ${file} to hold {settlements: [...]}`);
  }
  const pending = state.pending;
  if (pending !== undefined && (typeof pending.txHash !== "string" || typeof pending.epoch !== "bigint")) {
    throw new GuardianError(
      "GUARDIAN_BAD_STATE",
      `Guardian: expected ${file}'s pending batch to have an epoch and a hash`,
    );
  }
  return { pending, settlements: state.settlements };
}

/** The custom error's name in a failed contract call, if the revert data decodes against `contract`'s ABI. */
export function revertName(
  contract: { interface: RelayRollup["interface"] } | { interface: unknown },
  error: unknown,
): string | undefined {
  return decodeRevert(contract, error)?.name;
}

/** The custom error (name and arguments) of a failed contract call, if its revert data decodes against the ABI. */
export function decodeRevert(
  contract: { interface: RelayRollup["interface"] } | { interface: unknown },
  error: unknown,
): { name: string; args: readonly unknown[] } | undefined {
  const e = error as {
    revert?: { name?: string; args?: readonly unknown[] };
    data?: unknown;
    info?: { error?: { data?: unknown } };
  } | null;
  if (e === null || typeof e !== "object") return undefined;
  if (typeof e.revert?.name === "string") return { name: e.revert.name, args: [...(e.revert.args ?? [])] };
  const data =
    typeof e.data === "string" ? e.data : typeof e.info?.error?.data === "string" ? e.info.error.data : undefined;
  if (data === undefined) return undefined;
  try {
    const parsed = (contract.interface as RelayRollup["interface"]).parseError(data);
    return parsed === null ? undefined : { name: parsed.name, args: [...parsed.args] };
  } catch {
    return undefined;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

// --- daemon entry point ----------------------------------------------------------------------------------------------

/** What `runGuardian` needs: the chain, the guardian's key, where to keep state, and where bills come from. */
export interface GuardianDaemonConfig {
  readonly dataDir: string;
  /** JSON-RPC endpoint of the chain (or `provider`). */
  readonly rpcUrl?: string;
  readonly provider?: Provider;
  /** The deployment (or the path of its file, e.g. deployments/localhost.json). */
  readonly deployment: Deployment | string;
  /** Hex private key of the guardian operator (the registered, staked guardian address). */
  readonly guardianKey: string;
  /** Where bills come from; by default a libp2p host in `<dataDir>/host` collecting from every active edge node. */
  readonly source?: BillSource;
  /** Circuit name (build/circuits/<name>); the deployment's circuit if omitted. */
  readonly circuit?: string;
  /** Circuit parameters; read from circuits/config.json if omitted. */
  readonly circuitParams?: RelayCircuitParams;
  readonly pollIntervalMs?: number;
  readonly logger?: Logger;
}

/** A running guardian daemon. */
export interface GuardianDaemon {
  readonly guardian: Guardian;
  readonly address: string;
  /** Stops the guardian, then its libp2p host (if it made one). */
  stop(): Promise<void>;
}

/**
 * Starts a guardian daemon from plain configuration: connects to the chain, checks the key belongs to an active
 * guardian, finds the circuit's artefacts, starts a libp2p host for collecting (unless a source is given) and the loop.
 */
export async function runGuardian(config: GuardianDaemonConfig): Promise<GuardianDaemon> {
  const deployment = typeof config.deployment === "string" ? loadDeployment(config.deployment) : config.deployment;
  const provider = config.provider ?? (config.rpcUrl ? new JsonRpcProvider(config.rpcUrl) : undefined);
  if (provider === undefined)
    throw new GuardianError("GUARDIAN_BAD_CONFIG", "runGuardian: expected rpcUrl or provider");
  const wallet = new Wallet(config.guardianKey, provider);
  const c = deployment.contracts;
  const contracts: GuardianContracts = {
    rollup: RelayRollup__factory.connect(c.RelayRollup, wallet),
    registry: NodeRegistry__factory.connect(c.NodeRegistry, provider),
    didRegistry: DidRegistry__factory.connect(c.DidRegistry, provider),
    parameters: ProtocolParameters__factory.connect(c.ProtocolParameters, provider),
  };
  const view = await contracts.registry.node(wallet.address);
  if (Number(view.role) !== NodeRole.Guardian || !view.active) {
    throw new GuardianError("GUARDIAN_BAD_CONFIG", `runGuardian: ${wallet.address} is not an active guardian`);
  }
  const circuitName = config.circuit ?? deployment.circuit;
  const circuit = config.circuitParams ?? circuitParamsFromConfig(circuitName);
  const prover = new WorkerProver(circuitArtifactPaths(circuitName));
  let host: { stop(): Promise<void> } | undefined;
  let source = config.source;
  if (source === undefined) {
    // The host runs under the key in the data folder (or the devnet's peer-key.json there), whose peer id must be
    // the one the guardian registered: edge nodes hand bills only to the registered peers of active guardians.
    const edgeHost = await createEdgeHost({ dataDir: config.dataDir });
    host = edgeHost;
    const peerId = edgeHost.libp2p.peerId.toString();
    if (peerId !== view.peerId) {
      await edgeHost.stop();
      await prover.close();
      throw new GuardianError(
        "GUARDIAN_BAD_CONFIG",
        `runGuardian: ${wallet.address} is registered with peer id ${view.peerId}, but the key in ${config.dataDir} is ` +
          `${peerId}: update the registration (NodeRegistry.updateNode) or run with that node's key`,
      );
    }
    source = new Libp2pBillSource({
      host: edgeHost.libp2p,
      listNodes: (signal) => readEdgeNodes(contracts.registry, { signal }),
      logger: config.logger?.child("collect"),
    });
  }
  const guardian = new Guardian({
    dataDir: config.dataDir,
    contracts,
    startBlock: deployment.startBlock,
    source,
    circuit,
    prover,
    pollIntervalMs: config.pollIntervalMs,
    logger: config.logger,
  });
  await guardian.start();
  return {
    guardian,
    address: wallet.address,
    async stop() {
      await guardian.stop();
      await prover.close();
      await host?.stop();
    },
  };
}

/** The parameters of circuit `name` as circuits/config.json declares them. */
export function circuitParamsFromConfig(name: string, root = path.resolve(__dirname, "..")): RelayCircuitParams {
  const file = path.join(root, "circuits", "config.json");
  const config = JSON.parse(readFileSync(file, "utf8")) as { circuits?: Record<string, { params?: number[] }> };
  const params = config.circuits?.[name]?.params;
  if (params === undefined) {
    throw new GuardianError("GUARDIAN_BAD_CONFIG", `circuitParamsFromConfig: no circuit ${name} in ${file}`);
  }
  return relayCircuitParams(params);
}
