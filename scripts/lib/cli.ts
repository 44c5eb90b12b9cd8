import { formatUnits, HDNodeWallet, JsonRpcProvider, parseUnits, Wallet, type Signer } from "ethers";

/** The public Hardhat development mnemonic: its accounts are funded on every local Hardhat chain. */
export const DEV_MNEMONIC = "test test test test test test test test test test test junk";
/** Hardhat's chain id: the only chain on which `--account N` (a development key) is accepted. */
export const LOCAL_CHAIN_ID = 31337n;

/** A mistake in how a command was called: printed with the command's help, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Parses an amount of whole tokens ("1500", "0.25") into wei; refuses anything else with what was expected. */
export function parseTokens(text: string | undefined, flag: string): bigint {
  if (text === undefined) throw new UsageError(`${flag}: expected an amount of tokens, e.g. ${flag} 1000`);
  if (!/^\d+(\.\d{1,18})?$/.test(text)) {
    throw new UsageError(`${flag}: expected a positive amount of whole tokens (up to 18 decimals), got '${text}'`);
  }
  const wei = parseUnits(text, 18);
  if (wei === 0n) throw new UsageError(`${flag}: expected more than zero tokens`);
  return wei;
}

/** Formats wei as tokens with the unit. */
export function formatTokens(wei: bigint): string {
  return `${formatUnits(wei, 18)} SEND`;
}

/** Parses a whole number within [min, max]. */
export function parseInteger(text: string | undefined, flag: string, min: number, max: number): number {
  if (text === undefined || !/^\d+$/.test(text))
    throw new UsageError(`${flag}: expected a whole number, got '${text}'`);
  const value = Number(text);
  if (value < min || value > max) throw new UsageError(`${flag}: expected ${min} to ${max}, got ${value}`);
  return value;
}

/** Parses an Ethereum address. */
export function parseAddress(text: string | undefined, flag: string): string {
  if (text === undefined || !/^0x[0-9a-fA-F]{40}$/.test(text)) {
    throw new UsageError(`${flag}: expected an address (0x and 40 hex digits), got '${text}'`);
  }
  return text;
}

/** How a command reaches the chain: where, as whom. */
export interface ConnectionOptions {
  rpc: string;
  key?: string;
  account?: string;
}

/**
 * Connects a signer: a private key (`--key` or SEND_PRIVATE_KEY), or on a local Hardhat chain only, development
 * account N of the public Hardhat mnemonic (`--account N`).
 */
export async function connect(options: ConnectionOptions): Promise<{ provider: JsonRpcProvider; signer: Signer }> {
  // No response cache: a command sends transactions back to back, and a cached nonce would be reused.
  const provider = new JsonRpcProvider(options.rpc, undefined, { staticNetwork: true, cacheTimeout: -1 });
  let chainId: bigint;
  try {
    chainId = (await provider.getNetwork()).chainId;
  } catch (error) {
    throw new UsageError(
      `--rpc: no chain answers at ${options.rpc} (${(error as Error).message.split("\n")[0]}); is the devnet running (npm start)?`,
    );
  }
  if (options.key) {
    if (!/^(0x)?[0-9a-fA-F]{64}$/.test(options.key)) throw new UsageError("--key: expected a 32-byte hex private key");
    return { provider, signer: new Wallet(options.key, provider) };
  }
  const index = options.account === undefined ? 0 : parseInteger(options.account, "--account", 0, 999);
  if (chainId !== LOCAL_CHAIN_ID) {
    throw new UsageError(
      `chain ${chainId} is not a local Hardhat chain: give the operator's key with --key or SEND_PRIVATE_KEY`,
    );
  }
  const wallet = HDNodeWallet.fromPhrase(DEV_MNEMONIC, undefined, `m/44'/60'/0'/0/${index}`);
  return { provider, signer: wallet.connect(provider) };
}
