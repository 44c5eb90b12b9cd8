import "@nomicfoundation/hardhat-toolbox";
import { subtask, type HardhatUserConfig } from "hardhat/config";
import { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } from "hardhat/builtin-tasks/task-names";
import path from "node:path";
import "./scripts/tasks";

/** The compiler comes from the pinned npm `solc` package: it cannot be downloaded on these machines. */
const SOLC_VERSION = "0.8.30";

subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD).setAction(
  async (args: { solcVersion: string }, _hre, runSuper: (a: { solcVersion: string }) => Promise<unknown>) => {
    if (args.solcVersion !== SOLC_VERSION) return runSuper(args);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const solc = require("solc") as { version(): string };
    return {
      compilerPath: path.join(path.dirname(require.resolve("solc/package.json")), "soljson.js"),
      isSolcJs: true,
      version: SOLC_VERSION,
      longVersion: solc.version(),
    };
  },
);

/** Layer-2 networks are read from the environment, so nothing secret lives in the repository. */
function envNetwork(name: string) {
  const url = process.env[`${name}_RPC_URL`];
  if (!url) return undefined;
  const key = process.env[`${name}_PRIVATE_KEY`];
  return { url, accounts: key ? [key] : [] };
}

const networks: HardhatUserConfig["networks"] = {
  hardhat: { allowUnlimitedContractSize: false },
  localhost: { url: process.env.LOCAL_RPC_URL ?? "http://127.0.0.1:8545" },
};
for (const name of ["ARBITRUM", "ARBITRUM_SEPOLIA", "OPTIMISM", "BASE", "BASE_SEPOLIA", "L2"]) {
  const network = envNetwork(name);
  if (network) networks[name.toLowerCase().replace(/_/g, "-")] = network;
}

const config: HardhatUserConfig = {
  solidity: {
    version: SOLC_VERSION,
    settings: { optimizer: { enabled: true, runs: 200 }, evmVersion: "cancun", viaIR: false },
  },
  networks,
  typechain: { outDir: "typechain-types", target: "ethers-v6" },
  mocha: { timeout: 600_000 },
  gasReporter: {
    enabled: process.env.REPORT_GAS !== undefined,
    currency: "USD",
    noColors: true,
    outputFile: process.env.REPORT_GAS_FILE,
  },
};

export default config;
