// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {ISlashing} from "../interfaces/ISlashing.sol";
import {INodeRegistry, NodeRole} from "../interfaces/INodeRegistry.sol";
import {IProtocolParameters, Parameter} from "../interfaces/IProtocolParameters.sol";

/// @title Slashing
/// @notice See ISlashing and docs/SLASHING.md.
/// @dev Token custody: this contract holds exactly the bonds of open challenges plus the stakes of open flags. Every
/// token a slash yields leaves in the same transaction. It has no owner and nothing to configure: the registry makes
/// it the slasher at deploy, and governance can replace it there (`NodeRegistry.setSlasher`).
/// Reentrancy: the only contracts called are the registry, the parameters and the token (SendToken, no transfer
/// hooks), all deployed with the protocol. State changes come first anyway.
contract Slashing is ISlashing, EIP712 {
    using SafeERC20 for IERC20;

    bytes32 private constant _STORE_PROMISE_TYPEHASH = keccak256(
        "StorePromise(bytes32 messageHash,address recipient,uint64 expiry)"
    );
    bytes32 private constant _ACK_TYPEHASH = keccak256("Ack(bytes32 messageHash,address node)");
    bytes32 private constant _STATEMENT_TYPEHASH = keccak256("Statement(uint64 epoch,bytes32 slot,bytes32 content)");
    uint256 private constant _BPS = 10_000;

    /// @dev Ballots as two bitmaps over the reviewer list (ReviewerCount is at most 21, bounded in ProtocolParameters):
    /// bit i of `voted` is set once reviewers[i] voted, bit i of `slashVotes` if it voted to slash.
    struct Flag {
        address node;
        uint64 deadline;
        FlagStatus status;
        address flagger;
        uint96 stake; // FlagStake is at most 1M tokens (1e24 < 2^96)
        uint32 voted;
        uint32 slashVotes;
        address[] reviewers;
    }

    IERC20 private immutable _token;
    IProtocolParameters private immutable _parameters;
    INodeRegistry private immutable _registry;
    address private immutable _treasury;

    mapping(bytes32 challengeId => Challenge) private _challenges;
    mapping(address node => mapping(uint64 epoch => mapping(bytes32 slot => bool))) private _equivocations;
    mapping(uint256 flagId => Flag) private _flags;
    mapping(address node => uint64) private _protectedUntil;
    uint256 private _flagCount;

    /// @param token_ The staking token (slashes and bonds are in it).
    /// @param parameters_ Governed fractions, windows and amounts.
    /// @param registry_ The node registry, which must name this contract its slasher.
    /// @param treasury_ Where the slashed tokens that no reporter earns go: the timelock.
    constructor(
        IERC20 token_,
        IProtocolParameters parameters_,
        INodeRegistry registry_,
        address treasury_
    ) EIP712("SendingNetwork", "1") {
        _token = token_;
        _parameters = parameters_;
        _registry = registry_;
        _treasury = treasury_;
    }

    // ---------------------------------------------------------------- storage challenges

    /// @inheritdoc ISlashing
    function challenge(
        address node,
        StorePromise calldata storePromise,
        bytes calldata signature
    ) external returns (bytes32 challengeId) {
        _requireRole(node, NodeRole.Edge);
        if (block.timestamp >= storePromise.expiry) revert SlashingPromiseExpired(storePromise.expiry, block.timestamp);
        challengeId = promiseId(node, storePromise);
        Challenge storage c = _challenges[challengeId];
        ChallengeStatus status = c.status;
        if (status != ChallengeStatus.None && status != ChallengeStatus.Answered) {
            revert SlashingPromiseNotChallengeable(challengeId, status);
        }
        _requireNodeSignature(node, hashStorePromise(storePromise), signature);

        uint256 bond = _parameters.get(Parameter.ChallengeBond);
        uint64 deadline = uint64(block.timestamp + _parameters.get(Parameter.ChallengeWindow));
        c.node = node;
        c.deadline = deadline;
        c.status = ChallengeStatus.Open;
        c.challenger = msg.sender;
        c.bond = uint96(bond); // ChallengeBond is at most 100,000 tokens (1e23 < 2^96)
        c.messageHash = storePromise.messageHash;
        c.recipient = storePromise.recipient;
        emit ChallengeOpened(
            challengeId,
            node,
            msg.sender,
            storePromise.messageHash,
            storePromise.recipient,
            storePromise.expiry,
            bond,
            deadline
        );
        _token.safeTransferFrom(msg.sender, address(this), bond);
    }

    /// @inheritdoc ISlashing
    function answerWithAck(bytes32 challengeId, bytes calldata ackSignature) external {
        Challenge storage c = _answerable(challengeId);
        // ECDSA only, never ERC-1271: a contract wallet can revoke a signature it once accepted, and an acknowledgement
        // must stay proof after the node has deleted the message.
        _requireSignature(c.recipient, hashAck(c.messageHash, c.node), ackSignature);
        c.status = ChallengeStatus.Acknowledged;
        _payAnswer(challengeId, c, Answer.Acknowledgement);
    }

    /// @inheritdoc ISlashing
    function answerWithMessage(bytes32 challengeId, bytes calldata message) external {
        Challenge storage c = _answerable(challengeId);
        bytes32 given = keccak256(message);
        if (given != c.messageHash) revert SlashingMessageMismatch(c.messageHash, given);
        c.status = ChallengeStatus.Answered;
        _payAnswer(challengeId, c, Answer.Message);
    }

    /// @inheritdoc ISlashing
    function resolveChallenge(bytes32 challengeId) external returns (uint256 slashed) {
        Challenge storage c = _challenges[challengeId];
        if (c.status != ChallengeStatus.Open) revert SlashingChallengeNotOpen(challengeId, c.status);
        if (block.timestamp < c.deadline) revert SlashingChallengeWindowOpen(challengeId, c.deadline);
        c.status = ChallengeStatus.Slashed;
        address node = c.node;
        address challenger = c.challenger;
        uint256 bond = c.bond;

        slashed = _registry.slash(node, _bps(Parameter.SlashStorageBps), true);
        uint256 reward = _share(slashed, Parameter.ChallengerRewardBps);
        uint256 toTreasury = slashed - reward;
        emit ChallengeSlashed(challengeId, node, challenger, slashed, reward, toTreasury);
        _pay(challenger, bond + reward);
        _pay(_treasury, toTreasury);
    }

    // ---------------------------------------------------------------- equivocation

    /// @inheritdoc ISlashing
    function reportEquivocation(
        address node,
        Statement calldata first,
        bytes calldata firstSignature,
        Statement calldata second,
        bytes calldata secondSignature
    ) external returns (uint256 slashed) {
        (NodeRole role, ) = _registry.nodeStatus(node);
        if (role == NodeRole.None) revert SlashingNotRegistered(node);
        if (first.epoch != second.epoch || first.slot != second.slot) {
            revert SlashingStatementsNotConflicting(first.epoch, first.slot, second.epoch, second.slot);
        }
        if (first.content == second.content) revert SlashingSameContent(first.content);
        mapping(bytes32 slot => bool) storage slashedSlots = _equivocations[node][first.epoch];
        if (slashedSlots[first.slot]) revert SlashingEquivocationAlreadySlashed(node, first.epoch, first.slot);
        _requireNodeSignature(node, hashStatement(first), firstSignature);
        _requireNodeSignature(node, hashStatement(second), secondSignature);
        slashedSlots[first.slot] = true;

        slashed = _registry.slash(node, _bps(Parameter.SlashEquivocationBps), true);
        uint256 reward = _share(slashed, Parameter.ChallengerRewardBps);
        uint256 toTreasury = slashed - reward;
        emit EquivocationSlashed(
            node,
            first.epoch,
            first.slot,
            msg.sender,
            first.content,
            second.content,
            slashed,
            reward,
            toTreasury
        );
        _pay(msg.sender, reward);
        _pay(_treasury, toTreasury);
    }

    // ---------------------------------------------------------------- flags

    /// @inheritdoc ISlashing
    function flag(address node, bytes32 evidenceHash) external returns (uint256 flagId) {
        (NodeRole flaggerRole, ) = _registry.nodeStatus(msg.sender);
        if (flaggerRole != NodeRole.Watchdog || !_registry.isActive(msg.sender)) {
            revert SlashingNotActiveWatchdog(msg.sender);
        }
        _requireRole(node, NodeRole.Edge);
        uint64 until = _protectedUntil[node];
        if (block.timestamp < until) revert SlashingNodeProtected(node, until);

        flagId = ++_flagCount;
        address[] memory reviewers = _drawReviewers(flagId, msg.sender);
        uint256 stake = _parameters.get(Parameter.FlagStake);
        uint256 window = _parameters.get(Parameter.ReviewWindow);
        uint256 protection = _parameters.get(Parameter.FlagProtectionPeriod);
        uint64 deadline = uint64(block.timestamp + window);
        // Protected for the protection period and at least while the vote runs, so two flags never overlap.
        _protectedUntil[node] = uint64(block.timestamp + (protection > window ? protection : window));
        Flag storage f = _flags[flagId];
        f.node = node;
        f.deadline = deadline;
        f.status = FlagStatus.Open;
        f.flagger = msg.sender;
        f.stake = uint96(stake); // see Flag.stake
        f.reviewers = reviewers;
        emit NodeFlagged(flagId, node, msg.sender, evidenceHash, stake, deadline, reviewers);
        _token.safeTransferFrom(msg.sender, address(this), stake);
    }

    /// @inheritdoc ISlashing
    function vote(uint256 flagId, bool slash) external {
        Flag storage f = _openFlag(flagId);
        if (block.timestamp >= f.deadline) revert SlashingReviewWindowClosed(flagId, f.deadline);
        (bool drawn, uint256 index) = _reviewerIndex(f, msg.sender);
        if (!drawn) revert SlashingNotReviewer(flagId, msg.sender);
        // index < 21 (ReviewerCount's bound), so the bit fits in uint32.
        uint32 bit = uint32(uint256(1) << index);
        if (f.voted & bit != 0) revert SlashingAlreadyVoted(flagId, msg.sender);
        f.voted |= bit;
        if (slash) f.slashVotes |= bit;
        emit ReviewerVoted(flagId, msg.sender, slash);
    }

    /// @inheritdoc ISlashing
    function resolveFlag(uint256 flagId) external returns (bool upheld) {
        Flag storage f = _openFlag(flagId);
        uint256 count = f.reviewers.length;
        uint32 voted = f.voted;
        // count <= 21, so the mask fits in uint32.
        bool everyoneVoted = voted == uint32((uint256(1) << count) - 1);
        if (block.timestamp < f.deadline && !everyoneVoted) revert SlashingReviewWindowOpen(flagId, f.deadline);
        uint32 slashMask = f.slashVotes;
        uint256 slashVotes = _popcount(slashMask);
        uint256 keepVotes = _popcount(voted) - slashVotes;
        upheld = slashVotes > keepVotes;
        if (upheld) {
            f.status = FlagStatus.Upheld;
            _uphold(flagId, f, slashMask, slashVotes, keepVotes);
        } else {
            f.status = FlagStatus.Rejected;
            // Rejected: the keep voters are paid; tied: everyone who voted.
            uint32 paidMask = slashVotes == keepVotes ? voted : voted & ~slashMask;
            _reject(flagId, f, paidMask, slashVotes, keepVotes);
        }
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc ISlashing
    function promiseId(address node, StorePromise calldata storePromise) public pure returns (bytes32) {
        return keccak256(abi.encode(node, storePromise.messageHash, storePromise.recipient, storePromise.expiry));
    }

    /// @inheritdoc ISlashing
    function challengeOf(bytes32 challengeId) external view returns (Challenge memory) {
        return _challenges[challengeId];
    }

    /// @inheritdoc ISlashing
    function equivocationSlashed(address node, uint64 epoch, bytes32 slot) external view returns (bool) {
        return _equivocations[node][epoch][slot];
    }

    /// @inheritdoc ISlashing
    function flagOf(uint256 flagId) external view returns (FlagView memory v) {
        Flag storage f = _flags[flagId];
        uint256 slashVotes = _popcount(f.slashVotes);
        v = FlagView({
            node: f.node,
            flagger: f.flagger,
            stake: f.stake,
            deadline: f.deadline,
            status: f.status,
            reviewers: f.reviewers,
            slashVotes: slashVotes,
            keepVotes: _popcount(f.voted) - slashVotes
        });
    }

    /// @inheritdoc ISlashing
    function ballotOf(uint256 flagId, address reviewer) external view returns (Ballot) {
        Flag storage f = _flags[flagId];
        (bool drawn, uint256 index) = _reviewerIndex(f, reviewer);
        if (!drawn) return Ballot.NotReviewer;
        if ((f.voted >> index) & 1 == 0) return Ballot.Pending;
        return (f.slashVotes >> index) & 1 == 1 ? Ballot.Slash : Ballot.Keep;
    }

    /// @inheritdoc ISlashing
    function flagCount() external view returns (uint256) {
        return _flagCount;
    }

    /// @inheritdoc ISlashing
    function protectedUntil(address node) external view returns (uint64) {
        return _protectedUntil[node];
    }

    /// @inheritdoc ISlashing
    function hashStorePromise(StorePromise calldata storePromise) public view returns (bytes32) {
        return
            _hashTypedDataV4(
                keccak256(
                    abi.encode(
                        _STORE_PROMISE_TYPEHASH,
                        storePromise.messageHash,
                        storePromise.recipient,
                        storePromise.expiry
                    )
                )
            );
    }

    /// @inheritdoc ISlashing
    function hashAck(bytes32 messageHash, address node) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(_ACK_TYPEHASH, messageHash, node)));
    }

    /// @inheritdoc ISlashing
    function hashStatement(Statement calldata statement) public view returns (bytes32) {
        return
            _hashTypedDataV4(
                keccak256(abi.encode(_STATEMENT_TYPEHASH, statement.epoch, statement.slot, statement.content))
            );
    }

    /// @inheritdoc ISlashing
    function treasury() external view returns (address) {
        return _treasury;
    }

    // ---------------------------------------------------------------- internals

    /// @dev An open challenge that the caller (the node's operator or signer) may still answer.
    function _answerable(bytes32 challengeId) private view returns (Challenge storage c) {
        c = _challenges[challengeId];
        if (c.status != ChallengeStatus.Open) revert SlashingChallengeNotOpen(challengeId, c.status);
        address node = c.node;
        if (msg.sender != node && msg.sender != _registry.signerOf(node)) {
            revert SlashingNotNodeOrSigner(msg.sender, node);
        }
        if (block.timestamp >= c.deadline) revert SlashingChallengeWindowClosed(challengeId, c.deadline);
    }

    function _payAnswer(bytes32 challengeId, Challenge storage c, Answer how) private {
        address node = c.node;
        uint256 bond = c.bond;
        emit ChallengeAnswered(challengeId, node, how, bond);
        _pay(node, bond);
    }

    /// @dev Slashes an upheld flag's node and pays flagger, slash voters and treasury.
    function _uphold(uint256 flagId, Flag storage f, uint32 slashMask, uint256 slashVotes, uint256 keepVotes) private {
        address node = f.node;
        uint256 slashed = _registry.slash(node, _bps(Parameter.SlashVotedBps), true);
        uint256 flaggerReward = _share(slashed, Parameter.FlaggerRewardBps);
        // slashVotes > keepVotes >= 0, so there is at least one slash voter.
        uint256 reviewerReward = _share(slashed, Parameter.ReviewerRewardBps) / slashVotes;
        uint256 toTreasury = slashed - flaggerReward - reviewerReward * slashVotes;
        emit FlagUpheld(flagId, node, slashVotes, keepVotes, slashed, flaggerReward, reviewerReward, toTreasury);
        _pay(f.flagger, f.stake + flaggerReward);
        _payReviewers(f.reviewers, slashMask, reviewerReward);
        _pay(_treasury, toTreasury);
    }

    /// @dev Pays a failed flag's stake to the reviewers in `paidMask` (their share) and the treasury (the rest).
    function _reject(uint256 flagId, Flag storage f, uint32 paidMask, uint256 slashVotes, uint256 keepVotes) private {
        uint256 stake = f.stake;
        uint256 paid = _popcount(paidMask);
        uint256 reviewerReward = paid == 0 ? 0 : _share(stake, Parameter.ReviewerRewardBps) / paid;
        uint256 toTreasury = stake - reviewerReward * paid;
        emit FlagRejected(flagId, f.node, slashVotes, keepVotes, paid, reviewerReward, toTreasury);
        _payReviewers(f.reviewers, paidMask, reviewerReward);
        _pay(_treasury, toTreasury);
    }

    function _payReviewers(address[] storage reviewers, uint32 mask, uint256 amount) private {
        if (amount == 0) return;
        uint256 count = reviewers.length;
        for (uint256 i = 0; i < count; ++i) {
            if ((mask >> i) & 1 == 1) _pay(reviewers[i], amount);
        }
    }

    /// @dev Draws up to ReviewerCount distinct active watchdogs other than `flagger`, by a Fisher-Yates shuffle of the
    /// registry's watchdog list that stops as soon as enough are found: each step picks a random index among those
    /// not yet tried and keeps the watchdog there if it is active and not the flagger. `order` holds the shuffle
    /// sparsely (0 = untouched, else the index + 1). Randomness: block.prevrandao and the flag id; see
    /// docs/SLASHING.md for what a flagger can and cannot steer.
    function _drawReviewers(uint256 flagId, address flagger) private view returns (address[] memory drawn) {
        uint256 wanted = _parameters.get(Parameter.ReviewerCount);
        uint256 total = _registry.stakedNodeCount(NodeRole.Watchdog);
        drawn = new address[](wanted);
        uint256[] memory order = new uint256[](total);
        uint256 found;
        uint256 remaining = total;
        while (found < wanted && remaining != 0) {
            uint256 pick = uint256(keccak256(abi.encode(block.prevrandao, flagId, total - remaining))) % remaining;
            uint256 index = order[pick] == 0 ? pick : order[pick] - 1;
            --remaining;
            order[pick] = (order[remaining] == 0 ? remaining : order[remaining] - 1) + 1;
            (address watchdog, bool active) = _registry.stakedNodeAt(NodeRole.Watchdog, index);
            if (active && watchdog != flagger) drawn[found++] = watchdog;
        }
        if (found == 0) revert SlashingNoReviewers(flagger, total);
        // Trim the unused tail: fewer watchdogs were available than wanted.
        assembly ("memory-safe") {
            mstore(drawn, found)
        }
    }

    function _openFlag(uint256 flagId) private view returns (Flag storage f) {
        f = _flags[flagId];
        FlagStatus status = f.status;
        if (status == FlagStatus.None) revert SlashingUnknownFlag(flagId);
        if (status != FlagStatus.Open) revert SlashingFlagNotOpen(flagId, status);
    }

    function _reviewerIndex(Flag storage f, address reviewer) private view returns (bool drawn, uint256 index) {
        address[] storage reviewers = f.reviewers;
        uint256 count = reviewers.length;
        for (index = 0; index < count; ++index) {
            if (reviewers[index] == reviewer) return (true, index);
        }
        return (false, 0);
    }

    function _requireRole(address node, NodeRole expected) private view {
        (NodeRole role, ) = _registry.nodeStatus(node);
        if (role != expected) revert SlashingWrongRole(node, role, expected);
    }

    /// @dev Node signatures are plain ECDSA (a node daemon signs with a key), by the signer the registry holds now.
    function _requireNodeSignature(address node, bytes32 digest, bytes calldata signature) private view {
        _requireSignature(_registry.signerOf(node), digest, signature);
    }

    /// @dev ECDSA (low-s, as OpenZeppelin requires) by `signer`.
    function _requireSignature(address signer, bytes32 digest, bytes calldata signature) private pure {
        (address recovered, ECDSA.RecoverError err, ) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError || recovered != signer) revert SlashingInvalidSignature(signer);
    }

    /// @dev Slash fractions are bounded to at most 5,000 in ProtocolParameters, so they fit in uint16.
    function _bps(Parameter parameter) private view returns (uint16) {
        return uint16(_parameters.get(parameter));
    }

    /// @dev `bps` of `amount`, rounded down (the remainder goes to the treasury).
    function _share(uint256 amount, Parameter bps) private view returns (uint256) {
        return (amount * _parameters.get(bps)) / _BPS;
    }

    function _pay(address to, uint256 amount) private {
        if (amount != 0) _token.safeTransfer(to, amount);
    }

    function _popcount(uint32 mask) private pure returns (uint256 count) {
        while (mask != 0) {
            mask &= mask - 1;
            ++count;
        }
    }
}
