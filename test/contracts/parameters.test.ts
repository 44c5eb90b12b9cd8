import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, setBalance, time } from "@nomicfoundation/hardhat-network-helpers";
import { deployProtocolFixture } from "../fixtures/protocol";
import { LOCAL_PARAMETERS } from "../../scripts/lib/deploy";
import { NodeRole, PARAMETERS, TOKEN, parameterIndex, type ParameterName } from "../../sdk/chain/protocol";
import { ProtocolParameters__factory } from "../../typechain-types";

const MINUTE = 60n;
const DAY = 24n * 3600n;

/**
 * The hard-coded bounds and defaults of every parameter, written out here so that a change to any of them in the
 * contract has to be made twice, on purpose.
 */
const SPEC: Record<ParameterName, { min: bigint; max: bigint; default: bigint }> = {
  MinStakeEdge: { min: 1n * TOKEN, max: 10_000_000n * TOKEN, default: 10_000n * TOKEN },
  MinStakeWatchdog: { min: 1n * TOKEN, max: 10_000_000n * TOKEN, default: 5_000n * TOKEN },
  MinStakeGuardian: { min: 1n * TOKEN, max: 10_000_000n * TOKEN, default: 50_000n * TOKEN },
  UnbondingPeriod: { min: MINUTE, max: 90n * DAY, default: 14n * DAY },
  EpochLength: { min: MINUTE, max: 30n * DAY, default: 1n * DAY },
  CommissionCapBps: { min: 0n, max: 5_000n, default: 2_000n },
  SlashStorageBps: { min: 1n, max: 5_000n, default: 500n },
  SlashEquivocationBps: { min: 1n, max: 5_000n, default: 1_000n },
  SlashVotedBps: { min: 1n, max: 5_000n, default: 1_000n },
  EmissionPerEpoch: { min: 0n, max: 10_000_000n * TOKEN, default: 100_000n * TOKEN },
  ChallengeWindow: { min: MINUTE, max: 14n * DAY, default: 1n * DAY },
  ReviewWindow: { min: MINUTE, max: 14n * DAY, default: 2n * DAY },
  SettlementWindow: { min: 2n * MINUTE, max: 30n * DAY, default: 2n * DAY },
  ForcedInclusionDelay: { min: MINUTE, max: 14n * DAY, default: 1n * DAY },
  DidDeposit: { min: 0n, max: 10_000n * TOKEN, default: 10n * TOKEN },
  DidRefundDelay: { min: 0n, max: 90n * DAY, default: 7n * DAY },
  JailPeriod: { min: MINUTE, max: 365n * DAY, default: 7n * DAY },
  QualityQuorum: { min: 1n, max: 32n, default: 3n },
  DefaultQualityBps: { min: 0n, max: 10_000n, default: 5_000n },
  ScoreBandBps: { min: 0n, max: 10_000n, default: 1_000n },
  ChallengeBond: { min: 1n * TOKEN, max: 100_000n * TOKEN, default: 100n * TOKEN },
  FlagStake: { min: 1n * TOKEN, max: 1_000_000n * TOKEN, default: 1_000n * TOKEN },
  ReviewerCount: { min: 1n, max: 21n, default: 5n },
  FlagProtectionPeriod: { min: MINUTE, max: 90n * DAY, default: 7n * DAY },
  FlaggerRewardBps: { min: 0n, max: 5_000n, default: 1_000n },
  ReviewerRewardBps: { min: 0n, max: 5_000n, default: 1_000n },
  ChallengerRewardBps: { min: 0n, max: 5_000n, default: 2_000n },
  DeliveryThresholdBps: { min: 0n, max: 10_000n, default: 8_000n },
};

const EPOCH_LENGTH = parameterIndex("EpochLength");

/** The deployed protocol plus a signer that acts as the timelock (the owner of the parameters). */
async function parametersFixture() {
  const protocol = await deployProtocolFixture();
  const timelockAddress = await protocol.timelock.getAddress();
  await setBalance(timelockAddress, 10n ** 20n);
  const owner = await ethers.getImpersonatedSigner(timelockAddress);
  return { ...protocol, owner, asOwner: protocol.parameters.connect(owner) };
}

