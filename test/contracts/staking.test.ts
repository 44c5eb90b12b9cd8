import { expect } from "chai";
import { ethers } from "hardhat";
import { ZeroAddress, type ContractTransactionResponse } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { impersonateAccount, loadFixture, mine, setBalance, time } from "@nomicfoundation/hardhat-network-helpers";
import { deployProtocolFixture } from "../fixtures/protocol";
import type { INodeRegistry } from "../../typechain-types/contracts/staking/NodeRegistry";
import { NodeRole, parameterIndex, TOKEN } from "../../sdk/chain/protocol";
import { StakeHookProbe__factory } from "../../typechain-types";

/** Tokens each test actor receives from the deployer's genesis allocation. */
const FUNDING = 100_000n * TOKEN;
/** LOCAL_PARAMETERS in scripts/lib/deploy.ts; a test below checks the deployed values against them. */
const MIN_EDGE = 1_000n * TOKEN;
const MIN_WATCHDOG = 500n * TOKEN;
const MIN_GUARDIAN = 2_000n * TOKEN;
const BPS = 10_000n;

const PEER_ID = "12D3KooWGzJ8D1fQ2vY3rR8uQ6yEdgeNodeAlphaPeerIdXyz0123";
const MULTIADDRS = ["/ip4/10.0.0.1/tcp/4001", "/ip4/10.0.0.1/tcp/4002/ws"];

/** The protocol, six funded actors that approved the registry, and the slasher set to `slasher` by governance. */
async function stakingFixture() {
  const base = await deployProtocolFixture();
  const { token, registry, timelock, signers } = base;
  const [, opA, opB, opC, alice, bob, slasher, outsider] = signers;
  const registryAddress = await registry.getAddress();
  for (const actor of [opA, opB, opC, alice, bob, outsider]) {
    await (await token.transfer(actor.address, FUNDING)).wait();
    await (await token.connect(actor).approve(registryAddress, ethers.MaxUint256)).wait();
  }
  const timelockAddress = await timelock.getAddress();
  await impersonateAccount(timelockAddress);
  await setBalance(timelockAddress, ethers.parseEther("10"));
  const governance = await ethers.getSigner(timelockAddress);
  await (await registry.connect(governance).setSlasher(slasher.address)).wait();
  return { ...base, opA, opB, opC, alice, bob, slasher, outsider, governance };
}

type Fixture = Awaited<ReturnType<typeof stakingFixture>>;

/** Registers `operator` with a valid endpoint; the amount defaults to the role's minimum. */
async function registerNode(
  f: Fixture,
  operator: HardhatEthersSigner,
  role: NodeRole = NodeRole.Edge,
  amount?: bigint,
  commissionBps = 500,
): Promise<ContractTransactionResponse> {
  const stake = amount ?? (await f.parameters.minStake(role));
  const tx = await f.registry
    .connect(operator)
    .register(role, `${PEER_ID}-${operator.address.slice(2, 8)}`, MULTIADDRS, operator.address, commissionBps, stake);
  await tx.wait();
  return tx;
}

/** The timestamp of the block that mined `tx`. */
async function minedAt(tx: ContractTransactionResponse): Promise<number> {
  const receipt = await tx.wait();
  if (!receipt) throw new Error("minedAt: expected a receipt");
  const block = await ethers.provider.getBlock(receipt.blockNumber);
  if (!block) throw new Error(`minedAt: expected block ${receipt.blockNumber}`);
  return block.timestamp;
}

/** The block number that mined `tx`. */
async function minedIn(tx: ContractTransactionResponse): Promise<number> {
  const receipt = await tx.wait();
  if (!receipt) throw new Error("minedIn: expected a receipt");
  return receipt.blockNumber;
}

/** A copy of an `unbondings()` entry that can be passed back to the contract (ethers' results are frozen). */
function asEntry(entry: INodeRegistry.UnbondingStructOutput): INodeRegistry.UnbondingStruct {
  return { operator: entry.operator, releaseTime: entry.releaseTime, shares: entry.shares };
}

/** A node view as a plain object, for deep comparison. */
function plainView(v: INodeRegistry.NodeViewStructOutput) {
  return {
    operator: v.operator,
    role: v.role,
    signer: v.signer,
    peerId: v.peerId,
    multiaddrs: [...v.multiaddrs],
    commissionBps: v.commissionBps,
    jailedUntil: v.jailedUntil,
    selfStake: v.selfStake,
    delegatedStake: v.delegatedStake,
    unbondingStake: v.unbondingStake,
    active: v.active,
  };
}

/** Moves the chain to the first second of the epoch after the current one. */
async function nextEpoch(f: Fixture): Promise<bigint> {
  const epoch = (await f.parameters.currentEpoch()) + 1n;
  await time.increaseTo(await f.parameters.epochStart(epoch));
  return epoch;
}

