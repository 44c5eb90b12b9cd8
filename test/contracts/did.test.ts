import { expect } from "chai";
import { ethers } from "hardhat";
import {
  impersonateAccount,
  loadFixture,
  setBalance,
  stopImpersonatingAccount,
  time,
} from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { derivePublicKey } from "@zk-kit/eddsa-poseidon";
import type { ContractTransactionResponse } from "ethers";
import fc from "fast-check";
import { deployProtocolFixture } from "../fixtures/protocol";
import { billKeyHash, IdentityTree, SNARK_SCALAR_FIELD, type BillKey } from "../../sdk/chain/identityTree";
import { NodeRole, parameterIndex, TOKEN } from "../../sdk/chain/protocol";
import type { DidDocumentStruct } from "../../typechain-types/contracts/identity/DidRegistry";

/** `IDidRegistry.DidStatus`. */
const STATUS = { None: 0n, Active: 1n, Revoked: 2n } as const;
/** The deposit the deposit tests set through the timelock (the local deploy sets 0). */
const DEPOSIT = 10n * TOKEN;
/** `LOCAL_PARAMETERS.DidRefundDelay` of the deploy script. */
const REFUND_DELAY = 60n;
/** Any 64 bytes: the registry checks only the length of a signed-prekey signature. */
const SIGNATURE = "0x" + "5a".repeat(64);

const keyCache = new Map<string, BillKey>();
/** A Baby Jubjub public key derived from a private key named `seed`, as a client derives its bill key. */
function billKey(seed: string): BillKey {
  let key = keyCache.get(seed);
  if (key === undefined) {
    const [x, y] = derivePublicKey(`did-test/${seed}`);
    key = { x, y };
    keyCache.set(seed, key);
  }
  return key;
}

function document(overrides: Partial<DidDocumentStruct> = {}): DidDocumentStruct {
  return {
    identityKey: ethers.id("identity key"),
    signingKey: ethers.id("signing key"),
    signedPrekey: ethers.id("signed prekey 1"),
    signedPrekeyId: 1,
    signedPrekeySignature: SIGNATURE,
    deviceKeys: [ethers.id("device 1")],
    homeNodes: [],
    backupPointer: "edge:backup/0xabc",
    ...overrides,
  };
}

async function registerNode(
  base: Awaited<ReturnType<typeof deployProtocolFixture>>,
  operator: HardhatEthersSigner,
  role: NodeRole,
  stake: bigint,
): Promise<void> {
  await base.token.transfer(operator.address, stake);
  await base.token.connect(operator).approve(await base.registry.getAddress(), stake);
  await base.registry
    .connect(operator)
    .register(role, `peer-${operator.address}`, ["/ip4/127.0.0.1/tcp/4001"], operator.address, 0, stake);
}

/** The deployed protocol with four edge nodes and a watchdog registered; `users` are the other signers. */
async function didFixture() {
  const base = await deployProtocolFixture();
  const [, e1, e2, e3, e4, watchdog, ...users] = base.signers;
  const edges = [e1, e2, e3, e4];
  for (const edge of edges) await registerNode(base, edge, NodeRole.Edge, 1_000n * TOKEN);
  await registerNode(base, watchdog, NodeRole.Watchdog, 500n * TOKEN);
  return { ...base, edges, watchdog, users };
}

/** `didFixture` with the governed DidDeposit set to `DEPOSIT` by the timelock, and four users funded and approved. */
async function depositFixture() {
  const ctx = await didFixture();
  const timelock = await ctx.timelock.getAddress();
  await impersonateAccount(timelock);
  await setBalance(timelock, 10n ** 18n);
  await ctx.parameters.connect(await ethers.getSigner(timelock)).setParameter(parameterIndex("DidDeposit"), DEPOSIT);
  await stopImpersonatingAccount(timelock);
  for (const user of ctx.users.slice(0, 4)) {
    await ctx.token.transfer(user.address, 100n * TOKEN);
    await ctx.token.connect(user).approve(await ctx.didRegistry.getAddress(), ethers.MaxUint256);
  }
  return ctx;
}

type Ctx = Awaited<ReturnType<typeof didFixture>>;

