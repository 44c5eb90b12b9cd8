/**
 * Hardhat tasks: `deploy` (the protocol to any configured network) and `devnet` (a local chain with everything
 * deployed and nodes registered). `npx hardhat help deploy` and `npx hardhat help devnet` print their options.
 * Modules that need the generated bindings are loaded inside the actions, so the config loads before compiling.
 */
import { task, types } from "hardhat/config";
import { TASK_NODE_CREATE_SERVER } from "hardhat/builtin-tasks/task-names";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";

/* eslint-disable @typescript-eslint/no-require-imports */

interface DeployTaskArgs {
  profile?: string;
  out?: string;
  genesis: number;
  votingDelay?: number;
  votingPeriod?: number;
  timelockDelay?: number;
  circuit?: string;
}

task("deploy", "Deploys the whole protocol and writes deployments/<network>.json")
  .addOptionalParam(
    "profile",
    "'local' (short windows, genesis allocation to the deployer) or 'production'",
    undefined,
    types.string,
  )
  .addOptionalParam("out", "Deployments file to write (default deployments/<network>.json)", undefined, types.string)
  .addOptionalParam("genesis", "Unix time at which epoch 0 starts (default: the deploy block)", 0, types.int)
  .addOptionalParam(
    "votingDelay",
    "Blocks between a proposal and its vote (default: the profile's)",
    undefined,
    types.int,
  )
  .addOptionalParam("votingPeriod", "Blocks a vote stays open (default: the profile's)", undefined, types.int)
  .addOptionalParam(
    "timelockDelay",
    "Seconds between queueing and executing (default: the profile's)",
    undefined,
    types.int,
  )
  .addOptionalParam(
    "circuit",
    "Batch circuit whose generated verifier the rollup uses (circuits/config.json)",
    undefined,
    types.string,
  )
  .setAction(async (args: DeployTaskArgs, hre) => {
    await hre.run("compile", { quiet: true });
    const { deployProtocol, localDeployOptions, productionDeployOptions } =
      require("./lib/deploy") as typeof import("./lib/deploy");
    const network = hre.network.name;
    const profile = args.profile ?? (["hardhat", "localhost"].includes(network) ? "local" : "production");
    if (profile !== "local" && profile !== "production") {
      throw new Error(`--profile: expected 'local' or 'production', got '${profile}'`);
    }
    const [deployer] = await hre.ethers.getSigners();
    if (!deployer)
      throw new Error(`network ${network} has no account: set ${network.toUpperCase().replace(/-/g, "_")}_PRIVATE_KEY`);
    const log = (line: string) => console.log(line);
    const base = {
      network,
      genesis: args.genesis,
      log,
      ...(args.votingDelay !== undefined && { votingDelay: args.votingDelay }),
      ...(args.votingPeriod !== undefined && { votingPeriod: args.votingPeriod }),
      ...(args.timelockDelay !== undefined && { timelockDelay: args.timelockDelay }),
      ...(args.circuit !== undefined && { circuit: args.circuit }),
    };
    const options = profile === "local" ? localDeployOptions(deployer.address, base) : productionDeployOptions(base);
    const { deployment } = await deployProtocol(deployer, options);
    const out = args.out ?? path.join("deployments", `${network}.json`);
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(deployment, null, 2) + "\n");
    console.log(`deployments file: ${out}`);
  });

task("devnet", "Runs a local chain on 127.0.0.1 with the protocol deployed and nodes registered, until Ctrl-C")
  .addOptionalParam("port", "JSON-RPC port", 8545, types.int)
  .addOptionalParam("edges", "Edge nodes to register", 3, types.int)
  .addOptionalParam("epochLength", "Seconds per epoch", 600, types.int)
  .addOptionalParam("basePort", "First libp2p TCP port of the nodes", 4001, types.int)
  .addOptionalParam("dataDir", "Folder for node keys and state", ".devnet", types.string)
  .setAction(
    async (args: { port: number; edges: number; epochLength: number; basePort: number; dataDir: string }, hre) => {
      if (hre.network.name !== "hardhat")
        throw new Error("devnet: runs its own in-process chain; do not pass --network");
      if (args.edges < 2 || args.edges > 10) throw new Error(`--edges: expected 2 to 10, got ${args.edges}`);
      await hre.run("compile", { quiet: true });
      const { setUpDevnet, DEFAULT_DEVNET_OPTIONS } = require("./lib/devnet") as typeof import("./lib/devnet");
      const log = (line: string) => console.log(line);

      const server = (await hre.run(TASK_NODE_CREATE_SERVER, {
        hostname: "127.0.0.1",
        port: args.port,
        provider: hre.network.provider,
      })) as {
        listen(): Promise<{ address: string; port: number }>;
        close(): Promise<void>;
        waitUntilClosed(): Promise<void>;
      };
      const { address, port } = await server.listen();
      log(`chain: JSON-RPC on http://${address}:${port} (chain id 31337)`);

      const { nodes, firstHolderAccount } = await setUpDevnet(await hre.ethers.getSigners(), {
        ...DEFAULT_DEVNET_OPTIONS,
        edges: args.edges,
        epochLength: args.epochLength,
        basePort: args.basePort,
        dataDir: args.dataDir,
        log,
      });
      log(`\n${nodes.length} nodes registered with stake. Try:`);
      log(`  npm run operator -- status --account 1`);
      log(`  npm run operator -- nodes --role edge`);
      log(
        `  npm run operator -- delegate --account ${firstHolderAccount} --operator ${nodes[0].operator} --amount 100`,
      );
      log(
        `(development accounts come from the public Hardhat mnemonic; account 0 is the deployer and holds the genesis allocation)`,
      );
      log(`\nrunning; Ctrl-C stops`);

      const stop = () => {
        log("\nstopping");
        void server.close();
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
      await server.waitUntilClosed();
    },
  );

/**
 * Compiling the contracts first builds the circuits that tests use, so the generated verifier always matches the
 * zkey on this machine (the local ceremony differs per machine; the verifier is generated, not committed).
 */
task("compile").setAction(async (args, hre, runSuper) => {
  const { existsSync } = require("node:fs") as typeof import("node:fs");
  if (existsSync(path.join(hre.config.paths.root, "circuits", "config.json"))) {
    const { buildTestCircuits, releaseCurves } = require("./lib/ceremony") as typeof import("./lib/ceremony");
    const quiet = (args as { quiet?: boolean }).quiet;
    await buildTestCircuits((line) => {
      if (!quiet || !/constraints, \d+ public inputs/.test(line)) console.log(line);
    });
    await releaseCurves();
  }
  return runSuper(args);
});
