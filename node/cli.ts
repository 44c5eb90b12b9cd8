/**
 * The edge node daemon's command line: `npm run node -- <command> [options]`.
 *
 *   start    run the edge node until SIGINT or SIGTERM (the default command)
 *   init     create the data directory and the node key; print the peer id and relay key to register
 *   status   print the /health answer of a running node's metrics endpoint
 *
 * Every setting comes from, in increasing priority: the embedded devnet defaults, a JSON config file (`--config` or
 * SEND_NODE_CONFIG), environment variables (SEND_*), then flags. `<command> --help` lists them. Without any operator
 * or signer key the daemon runs as the devnet's first edge node (`npm start` registers it: development account 1 of
 * the public Hardhat mnemonic, data in .devnet/edge-1), and refuses to do so on any chain but a local Hardhat one.
 */
import { HDNodeWallet, JsonRpcProvider } from "ethers";
import { readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { loadDeployment, type Deployment } from "../sdk/chain/deployment";
import { loadNodeKey, relayKeyPairOf } from "./host";
import { runGuardian } from "./guardian";
import { runWatchdog } from "./watchdog";
import { createLogger } from "./log";
import { startEdgeNode, type EdgeNodeConfig } from "./edge";

/** The public Hardhat development mnemonic: the devnet's operators are its accounts 1, 2, 3. */
const DEV_MNEMONIC = "test test test test test test test test test test test junk";
/** Hardhat's chain id: the only chain on which the embedded development keys are used. */
const LOCAL_CHAIN_ID = 31337n;
/** The devnet's edge nodes listen from this port up (scripts/lib/devnet.ts basePort). */
const DEVNET_BASE_PORT = 4001;

/** Embedded defaults: the local devnet `npm start` runs. */
export const DEVNET_DEFAULTS = {
  rpcUrl: "http://127.0.0.1:8545",
  deployment: "deployments/localhost.json",
  devnetNode: 1,
} as const;

/** A mistake in how the command was called: printed with the command's help, exit code 2. */
export class UsageError extends Error {
  readonly code = "USAGE";
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const SETTINGS_HELP = `Settings (flag, environment variable, config file key; flags win, then env, then the file):
  --config FILE        SEND_NODE_CONFIG     JSON file with any of the keys below
  --data-dir DIR       SEND_DATA_DIR        dataDir       node key and database (default .devnet/edge-N)
  --listen ADDR        SEND_LISTEN          listen        TCP multiaddr, repeatable / comma-separated
                                                          (default /ip4/127.0.0.1/tcp/<4000+N>)
  --announce ADDR      SEND_ANNOUNCE        announce      multiaddr to announce instead, repeatable
  --rpc URL            SEND_RPC_URL         rpcUrl        JSON-RPC endpoint (default ${DEVNET_DEFAULTS.rpcUrl})
  --deployment FILE    SEND_DEPLOYMENT      deployment    deployments file (default ${DEVNET_DEFAULTS.deployment})
  --operator ADDR      SEND_OPERATOR        operator      the operator address the node is registered under
  --operator-key HEX   SEND_OPERATOR_KEY    operatorKey   or the operator's key (only its address is used)
  --signer-key HEX     SEND_SIGNER_KEY      signerKey     the registered signer's key (signs StorePromises)
  --metrics-port N     SEND_METRICS_PORT    metricsPort   127.0.0.1 port of /health and /metrics (0: any free)
  --poll-ms N          SEND_POLL_MS         pollMs        how often to look for registry events (default 2000)
  --devnet-node N      SEND_DEVNET_NODE     devnetNode    with no keys given: run as devnet edge node N (default 1)
  --stop-on-stdin-end                                     stop when standard input closes (for supervisors)
  SEND_LOG_LEVEL=debug|info|warn|error|silent             log level of the JSON lines on stderr (default warn)`;

const COMMANDS: Record<string, { summary: string; help: string }> = {
  start: {
    summary: "run the edge node until SIGINT or SIGTERM",
    help: `Usage: npm run node -- start [options]

Starts the edge node: relay, inbox, prekeys, bills, discovery from the NodeRegistry, and the metrics endpoint.
Prints one JSON line on stdout once it is serving: {"event":"started","peerId":…,"addresses":[…],"metricsPort":…}.

${SETTINGS_HELP}`,
  },
  init: {
    summary: "create the data directory and node key; print the peer id and relay key",
    help: `Usage: npm run node -- init [--data-dir DIR] [--config FILE]

Creates the data directory (0700) and the node key (node.key, 0600) if they do not exist, and prints the peer id to
register (npm run operator -- register --peer-id …) and the X25519 relay public key derived from it.`,
  },
  guardian: {
    summary: "run a guardian: collect bills, prove batches, settle them on the rollup",
    help: `Usage: npm run node -- guardian [--operator-key HEX] [--data-dir DIR] [--rpc URL] [--deployment FILE]
                                  [--poll-ms N] [--devnet-account N]

Runs the guardian daemon (node/guardian.ts, docs/OPERATORS.md) until SIGINT or SIGTERM: after each epoch it collects
the edge nodes' bills over libp2p, asks each node's consent to its slot, proves the batch in a worker thread and
submits it to the RelayRollup. Its progress is kept in DIR/guardian-state.json (default .devnet/guardian-cli).

  --operator-key HEX   SEND_OPERATOR_KEY    the registered, staked guardian's key (it pays for the transactions)
  --devnet-account N   SEND_DEVNET_ACCOUNT  with no key given, on a local chain: development account N (default 5,
                                            the devnet's guardian with 3 edge nodes)
  --rpc, --deployment, --data-dir, --poll-ms as for start.`,
  },
  watchdog: {
    summary: "run a watchdog: probe edge nodes, post scores, flag and review",
    help: `Usage: npm run node -- watchdog --operator-key HEX --inbox-signing-key HEX [--home-node ADDR]
                                  [--data-dir DIR] [--rpc URL] [--deployment FILE]

Runs the watchdog daemon (node/watchdog.ts, docs/OPERATORS.md) until SIGINT or SIGTERM: it probes edge nodes through
its own inbox, posts each epoch's quality scores, flags nodes that drop probes and votes on flags it is drawn for.
Its state is kept in DIR/watchdog-state.json (default .devnet/watchdog-cli).

  --operator-key HEX        SEND_OPERATOR_KEY        the registered, staked watchdog's key
  --inbox-signing-key HEX   SEND_INBOX_SIGNING_KEY   Ed25519 secret of the signing key in the watchdog's DID (the DID
                                                     of its operator address; probes arrive in that DID's inbox)
  --home-node ADDR          SEND_HOME_NODE           the edge node probes exit at (default: the DID's first home node)
  --rpc, --deployment, --data-dir as for start.`,
  },
  status: {
    summary: "print the /health answer of a running node",
    help: `Usage: npm run node -- status --metrics-port N [--config FILE]

Asks http://127.0.0.1:N/health and prints the answer; exit code 1 if the node does not answer.`,
  },
};

const GENERAL_HELP = `Usage: npm run node -- <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(9)} ${c.summary}`)
  .join("\n")}

