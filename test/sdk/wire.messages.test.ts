import { expect } from "chai";
import fc from "fast-check";
import { randomBytes } from "node:crypto";
import { signBill, type SignedBill } from "../../sdk/bill/bill";
import { toHex } from "../../sdk/crypto/bytes";
import {
  generateIdentityKeyPair,
  generateOneTimePrekeys,
  generateSignedPrekey,
  identityPublicKey,
  prekeyBundle,
} from "../../sdk/crypto/x3dh";
import {
  FrameDecoder,
  INBOX_MAX_FRAME_BYTES,
  MAX_FRAME_BYTES,
  PREKEYS_PROTOCOL,
  encodeFrame,
} from "../../sdk/wire/frame";
import {
  BillsType,
  CONSENT_REQUEST_BYTES,
  DELIVERY_HEADER_BYTES,
  INBOX_MAX_BATCH,
  MAX_DELIVERY_ENVELOPE_BYTES,
  MAX_TTL_SECONDS,
  InboxType,
  MAX_BILLS_PER_SUBMISSION,
  MAX_ONE_TIME_PREKEYS,
  MessageError,
  PrekeysType,
  REQUEST_WINDOW_MS,
  checkInboxRequest,
  checkPublishPrekeys,
  encodeBillsMessage,
  encodeDelivery,
  encodeInboxMessage,
  encodePrekeysMessage,
  parseBillsMessage,
  parseDelivery,
  inboxPageInOrder,
  parseInboxMessage,
  parsePrekeysMessage,
  signInboxRequest,
  signPublishPrekeys,
  type BillsMessage,
  type FetchMessage,
  type InboxMessage,
  type ListMessage,
  type PrekeysMessage,
} from "../../sdk/wire/messages";
import { MAX_PAYLOAD_BYTES } from "../../sdk/wire/onion";
import { BILLS_MAX_FRAME_BYTES } from "../../sdk/wire/frame";

const bytes = (n: number) => Uint8Array.from(randomBytes(n));
const NODE = new Uint8Array(38).fill(0x11);
const OTHER_NODE = new Uint8Array(38).fill(0x22);
const RECIPIENT = new Uint8Array(32).fill(0xee);
const NOW = 1_790_000_000_000;

function expectMessageError(fn: () => unknown, code: string, mentions?: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(MessageError);
    expect((e as MessageError).code).to.equal(code);
    if (mentions !== undefined) expect((e as Error).message).to.contain(mentions);
    return;
  }
  expect.fail(`expected MessageError ${code}`);
}

const identity = generateIdentityKeyPair();
const signedPrekey = generateSignedPrekey(identity, 7);
const oneTime = generateOneTimePrekeys(100, 3);
const bill: SignedBill = signBill(bytes(32), { nodeId: 0xbeefn, epoch: 7n, messageCount: 12n, byteCount: 3400n });

function inboxSamples(): InboxMessage[] {
  const base = { recipientId: RECIPIENT, timestamp: NOW, nonce: bytes(16) };
  return [
    { type: InboxType.STORE, recipientId: RECIPIENT, messageId: bytes(16), ttlSeconds: 86_400, envelope: bytes(300) },
    { type: InboxType.STORED, messageId: bytes(16), expiry: NOW / 1000 + 86_400, promiseSignature: bytes(65) },
    signInboxRequest(NODE, { type: InboxType.FETCH, ...base, limit: INBOX_MAX_BATCH }, identity.signing.secretKey),
    signInboxRequest(NODE, { type: InboxType.LIST, ...base, limit: 100 }, identity.signing.secretKey),
    signInboxRequest(
      NODE,
      { type: InboxType.ACK, ...base, messageIds: [bytes(16), bytes(16)] },
      identity.signing.secretKey,
    ),
    {
      type: InboxType.MESSAGES,
      messages: [
        { messageId: bytes(16), storedAt: NOW - 5000, envelope: bytes(1) },
        { messageId: bytes(16), storedAt: NOW, envelope: bytes(MAX_PAYLOAD_BYTES) },
      ],
    },
    { type: InboxType.MESSAGES, messages: [] },
    { type: InboxType.ACKED, deleted: 2 },
    { type: InboxType.LISTING, entries: [{ messageId: bytes(16), storedAt: NOW, size: 1234 }] },
    signInboxRequest(NODE, { type: InboxType.SUBSCRIBE, ...base }, identity.signing.secretKey),
    signInboxRequest(
      NODE,
      { type: InboxType.FETCH, ...base, limit: 3, after: { storedAt: NOW - 1, messageId: bytes(16) } },
      identity.signing.secretKey,
    ),
    signInboxRequest(
      NODE,
      { type: InboxType.LIST, ...base, limit: 255, after: { storedAt: 0, messageId: bytes(16) } },
      identity.signing.secretKey,
    ),
  ];
}

