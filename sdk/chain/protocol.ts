/**
 * Names and numbers that mirror the contracts' enums, so scripts and clients speak of parameters and roles by name.
 * The order of each list is the Solidity enum's order; a test checks both against the deployed contracts.
 */

/** `NodeRole` in contracts/interfaces/INodeRegistry.sol. */
export enum NodeRole {
  None = 0,
  Edge = 1,
  Watchdog = 2,
  Guardian = 3,
}

/** Parses a role name ("edge", "watchdog", "guardian"), case-insensitively. */
export function parseNodeRole(name: string): NodeRole {
  const role = ROLE_NAMES.indexOf(name.toLowerCase() as RoleName);
  if (role <= 0) throw new Error(`parseNodeRole: expected one of edge, watchdog, guardian, got '${name}'`);
  return role as NodeRole;
}

export const ROLE_NAMES = ["none", "edge", "watchdog", "guardian"] as const;
export type RoleName = (typeof ROLE_NAMES)[number];

/** `Parameter` in contracts/interfaces/IProtocolParameters.sol, in enum order. */
export const PARAMETERS = [
  "MinStakeEdge",
  "MinStakeWatchdog",
  "MinStakeGuardian",
  "UnbondingPeriod",
  "EpochLength",
  "CommissionCapBps",
  "SlashStorageBps",
  "SlashEquivocationBps",
  "SlashVotedBps",
  "EmissionPerEpoch",
  "ChallengeWindow",
  "ReviewWindow",
  "SettlementWindow",
  "ForcedInclusionDelay",
  "DidDeposit",
  "DidRefundDelay",
  "JailPeriod",
  "QualityQuorum",
  "DefaultQualityBps",
  "ScoreBandBps",
  "ChallengeBond",
  "FlagStake",
  "ReviewerCount",
  "FlagProtectionPeriod",
  "FlaggerRewardBps",
  "ReviewerRewardBps",
  "ChallengerRewardBps",
  "DeliveryThresholdBps",
] as const;
export type ParameterName = (typeof PARAMETERS)[number];

/** The enum index of a parameter name. */
export function parameterIndex(name: ParameterName): number {
  const index = PARAMETERS.indexOf(name);
  if (index < 0) throw new Error(`parameterIndex: unknown parameter '${name}'`);
  return index;
}

/** One token in wei (the token has 18 decimals). */
export const TOKEN = 10n ** 18n;
