import { expect } from "chai";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { bytesToHex } from "@noble/hashes/utils.js";
import { deployProtocolFixture } from "../fixtures/protocol";
import { registerEdgeNode } from "./edgeFixture";
import { NodeDiscovery, type DiscoveryChange } from "../../node/discovery";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";
import { generateNodeKey, relayPublicKeyOfPeer } from "../../sdk/net/peerId";

describe("node/discovery: the live map of edge nodes, following the NodeRegistry on the real chain", function () {
  this.timeout(60_000);

  it("starts from the registry, follows registrations and address updates, and drops a node that unstakes", async () => {
    const f = await loadFixture(deployProtocolFixture);
    const [, a, b, guardian] = f.signers;
    const keyA = generateNodeKey();
    const keyB = generateNodeKey();
    await registerEdgeNode(f, a, keyA.peerId, ["/ip4/127.0.0.1/tcp/4001"]);

    const discovery = new NodeDiscovery(f.registry);
    const changes: DiscoveryChange[] = [];
    discovery.onChange((c) => changes.push(c));
    await discovery.sync();
    expect(discovery.nodes().map((n) => n.operator)).to.deep.equal([a.address]);
    const nodeA = discovery.node(a.address);
    expect(nodeA?.peerId).to.equal(keyA.peerId);
    expect(nodeA?.multiaddrs).to.deep.equal(["/ip4/127.0.0.1/tcp/4001"]);
    expect(bytesToHex(nodeA!.relayPublicKey)).to.equal(bytesToHex(relayPublicKeyOfPeer(keyA.peerId)));
    expect(discovery.resolvePeer(keyA.peerId)?.multiaddrs).to.deep.equal(["/ip4/127.0.0.1/tcp/4001"]);
    expect(discovery.peerIdOf(a.address)).to.equal(keyA.peerId);

    // A second edge node registers; a guardian (another role) and an edge node with an unusable peer id do not appear.
    await registerEdgeNode(f, b, keyB.peerId, ["/ip4/127.0.0.1/tcp/4002"]);
    await f.token.transfer(guardian.address, 2_000n * TOKEN);
    await f.token.connect(guardian).approve(await f.registry.getAddress(), 2_000n * TOKEN);
    await f.registry
      .connect(guardian)
      .register(
        NodeRole.Guardian,
        generateNodeKey().peerId,
        ["/ip4/127.0.0.1/tcp/4003"],
        guardian.address,
        0,
        2_000n * TOKEN,
      );
    await registerEdgeNode(f, f.signers[4], "not-a-peer-id", ["/ip4/127.0.0.1/tcp/4004"]);
    await discovery.sync();
    expect(
      discovery
        .nodes()
        .map((n) => n.operator)
        .sort(),
    ).to.deep.equal([a.address, b.address].sort());
    expect(changes.map((c) => c.kind)).to.deep.equal(["added", "added"]);

    // The operator moves its node: new addresses and a new peer id; the old peer id no longer resolves.
    const moved = generateNodeKey();
    await (await f.registry.connect(a).updateNode(moved.peerId, ["/ip4/127.0.0.1/tcp/5001"], a.address)).wait();
    await discovery.sync();
    expect(discovery.node(a.address)?.multiaddrs).to.deep.equal(["/ip4/127.0.0.1/tcp/5001"]);
    expect(discovery.resolvePeer(moved.peerId)?.multiaddrs).to.deep.equal(["/ip4/127.0.0.1/tcp/5001"]);
    expect(discovery.resolvePeer(keyA.peerId)).to.equal(undefined);
    expect(changes.at(-1)).to.deep.include({ kind: "updated" });

    // Unstaking everything takes the node out of the active set, and out of the map.
    const stake = await f.registry.stakeOf(b.address, b.address);
    await (await f.registry.connect(b).unbond(b.address, stake)).wait();
    expect(await f.registry.isActive(b.address)).to.equal(false);
    await discovery.sync();
    expect(discovery.nodes().map((n) => n.operator)).to.deep.equal([a.address]);
    expect(discovery.resolvePeer(keyB.peerId)).to.equal(undefined);
    expect(changes.at(-1)).to.deep.equal({ kind: "removed", operator: b.address });

    // Staking again brings it back.
    await f.token.transfer(b.address, stake); // the unbonded tokens are still in the unbonding period
    await f.token.connect(b).approve(await f.registry.getAddress(), stake);
    await (await f.registry.connect(b).stake(stake)).wait();
    await discovery.sync();
    expect(discovery.peerIdOf(b.address)).to.equal(keyB.peerId);
  });

  it("keeps polling in the background after start() and stops cleanly", async () => {
    const f = await loadFixture(deployProtocolFixture);
    const [, a] = f.signers;
    const discovery = new NodeDiscovery(f.registry, { pollMs: 20 });
    await discovery.start();
    expect(discovery.nodes()).to.deep.equal([]);
    const added = new Promise<DiscoveryChange>((resolve) => discovery.onChange(resolve));
    const key = generateNodeKey();
    await registerEdgeNode(f, a, key.peerId, ["/ip4/127.0.0.1/tcp/4001"]);
    expect(await added).to.deep.include({ kind: "added" });
    await discovery.stop();
    expect(discovery.peerIdOf(a.address)).to.equal(key.peerId);
  });
});