describe("DidRegistry", () => {
  describe("register", () => {
    it("stores the DID document, inserts the bill key hash as the next leaf and emits DidRegistered and IdentityTreeChanged", async () => {
      const { didRegistry, users, edges } = await loadFixture(didFixture);
      const [alice, bob] = users;
      const aliceKey = billKey("alice");
      const leaf = billKeyHash(aliceKey);
      const doc = document({ homeNodes: [edges[0].address, edges[1].address] });

      // A single-leaf lean IMT has depth 0 and its root is the leaf itself.
      await expect(didRegistry.connect(alice).register(doc, aliceKey))
        .to.emit(didRegistry, "DidRegistered")
        .withArgs(alice.address, leaf, 0n, 0n)
        .and.to.emit(didRegistry, "IdentityTreeChanged")
        .withArgs(0n, leaf, leaf);

      const record = await didRegistry.didOf(alice.address);
      expect(record.status).to.equal(STATUS.Active);
      expect(record.document.identityKey).to.equal(doc.identityKey);
      expect(record.document.signingKey).to.equal(doc.signingKey);
      expect(record.document.signedPrekey).to.equal(doc.signedPrekey);
      expect(record.document.signedPrekeyId).to.equal(1n);
      expect(record.document.signedPrekeySignature).to.equal(SIGNATURE);
      expect([...record.document.deviceKeys]).to.deep.equal(doc.deviceKeys);
      expect([...record.document.homeNodes]).to.deep.equal(doc.homeNodes);
      expect(record.document.backupPointer).to.equal(doc.backupPointer);
      expect(record.billKey.x).to.equal(aliceKey.x);
      expect(record.billKey.y).to.equal(aliceKey.y);
      expect(record.billKeyHash).to.equal(leaf);
      expect(record.deposit).to.equal(0n);
      expect(record.refundTime).to.equal(0n);
      expect(record.updatedAt).to.equal(BigInt(await time.latest()));

      expect(await didRegistry.isActive(alice.address)).to.equal(true);
      expect(await didRegistry.isActive(bob.address)).to.equal(false);
      expect(await didRegistry.accountOfBillKey(leaf)).to.equal(alice.address);
      expect(await didRegistry.leafIndexOf(leaf)).to.equal(0n);
      expect(await didRegistry.root()).to.equal(leaf);
      expect(await didRegistry.treeInfo()).to.deep.equal([1n, 0n]);

      const bobLeaf = billKeyHash(billKey("bob"));
      await expect(didRegistry.connect(bob).register(document(), billKey("bob")))
        .to.emit(didRegistry, "DidRegistered")
        .withArgs(bob.address, bobLeaf, 1n, 0n);
      expect(await didRegistry.leafIndexOf(bobLeaf)).to.equal(1n);
      expect(await didRegistry.treeInfo()).to.deep.equal([2n, 1n]);
    });

    it("takes the governed deposit when it is nonzero", async () => {
      const { didRegistry, token, users } = await loadFixture(depositFixture);
      const [alice] = users;
      const leaf = billKeyHash(billKey("alice"));
      const tx = didRegistry.connect(alice).register(document(), billKey("alice"));
      await expect(tx).to.changeTokenBalances(token, [alice, didRegistry], [-DEPOSIT, DEPOSIT]);
      await expect(tx).to.emit(didRegistry, "DidRegistered").withArgs(alice.address, leaf, 0n, DEPOSIT);
      expect((await didRegistry.didOf(alice.address)).deposit).to.equal(DEPOSIT);
    });

    it("accepts exactly MAX_DEVICES devices, MAX_HOME_NODES home nodes and a MAX_BACKUP_POINTER_LENGTH-byte pointer", async () => {
      const { didRegistry, users, edges } = await loadFixture(didFixture);
      expect(await didRegistry.MAX_DEVICES()).to.equal(8n);
      expect(await didRegistry.MAX_HOME_NODES()).to.equal(4n);
      expect(await didRegistry.MAX_BACKUP_POINTER_LENGTH()).to.equal(256n);
      const doc = document({
        deviceKeys: Array.from({ length: 8 }, (_, i) => ethers.id(`device ${i}`)),
        homeNodes: edges.map((e) => e.address),
        backupPointer: "b".repeat(256),
      });
      await didRegistry.connect(users[0]).register(doc, billKey("alice"));
      const record = await didRegistry.didOf(users[0].address);
      expect(record.document.deviceKeys).to.have.length(8);
      expect(record.document.homeNodes).to.have.length(4);
      expect(record.document.backupPointer).to.equal("b".repeat(256));
    });

    it("refuses a signed-prekey signature that is not 64 bytes", async () => {
      const { didRegistry, users } = await loadFixture(didFixture);
      for (const length of [0, 63, 65]) {
        const doc = document({ signedPrekeySignature: "0x" + "11".repeat(length) });
        await expect(didRegistry.connect(users[0]).register(doc, billKey("alice")))
          .to.be.revertedWithCustomError(didRegistry, "DidInvalidSignatureLength")
          .withArgs(length);
      }
    });

    it("refuses more than MAX_DEVICES device keys", async () => {
      const { didRegistry, users } = await loadFixture(didFixture);
      const doc = document({ deviceKeys: Array.from({ length: 9 }, (_, i) => ethers.id(`device ${i}`)) });
      await expect(didRegistry.connect(users[0]).register(doc, billKey("alice")))
        .to.be.revertedWithCustomError(didRegistry, "DidTooMany")
        .withArgs(9n, 8n);
    });

    it("refuses more than MAX_HOME_NODES home nodes", async () => {
      const { didRegistry, users, edges } = await loadFixture(didFixture);
      const doc = document({ homeNodes: [...edges, edges[0]].map((e) => e.address) });
      await expect(didRegistry.connect(users[0]).register(doc, billKey("alice")))
        .to.be.revertedWithCustomError(didRegistry, "DidTooMany")
        .withArgs(5n, 4n);
    });

    it("refuses a home node that is not a registered edge node", async () => {
      const { didRegistry, users, edges, watchdog } = await loadFixture(didFixture);
      const stranger = users[5].address;
      for (const bad of [watchdog.address, stranger]) {
        const doc = document({ homeNodes: [edges[0].address, bad] });
        await expect(didRegistry.connect(users[0]).register(doc, billKey("alice")))
          .to.be.revertedWithCustomError(didRegistry, "DidNotEdgeNode")
          .withArgs(bad);
      }
    });

    it("refuses a backup pointer longer than MAX_BACKUP_POINTER_LENGTH bytes, counting UTF-8 bytes", async () => {
      const { didRegistry, users } = await loadFixture(didFixture);
      await expect(didRegistry.connect(users[0]).register(document({ backupPointer: "b".repeat(257) }), billKey("a")))
        .to.be.revertedWithCustomError(didRegistry, "DidBackupPointerTooLong")
        .withArgs(257n, 256n);
      // 129 characters, 258 bytes.
      await expect(didRegistry.connect(users[0]).register(document({ backupPointer: "é".repeat(129) }), billKey("a")))
        .to.be.revertedWithCustomError(didRegistry, "DidBackupPointerTooLong")
        .withArgs(258n, 256n);
    });

    it("refuses a bill key that is not a point of Baby Jubjub", async () => {
      const { didRegistry, users } = await loadFixture(didFixture);
      const { x, y } = billKey("alice");
      await expect(didRegistry.connect(users[0]).register(document(), { x, y: y + 1n }))
        .to.be.revertedWithCustomError(didRegistry, "DidInvalidBillKey")
        .withArgs(x, y + 1n);
      await expect(didRegistry.connect(users[0]).register(document(), { x: 0n, y: 0n }))
        .to.be.revertedWithCustomError(didRegistry, "DidInvalidBillKey")
        .withArgs(0n, 0n);
    });

    it("refuses the identity point (0, 1) as a bill key", async () => {
      const { didRegistry, users } = await loadFixture(didFixture);
      await expect(didRegistry.connect(users[0]).register(document(), { x: 0n, y: 1n }))
        .to.be.revertedWithCustomError(didRegistry, "DidInvalidBillKey")
        .withArgs(0n, 1n);
    });

    it("refuses a coordinate at or above the field even when it reduces to a curve point", async () => {
      const { didRegistry, users } = await loadFixture(didFixture);
      const { x, y } = billKey("alice");
      for (const [bx, by] of [
        [x + SNARK_SCALAR_FIELD, y],
        [x, y + SNARK_SCALAR_FIELD],
        [SNARK_SCALAR_FIELD, 1n], // the identity point, x taken as p
      ]) {
        await expect(didRegistry.connect(users[0]).register(document(), { x: bx, y: by }))
          .to.be.revertedWithCustomError(didRegistry, "DidInvalidBillKey")
          .withArgs(bx, by);
      }
    });

    it("accepts the negated point -P as a bill key distinct from P", async () => {
      const { didRegistry, users } = await loadFixture(didFixture);
      const { x, y } = billKey("alice");
      await didRegistry.connect(users[0]).register(document(), { x, y });
      await didRegistry.connect(users[1]).register(document(), { x: SNARK_SCALAR_FIELD - x, y });
      expect(await didRegistry.treeInfo()).to.deep.equal([2n, 1n]);
    });

    it("refuses a bill key another account has registered", async () => {
      const { didRegistry, users } = await loadFixture(didFixture);
      await didRegistry.connect(users[0]).register(document(), billKey("alice"));
      await expect(didRegistry.connect(users[1]).register(document(), billKey("alice")))
        .to.be.revertedWithCustomError(didRegistry, "DidBillKeyTaken")
        .withArgs(billKeyHash(billKey("alice")));
    });

    it("refuses a second registration by the same account", async () => {
      const { didRegistry, users } = await loadFixture(didFixture);
      await didRegistry.connect(users[0]).register(document(), billKey("alice"));
      await expect(didRegistry.connect(users[0]).register(document(), billKey("alice-2")))
        .to.be.revertedWithCustomError(didRegistry, "DidAlreadyRegistered")
        .withArgs(users[0].address);
    });
  });

  describe("document updates", () => {
    async function registered() {
      const ctx = await loadFixture(didFixture);
      const [alice, bob] = ctx.users;
      await ctx.didRegistry.connect(alice).register(document(), billKey("alice"));
      return { ...ctx, alice, bob };
    }

    it("setIdentityKeys replaces the identity and signing keys together with the signed prekey", async () => {
      const { didRegistry, alice } = await registered();
      const [ik, sk, spk] = [ethers.id("ik 2"), ethers.id("sk 2"), ethers.id("spk 2")];
      const signature = "0x" + "77".repeat(64);
      await expect(didRegistry.connect(alice).setIdentityKeys(ik, sk, spk, 2, signature))
        .to.emit(didRegistry, "IdentityKeysChanged")
        .withArgs(alice.address, ik, sk)
        .and.to.emit(didRegistry, "SignedPrekeyRotated")
        .withArgs(alice.address, 2, spk, signature);
      const record = await didRegistry.didOf(alice.address);
      expect(record.document.identityKey).to.equal(ik);
      expect(record.document.signingKey).to.equal(sk);
      expect(record.document.signedPrekey).to.equal(spk);
      expect(record.document.signedPrekeyId).to.equal(2n);
      expect(record.document.signedPrekeySignature).to.equal(signature);
      expect(record.updatedAt).to.equal(BigInt(await time.latest()));
    });

    it("setIdentityKeys refuses a signature that is not 64 bytes", async () => {
      const { didRegistry, alice } = await registered();
      await expect(
        didRegistry.connect(alice).setIdentityKeys(ethers.ZeroHash, ethers.ZeroHash, ethers.ZeroHash, 2, "0x"),
      )
        .to.be.revertedWithCustomError(didRegistry, "DidInvalidSignatureLength")
        .withArgs(0n);
    });

    it("rotateSignedPrekey replaces the signed prekey, its id and its signature", async () => {
      const { didRegistry, alice } = await registered();
      const spk = ethers.id("spk 3");
      const signature = "0x" + "33".repeat(64);
      await expect(didRegistry.connect(alice).rotateSignedPrekey(spk, 3, signature))
        .to.emit(didRegistry, "SignedPrekeyRotated")
        .withArgs(alice.address, 3, spk, signature);
      const record = await didRegistry.didOf(alice.address);
      expect(record.document.signedPrekey).to.equal(spk);
      expect(record.document.signedPrekeyId).to.equal(3n);
      expect(record.document.signedPrekeySignature).to.equal(signature);
      expect(record.document.identityKey).to.equal(document().identityKey);
    });

    it("rotateSignedPrekey refuses a signature that is not 64 bytes", async () => {
      const { didRegistry, alice } = await registered();
      await expect(didRegistry.connect(alice).rotateSignedPrekey(ethers.ZeroHash, 3, "0x" + "33".repeat(65)))
        .to.be.revertedWithCustomError(didRegistry, "DidInvalidSignatureLength")
        .withArgs(65n);
    });

    it("setDevices replaces the device keys, and refuses more than MAX_DEVICES", async () => {
      const { didRegistry, alice } = await registered();
      const devices = [ethers.id("phone"), ethers.id("laptop")];
      await expect(didRegistry.connect(alice).setDevices(devices))
        .to.emit(didRegistry, "DevicesChanged")
        .withArgs(alice.address, devices);
      expect([...(await didRegistry.didOf(alice.address)).document.deviceKeys]).to.deep.equal(devices);
      await expect(didRegistry.connect(alice).setDevices([]))
        .to.emit(didRegistry, "DevicesChanged")
        .withArgs(alice.address, []);
      expect((await didRegistry.didOf(alice.address)).document.deviceKeys).to.have.length(0);
      const tooMany = Array.from({ length: 9 }, (_, i) => ethers.id(`device ${i}`));
      await expect(didRegistry.connect(alice).setDevices(tooMany))
        .to.be.revertedWithCustomError(didRegistry, "DidTooMany")
        .withArgs(9n, 8n);
    });

    it("setHomeNodes replaces the home nodes, and refuses more than MAX_HOME_NODES or a node that is not an edge node", async () => {
      const { didRegistry, alice, edges, watchdog } = await registered();
      const homes = [edges[2].address, edges[3].address];
      await expect(didRegistry.connect(alice).setHomeNodes(homes))
        .to.emit(didRegistry, "HomeNodesChanged")
        .withArgs(alice.address, homes);
      expect([...(await didRegistry.didOf(alice.address)).document.homeNodes]).to.deep.equal(homes);
      await expect(didRegistry.connect(alice).setHomeNodes([...edges, edges[0]].map((e) => e.address)))
        .to.be.revertedWithCustomError(didRegistry, "DidTooMany")
        .withArgs(5n, 4n);
      await expect(didRegistry.connect(alice).setHomeNodes([watchdog.address]))
        .to.be.revertedWithCustomError(didRegistry, "DidNotEdgeNode")
        .withArgs(watchdog.address);
      await expect(didRegistry.connect(alice).setHomeNodes([ethers.ZeroAddress]))
        .to.be.revertedWithCustomError(didRegistry, "DidNotEdgeNode")
        .withArgs(ethers.ZeroAddress);
    });

    it("setBackupPointer replaces the backup pointer, and refuses one longer than MAX_BACKUP_POINTER_LENGTH", async () => {
      const { didRegistry, alice } = await registered();
      await expect(didRegistry.connect(alice).setBackupPointer("edge:new/0xdef"))
        .to.emit(didRegistry, "BackupPointerChanged")
        .withArgs(alice.address, "edge:new/0xdef");
      expect((await didRegistry.didOf(alice.address)).document.backupPointer).to.equal("edge:new/0xdef");
      await expect(didRegistry.connect(alice).setBackupPointer("p".repeat(300)))
        .to.be.revertedWithCustomError(didRegistry, "DidBackupPointerTooLong")
        .withArgs(300n, 256n);
    });

    it("refuses every update from an account that never registered or has revoked its DID", async () => {
      const { didRegistry, alice, bob } = await registered();
      await didRegistry.connect(alice).revoke([]);
      for (const account of [alice, bob]) {
        const as = didRegistry.connect(account);
        const calls: (() => Promise<ContractTransactionResponse>)[] = [
          () => as.setIdentityKeys(ethers.ZeroHash, ethers.ZeroHash, ethers.ZeroHash, 1, SIGNATURE),
          () => as.rotateSignedPrekey(ethers.ZeroHash, 1, SIGNATURE),
          () => as.setDevices([]),
          () => as.setHomeNodes([]),
          () => as.setBackupPointer(""),
          () => as.rotateBillKey(billKey("fresh"), []),
          () => as.revoke([]),
        ];
        for (const call of calls) {
          await expect(call()).to.be.revertedWithCustomError(didRegistry, "DidNotActive").withArgs(account.address);
        }
      }
    });
  });

  describe("rotateBillKey", () => {
    /** Five DIDs, so that leaf 2's proof has siblings on every level (depth 3). */
    async function fiveRegistered() {
      const ctx = await loadFixture(didFixture);
      const tree = new IdentityTree();
      const accounts = ctx.users.slice(0, 5);
      for (const [i, account] of accounts.entries()) {
        await ctx.didRegistry.connect(account).register(document(), billKey(`user ${i}`));
        tree.insert(billKeyHash(billKey(`user ${i}`)));
      }
      return { ...ctx, tree, accounts };
    }

    it("replaces the leaf in place given the lean-IMT siblings of the current leaf", async () => {
      const { didRegistry, tree, accounts, users } = await fiveRegistered();
      const carol = accounts[2];
      const oldLeaf = billKeyHash(billKey("user 2"));
      const newKey = billKey("user 2 rotated");
      const newLeaf = billKeyHash(newKey);
      const siblings = tree.siblings(2);
      expect(siblings).to.have.length(3); // level 0: leaf 3; level 1: node (0,1); level 2: node (4)

      tree.update(2, newLeaf);
      await expect(didRegistry.connect(carol).rotateBillKey(newKey, siblings))
        .to.emit(didRegistry, "BillKeyRotated")
        .withArgs(carol.address, oldLeaf, newLeaf)
        .and.to.emit(didRegistry, "IdentityTreeChanged")
        .withArgs(2n, newLeaf, tree.root);

      expect(await didRegistry.root()).to.equal(tree.root);
      expect(await didRegistry.treeInfo()).to.deep.equal([5n, 3n]);
      expect(await didRegistry.leafIndexOf(newLeaf)).to.equal(2n);
      await expect(didRegistry.leafIndexOf(oldLeaf)).to.be.revertedWithCustomError(didRegistry, "LeafDoesNotExist");
      expect(await didRegistry.accountOfBillKey(oldLeaf)).to.equal(ethers.ZeroAddress);
      expect(await didRegistry.accountOfBillKey(newLeaf)).to.equal(carol.address);
      const record = await didRegistry.didOf(carol.address);
      expect(record.billKeyHash).to.equal(newLeaf);
      expect([record.billKey.x, record.billKey.y]).to.deep.equal([newKey.x, newKey.y]);
      expect(record.updatedAt).to.equal(BigInt(await time.latest()));
      // The old key is free again: another account may take it.
      await didRegistry.connect(users[10]).register(document(), billKey("user 2"));
    });

    it("refuses siblings of the wrong count with the count the leaf's proof has", async () => {
      const { didRegistry, tree, accounts } = await fiveRegistered();
      const siblings = tree.siblings(2);
      const newKey = billKey("user 2 rotated");
      await expect(didRegistry.connect(accounts[2]).rotateBillKey(newKey, siblings.slice(1)))
        .to.be.revertedWithCustomError(didRegistry, "DidWrongSiblingCount")
        .withArgs(3n, 2n);
      await expect(didRegistry.connect(accounts[2]).rotateBillKey(newKey, [...siblings, 1n]))
        .to.be.revertedWithCustomError(didRegistry, "DidWrongSiblingCount")
        .withArgs(3n, 4n);
      // The last leaf of five has no neighbour below the root: its one sibling is the root's left child.
      await expect(didRegistry.connect(accounts[4]).rotateBillKey(newKey, []))
        .to.be.revertedWithCustomError(didRegistry, "DidWrongSiblingCount")
        .withArgs(1n, 0n);
    });

    it("refuses siblings of the right count with a wrong value (the library's WrongSiblingNodes)", async () => {
      const { didRegistry, tree, accounts } = await fiveRegistered();
      const siblings = tree.siblings(2);
      const newKey = billKey("user 2 rotated");
      for (const at of [0, 1, 2]) {
        const wrong = siblings.slice();
        wrong[at] += 1n;
        await expect(didRegistry.connect(accounts[2]).rotateBillKey(newKey, wrong)).to.be.revertedWithCustomError(
          didRegistry,
          "WrongSiblingNodes",
        );
      }
      // Another leaf's siblings do not prove this one.
      await expect(
        didRegistry.connect(accounts[2]).rotateBillKey(newKey, tree.siblings(1)),
      ).to.be.revertedWithCustomError(didRegistry, "WrongSiblingNodes");
      const outside = [siblings[0] + SNARK_SCALAR_FIELD, siblings[1], siblings[2]];
      await expect(didRegistry.connect(accounts[2]).rotateBillKey(newKey, outside)).to.be.revertedWithCustomError(
        didRegistry,
        "LeafGreaterThanSnarkScalarField",
      );
    });

    it("refuses a new bill key that is in the tree already, its own or another's", async () => {
      const { didRegistry, tree, accounts } = await fiveRegistered();
      for (const seed of ["user 2", "user 0"]) {
        await expect(didRegistry.connect(accounts[2]).rotateBillKey(billKey(seed), tree.siblings(2)))
          .to.be.revertedWithCustomError(didRegistry, "DidBillKeyTaken")
          .withArgs(billKeyHash(billKey(seed)));
      }
    });

    it("refuses a new bill key that is not a valid Baby Jubjub point", async () => {
      const { didRegistry, tree, accounts } = await fiveRegistered();
      await expect(didRegistry.connect(accounts[2]).rotateBillKey({ x: 0n, y: 1n }, tree.siblings(2)))
        .to.be.revertedWithCustomError(didRegistry, "DidInvalidBillKey")
        .withArgs(0n, 1n);
      const { x, y } = billKey("x");
      await expect(didRegistry.connect(accounts[2]).rotateBillKey({ x: y, y: x }, tree.siblings(2)))
        .to.be.revertedWithCustomError(didRegistry, "DidInvalidBillKey")
        .withArgs(y, x);
    });
  });

  describe("revoke and deposit", () => {
    it("removes the leaf, clears accountOfBillKey, locks the deposit until refundTime, then refunds it and lets the address register again", async () => {
      const { didRegistry, parameters, token, users, timelock } = await loadFixture(depositFixture);
      const [alice, bob] = users;
      const tree = new IdentityTree();
      for (const [account, seed] of [
        [alice, "alice"],
        [bob, "bob"],
      ] as const) {
        await didRegistry.connect(account).register(document(), billKey(seed));
        tree.insert(billKeyHash(billKey(seed)));
      }
      // The deposit paid is refunded, whatever the governed deposit is by then.
      await impersonateAccount(await timelock.getAddress());
      await parameters
        .connect(await ethers.getSigner(await timelock.getAddress()))
        .setParameter(parameterIndex("DidDeposit"), 3n * TOKEN);
      await stopImpersonatingAccount(await timelock.getAddress());

      const leaf = billKeyHash(billKey("alice"));
      const siblings = tree.siblings(0);
      tree.remove(0);
      const revoking = await didRegistry.connect(alice).revoke(siblings);
      const refundTime = BigInt(await time.latest()) + REFUND_DELAY;
      await expect(revoking)
        .to.emit(didRegistry, "DidRevoked")
        .withArgs(alice.address, leaf, refundTime)
        .and.to.emit(didRegistry, "IdentityTreeChanged")
        .withArgs(0n, 0n, tree.root);

      expect(await didRegistry.isActive(alice.address)).to.equal(false);
      expect(await didRegistry.accountOfBillKey(leaf)).to.equal(ethers.ZeroAddress);
      await expect(didRegistry.leafIndexOf(leaf)).to.be.revertedWithCustomError(didRegistry, "LeafDoesNotExist");
      expect(await didRegistry.root()).to.equal(tree.root);
      expect(await didRegistry.treeInfo()).to.deep.equal([2n, 1n]); // the removed leaf keeps its index
      const record = await didRegistry.didOf(alice.address);
      expect(record.status).to.equal(STATUS.Revoked);
      expect(record.refundTime).to.equal(refundTime);
      expect(record.deposit).to.equal(DEPOSIT);

      await expect(didRegistry.connect(alice).withdrawDeposit())
        .to.be.revertedWithCustomError(didRegistry, "DidDepositLocked")
        .withArgs(alice.address, refundTime);
      await expect(didRegistry.connect(alice).register(document(), billKey("alice")))
        .to.be.revertedWithCustomError(didRegistry, "DidAlreadyRegistered")
        .withArgs(alice.address);

      await time.setNextBlockTimestamp(refundTime - 1n);
      await expect(didRegistry.connect(alice).withdrawDeposit())
        .to.be.revertedWithCustomError(didRegistry, "DidDepositLocked")
        .withArgs(alice.address, refundTime);

      await time.setNextBlockTimestamp(refundTime);
      const withdrawing = didRegistry.connect(alice).withdrawDeposit();
      await expect(withdrawing).to.changeTokenBalances(token, [alice, didRegistry], [DEPOSIT, -DEPOSIT]);
      await expect(withdrawing).to.emit(didRegistry, "DepositWithdrawn").withArgs(alice.address, DEPOSIT);
      expect((await didRegistry.didOf(alice.address)).status).to.equal(STATUS.None);
      await expect(didRegistry.connect(alice).withdrawDeposit())
        .to.be.revertedWithCustomError(didRegistry, "DidDepositLocked")
        .withArgs(alice.address, 0n);

      // Registering again appends the same key as a new leaf, at the deposit governed now.
      tree.insert(leaf);
      await expect(didRegistry.connect(alice).register(document(), billKey("alice")))
        .to.emit(didRegistry, "DidRegistered")
        .withArgs(alice.address, leaf, 2n, 3n * TOKEN)
        .and.to.emit(didRegistry, "IdentityTreeChanged")
        .withArgs(2n, leaf, tree.root);
      expect(await didRegistry.leafIndexOf(leaf)).to.equal(2n);
      expect(await didRegistry.accountOfBillKey(leaf)).to.equal(alice.address);
    });

    it("refuses withdrawDeposit from an account that has not revoked", async () => {
      const { didRegistry, users } = await loadFixture(didFixture);
      const [alice, bob] = users;
      await didRegistry.connect(alice).register(document(), billKey("alice"));
      for (const account of [alice, bob]) {
        await expect(didRegistry.connect(account).withdrawDeposit())
          .to.be.revertedWithCustomError(didRegistry, "DidDepositLocked")
          .withArgs(account.address, 0n);
      }
    });

    it("refuses revoke with siblings of the wrong count or value", async () => {
      const { didRegistry, users } = await loadFixture(didFixture);
      const tree = new IdentityTree();
      for (const [i, user] of users.slice(0, 3).entries()) {
        await didRegistry.connect(user).register(document(), billKey(`u${i}`));
        tree.insert(billKeyHash(billKey(`u${i}`)));
      }
      await expect(didRegistry.connect(users[0]).revoke([]))
        .to.be.revertedWithCustomError(didRegistry, "DidWrongSiblingCount")
        .withArgs(2n, 0n);
      await expect(didRegistry.connect(users[0]).revoke([1n, 2n])).to.be.revertedWithCustomError(
        didRegistry,
        "WrongSiblingNodes",
      );
      await didRegistry.connect(users[0]).revoke(tree.siblings(0));
    });
  });

  describe("roots", () => {
    it("the root of the empty tree is 0 and 0 is never a known root, even when revoking the only leaf makes it 0 again", async () => {
      const { didRegistry, users } = await loadFixture(didFixture);
      expect(await didRegistry.root()).to.equal(0n);
      expect(await didRegistry.treeInfo()).to.deep.equal([0n, 0n]);
      expect(await didRegistry.isKnownRoot(0n)).to.equal(false);
      await didRegistry.connect(users[0]).register(document(), billKey("alice"));
      await didRegistry.connect(users[0]).revoke([]);
      expect(await didRegistry.root()).to.equal(0n);
      expect(await didRegistry.isKnownRoot(0n)).to.equal(false);
      // The tree grows on from a zero leaf 0.
      const tree = IdentityTree.fromEvents([
        { index: 0n, leaf: billKeyHash(billKey("alice")) },
        { index: 0n, leaf: 0n },
      ]);
      tree.insert(billKeyHash(billKey("bob")));
      await didRegistry.connect(users[1]).register(document(), billKey("bob"));
      expect(await didRegistry.root()).to.equal(tree.root);
      expect(await didRegistry.treeInfo()).to.deep.equal([2n, 1n]);
    });

    it("knows the current root and the ROOT_HISTORY_SIZE - 1 before it, and forgets older ones", async () => {
      const { didRegistry, users } = await loadFixture(didFixture);
      const history = Number(await didRegistry.ROOT_HISTORY_SIZE());
      expect(history).to.equal(64);
      const alice = didRegistry.connect(users[0]);
      // A one-leaf tree: every change is a rotation with no siblings, and the root is the leaf.
      await alice.register(document(), billKey("r0"));
      const roots = [billKeyHash(billKey("r0"))];
      for (let i = 1; i <= history; i += 1) {
        await alice.rotateBillKey(billKey(`r${i}`), []);
        roots.push(billKeyHash(billKey(`r${i}`)));
      }
      // 65 changes: roots[64] is current, roots[1..63] are the 63 before it, roots[0] is forgotten.
      expect(await didRegistry.root()).to.equal(roots[history]);
      expect(await didRegistry.isKnownRoot(roots[0])).to.equal(false);
      for (let i = 1; i <= history; i += 1) expect(await didRegistry.isKnownRoot(roots[i])).to.equal(true);
      await alice.rotateBillKey(billKey("r65"), []);
      expect(await didRegistry.isKnownRoot(roots[1])).to.equal(false);
      expect(await didRegistry.isKnownRoot(roots[2])).to.equal(true);
      expect(await didRegistry.isKnownRoot(billKeyHash(billKey("never")))).to.equal(false);
    });
  });

  describe("identity tree against the TypeScript model", () => {
    /** Drives the contract and the model side by side and checks they agree after every change. */
    class Harness {
      readonly tree = new IdentityTree();
      private readonly seeds = new Map<string, string>();
      private rotations = 0;

      constructor(private readonly ctx: Ctx) {}

      private index(account: HardhatEthersSigner): number {
        const seed = this.seeds.get(account.address);
        if (seed === undefined) throw new Error(`Harness: ${account.address} has no bill key`);
        return this.tree.indexOf(billKeyHash(billKey(seed)));
      }

      async register(account: HardhatEthersSigner, seed: string): Promise<void> {
        const leaf = billKeyHash(billKey(seed));
        const index = this.tree.insert(leaf);
        this.seeds.set(account.address, seed);
        await expect(this.ctx.didRegistry.connect(account).register(document(), billKey(seed)))
          .to.emit(this.ctx.didRegistry, "IdentityTreeChanged")
          .withArgs(index, leaf, this.tree.root);
        await this.check();
      }

      async rotate(account: HardhatEthersSigner): Promise<void> {
        const index = this.index(account);
        const seed = `rotation ${(this.rotations += 1)}`;
        const siblings = this.tree.siblings(index);
        const leaf = billKeyHash(billKey(seed));
        this.tree.update(index, leaf);
        this.seeds.set(account.address, seed);
        await expect(this.ctx.didRegistry.connect(account).rotateBillKey(billKey(seed), siblings))
          .to.emit(this.ctx.didRegistry, "IdentityTreeChanged")
          .withArgs(index, leaf, this.tree.root);
        await this.check();
      }

      async revoke(account: HardhatEthersSigner): Promise<void> {
        const index = this.index(account);
        const siblings = this.tree.siblings(index);
        this.tree.remove(index);
        this.seeds.delete(account.address);
        await expect(this.ctx.didRegistry.connect(account).revoke(siblings))
          .to.emit(this.ctx.didRegistry, "IdentityTreeChanged")
          .withArgs(index, 0n, this.tree.root);
        await this.check();
      }

      async check(): Promise<void> {
        expect(await this.ctx.didRegistry.root()).to.equal(this.tree.root);
        expect(await this.ctx.didRegistry.treeInfo()).to.deep.equal([BigInt(this.tree.size), BigInt(this.tree.depth)]);
        // Revoking the only leaf of a one-leaf tree leaves root 0, which is never known.
        expect(await this.ctx.didRegistry.isKnownRoot(this.tree.root)).to.equal(this.tree.root !== 0n);
      }

      /** Every live account, with its leaf index in the model. */
      live(): { account: HardhatEthersSigner; index: number; leaf: bigint }[] {
        return this.ctx.users
          .filter((u) => this.seeds.has(u.address))
          .map((account) => {
            const index = this.index(account);
            return { account, index, leaf: this.tree.leaves[index] };
          });
      }
    }

    it("keeps the contract root equal to the model root through mixed inserts, rotations and revokes, and fromEvents rebuilds it", async () => {
      const ctx = await loadFixture(didFixture);
      const { didRegistry } = ctx;
      const u = ctx.users;
      const h = new Harness(ctx);

      await h.register(u[0], "u0"); // size 1, depth 0
      await h.rotate(u[0]); // the only leaf
      await h.register(u[1], "u1"); // depth 1
      await h.rotate(u[0]); // left leaf with a right neighbour
      await h.register(u[2], "u2"); // depth 2, leaf 2 without a right neighbour
      await h.revoke(u[1]); // right leaf of a full pair
      await h.register(u[3], "u3"); // fills the pair next to a revoked leaf
      await h.rotate(u[3]); // the last leaf
      await h.register(u[4], "u4"); // depth 3
      await h.rotate(u[2]);
      await h.revoke(u[4]); // the last leaf, alone on its branch
      await h.register(u[5], "u5"); // right neighbour of a removed leaf
      await h.revoke(u[0]);
      await h.register(u[6], "u6");
      await h.rotate(u[5]);
      await h.register(u[7], "u7"); // size 8: a full tree of depth 3
      await h.revoke(u[7]);
      await h.register(u[8], "u8"); // size 9, depth 4
      await h.rotate(u[6]);
      await h.rotate(u[8]);
      await h.revoke(u[3]);

      // A revoked account withdraws and comes back with its first key, as a new leaf.
      await time.increase(REFUND_DELAY);
      await didRegistry.connect(u[1]).withdrawDeposit();
      await h.register(u[1], "u1"); // size 10
      await h.rotate(u[5]);
      await h.rotate(u[1]);

      // Every live leaf, wherever it sits, is proven by exactly the siblings the model gives.
      const live = h.live().sort((a, b) => a.index - b.index);
      expect(live.map((l) => l.index)).to.deep.equal([2, 5, 6, 8, 9]);
      for (const { account, index, leaf } of live) {
        expect(await didRegistry.leafIndexOf(leaf)).to.equal(BigInt(index));
        expect(await didRegistry.accountOfBillKey(leaf)).to.equal(account.address);
        const siblings = h.tree.siblings(index);
        await didRegistry.connect(account).rotateBillKey.staticCall(billKey("probe"), siblings);
        await didRegistry.connect(account).revoke.staticCall(siblings);
      }

      // Replaying the logs rebuilds the same tree, and every event's root is the replayed root at that point.
      const logs = await didRegistry.queryFilter(didRegistry.filters.IdentityTreeChanged());
      expect(logs).to.have.length(24); // 10 registrations, 9 rotations, 5 revocations
      const changes = logs.map((log) => ({ index: log.args.index, leaf: log.args.leaf }));
      const rebuilt = IdentityTree.fromEvents(changes);
      expect(rebuilt.root).to.equal(await didRegistry.root());
      expect(rebuilt.leaves).to.deep.equal(h.tree.leaves);
      for (let n = 1; n <= logs.length; n += 1) {
        expect(IdentityTree.fromEvents(changes.slice(0, n)).root).to.equal(logs[n - 1].args.root);
      }
    });

    it("agrees with the model for random sequences of registrations, rotations and revocations", async () => {
      const op = fc.tuple(fc.constantFrom("register", "rotate", "revoke"), fc.nat());
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 24 }), async (ops) => {
          const ctx = await loadFixture(didFixture);
          const h = new Harness(ctx);
          const fresh = ctx.users.slice();
          for (const [kind, pick] of ops) {
            const live = h.live();
            if (kind === "register" || live.length === 0) {
              const account = fresh.shift();
              if (account !== undefined) await h.register(account, `random ${account.address}`);
            } else if (kind === "rotate") {
              await h.rotate(live[pick % live.length].account);
            } else {
              await h.revoke(live[pick % live.length].account);
            }
          }
          const logs = await ctx.didRegistry.queryFilter(ctx.didRegistry.filters.IdentityTreeChanged());
          const rebuilt = IdentityTree.fromEvents(logs.map((log) => ({ index: log.args.index, leaf: log.args.leaf })));
          expect(rebuilt.root).to.equal(await ctx.didRegistry.root());
        }),
        { numRuns: 20 },
      );
    });
  });

  describe("IdentityTree (sdk model)", () => {
    it("gives the siblings LeanIMT's proof has, one per level where the path has a neighbour", () => {
      const tree = new IdentityTree();
      for (let i = 1n; i <= 5n; i += 1n) tree.insert(i);
      expect(tree.siblings(4)).to.have.length(1); // only the root's left child
      expect(tree.siblings(0)).to.have.length(3); // leaf 1, node (2,3), node (4)
      expect(tree.siblings(0)[0]).to.equal(2n);
    });

    it("refuses a zero, duplicate or out-of-field leaf, an index out of range and a removed leaf", () => {
      const tree = new IdentityTree();
      tree.insert(7n);
      tree.insert(8n);
      expect(() => tree.insert(0n)).to.throw("IdentityTree.insert: expected a leaf with 0 < leaf < field");
      expect(() => tree.insert(SNARK_SCALAR_FIELD)).to.throw("IdentityTree.insert: expected a leaf with 0 < leaf");
      expect(() => tree.insert(7n)).to.throw("IdentityTree.insert: expected a leaf not in the tree");
      expect(() => tree.update(1, 7n)).to.throw("IdentityTree.update: expected a leaf not in the tree");
      expect(() => tree.update(2, 9n)).to.throw("IdentityTree.update: expected an index in [0, 2), got 2");
      expect(() => tree.siblings(-1)).to.throw("IdentityTree.siblings: expected an index in [0, 2)");
      tree.remove(0n);
      expect(tree.has(7n)).to.equal(false);
      expect(tree.indexOf(7n)).to.equal(-1);
      expect(() => tree.remove(0)).to.throw("IdentityTree.remove: expected a live leaf at index 0");
      expect(() => tree.siblings(0)).to.throw("IdentityTree.siblings: expected a live leaf at index 0");
      tree.insert(7n); // a removed value may come back as a new leaf
      expect(tree.indexOf(7n)).to.equal(2);
      expect(() => billKeyHash({ x: SNARK_SCALAR_FIELD, y: 1n })).to.throw(
        "billKeyHash: expected x to be a field element",
      );
    });

    it("fromEvents refuses an event past the end of the tree or inserting 0", () => {
      expect(() => IdentityTree.fromEvents([{ index: 1n, leaf: 5n }])).to.throw(
        "IdentityTree.fromEvents: expected event 0 at an index <= 0, got 1",
      );
      expect(() => IdentityTree.fromEvents([{ index: 0n, leaf: 0n }])).to.throw(
        "IdentityTree.fromEvents: expected event 0 to insert a non-zero leaf at 0, got 0",
      );
    });
  });
});
