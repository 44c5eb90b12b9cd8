/**
 * An independent TypeScript model of quality scores and rewards (docs/REWARDS.md), in bigint arithmetic, for tests
 * to compare the contracts against to the wei. It never calls a contract: it is told what happened (work settled,
 * scores posted, stake moved, slashes, claims) and computes what each staker is owed.
 */

export const BPS = 10_000n;
/** RewardDistributor.REWARD_PER_SHARE_SCALE */
export const SCALE = 10n ** 18n;
/** RewardDistributor.MIN_REWARD_SHARES: below it a node's stakers are not paid (their part stays in the pool). */
export const MIN_REWARD_SHARES = 10n ** 18n;

// ---------------------------------------------------------------- quality

/** The median of `scores`: the middle one of an odd count, the mean of the two middle ones (rounded down) of an even count. */
export function median(scores: readonly number[]): number {
  if (scores.length === 0) throw new Error("median: expected at least one score");
  const sorted = [...scores].sort((a, b) => a - b);
  const n = sorted.length;
  return n % 2 === 1 ? sorted[(n - 1) / 2] : Math.floor((sorted[n / 2 - 1] + sorted[n / 2]) / 2);
}

/** Whether `score` is within `band` of `center`, both ends included. */
export function withinBand(score: number, center: number, band: number): boolean {
  return Math.abs(score - center) <= band;
}

/** The rules of an epoch as the quality oracle fixes them. */
export interface QualityRules {
  quorum: number;
  defaultQualityBps: number;
  bandBps: number;
}

/**
 * A node's quality and the watchdogs it credits, given its scores (in posting order) and whether finalization happens
 * before the credit deadline.
 */
export function finalizeQuality(
  scores: readonly { watchdog: string; score: number }[],
  rules: QualityRules,
  beforeCreditDeadline: boolean,
): { quality: number; credited: string[] } {
  if (scores.length < rules.quorum) return { quality: rules.defaultQualityBps, credited: [] };
  const quality = median(scores.map((s) => s.score));
  const credited = beforeCreditDeadline
    ? scores.filter((s) => withinBand(s.score, quality, rules.bandBps)).map((s) => s.watchdog)
    : [];
  return { quality, credited };
}

// ---------------------------------------------------------------- epoch rewards

/** An epoch's emission and split, as fixed by the distributor. */
export interface EpochTerms {
  emission: bigint;
  edgeBps: bigint;
  watchdogBps: bigint;
  guardianBps: bigint;
}

export const poolOf = (emission: bigint, bps: bigint): bigint => (emission * bps) / BPS;

/** edgePool x work / epochWork x quality / 10,000, rounded down once. */
export function edgeReward(terms: EpochTerms, work: bigint, epochWork: bigint, quality: bigint): bigint {
  if (epochWork === 0n) return 0n;
  return (poolOf(terms.emission, terms.edgeBps) * work * quality) / (epochWork * BPS);
}

/** watchdogPool x credits / totalCredits, rounded down. */
export function watchdogReward(terms: EpochTerms, credits: bigint, totalCredits: bigint): bigint {
  if (totalCredits === 0n) return 0n;
  return (poolOf(terms.emission, terms.watchdogBps) * credits) / totalCredits;
}

/** guardianPool x guardianWork / epochGuardianWork, rounded down. */
export function guardianReward(terms: EpochTerms, guardianWork: bigint, epochGuardianWork: bigint): bigint {
  if (epochGuardianWork === 0n) return 0n;
  return (poolOf(terms.emission, terms.guardianBps) * guardianWork) / epochGuardianWork;
}

export const commissionOf = (reward: bigint, bps: bigint): bigint => (reward * bps) / BPS;

// ---------------------------------------------------------------- stakers: a share pool and a reward per share

/** One node's bonded pool (SharePool's arithmetic) and the stakers' reward accounts. */
export class NodeRewardsModel {
  tokens = 0n;
  totalShares = 0n;
  readonly shares = new Map<string, bigint>();
  rewardPerShare = 0n;
  nextEpoch: bigint;
  readonly paid = new Map<string, bigint>();
  readonly owed = new Map<string, bigint>();

  constructor(
    readonly operator: string,
    registeredIn: bigint,
  ) {
    this.nextEpoch = registeredIn;
  }