function prekeysSamples(): PrekeysMessage[] {
  const publish = signPublishPrekeys(
    NODE,
    {
      type: PrekeysType.PUBLISH,
      recipientId: RECIPIENT,
      timestamp: NOW,
      nonce: bytes(16),
      identity: identityPublicKey(identity),
      signedPrekey: {
        id: signedPrekey.id,
        publicKey: signedPrekey.keyPair.publicKey,
        signature: signedPrekey.signature,
      },
      oneTimePrekeys: oneTime.map((p) => ({ id: p.id, publicKey: p.keyPair.publicKey })),
    },
    identity.signing.secretKey,
  );
  return [
    publish,
    { type: PrekeysType.PUBLISHED, oneTimePrekeysHeld: 3 },
    { type: PrekeysType.FETCH_BUNDLE, recipientId: RECIPIENT },
    { type: PrekeysType.BUNDLE, bundle: prekeyBundle(identity, signedPrekey, oneTime[0]) },
    { type: PrekeysType.BUNDLE, bundle: prekeyBundle(identity, signedPrekey) },
  ];
}

const billsSamples = (): BillsMessage[] => [
  { type: BillsType.SUBMIT, bills: [bill, bill] },
  { type: BillsType.ACCEPTED, accepted: 2 },
  { type: BillsType.COLLECT, epoch: 0n },
  { type: BillsType.COLLECT, epoch: (1n << 64n) - 1n },
  { type: BillsType.BILLS, bills: [bill], more: true },
  { type: BillsType.BILLS, bills: [], more: false },
  ...consentSamples(),
];

/** Consent requests and answers at every bound of their fields. */
function consentSamples(): BillsMessage[] {
  const top = (1n << 200n) - 1n;
  return [
    { type: BillsType.CONSENT_REQUEST, epoch: 0n, prevBound: 0n, newBound: 1n, work: 0n },
    {
      type: BillsType.CONSENT_REQUEST,
      epoch: (1n << 64n) - 1n,
      prevBound: top - 1n,
      newBound: top,
      work: (1n << 56n) - 1n,
    },
    { type: BillsType.CONSENT_REQUEST, epoch: 12n, prevBound: 0n, newBound: top, work: 1_042n },
    { type: BillsType.CONSENT, consentR: "0x" + "00".repeat(32), consentVS: "0x" + "ff".repeat(32) },
    { type: BillsType.CONSENT, consentR: "0x" + toHex(bytes(32)), consentVS: "0x" + toHex(bytes(32)) },
  ];
}

