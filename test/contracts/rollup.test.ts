import { expect } from "chai";
import { ethers } from "hardhat";
import { impersonateAccount, loadFixture, setBalance, time } from "@nomicfoundation/hardhat-network-helpers";
import { keccak256, toUtf8Bytes, getBytes, TypedDataEncoder } from "ethers";
import { didDocument, rollupFixture } from "../fixtures/rollup";
import { billKeyOf, nodeIdFromAddress } from "../../sdk/bill/bill";
import { RELAY_BATCH_TEST_PARAMS } from "../../sdk/bill/batchInput";
import { parameterIndex } from "../../sdk/chain/protocol";
import type { RollupSlot, SolidityProof } from "../../sdk/bill/prove";
import { NO_CONSENT, SLOT_CONSENT_TYPES, recoverSlotConsentSigner, signSlotConsent } from "../../sdk/chain/consent";

const ZERO = "0x0000000000000000000000000000000000000000";
const DUMMY_PROOF: SolidityProof = {
  a: [1n, 2n],
  b: [
    [1n, 2n],
    [3n, 4n],
  ],
  c: [1n, 2n],
};
const PADDING: RollupSlot = { node: ZERO, prevBound: 0n, newBound: 0n, work: 0n, ...NO_CONSENT };

async function afterEpoch(epochEnd: bigint, extra = 0n) {
  await time.increaseTo(epochEnd + extra);
}