  sharesOf(staker: string): bigint {
    return this.shares.get(staker) ?? 0n;
  }

  /** What `staker` earned since last settled: IStakeHook.beforeSharesChange, before any share change. */
  private settle(staker: string): void {
    const paid = this.paid.get(staker) ?? 0n;
    if (paid === this.rewardPerShare) return;
    const earned = (this.sharesOf(staker) * (this.rewardPerShare - paid)) / SCALE;
    this.owed.set(staker, (this.owed.get(staker) ?? 0n) + earned);
    this.paid.set(staker, this.rewardPerShare);
  }

  /** SharePool.deposit: shares rounded down, one share a token in an empty pool. */
  bond(staker: string, amount: bigint): void {
    this.settle(staker);
    const minted = this.totalShares === 0n || this.tokens === 0n ? amount : (amount * this.totalShares) / this.tokens;
    this.tokens += amount;
    this.totalShares += minted;
    this.shares.set(staker, this.sharesOf(staker) + minted);
  }

  /** The tokens `staker`'s bonded shares are worth (SharePool.value). */
  stakeOf(staker: string): bigint {
    const held = this.sharesOf(staker);
    if (held === 0n) return 0n;
    return held === this.totalShares ? this.tokens : (held * this.tokens) / this.totalShares;
  }

  /** NodeRegistry.unbond's share arithmetic: shares rounded up (all of them on a full exit). Returns the tokens. */
  unbond(staker: string, amount: bigint): bigint {
    this.settle(staker);
    const held = this.sharesOf(staker);
    const available = this.stakeOf(staker);
    if (amount > available) throw new Error(`unbond: ${amount} above the ${available} available`);
    let burnt = amount === available ? held : (amount * this.totalShares + this.tokens - 1n) / this.tokens;
    if (burnt > held) burnt = held;
    const tokens = burnt === this.totalShares ? this.tokens : (burnt * this.tokens) / this.totalShares;
    this.shares.set(staker, held - burnt);
    this.totalShares -= burnt;
    this.tokens -= tokens;
    return tokens;
  }

  /** SharePool.cut on the bonded pool. */
  slash(bps: bigint): void {
    this.tokens -= (this.tokens * bps) / BPS;
  }

  /** A claim: each epoch's reward (before commission) and commission rate, computed by the caller. */
  claim(
    throughEpoch: bigint,
    perEpoch: readonly { reward: bigint; commissionBps: bigint }[],
  ): {
    reward: bigint;
    commission: bigint;
  } {
    let reward = 0n;
    let commission = 0n;
    for (const e of perEpoch) {
      if (e.reward === 0n) continue;
      reward += e.reward;
      commission += commissionOf(e.reward, e.commissionBps);
    }
    const toStakers = reward - commission;
    if (this.totalShares >= MIN_REWARD_SHARES) this.rewardPerShare += (toStakers * SCALE) / this.totalShares;
    if (commission !== 0n) this.owed.set(this.operator, (this.owed.get(this.operator) ?? 0n) + commission);
    this.nextEpoch = throughEpoch + 1n;
    return { reward, commission };
  }

  /** What `staker` may withdraw now. */
  pending(staker: string): bigint {
    const paid = this.paid.get(staker) ?? 0n;
    return (this.owed.get(staker) ?? 0n) + (this.sharesOf(staker) * (this.rewardPerShare - paid)) / SCALE;
  }

  /** A withdrawal: returns the amount and resets the account. */
  withdraw(staker: string): bigint {
    const amount = this.pending(staker);
    this.owed.set(staker, 0n);
    this.paid.set(staker, this.rewardPerShare);
    return amount;
  }
}

// ---------------------------------------------------------------- jail history

/** NodeRegistry's jail terms: a jail that reaches the previous term (or follows it directly) replaces its end. */
export class JailModel {
  readonly terms: { from: bigint; through: bigint }[] = [];

  record(fromEpoch: bigint, throughEpoch: bigint): void {
    const last = this.terms[this.terms.length - 1];
    if (last && last.through + 1n >= fromEpoch) last.through = throughEpoch;
    else this.terms.push({ from: fromEpoch, through: throughEpoch });
  }

  wasJailedIn(epoch: bigint): boolean {
    return this.terms.some((t) => t.from <= epoch && epoch <= t.through);
  }
}
