// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {InternalLeanIMT, LeanIMTData} from "@zk-kit/lean-imt.sol/InternalLeanIMT.sol";
import {PoseidonT3} from "poseidon-solidity/PoseidonT3.sol";
import {IDidRegistry, DidDocument, BillKey} from "../interfaces/IDidRegistry.sol";
import {INodeRegistry, NodeRole} from "../interfaces/INodeRegistry.sol";
import {IProtocolParameters, Parameter} from "../interfaces/IProtocolParameters.sol";

/// @title DidRegistry
/// @notice See IDidRegistry. The identity tree is zk-kit's lean IMT with Poseidon (poseidon-solidity); its depth grows
/// with the number of leaves, and a node without a right child takes its left child's value.
contract DidRegistry is IDidRegistry {
    using SafeERC20 for IERC20;
    using InternalLeanIMT for LeanIMTData;

    /// @notice How many recent roots stay valid for proofs: a guardian's batch proven against a root still settles
    /// after this many later tree changes have happened meanwhile.
    uint256 public constant ROOT_HISTORY_SIZE = 64;
    /// @notice Most device keys per DID.
    uint256 public constant MAX_DEVICES = 8;
    /// @notice Most home nodes per DID.
    uint256 public constant MAX_HOME_NODES = 4;
    /// @notice Longest backup pointer, in bytes.
    uint256 public constant MAX_BACKUP_POINTER_LENGTH = 256;

    /// @dev The BN254 scalar field, over which Baby Jubjub is defined and Poseidon hashes.
    uint256 private constant _FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617;
    /// @dev Baby Jubjub in twisted Edwards form: A*x^2 + y^2 = 1 + D*x^2*y^2 (EIP-2494).
    uint256 private constant _A = 168700;
    uint256 private constant _D = 168696;

    IERC20 private immutable _token;
    IProtocolParameters private immutable _parameters;
    INodeRegistry private immutable _nodes;

    LeanIMTData private _tree;
    mapping(address account => DidRecord) private _records;
    mapping(uint256 billKeyHash => address) private _accountOf;
    mapping(uint256 root => uint256) private _rootSequence;
    uint256 private _sequence;

    /// @param token_ The deposit token.
    /// @param parameters_ Governed parameters (deposit, refund delay).
    /// @param nodes_ The node registry (home nodes must be edge nodes).
    constructor(IERC20 token_, IProtocolParameters parameters_, INodeRegistry nodes_) {
        _token = token_;
        _parameters = parameters_;
        _nodes = nodes_;
    }

    /// @inheritdoc IDidRegistry
    function register(DidDocument calldata document, BillKey calldata billKey) external {
        DidRecord storage r = _records[msg.sender];
        if (r.status != DidStatus.None) revert DidAlreadyRegistered(msg.sender);
        _checkSignature(document.signedPrekeySignature);
        _checkDevices(document.deviceKeys);
        _checkHomeNodes(document.homeNodes);
        _checkBackupPointer(document.backupPointer);
        uint256 leaf = _billKeyHash(billKey);

        uint256 deposit = _parameters.get(Parameter.DidDeposit);
        r.status = DidStatus.Active;
        r.document = document;
        r.billKey = billKey;
        r.billKeyHash = leaf;
        r.deposit = deposit;
        r.updatedAt = uint64(block.timestamp);
        _accountOf[leaf] = msg.sender;
        uint256 index = _tree.size;
        uint256 newRoot = _tree._insert(leaf);
        _recordRoot(newRoot);
        emit DidRegistered(msg.sender, leaf, index, deposit);
        emit IdentityTreeChanged(index, leaf, newRoot);
        if (deposit != 0) _token.safeTransferFrom(msg.sender, address(this), deposit);
    }

    /// @inheritdoc IDidRegistry
    function setIdentityKeys(
        bytes32 identityKey,
        bytes32 signingKey,
        bytes32 signedPrekey,
        uint32 signedPrekeyId,
        bytes calldata signature
    ) external {
        DidRecord storage r = _active(msg.sender);
        _checkSignature(signature);
        r.document.identityKey = identityKey;
        r.document.signingKey = signingKey;
        r.document.signedPrekey = signedPrekey;
        r.document.signedPrekeyId = signedPrekeyId;
        r.document.signedPrekeySignature = signature;
        r.updatedAt = uint64(block.timestamp);
        emit IdentityKeysChanged(msg.sender, identityKey, signingKey);
        emit SignedPrekeyRotated(msg.sender, signedPrekeyId, signedPrekey, signature);
    }

    /// @inheritdoc IDidRegistry
    function rotateSignedPrekey(bytes32 signedPrekey, uint32 signedPrekeyId, bytes calldata signature) external {
        DidRecord storage r = _active(msg.sender);
        _checkSignature(signature);
        r.document.signedPrekey = signedPrekey;
        r.document.signedPrekeyId = signedPrekeyId;
        r.document.signedPrekeySignature = signature;
        r.updatedAt = uint64(block.timestamp);
        emit SignedPrekeyRotated(msg.sender, signedPrekeyId, signedPrekey, signature);
    }

    /// @inheritdoc IDidRegistry
    function setDevices(bytes32[] calldata deviceKeys) external {
        DidRecord storage r = _active(msg.sender);
        _checkDevices(deviceKeys);
        r.document.deviceKeys = deviceKeys;
        r.updatedAt = uint64(block.timestamp);
        emit DevicesChanged(msg.sender, deviceKeys);
    }

    /// @inheritdoc IDidRegistry
    function setHomeNodes(address[] calldata homeNodes) external {
        DidRecord storage r = _active(msg.sender);
        _checkHomeNodes(homeNodes);
        r.document.homeNodes = homeNodes;
        r.updatedAt = uint64(block.timestamp);
        emit HomeNodesChanged(msg.sender, homeNodes);
    }

    /// @inheritdoc IDidRegistry
    function setBackupPointer(string calldata backupPointer) external {
        DidRecord storage r = _active(msg.sender);
        _checkBackupPointer(backupPointer);
        r.document.backupPointer = backupPointer;
        r.updatedAt = uint64(block.timestamp);
        emit BackupPointerChanged(msg.sender, backupPointer);
    }

    /// @inheritdoc IDidRegistry
    function rotateBillKey(BillKey calldata billKey, uint256[] calldata siblings) external {
        DidRecord storage r = _active(msg.sender);
        uint256 oldLeaf = r.billKeyHash;
        uint256 newLeaf = _billKeyHash(billKey);
        uint256 index = _checkSiblings(oldLeaf, siblings);
        r.billKey = billKey;
        r.billKeyHash = newLeaf;
        r.updatedAt = uint64(block.timestamp);
        delete _accountOf[oldLeaf];
        _accountOf[newLeaf] = msg.sender;
        uint256 newRoot = _tree._update(oldLeaf, newLeaf, siblings);
        _recordRoot(newRoot);
        emit BillKeyRotated(msg.sender, oldLeaf, newLeaf);
        emit IdentityTreeChanged(index, newLeaf, newRoot);
    }

    /// @inheritdoc IDidRegistry
    function revoke(uint256[] calldata siblings) external {
        DidRecord storage r = _active(msg.sender);
        uint256 leaf = r.billKeyHash;
        uint256 index = _checkSiblings(leaf, siblings);
        uint64 refundTime = uint64(block.timestamp + _parameters.get(Parameter.DidRefundDelay));
        r.status = DidStatus.Revoked;
        r.refundTime = refundTime;
        r.updatedAt = uint64(block.timestamp);
        delete _accountOf[leaf];
        uint256 newRoot = _tree._remove(leaf, siblings);
        _recordRoot(newRoot);
        emit DidRevoked(msg.sender, leaf, refundTime);
        emit IdentityTreeChanged(index, 0, newRoot);
    }

    /// @inheritdoc IDidRegistry
    function withdrawDeposit() external {
        DidRecord storage r = _records[msg.sender];
        if (r.status != DidStatus.Revoked || block.timestamp < r.refundTime) {
            revert DidDepositLocked(msg.sender, r.refundTime);
        }
        uint256 amount = r.deposit;
        delete _records[msg.sender];
        emit DepositWithdrawn(msg.sender, amount);
        if (amount != 0) _token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IDidRegistry
    function didOf(address account) external view returns (DidRecord memory) {
        return _records[account];
    }

    /// @inheritdoc IDidRegistry
    function isActive(address account) external view returns (bool) {
        return _records[account].status == DidStatus.Active;
    }

    /// @inheritdoc IDidRegistry
    function accountOfBillKey(uint256 billKeyHash) external view returns (address) {
        return _accountOf[billKeyHash];
    }

    /// @inheritdoc IDidRegistry
    function root() external view returns (uint256) {
        return _tree._root();
    }

    /// @inheritdoc IDidRegistry
    function isKnownRoot(uint256 root_) external view returns (bool) {
        uint256 sequence = _rootSequence[root_];
        return root_ != 0 && sequence != 0 && _sequence - sequence < ROOT_HISTORY_SIZE;
    }

    /// @inheritdoc IDidRegistry
    function treeInfo() external view returns (uint256 size, uint256 depth) {
        return (_tree.size, _tree.depth);
    }

    /// @inheritdoc IDidRegistry
    function leafIndexOf(uint256 billKeyHash) external view returns (uint256) {
        return _tree._indexOf(billKeyHash);
    }

    // ---------------------------------------------------------------- internals

    function _recordRoot(uint256 newRoot) private {
        _rootSequence[newRoot] = ++_sequence;
    }

    function _active(address account) private view returns (DidRecord storage r) {
        r = _records[account];
        if (r.status != DidStatus.Active) revert DidNotActive(account);
    }

    /// @dev Checks the key is a Baby Jubjub point other than the identity and not in the tree; returns its leaf.
    function _billKeyHash(BillKey calldata key) private view returns (uint256 leaf) {
        if (!_onCurve(key.x, key.y) || (key.x == 0 && key.y == 1)) revert DidInvalidBillKey(key.x, key.y);
        leaf = PoseidonT3.hash([key.x, key.y]);
        if (_tree._has(leaf)) revert DidBillKeyTaken(leaf);
    }

    function _onCurve(uint256 x, uint256 y) private pure returns (bool) {
        if (x >= _FIELD || y >= _FIELD) return false;
        uint256 xx = mulmod(x, x, _FIELD);
        uint256 yy = mulmod(y, y, _FIELD);
        uint256 lhs = addmod(mulmod(_A, xx, _FIELD), yy, _FIELD);
        uint256 rhs = addmod(1, mulmod(_D, mulmod(xx, yy, _FIELD), _FIELD), _FIELD);
        return lhs == rhs;
    }

    /// @dev The lean IMT needs one sibling per level where the leaf's path has a left neighbour, or a right neighbour
    /// that exists; a wrong count would index out of the array, so it is refused first with a clear error.
    function _checkSiblings(uint256 leaf, uint256[] calldata siblings) private view returns (uint256 index) {
        index = _tree._indexOf(leaf);
        uint256 lastIndex = _tree.size - 1;
        uint256 depth = _tree.depth;
        uint256 expected;
        for (uint256 level = 0; level < depth; ++level) {
            if ((index >> level) & 1 == 1 || index >> level != lastIndex >> level) ++expected;
        }
        if (siblings.length != expected) revert DidWrongSiblingCount(expected, siblings.length);
    }

    function _checkSignature(bytes calldata signature) private pure {
        if (signature.length != 64) revert DidInvalidSignatureLength(signature.length);
    }

    function _checkDevices(bytes32[] calldata deviceKeys) private pure {
        if (deviceKeys.length > MAX_DEVICES) revert DidTooMany(deviceKeys.length, MAX_DEVICES);
    }

    function _checkHomeNodes(address[] calldata homeNodes) private view {
        if (homeNodes.length > MAX_HOME_NODES) revert DidTooMany(homeNodes.length, MAX_HOME_NODES);
        for (uint256 i = 0; i < homeNodes.length; ++i) {
            if (_nodes.roleOf(homeNodes[i]) != NodeRole.Edge) revert DidNotEdgeNode(homeNodes[i]);
        }
    }

    function _checkBackupPointer(string calldata backupPointer) private pure {
        uint256 length = bytes(backupPointer).length;
        if (length > MAX_BACKUP_POINTER_LENGTH) revert DidBackupPointerTooLong(length, MAX_BACKUP_POINTER_LENGTH);
    }
}