describe("ProtocolParameters", () => {
  describe("the parameter list", () => {
    it("has a bounds entry for every name in the SDK's PARAMETERS list, equal to the spec", async () => {
      const { parameters } = await loadFixture(parametersFixture);
      for (const [i, name] of PARAMETERS.entries()) {
        const [min, max] = await parameters.bounds(i);
        expect([min, max], name).to.deep.equal([SPEC[name].min, SPEC[name].max]);
      }
    });

    it("has exactly PARAMETERS.length entries in the enum: one past the last is not a parameter", async () => {
      const { parameters } = await loadFixture(parametersFixture);
      await expect(parameters.bounds(PARAMETERS.length)).to.be.reverted;
      await expect(parameters.get(PARAMETERS.length)).to.be.reverted;
      await expect(parameters.get(PARAMETERS.length - 1)).not.to.be.reverted;
    });
  });

  describe("values after deploy", () => {
    it("holds the local overrides where the deploy sets them and the contract defaults elsewhere", async () => {
      const { parameters } = await loadFixture(parametersFixture);
      for (const [i, name] of PARAMETERS.entries()) {
        expect(await parameters.get(i), name).to.equal(LOCAL_PARAMETERS[name] ?? SPEC[name].default);
      }
    });

    it("holds the contract defaults when deployed without initial values", async () => {
      const { deployer, timelock } = await loadFixture(parametersFixture);
      const fresh = await new ProtocolParameters__factory(deployer).deploy(await timelock.getAddress(), 0, []);
      for (const [i, name] of PARAMETERS.entries()) {
        expect(await fresh.get(i), name).to.equal(SPEC[name].default);
      }
      expect(await fresh.rewardSplit()).to.deep.equal([7_000n, 1_500n, 1_500n]);
    });

    it("refuses to deploy with an initial value outside its bounds", async () => {
      const { deployer, timelock } = await loadFixture(parametersFixture);
      const factory = new ProtocolParameters__factory(deployer);
      const owner = await timelock.getAddress();
      const above = SPEC.SlashVotedBps.max + 1n;
      await expect(factory.deploy(owner, 0, [{ parameter: parameterIndex("SlashVotedBps"), value: above }]))
        .to.be.revertedWithCustomError(factory, "ParametersOutOfBounds")
        .withArgs(parameterIndex("SlashVotedBps"), above, SPEC.SlashVotedBps.min, SPEC.SlashVotedBps.max);
      const below = SPEC.EpochLength.min - 1n;
      await expect(factory.deploy(owner, 0, [{ parameter: EPOCH_LENGTH, value: below }]))
        .to.be.revertedWithCustomError(factory, "ParametersOutOfBounds")
        .withArgs(EPOCH_LENGTH, below, SPEC.EpochLength.min, SPEC.EpochLength.max);
    });

    it("refuses a genesis after the deploy block and accepts one in the past", async () => {
      const { deployer, timelock } = await loadFixture(parametersFixture);
      const factory = new ProtocolParameters__factory(deployer);
      const owner = await timelock.getAddress();
      const now = BigInt(await time.latest());
      // The deploy lands in the next block, one second later under Hardhat's automine.
      await time.setNextBlockTimestamp(now + 1n);
      await expect(factory.deploy(owner, now + 100n, []))
        .to.be.revertedWithCustomError(factory, "ParametersGenesisInFuture")
        .withArgs(now + 100n, now + 1n);
      const past = await factory.deploy(owner, now - 1_000n, []);
      expect(await past.genesis()).to.equal(now - 1_000n);
    });

    it("is owned by the timelock", async () => {
      const { parameters, timelock } = await loadFixture(parametersFixture);
      expect(await parameters.owner()).to.equal(await timelock.getAddress());
    });
  });

  /**
   * The forced-inclusion delay must stay below the settlement window: before moving one of them to a bound, move
   * the other out of the way (the delay to its minimum, the window to its maximum).
   */
  async function makeRoomFor(asOwner: Awaited<ReturnType<typeof parametersFixture>>["asOwner"], name: string) {
    if (name === "SettlementWindow")
      await asOwner.setParameter(parameterIndex("ForcedInclusionDelay"), SPEC.ForcedInclusionDelay.min);
    if (name === "ForcedInclusionDelay")
      await asOwner.setParameter(parameterIndex("SettlementWindow"), SPEC.SettlementWindow.max);
  }

  describe("the forced-inclusion delay and the settlement window", () => {
    it("refuses a forced-inclusion delay not shorter than the settlement window, from either side", async () => {
      const { parameters, asOwner } = await loadFixture(parametersFixture);
      const window = await parameters.get(parameterIndex("SettlementWindow"));
      await expect(asOwner.setParameter(parameterIndex("ForcedInclusionDelay"), window))
        .to.be.revertedWithCustomError(parameters, "ParametersForcedInclusionAfterWindow")
        .withArgs(window, window);
      const delay = await parameters.get(parameterIndex("ForcedInclusionDelay"));
      await expect(asOwner.setParameter(parameterIndex("SettlementWindow"), delay))
        .to.be.revertedWithCustomError(parameters, "ParametersForcedInclusionAfterWindow")
        .withArgs(delay, delay);
      await asOwner.setParameter(parameterIndex("ForcedInclusionDelay"), window - 1n);
      expect(await parameters.get(parameterIndex("ForcedInclusionDelay"))).to.equal(window - 1n);
    });

    it("refuses to deploy with a forced-inclusion delay not shorter than the settlement window", async () => {
      const { deployer, timelock } = await loadFixture(parametersFixture);
      const factory = new ProtocolParameters__factory(deployer);
      const values = [
        { parameter: parameterIndex("SettlementWindow"), value: 600n },
        { parameter: parameterIndex("ForcedInclusionDelay"), value: 600n },
      ];
      await expect(factory.deploy(await timelock.getAddress(), 0, values))
        .to.be.revertedWithCustomError(factory, "ParametersForcedInclusionAfterWindow")
        .withArgs(600n, 600n);
    });
  });

  describe("setParameter at the bounds", () => {
    for (const [i, name] of PARAMETERS.entries()) {
      const { min, max } = SPEC[name];
      describe(name, () => {
        it(`accepts exactly the minimum (${min})`, async () => {
          const { parameters, asOwner } = await loadFixture(parametersFixture);
          await makeRoomFor(asOwner, name);
          const old = await parameters.get(i);
          await expect(asOwner.setParameter(i, min)).to.emit(parameters, "ParameterChanged").withArgs(i, old, min);
          expect(await parameters.get(i)).to.equal(min);
        });

        it(`accepts exactly the maximum (${max})`, async () => {
          const { parameters, asOwner } = await loadFixture(parametersFixture);
          await makeRoomFor(asOwner, name);
          const old = await parameters.get(i);
          await expect(asOwner.setParameter(i, max)).to.emit(parameters, "ParameterChanged").withArgs(i, old, max);
          expect(await parameters.get(i)).to.equal(max);
        });

        if (min > 0n) {
          it("refuses one below the minimum", async () => {
            const { parameters, asOwner } = await loadFixture(parametersFixture);
            await expect(asOwner.setParameter(i, min - 1n))
              .to.be.revertedWithCustomError(parameters, "ParametersOutOfBounds")
              .withArgs(i, min - 1n, min, max);
          });
        }

        it("refuses one above the maximum", async () => {
          const { parameters, asOwner } = await loadFixture(parametersFixture);
          const before = await parameters.get(i);
          await expect(asOwner.setParameter(i, max + 1n))
            .to.be.revertedWithCustomError(parameters, "ParametersOutOfBounds")
            .withArgs(i, max + 1n, min, max);
          expect(await parameters.get(i)).to.equal(before);
        });

        it("refuses a caller other than the timelock", async () => {
          const { parameters, deployer } = await loadFixture(parametersFixture);
          await expect(parameters.connect(deployer).setParameter(i, min))
            .to.be.revertedWithCustomError(parameters, "OwnableUnauthorizedAccount")
            .withArgs(deployer.address);
        });
      });
    }
  });

  describe("reward split", () => {
    it("starts at 70% edge, 15% watchdog, 15% guardian", async () => {
      const { parameters } = await loadFixture(parametersFixture);
      expect(await parameters.rewardSplit()).to.deep.equal([7_000n, 1_500n, 1_500n]);
    });

    it("accepts a split that sums to 10,000 bps, including one that gives everything to one role", async () => {
      const { parameters, asOwner } = await loadFixture(parametersFixture);
      await expect(asOwner.setRewardSplit(6_000, 2_500, 1_500))
        .to.emit(parameters, "RewardSplitChanged")
        .withArgs(6_000, 2_500, 1_500);
      expect(await parameters.rewardSplit()).to.deep.equal([6_000n, 2_500n, 1_500n]);
      await expect(asOwner.setRewardSplit(0, 0, 10_000))
        .to.emit(parameters, "RewardSplitChanged")
        .withArgs(0, 0, 10_000);
    });

    it("refuses a split that sums to one bps less or more than 10,000", async () => {
      const { parameters, asOwner } = await loadFixture(parametersFixture);
      await expect(asOwner.setRewardSplit(7_000, 1_500, 1_499))
        .to.be.revertedWithCustomError(parameters, "ParametersRewardSplitNotWhole")
        .withArgs(7_000, 1_500, 1_499);
      await expect(asOwner.setRewardSplit(7_000, 1_500, 1_501))
        .to.be.revertedWithCustomError(parameters, "ParametersRewardSplitNotWhole")
        .withArgs(7_000, 1_500, 1_501);
    });

    it("refuses shares whose uint16 sum would wrap to 10,000", async () => {
      const { parameters, asOwner } = await loadFixture(parametersFixture);
      // 65,535 + 10,001 = 75,536 = 10,000 mod 65,536: a sum in uint16 would accept this split.
      await expect(asOwner.setRewardSplit(65_535, 10_001, 0))
        .to.be.revertedWithCustomError(parameters, "ParametersRewardSplitNotWhole")
        .withArgs(65_535, 10_001, 0);
    });

    it("refuses a caller other than the timelock", async () => {
      const { parameters, signers } = await loadFixture(parametersFixture);
      await expect(parameters.connect(signers[3]).setRewardSplit(10_000, 0, 0))
        .to.be.revertedWithCustomError(parameters, "OwnableUnauthorizedAccount")
        .withArgs(signers[3].address);
    });
  });

  describe("minStake", () => {
    it("gives each role its own minimum stake parameter", async () => {
      const { parameters } = await loadFixture(parametersFixture);
      expect(await parameters.minStake(NodeRole.Edge)).to.equal(LOCAL_PARAMETERS.MinStakeEdge);
      expect(await parameters.minStake(NodeRole.Watchdog)).to.equal(LOCAL_PARAMETERS.MinStakeWatchdog);
      expect(await parameters.minStake(NodeRole.Guardian)).to.equal(LOCAL_PARAMETERS.MinStakeGuardian);
    });

    it("follows a change of the role's parameter and leaves the other roles alone", async () => {
      const { parameters, asOwner } = await loadFixture(parametersFixture);
      await asOwner.setParameter(parameterIndex("MinStakeWatchdog"), 42n * TOKEN);
      expect(await parameters.minStake(NodeRole.Watchdog)).to.equal(42n * TOKEN);
      expect(await parameters.minStake(NodeRole.Edge)).to.equal(LOCAL_PARAMETERS.MinStakeEdge);
      expect(await parameters.minStake(NodeRole.Guardian)).to.equal(LOCAL_PARAMETERS.MinStakeGuardian);
    });

    it("refuses the role None", async () => {
      const { parameters } = await loadFixture(parametersFixture);
      await expect(parameters.minStake(NodeRole.None))
        .to.be.revertedWithCustomError(parameters, "ParametersUnknownRole")
        .withArgs(NodeRole.None);
    });
  });

  describe("epoch clock", () => {
    const LENGTH = LOCAL_PARAMETERS.EpochLength!;

    /** Every epoch from `first` to `last` starts one second after the previous one ends: nothing skipped or repeated. */
    async function expectContiguous(
      parameters: Awaited<ReturnType<typeof parametersFixture>>["parameters"],
      first: bigint,
      last: bigint,
    ) {
      for (let e = first; e <= last; e++) {
        const start = await parameters.epochStart(e);
        expect(await parameters.epochAt(start), `epochAt(epochStart(${e}))`).to.equal(e);
        if (e > 0n) expect(await parameters.epochAt(start - 1n), `epochAt(epochStart(${e}) - 1)`).to.equal(e - 1n);
      }
    }

    /** Moves the chain to the middle of `epoch`. */
    async function enterEpoch(parameters: Awaited<ReturnType<typeof parametersFixture>>["parameters"], epoch: bigint) {
      const start = await parameters.epochStart(epoch);
      const end = await parameters.epochStart(epoch + 1n);
      await time.increaseTo((start + end) / 2n);
    }

    it("begins epoch 0 at the block the parameters were deployed in", async () => {
      const { parameters } = await loadFixture(parametersFixture);
      const receipt = await parameters.deploymentTransaction()!.wait();
      const block = await ethers.provider.getBlock(receipt!.blockNumber);
      expect(await parameters.genesis()).to.equal(block!.timestamp);
      expect(await parameters.epochStart(0)).to.equal(block!.timestamp);
      expect(await parameters.currentEpoch()).to.equal(0n);
    });

    it("advances currentEpoch by one per epoch length of elapsed time", async () => {
      const { parameters } = await loadFixture(parametersFixture);
      const genesis = await parameters.genesis();
      for (const epoch of [1n, 2n, 5n]) {
        await time.increaseTo(genesis + epoch * LENGTH + LENGTH / 2n);
        expect(await parameters.currentEpoch()).to.equal(epoch);
        expect(await parameters.currentEpoch()).to.equal(await parameters.epochAt(await time.latest()));
      }
    });

    it("starts each epoch one epoch length after the previous, and epochAt agrees at every edge", async () => {
      const { parameters } = await loadFixture(parametersFixture);
      const genesis = await parameters.genesis();
      for (let e = 0n; e < 6n; e++) {
        const start = await parameters.epochStart(e);
        expect(start).to.equal(genesis + e * LENGTH);
        expect(await parameters.epochAt(start)).to.equal(e);
        expect(await parameters.epochAt(start + LENGTH - 1n)).to.equal(e);
      }
    });

    it("refuses a timestamp before genesis", async () => {
      const { parameters } = await loadFixture(parametersFixture);
      const genesis = await parameters.genesis();
      await expect(parameters.epochAt(genesis - 1n))
        .to.be.revertedWithCustomError(parameters, "ParametersBeforeGenesis")
        .withArgs(genesis - 1n, genesis);
      await expect(parameters.epochAt(0))
        .to.be.revertedWithCustomError(parameters, "ParametersBeforeGenesis")
        .withArgs(0, genesis);
    });

    it("starts a new epoch length at the next boundary, keeping the current epoch and all past ones", async () => {
      const { parameters, asOwner } = await loadFixture(parametersFixture);
      await enterEpoch(parameters, 3n);
      const before = await Promise.all([0n, 1n, 2n, 3n, 4n].map((e) => parameters.epochStart(e)));

      await expect(asOwner.setParameter(EPOCH_LENGTH, 2n * LENGTH))
        .to.emit(parameters, "EpochScheduleChanged")
        .withArgs(4n, before[4], 2n * LENGTH)
        .and.to.emit(parameters, "ParameterChanged")
        .withArgs(EPOCH_LENGTH, LENGTH, 2n * LENGTH);

      // Epochs up to and including the start of epoch 4 keep their times; epoch 3 (the current one) keeps its length.
      expect(await Promise.all([0n, 1n, 2n, 3n, 4n].map((e) => parameters.epochStart(e)))).to.deep.equal(before);
      expect(await parameters.currentEpoch()).to.equal(3n);
      expect(await parameters.epochAt(before[4] - 1n)).to.equal(3n);
      // From epoch 4 on, epochs last twice as long.
      expect(await parameters.epochStart(5n)).to.equal(before[4] + 2n * LENGTH);
      expect(await parameters.epochAt(before[4] + 2n * LENGTH - 1n)).to.equal(4n);
      expect(await parameters.epochAt(before[4] + 2n * LENGTH)).to.equal(5n);
      await expectContiguous(parameters, 0n, 8n);

      // Living through the boundary: the chain counts 3, 4, 5 with no jump.
      await time.increaseTo(before[4] - 1n);
      expect(await parameters.epochAt(await time.latest())).to.equal(3n);
      await time.increaseTo(before[4] + LENGTH);
      expect(await parameters.currentEpoch()).to.equal(4n); // one old length into epoch 4: still epoch 4
      await time.increaseTo(before[4] + 2n * LENGTH);
      expect(await parameters.currentEpoch()).to.equal(5n);
    });

    it("replaces a pending change when the length changes again before the boundary", async () => {
      const { parameters, asOwner } = await loadFixture(parametersFixture);
      await enterEpoch(parameters, 2n);
      const boundary = await parameters.epochStart(3n);

      await asOwner.setParameter(EPOCH_LENGTH, 2n * LENGTH);
      await expect(asOwner.setParameter(EPOCH_LENGTH, LENGTH / 2n))
        .to.emit(parameters, "EpochScheduleChanged")
        .withArgs(3n, boundary, LENGTH / 2n)
        .and.to.emit(parameters, "ParameterChanged")
        .withArgs(EPOCH_LENGTH, 2n * LENGTH, LENGTH / 2n);

      expect(await parameters.epochStart(3n)).to.equal(boundary);
      expect(await parameters.epochStart(4n)).to.equal(boundary + LENGTH / 2n);
      expect(await parameters.epochStart(10n)).to.equal(boundary + 7n * (LENGTH / 2n));
      await expectContiguous(parameters, 0n, 10n);
    });

    it("schedules a further change from the boundary after the last one has begun", async () => {
      const { parameters, asOwner } = await loadFixture(parametersFixture);
      await enterEpoch(parameters, 1n);
      await asOwner.setParameter(EPOCH_LENGTH, 2n * LENGTH); // epoch 2 on: 2 * LENGTH
      await enterEpoch(parameters, 2n);
      const boundary = await parameters.epochStart(3n);
      expect(boundary).to.equal((await parameters.epochStart(2n)) + 2n * LENGTH);

      await expect(asOwner.setParameter(EPOCH_LENGTH, 3n * LENGTH))
        .to.emit(parameters, "EpochScheduleChanged")
        .withArgs(3n, boundary, 3n * LENGTH);

      const genesis = await parameters.genesis();
      expect(await parameters.epochStart(2n)).to.equal(genesis + 2n * LENGTH);
      expect(await parameters.epochStart(3n)).to.equal(genesis + 4n * LENGTH);
      expect(await parameters.epochStart(4n)).to.equal(genesis + 7n * LENGTH);
      await expectContiguous(parameters, 0n, 8n);
    });

    it("refuses rather than wraps an epoch whose start does not fit in 64 bits", async () => {
      const { parameters } = await loadFixture(parametersFixture);
      const genesis = await parameters.genesis();
      const epoch = 2n ** 64n - 1n;
      await expect(parameters.epochStart(epoch))
        .to.be.revertedWithCustomError(parameters, "SafeCastOverflowedUintDowncast")
        .withArgs(64, genesis + epoch * LENGTH);
      const timestamp = genesis + 2n ** 64n * LENGTH;
      await expect(parameters.epochAt(timestamp))
        .to.be.revertedWithCustomError(parameters, "SafeCastOverflowedUintDowncast")
        .withArgs(64, 2n ** 64n);
    });
  });
});