describe("RelayRollup", () => {
  describe("settlement with real proofs", () => {
    it("settles a guardian's batch: each node's bound and work, the epoch total and the guardian's share", async () => {
      const { rollup, guardian, edgeA, edgeB, epoch, epochEnd, tree, first } = await loadFixture(rollupFixture);
      await afterEpoch(epochEnd);
      const [slotA, slotB] = first.slots;
      // Recipient 1 claimed 5,000 messages: the circuit credits at most 1,000 per bill.
      expect(slotA.work).to.equal(40n + 1_000n);
      expect(slotB.work).to.equal(7n);
      await expect(rollup.connect(guardian).submitBatch(epoch, tree.root, first.slots, first.proof))
        .to.emit(rollup, "BatchSettled")
        .withArgs(epoch, guardian.address, tree.root, 1_047n, false)
        .and.to.emit(rollup, "SlotSettled")
        .withArgs(epoch, edgeA.address, slotA.newBound, 1_040n);
      expect(await rollup.workOf(edgeA.address, epoch)).to.equal(1_040n);
      expect(await rollup.workOf(edgeB.address, epoch)).to.equal(7n);
      expect(await rollup.boundOf(edgeA.address, epoch)).to.equal(slotA.newBound);
      expect(await rollup.boundOf(edgeB.address, epoch)).to.equal(slotB.newBound);
      expect(await rollup.epochWork(epoch)).to.equal(1_047n);
      expect(await rollup.guardianWorkOf(guardian.address, epoch)).to.equal(1_047n);
      expect(await rollup.epochGuardianWork(epoch)).to.equal(1_047n);
    });

    it("refuses the same bills again: the node's stored bound has moved past them", async () => {
      const { rollup, guardian, edgeA, epoch, epochEnd, tree, first } = await loadFixture(rollupFixture);
      await afterEpoch(epochEnd);
      await rollup.connect(guardian).submitBatch(epoch, tree.root, first.slots, first.proof);
      await expect(rollup.connect(guardian).submitBatch(epoch, tree.root, first.slots, first.proof))
        .to.be.revertedWithCustomError(rollup, "RollupBoundMismatch")
        .withArgs(edgeA.address, epoch, first.slots[0].newBound, 0n);
    });

    it("continues a node's bound in a later batch: recipients above it settle, the work adds up", async () => {
      const { rollup, guardian, edgeA, epoch, epochEnd, tree, first, prove, billFor } =
        await loadFixture(rollupFixture);
      await afterEpoch(epochEnd);
      await rollup.connect(guardian).submitBatch(epoch, tree.root, first.slots, first.proof);
      const bound = first.slots[0].newBound;
      const second = await prove([
        {
          nodeId: nodeIdFromAddress(edgeA.address),
          prevBound: bound,
          bills: [billFor(3, edgeA.address, 9n), billFor(4, edgeA.address, 1n)],
        },
      ]);
      await rollup.connect(guardian).submitBatch(epoch, tree.root, second.slots, second.proof);
      expect(await rollup.workOf(edgeA.address, epoch)).to.equal(1_040n + 10n);
      expect(await rollup.boundOf(edgeA.address, epoch)).to.equal(second.slots[0].newBound);
      expect(await rollup.epochWork(epoch)).to.equal(1_047n + 10n);
    });

    it("refuses a proof whose public inputs were changed (more work claimed than proven)", async () => {
      const { rollup, guardian, epoch, epochEnd, tree, first, consent } = await loadFixture(rollupFixture);
      await afterEpoch(epochEnd);
      // Even with the node's consent to the inflated slot (a node colluding with the guardian), the proof refuses it.
      const inflated = await consent(first.slots.map((s, i) => (i === 0 ? { ...s, work: s.work + 1n } : s)));
      await expect(
        rollup.connect(guardian).submitBatch(epoch, tree.root, inflated, first.proof),
      ).to.be.revertedWithCustomError(rollup, "RollupInvalidProof");
    });

    it("refuses a root the identity registry no longer remembers (64 changes later)", async () => {
      const { rollup, didRegistry, guardian, edgeA, epoch, epochEnd, tree, first } = await loadFixture(rollupFixture);
      const root = tree.root;
      for (let i = 0; i < 64; i++) {
        const wallet = ethers.Wallet.createRandom().connect(ethers.provider);
        await setBalance(wallet.address, 10n ** 18n);
        const key = billKeyOf(getBytes(keccak256(toUtf8Bytes(`rollup-test/filler/${i}`))));
        await didRegistry.connect(wallet).register(didDocument(edgeA.address), key);
      }
      expect(await didRegistry.isKnownRoot(root)).to.equal(false);
      await afterEpoch(epochEnd);
      await expect(rollup.connect(guardian).submitBatch(epoch, root, first.slots, first.proof))
        .to.be.revertedWithCustomError(rollup, "RollupUnknownRoot")
        .withArgs(root);
    });
  });

  describe("who may submit, and when", () => {
    it("refuses a batch for an epoch that has not ended", async () => {
      const { rollup, guardian, epoch, epochEnd, tree, first } = await loadFixture(rollupFixture);
      await expect(rollup.connect(guardian).submitBatch(epoch, tree.root, first.slots, first.proof))
        .to.be.revertedWithCustomError(rollup, "RollupEpochNotEnded")
        .withArgs(epoch, epochEnd);
    });

    it("refuses a batch once the settlement window has closed, and reports the epoch final", async () => {
      const { rollup, parameters, guardian, epoch, epochEnd, tree, first } = await loadFixture(rollupFixture);
      const deadline = epochEnd + (await parameters.get(12 /* SettlementWindow */));
      expect(await rollup.settlementDeadline(epoch)).to.equal(deadline);
      await time.increaseTo(deadline - 1n);
      expect(await rollup.isFinal(epoch)).to.equal(false);
      await time.increaseTo(deadline);
      expect(await rollup.isFinal(epoch)).to.equal(true);
      await expect(rollup.connect(guardian).submitBatch(epoch, tree.root, first.slots, first.proof))
        .to.be.revertedWithCustomError(rollup, "RollupWindowClosed")
        .withArgs(epoch, deadline);
    });

    it("keeps an epoch closed once rewards have fixed it, even after governance lengthens the settlement window", async () => {
      const { rollup, parameters, distributor, timelock, guardian, edgeA, epoch, tree, first } =
        await loadFixture(rollupFixture);
      await time.increaseTo(await rollup.settlementDeadline(epoch));
      await distributor.claim(edgeA.address, epoch);
      expect(await distributor.fixedUntil()).to.equal(epoch + 1n);
      await impersonateAccount(await timelock.getAddress());
      await setBalance(await timelock.getAddress(), 10n ** 18n);
      const asTimelock = await ethers.getSigner(await timelock.getAddress());
      await parameters.connect(asTimelock).setParameter(parameterIndex("SettlementWindow"), 3_600n);
      expect(await rollup.isFinal(epoch)).to.equal(false); // the window alone would reopen it
      await expect(rollup.connect(guardian).submitBatch(epoch, tree.root, first.slots, first.proof))
        .to.be.revertedWithCustomError(rollup, "RollupEpochClaimed")
        .withArgs(epoch, epoch + 1n);
    });

    it("refuses anyone but an active guardian before the forced-inclusion delay", async () => {
      const { rollup, edgeA, outsider, epoch, epochEnd, tree, first } = await loadFixture(rollupFixture);
      await afterEpoch(epochEnd);
      for (const caller of [edgeA, outsider]) {
        await expect(rollup.connect(caller).submitBatch(epoch, tree.root, first.slots, first.proof))
          .to.be.revertedWithCustomError(rollup, "RollupNotAuthorized")
          .withArgs(caller.address, epoch);
      }
    });

    it("accepts an edge node's own batch after the forced-inclusion delay, crediting no guardian", async () => {
      const { rollup, parameters, edgeA, epoch, epochEnd, tree, prove, billFor } = await loadFixture(rollupFixture);
      const own = await prove([
        { nodeId: nodeIdFromAddress(edgeA.address), prevBound: 0n, bills: [billFor(0, edgeA.address, 3n)] },
      ]);
      const delay = await parameters.get(parameterIndex("ForcedInclusionDelay"));
      // The next transaction is mined one second after the latest block: at delay - 1.
      await time.increaseTo(epochEnd + delay - 2n);
      await expect(rollup.connect(edgeA).submitBatch(epoch, tree.root, own.slots, own.proof))
        .to.be.revertedWithCustomError(rollup, "RollupNotAuthorized")
        .withArgs(edgeA.address, epoch);
      await time.setNextBlockTimestamp(epochEnd + delay);
      // The node's own batch is its consent: its slots need no signature.
      const unsigned = own.slots.map((slot) => ({ ...slot, ...NO_CONSENT }));
      await expect(rollup.connect(edgeA).submitBatch(epoch, tree.root, unsigned, own.proof))
        .to.emit(rollup, "BatchSettled")
        .withArgs(epoch, edgeA.address, tree.root, 3n, true);
      expect(await rollup.workOf(edgeA.address, epoch)).to.equal(3n);
      expect(await rollup.epochGuardianWork(epoch)).to.equal(0n);
      expect(await rollup.guardianWorkOf(edgeA.address, epoch)).to.equal(0n);
    });

    it("refuses a node's forced batch that carries another node's slot", async () => {
      const { rollup, parameters, edgeA, epoch, epochEnd, tree, first } = await loadFixture(rollupFixture);
      await time.increaseTo(epochEnd + (await parameters.get(13)));
      await expect(rollup.connect(edgeA).submitBatch(epoch, tree.root, first.slots, first.proof))
        .to.be.revertedWithCustomError(rollup, "RollupNotAuthorized")
        .withArgs(edgeA.address, epoch);
    });

    it("refuses a jailed guardian", async () => {
      const { rollup, registry, slashing, guardian, epoch, epochEnd, tree, first } = await loadFixture(rollupFixture);
      // Jailed through the registry's slash hook, acting as its slasher (the slashing contract).
      await impersonateAccount(await slashing.getAddress());
      await setBalance(await slashing.getAddress(), 10n ** 18n);
      const asSlasher = await ethers.getSigner(await slashing.getAddress());
      await registry.connect(asSlasher).slash(guardian.address, 100, true);
      await afterEpoch(epochEnd);
      await expect(rollup.connect(guardian).submitBatch(epoch, tree.root, first.slots, first.proof))
        .to.be.revertedWithCustomError(rollup, "RollupNotAuthorized")
        .withArgs(guardian.address, epoch);
    });
  });

  describe("the node's consent to each slot a guardian settles", () => {
    it("refuses a guardian's slot without the node's consent: a guardian cannot move a node's bound on its own", async () => {
      // The attack consent stops: a guardian holds a bill for node A from the recipient with the highest order key
      // (its own DID, say) and settles it first, from bound 0; A's real bills (lower keys) could never settle after.
      const { rollup, guardian, edgeA, epoch, epochEnd, tree, prove, billFor } = await loadFixture(rollupFixture);
      const jump = await prove([
        { nodeId: nodeIdFromAddress(edgeA.address), prevBound: 0n, bills: [billFor(5, edgeA.address, 1n)] },
      ]);
      await afterEpoch(epochEnd);
      const unsigned = jump.slots.map((slot) => ({ ...slot, ...NO_CONSENT }));
      await expect(rollup.connect(guardian).submitBatch(epoch, tree.root, unsigned, jump.proof))
        .to.be.revertedWithCustomError(rollup, "RollupNoConsent")
        .withArgs(0, edgeA.address);
      expect(await rollup.boundOf(edgeA.address, epoch)).to.equal(0n);
    });

    it("refuses a consent for other values, another epoch, or by anyone but the node's current signer", async () => {
      const { rollup, registry, guardian, edgeA, edgeB, epoch, epochEnd, tree, first, domain } =
        await loadFixture(rollupFixture);
      await afterEpoch(epochEnd);
      const slot = first.slots[0];
      const submitWith = (consented: RollupSlot) =>
        rollup.connect(guardian).submitBatch(epoch, tree.root, [consented, first.slots[1]], first.proof);
      const noConsent = async (consented: RollupSlot) =>
        expect(submitWith(consented))
          .to.be.revertedWithCustomError(rollup, "RollupNoConsent")
          .withArgs(0, edgeA.address);
      // Consent to less work than the slot claims.
      await noConsent({ ...slot, ...(await signSlotConsent(edgeA, domain, epoch, { ...slot, work: slot.work - 1n })) });
      // Consent for the next epoch.
      await noConsent({ ...slot, ...(await signSlotConsent(edgeA, domain, epoch + 1n, slot)) });
      // Signed by another node's key.
      await noConsent({ ...slot, ...(await signSlotConsent(edgeB, domain, epoch, slot)) });
      // Signed for another contract.
      await noConsent({
        ...slot,
        ...(await signSlotConsent(edgeA, { ...domain, verifyingContract: ZERO.replace(/0$/, "1") }, epoch, slot)),
      });
      // A malformed signature (s above half the order) is refused, not reverted with the library's error.
      await noConsent({ ...slot, consentVS: "0x" + "ff".repeat(32) });
      // The node's old signer after it registered a new one.
      const node = await registry.node(edgeA.address);
      await registry.connect(edgeA).updateNode(node.peerId, [...node.multiaddrs], edgeB.address);
      await noConsent(slot);
      // The consent the fixture made is the node's signer's, as the SDK recovers it.
      expect(recoverSlotConsentSigner(domain, epoch, slot, slot)).to.equal(edgeA.address);
    });

    it("checks the SDK's digest against the contract's", async () => {
      const { rollup, epoch, first, domain } = await loadFixture(rollupFixture);
      const slot = first.slots[0];
      expect(await rollup.consentDigest(epoch, slot)).to.equal(
        TypedDataEncoder.hash(domain, SLOT_CONSENT_TYPES, {
          epoch,
          node: slot.node,
          prevBound: slot.prevBound,
          newBound: slot.newBound,
          work: slot.work,
        }),
      );
    });
  });

  describe("slot checks (before the proof is verified)", () => {
    async function ready() {
      const f = await loadFixture(rollupFixture);
      await afterEpoch(f.epochEnd);
      return f;
    }

    type Ready = Awaited<ReturnType<typeof ready>>;

    /** Slashes `node` through the registry's slash hook, acting as its slasher (the slashing contract). */
    async function slashAsSlasher({ registry, slashing }: Ready, node: string, bps: number, jail: boolean) {
      await impersonateAccount(await slashing.getAddress());
      await setBalance(await slashing.getAddress(), 10n ** 18n);
      await registry.connect(await ethers.getSigner(await slashing.getAddress())).slash(node, bps, jail);
    }

    /** A one-node batch for `node` is refused before its (dummy) proof is looked at. */
    async function expectIneligible({ rollup, guardian, epoch, tree }: Ready, node: string) {
      const slots = [{ node, prevBound: 0n, newBound: 1n, work: 1n, ...NO_CONSENT }, PADDING];
      await expect(rollup.connect(guardian).submitBatch(epoch, tree.root, slots, DUMMY_PROOF))
        .to.be.revertedWithCustomError(rollup, "RollupNodeNotEligible")
        .withArgs(node);
    }

    it("refuses a batch whose slot count is not the circuit's", async () => {
      const { rollup, guardian, epoch, tree } = await ready();
      await expect(rollup.connect(guardian).submitBatch(epoch, tree.root, [PADDING], DUMMY_PROOF))
        .to.be.revertedWithCustomError(rollup, "RollupWrongSlotCount")
        .withArgs(1, RELAY_BATCH_TEST_PARAMS.slots);
    });

    it("refuses a padding slot that carries a bound or work", async () => {
      const { rollup, guardian, epoch, tree } = await ready();
      for (const field of ["prevBound", "newBound", "work", "consentR", "consentVS"] as const) {
        const value = field.startsWith("consent") ? "0x" + "00".repeat(31) + "01" : 1n;
        const slots = [PADDING, { ...PADDING, [field]: value }];
        await expect(rollup.connect(guardian).submitBatch(epoch, tree.root, slots, DUMMY_PROOF))
          .to.be.revertedWithCustomError(rollup, "RollupPaddingSlotNotEmpty")
          .withArgs(1);
      }
    });

    it("refuses a slot for an address that is not an edge node, or for a jailed edge node", async () => {
      const f = await ready();
      for (const node of [f.outsider.address, f.guardian.address]) await expectIneligible(f, node);
      await slashAsSlasher(f, f.edgeC.address, 100, true);
      await expectIneligible(f, f.edgeC.address);
    });

    it("refuses a slot for an edge node whose operator has left (unbonded all its self-stake), even with delegators", async () => {
      const f = await ready();
      const { registry, token, edgeC, outsider } = f;
      // A delegator keeps the node's pool alive; the operator leaves.
      await token.transfer(outsider.address, 10n ** 18n);
      await token.connect(outsider).approve(await registry.getAddress(), 10n ** 18n);
      await registry.connect(outsider).delegate(edgeC.address, 10n ** 18n);
      await registry.connect(edgeC).unbond(edgeC.address, await registry.stakeOf(edgeC.address, edgeC.address));
      expect(await registry.nodeStanding(edgeC.address)).to.deep.equal([1n, 0n, false, edgeC.address]);
      await expectIneligible(f, edgeC.address);
    });

    it("refuses a slot for an edge node that a slash pushed under its minimum self-stake, until it tops up", async () => {
      const f = await ready();
      const { rollup, registry, token, guardian, edgeC, epoch, tree } = f;
      // 1% without jail: the node is free, but its 1,000-token self-stake (the minimum) is now 990.
      await slashAsSlasher(f, edgeC.address, 100, false);
      await expectIneligible(f, edgeC.address);
      const slot = { node: edgeC.address, prevBound: 0n, newBound: 1n, work: 1n };
      const slots = [{ ...slot, ...(await signSlotConsent(edgeC, f.domain, epoch, slot)) }, PADDING];
      await token.transfer(edgeC.address, 10n ** 19n);
      await token.connect(edgeC).approve(await registry.getAddress(), 10n ** 19n);
      await registry.connect(edgeC).stake(10n ** 19n);
      // Eligible again: the batch now gets as far as the proof (a dummy one here).
      await expect(
        rollup.connect(guardian).submitBatch(epoch, tree.root, slots, DUMMY_PROOF),
      ).to.be.revertedWithCustomError(rollup, "RollupInvalidProof");
    });

    it("refuses a bound of 2^200 or more and work of 2^56 or more", async () => {
      const { rollup, guardian, edgeA, epoch, tree } = await ready();
      const submit = (slot: RollupSlot) =>
        rollup.connect(guardian).submitBatch(epoch, tree.root, [slot, PADDING], DUMMY_PROOF);
      const big = 1n << 200n;
      await expect(submit({ node: edgeA.address, prevBound: 0n, newBound: big, work: 1n, ...NO_CONSENT }))
        .to.be.revertedWithCustomError(rollup, "RollupBoundTooLarge")
        .withArgs(big);
      const lots = 1n << 56n;
      await expect(submit({ node: edgeA.address, prevBound: 0n, newBound: 1n, work: lots, ...NO_CONSENT }))
        .to.be.revertedWithCustomError(rollup, "RollupWorkTooLarge")
        .withArgs(lots);
    });

    it("refuses a root the registry never had", async () => {
      const { rollup, guardian, epoch, first } = await ready();
      await expect(rollup.connect(guardian).submitBatch(epoch, 12345n, first.slots, first.proof))
        .to.be.revertedWithCustomError(rollup, "RollupUnknownRoot")
        .withArgs(12345n);
    });

    it("is wired to the generated verifier with the circuit's slot count, and to the reward distributor", async () => {
      const { rollup, verifier, distributor } = await loadFixture(rollupFixture);
      expect(await rollup.verifier()).to.equal(verifier);
      expect(await rollup.rewards()).to.equal(await distributor.getAddress());
      expect(await rollup.slotsPerBatch()).to.equal(BigInt(RELAY_BATCH_TEST_PARAMS.slots));
    });
  });
});
