/**
 * The constraint count of every main circuit configuration, compared with the committed circuits/constraints.json:
 * any change to a circuit shows up here, and must be recorded on purpose
 * (`UPDATE_CONSTRAINTS=1 npx hardhat test test/circuits/constraints.test.ts`). The production configuration is not
 * compiled here (circom2 cannot within its 4 GB); `npm run bench` estimates it.
 */
import { expect } from "chai";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { compileCircuit, loadCircuitConfigs } from "../../scripts/lib/circom";

/* eslint-disable @typescript-eslint/no-require-imports */
const snarkjs = require("snarkjs") as {
  r1cs: { info(file: string): Promise<{ nConstraints: number; nPubInputs: number; nOutputs: number }> };
};

const RECORD = path.join(__dirname, "..", "..", "circuits", "constraints.json");
const NOT_COMPILED_HERE = new Set(["relay_batch_prod"]);

describe("circuit constraint counts (compared with circuits/constraints.json)", function () {
  const measured: Record<string, { constraints: number; publicInputs: number }> = {};
  const names = Object.keys(loadCircuitConfigs()).filter((name) => !NOT_COMPILED_HERE.has(name));

  for (const name of names) {
    it(`${name} has the recorded number of constraints`, async () => {
      const info = await snarkjs.r1cs.info(compileCircuit(name).r1cs);
      measured[name] = { constraints: info.nConstraints, publicInputs: info.nPubInputs + info.nOutputs };
      if (process.env.UPDATE_CONSTRAINTS) return;
      const recorded = existsSync(RECORD) ? (JSON.parse(readFileSync(RECORD, "utf8")) as typeof measured) : {};
      expect(recorded[name], `${name} is recorded in circuits/constraints.json`).to.deep.equal(measured[name]);
    });
  }

  after(() => {
    if (!process.env.UPDATE_CONSTRAINTS || Object.keys(measured).length === 0) return;
    const recorded = existsSync(RECORD) ? JSON.parse(readFileSync(RECORD, "utf8")) : {};
    writeFileSync(RECORD, JSON.stringify({ ...recorded, ...measured }, null, 2) + "\n");
  });
});
