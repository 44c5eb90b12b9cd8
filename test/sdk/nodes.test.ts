import { expect } from "chai";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { bytesToHex, hexToBytes } from "@noble/hashes/utils.js";
import { deployProtocolFixture } from "../fixtures/protocol";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";
import { readEdgeNode, readEdgeNodes } from "../../sdk/chain/nodes";
import { generateNodeKey, relayKeyPairFromNodeKey } from "../../sdk/net/peerId";

async function nodesFixture() {
  const base = await deployProtocolFixture();
  const [, e1, e2, e3, bogus, watchdog] = base.signers;
  const keys = new Map<string, ReturnType<typeof generateNodeKey>>();
  const stakeOf = { [NodeRole.Edge]: 1_000n * TOKEN, [NodeRole.Watchdog]: 500n * TOKEN } as Record<number, bigint>;
  const join = async (signer: typeof e1, role: NodeRole, peerId: string, port: number) => {
    const stake = stakeOf[role];
    await base.token.transfer(signer.address, stake);
    await base.token.connect(signer).approve(await base.registry.getAddress(), stake);
    await base.registry
      .connect(signer)
      .register(role, peerId, [`/ip4/127.0.0.1/tcp/${port}`], signer.address, 0, stake);
  };
  for (const [i, signer] of [e1, e2, e3].entries()) {
    const key = generateNodeKey();
    keys.set(signer.address, key);
    await join(signer, NodeRole.Edge, key.peerId, 4001 + i);
  }
  await join(bogus, NodeRole.Edge, `peer-${bogus.address}`, 4010); // registered, but no relay key in it
  const watchdogKey = generateNodeKey();
  await join(watchdog, NodeRole.Watchdog, watchdogKey.peerId, 4020);
  return { ...base, e1, e2, e3, bogus, watchdog, keys };
}

describe("sdk/chain/nodes: edge nodes from the real NodeRegistry", () => {
  it("lists every active edge node with its relay key in any page size, leaving out unusable peer ids", async () => {
    const ctx = await loadFixture(nodesFixture);
    for (const pageSize of [1, 2, 100]) {
      const invalid: string[] = [];
      const nodes = await readEdgeNodes(ctx.registry, { pageSize, onInvalid: (operator) => invalid.push(operator) });
      expect(nodes.map((n) => n.operator)).to.deep.equal([ctx.e1.address, ctx.e2.address, ctx.e3.address]);
      expect(invalid).to.deep.equal([ctx.bogus.address]);
      for (const [i, node] of nodes.entries()) {
        const key = ctx.keys.get(node.operator)!;
        expect(node.peerId).to.equal(key.peerId);
        expect(node.multiaddrs).to.deep.equal([`/ip4/127.0.0.1/tcp/${4001 + i}`]);
        expect(node.active).to.equal(true);
        // The relay key a sender reads from the chain is the one the node derives from its own secret.
        expect(bytesToHex(node.relayPublicKey)).to.equal(
          bytesToHex(relayKeyPairFromNodeKey(hexToBytes(key.privateKey.slice(2))).publicKey),
        );
      }
    }
  });

  it("reads one node by operator, and nothing for a watchdog or an address that is not registered", async () => {
    const ctx = await loadFixture(nodesFixture);
    const one = await readEdgeNode(ctx.registry, ctx.e2.address.toLowerCase());
    expect(one?.operator).to.equal(ctx.e2.address);
    expect(one?.peerId).to.equal(ctx.keys.get(ctx.e2.address)!.peerId);
    expect(await readEdgeNode(ctx.registry, ctx.watchdog.address)).to.equal(undefined);
    expect(await readEdgeNode(ctx.registry, ctx.signers[9].address)).to.equal(undefined);
    expect(await readEdgeNode(ctx.registry, ctx.bogus.address)).to.equal(undefined);
  });

  it("stops when aborted and refuses a page size below 1", async () => {
    const ctx = await loadFixture(nodesFixture);
    const controller = new AbortController();
    controller.abort(new Error("stop"));
    await readEdgeNodes(ctx.registry, { signal: controller.signal }).then(
      () => expect.fail("expected an abort"),
      (error: Error) => expect(error.message).to.equal("stop"),
    );
    await readEdgeNodes(ctx.registry, { pageSize: 0 }).then(
      () => expect.fail("expected a RangeError"),
      (error: Error) => expect(error).to.be.instanceOf(RangeError),
    );
  });
});
