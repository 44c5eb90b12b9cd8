// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {ERC20Votes} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Votes.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {ISendToken} from "../interfaces/ISendToken.sol";

/// @title SendToken
/// @notice Fixed-supply ERC20 with permit and vote checkpoints. See ISendToken.
contract SendToken is ISendToken, ERC20, ERC20Permit, ERC20Votes {
    /// @param recipients Who receives the supply at deploy (the treasury and the reward pool).
    /// @param amounts How much each receives, in wei.
    constructor(
        address[] memory recipients,
        uint256[] memory amounts
    ) ERC20("Sending Network", "SEND") ERC20Permit("Sending Network") {
        if (recipients.length != amounts.length) revert TokenMintListMismatch(recipients.length, amounts.length);
        for (uint256 i = 0; i < recipients.length; ++i) {
            _mint(recipients[i], amounts[i]);
        }
    }

    /// @inheritdoc ERC20Permit
    function nonces(address owner) public view override(ERC20Permit, Nonces) returns (uint256) {
        return super.nonces(owner);
    }

    function _update(address from, address to, uint256 value) internal override(ERC20, ERC20Votes) {
        super._update(from, to, value);
    }
}
