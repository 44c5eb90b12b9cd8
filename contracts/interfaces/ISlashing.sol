// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {NodeRole} from "./INodeRegistry.sol";

/// @title ISlashing
/// @notice Takes stake from nodes that misbehave, by three roads, and is the node registry's only slasher. Every
/// slash goes through `INodeRegistry.slash`: it cuts the node's bonded and unbonding pools pro rata (delegators
/// included), jails the node, and sends the tokens here, from where they leave at once to the reporter and the
/// treasury. The contract holds nothing between transactions but the bonds of open challenges and the stakes of open
/// flags. See docs/SLASHING.md.
///
/// 1. Storage challenge (objective). An edge node that takes a message for an offline recipient signs a
///    `StorePromise`. While it is unexpired, anyone holding it may challenge the node with a `ChallengeBond`. The node
///    (its operator or signer) answers within `ChallengeWindow` with the recipient's signed `Ack` or with the message
///    itself. Answered: the bond goes to the operator. Unanswered: anyone resolves; the node loses `SlashStorageBps`
///    and is jailed; the challenger gets its bond back plus `ChallengerRewardBps` of the slash.
/// 2. Equivocation (objective). Two `Statement`s signed by a node's signer for the same (epoch, slot) with different
///    content: the node loses `SlashEquivocationBps` at once and is jailed; the reporter gets `ChallengerRewardBps`.
/// 3. Flag and vote. An active watchdog flags an edge node with a `FlagStake`; `ReviewerCount` other active
///    watchdogs are drawn to vote within `ReviewWindow`. More slash than keep votes: the node loses `SlashVotedBps`
///    and is jailed, the flagger gets its stake back plus `FlaggerRewardBps`, the slash voters split
///    `ReviewerRewardBps`. Otherwise the flagger loses its stake: `ReviewerRewardBps` of it is split among the keep
///    voters (all voters on a tie) and the rest goes to the treasury.
///
/// Signatures are EIP-712 typed data under the domain {name: "SendingNetwork", version: "1", chainId,
/// verifyingContract: this contract} (sdk/chain/slashing.ts). Node signatures are plain ECDSA by the signer the
/// registry holds for the node *now*. Acknowledgements are plain ECDSA by the recipient address too, never ERC-1271: a
/// contract wallet can revoke a signature, and an acknowledgement must stay proof after the node deleted the message.
interface ISlashing {
    /// @notice A node's promise to hold the message with hash `messageHash` for `recipient` until `expiry` (unix
    /// seconds). Typed data `StorePromise(bytes32 messageHash,address recipient,uint64 expiry)`.
    struct StorePromise {
        bytes32 messageHash;
        address recipient;
        uint64 expiry;
    }

    /// @notice A node's statement that must be unique per (`epoch`, `slot`): `content` is what it states. Typed data
    /// `Statement(uint64 epoch,bytes32 slot,bytes32 content)`. Each use derives its slots under its own tag, so two
    /// uses never share a slot (sdk/chain/slashing.ts `statementSlot`).
    struct Statement {
        uint64 epoch;
        bytes32 slot;
        bytes32 content;
    }

    /// @notice Where a store promise stands. `Answered` promises can be challenged again; `Acknowledged` (the
    /// recipient has the message) and `Slashed` promises never again.
    enum ChallengeStatus {
        None,
        Open,
        Answered,
        Acknowledged,
        Slashed
    }

    /// @notice The latest challenge of a store promise. `messageHash` and `recipient` are the promise's.
    struct Challenge {
        address node;
        uint64 deadline;
        ChallengeStatus status;
        address challenger;
        uint96 bond;
        bytes32 messageHash;
        address recipient;
    }

    /// @notice Where a flag stands.
    enum FlagStatus {
        None,
        Open,
        Upheld,
        Rejected
    }

    /// @notice A flag as a reader sees it.
    struct FlagView {
        address node;
        address flagger;
        uint256 stake;
        uint64 deadline;
        FlagStatus status;
        address[] reviewers;
        uint256 slashVotes;
        uint256 keepVotes;
    }

