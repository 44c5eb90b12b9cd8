import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, mine, time } from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { deployProtocolFixture } from "../fixtures/protocol";
import { TOKEN } from "../../sdk/chain/protocol";
import { SendToken__factory, type SendToken } from "../../typechain-types";

const SUPPLY = 1_000_000_000n * TOKEN;

/** Signs an EIP-2612 permit with `owner`'s key. */
async function signPermit(
  token: SendToken,
  owner: HardhatEthersSigner,
  spender: string,
  value: bigint,
  deadline: bigint,
  nonce?: bigint,
) {
  const domain = await token.eip712Domain();
  const typedDomain = {
    name: domain.name,
    version: domain.version,
    chainId: domain.chainId,
    verifyingContract: domain.verifyingContract,
  };
  const types = {
    Permit: [
      { name: "owner", type: "address" },
      { name: "spender", type: "address" },
      { name: "value", type: "uint256" },
      { name: "nonce", type: "uint256" },
      { name: "deadline", type: "uint256" },
    ],
  };
  const message = {
    owner: owner.address,
    spender,
    value,
    nonce: nonce ?? (await token.nonces(owner.address)),
    deadline,
  };
  const signature = ethers.Signature.from(await owner.signTypedData(typedDomain, types, message));
  return { signature, typedDomain, types, message };
}

