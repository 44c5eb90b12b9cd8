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

interface DevnetTaskArgs {
  port: number;
  edges: number;
  epochLength: number;
  basePort: number;
  metricsPort: number;
  dataDir: string;
  noScenario: boolean;
  noNodes: boolean;
  noCompile: boolean;
}

task("devnet", "Runs the whole network on 127.0.0.1: chain, protocol, nodes, and a demo scenario, until Ctrl-C")
  .addOptionalParam("port", "JSON-RPC port", 8545, types.int)
  .addOptionalParam("edges", "Edge nodes to register and run (3 to 10)", 3, types.int)
  .addOptionalParam("epochLength", "Seconds per epoch (at least 60)", 300, types.int)
  .addOptionalParam("basePort", "libp2p TCP port of the first edge node; the others follow", 4001, types.int)
  .addOptionalParam("metricsPort", "Health and metrics port of the first edge node; the others follow", 9101, types.int)
  .addOptionalParam("dataDir", "Folder for node keys and state", ".devnet", types.string)
  .addFlag("noScenario", "Start the network without running the demo scenario")
  .addFlag("noNodes", "Only the chain and the registrations: run the nodes yourself (npm run node)")
  .addFlag("noCompile", "Do not compile first (the contracts, circuits and bindings are current)")
  .setAction(async (args: DevnetTaskArgs, hre) => {
    if (hre.network.name !== "hardhat") throw new Error("devnet: runs its own in-process chain; do not pass --network");
    if (args.edges < 3 || args.edges > 10) throw new Error(`--edges: expected 3 to 10, got ${args.edges}`);
    if (args.epochLength < 60) throw new Error(`--epoch-length: expected at least 60 seconds, got ${args.epochLength}`);
    if (!args.noCompile) await hre.run("compile", { quiet: true });
    const { setUpDevnet, startDevnetNodes, DEFAULT_DEVNET_OPTIONS, DEFAULT_DAEMON_OPTIONS } =
      require("./lib/devnet") as typeof import("./lib/devnet");
    const { runDevnetScenario } = require("./lib/scenario") as typeof import("./lib/scenario");
    const { parseLogLevel } = require("../node/log") as typeof import("../node/log");
    const { NodeRole } = require("../sdk/chain/protocol") as typeof import("../sdk/chain/protocol");
    const log = (line: string) => console.log(line);

    // Ctrl-C once: stop everything cleanly (also in the middle of the scenario); twice: leave at once.
    const interrupted = new AbortController();
    const onSignal = () => {
      if (interrupted.signal.aborted) process.exit(130);
      log("\nstopping (Ctrl-C again to leave at once)");
      interrupted.abort(new Error("devnet: interrupted"));
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);

    const server = (await hre.run(TASK_NODE_CREATE_SERVER, {
      hostname: "127.0.0.1",
      port: args.port,
      provider: hre.network.provider,
    })) as { listen(): Promise<{ address: string; port: number }>; close(): Promise<void> };
    let daemons: Awaited<ReturnType<typeof startDevnetNodes>> | undefined;
    try {
      const { address, port } = await server.listen();
      log(`chain: JSON-RPC on http://${address}:${port} (chain id 31337), epochs of ${args.epochLength} s`);
      const signers = await hre.ethers.getSigners();
      const setup = await setUpDevnet(signers, {
        ...DEFAULT_DEVNET_OPTIONS,
        edges: args.edges,
        epochLength: args.epochLength,
        basePort: args.basePort,
        dataDir: args.dataDir,
        log,
      });
      const provider = hre.ethers.provider as unknown as import("ethers").Provider;
      const daemonOptions = {
        ...DEFAULT_DAEMON_OPTIONS,
        provider,
        metricsBasePort: args.metricsPort,
        logLevel: parseLogLevel(process.env.SEND_LOG_LEVEL) ?? "error",
        log,
      };
      if (!args.noNodes) {
        log("\nstarting the daemons (JSON logs on stderr; SEND_LOG_LEVEL=info shows more)");
        daemons = await startDevnetNodes(setup, signers, daemonOptions);
        if (!args.noScenario) {
          log("\nrunning the demo scenario (--no-scenario skips it)");
          await runDevnetScenario(
            {
              setup,
              daemons,
              signers,
              provider,
              rpc: (method, params) => hre.network.provider.send(method, params),
              minProbes: daemonOptions.minProbes,
              signal: interrupted.signal,
            },
            log,
          );
          log("\nscenario done.");
        }
      }
      const edges = setup.nodes.filter((n) => n.role === NodeRole.Edge);
      log(`\nThe network is running on 127.0.0.1. Point your own client at it:`);
      log(`  chain      http://127.0.0.1:${port}, deployments/localhost.json`);
      log(`  edge nodes ${edges.map((n) => `${n.name} ${n.operator}`).join(", ")}`);
      log(`  SDK        docs/SDK.md (SendingClient.create with homeNodes: [an edge node operator above])`);
      if (args.noNodes) log(`  nodes      not started (--no-nodes): npm run node -- start --devnet-node 1 (and 2, 3)`);
      log(`  operator   npm run operator -- status --account 1`);
      log(`             npm run operator -- nodes --role edge`);
      log(
        `             npm run operator -- delegate --account ${setup.firstHolderAccount} --operator ${edges[0].operator} --amount 100`,
      );
      log(`(development accounts come from the public Hardhat mnemonic; account 0 is the deployer)`);
      log(`\nrunning; Ctrl-C stops`);
      if (!interrupted.signal.aborted) {
        await new Promise((resolve) => interrupted.signal.addEventListener("abort", resolve, { once: true }));
      }
    } catch (error) {
      if (!interrupted.signal.aborted) {
        console.error(`\ndevnet failed: ${(error as Error).stack ?? String(error)}`);
        process.exitCode = 1;
      }
    } finally {
      await daemons?.stop();
      await server.close();
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      log("stopped");
    }
  });

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