    /// @notice A drawn reviewer's ballot on a flag; `NotReviewer` for anyone not drawn.
    enum Ballot {
        NotReviewer,
        Pending,
        Slash,
        Keep
    }

    /// @notice How a storage challenge was answered.
    enum Answer {
        Acknowledgement,
        Message
    }

    // ---------------------------------------------------------------- events

    /// @notice Emitted after `challenger` challenged `node` to show it still holds, or delivered, the message of a
    /// store promise, bonding `bond`; the node must answer before `deadline`.
    event ChallengeOpened(
        bytes32 indexed challengeId,
        address indexed node,
        address indexed challenger,
        bytes32 messageHash,
        address recipient,
        uint64 expiry,
        uint256 bond,
        uint64 deadline
    );

    /// @notice Emitted after `node` answered challenge `challengeId` (`how`), earning its operator the `bond`.
    event ChallengeAnswered(bytes32 indexed challengeId, address indexed node, Answer how, uint256 bond);

    /// @notice Emitted after the unanswered challenge `challengeId` slashed `node` by `slashed` tokens: `challengerReward`
    /// to the challenger (besides its bond back) and `treasuryAmount` to the treasury.
    event ChallengeSlashed(
        bytes32 indexed challengeId,
        address indexed node,
        address indexed challenger,
        uint256 slashed,
        uint256 challengerReward,
        uint256 treasuryAmount
    );

    /// @notice Emitted after `reporter` proved that `node` signed `firstContent` and `secondContent` for the same
    /// `epoch` and `slot`, slashing it by `slashed` tokens: `reporterReward` to the reporter, `treasuryAmount` to the
    /// treasury.
    event EquivocationSlashed(
        address indexed node,
        uint64 indexed epoch,
        bytes32 indexed slot,
        address reporter,
        bytes32 firstContent,
        bytes32 secondContent,
        uint256 slashed,
        uint256 reporterReward,
        uint256 treasuryAmount
    );

    /// @notice Emitted after `flagger` flagged `node` with `evidenceHash`, staking `stake`; `reviewers` vote until
    /// `deadline`.
    event NodeFlagged(
        uint256 indexed flagId,
        address indexed node,
        address indexed flagger,
        bytes32 evidenceHash,
        uint256 stake,
        uint64 deadline,
        address[] reviewers
    );

    /// @notice Emitted after `reviewer` voted on flag `flagId`: `slash` true to slash, false to keep.
    event ReviewerVoted(uint256 indexed flagId, address indexed reviewer, bool slash);

    /// @notice Emitted after flag `flagId` was upheld (`slashVotes` > `keepVotes`), slashing `node` by `slashed`:
    /// `flaggerReward` to the flagger (besides its stake back), `reviewerReward` to each of the `slashVotes` slash
    /// voters, `treasuryAmount` to the treasury.
    event FlagUpheld(
        uint256 indexed flagId,
        address indexed node,
        uint256 slashVotes,
        uint256 keepVotes,
        uint256 slashed,
        uint256 flaggerReward,
        uint256 reviewerReward,
        uint256 treasuryAmount
    );

    /// @notice Emitted after flag `flagId` was rejected (`keepVotes` >= `slashVotes`): the flagger's stake paid
    /// `reviewerReward` to each of `paidReviewers` reviewers (the keep voters; every voter on a tie) and
    /// `treasuryAmount` to the treasury.
    event FlagRejected(
        uint256 indexed flagId,
        address indexed node,
        uint256 slashVotes,
        uint256 keepVotes,
        uint256 paidReviewers,
        uint256 reviewerReward,
        uint256 treasuryAmount
    );

    // ---------------------------------------------------------------- errors

    /// @notice `node` has role `role`; this road needs `expected`.
    error SlashingWrongRole(address node, NodeRole role, NodeRole expected);

    /// @notice `node` is not a registered node.
    error SlashingNotRegistered(address node);

    /// @notice A store promise that expired at `expiry` (now is `timestamp`).
    error SlashingPromiseExpired(uint64 expiry, uint256 timestamp);