\`npm run node -- <command> --help\` describes each command and its options.`;

const OPTIONS = {
  config: { type: "string" },
  "data-dir": { type: "string" },
  listen: { type: "string", multiple: true },
  announce: { type: "string", multiple: true },
  rpc: { type: "string" },
  deployment: { type: "string" },
  operator: { type: "string" },
  "operator-key": { type: "string" },
  "signer-key": { type: "string" },
  "metrics-port": { type: "string" },
  "poll-ms": { type: "string" },
  "devnet-node": { type: "string" },
  "devnet-account": { type: "string" },
  "inbox-signing-key": { type: "string" },
  "home-node": { type: "string" },
  "stop-on-stdin-end": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** The settings of a run, before they become an EdgeNodeConfig. */
export interface NodeSettings {
  dataDir?: string;
  listen?: string[];
  announce?: string[];
  rpcUrl?: string;
  deployment?: string;
  operator?: string;
  operatorKey?: string;
  signerKey?: string;
  metricsPort?: number;
  pollMs?: number;
  devnetNode?: number;
}

const FILE_KEYS: readonly (keyof NodeSettings)[] = [
  "dataDir",
  "listen",
  "announce",
  "rpcUrl",
  "deployment",
  "operator",
  "operatorKey",
  "signerKey",
  "metricsPort",
  "pollMs",
  "devnetNode",
];

function integer(text: string | number | undefined, what: string, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const value = typeof text === "number" ? text : /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new UsageError(`${what}: expected a whole number from ${min} to ${max}, got '${String(text)}'`);
  }
  return value;
}

const list = (text: string | undefined) =>
  text === undefined
    ? undefined
    : text
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0);

