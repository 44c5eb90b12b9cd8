import { expect } from "chai";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { randomBytes } from "node:crypto";
import { rm } from "node:fs/promises";
import path from "node:path";
import { deployProtocolFixture } from "../fixtures/protocol";
import { registerEdgeNode, registerRecipient, tempDir, type TestRecipient } from "./edgeFixture";
import { generateNodeKey } from "../../sdk/net/peerId";
import { createEdgeHost, type EdgeHost } from "../../node/host";
import { openNodeDatabase, type NodeDatabase } from "../../node/db";
import { ChainDirectory } from "../../node/directory";
import { PrekeyService } from "../../node/prekeys";
import { exchangeFrames } from "../../node/serve";
import {
  generateIdentityKeyPair,
  generateOneTimePrekeys,
  verifyPrekeyBundle,
  type OneTimePrekey,
} from "../../sdk/crypto/x3dh";
import {
  ERROR_FRAME_TYPE,
  PREKEYS_MAX_FRAME_BYTES,
  PREKEYS_PROTOCOL,
  WireErrorCode,
  parseErrorAnswer,
  type Frame,
} from "../../sdk/wire/frame";
import {
  PrekeysType,
  encodePrekeysMessage,
  parsePrekeysMessage,
  signPublishPrekeys,
  type PrekeysMessage,
} from "../../sdk/wire/messages";

