import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, setBalance } from "@nomicfoundation/hardhat-network-helpers";
import { deployProtocolFixture } from "../fixtures/protocol";
import { TOKEN } from "../../sdk/chain/protocol";
import { RewardPool__factory } from "../../typechain-types";

const REWARD_SUPPLY = 300_000_000n * TOKEN;

/**
 * The deployed protocol plus a signer that acts as the timelock (the owner of the pool). `distributor` is a plain
 * signer the tests make the pool's distributor; the deployed RewardDistributor is `rewardDistributor`.
 */
async function rewardPoolFixture() {
  const protocol = await deployProtocolFixture();
  const timelockAddress = await protocol.timelock.getAddress();
  await setBalance(timelockAddress, 10n ** 20n);
  const owner = await ethers.getImpersonatedSigner(timelockAddress);
  const [, distributor, recipient, stranger] = protocol.signers;
  return { ...protocol, rewardDistributor: protocol.distributor, owner, distributor, recipient, stranger };
}

/** The pool with no distributor: the owner removed the deployed one. */
async function withoutDistributorFixture() {
  const f = await rewardPoolFixture();
  await f.rewardPool.connect(f.owner).setDistributor(ethers.ZeroAddress);
  return f;
}

/** The pool with `distributor` set by the owner. */
async function withDistributorFixture() {
  const f = await rewardPoolFixture();
  await f.rewardPool.connect(f.owner).setDistributor(f.distributor.address);
  return f;
}

describe("RewardPool", () => {
  it("holds the reward supply from deploy and has the reward distributor as its distributor", async () => {
    const { rewardPool, token, timelock, distributor } = await loadFixture(deployProtocolFixture);
    expect(await rewardPool.balance()).to.equal(REWARD_SUPPLY);
    expect(await token.balanceOf(await rewardPool.getAddress())).to.equal(REWARD_SUPPLY);
    expect(await rewardPool.distributor()).to.equal(await distributor.getAddress());
    expect(await rewardPool.owner()).to.equal(await timelock.getAddress());
  });

  it("takes its first distributor in the constructor, or none with address zero", async () => {
    const { token, deployer, signers } = await loadFixture(deployProtocolFixture);
    const factory = new RewardPool__factory(deployer);
    const first = await factory.deploy(await token.getAddress(), deployer.address, signers[1].address);
    await expect(first.deploymentTransaction())
      .to.emit(first, "DistributorChanged")
      .withArgs(ethers.ZeroAddress, signers[1].address);
    expect(await first.distributor()).to.equal(signers[1].address);
    const none = await factory.deploy(await token.getAddress(), deployer.address, ethers.ZeroAddress);
    expect(await none.distributor()).to.equal(ethers.ZeroAddress);
  });

  describe("setDistributor", () => {
    it("lets the timelock set the distributor and says who it replaced", async () => {
      const { rewardPool, owner, distributor, stranger, rewardDistributor } = await loadFixture(rewardPoolFixture);
      await expect(rewardPool.connect(owner).setDistributor(distributor.address))
        .to.emit(rewardPool, "DistributorChanged")
        .withArgs(await rewardDistributor.getAddress(), distributor.address);
      expect(await rewardPool.distributor()).to.equal(distributor.address);
      await expect(rewardPool.connect(owner).setDistributor(stranger.address))
        .to.emit(rewardPool, "DistributorChanged")
        .withArgs(distributor.address, stranger.address);
    });

    it("refuses anyone but the timelock, the deployer included", async () => {
      const { rewardPool, deployer, distributor } = await loadFixture(rewardPoolFixture);
      for (const caller of [deployer, distributor]) {
        await expect(rewardPool.connect(caller).setDistributor(caller.address))
          .to.be.revertedWithCustomError(rewardPool, "OwnableUnauthorizedAccount")
          .withArgs(caller.address);
      }
    });
  });

  describe("release", () => {
    it("releases nothing while no distributor is set, not even to the owner", async () => {
      const { rewardPool, owner, stranger } = await loadFixture(withoutDistributorFixture);
      await expect(rewardPool.connect(owner).release(owner.address, 1n))
        .to.be.revertedWithCustomError(rewardPool, "RewardPoolNotDistributor")
        .withArgs(owner.address);
      await expect(rewardPool.connect(stranger).release(stranger.address, 1n))
        .to.be.revertedWithCustomError(rewardPool, "RewardPoolNotDistributor")
        .withArgs(stranger.address);
    });

    it("sends tokens to the recipient when the distributor asks", async () => {
      const { rewardPool, token, distributor, recipient } = await loadFixture(withDistributorFixture);
      const tx = rewardPool.connect(distributor).release(recipient.address, 1_234n * TOKEN);
      await expect(tx)
        .to.emit(rewardPool, "Released")
        .withArgs(recipient.address, 1_234n * TOKEN);
      await expect(tx).to.changeTokenBalances(token, [rewardPool, recipient], [-1_234n * TOKEN, 1_234n * TOKEN]);
      expect(await rewardPool.balance()).to.equal(REWARD_SUPPLY - 1_234n * TOKEN);
    });

    it("refuses every caller but the distributor, the owner included", async () => {
      const { rewardPool, owner, deployer, stranger } = await loadFixture(withDistributorFixture);
      for (const caller of [owner, deployer, stranger]) {
        await expect(rewardPool.connect(caller).release(caller.address, 1n))
          .to.be.revertedWithCustomError(rewardPool, "RewardPoolNotDistributor")
          .withArgs(caller.address);
      }
    });

    it("stops a replaced distributor from releasing", async () => {
      const { rewardPool, owner, distributor, stranger } = await loadFixture(withDistributorFixture);
      await rewardPool.connect(owner).setDistributor(stranger.address);
      await expect(rewardPool.connect(distributor).release(distributor.address, 1n))
        .to.be.revertedWithCustomError(rewardPool, "RewardPoolNotDistributor")
        .withArgs(distributor.address);
      await expect(rewardPool.connect(stranger).release(stranger.address, 1n)).not.to.be.reverted;
    });

    it("cannot release more than the pool holds", async () => {
      const { rewardPool, token, distributor, recipient } = await loadFixture(withDistributorFixture);
      const pool = await rewardPool.getAddress();
      await expect(rewardPool.connect(distributor).release(recipient.address, REWARD_SUPPLY + 1n))
        .to.be.revertedWithCustomError(token, "ERC20InsufficientBalance")
        .withArgs(pool, REWARD_SUPPLY, REWARD_SUPPLY + 1n);
      await expect(rewardPool.connect(distributor).release(recipient.address, REWARD_SUPPLY)).to.changeTokenBalance(
        token,
        recipient,
        REWARD_SUPPLY,
      );
      expect(await rewardPool.balance()).to.equal(0n);
    });
  });
});