describe("SendToken", () => {
  describe("supply", () => {
    it("mints one billion SEND at deploy: 500M to the treasury, 300M to the reward pool, 200M to the deployer", async () => {
      const { token, timelock, rewardPool, deployer } = await loadFixture(deployProtocolFixture);
      expect(await token.name()).to.equal("Sending Network");
      expect(await token.symbol()).to.equal("SEND");
      expect(await token.decimals()).to.equal(18n);
      expect(await token.totalSupply()).to.equal(SUPPLY);
      expect(await token.balanceOf(await timelock.getAddress())).to.equal(500_000_000n * TOKEN);
      expect(await token.balanceOf(await rewardPool.getAddress())).to.equal(300_000_000n * TOKEN);
      expect(await token.balanceOf(deployer.address)).to.equal(200_000_000n * TOKEN);
    });

    it("has no mint function, so the supply cannot grow", async () => {
      const { token } = await loadFixture(deployProtocolFixture);
      const functions: string[] = [];
      token.interface.forEachFunction((f) => functions.push(f.name));
      expect(functions).to.include("transfer"); // the walk over the ABI did see the functions
      expect(functions.filter((name) => /mint/i.test(name))).to.deep.equal([]);
    });

    it("refuses to deploy with recipient and amount lists of different lengths", async () => {
      const { deployer, signers } = await loadFixture(deployProtocolFixture);
      const factory = new SendToken__factory(deployer);
      await expect(factory.deploy([signers[1].address, signers[2].address], [1n]))
        .to.be.revertedWithCustomError(factory, "TokenMintListMismatch")
        .withArgs(2, 1);
      await expect(factory.deploy([signers[1].address], [1n, 2n]))
        .to.be.revertedWithCustomError(factory, "TokenMintListMismatch")
        .withArgs(1, 2);
    });
  });

  describe("permit", () => {
    it("lets a spender move tokens on the owner's signature alone", async () => {
      const { token, deployer, signers } = await loadFixture(deployProtocolFixture);
      const [owner, spender, recipient] = [signers[1], signers[2], signers[3]];
      await token.connect(deployer).transfer(owner.address, 1_000n * TOKEN);
      const deadline = BigInt(await time.latest()) + 3600n;
      const { signature } = await signPermit(token, owner, spender.address, 400n * TOKEN, deadline);

      // The spender submits the permit and pays the gas: the owner never sends a transaction.
      await expect(
        token
          .connect(spender)
          .permit(owner.address, spender.address, 400n * TOKEN, deadline, signature.v, signature.r, signature.s),
      )
        .to.emit(token, "Approval")
        .withArgs(owner.address, spender.address, 400n * TOKEN);
      expect(await token.allowance(owner.address, spender.address)).to.equal(400n * TOKEN);
      expect(await token.nonces(owner.address)).to.equal(1n);

      await expect(
        token.connect(spender).transferFrom(owner.address, recipient.address, 400n * TOKEN),
      ).to.changeTokenBalances(token, [owner, recipient], [-400n * TOKEN, 400n * TOKEN]);
      expect(await token.allowance(owner.address, spender.address)).to.equal(0n);
    });

    it("refuses a permit replayed after its nonce was used", async () => {
      const { token, signers } = await loadFixture(deployProtocolFixture);
      const [owner, spender] = [signers[1], signers[2]];
      const deadline = BigInt(await time.latest()) + 3600n;
      const { signature, typedDomain, types, message } = await signPermit(token, owner, spender.address, 5n, deadline);
      const { v, r, s } = signature;
      await token.permit(owner.address, spender.address, 5n, deadline, v, r, s);

      // Checked against nonce 1 now, the same signature recovers to some other address.
      const recovered = ethers.verifyTypedData(typedDomain, types, { ...message, nonce: 1n }, signature);
      await expect(token.permit(owner.address, spender.address, 5n, deadline, v, r, s))
        .to.be.revertedWithCustomError(token, "ERC2612InvalidSigner")
        .withArgs(recovered, owner.address);
    });

    it("refuses a permit signed by someone other than the owner", async () => {
      const { token, signers } = await loadFixture(deployProtocolFixture);
      const [owner, spender, forger] = [signers[1], signers[2], signers[4]];
      const deadline = BigInt(await time.latest()) + 3600n;
      const { signature, typedDomain, types } = await signPermit(token, forger, spender.address, 5n, deadline, 0n);
      const message = { owner: owner.address, spender: spender.address, value: 5n, nonce: 0n, deadline };
      const recovered = ethers.verifyTypedData(typedDomain, types, message, signature);
      await expect(token.permit(owner.address, spender.address, 5n, deadline, signature.v, signature.r, signature.s))
        .to.be.revertedWithCustomError(token, "ERC2612InvalidSigner")
        .withArgs(recovered, owner.address);
    });

    it("refuses a permit past its deadline", async () => {
      const { token, signers } = await loadFixture(deployProtocolFixture);
      const [owner, spender] = [signers[1], signers[2]];
      const deadline = BigInt(await time.latest()) + 60n;
      const { signature } = await signPermit(token, owner, spender.address, 5n, deadline);
      await time.increaseTo(deadline + 1n);
      await expect(token.permit(owner.address, spender.address, 5n, deadline, signature.v, signature.r, signature.s))
        .to.be.revertedWithCustomError(token, "ERC2612ExpiredSignature")
        .withArgs(deadline);
    });
  });

  describe("votes", () => {
    it("counts block numbers as its clock", async () => {
      const { token } = await loadFixture(deployProtocolFixture);
      expect(await token.CLOCK_MODE()).to.equal("mode=blocknumber&from=default");
      expect(await token.clock()).to.equal(await ethers.provider.getBlockNumber());
    });

    it("gives a holder no votes until it delegates, then its whole balance", async () => {
      const { token, deployer, signers } = await loadFixture(deployProtocolFixture);
      const holder = signers[1];
      await token.connect(deployer).transfer(holder.address, 700n * TOKEN);
      expect(await token.getVotes(holder.address)).to.equal(0n);
      expect(await token.delegates(holder.address)).to.equal(ethers.ZeroAddress);

      await expect(token.connect(holder).delegate(holder.address))
        .to.emit(token, "DelegateChanged")
        .withArgs(holder.address, ethers.ZeroAddress, holder.address)
        .and.to.emit(token, "DelegateVotesChanged")
        .withArgs(holder.address, 0n, 700n * TOKEN);
      expect(await token.delegates(holder.address)).to.equal(holder.address);
      expect(await token.getVotes(holder.address)).to.equal(700n * TOKEN);
    });

    it("keeps a checkpoint per block so past votes read as they were", async () => {
      const { token, deployer, signers } = await loadFixture(deployProtocolFixture);
      const [holder, other] = [signers[1], signers[2]];
      await token.connect(deployer).transfer(holder.address, 1_000n * TOKEN);
      await token.connect(holder).delegate(holder.address);
      const afterDelegate = await ethers.provider.getBlockNumber();
      await mine(3);
      await token.connect(holder).transfer(other.address, 250n * TOKEN);
      const afterTransfer = await ethers.provider.getBlockNumber();
      await token.connect(deployer).transfer(holder.address, 50n * TOKEN);
      const afterTopUp = await ethers.provider.getBlockNumber();
      await mine();

      expect(await token.numCheckpoints(holder.address)).to.equal(3n);
      expect(await token.getPastVotes(holder.address, afterDelegate - 1)).to.equal(0n);
      expect(await token.getPastVotes(holder.address, afterDelegate)).to.equal(1_000n * TOKEN);
      expect(await token.getPastVotes(holder.address, afterDelegate + 2)).to.equal(1_000n * TOKEN);
      expect(await token.getPastVotes(holder.address, afterTransfer)).to.equal(750n * TOKEN);
      expect(await token.getPastVotes(holder.address, afterTopUp)).to.equal(800n * TOKEN);
      expect(await token.getVotes(holder.address)).to.equal(800n * TOKEN);
      // The recipient never delegated, so the tokens it received carry no votes.
      expect(await token.getPastVotes(other.address, afterTransfer)).to.equal(0n);
      expect(await token.getPastTotalSupply(afterTransfer)).to.equal(SUPPLY);
    });

    it("moves votes to a delegate chosen by the holder", async () => {
      const { token, deployer, signers } = await loadFixture(deployProtocolFixture);
      const [holder, delegatee] = [signers[1], signers[2]];
      await token.connect(deployer).transfer(holder.address, 300n * TOKEN);
      await token.connect(holder).delegate(holder.address);
      await token.connect(holder).delegate(delegatee.address);
      expect(await token.getVotes(holder.address)).to.equal(0n);
      expect(await token.getVotes(delegatee.address)).to.equal(300n * TOKEN);
    });

    it("refuses to read votes at a block not yet mined", async () => {
      const { token, deployer } = await loadFixture(deployProtocolFixture);
      const clock = await token.clock();
      await expect(token.getPastVotes(deployer.address, clock))
        .to.be.revertedWithCustomError(token, "ERC5805FutureLookup")
        .withArgs(clock, clock);
    });
  });
});
