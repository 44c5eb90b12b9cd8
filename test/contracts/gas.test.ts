/**
 * Gas of the hot functions, measured from real transactions on a fresh deployment and compared with the committed
 * gas-report.json: a function that grows more than GAS_TOLERANCE fails the run. After an intended change, refresh
 * the report with `UPDATE_GAS_REPORT=1 npx hardhat test test/contracts/gas.test.ts` and commit it.
 */
import { expect } from "chai";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { derivePublicKey } from "@zk-kit/eddsa-poseidon";
import type { ContractTransactionResponse } from "ethers";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { deployProtocolFixture } from "../fixtures/protocol";
import { IdentityTree, billKeyHash } from "../../sdk/chain/identityTree";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";

const REPORT = path.join(__dirname, "..", "..", "gas-report.json");
/** Growth allowed before the comparison fails: enough for compiler noise, far below a real regression. */
const GAS_TOLERANCE = 0.02;

const measured: Record<string, number> = {};

async function gasOf(name: string, tx: Promise<ContractTransactionResponse>): Promise<void> {
  const receipt = await (await tx).wait();
  measured[name] = Number(receipt!.gasUsed);
}

function billKey(seed: string) {
  const [x, y] = derivePublicKey(`gas/${seed}`);
  return { x: BigInt(x), y: BigInt(y) };
}

function document(homeNode: string) {
  return {
    identityKey: "0x" + "11".repeat(32),
    signingKey: "0x" + "22".repeat(32),
    signedPrekey: "0x" + "33".repeat(32),
    signedPrekeyId: 1,
    signedPrekeySignature: "0x" + "44".repeat(64),
    deviceKeys: ["0x" + "55".repeat(32)],
    homeNodes: [homeNode],
    backupPointer: "edge:backup/0x1234",
  };
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
    await gasOf(
      "NodeRegistry.register",
      registry.connect(operator).register(NodeRole.Edge, "12D3KooWGasTest", ["/ip4/127.0.0.1/tcp/4001"], operator.address, 500, 2_000n * TOKEN),
    );
    await gasOf("NodeRegistry.stake", registry.connect(operator).stake(1_000n * TOKEN));
    await gasOf("NodeRegistry.delegate (first)", registry.connect(delegator).delegate(operator.address, 1_000n * TOKEN));
    await gasOf("NodeRegistry.delegate (more)", registry.connect(delegator).delegate(operator.address, 1_000n * TOKEN));
    await gasOf("NodeRegistry.unbond", registry.connect(delegator).unbond(operator.address, 500n * TOKEN));
    await gasOf("NodeRegistry.setCommission", registry.connect(operator).setCommission(800));
    await ethersIncrease(301);
    await gasOf("NodeRegistry.withdraw (one unbonding)", registry.connect(delegator).withdraw());
  });

  it("measures identity: register a DID, rotate the bill key, rotate the signed prekey, revoke", async () => {
    const { token, registry, didRegistry, signers } = await loadFixture(deployProtocolFixture);
    const [, edge, ...users] = signers;
    await token.transfer(edge.address, 10_000n * TOKEN);
    await token.connect(edge).approve(await registry.getAddress(), 10_000n * TOKEN);
    await registry.connect(edge).register(NodeRole.Edge, "12D3KooWGasTest", ["/ip4/127.0.0.1/tcp/4001"], edge.address, 0, 1_000n * TOKEN);
    const tree = new IdentityTree();
    // Eight DIDs first, so the measured ones land in a tree of realistic depth rather than an empty one.
    for (let i = 0; i < 8; i++) {
      const key = billKey(`warm-${i}`);
      await didRegistry.connect(users[i]).register(document(edge.address), key);
      tree.insert(billKeyHash(key));
    }
    const user = users[8];
    const key = billKey("measured");
    await gasOf("DidRegistry.register", didRegistry.connect(user).register(document(edge.address), key));
    const index = tree.insert(billKeyHash(key));
    const rotated = billKey("rotated");
    await gasOf("DidRegistry.rotateBillKey", didRegistry.connect(user).rotateBillKey(rotated, tree.siblings(index)));
    tree.update(index, billKeyHash(rotated));
    await gasOf(
      "DidRegistry.rotateSignedPrekey",
      didRegistry.connect(user).rotateSignedPrekey("0x" + "66".repeat(32), 2, "0x" + "77".repeat(64)),
    );
    await gasOf("DidRegistry.revoke", didRegistry.connect(user).revoke(tree.siblings(index)));
  });

  after(function () {
    const rows = Object.entries(measured).map(([name, gas]) => ({ name, gas }));
    if (rows.length === 0) return;
    const committed: Record<string, number> = existsSync(REPORT) ? JSON.parse(readFileSync(REPORT, "utf8")) : {};
    console.log("\n    gas report (measured | committed)");
    for (const { name, gas } of rows) {
      const before = committed[name];
      const change = before ? ` (${gas >= before ? "+" : ""}${(((gas - before) / before) * 100).toFixed(1)}%)` : " (new)";
      console.log(`      ${name.padEnd(42)} ${String(gas).padStart(9)} | ${String(before ?? "-").padStart(9)}${change}`);
    }
    if (process.env.UPDATE_GAS_REPORT) {
      writeFileSync(REPORT, JSON.stringify({ ...committed, ...measured }, null, 2) + "\n");
      console.log(`    written to ${REPORT}`);
    }
  });

  it("has not grown beyond the committed report", function () {
    if (process.env.UPDATE_GAS_REPORT) this.skip();
    expect(existsSync(REPORT), "gas-report.json is committed").to.equal(true);
    const committed = JSON.parse(readFileSync(REPORT, "utf8")) as Record<string, number>;
    for (const [name, gas] of Object.entries(measured)) {
      expect(committed[name], `${name} is in gas-report.json (refresh it with UPDATE_GAS_REPORT=1)`).to.be.a("number");
      expect(gas, `${name}: ${gas} gas against ${committed[name]} committed`).to.be.at.most(
        Math.floor(committed[name] * (1 + GAS_TOLERANCE)),
      );
    }
  });
});

async function ethersIncrease(seconds: number): Promise<void> {
  const { time } = await import("@nomicfoundation/hardhat-network-helpers");
  await time.increase(seconds);
}
