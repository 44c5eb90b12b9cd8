import { expect } from "chai";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { deployProtocolFixture } from "../fixtures/protocol";
import { stakeNode } from "../fixtures/rollup";
import { GUARDIAN_PEERS_MAX_AGE_MS, GUARDIAN_PEERS_MIN_REFRESH_MS, GuardianPeers } from "../../node/guardians";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";
import type { NodeRegistry } from "../../typechain-types";

describe("node/guardians: the registered peers of active guardians, as an edge node checks them", () => {
  it("knows the active guardians' peer ids, not edge nodes', and reads the chain at most every 5 s for a stranger", async () => {
    const base = await loadFixture(deployProtocolFixture);
    const [, guardian, edge, late] = base.signers;
    await stakeNode(base, guardian, NodeRole.Guardian, 2_000n * TOKEN);
    await stakeNode(base, edge, NodeRole.Edge, 1_000n * TOKEN);
    const peerOf = async (who: { address: string }) => (await base.registry.node(who.address)).peerId;

    // The real registry, with its reads counted.
    let reads = 0;
    const registry = {
      activeNodes: ((...args: Parameters<NodeRegistry["activeNodes"]>) => {
        reads++;
        return base.registry.activeNodes(...args);
      }) as NodeRegistry["activeNodes"],
    };
    let now = 0;
    const peers = new GuardianPeers(registry, { now: () => now });

    expect(await peers.has(await peerOf(guardian))).to.equal(true);
    expect(await peers.has(await peerOf(edge))).to.equal(false);
    expect(reads, "a stranger within 5 s of the last read does not make another").to.equal(1);

    // A guardian that registers now is let in once 5 s have passed since the last read.
    await stakeNode(base, late, NodeRole.Guardian, 2_000n * TOKEN);
    expect(await peers.has(await peerOf(late))).to.equal(false);
    now += GUARDIAN_PEERS_MIN_REFRESH_MS;
    expect(await peers.has(await peerOf(late))).to.equal(true);
    expect(reads).to.equal(2);

    // A known guardian does not cause reads, until the set is a minute old.
    now += 1_000;
    expect(await peers.has(await peerOf(guardian))).to.equal(true);
    expect(reads).to.equal(2);
    now += GUARDIAN_PEERS_MAX_AGE_MS;
    await Promise.all([peers.has(await peerOf(guardian)), peers.has(await peerOf(guardian))]);
    expect(reads, "callers at the same moment share one read").to.equal(3);
  });
});
