import { Interface, isCallException, type ErrorDescription } from "ethers";
import {
  DidRegistry__factory,
  NodeRegistry__factory,
  ProtocolParameters__factory,
  QualityOracle__factory,
  RewardDistributor__factory,
  RewardPool__factory,
  SendGovernor__factory,
  SendTimelock__factory,
  SendToken__factory,
} from "../../typechain-types";

/** Every custom error any protocol contract can revert with, so a revert from a nested call decodes too. */
const ERRORS = new Interface(
  dedupe([
    ...NodeRegistry__factory.abi,
    ...DidRegistry__factory.abi,
    ...ProtocolParameters__factory.abi,
    ...SendToken__factory.abi,
    ...RewardPool__factory.abi,
    ...QualityOracle__factory.abi,
    ...RewardDistributor__factory.abi,
    ...SendGovernor__factory.abi,
    ...SendTimelock__factory.abi,
  ]).filter((fragment) => fragment.type === "error"),
);

function dedupe<T extends { type: string; name?: string; inputs?: readonly { type: string }[] }>(items: T[]): T[] {
  const seen = new Set<string>();
  return items.filter((item) => {
    const key = `${item.type}:${item.name ?? ""}(${(item.inputs ?? []).map((i) => i.type).join(",")})`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Decodes revert data into the custom error it carries, or undefined. */
export function decodeRevert(data: string | undefined | null): ErrorDescription | undefined {
  if (!data || data === "0x") return undefined;
  try {
    return ERRORS.parseError(data) ?? undefined;
  } catch {
    return undefined;
  }
}

/** Finds revert data anywhere in an ethers or provider error. */
function revertData(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 6 && current && typeof current === "object"; depth++) {
    const record = current as Record<string, unknown>;
    if (typeof record.data === "string" && record.data.startsWith("0x")) return record.data;
    current = record.info ?? record.error ?? record.cause;
    if (current && typeof current === "object" && "error" in (current as object)) {
      current = (current as Record<string, unknown>).error;
    }
  }
  return undefined;
}

/** One line saying why a transaction failed: the decoded custom error with its arguments when there is one. */
export function describeError(error: unknown): string {
  const decoded = decodeRevert(revertData(error));
  if (decoded) {
    const args = decoded.fragment.inputs.map((input, i) => `${input.name || i}=${String(decoded.args[i])}`);
    return `${decoded.name}(${args.join(", ")})`;
  }
  if (isCallException(error) && error.reason) return `reverted: ${error.reason}`;
  if (error instanceof Error) return error.message.split("\n")[0];
  return String(error);
}
