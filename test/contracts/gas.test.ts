/**
 * Gas of the hot functions of staking, identity and settlement (see test/lib/gasReport.ts). Other areas record theirs
 * in their own gas.*.test.ts files; `npm run gas` runs them all.
 */
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { derivePublicKey } from "@zk-kit/eddsa-poseidon";
import { recordGas } from "../lib/gasReport";
import { deployProtocolFixture } from "../fixtures/protocol";
import { didDocument, rollupFixture } from "../fixtures/rollup";
import { IdentityTree, billKeyHash } from "../../sdk/chain/identityTree";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";

function billKey(seed: string) {
  const [x, y] = derivePublicKey(`gas/${seed}`);
  return { x: BigInt(x), y: BigInt(y) };
}

describe("gas of the hot functions (compared with gas-report.json)", () => {
  it("measures staking: register, stake, delegate, unbond, withdraw, set commission", async () => {
    const { token, registry, signers } = await loadFixture(deployProtocolFixture);
    const [, operator, delegator] = signers;
    const address = await registry.getAddress();
    for (const s of [operator, delegator]) {
      await token.transfer(s.address, 100_000n * TOKEN);
      await token.connect(s).approve(address, 100_000n * TOKEN);
    }
    await recordGas(
      "NodeRegistry.register",
      registry
        .connect(operator)
        .register(NodeRole.Edge, "12D3KooWGasTest", ["/ip4/127.0.0.1/tcp/4001"], operator.address, 500, 2_000n * TOKEN),
    );
    await recordGas("NodeRegistry.stake", registry.connect(operator).stake(1_000n * TOKEN));
    await recordGas(
      "NodeRegistry.delegate (first)",
      registry.connect(delegator).delegate(operator.address, 1_000n * TOKEN),
    );
    await recordGas(
      "NodeRegistry.delegate (more)",
      registry.connect(delegator).delegate(operator.address, 1_000n * TOKEN),
    );
    await recordGas("NodeRegistry.unbond", registry.connect(delegator).unbond(operator.address, 500n * TOKEN));
    await recordGas("NodeRegistry.setCommission", registry.connect(operator).setCommission(800));
    await time.increase(301);
    await recordGas("NodeRegistry.withdraw (one unbonding)", registry.connect(delegator).withdraw());
  });

  it("measures identity: register a DID, rotate the bill key, rotate the signed prekey, revoke", async () => {
    const { token, registry, didRegistry, signers } = await loadFixture(deployProtocolFixture);
    const [, edge, ...users] = signers;
    await token.transfer(edge.address, 10_000n * TOKEN);
    await token.connect(edge).approve(await registry.getAddress(), 10_000n * TOKEN);
    await registry
      .connect(edge)
      .register(NodeRole.Edge, "12D3KooWGasTest", ["/ip4/127.0.0.1/tcp/4001"], edge.address, 0, 1_000n * TOKEN);
    const tree = new IdentityTree();
    // Eight DIDs first, so the measured ones land in a tree of realistic depth rather than an empty one.
    for (let i = 0; i < 8; i++) {
      const key = billKey(`warm-${i}`);
      await didRegistry.connect(users[i]).register(didDocument(edge.address), key);
      tree.insert(billKeyHash(key));
    }
    const user = users[8];
    const key = billKey("measured");
    await recordGas("DidRegistry.register", didRegistry.connect(user).register(didDocument(edge.address), key));
    const index = tree.insert(billKeyHash(key));
    const rotated = billKey("rotated");
    await recordGas(
      "DidRegistry.rotateBillKey",
      didRegistry.connect(user).rotateBillKey(rotated, tree.siblings(index)),
    );
    tree.update(index, billKeyHash(rotated));
    await recordGas(
      "DidRegistry.rotateSignedPrekey",
      didRegistry.connect(user).rotateSignedPrekey("0x" + "66".repeat(32), 2, "0x" + "77".repeat(64)),
    );
    await recordGas("DidRegistry.revoke", didRegistry.connect(user).revoke(tree.siblings(index)));
  });

  it("measures settlement: a guardian's batch of two slots and three bills, with a real proof", async () => {
    const { rollup, guardian, epoch, epochEnd, tree, first } = await loadFixture(rollupFixture);
    await time.increaseTo(epochEnd);
    await recordGas(
      "RelayRollup.submitBatch (2 slots, 3 bills)",
      rollup.connect(guardian).submitBatch(epoch, tree.root, first.slots, first.proof),
    );
  });
});