    /// @notice A signature that is not `expectedSigner`'s over the typed data given.
    error SlashingInvalidSignature(address expectedSigner);

    /// @notice The promise of challenge `challengeId` cannot be challenged now: it is `status` (`Open`: a challenge is
    /// running; `Acknowledged` or `Slashed`: settled for good).
    error SlashingPromiseNotChallengeable(bytes32 challengeId, ChallengeStatus status);

    /// @notice Challenge `challengeId` is `status`, not open.
    error SlashingChallengeNotOpen(bytes32 challengeId, ChallengeStatus status);

    /// @notice `caller` is neither the operator of `node` nor its signer.
    error SlashingNotNodeOrSigner(address caller, address node);

    /// @notice Challenge `challengeId` could be answered until `deadline`; it is too late.
    error SlashingChallengeWindowClosed(bytes32 challengeId, uint64 deadline);

    /// @notice Challenge `challengeId` can still be answered until `deadline`; it cannot be resolved yet.
    error SlashingChallengeWindowOpen(bytes32 challengeId, uint64 deadline);

    /// @notice A message whose hash is `given`; the promise was for `expected`.
    error SlashingMessageMismatch(bytes32 expected, bytes32 given);

    /// @notice Two statements for different (epoch, slot) pairs do not conflict.
    error SlashingStatementsNotConflicting(
        uint64 firstEpoch,
        bytes32 firstSlot,
        uint64 secondEpoch,
        bytes32 secondSlot
    );

    /// @notice Two statements with the same `content` are no equivocation.
    error SlashingSameContent(bytes32 content);

    /// @notice `node` was slashed for equivocating in (`epoch`, `slot`) already.
    error SlashingEquivocationAlreadySlashed(address node, uint64 epoch, bytes32 slot);

    /// @notice `caller` is not an active watchdog.
    error SlashingNotActiveWatchdog(address caller);

    /// @notice `node` was flagged recently and cannot be flagged again until `until`.
    error SlashingNodeProtected(address node, uint64 until);

    /// @notice No active watchdog other than `flagger` is left to review a flag (`watchdogs` hold stake).
    error SlashingNoReviewers(address flagger, uint256 watchdogs);

    /// @notice There is no flag `flagId`.
    error SlashingUnknownFlag(uint256 flagId);

    /// @notice Flag `flagId` is `status`, not open.
    error SlashingFlagNotOpen(uint256 flagId, FlagStatus status);

    /// @notice `caller` was not drawn to review flag `flagId`.
    error SlashingNotReviewer(uint256 flagId, address caller);

    /// @notice `reviewer` has voted on flag `flagId` already.
    error SlashingAlreadyVoted(uint256 flagId, address reviewer);

    /// @notice Votes on flag `flagId` closed at `deadline`.
    error SlashingReviewWindowClosed(uint256 flagId, uint64 deadline);

    /// @notice Flag `flagId` can be voted on until `deadline` and not every reviewer has voted: it cannot be resolved
    /// yet.
    error SlashingReviewWindowOpen(uint256 flagId, uint64 deadline);

    // ---------------------------------------------------------------- storage challenges

    /// @notice Challenges edge node `node` over `storePromise`, signed (`signature`) by the node's registered signer,
    /// while the promise is unexpired. Takes `ChallengeBond` from the caller (approve it first). One open challenge
    /// per promise; a promise answered with the message may be challenged again, one acknowledged or slashed never.
    /// @return challengeId `promiseId(node, storePromise)`.
    function challenge(
        address node,
        StorePromise calldata storePromise,
        bytes calldata signature
    ) external returns (bytes32 challengeId);

    /// @notice Answers challenge `challengeId` with the recipient's EIP-712 `Ack(messageHash, node)`, signed by the
    /// recipient (ECDSA: an externally owned address). Only the node's operator or signer, before the deadline. Pays the
    /// bond to the operator; the promise is settled for good.
    function answerWithAck(bytes32 challengeId, bytes calldata ackSignature) external;