function readConfigFile(file: string): NodeSettings {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new UsageError(`--config: cannot read ${file}: ${(error as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new UsageError(`--config: expected a JSON object in ${file}`);
  }
  const out: NodeSettings = {};
  for (const [key, value] of Object.entries(raw)) {
    if (!FILE_KEYS.includes(key as keyof NodeSettings)) {
      throw new UsageError(`--config: unknown key '${key}' in ${file} (expected one of ${FILE_KEYS.join(", ")})`);
    }
    const expectArray = key === "listen" || key === "announce";
    const expectNumber = key === "metricsPort" || key === "pollMs" || key === "devnetNode";
    const ok = expectArray
      ? Array.isArray(value) && value.every((v) => typeof v === "string")
      : expectNumber
        ? typeof value === "number"
        : typeof value === "string";
    if (!ok) throw new UsageError(`--config: '${key}' in ${file} has the wrong type`);
    (out as Record<string, unknown>)[key] = value;
  }
  return out;
}

/** Merges defaults < config file < env < flags into settings. */
export function resolveSettings(
  values: Record<string, string | string[] | boolean | undefined>,
  env: NodeJS.ProcessEnv,
): NodeSettings {
  const configFile = (values.config as string | undefined) ?? env.SEND_NODE_CONFIG;
  const file = configFile === undefined ? {} : readConfigFile(configFile);
  const fromEnv: NodeSettings = {
    dataDir: env.SEND_DATA_DIR,
    listen: list(env.SEND_LISTEN),
    announce: list(env.SEND_ANNOUNCE),
    rpcUrl: env.SEND_RPC_URL,
    deployment: env.SEND_DEPLOYMENT,
    operator: env.SEND_OPERATOR,
    operatorKey: env.SEND_OPERATOR_KEY,
    signerKey: env.SEND_SIGNER_KEY,
    metricsPort: integer(env.SEND_METRICS_PORT, "SEND_METRICS_PORT", 0, 65_535),
    pollMs: integer(env.SEND_POLL_MS, "SEND_POLL_MS", 10, 3_600_000),
    devnetNode: integer(env.SEND_DEVNET_NODE, "SEND_DEVNET_NODE", 1, 99),
  };
  const flags: NodeSettings = {
    dataDir: values["data-dir"] as string | undefined,
    listen: (values.listen as string[] | undefined)?.flatMap((v) => list(v) ?? []),
    announce: (values.announce as string[] | undefined)?.flatMap((v) => list(v) ?? []),
    rpcUrl: values.rpc as string | undefined,
    deployment: values.deployment as string | undefined,
    operator: values.operator as string | undefined,
    operatorKey: values["operator-key"] as string | undefined,
    signerKey: values["signer-key"] as string | undefined,
    metricsPort: integer(values["metrics-port"] as string | undefined, "--metrics-port", 0, 65_535),
    pollMs: integer(values["poll-ms"] as string | undefined, "--poll-ms", 10, 3_600_000),
    devnetNode: integer(values["devnet-node"] as string | undefined, "--devnet-node", 1, 99),
  };
  const merged: NodeSettings = {};
  for (const layer of [file, fromEnv, flags]) {
    for (const [key, value] of Object.entries(layer)) {
      if (value !== undefined) (merged as Record<string, unknown>)[key] = value;
    }
  }
  integer(merged.metricsPort, "metricsPort", 0, 65_535);
  integer(merged.pollMs, "pollMs", 10, 3_600_000);
  integer(merged.devnetNode, "devnetNode", 1, 99);
  return merged;
}

/** True when no key was given: the node runs as a devnet edge node with a development key. */
const usesDevnetKeys = (s: NodeSettings) =>
  s.operator === undefined && s.operatorKey === undefined && s.signerKey === undefined;

/** The data directory: given, or the devnet node's. */
function dataDirOf(s: NodeSettings): string {
  return s.dataDir ?? path.join(".devnet", `edge-${s.devnetNode ?? DEVNET_DEFAULTS.devnetNode}`);
}

/** The JSON-RPC endpoint and the deployment the settings name (devnet defaults), the file read and checked. */
function chainOf(s: NodeSettings): { rpcUrl: string; deployment: Deployment } {
  try {
    return {
      rpcUrl: s.rpcUrl ?? DEVNET_DEFAULTS.rpcUrl,
      deployment: loadDeployment(s.deployment ?? DEVNET_DEFAULTS.deployment),
    };
  } catch (error) {
    throw new UsageError(`--deployment: ${(error as Error).message}`);
  }
}

/** Turns settings into the configuration of `startEdgeNode`, checking the chain for the devnet keys. */
export async function toEdgeConfig(s: NodeSettings): Promise<EdgeNodeConfig> {
  const { rpcUrl, deployment } = chainOf(s);
  const n = s.devnetNode ?? DEVNET_DEFAULTS.devnetNode;
  let { operatorKey, signerKey } = s;
  if (usesDevnetKeys(s)) {
    if (BigInt(deployment.chainId) !== LOCAL_CHAIN_ID) {
      throw new UsageError(
        `chain ${deployment.chainId} is not a local Hardhat chain: give --operator and --signer-key (or a config file)`,
      );
    }
    const wallet = HDNodeWallet.fromPhrase(DEV_MNEMONIC, undefined, `m/44'/60'/0'/0/${n}`);
    operatorKey = wallet.privateKey;
    signerKey = wallet.privateKey; // the devnet registers each operator as its own signer
  }
  if (signerKey === undefined) throw new UsageError("--signer-key: expected the registered signer's private key");
  if (!/^0x[0-9a-fA-F]{64}$/.test(signerKey)) throw new UsageError("--signer-key: expected 0x and 64 hex digits");
  if (operatorKey !== undefined && !/^0x[0-9a-fA-F]{64}$/.test(operatorKey)) {
    throw new UsageError("--operator-key: expected 0x and 64 hex digits");
  }
  if (operatorKey === undefined && s.operator === undefined) {
    throw new UsageError("--operator: expected the operator address (or --operator-key)");
  }
  return {
    dataDir: dataDirOf(s),
    listen: s.listen ?? [`/ip4/127.0.0.1/tcp/${DEVNET_BASE_PORT + n - 1}`],
    announce: s.announce,
    rpcUrl,
    deployment,
    operatorKey,
    operator: s.operator,
    signerKey,
    metricsPort: s.metricsPort,
    pollMs: s.pollMs,
  };
}

