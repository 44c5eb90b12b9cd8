// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ISendToken
/// @notice The protocol token: ERC20 (IERC20) with EIP-2612 permit (IERC20Permit) and ERC-5805 vote checkpoints
/// (IERC5805, clock: block number), all from OpenZeppelin. The whole supply is minted at deploy, to the treasury (the
/// timelock) and the reward pool; there is no mint function, so nothing can ever add supply. This interface carries
/// only what the token adds to those standards.
interface ISendToken {
    /// @notice A mint list whose recipients and amounts differ in length.
    error TokenMintListMismatch(uint256 recipients, uint256 amounts);
}
