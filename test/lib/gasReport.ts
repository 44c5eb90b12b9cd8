/**
 * Gas of the hot functions, measured from real transactions and compared with the committed gas-report.json: a
 * function that grows more than GAS_TOLERANCE fails the run. Any test file may record with `recordGas`; the check runs
 * once, after all tests. After an intended change, refresh the report with
 * `UPDATE_GAS_REPORT=1 npm run gas` and commit it.
 */
import { expect } from "chai";
import type { ContractTransactionResponse } from "ethers";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

const REPORT = path.join(__dirname, "..", "..", "gas-report.json");
/** Growth allowed before the comparison fails: enough for compiler noise, far below a real regression. */
export const GAS_TOLERANCE = 0.02;

const measured: Record<string, number> = {};

/** Sends nothing itself: waits for `tx`, records its gas under `name`, and returns the receipt's gas. */
export async function recordGas(name: string, tx: Promise<ContractTransactionResponse>): Promise<bigint> {
  const receipt = await (await tx).wait();
  measured[name] = Number(receipt!.gasUsed);
  return receipt!.gasUsed;
}

function committed(): Record<string, number> {
  return existsSync(REPORT) ? (JSON.parse(readFileSync(REPORT, "utf8")) as Record<string, number>) : {};
}

/** Prints the table and, unless updating, fails on any function above its committed gas plus the tolerance. */
export function checkGasReport(): void {
  const rows = Object.entries(measured);
  if (rows.length === 0) return;
  const before = committed();
  console.log("\n    gas report (measured | committed)");
  for (const [name, gas] of rows) {
    const old = before[name];
    const change = old ? ` (${gas >= old ? "+" : ""}${(((gas - old) / old) * 100).toFixed(1)}%)` : " (new)";
    console.log(`      ${name.padEnd(48)} ${String(gas).padStart(9)} | ${String(old ?? "-").padStart(9)}${change}`);
  }
  if (process.env.UPDATE_GAS_REPORT) {
    writeFileSync(REPORT, JSON.stringify({ ...before, ...measured }, null, 2) + "\n");
    console.log(`    written to ${REPORT}`);
    return;
  }
  for (const [name, gas] of rows) {
    expect(before[name], `${name} is in gas-report.json (refresh it with UPDATE_GAS_REPORT=1 npm run gas)`).to.be.a(
      "number",
    );
    expect(gas, `${name}: ${gas} gas against ${before[name]} committed`).to.be.at.most(
      Math.floor(before[name] * (1 + GAS_TOLERANCE)),
    );
  }
}

// One root-level hook, registered when the first test file imports this module: compare after every test has run.
after("gas report: no hot function above its committed gas", function () {
  checkGasReport();
});
