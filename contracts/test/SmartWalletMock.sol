// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title SmartWalletMock
/// @notice TEST DOUBLE, never deployed by the deploy script: a contract wallet (ERC-1271) that accepts what its owner
/// key signs, standing in for a recipient whose wallet is a smart account (whose acknowledgements Slashing refuses).
contract SmartWalletMock is IERC1271 {
    address private immutable _owner;

    /// @param owner_ The key whose ECDSA signatures the wallet accepts.
    constructor(address owner_) {
        _owner = owner_;
    }

    /// @inheritdoc IERC1271
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        (address recovered, ECDSA.RecoverError err, ) = ECDSA.tryRecover(hash, signature);
        return err == ECDSA.RecoverError.NoError && recovered == _owner ? this.isValidSignature.selector : bytes4(0);
    }
}
