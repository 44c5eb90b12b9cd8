// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IQualityOracle
/// @notice Watchdog quality scores of edge nodes, per epoch, and the credits watchdogs earn for them. Active
/// watchdogs post scores (basis points) for the edge nodes they probed; after posting closes anyone finalizes a node:
/// its quality becomes the median of its scores when at least `QualityQuorum` watchdogs scored it (else
/// `DefaultQualityBps`), and each watchdog whose score lies within `ScoreBandBps` of that median earns one credit.
/// The reward distributor pays edge nodes by work x quality and watchdogs by credits.
///
/// The rules of an epoch E are fixed the first time E is touched (its first score, or its first finalization): the
/// two deadlines, the quorum, the default quality and the band. Later governance changes do not alter E.
/// Timeline of epoch E:
///   [epochStart(E), postingDeadline)         active watchdogs post scores; postingDeadline = the rollup's
///                                            settlementDeadline(E) when E's rules are fixed
///   [postingDeadline, creditDeadline)        anyone finalizes a node: quality fixed, in-band watchdogs credited;
///                                            creditDeadline = postingDeadline + SettlementWindow
///   from creditDeadline                      E's credits are final: watchdogs claim. A node finalized now still gets
///                                            its quality fixed, but credits nobody (watchdog shares never change
///                                            once claims are open)
interface IQualityOracle {
    /// @notice The rules of one epoch, fixed when the epoch is first touched, and its credits so far.
    struct EpochRules {
        uint64 postingDeadline; // scores are accepted before this second
        uint64 creditDeadline; // finalizations credit watchdogs before this second; watchdog claims open at it
        uint8 quorum; // scores a node needs for their median to be its quality
        uint16 defaultQualityBps; // quality of a node with fewer scores than the quorum
        uint16 bandBps; // a score within this of the median earns a credit
        uint64 totalCredits; // credits earned in the epoch, all watchdogs together
    }

    /// @notice Emitted after `watchdog` posted `scores` for `nodes` in `epoch`.
    event ScoresPosted(uint64 indexed epoch, address indexed watchdog, address[] nodes, uint16[] scores);

    /// @notice Emitted after the rules of `epoch` were fixed.
    event EpochRulesFixed(
        uint64 indexed epoch,
        uint64 postingDeadline,
        uint64 creditDeadline,
        uint8 quorum,
        uint16 defaultQualityBps,
        uint16 bandBps
    );

    /// @notice Emitted after `node`'s quality in `epoch` was fixed at the median of its `scoreCount` scores, crediting
    /// `credited` watchdogs (zero once the credit deadline has passed).
    event QualityFinalized(
        uint64 indexed epoch,
        address indexed node,
        uint16 qualityBps,
        uint256 scoreCount,
        uint256 credited
    );

    /// @notice `caller` is not an active watchdog node.
    error QualityNotWatchdog(address caller);

    /// @notice `nodes` and `scores` of different lengths.
    error QualityLengthMismatch(uint256 nodes, uint256 scores);

    /// @notice Scores for `epoch` are accepted from `opensAt` (the epoch's start).
    error QualityPostingNotOpen(uint64 epoch, uint256 opensAt);

    /// @notice Scores for `epoch` were accepted until `closedAt`.
    error QualityPostingClosed(uint64 epoch, uint256 closedAt);

    /// @notice Posting for `epoch` is open until `closesAt`: no node of it can be finalized before.
    error QualityPostingOpen(uint64 epoch, uint256 closesAt);

    /// @notice A score of `score` for `node`, above 10,000 basis points.
    error QualityScoreTooHigh(address node, uint256 score);

    /// @notice `node` is not a registered edge node.
    error QualityNotEdgeNode(address node);

    /// @notice `watchdog` has scored `node` in `epoch` already.
    error QualityAlreadyScored(address watchdog, address node, uint64 epoch);

    /// @notice `node` has `maximum` scores in `epoch` already.
    error QualityTooManyScores(address node, uint64 epoch, uint256 maximum);

    /// @notice Posts the caller's scores for `nodes` in `epoch`, one per node, each at most 10,000. Only an active
    /// watchdog, from the epoch's start until its posting deadline.
    function postScores(uint64 epoch, address[] calldata nodes, uint16[] calldata scores) external;

    /// @notice Fixes `node`'s quality in `epoch` and returns it; anyone, once posting for `epoch` has closed. With at
    /// least the quorum of scores, the first call stores their median and, before the credit deadline, credits every
    /// watchdog whose score lies within the band of it; later calls return the stored quality. Below the quorum the
    /// quality is the epoch's default: fixed by the epoch's rules, nothing is stored and nobody is credited.
    function finalize(uint64 epoch, address node) external returns (uint16 qualityBps);

    /// @notice The most scores one node can receive in one epoch.
    function MAX_SCORES_PER_NODE() external view returns (uint256);

    /// @notice `node`'s quality in `epoch`: the stored one once finalized, else what finalizing would fix now (with
    /// the current parameters if the epoch's rules are not fixed yet). `isFinal` says whether it can still change:
    /// true once the epoch's rules are fixed and posting has closed.
    function qualityOf(address node, uint64 epoch) external view returns (uint16 qualityBps, bool isFinal);

    /// @notice Whether `node`'s quality in `epoch` has been finalized from a quorum of scores.
    function isFinalized(address node, uint64 epoch) external view returns (bool);

    /// @notice The scores `node` received in `epoch`, in posting order, and the watchdogs that posted them.
    function scoresOf(
        address node,
        uint64 epoch
    ) external view returns (address[] memory watchdogs, uint16[] memory scores);

    /// @notice `epoch`'s rules and credits; `fixed_` is false (and the rest zero) until the epoch is first touched.
    function rulesOf(uint64 epoch) external view returns (EpochRules memory rules, bool fixed_);

    /// @notice `watchdog`'s credits in `epoch`, the epoch's total, and when they are final (the watchdog claim
    /// opening: the epoch's credit deadline). For an epoch whose rules are not fixed yet (nobody scored or finalized
    /// in it): zero credits, final from the rollup's settlement deadline, after which no score can be posted.
    function creditsOf(
        address watchdog,
        uint64 epoch
    ) external view returns (uint256 credits, uint256 totalCredits, uint256 claimOpensAt);
}
