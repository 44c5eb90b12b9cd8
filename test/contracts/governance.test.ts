import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, mine, setBalance, time } from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { deployProtocolFixture } from "../fixtures/protocol";
import { LOCAL_PARAMETERS, localDeployOptions } from "../../scripts/lib/deploy";
import { NodeRole, TOKEN, parameterIndex } from "../../sdk/chain/protocol";

/** `IGovernor.ProposalState`. */
enum ProposalState {
  Pending,
  Active,
  Canceled,
  Defeated,
  Succeeded,
  Queued,
  Expired,
  Executed,
}

/** `GovernorCountingSimple.VoteType`. */
const FOR = 1;

/** `TimelockController.OperationState.Ready` as the bitmap its errors carry. */
const TIMELOCK_READY = ethers.toBeHex(1n << 2n, 32);

const OPTIONS = localDeployOptions(ethers.ZeroAddress);
const UNBONDING_PERIOD = parameterIndex("UnbondingPeriod");
const MAX_UNBONDING_PERIOD = 90n * 24n * 3600n;

const HOLDER_TOKENS = 30_000_000n * TOKEN;
const OPERATOR_TOKENS = 20_000_000n * TOKEN;
const OPERATOR_STAKE = 15_000_000n * TOKEN;
const SMALL_HOLDER_TOKENS = 1_000_000n * TOKEN;
/** 4% of the one billion supply. */
const QUORUM = 40_000_000n * TOKEN;

/**
 * The deployed protocol with voters: a holder with 30M self-delegated tokens, an edge operator with 20M of which 15M
 * are staked in its node (the other 5M self-delegated), and a small holder with 1M. The deployer keeps the rest of its
 * allocation undelegated, so it carries no votes. Holder + operator (50M) reach the 40M quorum only because the
 * operator's stake votes: their token votes alone are 35M.
 */
async function governanceFixture() {
  const protocol = await deployProtocolFixture();
  const { token, registry, deployer, signers } = protocol;
  const [, operator, holder, smallHolder, recipient, outsider] = signers;

  await token.connect(deployer).transfer(holder.address, HOLDER_TOKENS);
  await token.connect(deployer).transfer(operator.address, OPERATOR_TOKENS);
  await token.connect(deployer).transfer(smallHolder.address, SMALL_HOLDER_TOKENS);
  for (const voter of [holder, operator, smallHolder]) await token.connect(voter).delegate(voter.address);

  await token.connect(operator).approve(await registry.getAddress(), OPERATOR_STAKE);
  await registry
    .connect(operator)
    .register(
      NodeRole.Edge,
      "12D3KooWGovernanceTestEdgeNode",
      ["/ip4/127.0.0.1/tcp/4001"],
      operator.address,
      0,
      OPERATOR_STAKE,
    );
  await mine();
  return { ...protocol, operator, holder, smallHolder, recipient, outsider };
}

type Fixture = Awaited<ReturnType<typeof governanceFixture>>;

/** One proposal's actions and description, in the form propose/queue/execute take them. */
interface Proposal {
  targets: string[];
  values: bigint[];
  calldatas: string[];
  description: string;
}

function descriptionHash(p: Proposal) {
  return ethers.id(p.description);
}

async function proposalId({ governor }: Fixture, p: Proposal) {
  return governor.hashProposal(p.targets, p.values, p.calldatas, descriptionHash(p));
}

async function setUnbondingPeriod({ parameters }: Fixture, value: bigint, description: string): Promise<Proposal> {
  return {
    targets: [await parameters.getAddress()],
    values: [0n],
    calldatas: [parameters.interface.encodeFunctionData("setParameter", [UNBONDING_PERIOD, value])],
    description,
  };
}

/** Proposes `p` and mines until its vote is open; returns its id and snapshot block. */
async function proposeAndOpen(f: Fixture, proposer: HardhatEthersSigner, p: Proposal) {
  await f.governor.connect(proposer).propose(p.targets, p.values, p.calldatas, p.description);
  const id = await proposalId(f, p);
  await mine(OPTIONS.votingDelay + 1);
  return { id, snapshot: await f.governor.proposalSnapshot(id) };
}

/** Mines until the vote of `id` has closed. */
async function closeVote({ governor }: Fixture, id: bigint) {
  const deadline = await governor.proposalDeadline(id);
  await mine(deadline - BigInt(await ethers.provider.getBlockNumber()) + 1n);
}

