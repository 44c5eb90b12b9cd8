// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice A Baby Jubjub public key (twisted Edwards form, as circomlib uses): the key a user signs bills with.
struct BillKey {
    uint256 x;
    uint256 y;
}

/// @notice The messaging part of a DID document: what a sender needs to open an X3DH session, and where to reach
/// and restore the user.
struct DidDocument {
    bytes32 identityKey; // X25519 identity key (IK)
    bytes32 signingKey; // Ed25519 key that signs the prekeys
    bytes32 signedPrekey; // X25519 signed prekey (SPK)
    uint32 signedPrekeyId;
    bytes signedPrekeySignature; // Ed25519 signature by `signingKey` over `signedPrekey` (64 bytes), checked by clients
    bytes32[] deviceKeys; // X25519 identity keys of the user's other devices
    address[] homeNodes; // operators of the edge nodes that hold the user's inbox
    string backupPointer; // where the encrypted contacts/history backup lives (e.g. "edge:<operator>/<hash>")
}

/// @title IDidRegistry
/// @notice One DID document per wallet address, and the identity tree: a lean incremental Merkle tree (Poseidon) whose
/// leaves are Poseidon(x, y) of every active bill key. Circuits prove a bill's signer is in the tree under a root the
/// contract knows; a short history of roots keeps proofs made against a recent root valid. Registering costs a
/// governed deposit, refunded a governed delay after the DID is revoked, so fake identities cost something.
interface IDidRegistry {
    /// @notice Where a DID is in its life.
    enum DidStatus {
        None,
        Active,
        Revoked
    }

    /// @notice A DID document with its bill key and bookkeeping, as read back.
    struct DidRecord {
        DidStatus status;
        DidDocument document;
        BillKey billKey;
        uint256 billKeyHash; // the leaf: Poseidon(billKey.x, billKey.y)
        uint256 deposit;
        uint64 refundTime; // when a revoked DID's deposit may be withdrawn
        uint64 updatedAt;
    }

    /// @notice Emitted after `account` registered its DID, with its bill key hash at `leafIndex`.
    event DidRegistered(address indexed account, uint256 billKeyHash, uint256 leafIndex, uint256 deposit);

    /// @notice Emitted after `account` replaced its identity and signing keys.
    event IdentityKeysChanged(address indexed account, bytes32 identityKey, bytes32 signingKey);

    /// @notice Emitted after `account` rotated its signed prekey.
    event SignedPrekeyRotated(address indexed account, uint32 prekeyId, bytes32 prekey, bytes signature);

    /// @notice Emitted after `account` replaced its device keys.
    event DevicesChanged(address indexed account, bytes32[] deviceKeys);

    /// @notice Emitted after `account` replaced its home nodes.
    event HomeNodesChanged(address indexed account, address[] homeNodes);

    /// @notice Emitted after `account` replaced its backup pointer.
    event BackupPointerChanged(address indexed account, string backupPointer);

    /// @notice Emitted after `account` replaced its bill key.
    event BillKeyRotated(address indexed account, uint256 oldBillKeyHash, uint256 newBillKeyHash);

    /// @notice Emitted after `account` revoked its DID; its deposit is refundable from `refundTime`.
    event DidRevoked(address indexed account, uint256 billKeyHash, uint64 refundTime);

    /// @notice Emitted after `account` took back its deposit.
    event DepositWithdrawn(address indexed account, uint256 amount);

    /// @notice Emitted after every change of the identity tree: leaf `index` now holds `leaf` (0 when removed) and the
    /// root is `root`. Replaying these events rebuilds the tree.
    event IdentityTreeChanged(uint256 indexed index, uint256 leaf, uint256 root);

    /// @notice `account` has a DID already (active, or revoked with its deposit not yet withdrawn).
    error DidAlreadyRegistered(address account);

    /// @notice `account` has no active DID.
    error DidNotActive(address account);

    /// @notice A bill key that is not a point of Baby Jubjub, or is the identity point.
    error DidInvalidBillKey(uint256 x, uint256 y);

    /// @notice A bill key whose hash is in the tree already (another DID, or this one).
    error DidBillKeyTaken(uint256 billKeyHash);

    /// @notice `given` sibling nodes for a leaf whose proof has `expected`. (Siblings of the right count whose values
    /// are wrong revert with the tree library's `WrongSiblingNodes()`.)
    error DidWrongSiblingCount(uint256 expected, uint256 given);

    /// @notice A signed-prekey signature of `length` bytes (64 expected).
    error DidInvalidSignatureLength(uint256 length);

    /// @notice A list of `count` entries, more than `maximum`.
    error DidTooMany(uint256 count, uint256 maximum);

    /// @notice A backup pointer of `length` bytes, more than `maximum`.
    error DidBackupPointerTooLong(uint256 length, uint256 maximum);

    /// @notice A home node that is not a registered edge node.
    error DidNotEdgeNode(address operator);

    /// @notice `account` has no deposit to withdraw, or not before `refundTime`.
    error DidDepositLocked(address account, uint64 refundTime);

    /// @notice Registers the caller's DID and inserts its bill key into the identity tree; takes the deposit.
    function register(DidDocument calldata document, BillKey calldata billKey) external;

    /// @notice Replaces the caller's identity and signing keys (the signed prekey must be rotated with them).
    function setIdentityKeys(
        bytes32 identityKey,
        bytes32 signingKey,
        bytes32 signedPrekey,
        uint32 signedPrekeyId,
        bytes calldata signature
    ) external;

    /// @notice Replaces the caller's signed prekey.
    function rotateSignedPrekey(bytes32 signedPrekey, uint32 signedPrekeyId, bytes calldata signature) external;

    /// @notice Replaces the caller's device keys.
    function setDevices(bytes32[] calldata deviceKeys) external;

    /// @notice Replaces the caller's home nodes; each must be a registered edge node.
    function setHomeNodes(address[] calldata homeNodes) external;

    /// @notice Replaces the caller's backup pointer.
    function setBackupPointer(string calldata backupPointer) external;

    /// @notice Replaces the caller's bill key; `siblings` prove the current leaf (lean IMT proof siblings).
    function rotateBillKey(BillKey calldata billKey, uint256[] calldata siblings) external;

    /// @notice Revokes the caller's DID and removes its leaf; `siblings` prove the current leaf.
    function revoke(uint256[] calldata siblings) external;

    /// @notice Returns a revoked DID's deposit once the refund delay has passed; the address may register again.
    function withdrawDeposit() external;

    /// @notice `account`'s DID record.
    function didOf(address account) external view returns (DidRecord memory);

    /// @notice Whether `account` has an active DID.
    function isActive(address account) external view returns (bool);

    /// @notice The account whose active bill key hashes to `billKeyHash` (address(0) if none).
    function accountOfBillKey(uint256 billKeyHash) external view returns (address);

    /// @notice The identity tree's root now.
    function root() external view returns (uint256);

    /// @notice Whether `root` is one of the last `ROOT_HISTORY_SIZE` roots of the identity tree.
    function isKnownRoot(uint256 root) external view returns (bool);

    /// @notice Leaves ever inserted (removed ones count) and the tree's depth.
    function treeInfo() external view returns (uint256 size, uint256 depth);

    /// @notice The index of `billKeyHash`'s leaf (reverts if absent).
    function leafIndexOf(uint256 billKeyHash) external view returns (uint256);
}
