import { expect } from "chai";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { deployProtocolFixture } from "../fixtures/protocol";
import { NodeRole, TOKEN } from "../../sdk/chain/protocol";
import { ClientIdentity, DidClient } from "../../sdk/client";
import { MemoryStorage } from "../../sdk/storage";
import { ChainDirectory, DirectoryError, StaticDirectory, recipientFromId, recipientIdOf } from "../../node/directory";

async function directoryFixture() {
  const base = await deployProtocolFixture();
  const [, e1, e2, alice, bob, carol] = base.signers;
  for (const edge of [e1, e2]) {
    const stake = 1_000n * TOKEN;
    await base.token.transfer(edge.address, stake);
    await base.token.connect(edge).approve(await base.registry.getAddress(), stake);
    await base.registry
      .connect(edge)
      .register(NodeRole.Edge, `peer-${edge.address}`, ["/ip4/127.0.0.1/tcp/4001"], edge.address, 0, stake);
  }
  const open = (signer: HardhatEthersSigner) =>
    ClientIdentity.open({
      signer,
      storage: new MemoryStorage(),
      chainId: base.deployment.chainId,
      didRegistry: base.deployment.contracts.DidRegistry,
      oneTimePrekeys: 1,
    });
  const aliceId = await open(alice);
  await DidClient.connect(base.deployment, alice).register(aliceId, { homeNodes: [e1.address] });
  return { ...base, e1, e2, alice, bob, carol, aliceId, open };
}

describe("node/directory: recipients' signing keys and home nodes from the DidRegistry", function () {
  this.timeout(60_000);

  it("reads an active DID's Ed25519 signing key and home nodes; an unknown account has neither", async () => {
    const { didRegistry, alice, bob, e1, aliceId, deployment } = await loadFixture(directoryFixture);
    const directory = new ChainDirectory(didRegistry, { fromBlock: deployment.startBlock });
    expect(await directory.signingKey(alice.address)).to.deep.equal(aliceId.publicIdentity.signing);
    expect(await directory.signingKey(alice.address.toLowerCase())).to.deep.equal(aliceId.publicIdentity.signing);
    expect(await directory.homeNodes(alice.address)).to.deep.equal([e1.address]);
    expect(await directory.signingKey(bob.address)).to.equal(undefined);
    expect(await directory.homeNodes(bob.address)).to.deep.equal([]);
  });

  it("serves from its cache until a DID event invalidates the entry, then reads the new document", async () => {
    const { didRegistry, alice, bob, e1, e2, open, deployment } = await loadFixture(directoryFixture);
    const directory = new ChainDirectory(didRegistry, { fromBlock: deployment.startBlock });
    await directory.sync();
    expect(await directory.homeNodes(alice.address)).to.deep.equal([e1.address]);
    expect(await directory.signingKey(bob.address)).to.equal(undefined);

    await DidClient.connect(deployment, alice).setHomeNodes([e1.address, e2.address]);
    const bobId = await open(bob);
    await DidClient.connect(deployment, bob).register(bobId, { homeNodes: [e2.address] });
    // Not yet scanned: the cached answers stand (no chain read per request).
    expect(await directory.homeNodes(alice.address)).to.deep.equal([e1.address]);
    expect(await directory.signingKey(bob.address)).to.equal(undefined);

    await directory.sync();
    expect(await directory.homeNodes(alice.address)).to.deep.equal([e1.address, e2.address]);
    expect(await directory.signingKey(bob.address)).to.deep.equal(bobId.publicIdentity.signing);
    expect(await directory.homeNodes(bob.address)).to.deep.equal([e2.address]);
  });

  it("drops a revoked DID's signing key after the DidRevoked event", async () => {
    const { didRegistry, alice, aliceId, deployment } = await loadFixture(directoryFixture);
    const directory = new ChainDirectory(didRegistry, { fromBlock: deployment.startBlock });
    expect(await directory.signingKey(alice.address)).to.deep.equal(aliceId.publicIdentity.signing);
    await DidClient.connect(deployment, alice).revoke(aliceId);
    await directory.sync();
    expect(await directory.signingKey(alice.address)).to.equal(undefined);
    expect(await directory.homeNodes(alice.address)).to.deep.equal([]);
  });

  it("forgets an entry after maxAgeMs even without an event (injected clock)", async () => {
    const { didRegistry, alice, e1, e2, deployment } = await loadFixture(directoryFixture);
    let now = 1_000_000;
    // Scanning starts at the current block: the change below is never seen as an event.
    const directory = new ChainDirectory(didRegistry, { maxAgeMs: 60_000, now: () => now });
    await directory.sync();
    expect(await directory.homeNodes(alice.address)).to.deep.equal([e1.address]);
    await DidClient.connect(deployment, alice).setHomeNodes([e2.address]);
    now += 60_000;
    expect(await directory.homeNodes(alice.address)).to.deep.equal([e1.address]);
    now += 1;
    expect(await directory.homeNodes(alice.address)).to.deep.equal([e2.address]);
  });

  it("scans events in the background after start() and stops cleanly", async () => {
    const { didRegistry, alice, e2, deployment } = await loadFixture(directoryFixture);
    const directory = new ChainDirectory(didRegistry, { pollMs: 20 });
    await directory.start();
    await directory.homeNodes(alice.address);
    await DidClient.connect(deployment, alice).setHomeNodes([e2.address]);
    const deadline = Date.now() + 10_000;
    let homes = await directory.homeNodes(alice.address);
    while (homes[0] !== e2.address && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      homes = await directory.homeNodes(alice.address);
    }
    await directory.stop();
    expect(homes).to.deep.equal([e2.address]);
  });

  it("refuses a recipient that is not an address with DirectoryError", async () => {
    const { didRegistry } = await loadFixture(directoryFixture);
    const directory = new ChainDirectory(didRegistry);
    for (const bad of ["", "0x1234", "alice", "0x" + "g".repeat(40)]) {
      try {
        await directory.signingKey(bad);
        expect.fail(`expected DirectoryError for '${bad}'`);
      } catch (error) {
        expect(error).to.be.instanceOf(DirectoryError);
        expect((error as DirectoryError).code).to.equal("DIRECTORY_BAD_RECIPIENT");
        expect((error as Error).message).to.contain("ChainDirectory.signingKey");
      }
    }
  });

  it("maps wire recipient ids (20 bytes) to addresses and back; a static directory answers the same questions", async () => {
    const { alice, e1, aliceId } = await loadFixture(directoryFixture);
    const id = recipientIdOf(alice.address);
    expect(id.length).to.equal(20);
    expect(recipientFromId(id)).to.equal(alice.address);
    expect(recipientFromId(new Uint8Array(32))).to.equal(undefined);
    const fixed = new StaticDirectory();
    fixed.set(alice.address.toLowerCase(), { signingKey: aliceId.publicIdentity.signing, homeNodes: [e1.address] });
    expect(await fixed.signingKey(alice.address)).to.deep.equal(aliceId.publicIdentity.signing);
    expect(await fixed.homeNodes(alice.address)).to.deep.equal([e1.address]);
    fixed.set(alice.address, undefined);
    expect(await fixed.signingKey(alice.address)).to.equal(undefined);
  });
});
