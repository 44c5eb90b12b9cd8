import { expect } from "chai";
import hre, { ethers } from "hardhat";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadDeployment } from "../../sdk/chain/deployment";
import { SendGovernor__factory, ProtocolParameters__factory } from "../../typechain-types";

describe("the deploy task (npx hardhat deploy)", () => {
  let snapshot: string;
  before(async () => {
    snapshot = (await ethers.provider.send("evm_snapshot", [])) as string;
  });
  after(async () => {
    await ethers.provider.send("evm_revert", [snapshot]);
  });

  it("deploys with the local profile, takes governor timing from its options, and writes a deployments file", async () => {
    const out = path.join(mkdtempSync(path.join(os.tmpdir(), "deploy-")), "hardhat.json");
    const lines: string[] = [];
    const original = console.log;
    console.log = (...parts: unknown[]) => lines.push(parts.join(" "));
    try {
      await hre.run("deploy", { out, votingDelay: 3, votingPeriod: 7, timelockDelay: 90 });
    } finally {
      console.log = original;
    }
    const deployment = loadDeployment(out);
    expect(deployment.chainId).to.equal(31337);
    expect(deployment.circuit).to.equal("relay_batch_test");
    expect(deployment.governor).to.deep.equal({ votingDelay: 3, votingPeriod: 7, timelockDelay: 90, quorumPercent: 4 });
    const governor = SendGovernor__factory.connect(deployment.contracts.SendGovernor, ethers.provider);
    expect(await governor.votingDelay()).to.equal(3n);
    expect(await governor.votingPeriod()).to.equal(7n);
    const parameters = ProtocolParameters__factory.connect(deployment.contracts.ProtocolParameters, ethers.provider);
    expect(await parameters.owner()).to.equal(deployment.contracts.SendTimelock);
    expect(lines.join("\n")).to.contain(`deployments file: ${out}`);
  });

  it("refuses an unknown profile with what was expected", async () => {
    const error = await hre.run("deploy", { profile: "staging" }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).to.equal("--profile: expected 'local' or 'production', got 'staging'");
  });
});