describe("NodeRegistry", () => {
  describe("deploy", () => {
    it("starts with the timelock as owner and the slashing contract as slasher", async () => {
      const { registry, timelock, slashing } = await loadFixture(deployProtocolFixture);
      expect(await registry.owner()).to.equal(await timelock.getAddress());
      expect(await registry.slasher()).to.equal(await slashing.getAddress());
    });

    it("publishes the bounds it enforces", async () => {
      const { registry } = await loadFixture(stakingFixture);
      expect(await registry.MAX_PEER_ID_LENGTH()).to.equal(128n);
      expect(await registry.MAX_MULTIADDRS()).to.equal(8n);
      expect(await registry.MAX_MULTIADDR_LENGTH()).to.equal(256n);
      expect(await registry.MAX_UNBONDINGS()).to.equal(32n);
      expect(await registry.MAX_SLASH_BPS()).to.equal(5_000n);
    });

    it("reads each role's minimum stake from the local parameters", async () => {
      const { parameters } = await loadFixture(stakingFixture);
      expect(await parameters.minStake(NodeRole.Edge)).to.equal(MIN_EDGE);
      expect(await parameters.minStake(NodeRole.Watchdog)).to.equal(MIN_WATCHDOG);
      expect(await parameters.minStake(NodeRole.Guardian)).to.equal(MIN_GUARDIAN);
    });
  });

  describe("register", () => {
    it("registers an edge node, bonds its stake and announces it", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, token, parameters, opA } = f;
      const amount = 1_500n * TOKEN;
      const epoch = await parameters.currentEpoch();
      const tx = registry.connect(opA).register(NodeRole.Edge, PEER_ID, MULTIADDRS, opA.address, 700, amount);
      await expect(tx)
        .to.emit(registry, "NodeRegistered")
        .withArgs(opA.address, NodeRole.Edge, PEER_ID, MULTIADDRS, opA.address);
      await expect(tx).to.emit(registry, "CommissionChanged").withArgs(opA.address, 700, epoch);
      await expect(tx).to.emit(registry, "Bonded").withArgs(opA.address, opA.address, amount, amount);
      await expect(tx).to.emit(registry, "StakeVotesChanged").withArgs(opA.address, 0, amount);
      await expect(tx).to.changeTokenBalances(token, [opA, registry], [-amount, amount]);
      expect(await registry.roleOf(opA.address)).to.equal(NodeRole.Edge);
      expect(await registry.signerOf(opA.address)).to.equal(opA.address);
      expect(await registry.stakeOf(opA.address, opA.address)).to.equal(amount);
      expect(await registry.isActive(opA.address)).to.equal(true);
    });

    for (const role of [NodeRole.Edge, NodeRole.Watchdog, NodeRole.Guardian]) {
      it(`registers a ${NodeRole[role]} node at exactly its role minimum and lists it under that role only`, async () => {
        const f = await loadFixture(stakingFixture);
        const { registry, parameters, opA } = f;
        const minimum = await parameters.minStake(role);
        await registerNode(f, opA, role, minimum);
        expect(await registry.roleOf(opA.address)).to.equal(role);
        expect(await registry.isActive(opA.address)).to.equal(true);
        for (const other of [NodeRole.Edge, NodeRole.Watchdog, NodeRole.Guardian]) {
          const [nodes, total] = await registry.activeNodes(other, 0, 10);
          expect(total).to.equal(other === role ? 1n : 0n);
          expect(nodes.map((n) => n.operator)).to.deep.equal(other === role ? [opA.address] : []);
        }
      });
    }

    it("refuses the None role", async () => {
      const { registry, opA } = await loadFixture(stakingFixture);
      await expect(registry.connect(opA).register(NodeRole.None, PEER_ID, MULTIADDRS, opA.address, 0, MIN_EDGE))
        .to.be.revertedWithCustomError(registry, "StakingInvalidRole")
        .withArgs(NodeRole.None);
    });

    it("refuses a second registration by the same operator, even after a full exit", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA } = f;
      await registerNode(f, opA);
      await expect(registry.connect(opA).register(NodeRole.Watchdog, PEER_ID, MULTIADDRS, opA.address, 0, MIN_EDGE))
        .to.be.revertedWithCustomError(registry, "StakingAlreadyRegistered")
        .withArgs(opA.address);
      await (await registry.connect(opA).unbond(opA.address, MIN_EDGE)).wait();
      await expect(registry.connect(opA).register(NodeRole.Edge, PEER_ID, MULTIADDRS, opA.address, 0, MIN_EDGE))
        .to.be.revertedWithCustomError(registry, "StakingAlreadyRegistered")
        .withArgs(opA.address);
    });

    it("refuses an empty peer id and one longer than 128 bytes, and accepts exactly 128", async () => {
      const { registry, opA } = await loadFixture(stakingFixture);
      const register = (peerId: string) =>
        registry.connect(opA).register(NodeRole.Edge, peerId, MULTIADDRS, opA.address, 0, MIN_EDGE);
      await expect(register("")).to.be.revertedWithCustomError(registry, "StakingInvalidPeerId").withArgs(0, 128);
      await expect(register("p".repeat(129)))
        .to.be.revertedWithCustomError(registry, "StakingInvalidPeerId")
        .withArgs(129, 128);
      await expect(register("p".repeat(128))).to.emit(registry, "NodeRegistered");
    });

    it("measures the peer id in bytes, not characters", async () => {
      const { registry, opA } = await loadFixture(stakingFixture);
      const peerId = "é".repeat(65); // 130 bytes in UTF-8
      await expect(registry.connect(opA).register(NodeRole.Edge, peerId, MULTIADDRS, opA.address, 0, MIN_EDGE))
        .to.be.revertedWithCustomError(registry, "StakingInvalidPeerId")
        .withArgs(130, 128);
    });

    it("refuses no multiaddr and more than 8, and accepts exactly 8", async () => {
      const { registry, opA } = await loadFixture(stakingFixture);
      const register = (multiaddrs: string[]) =>
        registry.connect(opA).register(NodeRole.Edge, PEER_ID, multiaddrs, opA.address, 0, MIN_EDGE);
      const addrs = (n: number) => Array.from({ length: n }, (_, i) => `/ip4/10.0.0.${i}/tcp/4001`);
      await expect(register([])).to.be.revertedWithCustomError(registry, "StakingInvalidMultiaddrs").withArgs(0, 8);
      await expect(register(addrs(9)))
        .to.be.revertedWithCustomError(registry, "StakingInvalidMultiaddrs")
        .withArgs(9, 8);
      await expect(register(addrs(8))).to.emit(registry, "NodeRegistered");
      expect((await registry.node(opA.address)).multiaddrs).to.have.length(8);
    });

    it("refuses an empty multiaddr or one longer than 256 bytes anywhere in the list, and accepts exactly 256", async () => {
      const { registry, opA } = await loadFixture(stakingFixture);
      const register = (multiaddrs: string[]) =>
        registry.connect(opA).register(NodeRole.Edge, PEER_ID, multiaddrs, opA.address, 0, MIN_EDGE);
      await expect(register([MULTIADDRS[0], ""]))
        .to.be.revertedWithCustomError(registry, "StakingInvalidMultiaddrs")
        .withArgs(2, 8);
      await expect(register(["/".repeat(257), ...MULTIADDRS]))
        .to.be.revertedWithCustomError(registry, "StakingInvalidMultiaddrs")
        .withArgs(3, 8);
      await expect(register(["/".repeat(256)])).to.emit(registry, "NodeRegistered");
    });

    it("refuses a zero signer", async () => {
      const { registry, opA } = await loadFixture(stakingFixture);
      await expect(
        registry.connect(opA).register(NodeRole.Edge, PEER_ID, MULTIADDRS, ethers.ZeroAddress, 0, MIN_EDGE),
      ).to.be.revertedWithCustomError(registry, "StakingInvalidSigner");
    });

    it("refuses a commission above the governed cap and accepts one at the cap", async () => {
      const { registry, opA } = await loadFixture(stakingFixture);
      const register = (bps: number) =>
        registry.connect(opA).register(NodeRole.Edge, PEER_ID, MULTIADDRS, opA.address, bps, MIN_EDGE);
      await expect(register(2_001))
        .to.be.revertedWithCustomError(registry, "StakingCommissionTooHigh")
        .withArgs(2_001, 2_000);
      await expect(register(2_000)).to.emit(registry, "NodeRegistered");
      expect((await registry.node(opA.address)).commissionBps).to.equal(2_000n);
    });

    it("refuses a registration below the role minimum and says how much is missing", async () => {
      const { registry, opA } = await loadFixture(stakingFixture);
      const amount = MIN_GUARDIAN - 1n;
      await expect(registry.connect(opA).register(NodeRole.Guardian, PEER_ID, MULTIADDRS, opA.address, 0, amount))
        .to.be.revertedWithCustomError(registry, "StakingInsufficientStake")
        .withArgs(opA.address, amount, MIN_GUARDIAN, 1n);
      await expect(registry.connect(opA).register(NodeRole.Watchdog, PEER_ID, MULTIADDRS, opA.address, 0, 0))
        .to.be.revertedWithCustomError(registry, "StakingInsufficientStake")
        .withArgs(opA.address, 0, MIN_WATCHDOG, MIN_WATCHDOG);
    });

    it("fails on the token's allowance check when the operator has not approved the stake", async () => {
      const { registry, token, outsider } = await loadFixture(stakingFixture);
      await (await token.connect(outsider).approve(await registry.getAddress(), 0)).wait();
      await expect(
        registry.connect(outsider).register(NodeRole.Edge, PEER_ID, MULTIADDRS, outsider.address, 0, MIN_EDGE),
      )
        .to.be.revertedWithCustomError(token, "ERC20InsufficientAllowance")
        .withArgs(await registry.getAddress(), 0, MIN_EDGE);
    });
  });

  describe("updateNode", () => {
    it("replaces the peer id, the whole multiaddr list and the signer", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, bob } = f;
      await registerNode(f, opA);
      const peerId = "12D3KooWNewPeerId";
      const multiaddrs = ["/dns4/edge.example/tcp/443/wss"];
      await expect(registry.connect(opA).updateNode(peerId, multiaddrs, bob.address))
        .to.emit(registry, "NodeUpdated")
        .withArgs(opA.address, peerId, multiaddrs, bob.address);
      const view = await registry.node(opA.address);
      expect(view.peerId).to.equal(peerId);
      expect([...view.multiaddrs]).to.deep.equal(multiaddrs);
      expect(view.signer).to.equal(bob.address);
      expect(await registry.signerOf(opA.address)).to.equal(bob.address);
      expect(view.selfStake).to.equal(MIN_EDGE);
    });

    it("refuses an unregistered caller", async () => {
      const { registry, outsider } = await loadFixture(stakingFixture);
      await expect(registry.connect(outsider).updateNode(PEER_ID, MULTIADDRS, outsider.address))
        .to.be.revertedWithCustomError(registry, "StakingNotRegistered")
        .withArgs(outsider.address);
    });

    it("checks the endpoint as registration does", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA } = f;
      await registerNode(f, opA);
      await expect(registry.connect(opA).updateNode("", MULTIADDRS, opA.address))
        .to.be.revertedWithCustomError(registry, "StakingInvalidPeerId")
        .withArgs(0, 128);
      await expect(registry.connect(opA).updateNode(PEER_ID, [], opA.address))
        .to.be.revertedWithCustomError(registry, "StakingInvalidMultiaddrs")
        .withArgs(0, 8);
      await expect(registry.connect(opA).updateNode(PEER_ID, [""], opA.address))
        .to.be.revertedWithCustomError(registry, "StakingInvalidMultiaddrs")
        .withArgs(1, 8);
      await expect(
        registry.connect(opA).updateNode(PEER_ID, MULTIADDRS, ethers.ZeroAddress),
      ).to.be.revertedWithCustomError(registry, "StakingInvalidSigner");
    });
  });

  describe("stake", () => {
    it("adds to the operator's self-stake and voting power", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, token, opA } = f;
      await registerNode(f, opA);
      const amount = 250n * TOKEN;
      const tx = registry.connect(opA).stake(amount);
      await expect(tx).to.emit(registry, "Bonded").withArgs(opA.address, opA.address, amount, amount);
      await expect(tx)
        .to.emit(registry, "StakeVotesChanged")
        .withArgs(opA.address, MIN_EDGE, MIN_EDGE + amount);
      await expect(tx).to.changeTokenBalances(token, [opA, registry], [-amount, amount]);
      expect((await registry.node(opA.address)).selfStake).to.equal(MIN_EDGE + amount);
    });

    it("refuses an unregistered caller", async () => {
      const { registry, outsider } = await loadFixture(stakingFixture);
      await expect(registry.connect(outsider).stake(MIN_EDGE))
        .to.be.revertedWithCustomError(registry, "StakingNotRegistered")
        .withArgs(outsider.address);
    });

    it("refuses a zero amount", async () => {
      const f = await loadFixture(stakingFixture);
      await registerNode(f, f.opA);
      await expect(f.registry.connect(f.opA).stake(0)).to.be.revertedWithCustomError(f.registry, "StakingZeroAmount");
    });

    it("refuses a stake that leaves an operator who had left below the minimum, and says how much is missing", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA } = f;
      await registerNode(f, opA);
      await (await registry.connect(opA).unbond(opA.address, MIN_EDGE)).wait();
      const amount = 400n * TOKEN;
      await expect(registry.connect(opA).stake(amount))
        .to.be.revertedWithCustomError(registry, "StakingInsufficientStake")
        .withArgs(opA.address, amount, MIN_EDGE, MIN_EDGE - amount);
      await expect(registry.connect(opA).stake(MIN_EDGE)).to.emit(registry, "Bonded");
      expect(await registry.isActive(opA.address)).to.equal(true);
      expect((await registry.activeNodes(NodeRole.Edge, 0, 10)).total).to.equal(1n);
    });

    it("brings a node slashed under its minimum back once the operator adds what is missing", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, slasher } = f;
      await registerNode(f, opA);
      await (await registry.connect(slasher).slash(opA.address, 1_000, false)).wait();
      const left = (MIN_EDGE * 9_000n) / BPS;
      expect(await registry.isActive(opA.address)).to.equal(false);
      await expect(registry.connect(opA).stake(1n))
        .to.be.revertedWithCustomError(registry, "StakingInsufficientStake")
        .withArgs(opA.address, left + 1n, MIN_EDGE, MIN_EDGE - left - 1n);
      await (await registry.connect(opA).stake(MIN_EDGE - left)).wait();
      expect(await registry.stakeOf(opA.address, opA.address)).to.equal(MIN_EDGE);
      expect(await registry.isActive(opA.address)).to.equal(true);
    });

    it("refuses a top-up whose rounded-down shares would leave the operator a wei short, and names that wei", async () => {
      // Found by search: the check before the deposit passed for exactly `missing`, while the minted shares, rounded
      // down, were worth a wei less, so stake() succeeded and the node stayed inactive.
      const f = await loadFixture(stakingFixture);
      const { registry, opA, alice, slasher } = f;
      await registerNode(f, opA, NodeRole.Edge, 1_073_000_626_599_760_441_285n);
      await (await registry.connect(alice).delegate(opA.address, 833_386_933_316_379_625_792n)).wait();
      await (await registry.connect(slasher).slash(opA.address, 1_161, false)).wait();
      const before = await registry.stakeOf(opA.address, opA.address);
      expect(before).to.be.lessThan(MIN_EDGE);
      const missing = MIN_EDGE - before;
      await expect(registry.connect(opA).stake(missing))
        .to.be.revertedWithCustomError(registry, "StakingInsufficientStake")
        .withArgs(opA.address, MIN_EDGE - 1n, MIN_EDGE, 1n);
      await (await registry.connect(opA).stake(missing + 1n)).wait();
      expect(await registry.stakeOf(opA.address, opA.address)).to.be.greaterThanOrEqual(MIN_EDGE);
      expect(await registry.isActive(opA.address)).to.equal(true);
    });
  });

  describe("delegate", () => {
    it("bonds a delegator's tokens to an active node at one share a token in an unslashed pool", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, token, opA, alice } = f;
      await registerNode(f, opA);
      const amount = 300n * TOKEN;
      const tx = registry.connect(alice).delegate(opA.address, amount);
      await expect(tx).to.emit(registry, "Bonded").withArgs(opA.address, alice.address, amount, amount);
      await expect(tx).to.emit(registry, "StakeVotesChanged").withArgs(alice.address, 0, amount);
      await expect(tx).to.changeTokenBalances(token, [alice, registry], [-amount, amount]);
      expect(await registry.stakeOf(opA.address, alice.address)).to.equal(amount);
      const [shares, totalShares, totalTokens] = await registry.sharesOf(opA.address, alice.address);
      expect([shares, totalShares, totalTokens]).to.deep.equal([amount, MIN_EDGE + amount, MIN_EDGE + amount]);
      const view = await registry.node(opA.address);
      expect(view.selfStake).to.equal(MIN_EDGE);
      expect(view.delegatedStake).to.equal(amount);
    });

    it("mints shares at the slashed price, rounded down, so earlier holders lose nothing", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, alice, bob, slasher } = f;
      await registerNode(f, opA, NodeRole.Edge, 2_000n * TOKEN);
      await (await registry.connect(alice).delegate(opA.address, 1_000n * TOKEN)).wait();
      await (await registry.connect(slasher).slash(opA.address, 2_500, false)).wait();
      const [, totalShares, totalTokens] = await registry.sharesOf(opA.address, bob.address);
      expect([totalShares, totalTokens]).to.deep.equal([3_000n * TOKEN, 2_250n * TOKEN]);
      const aliceBefore = await registry.stakeOf(opA.address, alice.address);
      const opBefore = await registry.stakeOf(opA.address, opA.address);

      const amount = 1_000n * TOKEN + 1n;
      const expectedShares = (amount * totalShares) / totalTokens;
      await expect(registry.connect(bob).delegate(opA.address, amount))
        .to.emit(registry, "Bonded")
        .withArgs(opA.address, bob.address, amount, expectedShares);
      const [shares, sharesAfter, tokensAfter] = await registry.sharesOf(opA.address, bob.address);
      expect(shares).to.equal(expectedShares);
      expect(sharesAfter).to.equal(totalShares + expectedShares);
      expect(tokensAfter).to.equal(totalTokens + amount);
      const bobStake = await registry.stakeOf(opA.address, bob.address);
      expect(bobStake).to.be.lessThanOrEqual(amount);
      expect(amount - bobStake).to.be.lessThanOrEqual(1n);
      expect(await registry.stakeOf(opA.address, alice.address)).to.be.greaterThanOrEqual(aliceBefore);
      expect(await registry.stakeOf(opA.address, opA.address)).to.be.greaterThanOrEqual(opBefore);
    });

    it("refuses a delegation to an unregistered operator", async () => {
      const { registry, alice, outsider } = await loadFixture(stakingFixture);
      await expect(registry.connect(alice).delegate(outsider.address, TOKEN))
        .to.be.revertedWithCustomError(registry, "StakingNotRegistered")
        .withArgs(outsider.address);
    });

    it("refuses a delegation to a node whose operator left", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, alice } = f;
      await registerNode(f, opA);
      await (await registry.connect(opA).unbond(opA.address, MIN_EDGE)).wait();
      await expect(registry.connect(alice).delegate(opA.address, TOKEN))
        .to.be.revertedWithCustomError(registry, "StakingNodeNotActive")
        .withArgs(opA.address);
    });

    it("refuses a delegation to a jailed node", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, alice, slasher } = f;
      await registerNode(f, opA, NodeRole.Edge, 3_000n * TOKEN);
      await (await registry.connect(slasher).slash(opA.address, 100, true)).wait();
      await expect(registry.connect(alice).delegate(opA.address, TOKEN))
        .to.be.revertedWithCustomError(registry, "StakingNodeNotActive")
        .withArgs(opA.address);
    });

    it("refuses a zero amount", async () => {
      const f = await loadFixture(stakingFixture);
      await registerNode(f, f.opA);
      await expect(f.registry.connect(f.alice).delegate(f.opA.address, 0)).to.be.revertedWithCustomError(
        f.registry,
        "StakingZeroAmount",
      );
    });

    it("mints at least one share for a single wei even after the largest slash: a share never costs more", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, alice, slasher } = f;
      await registerNode(f, opA, NodeRole.Edge, 3_000n * TOKEN);
      await (await registry.connect(slasher).slash(opA.address, 5_000, false)).wait();
      await expect(registry.connect(alice).delegate(opA.address, 1n))
        .to.emit(registry, "Bonded")
        .withArgs(opA.address, alice.address, 1n, 2n);
    });
  });

  describe("unbond", () => {
    it("moves a delegator's stake into the unbonding pool with a release time one unbonding period away", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, token, parameters, opA, alice } = f;
      await registerNode(f, opA);
      await (await registry.connect(alice).delegate(opA.address, 600n * TOKEN)).wait();
      const period = await parameters.get(parameterIndex("UnbondingPeriod"));
      expect(period).to.equal(300n);
      const at = (await time.latest()) + 10;
      await time.setNextBlockTimestamp(at);
      const amount = 200n * TOKEN;
      const tx = registry.connect(alice).unbond(opA.address, amount);
      await expect(tx)
        .to.emit(registry, "UnbondingStarted")
        .withArgs(opA.address, alice.address, amount, BigInt(at) + period);
      await expect(tx)
        .to.emit(registry, "StakeVotesChanged")
        .withArgs(alice.address, 600n * TOKEN, 400n * TOKEN);
      await expect(tx).to.changeTokenBalances(token, [alice, registry], [0, 0]);
      expect(await registry.stakeOf(opA.address, alice.address)).to.equal(400n * TOKEN);
      const entries = await registry.unbondings(alice.address);
      expect(entries).to.have.length(1);
      expect(entries[0].operator).to.equal(opA.address);
      expect(entries[0].releaseTime).to.equal(BigInt(at) + period);
      expect(await registry.unbondingValue(asEntry(entries[0]))).to.equal(amount);
      const view = await registry.node(opA.address);
      expect(view.delegatedStake).to.equal(400n * TOKEN);
      expect(view.unbondingStake).to.equal(amount);
    });

    it("refuses an unregistered operator", async () => {
      const { registry, alice, outsider } = await loadFixture(stakingFixture);
      await expect(registry.connect(alice).unbond(outsider.address, 1n))
        .to.be.revertedWithCustomError(registry, "StakingNotRegistered")
        .withArgs(outsider.address);
    });

    it("refuses a zero amount", async () => {
      const f = await loadFixture(stakingFixture);
      await registerNode(f, f.opA);
      await expect(f.registry.connect(f.opA).unbond(f.opA.address, 0)).to.be.revertedWithCustomError(
        f.registry,
        "StakingZeroAmount",
      );
    });

    it("refuses more than the caller's stake and says how much it has", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, alice, bob } = f;
      await registerNode(f, opA);
      await (await registry.connect(alice).delegate(opA.address, 100n * TOKEN)).wait();
      await expect(registry.connect(alice).unbond(opA.address, 100n * TOKEN + 1n))
        .to.be.revertedWithCustomError(registry, "StakingExceedsStake")
        .withArgs(opA.address, alice.address, 100n * TOKEN + 1n, 100n * TOKEN);
      await expect(registry.connect(bob).unbond(opA.address, 1n))
        .to.be.revertedWithCustomError(registry, "StakingExceedsStake")
        .withArgs(opA.address, bob.address, 1n, 0n);
    });

    it("refuses an operator unbond that would leave a self-stake above zero but under the minimum", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA } = f;
      await registerNode(f, opA, NodeRole.Edge, 1_500n * TOKEN);
      await expect(registry.connect(opA).unbond(opA.address, 500n * TOKEN + 1n))
        .to.be.revertedWithCustomError(registry, "StakingBelowMinimum")
        .withArgs(opA.address, MIN_EDGE - 1n, MIN_EDGE);
      await expect(registry.connect(opA).unbond(opA.address, 500n * TOKEN)).to.emit(registry, "UnbondingStarted");
      expect(await registry.isActive(opA.address)).to.equal(true);
    });

    it("refuses an operator unbond whose rounded-up shares would leave a wei under the minimum", async () => {
      // Found by search: available - amount == minimum passed the check, but burning the shares rounded up left
      // the operator a wei short, so the node dropped out of discovery without an error.
      const f = await loadFixture(stakingFixture);
      const { registry, opA, alice, slasher } = f;
      await registerNode(f, opA, NodeRole.Edge, 1_137_000_005_365_991_537_453n);
      await (await registry.connect(alice).delegate(opA.address, 4_255_132_916_924_880_748_464n)).wait();
      await (await registry.connect(slasher).slash(opA.address, 608, false)).wait();
      const available = await registry.stakeOf(opA.address, opA.address);
      await expect(registry.connect(opA).unbond(opA.address, available - MIN_EDGE))
        .to.be.revertedWithCustomError(registry, "StakingBelowMinimum")
        .withArgs(opA.address, MIN_EDGE - 1n, MIN_EDGE);
      await (await registry.connect(opA).unbond(opA.address, available - MIN_EDGE - 1n)).wait();
      expect(await registry.stakeOf(opA.address, opA.address)).to.be.greaterThanOrEqual(MIN_EDGE);
      expect(await registry.isActive(opA.address)).to.equal(true);
    });

    it("lets an operator leave entirely, after which its node drops out of activeNodes", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, opB, alice } = f;
      await registerNode(f, opA, NodeRole.Edge, 1_200n * TOKEN);
      await registerNode(f, opB);
      await (await registry.connect(alice).delegate(opA.address, 50n * TOKEN)).wait();
      await expect(registry.connect(opA).unbond(opA.address, 1_200n * TOKEN))
        .to.emit(registry, "StakeVotesChanged")
        .withArgs(opA.address, 1_200n * TOKEN, 0);
      expect(await registry.isActive(opA.address)).to.equal(false);
      expect(await registry.stakeOf(opA.address, opA.address)).to.equal(0n);
      const [nodes, total] = await registry.activeNodes(NodeRole.Edge, 0, 10);
      expect(total).to.equal(1n);
      expect(nodes.map((n) => n.operator)).to.deep.equal([opB.address]);
      // The delegator left behind keeps its stake and can still leave.
      expect(await registry.stakeOf(opA.address, alice.address)).to.equal(50n * TOKEN);
      await expect(registry.connect(alice).unbond(opA.address, 50n * TOKEN)).to.emit(registry, "UnbondingStarted");
    });

    it("lets a delegator unbond its whole stake, burning every share it held", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, alice, slasher } = f;
      await registerNode(f, opA, NodeRole.Edge, 2_000n * TOKEN);
      await (await registry.connect(alice).delegate(opA.address, 777n * TOKEN + 3n)).wait();
      await (await registry.connect(slasher).slash(opA.address, 333, false)).wait();
      const available = await registry.stakeOf(opA.address, alice.address);
      await expect(registry.connect(alice).unbond(opA.address, available))
        .to.emit(registry, "StakeVotesChanged")
        .withArgs(alice.address, 777n * TOKEN + 3n, 0);
      const [shares] = await registry.sharesOf(opA.address, alice.address);
      expect(shares).to.equal(0n);
      expect(await registry.getVotes(alice.address)).to.equal(0n);
    });

    it(`refuses a ${32 + 1}rd pending unbonding and accepts one again after a withdrawal`, async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, alice } = f;
      await registerNode(f, opA);
      await (await registry.connect(alice).delegate(opA.address, 100n * TOKEN)).wait();
      for (let i = 0; i < 32; i++) {
        await (await registry.connect(alice).unbond(opA.address, TOKEN)).wait();
      }
      await expect(registry.connect(alice).unbond(opA.address, TOKEN))
        .to.be.revertedWithCustomError(registry, "StakingTooManyUnbondings")
        .withArgs(alice.address, 32);
      await time.increase(300);
      await expect(registry.connect(alice).withdraw())
        .to.emit(registry, "Withdrawn")
        .withArgs(alice.address, 32n * TOKEN, 32);
      await expect(registry.connect(alice).unbond(opA.address, TOKEN)).to.emit(registry, "UnbondingStarted");
    });
  });

  describe("withdraw", () => {
    it("refuses a staker with no unbonding at all", async () => {
      const { registry, alice } = await loadFixture(stakingFixture);
      await expect(registry.connect(alice).withdraw())
        .to.be.revertedWithCustomError(registry, "StakingNothingToWithdraw")
        .withArgs(alice.address);
    });

    it("refuses until the release time and pays exactly the unbonded amount from that second on", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, token, opA, alice } = f;
      await registerNode(f, opA);
      await (await registry.connect(alice).delegate(opA.address, 500n * TOKEN)).wait();
      await (await registry.connect(alice).unbond(opA.address, 123n * TOKEN + 7n)).wait();
      const [entry] = await registry.unbondings(alice.address);
      await time.setNextBlockTimestamp(entry.releaseTime - 1n);
      await expect(registry.connect(alice).withdraw())
        .to.be.revertedWithCustomError(registry, "StakingNothingToWithdraw")
        .withArgs(alice.address);
      await time.setNextBlockTimestamp(entry.releaseTime);
      const tx = registry.connect(alice).withdraw();
      await expect(tx)
        .to.emit(registry, "Withdrawn")
        .withArgs(alice.address, 123n * TOKEN + 7n, 1);
      await expect(tx).to.changeTokenBalances(token, [alice, registry], [123n * TOKEN + 7n, -(123n * TOKEN + 7n)]);
      expect(await registry.unbondings(alice.address)).to.have.length(0);
      expect((await registry.node(opA.address)).unbondingStake).to.equal(0n);
    });

    it("pays only the matured entries of a queue with mixed maturity and keeps the rest", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, token, opA, opB, alice } = f;
      await registerNode(f, opA);
      await registerNode(f, opB);
      await (await registry.connect(alice).delegate(opA.address, 500n * TOKEN)).wait();
      await (await registry.connect(alice).delegate(opB.address, 500n * TOKEN)).wait();
      await (await registry.connect(alice).unbond(opA.address, 10n * TOKEN)).wait();
      await (await registry.connect(alice).unbond(opB.address, 20n * TOKEN)).wait();
      await time.increase(200);
      await (await registry.connect(alice).unbond(opA.address, 40n * TOKEN)).wait();
      await time.increase(150); // the first two have matured, the third has 150 s left

      const tx = registry.connect(alice).withdraw();
      await expect(tx)
        .to.emit(registry, "Withdrawn")
        .withArgs(alice.address, 30n * TOKEN, 2);
      await expect(tx).to.changeTokenBalance(token, alice, 30n * TOKEN);
      const left = await registry.unbondings(alice.address);
      expect(left).to.have.length(1);
      expect(left[0].operator).to.equal(opA.address);
      expect(await registry.unbondingValue(asEntry(left[0]))).to.equal(40n * TOKEN);
      await expect(registry.connect(alice).withdraw())
        .to.be.revertedWithCustomError(registry, "StakingNothingToWithdraw")
        .withArgs(alice.address);

      await time.increase(150);
      await expect(registry.connect(alice).withdraw())
        .to.emit(registry, "Withdrawn")
        .withArgs(alice.address, 40n * TOKEN, 1);
      expect(await registry.unbondings(alice.address)).to.have.length(0);
    });

    it("returns the amount paid", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA } = f;
      await registerNode(f, opA, NodeRole.Edge, 1_100n * TOKEN);
      await (await registry.connect(opA).unbond(opA.address, 100n * TOKEN)).wait();
      await time.increase(300);
      expect(await registry.connect(opA).withdraw.staticCall()).to.equal(100n * TOKEN);
    });
  });

  describe("setCommission", () => {
    it("takes effect from the next epoch, not the current one", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, parameters, opA } = f;
      await registerNode(f, opA, NodeRole.Edge, MIN_EDGE, 500);
      const epoch = await parameters.currentEpoch();
      await expect(registry.connect(opA).setCommission(1_200))
        .to.emit(registry, "CommissionChanged")
        .withArgs(opA.address, 1_200, epoch + 1n);
      expect((await registry.node(opA.address)).commissionBps).to.equal(500n);
      expect(await registry.commissionAt(opA.address, epoch)).to.equal(500n);
      expect(await registry.commissionAt(opA.address, epoch + 1n)).to.equal(1_200n);

      const epochLength = (await parameters.epochStart(epoch + 1n)) - (await parameters.epochStart(epoch));
      expect(epochLength).to.equal(await parameters.get(parameterIndex("EpochLength")));
      await time.increaseTo((await parameters.epochStart(epoch + 1n)) - 1n);
      expect((await registry.node(opA.address)).commissionBps).to.equal(500n);
      await time.increase(1);
      expect(await parameters.currentEpoch()).to.equal(epoch + 1n);
      expect((await registry.node(opA.address)).commissionBps).to.equal(1_200n);
    });

    it("lets a second change in the same epoch replace the pending one", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, parameters, opA } = f;
      await registerNode(f, opA, NodeRole.Edge, MIN_EDGE, 500);
      const epoch = await parameters.currentEpoch();
      await (await registry.connect(opA).setCommission(1_200)).wait();
      await (await registry.connect(opA).setCommission(300)).wait();
      expect(await registry.commissionAt(opA.address, epoch)).to.equal(500n);
      expect(await registry.commissionAt(opA.address, epoch + 1n)).to.equal(300n);
      await nextEpoch(f);
      expect((await registry.node(opA.address)).commissionBps).to.equal(300n);
    });

    it("keeps the commission of every past epoch after later changes", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, parameters, opA } = f;
      await registerNode(f, opA, NodeRole.Edge, MIN_EDGE, 500);
      const e0 = await parameters.currentEpoch();
      await (await registry.connect(opA).setCommission(1_000)).wait();
      await nextEpoch(f);
      await (await registry.connect(opA).setCommission(1_500)).wait();
      await nextEpoch(f);
      await (await registry.connect(opA).setCommission(1_800)).wait();
      await nextEpoch(f);
      await nextEpoch(f);
      await (await registry.connect(opA).setCommission(0)).wait();
      const expected = [500n, 1_000n, 1_500n, 1_800n, 1_800n, 0n, 0n];
      for (let i = 0; i < expected.length; i++) {
        expect(await registry.commissionAt(opA.address, e0 + BigInt(i)), `epoch ${e0 + BigInt(i)}`).to.equal(
          expected[i],
        );
      }
    });

    it("refuses a commission above the cap and an unregistered caller", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, outsider } = f;
      await registerNode(f, opA);
      await expect(registry.connect(opA).setCommission(2_001))
        .to.be.revertedWithCustomError(registry, "StakingCommissionTooHigh")
        .withArgs(2_001, 2_000);
      await expect(registry.connect(outsider).setCommission(100))
        .to.be.revertedWithCustomError(registry, "StakingNotRegistered")
        .withArgs(outsider.address);
    });

    it("clamps a commission to a cap that governance lowered after it was set", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, parameters, governance, opA } = f;
      await registerNode(f, opA, NodeRole.Edge, MIN_EDGE, 2_000);
      const epoch = await parameters.currentEpoch();
      await (await registry.connect(opA).setCommission(1_900)).wait();
      await (await parameters.connect(governance).setParameter(parameterIndex("CommissionCapBps"), 1_000)).wait();
      expect(await registry.commissionAt(opA.address, epoch)).to.equal(1_000n);
      expect(await registry.commissionAt(opA.address, epoch + 1n)).to.equal(1_000n);
      expect((await registry.node(opA.address)).commissionBps).to.equal(1_000n);
      await expect(registry.connect(opA).setCommission(1_500))
        .to.be.revertedWithCustomError(registry, "StakingCommissionTooHigh")
        .withArgs(1_500, 1_000);
    });

    it("reports no commission for an unregistered operator", async () => {
      const { registry, parameters, outsider } = await loadFixture(stakingFixture);
      expect(await registry.commissionAt(outsider.address, await parameters.currentEpoch())).to.equal(0n);
      expect((await registry.node(outsider.address)).commissionBps).to.equal(0n);
    });
  });

  describe("slash", () => {
    it("refuses anyone but the slasher, the owner included", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, outsider, governance } = f;
      await registerNode(f, opA);
      await expect(registry.connect(outsider).slash(opA.address, 100, false))
        .to.be.revertedWithCustomError(registry, "StakingNotSlasher")
        .withArgs(outsider.address);
      await expect(registry.connect(governance).slash(opA.address, 100, false))
        .to.be.revertedWithCustomError(registry, "StakingNotSlasher")
        .withArgs(governance.address);
    });

    it("refuses more than MAX_SLASH_BPS and accepts exactly that", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, slasher } = f;
      await registerNode(f, opA);
      await expect(registry.connect(slasher).slash(opA.address, 5_001, false))
        .to.be.revertedWithCustomError(registry, "StakingSlashTooLarge")
        .withArgs(5_001, 5_000);
      await expect(registry.connect(slasher).slash(opA.address, 5_000, false))
        .to.emit(registry, "NodeSlashed")
        .withArgs(opA.address, 5_000, MIN_EDGE / 2n, 0, 0);
    });

    it("refuses an unregistered operator", async () => {
      const { registry, slasher, outsider } = await loadFixture(stakingFixture);
      await expect(registry.connect(slasher).slash(outsider.address, 100, false))
        .to.be.revertedWithCustomError(registry, "StakingNotRegistered")
        .withArgs(outsider.address);
    });

    it("takes the same fraction from bonded and unbonding stake, so an unbonding delegator loses as much", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, token, opA, alice, bob, slasher } = f;
      await registerNode(f, opA, NodeRole.Edge, 2_000n * TOKEN);
      await (await registry.connect(alice).delegate(opA.address, 1_000n * TOKEN)).wait();
      await (await registry.connect(bob).delegate(opA.address, 1_000n * TOKEN)).wait();
      await (await registry.connect(bob).unbond(opA.address, 1_000n * TOKEN)).wait();
      const [bobEntry] = await registry.unbondings(bob.address);

      const tx = registry.connect(slasher).slash(opA.address, 1_000, false);
      await expect(tx)
        .to.emit(registry, "NodeSlashed")
        .withArgs(opA.address, 1_000, 300n * TOKEN, 100n * TOKEN, 0);
      await expect(tx).to.changeTokenBalances(token, [registry, slasher], [-400n * TOKEN, 400n * TOKEN]);
      expect(await registry.stakeOf(opA.address, opA.address)).to.equal(1_800n * TOKEN);
      expect(await registry.stakeOf(opA.address, alice.address)).to.equal(900n * TOKEN);
      expect(await registry.unbondingValue(asEntry(bobEntry))).to.equal(900n * TOKEN);
      const view = await registry.node(opA.address);
      expect([view.selfStake, view.delegatedStake, view.unbondingStake]).to.deep.equal([
        1_800n * TOKEN,
        900n * TOKEN,
        900n * TOKEN,
      ]);
      expect(view.active).to.equal(true);

      await time.increase(300);
      await expect(registry.connect(bob).withdraw()).to.changeTokenBalance(token, bob, 900n * TOKEN);
    });

    it("returns the tokens taken", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, alice, slasher } = f;
      await registerNode(f, opA, NodeRole.Edge, 2_000n * TOKEN);
      await (await registry.connect(alice).delegate(opA.address, 1_000n * TOKEN)).wait();
      await (await registry.connect(alice).unbond(opA.address, 500n * TOKEN)).wait();
      // 20% of 2,500 bonded and of 500 unbonding.
      expect(await registry.connect(slasher).slash.staticCall(opA.address, 2_000, false)).to.equal(600n * TOKEN);
    });

    it("jails the node for the jail period: inactive, out of activeNodes, closed to delegation, then back", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, parameters, opA, opB, alice, slasher } = f;
      await registerNode(f, opA, NodeRole.Edge, 3_000n * TOKEN);
      await registerNode(f, opB);
      const jailPeriod = await parameters.get(parameterIndex("JailPeriod"));
      expect(jailPeriod).to.equal(600n);
      const at = (await time.latest()) + 5;
      await time.setNextBlockTimestamp(at);
      await expect(registry.connect(slasher).slash(opA.address, 100, true))
        .to.emit(registry, "NodeSlashed")
        .withArgs(opA.address, 100, 30n * TOKEN, 0, BigInt(at) + jailPeriod);
      const view = await registry.node(opA.address);
      expect(view.jailedUntil).to.equal(BigInt(at) + jailPeriod);
      expect(view.active).to.equal(false);
      expect(await registry.isActive(opA.address)).to.equal(false);
      const [nodes, total] = await registry.activeNodes(NodeRole.Edge, 0, 10);
      expect(total).to.equal(2n);
      expect(nodes.map((n) => n.operator)).to.deep.equal([opB.address]);
      await expect(registry.connect(alice).delegate(opA.address, TOKEN))
        .to.be.revertedWithCustomError(registry, "StakingNodeNotActive")
        .withArgs(opA.address);

      await time.increaseTo(BigInt(at) + jailPeriod - 1n);
      expect(await registry.isActive(opA.address)).to.equal(false);
      await time.increase(1);
      expect(await registry.isActive(opA.address)).to.equal(true);
      expect((await registry.activeNodes(NodeRole.Edge, 0, 10)).nodes).to.have.length(2);
      await expect(registry.connect(alice).delegate(opA.address, TOKEN)).to.emit(registry, "Bonded");
    });

    it("leaves an unjailed slash's node active and a jailed node's delegators free to leave", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, alice, slasher } = f;
      await registerNode(f, opA, NodeRole.Edge, 3_000n * TOKEN);
      await (await registry.connect(alice).delegate(opA.address, 100n * TOKEN)).wait();
      await (await registry.connect(slasher).slash(opA.address, 1_000, false)).wait();
      expect(await registry.isActive(opA.address)).to.equal(true);
      expect((await registry.node(opA.address)).jailedUntil).to.equal(0n);
      await (await registry.connect(slasher).slash(opA.address, 0, true)).wait();
      expect(await registry.isActive(opA.address)).to.equal(false);
      await expect(registry.connect(alice).unbond(opA.address, 90n * TOKEN)).to.emit(registry, "UnbondingStarted");
    });

    it("takes nothing and sends nothing on a zero-bps slash", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, token, opA, slasher } = f;
      await registerNode(f, opA);
      const tx = registry.connect(slasher).slash(opA.address, 0, false);
      await expect(tx).to.emit(registry, "NodeSlashed").withArgs(opA.address, 0, 0, 0, 0);
      await expect(tx).to.changeTokenBalances(token, [registry, slasher], [0, 0]);
    });
  });

  describe("setSlasher", () => {
    it("lets the owner replace the slasher, after which only the new one slashes", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, governance, slasher, outsider, opA } = f;
      await registerNode(f, opA);
      await expect(registry.connect(governance).setSlasher(outsider.address))
        .to.emit(registry, "SlasherChanged")
        .withArgs(slasher.address, outsider.address);
      expect(await registry.slasher()).to.equal(outsider.address);
      await expect(registry.connect(slasher).slash(opA.address, 1, false))
        .to.be.revertedWithCustomError(registry, "StakingNotSlasher")
        .withArgs(slasher.address);
      await expect(registry.connect(outsider).slash(opA.address, 1, false)).to.emit(registry, "NodeSlashed");
    });

    it("refuses anyone but the owner", async () => {
      const { registry, slasher, outsider } = await loadFixture(stakingFixture);
      for (const caller of [outsider, slasher]) {
        await expect(registry.connect(caller).setSlasher(caller.address))
          .to.be.revertedWithCustomError(registry, "OwnableUnauthorizedAccount")
          .withArgs(caller.address);
      }
    });
  });

  describe("votes", () => {
    it("runs on block numbers, like the token", async () => {
      const { registry, token } = await loadFixture(stakingFixture);
      expect(await registry.clock()).to.equal(BigInt(await ethers.provider.getBlockNumber()));
      expect(await registry.clock()).to.equal(await token.clock());
    });

    it("follows bonded stake now and at every past block", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, opB, alice } = f;
      const b0 = await minedIn(await registerNode(f, opA, NodeRole.Edge, 1_000n * TOKEN));
      await registerNode(f, opB, NodeRole.Watchdog, 500n * TOKEN);
      const b1 = await minedIn(await registry.connect(alice).delegate(opA.address, 100n * TOKEN));
      const b2 = await minedIn(await registry.connect(alice).delegate(opB.address, 50n * TOKEN));
      const b3 = await minedIn(await registry.connect(opA).stake(200n * TOKEN));
      const b4 = await minedIn(await registry.connect(alice).unbond(opA.address, 30n * TOKEN));
      await mine();

      expect(await registry.getVotes(alice.address)).to.equal(120n * TOKEN);
      expect(await registry.getVotes(opA.address)).to.equal(1_200n * TOKEN);
      expect(await registry.getVotes(opB.address)).to.equal(500n * TOKEN);
      expect(await registry.getPastVotes(alice.address, b0)).to.equal(0n);
      expect(await registry.getPastVotes(alice.address, b1)).to.equal(100n * TOKEN);
      expect(await registry.getPastVotes(alice.address, b2)).to.equal(150n * TOKEN);
      expect(await registry.getPastVotes(alice.address, b4)).to.equal(120n * TOKEN);
      expect(await registry.getPastVotes(opA.address, b0)).to.equal(1_000n * TOKEN);
      expect(await registry.getPastVotes(opA.address, b3 - 1)).to.equal(1_000n * TOKEN);
      expect(await registry.getPastVotes(opA.address, b3)).to.equal(1_200n * TOKEN);
    });

    it("removes the votes of stake that starts unbonding, the operator's included", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA } = f;
      await registerNode(f, opA, NodeRole.Edge, 1_000n * TOKEN);
      await expect(registry.connect(opA).unbond(opA.address, 1_000n * TOKEN))
        .to.emit(registry, "StakeVotesChanged")
        .withArgs(opA.address, 1_000n * TOKEN, 0);
      expect(await registry.getVotes(opA.address)).to.equal(0n);
      await time.increase(300);
      await (await registry.connect(opA).withdraw()).wait();
      expect(await registry.getVotes(opA.address)).to.equal(0n);
    });

    it("lowers the operator's votes at once on a slash and a delegator's after syncVotes", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, alice, bob, slasher } = f;
      await registerNode(f, opA, NodeRole.Edge, 2_000n * TOKEN);
      await (await registry.connect(alice).delegate(opA.address, 1_000n * TOKEN)).wait();
      await expect(registry.connect(slasher).slash(opA.address, 1_000, false))
        .to.emit(registry, "StakeVotesChanged")
        .withArgs(opA.address, 2_000n * TOKEN, 1_800n * TOKEN);
      expect(await registry.getVotes(opA.address)).to.equal(1_800n * TOKEN);
      expect(await registry.getVotes(alice.address)).to.equal(1_000n * TOKEN);

      const tx = registry.connect(bob).syncVotes(opA.address, alice.address);
      await expect(tx)
        .to.emit(registry, "StakeVotesChanged")
        .withArgs(alice.address, 1_000n * TOKEN, 900n * TOKEN);
      expect(await registry.getVotes(alice.address)).to.equal(900n * TOKEN);
      await expect(registry.syncVotes(opA.address, alice.address)).not.to.emit(registry, "StakeVotesChanged");
    });

    it("syncs a delegator's votes node by node", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, opB, alice, slasher } = f;
      await registerNode(f, opA, NodeRole.Edge, 2_000n * TOKEN);
      await registerNode(f, opB, NodeRole.Edge, 2_000n * TOKEN);
      await (await registry.connect(alice).delegate(opA.address, 1_000n * TOKEN)).wait();
      await (await registry.connect(alice).delegate(opB.address, 400n * TOKEN)).wait();
      await (await registry.connect(slasher).slash(opA.address, 5_000, false)).wait();
      await (await registry.syncVotes(opB.address, alice.address)).wait();
      expect(await registry.getVotes(alice.address)).to.equal(1_400n * TOKEN);
      await (await registry.syncVotes(opA.address, alice.address)).wait();
      expect(await registry.getVotes(alice.address)).to.equal(900n * TOKEN);
    });

    it("brings a delegator's votes up to date at its next bond after a slash", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, alice, slasher } = f;
      await registerNode(f, opA, NodeRole.Edge, 2_000n * TOKEN);
      await (await registry.connect(alice).delegate(opA.address, 1_000n * TOKEN)).wait();
      await (await registry.connect(slasher).slash(opA.address, 2_000, false)).wait();
      await (await registry.connect(alice).delegate(opA.address, 200n * TOKEN)).wait();
      expect(await registry.getVotes(alice.address)).to.equal(await registry.stakeOf(opA.address, alice.address));
      expect(await registry.getVotes(alice.address)).to.equal(1_000n * TOKEN);
    });

    it("refuses a lookup at the current block or later", async () => {
      const { registry, alice } = await loadFixture(stakingFixture);
      const current = await registry.clock();
      await expect(registry.getPastVotes(alice.address, current))
        .to.be.revertedWithCustomError(registry, "StakingFutureLookup")
        .withArgs(current, current);
      await expect(registry.getPastVotes(alice.address, current + 1_000n))
        .to.be.revertedWithCustomError(registry, "StakingFutureLookup")
        .withArgs(current + 1_000n, current);
      expect(await registry.getPastVotes(alice.address, current - 1n)).to.equal(0n);
    });
  });

  describe("activeNodes", () => {
    it("pages through the nodes of one role by offset and limit and reports the total", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, opB, opC, alice } = f;
      await registerNode(f, opA);
      await registerNode(f, opB);
      await registerNode(f, opC);
      await registerNode(f, alice, NodeRole.Watchdog);
      const page = async (offset: number, limit: number) => {
        const [nodes, total] = await registry.activeNodes(NodeRole.Edge, offset, limit);
        return { operators: nodes.map((n) => n.operator), total };
      };
      expect(await page(0, 2)).to.deep.equal({ operators: [opA.address, opB.address], total: 3n });
      expect(await page(2, 2)).to.deep.equal({ operators: [opC.address], total: 3n });
      expect(await page(1, 1)).to.deep.equal({ operators: [opB.address], total: 3n });
      expect(await page(3, 2)).to.deep.equal({ operators: [], total: 3n });
      expect(await page(10, 5)).to.deep.equal({ operators: [], total: 3n });
      expect(await page(0, 0)).to.deep.equal({ operators: [], total: 3n });
      const [watchdogs, watchdogTotal] = await registry.activeNodes(NodeRole.Watchdog, 0, 10);
      expect(watchdogTotal).to.equal(1n);
      expect(watchdogs.map((n) => n.operator)).to.deep.equal([alice.address]);
      expect((await registry.activeNodes(NodeRole.Guardian, 0, 10)).total).to.equal(0n);
    });

    it("accepts the largest limit at any offset, to mean 'the rest'", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, opB, opC } = f;
      await registerNode(f, opA);
      await registerNode(f, opB);
      await registerNode(f, opC);
      const [all] = await registry.activeNodes(NodeRole.Edge, 0, ethers.MaxUint256);
      expect(all.map((n) => n.operator)).to.deep.equal([opA.address, opB.address, opC.address]);
      const [rest, total] = await registry.activeNodes(NodeRole.Edge, 1, ethers.MaxUint256);
      expect(rest.map((n) => n.operator)).to.deep.equal([opB.address, opC.address]);
      expect(total).to.equal(3n);
      const [none] = await registry.activeNodes(NodeRole.Edge, ethers.MaxUint256, ethers.MaxUint256);
      expect(none).to.have.length(0);
    });

    it("filters out jailed nodes and nodes under their minimum but still counts them in the total", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, opB, opC, slasher } = f;
      await registerNode(f, opA);
      await registerNode(f, opB, NodeRole.Edge, 3_000n * TOKEN);
      await registerNode(f, opC);
      await (await registry.connect(slasher).slash(opA.address, 10, false)).wait(); // under the minimum
      await (await registry.connect(slasher).slash(opB.address, 10, true)).wait(); // jailed
      const [nodes, total] = await registry.activeNodes(NodeRole.Edge, 0, 3);
      expect(total).to.equal(3n);
      expect(nodes.map((n) => n.operator)).to.deep.equal([opC.address]);
      // A page whose only node is filtered out comes back empty, and paging goes on by the total.
      expect((await registry.activeNodes(NodeRole.Edge, 0, 1)).nodes).to.have.length(0);
      expect((await registry.activeNodes(NodeRole.Edge, 2, 1)).nodes.map((n) => n.operator)).to.deep.equal([
        opC.address,
      ]);
    });

    it("tells in one read whether a node's self-stake meets its minimum, and follows it leaving and returning", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA } = f;
      expect(await registry.nodeStanding(opA.address)).to.deep.equal([0n, 0n, false, ZeroAddress]);
      await expect(registerNode(f, opA)).to.emit(registry, "NodeQualificationChanged").withArgs(opA.address, true);
      expect(await registry.nodeStanding(opA.address)).to.deep.equal([BigInt(NodeRole.Edge), 0n, true, opA.address]);
      await expect(registry.connect(opA).unbond(opA.address, await registry.stakeOf(opA.address, opA.address)))
        .to.emit(registry, "NodeQualificationChanged")
        .withArgs(opA.address, false);
      expect(await registry.nodeStanding(opA.address)).to.deep.equal([BigInt(NodeRole.Edge), 0n, false, opA.address]);
      await (await registry.connect(opA).stake(await f.parameters.minStake(NodeRole.Edge))).wait();
      expect((await registry.nodeStanding(opA.address))[2]).to.equal(true);
    });

    it("stops qualifying when a slash pushes the self-stake under the minimum, and qualifies again after a top-up", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, slasher } = f;
      await registerNode(f, opA); // exactly the minimum: any slash takes it under
      await expect(registry.connect(slasher).slash(opA.address, 100, false))
        .to.emit(registry, "NodeQualificationChanged")
        .withArgs(opA.address, false);
      expect(await registry.nodeStanding(opA.address)).to.deep.equal([BigInt(NodeRole.Edge), 0n, false, opA.address]);
      expect(await registry.isActive(opA.address)).to.equal(false);
      await expect(registry.connect(opA).stake(10n * TOKEN)) // 990 + 10: the minimum again
        .to.emit(registry, "NodeQualificationChanged")
        .withArgs(opA.address, true);
      expect((await registry.nodeStanding(opA.address))[2]).to.equal(true);
    });

    it("keeps a node qualified through a slash that leaves it at or above the minimum", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, slasher } = f;
      await registerNode(f, opA, NodeRole.Edge, 2n * (await f.parameters.minStake(NodeRole.Edge)));
      await expect(registry.connect(slasher).slash(opA.address, 1_000, false)).not.to.emit(
        registry,
        "NodeQualificationChanged",
      );
      expect((await registry.nodeStanding(opA.address))[2]).to.equal(true);
    });

    it("lets anyone refresh a node's standing against a minimum that governance raised", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, parameters, governance, opA, outsider } = f;
      const minimum = await parameters.minStake(NodeRole.Edge);
      await registerNode(f, opA);
      expect(await registry.refreshStanding.staticCall(opA.address)).to.equal(true);
      await expect(registry.connect(outsider).refreshStanding(opA.address)).not.to.emit(
        registry,
        "NodeQualificationChanged",
      );
      await (await parameters.connect(governance).setParameter(parameterIndex("MinStakeEdge"), minimum + 1n)).wait();
      // The recorded standing is that of the last stake change, until someone refreshes it.
      expect((await registry.nodeStanding(opA.address))[2]).to.equal(true);
      await expect(registry.connect(outsider).refreshStanding(opA.address))
        .to.emit(registry, "NodeQualificationChanged")
        .withArgs(opA.address, false);
      expect((await registry.nodeStanding(opA.address))[2]).to.equal(false);
      await expect(registry.refreshStanding(outsider.address))
        .to.be.revertedWithCustomError(registry, "StakingNotRegistered")
        .withArgs(outsider.address);
    });

    it("reads the same list one entry at a time, with each node's activity, for on-chain draws", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, opB, slasher } = f;
      await registerNode(f, opA);
      await registerNode(f, opB, NodeRole.Edge, 3_000n * TOKEN);
      await (await registry.connect(slasher).slash(opB.address, 10, true)).wait(); // jailed
      expect(await registry.stakedNodeCount(NodeRole.Edge)).to.equal(2n);
      expect(await registry.stakedNodeCount(NodeRole.Watchdog)).to.equal(0n);
      expect(await registry.stakedNodeAt(NodeRole.Edge, 0)).to.deep.equal([opA.address, true]);
      expect(await registry.stakedNodeAt(NodeRole.Edge, 1)).to.deep.equal([opB.address, false]);
      await expect(registry.stakedNodeAt(NodeRole.Edge, 2)).to.be.revertedWithPanic(0x32);
    });

    it("returns each listed node's full view", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA } = f;
      await registerNode(f, opA);
      const [[listed]] = await registry.activeNodes(NodeRole.Edge, 0, 1);
      const direct = await registry.node(opA.address);
      expect(plainView(listed)).to.deep.equal(plainView(direct));
    });
  });

  describe("node", () => {
    it("describes a registered node field by field", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, alice, bob } = f;
      await (
        await registry.connect(opA).register(NodeRole.Guardian, PEER_ID, MULTIADDRS, bob.address, 1_234, 2_500n * TOKEN)
      ).wait();
      await (await registry.connect(alice).delegate(opA.address, 700n * TOKEN)).wait();
      await (await registry.connect(alice).unbond(opA.address, 200n * TOKEN)).wait();
      const view = await registry.node(opA.address);
      expect(view.operator).to.equal(opA.address);
      expect(view.role).to.equal(NodeRole.Guardian);
      expect(view.signer).to.equal(bob.address);
      expect(view.peerId).to.equal(PEER_ID);
      expect([...view.multiaddrs]).to.deep.equal(MULTIADDRS);
      expect(view.commissionBps).to.equal(1_234n);
      expect(view.jailedUntil).to.equal(0n);
      expect(view.selfStake).to.equal(2_500n * TOKEN);
      expect(view.delegatedStake).to.equal(500n * TOKEN);
      expect(view.unbondingStake).to.equal(200n * TOKEN);
      expect(view.active).to.equal(true);
    });

    it("reports role and jail end in one call, as the rollup's per-slot checks read them", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, slasher } = f;
      expect(await registry.nodeStatus(opA.address)).to.deep.equal([BigInt(NodeRole.None), 0n]);
      await registerNode(f, opA, NodeRole.Watchdog);
      expect(await registry.nodeStatus(opA.address)).to.deep.equal([BigInt(NodeRole.Watchdog), 0n]);
      const tx = await registry.connect(slasher).slash(opA.address, 0, true);
      const jailedUntil = BigInt(await minedAt(tx)) + 600n;
      expect(await registry.nodeStatus(opA.address)).to.deep.equal([BigInt(NodeRole.Watchdog), jailedUntil]);
      expect((await registry.node(opA.address)).jailedUntil).to.equal(jailedUntil);
    });

    it("describes an unregistered address as an empty, inactive node", async () => {
      const { registry, outsider } = await loadFixture(stakingFixture);
      const view = await registry.node(outsider.address);
      expect(view.operator).to.equal(outsider.address);
      expect(view.role).to.equal(NodeRole.None);
      expect(view.signer).to.equal(ethers.ZeroAddress);
      expect(view.peerId).to.equal("");
      expect(view.multiaddrs).to.have.length(0);
      expect(view.selfStake + view.delegatedStake + view.unbondingStake).to.equal(0n);
      expect(view.active).to.equal(false);
      expect(await registry.isActive(outsider.address)).to.equal(false);
      expect(await registry.roleOf(outsider.address)).to.equal(NodeRole.None);
      expect(await registry.signerOf(outsider.address)).to.equal(ethers.ZeroAddress);
    });
  });
});

