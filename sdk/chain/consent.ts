/**
 * A node's consent to a rollup slot (contracts/rollup/RelayRollup.sol): the EIP-712 `SlotConsent` its registered
 * signer signs over exactly the slot a guardian will settle for it (epoch, node, prevBound, newBound, work). The
 * rollup refuses a guardian's slot without it, so no guardian can move a node's bound past bills the node holds. The
 * guardian asks the node for it once the slot is built; the node signs only a slot that matches its own bills.
 */
import { Signature, ZeroHash, getAddress, verifyTypedData, type Signer, type TypedDataDomain } from "ethers";
import type { TypedDataField } from "ethers";
import { SLASHING_DOMAIN_NAME, SLASHING_DOMAIN_VERSION } from "./slashing";
import type { RollupSlot } from "../bill/prove";

/** `SlotConsent(uint64 epoch,address node,uint256 prevBound,uint256 newBound,uint256 work)`. */
export const SLOT_CONSENT_TYPES: Record<string, TypedDataField[]> = {
  SlotConsent: [
    { name: "epoch", type: "uint64" },
    { name: "node", type: "address" },
    { name: "prevBound", type: "uint256" },
    { name: "newBound", type: "uint256" },
    { name: "work", type: "uint256" },
  ],
};

/** A consent signature in the compact EIP-2098 form the rollup's `Slot` carries. */
export interface SlotConsentSignature {
  consentR: string;
  consentVS: string;
}

/** Padding slots and a node's own (forced) batch carry no consent. */
export const NO_CONSENT: SlotConsentSignature = { consentR: ZeroHash, consentVS: ZeroHash };

/** The EIP-712 domain of the rollup `verifyingContract` on chain `chainId` (same name and version as slashing). */
export function rollupDomain(chainId: bigint | number, verifyingContract: string): TypedDataDomain {
  return {
    name: SLASHING_DOMAIN_NAME,
    version: SLASHING_DOMAIN_VERSION,
    chainId: BigInt(chainId),
    verifyingContract: getAddress(verifyingContract),
  };
}

function consentValue(epoch: bigint, slot: Pick<RollupSlot, "node" | "prevBound" | "newBound" | "work">) {
  if (epoch < 0n || epoch >= 1n << 64n) throw new Error(`slotConsent: expected a uint64 epoch, got ${epoch}`);
  return {
    epoch,
    node: getAddress(slot.node),
    prevBound: slot.prevBound,
    newBound: slot.newBound,
    work: slot.work,
  };
}

/** Signs the node's consent to `slot` in `epoch` with the node's registered signer. */
export async function signSlotConsent(
  signer: Signer,
  domain: TypedDataDomain,
  epoch: bigint,
  slot: Pick<RollupSlot, "node" | "prevBound" | "newBound" | "work">,
): Promise<SlotConsentSignature> {
  const signature = Signature.from(await signer.signTypedData(domain, SLOT_CONSENT_TYPES, consentValue(epoch, slot)));
  return { consentR: signature.r, consentVS: signature.yParityAndS };
}

/** The address that signed `consent` for `slot` in `epoch` (compare it with the registry's `signerOf(node)`). */
export function recoverSlotConsentSigner(
  domain: TypedDataDomain,
  epoch: bigint,
  slot: Pick<RollupSlot, "node" | "prevBound" | "newBound" | "work">,
  consent: SlotConsentSignature,
): string {
  const signature = Signature.from({ r: consent.consentR, yParityAndS: consent.consentVS });
  return verifyTypedData(domain, SLOT_CONSENT_TYPES, consentValue(epoch, slot), signature);
}