/** Takes `p` through a vote the holder and the operator pass, queues it and waits out the timelock delay. */
async function passAndQueue(f: Fixture, p: Proposal) {
  const { id } = await proposeAndOpen(f, f.holder, p);
  await f.governor.connect(f.holder).castVote(id, FOR);
  await f.governor.connect(f.operator).castVote(id, FOR);
  await closeVote(f, id);
  await f.governor.queue(p.targets, p.values, p.calldatas, descriptionHash(p));
  await time.increase(OPTIONS.timelockDelay + 1);
  return id;
}

describe("governance", () => {
  describe("a full proposal run", () => {
    it("changes a parameter through propose, a vote in which bonded stake counts, queue and execute", async () => {
      const f = await loadFixture(governanceFixture);
      const { governor, parameters, timelock, token, registry, holder, operator } = f;
      const newPeriod = 7_200n;
      const p = await setUnbondingPeriod(f, newPeriod, "Unbonding period: two hours");
      expect(await parameters.get(UNBONDING_PERIOD)).to.equal(LOCAL_PARAMETERS.UnbondingPeriod);

      // Propose: pending for the voting delay.
      await expect(governor.connect(holder).propose(p.targets, p.values, p.calldatas, p.description)).to.emit(
        governor,
        "ProposalCreated",
      );
      const id = await proposalId(f, p);
      expect(await governor.state(id)).to.equal(ProposalState.Pending);
      const snapshot = await governor.proposalSnapshot(id);
      expect(snapshot).to.equal(BigInt(await ethers.provider.getBlockNumber()) + BigInt(OPTIONS.votingDelay));

      await mine(OPTIONS.votingDelay + 1);
      expect(await governor.state(id)).to.equal(ProposalState.Active);

      // The operator's weight is its token votes plus its bonded stake, both at the snapshot.
      const tokenVotes = await token.getPastVotes(operator.address, snapshot);
      expect(tokenVotes).to.equal(OPERATOR_TOKENS - OPERATOR_STAKE);
      expect(await registry.getPastVotes(operator.address, snapshot)).to.equal(OPERATOR_STAKE);
      expect(await governor.getVotes(operator.address, snapshot)).to.equal(tokenVotes + OPERATOR_STAKE);
      expect(await governor.getVotes(holder.address, snapshot)).to.equal(HOLDER_TOKENS);

      await expect(governor.connect(holder).castVote(id, FOR))
        .to.emit(governor, "VoteCast")
        .withArgs(holder.address, id, FOR, HOLDER_TOKENS, "");
      await expect(governor.connect(operator).castVote(id, FOR))
        .to.emit(governor, "VoteCast")
        .withArgs(operator.address, id, FOR, OPERATOR_TOKENS, "");

      // Quorum is met only thanks to the stake: token votes alone (30M + 5M) fall short of 40M.
      const [against, forVotes, abstain] = await governor.proposalVotes(id);
      expect([against, forVotes, abstain]).to.deep.equal([0n, HOLDER_TOKENS + OPERATOR_TOKENS, 0n]);
      expect(await governor.quorum(snapshot)).to.equal(QUORUM);
      expect(HOLDER_TOKENS + tokenVotes).to.be.lessThan(QUORUM);

      await closeVote(f, id);
      expect(await governor.state(id)).to.equal(ProposalState.Succeeded);

      // Queue: the operation waits in the timelock for its delay.
      await expect(governor.queue(p.targets, p.values, p.calldatas, descriptionHash(p))).to.emit(
        governor,
        "ProposalQueued",
      );
      expect(await governor.state(id)).to.equal(ProposalState.Queued);
      const salt = ethers.toBeHex((BigInt(await governor.getAddress()) << 96n) ^ BigInt(descriptionHash(p)), 32);
      const operationId = await timelock.hashOperationBatch(p.targets, p.values, p.calldatas, ethers.ZeroHash, salt);
      expect(await timelock.isOperationPending(operationId)).to.equal(true);
      await expect(governor.execute(p.targets, p.values, p.calldatas, descriptionHash(p)))
        .to.be.revertedWithCustomError(timelock, "TimelockUnexpectedOperationState")
        .withArgs(operationId, TIMELOCK_READY);

      await time.increase(OPTIONS.timelockDelay + 1);
      await expect(governor.execute(p.targets, p.values, p.calldatas, descriptionHash(p)))
        .to.emit(parameters, "ParameterChanged")
        .withArgs(UNBONDING_PERIOD, LOCAL_PARAMETERS.UnbondingPeriod, newPeriod)
        .and.to.emit(governor, "ProposalExecuted")
        .withArgs(id);
      expect(await governor.state(id)).to.equal(ProposalState.Executed);
      expect(await timelock.isOperationDone(operationId)).to.equal(true);
      expect(await parameters.get(UNBONDING_PERIOD)).to.equal(newPeriod);
    });

    it("passes a vote on an out-of-bounds value but cannot execute it: the parameters' error comes back", async () => {
      const f = await loadFixture(governanceFixture);
      const { governor, parameters } = f;
      const tooLong = MAX_UNBONDING_PERIOD + 1n;
      const p = await setUnbondingPeriod(f, tooLong, "Unbonding period: ninety days and a second");
      const id = await passAndQueue(f, p);
      expect(await governor.state(id)).to.equal(ProposalState.Queued);

      await expect(governor.execute(p.targets, p.values, p.calldatas, descriptionHash(p)))
        .to.be.revertedWithCustomError(parameters, "ParametersOutOfBounds")
        .withArgs(UNBONDING_PERIOD, tooLong, 60n, MAX_UNBONDING_PERIOD);
      expect(await governor.state(id)).to.equal(ProposalState.Queued);
      expect(await parameters.get(UNBONDING_PERIOD)).to.equal(LOCAL_PARAMETERS.UnbondingPeriod);
    });

    it("defeats a proposal whose votes do not reach quorum, even when all of them are for it", async () => {
      const f = await loadFixture(governanceFixture);
      const { governor, smallHolder } = f;
      const p = await setUnbondingPeriod(f, 600n, "Unbonding period: ten minutes");
      const { id, snapshot } = await proposeAndOpen(f, smallHolder, p);
      await governor.connect(smallHolder).castVote(id, FOR);
      expect((await governor.proposalVotes(id))[1]).to.equal(SMALL_HOLDER_TOKENS);
      expect(SMALL_HOLDER_TOKENS).to.be.lessThan(await governor.quorum(snapshot));
      await closeVote(f, id);

      expect(await governor.state(id)).to.equal(ProposalState.Defeated);
      await expect(governor.queue(p.targets, p.values, p.calldatas, descriptionHash(p)))
        .to.be.revertedWithCustomError(governor, "GovernorUnexpectedProposalState")
        .withArgs(id, ProposalState.Defeated, ethers.toBeHex(1n << BigInt(ProposalState.Succeeded), 32));
    });
  });

  describe("voting weight", () => {
    it("counts staked tokens once: for the staker through the registry, never as the registry's own token votes", async () => {
      const { governor, token, registry } = await loadFixture(governanceFixture);
      const block = BigInt(await ethers.provider.getBlockNumber()) - 1n;
      expect(await token.balanceOf(await registry.getAddress())).to.equal(OPERATOR_STAKE);
      expect(await governor.getVotes(await registry.getAddress(), block)).to.equal(0n);
    });

    it("gives a delegator's bonded stake to the delegator, and takes it away while it unbonds", async () => {
      const { governor, token, registry, deployer, operator, outsider } = await loadFixture(governanceFixture);
      const amount = 1_000n * TOKEN;
      await token.connect(deployer).transfer(outsider.address, amount);
      await token.connect(outsider).delegate(outsider.address);
      const beforeBond = await ethers.provider.getBlockNumber();
      await token.connect(outsider).approve(await registry.getAddress(), amount);
      await registry.connect(outsider).delegate(operator.address, amount);
      const bonded = await ethers.provider.getBlockNumber();
      await registry.connect(outsider).unbond(operator.address, 400n * TOKEN);
      const unbonding = await ethers.provider.getBlockNumber();
      await mine();

      expect(await governor.getVotes(outsider.address, beforeBond)).to.equal(amount); // as tokens
      expect(await governor.getVotes(outsider.address, bonded)).to.equal(amount); // as stake
      expect(await governor.getVotes(outsider.address, unbonding)).to.equal(600n * TOKEN);
      expect(await governor.getVotes(operator.address, unbonding)).to.equal(OPERATOR_TOKENS);
    });
  });

  describe("the timelock", () => {
    it("leaves the deployer no role; the governor proposes and cancels, anyone executes", async () => {
      const { timelock, governor, deployer } = await loadFixture(governanceFixture);
      const roles = {
        admin: await timelock.DEFAULT_ADMIN_ROLE(),
        proposer: await timelock.PROPOSER_ROLE(),
        canceller: await timelock.CANCELLER_ROLE(),
        executor: await timelock.EXECUTOR_ROLE(),
      };
      for (const [name, role] of Object.entries(roles)) {
        expect(await timelock.hasRole(role, deployer.address), name).to.equal(false);
      }
      const governorAddress = await governor.getAddress();
      expect(await timelock.hasRole(roles.proposer, governorAddress)).to.equal(true);
      expect(await timelock.hasRole(roles.canceller, governorAddress)).to.equal(true);
      expect(await timelock.hasRole(roles.admin, governorAddress)).to.equal(false);
      expect(await timelock.hasRole(roles.executor, ethers.ZeroAddress)).to.equal(true);
      expect(await timelock.hasRole(roles.admin, await timelock.getAddress())).to.equal(true);
      expect(await timelock.getMinDelay()).to.equal(BigInt(OPTIONS.timelockDelay));
      expect(await governor.timelock()).to.equal(await timelock.getAddress());
    });

    it("lets only the governor queue an operation", async () => {
      const { timelock, governor, parameters, deployer, operator } = await loadFixture(governanceFixture);
      const target = await parameters.getAddress();
      const data = parameters.interface.encodeFunctionData("setParameter", [UNBONDING_PERIOD, 600n]);
      const proposer = await timelock.PROPOSER_ROLE();
      for (const caller of [deployer, operator]) {
        await expect(timelock.connect(caller).schedule(target, 0, data, ethers.ZeroHash, ethers.ZeroHash, 3600))
          .to.be.revertedWithCustomError(timelock, "AccessControlUnauthorizedAccount")
          .withArgs(caller.address, proposer);
      }

      const governorAddress = await governor.getAddress();
      await setBalance(governorAddress, 10n ** 18n);
      const asGovernor = await ethers.getImpersonatedSigner(governorAddress);
      const id = await timelock.hashOperation(target, 0, data, ethers.ZeroHash, ethers.ZeroHash);
      await expect(timelock.connect(asGovernor).schedule(target, 0, data, ethers.ZeroHash, ethers.ZeroHash, 3600))
        .to.emit(timelock, "CallScheduled")
        .withArgs(id, 0, target, 0, data, ethers.ZeroHash, 3600);
    });

    it("refuses a timelock delay shorter than its minimum, even from the governor", async () => {
      const { timelock, governor } = await loadFixture(governanceFixture);
      const governorAddress = await governor.getAddress();
      await setBalance(governorAddress, 10n ** 18n);
      const asGovernor = await ethers.getImpersonatedSigner(governorAddress);
      const delay = OPTIONS.timelockDelay - 1;
      await expect(
        timelock.connect(asGovernor).schedule(governorAddress, 0, "0x", ethers.ZeroHash, ethers.ZeroHash, delay),
      )
        .to.be.revertedWithCustomError(timelock, "TimelockInsufficientDelay")
        .withArgs(delay, OPTIONS.timelockDelay);
    });
  });

  describe("the treasury", () => {
    it("holds the treasury supply in the timelock, out of reach of a direct transfer or an unscheduled execute", async () => {
      const { token, timelock, deployer, recipient } = await loadFixture(governanceFixture);
      const treasury = await timelock.getAddress();
      expect(await token.balanceOf(treasury)).to.equal(OPTIONS.treasurySupply);

      await expect(token.connect(deployer).transferFrom(treasury, deployer.address, 1n))
        .to.be.revertedWithCustomError(token, "ERC20InsufficientAllowance")
        .withArgs(deployer.address, 0n, 1n);

      // Executing is open to anyone, but only for an operation the governor queued and whose delay has passed.
      const target = await token.getAddress();
      const data = token.interface.encodeFunctionData("transfer", [recipient.address, 1n]);
      const id = await timelock.hashOperation(target, 0, data, ethers.ZeroHash, ethers.ZeroHash);
      await expect(timelock.connect(recipient).execute(target, 0, data, ethers.ZeroHash, ethers.ZeroHash))
        .to.be.revertedWithCustomError(timelock, "TimelockUnexpectedOperationState")
        .withArgs(id, TIMELOCK_READY);
    });

    it("pays out treasury tokens when a proposal to do so executes", async () => {
      const f = await loadFixture(governanceFixture);
      const { governor, token, timelock, recipient } = f;
      const grant = 1_000_000n * TOKEN;
      const p: Proposal = {
        targets: [await token.getAddress()],
        values: [0n],
        calldatas: [token.interface.encodeFunctionData("transfer", [recipient.address, grant])],
        description: "Grant: one million SEND to the recipient",
      };
      const id = await passAndQueue(f, p);
      await expect(governor.execute(p.targets, p.values, p.calldatas, descriptionHash(p))).to.changeTokenBalances(
        token,
        [timelock, recipient],
        [-grant, grant],
      );
      expect(await governor.state(id)).to.equal(ProposalState.Executed);
    });
  });
});