    /// @notice Answers challenge `challengeId` with the message itself (its keccak256 must be the promise's
    /// `messageHash`). Only the node's operator or signer, before the deadline. Pays the bond to the operator; the
    /// promise may be challenged again while unexpired.
    function answerWithMessage(bytes32 challengeId, bytes calldata message) external;

    /// @notice Resolves challenge `challengeId`, left unanswered past its deadline: slashes the node by
    /// `SlashStorageBps` and jails it, returns the challenger's bond plus `ChallengerRewardBps` of the slash, and
    /// sends the rest to the treasury. Anyone may call.
    /// @return slashed The tokens taken from the node.
    function resolveChallenge(bytes32 challengeId) external returns (uint256 slashed);

    // ---------------------------------------------------------------- equivocation

    /// @notice Proves that `node`'s signer signed `first` and `second`, two statements for the same (epoch, slot)
    /// with different content. Slashes the node by `SlashEquivocationBps` at once and jails it; pays the caller
    /// `ChallengerRewardBps` of the slash and the treasury the rest. Each (node, epoch, slot) slashes once.
    /// @return slashed The tokens taken from the node.
    function reportEquivocation(
        address node,
        Statement calldata first,
        bytes calldata firstSignature,
        Statement calldata second,
        bytes calldata secondSignature
    ) external returns (uint256 slashed);

    // ---------------------------------------------------------------- flags

    /// @notice Flags edge node `node` for misbehaviour described off chain by `evidenceHash`. Only an active
    /// watchdog; takes `FlagStake` from it (approve it first). Draws `ReviewerCount` reviewers from the other active
    /// watchdogs (all of them if fewer). The node cannot be flagged again for `FlagProtectionPeriod` (nor while the
    /// vote runs).
    /// @return flagId The flag's number, counting from 1.
    function flag(address node, bytes32 evidenceHash) external returns (uint256 flagId);

    /// @notice Votes on flag `flagId`: `slash` true to slash the node, false to keep it. Only a drawn reviewer, once,
    /// before the deadline.
    function vote(uint256 flagId, bool slash) external;

    /// @notice Resolves flag `flagId` once its review window has closed or every reviewer has voted. Anyone may call.
    /// More slash than keep votes: upheld (see the contract description); otherwise rejected.
    /// @return upheld Whether the node was slashed.
    function resolveFlag(uint256 flagId) external returns (bool upheld);

    // ---------------------------------------------------------------- views

    /// @notice The id of the challenges of `storePromise` made to `node`: keccak256(abi.encode(node, messageHash,
    /// recipient, expiry)).
    function promiseId(address node, StorePromise calldata storePromise) external pure returns (bytes32);

    /// @notice The latest challenge of the promise with id `challengeId` (all zero if never challenged).
    function challengeOf(bytes32 challengeId) external view returns (Challenge memory);

    /// @notice Whether `node` has been slashed for equivocating in (`epoch`, `slot`).
    function equivocationSlashed(address node, uint64 epoch, bytes32 slot) external view returns (bool);

    /// @notice Flag `flagId`.
    function flagOf(uint256 flagId) external view returns (FlagView memory);

    /// @notice `reviewer`'s ballot on flag `flagId`.
    function ballotOf(uint256 flagId, address reviewer) external view returns (Ballot);

    /// @notice How many flags have been raised; flag ids run from 1 to this.
    function flagCount() external view returns (uint256);

    /// @notice Until when `node` cannot be flagged (0 if never flagged).
    function protectedUntil(address node) external view returns (uint64);

    /// @notice The EIP-712 digest a node signs for `storePromise`.
    function hashStorePromise(StorePromise calldata storePromise) external view returns (bytes32);

    /// @notice The EIP-712 digest a recipient signs to acknowledge the message `messageHash` from `node` (the
    /// node's operator address).
    function hashAck(bytes32 messageHash, address node) external view returns (bytes32);

    /// @notice The EIP-712 digest a node signs for `statement`.
    function hashStatement(Statement calldata statement) external view returns (bytes32);

    /// @notice Where slashed tokens go that no reporter earns: the timelock.
    function treasury() external view returns (address);
}