describe("node/prekeys: the home node's prekey store, against DIDs on the real chain", function () {
  this.timeout(60_000);

  let root: string;
  let node: EdgeHost;
  let client: EdgeHost;
  let db: NodeDatabase;
  let service: PrekeyService;
  let alice: TestRecipient; // names the node as a home node
  let bob: TestRecipient; // names another operator
  let nodePeerId: Uint8Array;

  async function fixture() {
    const base = await deployProtocolFixture();
    const [, op, other, , , a, b] = base.signers;
    await registerEdgeNode(base, op, generateNodeKey().peerId, ["/ip4/127.0.0.1/tcp/1"]);
    await registerEdgeNode(base, other, generateNodeKey().peerId, ["/ip4/127.0.0.1/tcp/2"]);
    return {
      ...base,
      operator: op.address,
      alice: await registerRecipient(base.didRegistry, a, [op.address], "prekeys/alice"),
      bob: await registerRecipient(base.didRegistry, b, [other.address], "prekeys/bob"),
    };
  }

  async function startService(): Promise<void> {
    const f = await loadFixture(fixture);
    node = await createEdgeHost({ dataDir: path.join(root, "node") });
    db = openNodeDatabase(path.join(root, "node", "node.db"));
    service = new PrekeyService(node.libp2p, {
      db,
      directory: new ChainDirectory(f.didRegistry, { fromBlock: 0 }),
      operator: f.operator,
    });
    await service.start();
    nodePeerId = node.libp2p.peerId.toMultihash().bytes;
    await client.libp2p.peerStore.merge(node.libp2p.peerId, { multiaddrs: node.libp2p.getMultiaddrs() });
  }

  async function stopService(): Promise<void> {
    await service.stop();
    await node.stop();
    db.close();
  }

  before(async () => {
    root = await tempDir("prekeys");
    const f = await loadFixture(fixture);
    alice = f.alice;
    bob = f.bob;
    client = await createEdgeHost({ dataDir: path.join(root, "client") });
    await startService();
  });

  after(async () => {
    await stopService().catch(() => undefined);
    await client?.stop();
    await rm(root, { recursive: true, force: true });
  });

  async function send(messages: PrekeysMessage[]): Promise<Frame[]> {
    const stream = await client.libp2p.dialProtocol(node.libp2p.peerId, PREKEYS_PROTOCOL, {
      signal: AbortSignal.timeout(5_000),
    });
    return exchangeFrames(stream, messages.map(encodePrekeysMessage), PREKEYS_MAX_FRAME_BYTES);
  }

  const publication = (
    who: TestRecipient,
    oneTime: OneTimePrekey[],
    opts: { signingKey?: Uint8Array; identity?: TestRecipient["identity"]; forNode?: Uint8Array } = {},
  ) => {
    const identity = opts.identity ?? who.identity;
    return signPublishPrekeys(
      opts.forNode ?? nodePeerId,
      {
        type: PrekeysType.PUBLISH,
        recipientId: who.recipientId,
        timestamp: Date.now(),
        nonce: Uint8Array.from(randomBytes(16)),
        identity: { dh: identity.dh.publicKey, signing: identity.signing.publicKey },
        signedPrekey: {
          id: who.signedPrekey.id,
          publicKey: who.signedPrekey.keyPair.publicKey,
          signature: who.signedPrekey.signature,
        },
        oneTimePrekeys: oneTime.map((p) => ({ id: p.id, publicKey: p.keyPair.publicKey })),
      },
      opts.signingKey ?? identity.signing.secretKey,
    );
  };

  const errorCode = (frame: Frame) => {
    expect(frame.type).to.equal(ERROR_FRAME_TYPE);
    return parseErrorAnswer(frame.body).code;
  };

  it("keeps a publication signed by the DID's signing key and answers how many one-time prekeys it holds", async () => {
    const [answer] = await send([publication(alice, generateOneTimePrekeys(1, 10))]);
    expect(parsePrekeysMessage(answer.type, answer.body)).to.deep.equal({
      type: PrekeysType.PUBLISHED,
      oneTimePrekeysHeld: 10,
    });
    expect(service.oneTimePrekeysHeld(alice.address)).to.equal(10);
  });

  it("refuses a publication by a key that is not the DID's, for another node, replayed, or for a non-home node", async () => {
    const stranger = generateIdentityKeyPair();
    const forged = publication(alice, generateOneTimePrekeys(100, 1), { identity: stranger });
    const otherNode = publication(alice, generateOneTimePrekeys(101, 1), {
      forNode: client.libp2p.peerId.toMultihash().bytes,
    });
    const valid = publication(alice, generateOneTimePrekeys(102, 1));
    const notHome = publication(bob, generateOneTimePrekeys(1, 1));
    const answers = await send([forged, otherNode, valid, valid, notHome]);
    expect(answers).to.have.length(5);
    expect(errorCode(answers[0])).to.equal(WireErrorCode.UNAUTHORIZED);
    expect(errorCode(answers[1])).to.equal(WireErrorCode.UNAUTHORIZED);
    expect(parsePrekeysMessage(answers[2].type, answers[2].body)).to.deep.equal({
      type: PrekeysType.PUBLISHED,
      oneTimePrekeysHeld: 11,
    });
    expect(errorCode(answers[3])).to.equal(WireErrorCode.REPLAYED);
    expect(errorCode(answers[4])).to.equal(WireErrorCode.NOT_FOUND);
    expect(service.oneTimePrekeysHeld(alice.address)).to.equal(11);
    expect(service.oneTimePrekeysHeld(bob.address)).to.equal(0);
  });

  it("hands each one-time prekey out once, even to concurrent fetches, then bundles without one", async () => {
    const fetches = await Promise.all(
      Array.from({ length: 15 }, () => send([{ type: PrekeysType.FETCH_BUNDLE, recipientId: alice.recipientId }])),
    );
    const ids: number[] = [];
    let without = 0;
    for (const [frame] of fetches) {
      const message = parsePrekeysMessage(frame.type, frame.body);
      if (message.type !== PrekeysType.BUNDLE) expect.fail(`expected a bundle, got type ${message.type}`);
      verifyPrekeyBundle(message.bundle);
      expect(message.bundle.identity.signing).to.deep.equal(alice.identity.signing.publicKey);
      if (message.bundle.oneTimePrekey === undefined) without++;
      else ids.push(message.bundle.oneTimePrekey.id);
    }
    expect(ids).to.have.length(11);
    expect(new Set(ids).size).to.equal(11);
    expect(without).to.equal(4);
    expect(service.oneTimePrekeysHeld(alice.address)).to.equal(0);
  });

  it("never hands a one-time prekey out twice, even when the client publishes it again", async () => {
    const batch = generateOneTimePrekeys(300, 2);
    await send([publication(alice, batch)]);
    const [first] = await send([{ type: PrekeysType.FETCH_BUNDLE, recipientId: alice.recipientId }]);
    const taken = parsePrekeysMessage(first.type, first.body);
    if (taken.type !== PrekeysType.BUNDLE) expect.fail("expected a bundle");
    expect(taken.bundle.oneTimePrekey?.id).to.equal(300);
    // The same batch again (say the client never saw PUBLISHED): the handed-out key does not come back.
    const [again] = await send([publication(alice, batch)]);
    expect(parsePrekeysMessage(again.type, again.body)).to.deep.equal({
      type: PrekeysType.PUBLISHED,
      oneTimePrekeysHeld: 1,
    });
    const rest = await Promise.all(
      [1, 2].map(() => send([{ type: PrekeysType.FETCH_BUNDLE, recipientId: alice.recipientId }])),
    );
    const ids = rest.map(([frame]) => {
      const message = parsePrekeysMessage(frame.type, frame.body);
      if (message.type !== PrekeysType.BUNDLE) expect.fail("expected a bundle");
      return message.bundle.oneTimePrekey?.id;
    });
    expect(ids.filter((id) => id !== undefined)).to.deep.equal([301]);
  });

  it("answers NOT_FOUND for a recipient that published nothing", async () => {
    const [answer] = await send([{ type: PrekeysType.FETCH_BUNDLE, recipientId: bob.recipientId }]);
    expect(errorCode(answer)).to.equal(WireErrorCode.NOT_FOUND);
  });

  it("keeps bundles and the record of handed-out prekeys across a restart on the same database", async () => {
    await send([publication(alice, generateOneTimePrekeys(200, 3))]);
    const [first] = await send([{ type: PrekeysType.FETCH_BUNDLE, recipientId: alice.recipientId }]);
    const taken = parsePrekeysMessage(first.type, first.body);
    if (taken.type !== PrekeysType.BUNDLE) expect.fail("expected a bundle");
    expect(taken.bundle.oneTimePrekey?.id).to.equal(200);

    await stopService();
    await startService();
    expect(service.oneTimePrekeysHeld(alice.address)).to.equal(2);
    const after = await Promise.all(
      [1, 2, 3].map(() => send([{ type: PrekeysType.FETCH_BUNDLE, recipientId: alice.recipientId }])),
    );
    const ids = after.map(([f]) => {
      const m = parsePrekeysMessage(f.type, f.body);
      return m.type === PrekeysType.BUNDLE ? m.bundle.oneTimePrekey?.id : -1;
    });
    expect(ids.filter((id) => id !== undefined).sort()).to.deep.equal([201, 202]);
    expect(ids.filter((id) => id === undefined)).to.have.length(1);
    // The nonce of a publication made before the restart is still refused.
    const again = publication(alice, generateOneTimePrekeys(300, 1));
    const [ok, replay] = await send([again, again]);
    expect(ok.type).to.equal(PrekeysType.PUBLISHED);
    expect(errorCode(replay)).to.equal(WireErrorCode.REPLAYED);
  });

  it("answers RATE_LIMITED past a peer's rate, serves other peers meanwhile, and rations one-time prekeys", async () => {
    const f = await loadFixture(fixture);
    let now = Date.now();
    const host = await createEdgeHost({ dataDir: path.join(root, "limited") });
    const limitedDb = openNodeDatabase(path.join(root, "limited", "node.db"));
    const limited = new PrekeyService(host.libp2p, {
      db: limitedDb,
      directory: new ChainDirectory(f.didRegistry, { fromBlock: 0 }),
      operator: f.operator,
      now: () => now,
      peerRateLimit: { perSecond: 1, burst: 4 },
      oneTimePrekeyRateLimit: { perSecond: 1 / 60, burst: 2 },
    });
    await limited.start();
    const other = await createEdgeHost({ dataDir: path.join(root, "other-client") });
    try {
      for (const h of [client, other]) {
        await h.libp2p.peerStore.merge(host.libp2p.peerId, { multiaddrs: host.libp2p.getMultiaddrs() });
      }
      const ask = async (from: EdgeHost, messages: PrekeysMessage[]) =>
        exchangeFrames(
          await from.libp2p.dialProtocol(host.libp2p.peerId, PREKEYS_PROTOCOL, { signal: AbortSignal.timeout(5_000) }),
          messages.map(encodePrekeysMessage),
          PREKEYS_MAX_FRAME_BYTES,
        );
      const fetch = { type: PrekeysType.FETCH_BUNDLE, recipientId: alice.recipientId } as const;
      const oneTimeOf = (frame: Frame) => {
        const message = parsePrekeysMessage(frame.type, frame.body);
        if (message.type !== PrekeysType.BUNDLE) expect.fail(`expected a bundle, got type ${frame.type}`);
        return message.bundle.oneTimePrekey?.id;
      };
      const forNode = host.libp2p.peerId.toMultihash().bytes;

      // Four requests pass (a publication of 5 one-time prekeys and 3 fetches); the fifth is refused, not served.
      const answers = await ask(client, [
        publication(alice, generateOneTimePrekeys(500, 5), { forNode }),
        fetch,
        fetch,
        fetch,
        fetch,
      ]);
      expect(answers[0].type).to.equal(PrekeysType.PUBLISHED);
      // The recipient's budget is 2 one-time prekeys: the third bundle goes out without one.
      expect(answers.slice(1, 4).map(oneTimeOf)).to.deep.equal([500, 501, undefined]);
      expect(errorCode(answers[4])).to.equal(WireErrorCode.RATE_LIMITED);
      expect(limited.oneTimePrekeysHeld(alice.address)).to.equal(3);

      // Another peer is served meanwhile, and the budget holds for it too.
      expect((await ask(other, [fetch])).map(oneTimeOf)).to.deep.equal([undefined]);

      // A minute later the peer has tokens again and the recipient one more one-time prekey to give.
      now += 60_000;
      expect((await ask(client, [fetch, fetch])).map(oneTimeOf)).to.deep.equal([502, undefined]);
      expect(limited.oneTimePrekeysHeld(alice.address)).to.equal(2);
    } finally {
      await limited.stop();
      await other.stop();
      await host.stop();
      limitedDb.close();
    }
  });
});