describe("NodeRegistry: stake hook, jail history, registration epoch", () => {
  /** The staking fixture with a StakeHookProbe (a test double that records each call) as the stake hook. */
  async function probeFixture() {
    const f = await stakingFixture();
    const probe = await new StakeHookProbe__factory(f.deployer).deploy(await f.registry.getAddress());
    await (await f.registry.connect(f.governance).setStakeHook(await probe.getAddress())).wait();
    return { ...f, probe };
  }

  /** Slashes `operator` with a jail at exactly `at` (unix seconds); returns the transaction. */
  async function jailAt(f: Fixture, operator: HardhatEthersSigner, at: bigint): Promise<ContractTransactionResponse> {
    await time.setNextBlockTimestamp(at);
    const tx = await f.registry.connect(f.slasher).slash(operator.address, 0, true);
    await tx.wait();
    return tx;
  }

  /** The jail terms of `operator` as plain pairs. */
  async function terms(f: Fixture, operator: HardhatEthersSigner): Promise<bigint[][]> {
    return (await f.registry.jailTermsOf(operator.address)).map((t) => [t.fromEpoch, t.throughEpoch]);
  }

  describe("setStakeHook", () => {
    it("starts with the reward distributor as the stake hook", async () => {
      const { registry, distributor } = await loadFixture(deployProtocolFixture);
      expect(await registry.stakeHook()).to.equal(await distributor.getAddress());
    });

    it("lets the owner replace the hook or remove it, and says which it replaced", async () => {
      const { registry, governance, distributor, outsider } = await loadFixture(stakingFixture);
      await expect(registry.connect(governance).setStakeHook(outsider.address))
        .to.emit(registry, "StakeHookChanged")
        .withArgs(await distributor.getAddress(), outsider.address);
      await expect(registry.connect(governance).setStakeHook(ethers.ZeroAddress))
        .to.emit(registry, "StakeHookChanged")
        .withArgs(outsider.address, ethers.ZeroAddress);
      expect(await registry.stakeHook()).to.equal(ethers.ZeroAddress);
    });

    it("refuses anyone but the owner", async () => {
      const { registry, slasher, outsider, deployer } = await loadFixture(stakingFixture);
      for (const caller of [outsider, slasher, deployer]) {
        await expect(registry.connect(caller).setStakeHook(caller.address))
          .to.be.revertedWithCustomError(registry, "OwnableUnauthorizedAccount")
          .withArgs(caller.address);
      }
    });
  });

  describe("the stake hook", () => {
    it("is told before every change of a staker's bonded shares, while they are still the old ones", async () => {
      const f = await loadFixture(probeFixture);
      const { registry, probe, opA, alice } = f;
      await expect(registerNode(f, opA, NodeRole.Edge, 2_000n * TOKEN))
        .to.emit(probe, "SharesBeforeChange")
        .withArgs(opA.address, opA.address, 0, 0);
      await expect(registry.connect(opA).stake(500n * TOKEN))
        .to.emit(probe, "SharesBeforeChange")
        .withArgs(opA.address, opA.address, 2_000n * TOKEN, 2_000n * TOKEN);
      await expect(registry.connect(alice).delegate(opA.address, 1_000n * TOKEN))
        .to.emit(probe, "SharesBeforeChange")
        .withArgs(opA.address, alice.address, 0, 2_500n * TOKEN);
      await expect(registry.connect(alice).unbond(opA.address, 400n * TOKEN))
        .to.emit(probe, "SharesBeforeChange")
        .withArgs(opA.address, alice.address, 1_000n * TOKEN, 3_500n * TOKEN);
    });

    it("is not told of changes that leave shares as they are: slash, withdraw, commission, endpoint", async () => {
      const f = await loadFixture(probeFixture);
      const { registry, probe, opA, alice, slasher } = f;
      await registerNode(f, opA);
      await (await registry.connect(alice).delegate(opA.address, 100n * TOKEN)).wait();
      await (await registry.connect(alice).unbond(opA.address, 100n * TOKEN)).wait();
      await time.increase(300);
      for (const tx of [
        registry.connect(slasher).slash(opA.address, 100, true),
        registry.connect(alice).withdraw(),
        registry.connect(opA).setCommission(900),
        registry.connect(opA).updateNode("12D3KooWNewPeer", MULTIADDRS, opA.address),
      ]) {
        await expect(tx).not.to.emit(probe, "SharesBeforeChange");
      }
    });

    it("is not called when none is set: staking works without it", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, governance, opA, alice } = f;
      await (await registry.connect(governance).setStakeHook(ethers.ZeroAddress)).wait();
      await registerNode(f, opA);
      await expect(registry.connect(alice).delegate(opA.address, 100n * TOKEN)).to.emit(registry, "Bonded");
      await expect(registry.connect(alice).unbond(opA.address, 100n * TOKEN)).to.emit(registry, "UnbondingStarted");
    });

    it("blocks bonding while the hook reverts (it is trusted: governance replaces a broken one)", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, governance, distributor, opA } = f;
      // A contract without the hook function: the call reverts without data.
      await (await registry.connect(governance).setStakeHook(await f.token.getAddress())).wait();
      await expect(registerNode(f, opA)).to.be.reverted;
      await (await registry.connect(governance).setStakeHook(await distributor.getAddress())).wait();
      await expect(registerNode(f, opA)).not.to.be.reverted;
    });
  });

  describe("jail history", () => {
    it("records a jail from the slash's epoch through the epoch of its last jailed second", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, parameters, opA, slasher } = f;
      await registerNode(f, opA);
      const epoch = await nextEpoch(f);
      const at = (await parameters.epochStart(epoch)) + 100n;
      await time.setNextBlockTimestamp(at);
      // JailPeriod 600 = one epoch: jailed until 100 s into the next epoch.
      await expect(registry.connect(slasher).slash(opA.address, 100, true))
        .to.emit(registry, "NodeJailed")
        .withArgs(opA.address, epoch, epoch + 1n);
      expect(await terms(f, opA)).to.deep.equal([[epoch, epoch + 1n]]);
      expect(await registry.wasJailedIn(opA.address, epoch - 1n)).to.equal(false);
      expect(await registry.wasJailedIn(opA.address, epoch)).to.equal(true);
      expect(await registry.wasJailedIn(opA.address, epoch + 1n)).to.equal(true);
      expect(await registry.wasJailedIn(opA.address, epoch + 2n)).to.equal(false);
    });

    it("does not reach the next epoch when the jail ends exactly at its start", async () => {
      const f = await loadFixture(stakingFixture);
      const { parameters, opA } = f;
      await registerNode(f, opA);
      const epoch = await nextEpoch(f);
      await time.increaseTo((await parameters.epochStart(epoch + 1n)) - 10n);
      await jailAt(f, opA, await parameters.epochStart(epoch + 1n));
      // Jailed from the first second of E + 1 until the first second of E + 2.
      expect(await terms(f, opA)).to.deep.equal([[epoch + 1n, epoch + 1n]]);
    });

    it("records nothing for a slash that does not jail", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA, slasher } = f;
      await registerNode(f, opA);
      await expect(registry.connect(slasher).slash(opA.address, 100, false)).not.to.emit(registry, "NodeJailed");
      expect(await terms(f, opA)).to.deep.equal([]);
      expect(await registry.wasJailedIn(opA.address, await f.parameters.currentEpoch())).to.equal(false);
    });

    it("extends the running term on a second jail, and the following one when it starts right after", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, parameters, opA, slasher } = f;
      await registerNode(f, opA);
      const epoch = await nextEpoch(f);
      const start = await parameters.epochStart(epoch);
      await jailAt(f, opA, start + 100n); // [E, E + 1]
      await time.setNextBlockTimestamp(start + 700n);
      await expect(registry.connect(slasher).slash(opA.address, 0, true)) // from E + 1: until E + 2
        .to.emit(registry, "NodeJailed")
        .withArgs(opA.address, epoch, epoch + 2n);
      expect(await terms(f, opA)).to.deep.equal([[epoch, epoch + 2n]]);
      // A jail in the epoch right after the term ends continues it.
      await jailAt(f, opA, start + 1_800n + 10n); // epoch E + 3
      expect(await terms(f, opA)).to.deep.equal([[epoch, epoch + 4n]]);
    });

    it("shortens the running term when a later jail ends sooner (a lowered jail period)", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, parameters, governance, opA } = f;
      await registerNode(f, opA);
      const epoch = await nextEpoch(f);
      await (await parameters.connect(governance).setParameter(parameterIndex("JailPeriod"), 3_000n)).wait();
      const start = await parameters.epochStart(epoch);
      await jailAt(f, opA, start + 10n); // until E + 5
      expect(await terms(f, opA)).to.deep.equal([[epoch, epoch + 5n]]);
      await (await parameters.connect(governance).setParameter(parameterIndex("JailPeriod"), 60n)).wait();
      await jailAt(f, opA, start + 20n); // the jail now ends 60 s later, within E
      expect(await terms(f, opA)).to.deep.equal([[epoch, epoch]]);
      expect((await registry.node(opA.address)).jailedUntil).to.equal(start + 80n);
      expect(await registry.wasJailedIn(opA.address, epoch + 1n)).to.equal(false);
    });

    it("keeps separate jails apart and finds each in a long history", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, parameters, opA, opB } = f;
      await registerNode(f, opA);
      await registerNode(f, opB);
      const first = await nextEpoch(f);
      const jailed: bigint[] = [];
      // Jails at E, E + 3, E + 6, ... each covering its epoch and the next.
      for (let i = 0n; i < 7n; i++) {
        const epoch = first + 3n * i;
        await jailAt(f, opA, (await parameters.epochStart(epoch)) + 1n);
        jailed.push(epoch, epoch + 1n);
      }
      expect(await terms(f, opA)).to.have.length(7);
      for (let e = first - 1n; e <= first + 22n; e++) {
        expect(await registry.wasJailedIn(opA.address, e), `epoch ${e}`).to.equal(jailed.includes(e));
      }
      expect(await registry.wasJailedIn(opB.address, first)).to.equal(false);
    });
  });

  describe("registeredIn", () => {
    it("reports the epoch a node registered in, whatever its later commission changes", async () => {
      const f = await loadFixture(stakingFixture);
      const { registry, opA } = f;
      const epoch = await nextEpoch(f);
      await registerNode(f, opA);
      await (await registry.connect(opA).setCommission(1_000)).wait();
      await nextEpoch(f);
      await (await registry.connect(opA).setCommission(1_500)).wait();
      expect(await registry.registeredIn(opA.address)).to.equal(epoch);
    });

    it("refuses an address that never registered", async () => {
      const { registry, outsider } = await loadFixture(stakingFixture);
      await expect(registry.registeredIn(outsider.address))
        .to.be.revertedWithCustomError(registry, "StakingNotRegistered")
        .withArgs(outsider.address);
    });
  });
});
