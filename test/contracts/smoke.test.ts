import { expect } from "chai";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { deployProtocolFixture } from "../fixtures/protocol";

describe("deploy", () => {
  it("wires the timelock as owner of parameters, registry and reward pool", async () => {
    const { parameters, registry, rewardPool, timelock } = await loadFixture(deployProtocolFixture);
    const t = await timelock.getAddress();
    expect(await parameters.owner()).to.equal(t);
    expect(await registry.owner()).to.equal(t);
    expect(await rewardPool.owner()).to.equal(t);
  });
});