async function start(settings: NodeSettings, stopOnStdinEnd: boolean): Promise<number> {
  const log = createLogger("cli");
  const config = await toEdgeConfig(settings);
  // Fail fast with a clear message when nothing answers at the RPC URL.
  const probe = new JsonRpcProvider(config.rpcUrl, config.deployment.chainId, { staticNetwork: true });
  try {
    await probe.getBlockNumber();
  } catch (error) {
    throw new UsageError(`--rpc: no chain answers at ${config.rpcUrl} (${(error as Error).message.split("\n")[0]})`);
  } finally {
    probe.destroy();
  }
  const node = await startEdgeNode(config);
  process.stdout.write(
    JSON.stringify({
      event: "started",
      peerId: node.peerId,
      operator: node.operator,
      addresses: node.multiaddrs(),
      metricsPort: node.metricsPort ?? null,
    }) + "\n",
  );
  await new Promise<void>((resolve) => {
    const done = (why: string) => {
      log.info("stopping", { why });
      resolve();
    };
    process.once("SIGINT", () => done("SIGINT"));
    process.once("SIGTERM", () => done("SIGTERM"));
    if (stopOnStdinEnd) {
      process.stdin.on("end", () => done("stdin closed"));
      process.stdin.on("close", () => done("stdin closed"));
      process.stdin.resume();
    }
  });
  await node.stop();
  process.stdout.write(JSON.stringify({ event: "stopped", peerId: node.peerId }) + "\n");
  return 0;
}

async function init(settings: NodeSettings): Promise<number> {
  const dataDir = dataDirOf(settings);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const key = await loadNodeKey(dataDir);
  const { peerIdFromPrivateKey } = await import("@libp2p/peer-id");
  const relay = relayKeyPairOf(key);
  process.stdout.write(
    `data directory  ${path.resolve(dataDir)}\n` +
      `peer id         ${peerIdFromPrivateKey(key).toString()}\n` +
      `relay key       0x${Buffer.from(relay.publicKey).toString("hex")}\n` +
      `register it:    npm run operator -- register --peer-id ${peerIdFromPrivateKey(key).toString()} --addr <multiaddr> …\n`,
  );
  return 0;
}

async function status(settings: NodeSettings): Promise<number> {
  if (settings.metricsPort === undefined) throw new UsageError("--metrics-port: expected the node's metrics port");
  try {
    const res = await fetch(`http://127.0.0.1:${settings.metricsPort}/health`, { signal: AbortSignal.timeout(5_000) });
    process.stdout.write(JSON.stringify(await res.json(), null, 2) + "\n");
    return res.ok ? 0 : 1;
  } catch (error) {
    process.stderr.write(`status: no node answers on 127.0.0.1:${settings.metricsPort}: ${(error as Error).message}\n`);
    return 1;
  }
}