describe("sdk/wire messages: inbox, prekeys and bills bodies", () => {
  it("round-trips every inbox message type", () => {
    for (const m of inboxSamples()) {
      const { type, body } = encodeInboxMessage(m);
      expect(parseInboxMessage(type, body)).to.deep.equal(m);
    }
  });

  it("round-trips every prekeys and bills message type", () => {
    for (const m of prekeysSamples()) {
      const { type, body } = encodePrekeysMessage(m);
      expect(parsePrekeysMessage(type, body)).to.deep.equal(m);
    }
    for (const m of billsSamples()) {
      const { type, body } = encodeBillsMessage(m);
      expect(parseBillsMessage(type, body)).to.deep.equal(m);
    }
  });

  it("lays out CONSENT_REQUEST as epoch (8) || prevBound (32) || newBound (32) || work (8), CONSENT as r || vs", () => {
    const request = encodeBillsMessage({
      type: BillsType.CONSENT_REQUEST,
      epoch: 0x0102n,
      prevBound: 0x03n,
      newBound: (1n << 199n) | 0x04n,
      work: 0x0506n,
    });
    expect(request.type).to.equal(0x05);
    expect(request.body.length).to.equal(CONSENT_REQUEST_BYTES);
    const hex = toHex(request.body);
    expect(hex.slice(0, 16)).to.equal("0000000000000102");
    expect(hex.slice(16, 80)).to.equal("03".padStart(64, "0"));
    expect(hex.slice(80, 144)).to.equal("000000000000008" + "0".repeat(47) + "04");
    expect(hex.slice(144)).to.equal("0000000000000506");
    const r = "0x" + "ab".repeat(32);
    const vs = "0x" + "cd".repeat(32);
    const consent = encodeBillsMessage({ type: BillsType.CONSENT, consentR: r, consentVS: vs });
    expect(consent.type).to.equal(0x06);
    expect(toHex(consent.body)).to.equal("ab".repeat(32) + "cd".repeat(32));
    // Upper-case hex is taken; what parses is lower-case, the one spelling ethers gives.
    const upper = encodeBillsMessage({
      type: BillsType.CONSENT,
      consentR: r.toUpperCase().replace("0X", "0x"),
      consentVS: vs,
    });
    expect(parseBillsMessage(upper.type, upper.body)).to.deep.equal({
      type: BillsType.CONSENT,
      consentR: r,
      consentVS: vs,
    });
  });

  it("refuses consent requests outside the rollup's bounds, both ways, naming the field", () => {
    const limit = 1n << 200n;
    const request = (fields: { epoch?: bigint; prevBound: bigint; newBound: bigint; work?: bigint }) =>
      ({ type: BillsType.CONSENT_REQUEST, epoch: 1n, work: 1n, ...fields }) as BillsMessage;
    const raw = (epoch: bigint, prevBound: bigint, newBound: bigint, work: bigint) => {
      const word = (v: bigint, n: number) => v.toString(16).padStart(2 * n, "0");
      return Uint8Array.from(
        Buffer.from(word(epoch, 8) + word(prevBound, 32) + word(newBound, 32) + word(work, 8), "hex"),
      );
    };
    const cases: [Parameters<typeof request>[0], string][] = [
      [{ prevBound: 5n, newBound: 5n }, "newBound"], // empty slot
      [{ prevBound: 6n, newBound: 5n }, "newBound"], // backwards
      [{ prevBound: 0n, newBound: limit }, "newBound"],
      [{ prevBound: limit, newBound: limit + 1n }, "prevBound"],
      [{ prevBound: 0n, newBound: 1n, work: 1n << 56n }, "work"],
    ];
    for (const [fields, what] of cases) {
      expectMessageError(() => encodeBillsMessage(request(fields)), "MESSAGE_BAD_ARGUMENT", what);
      const body = raw(fields.epoch ?? 1n, fields.prevBound, fields.newBound, fields.work ?? 1n);
      expectMessageError(() => parseBillsMessage(BillsType.CONSENT_REQUEST, body), "MESSAGE_MALFORMED", what);
    }
    expectMessageError(
      () => encodeBillsMessage(request({ epoch: 1n << 64n, prevBound: 0n, newBound: 1n })),
      "MESSAGE_BAD_ARGUMENT",
      "epoch",
    );
    expectMessageError(
      () => encodeBillsMessage(request({ epoch: -1n, prevBound: 0n, newBound: 1n })),
      "MESSAGE_BAD_ARGUMENT",
      "epoch",
    );
    expectMessageError(
      () => encodeBillsMessage(request({ prevBound: -1n, newBound: 1n })),
      "MESSAGE_BAD_ARGUMENT",
      "prevBound",
    );
    expectMessageError(
      () =>
        encodeBillsMessage({
          type: BillsType.CONSENT_REQUEST,
          epoch: 1n,
          prevBound: 0n,
          newBound: 1,
        } as unknown as BillsMessage),
      "MESSAGE_BAD_ARGUMENT",
      "newBound",
    );
    const good = raw(1n, 0n, 1n, 1n);
    expect(parseBillsMessage(BillsType.CONSENT_REQUEST, good)).to.deep.equal(request({ prevBound: 0n, newBound: 1n }));
    expectMessageError(
      () => parseBillsMessage(BillsType.CONSENT_REQUEST, good.subarray(0, 79)),
      "MESSAGE_MALFORMED",
      "work",
    );
    expectMessageError(
      () => parseBillsMessage(BillsType.CONSENT_REQUEST, new Uint8Array([...good, 0])),
      "MESSAGE_MALFORMED",
      "end",
    );
    expectMessageError(
      () => parseBillsMessage(BillsType.CONSENT, new Uint8Array(63)),
      "MESSAGE_MALFORMED",
      "consentVS",
    );
    expectMessageError(() => parseBillsMessage(BillsType.CONSENT, new Uint8Array(65)), "MESSAGE_MALFORMED", "end");
    for (const bad of ["0x" + "00".repeat(31), "00".repeat(32), "0x" + "zz".repeat(32), 5]) {
      expectMessageError(
        () =>
          encodeBillsMessage({
            type: BillsType.CONSENT,
            consentR: bad,
            consentVS: "0x" + "00".repeat(32),
          } as BillsMessage),
        "MESSAGE_BAD_ARGUMENT",
        "consentR",
      );
    }
  });

  it("fits the largest fetch answer, prekey publication and bill hand-over in their protocols' frame limits", () => {
    const full = encodeInboxMessage({
      type: InboxType.MESSAGES,
      messages: Array.from({ length: INBOX_MAX_BATCH }, () => ({
        messageId: bytes(16),
        storedAt: NOW,
        envelope: bytes(MAX_PAYLOAD_BYTES),
      })),
    });
    expect(encodeFrame(full.type, full.body, INBOX_MAX_FRAME_BYTES).length).to.equal(
      4 + 1 + 1 + INBOX_MAX_BATCH * (16 + 8 + 2 + MAX_PAYLOAD_BYTES),
    );
    const [publish] = prekeysSamples();
    const many = encodePrekeysMessage({
      ...(publish as Extract<PrekeysMessage, { type: 1 }>),
      oneTimePrekeys: Array.from({ length: MAX_ONE_TIME_PREKEYS }, (_, id) => ({ id, publicKey: bytes(32) })),
    });
    encodeFrame(many.type, many.body, MAX_FRAME_BYTES[PREKEYS_PROTOCOL]);
    const bills = encodeBillsMessage({ type: BillsType.SUBMIT, bills: Array(MAX_BILLS_PER_SUBMISSION).fill(bill) });
    encodeFrame(bills.type, bills.body, BILLS_MAX_FRAME_BYTES);
    const page = encodeBillsMessage({
      type: BillsType.BILLS,
      bills: Array(MAX_BILLS_PER_SUBMISSION).fill(bill),
      more: true,
    });
    expect(encodeFrame(page.type, page.body, BILLS_MAX_FRAME_BYTES).length).to.equal(4 + 1 + 2 + 64 * 135);
  });

  it("accepts a fetch signed by the recipient for this node, within the window", () => {
    const fetch = inboxSamples()[2] as Extract<InboxMessage, { type: 3 }>;
    const parsed = parseInboxMessage(fetch.type, encodeInboxMessage(fetch).body) as typeof fetch;
    expect(checkInboxRequest(NODE, parsed, identity.signing.publicKey, NOW + 1000)).to.equal("ok");
  });

  it("refuses a fetch replayed to another home node, signed by another key, altered, or out of the window", () => {
    const [, , fetch, , ack] = inboxSamples() as Extract<InboxMessage, { type: 3 | 5 }>[];
    const signingKey = identity.signing.publicKey;
    expect(checkInboxRequest(OTHER_NODE, fetch, signingKey, NOW)).to.equal("bad-signature");
    expect(checkInboxRequest(NODE, fetch, generateIdentityKeyPair().signing.publicKey, NOW)).to.equal("bad-signature");
    expect(checkInboxRequest(NODE, { ...fetch, limit: 1 } as typeof fetch, signingKey, NOW)).to.equal("bad-signature");
    expect(checkInboxRequest(NODE, { ...fetch, timestamp: NOW + 1 }, signingKey, NOW)).to.equal("bad-signature");
    expect(checkInboxRequest(NODE, fetch, signingKey, NOW + REQUEST_WINDOW_MS + 1)).to.equal("stale");
    expect(checkInboxRequest(NODE, fetch, signingKey, NOW - REQUEST_WINDOW_MS - 1)).to.equal("stale");
    // An ack's signature covers the ids it deletes.
    const ids = (ack as Extract<InboxMessage, { type: 5 }>).messageIds;
    expect(checkInboxRequest(NODE, ack, signingKey, NOW)).to.equal("ok");
    const swapped = { ...ack, messageIds: [ids[1], ids[0]] } as typeof ack;
    expect(checkInboxRequest(NODE, swapped, signingKey, NOW)).to.equal("bad-signature");
    // A fetch signature is not a list signature.
    const fetchRequest = fetch as FetchMessage;
    const asList: ListMessage = { ...fetchRequest, type: InboxType.LIST };
    expect(checkInboxRequest(NODE, asList, signingKey, NOW)).to.equal("bad-signature");
  });

  it("carries a fetch's and a list's cursor under the signature; a cursor flag other than 0 or 1 is malformed", () => {
    const signingKey = identity.signing.publicKey;
    const [withCursor, listWithCursor] = inboxSamples().slice(-2) as FetchMessage[];
    expect(withCursor.after).to.not.equal(undefined);
    for (const request of [withCursor, listWithCursor]) {
      const parsed = parseInboxMessage(request.type, encodeInboxMessage(request).body) as FetchMessage;
      expect(parsed.after).to.deep.equal(request.after);
      expect(checkInboxRequest(NODE, parsed, signingKey, NOW)).to.equal("ok");
      const later = { ...parsed, after: { ...parsed.after!, storedAt: parsed.after!.storedAt + 1 } };
      expect(checkInboxRequest(NODE, later, signingKey, NOW)).to.equal("bad-signature");
      const dropped = { ...parsed, after: undefined };
      expect(checkInboxRequest(NODE, dropped, signingKey, NOW)).to.equal("bad-signature");
    }
    // Without a cursor the flag is the byte before the 64-byte signature: 0 parses, 2 does not, 1 needs a cursor.
    const plain = encodeInboxMessage(inboxSamples()[2]);
    const flagAt = plain.body.length - 65;
    expect(plain.body[flagAt]).to.equal(0);
    const two = plain.body.slice();
    two[flagAt] = 2;
    expectMessageError(() => parseInboxMessage(plain.type, two), "MESSAGE_MALFORMED", "cursor flag of 0 or 1");
    const one = plain.body.slice();
    one[flagAt] = 1;
    expectMessageError(() => parseInboxMessage(plain.type, one), "MESSAGE_MALFORMED");
  });

  it("tells a page in the inbox order (stored time, then id) after its cursor from one that goes back or repeats", () => {
    const id = (last: number) => Uint8Array.from({ length: 16 }, (_, i) => (i === 15 ? last : 0x10));
    const at = (storedAt: number, last: number) => ({ storedAt, messageId: id(last), envelope: bytes(1) });
    const cursor = { storedAt: 100, messageId: id(5) };
    expect(inboxPageInOrder([], undefined)).to.equal(true);
    expect(inboxPageInOrder([], cursor)).to.equal(true);
    expect(inboxPageInOrder([at(1, 9), at(1, 10), at(2, 0)], undefined)).to.equal(true);
    // After the cursor: a later time with any id, or the same time with a greater id (a tie broken by the id).
    expect(inboxPageInOrder([at(100, 6), at(100, 7), at(101, 0)], cursor)).to.equal(true);
    expect(inboxPageInOrder([at(101, 0)], cursor)).to.equal(true);
    // The cursor's own message, one before it, or a page going back or repeating inside.
    expect(inboxPageInOrder([at(100, 5)], cursor)).to.equal(false);
    expect(inboxPageInOrder([at(100, 4)], cursor)).to.equal(false);
    expect(inboxPageInOrder([at(99, 200)], cursor)).to.equal(false);
    expect(inboxPageInOrder([at(101, 1), at(101, 1)], cursor)).to.equal(false);
    expect(inboxPageInOrder([at(101, 2), at(101, 1)], cursor)).to.equal(false);
    expect(inboxPageInOrder([at(102, 0), at(101, 9)], undefined)).to.equal(false);
    // Ids compare as bytes from the first: a greater first byte wins over a smaller last one.
    const high = { storedAt: 100, messageId: Uint8Array.from({ length: 16 }, (_, i) => (i === 0 ? 0x11 : 0)) };
    expect(inboxPageInOrder([{ ...high, envelope: bytes(1) }], cursor)).to.equal(true);
  });

  it("checks a prekey publication's signature by the identity it carries, for this node only", () => {
    const publish = prekeysSamples()[0] as Extract<PrekeysMessage, { type: 1 }>;
    expect(checkPublishPrekeys(NODE, publish, NOW)).to.equal("ok");
    expect(checkPublishPrekeys(OTHER_NODE, publish, NOW)).to.equal("bad-signature");
    const injected = { ...publish, oneTimePrekeys: [...publish.oneTimePrekeys, { id: 9, publicKey: bytes(32) }] };
    expect(checkPublishPrekeys(NODE, injected, NOW)).to.equal("bad-signature");
    expect(checkPublishPrekeys(NODE, publish, NOW + REQUEST_WINDOW_MS + 1)).to.equal("stale");
  });

  it("rejects unknown types, truncation, trailing bytes and out-of-range counts, naming what was expected", () => {
    expectMessageError(() => parseInboxMessage(0x0a, new Uint8Array(0)), "MESSAGE_UNKNOWN_TYPE", "inbox type");
    expectMessageError(() => parsePrekeysMessage(0xff, new Uint8Array(0)), "MESSAGE_UNKNOWN_TYPE", "prekeys type");
    expectMessageError(() => parseBillsMessage(0, new Uint8Array(0)), "MESSAGE_UNKNOWN_TYPE", "bills type");
    const stored = encodeInboxMessage(inboxSamples()[1]);
    expectMessageError(
      () => parseInboxMessage(stored.type, stored.body.subarray(0, 10)),
      "MESSAGE_MALFORMED",
      "message id",
    );
    const trailing = new Uint8Array([...stored.body, 0]);
    expectMessageError(() => parseInboxMessage(stored.type, trailing), "MESSAGE_MALFORMED", "expected end of input");
    expectMessageError(() => parseInboxMessage(InboxType.MESSAGES, Uint8Array.of(17)), "MESSAGE_MALFORMED", "count");
    expectMessageError(() => parseInboxMessage(InboxType.STORE, Uint8Array.of(0)), "MESSAGE_MALFORMED", "recipient");
    expectMessageError(() => parseBillsMessage(BillsType.SUBMIT, Uint8Array.of(0)), "MESSAGE_MALFORMED", "bill count");
    const submit = encodeBillsMessage(billsSamples()[0]);
    const badBill = submit.body.slice();
    badBill[1] = 9; // version byte of the first bill
    expectMessageError(() => parseBillsMessage(BillsType.SUBMIT, badBill), "MESSAGE_MALFORMED", "bill 0");
    expectMessageError(() => parseBillsMessage(7, new Uint8Array(0)), "MESSAGE_UNKNOWN_TYPE", "bills type 1..6");
    expectMessageError(() => parseBillsMessage(BillsType.COLLECT, new Uint8Array(7)), "MESSAGE_MALFORMED", "epoch");
    expectMessageError(() => parseBillsMessage(BillsType.COLLECT, new Uint8Array(9)), "MESSAGE_MALFORMED", "end");
    expectMessageError(() => parseBillsMessage(BillsType.BILLS, Uint8Array.of(2, 0)), "MESSAGE_MALFORMED", "more flag");
    expectMessageError(
      () => parseBillsMessage(BillsType.BILLS, Uint8Array.of(0, 65)),
      "MESSAGE_MALFORMED",
      "bill count",
    );
    expectMessageError(
      () => parseBillsMessage(BillsType.BILLS, Uint8Array.of(1, 1)),
      "MESSAGE_MALFORMED",
      "signed bill",
    );
    const bundle = encodePrekeysMessage(prekeysSamples()[4]);
    const badFlag = bundle.body.slice();
    badFlag[badFlag.length - 1] = 2;
    expectMessageError(() => parsePrekeysMessage(bundle.type, badFlag), "MESSAGE_MALFORMED", "flag");
  });

  it("refuses to encode values outside the format with a typed error", () => {
    expectMessageError(
      () =>
        encodeInboxMessage({ type: InboxType.STORED, messageId: bytes(15), expiry: 1, promiseSignature: bytes(65) }),
      "MESSAGE_BAD_ARGUMENT",
      "message id",
    );
    expectMessageError(
      () =>
        encodeInboxMessage({
          type: InboxType.STORE,
          recipientId: RECIPIENT,
          messageId: bytes(16),
          ttlSeconds: 60,
          envelope: bytes(MAX_PAYLOAD_BYTES + 1),
        }),
      "MESSAGE_BAD_ARGUMENT",
      "envelope",
    );
    expectMessageError(
      () => encodeBillsMessage({ type: BillsType.SUBMIT, bills: Array(MAX_BILLS_PER_SUBMISSION + 1).fill(bill) }),
      "MESSAGE_BAD_ARGUMENT",
    );
    expectMessageError(
      () => encodeBillsMessage({ type: BillsType.SUBMIT, bills: [] }),
      "MESSAGE_BAD_ARGUMENT",
      "count",
    );
    expectMessageError(
      () => encodeBillsMessage({ type: BillsType.COLLECT, epoch: -1n }),
      "MESSAGE_BAD_ARGUMENT",
      "epoch",
    );
    expectMessageError(
      () => encodeBillsMessage({ type: BillsType.COLLECT, epoch: 1n << 64n }),
      "MESSAGE_BAD_ARGUMENT",
      "epoch",
    );
  });

  it("fuzz: 10,000 random and mutated bodies only ever raise MessageError; untouched ones round-trip", function () {
    this.timeout(120_000);
    const parsers = [
      { parse: parseInboxMessage, encode: encodeInboxMessage },
      { parse: parsePrekeysMessage, encode: encodePrekeysMessage },
      { parse: parseBillsMessage, encode: encodeBillsMessage },
    ] as const;
    const encoded = [
      inboxSamples().map((m) => encodeInboxMessage(m)),
      prekeysSamples().map((m) => encodePrekeysMessage(m)),
      billsSamples().map((m) => encodeBillsMessage(m)),
    ];
    const caseArb = fc.record({
      protocol: fc.nat(2),
      sample: fc.nat(),
      type: fc.option(fc.nat(255), { nil: undefined }),
      mutation: fc.oneof(
        fc.constant<{ kind: "none" }>({ kind: "none" }),
        fc.record({ kind: fc.constant<"random">("random"), body: fc.uint8Array({ maxLength: 600 }) }),
        fc.record({
          kind: fc.constant<"flip">("flip"),
          flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 3 }),
        }),
        fc.record({ kind: fc.constant<"cut">("cut"), at: fc.nat() }),
        fc.record({ kind: fc.constant<"append">("append"), extra: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
      ),
    });
    fc.assert(
      fc.property(caseArb, ({ protocol, sample, type, mutation }) => {
        const list = encoded[protocol];
        const base = list[sample % list.length];
        let body = base.body.slice();
        if (mutation.kind === "random") body = mutation.body;
        if (mutation.kind === "flip") for (const [at, x] of mutation.flips) body[at % body.length] ^= x;
        if (mutation.kind === "cut") body = body.subarray(0, mutation.at % (body.length + 1));
        if (mutation.kind === "append") body = new Uint8Array([...body, ...mutation.extra]);
        const frameType = type ?? base.type;
        const parse = parsers[protocol].parse as (t: number, b: Uint8Array) => unknown;
        let parsed: unknown;
        try {
          parsed = parse(frameType, body);
        } catch (e) {
          return e instanceof MessageError;
        }
        // Whatever parses re-encodes to exactly the bytes it came from: one encoding per value.
        const encode = parsers[protocol].encode as (m: unknown) => { type: number; body: Uint8Array };
        const again = encode(parsed);
        return again.type === frameType && Buffer.from(again.body).equals(Buffer.from(body));
      }),
      { numRuns: 10_000 },
    );
  });

  it("signs a subscribe like a fetch: for this node, by the recipient, never usable as a fetch", () => {
    const subscribe = inboxSamples().find((m) => m.type === InboxType.SUBSCRIBE) as Extract<InboxMessage, { type: 9 }>;
    expect(subscribe.type).to.equal(InboxType.SUBSCRIBE);
    const signingKey = identity.signing.publicKey;
    expect(checkInboxRequest(NODE, subscribe, signingKey, NOW)).to.equal("ok");
    expect(checkInboxRequest(OTHER_NODE, subscribe, signingKey, NOW)).to.equal("bad-signature");
    const asFetch: FetchMessage = { ...subscribe, type: InboxType.FETCH, limit: 1 };
    expect(checkInboxRequest(NODE, asFetch, signingKey, NOW)).to.equal("bad-signature");
    const { body } = encodeInboxMessage(subscribe);
    expect(body.length).to.equal(1 + RECIPIENT.length + 8 + 16 + 64);
  });

  it("lays out STORED as message id || expiry (8) || 65-byte promise signature", () => {
    const stored = inboxSamples()[1] as Extract<InboxMessage, { type: 2 }>;
    const { body } = encodeInboxMessage(stored);
    expect(body.length).to.equal(16 + 8 + 65);
    expect(body.subarray(0, 16)).to.deep.equal(stored.messageId);
    expect(Buffer.from(body.subarray(16, 24)).readBigUInt64BE()).to.equal(BigInt(stored.expiry));
    expect(body.subarray(24)).to.deep.equal(stored.promiseSignature);
    expectMessageError(() => parseInboxMessage(InboxType.STORED, body.subarray(0, 16)), "MESSAGE_MALFORMED");
  });

  it("round-trips an exit delivery at both size bounds and rejects anything else with MessageError", () => {
    for (const length of [1, MAX_DELIVERY_ENVELOPE_BYTES]) {
      const delivery = { messageId: bytes(16), ttlSeconds: MAX_TTL_SECONDS, envelope: bytes(length) };
      const payload = encodeDelivery(delivery);
      expect(payload.length).to.equal(DELIVERY_HEADER_BYTES + length);
      expect(payload[0]).to.equal(0x01);
      expect(parseDelivery(payload)).to.deep.equal(delivery);
    }
    expect(DELIVERY_HEADER_BYTES + MAX_DELIVERY_ENVELOPE_BYTES).to.equal(MAX_PAYLOAD_BYTES);
    const good = encodeDelivery({ messageId: bytes(16), ttlSeconds: 60, envelope: bytes(10) });
    const kind = good.slice();
    kind[0] = 2;
    expectMessageError(() => parseDelivery(kind), "MESSAGE_UNKNOWN_TYPE", "delivery kind");
    const zeroTtl = good.slice();
    zeroTtl.fill(0, 17, 21);
    expectMessageError(() => parseDelivery(zeroTtl), "MESSAGE_MALFORMED", "ttlSeconds");
    const longTtl = good.slice();
    new DataView(longTtl.buffer).setUint32(17, MAX_TTL_SECONDS + 1);
    expectMessageError(() => parseDelivery(longTtl), "MESSAGE_MALFORMED", "ttlSeconds");
    expectMessageError(() => parseDelivery(good.subarray(0, DELIVERY_HEADER_BYTES)), "MESSAGE_MALFORMED");
    expectMessageError(() => parseDelivery(new Uint8Array(MAX_PAYLOAD_BYTES + 1)), "MESSAGE_MALFORMED");
    expectMessageError(
      () => encodeDelivery({ messageId: bytes(16), ttlSeconds: 60, envelope: bytes(MAX_DELIVERY_ENVELOPE_BYTES + 1) }),
      "MESSAGE_BAD_ARGUMENT",
      "envelope",
    );
    expectMessageError(
      () => encodeDelivery({ messageId: bytes(15), ttlSeconds: 60, envelope: bytes(1) }),
      "MESSAGE_BAD_ARGUMENT",
      "message id",
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: MAX_PAYLOAD_BYTES + 8 }), (payload) => {
        try {
          const parsed = parseDelivery(payload);
          return Buffer.from(encodeDelivery(parsed)).equals(Buffer.from(payload));
        } catch (e) {
          return e instanceof MessageError;
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it("is reachable through the frame decoder: a framed body parses to the same message", () => {
    const m = inboxSamples()[0];
    const { type, body } = encodeInboxMessage(m);
    const [frame] = new FrameDecoder(INBOX_MAX_FRAME_BYTES).push(encodeFrame(type, body, INBOX_MAX_FRAME_BYTES));
    expect(parseInboxMessage(frame.type, frame.body)).to.deep.equal(m);
  });
});