/** What the guardian and watchdog commands take beyond the common settings. */
interface DaemonSettings {
  devnetAccount?: number;
  inboxSigningKey?: string;
  homeNode?: string;
}

/** The devnet's guardian with the default three edge nodes: accounts 1-3 edges, 4 watchdog-1, 5 the guardian. */
const DEVNET_GUARDIAN_ACCOUNT = 5;
const HEX_KEY = /^0x[0-9a-fA-F]{64}$/;

/** Runs the guardian or watchdog daemon until SIGINT or SIGTERM. */
async function runDaemon(kind: "guardian" | "watchdog", s: NodeSettings, d: DaemonSettings): Promise<number> {
  const { rpcUrl, deployment } = chainOf(s);
  let key = s.operatorKey;
  if (key === undefined && kind === "guardian") {
    if (BigInt(deployment.chainId) !== LOCAL_CHAIN_ID) {
      throw new UsageError(`chain ${deployment.chainId} is not a local Hardhat chain: give --operator-key`);
    }
    const account = d.devnetAccount ?? DEVNET_GUARDIAN_ACCOUNT;
    key = HDNodeWallet.fromPhrase(DEV_MNEMONIC, undefined, `m/44'/60'/0'/0/${account}`).privateKey;
  }
  if (key === undefined || !HEX_KEY.test(key)) {
    throw new UsageError("--operator-key: expected the daemon operator's private key, 0x and 64 hex digits");
  }
  const dataDir = s.dataDir ?? path.join(".devnet", `${kind}-cli`);
  const logger = createLogger(kind);
  let stop: () => Promise<void>;
  let address: string;
  if (kind === "guardian") {
    const daemon = await runGuardian({
      dataDir,
      rpcUrl,
      deployment,
      guardianKey: key,
      pollIntervalMs: s.pollMs,
      logger,
    });
    ({ address } = daemon);
    stop = () => daemon.stop();
  } else {
    if (d.inboxSigningKey === undefined || !HEX_KEY.test(d.inboxSigningKey)) {
      throw new UsageError("--inbox-signing-key: expected the DID's Ed25519 signing secret, 0x and 64 hex digits");
    }
    const daemon = await runWatchdog({
      dataDir,
      rpcUrl,
      deployment,
      watchdogKey: key,
      inboxSigningKey: d.inboxSigningKey,
      homeNode: d.homeNode,
      logger,
    });
    ({ address } = daemon);
    stop = () => daemon.stop();
  }
  process.stdout.write(JSON.stringify({ event: "started", role: kind, address, dataDir }) + "\n");
  await new Promise<void>((resolve) => {
    process.once("SIGINT", () => resolve());
    process.once("SIGTERM", () => resolve());
  });
  await stop();
  process.stdout.write(JSON.stringify({ event: "stopped", role: kind, address }) + "\n");
  return 0;
}

/** Runs the command line `argv` (without node and script); returns the exit code. */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const first = argv[0];
  const command = first === undefined || first.startsWith("-") ? "start" : first;
  const rest = command === first ? argv.slice(1) : argv;
  if (command === "help" || (argv.length === 1 && (first === "--help" || first === "-h"))) {
    process.stdout.write(GENERAL_HELP + "\n");
    return 0;
  }
  const spec = COMMANDS[command];
  if (spec === undefined) {
    process.stderr.write(`unknown command '${command}'\n\n${GENERAL_HELP}\n`);
    return 2;
  }
  try {
    const { values } = parseArgs({ args: [...rest], options: OPTIONS, allowPositionals: false, strict: true });
    if (values.help === true) {
      process.stdout.write(spec.help + "\n");
      return 0;
    }
    const settings = resolveSettings(values, env);
    if (command === "init") return await init(settings);
    if (command === "status") return await status(settings);
    if (command === "guardian" || command === "watchdog") {
      const daemon: DaemonSettings = {
        devnetAccount: integer(
          (values["devnet-account"] as string | undefined) ?? env.SEND_DEVNET_ACCOUNT,
          "--devnet-account",
          1,
          99,
        ),
        inboxSigningKey: (values["inbox-signing-key"] as string | undefined) ?? env.SEND_INBOX_SIGNING_KEY,
        homeNode: (values["home-node"] as string | undefined) ?? env.SEND_HOME_NODE,
      };
      return await runDaemon(command, settings, daemon);
    }
    return await start(settings, values["stop-on-stdin-end"] === true);
  } catch (error) {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`${(error as Error).message}\n\n${spec.help}\n`);
      return 2;
    }
    process.stderr.write(`${command}: ${(error as Error).message}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
      process.exit(1);
    },
  );
}
