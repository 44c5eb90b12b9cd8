// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title SharePool
/// @notice Tokens held against shares. Depositors receive shares at the pool's current price, a slash lowers the
/// price for every holder at once (O(1), pro rata), and rounding always favours the pool, so the tokens behind the
/// outstanding shares never fall short.
library SharePool {
    struct Pool {
        uint256 tokens;
        uint256 shares;
    }

    /// @notice Adds `amount` tokens; returns the shares minted (rounded down).
    function deposit(Pool storage pool, uint256 amount) internal returns (uint256 shares) {
        // An empty pool (or one whose tokens were all taken, which the slash cap prevents) starts at one share a token.
        shares = pool.shares == 0 || pool.tokens == 0 ? amount : Math.mulDiv(amount, pool.shares, pool.tokens);
        pool.tokens += amount;
        pool.shares += shares;
    }

    /// @notice Removes `shares`; returns the tokens they were worth (rounded down; the last holder takes the rest).
    function redeem(Pool storage pool, uint256 shares) internal returns (uint256 amount) {
        amount = shares == pool.shares ? pool.tokens : Math.mulDiv(shares, pool.tokens, pool.shares);
        pool.tokens -= amount;
        pool.shares -= shares;
    }

    /// @notice Takes `bps` basis points of the pool's tokens (rounded down); returns the tokens taken.
    function cut(Pool storage pool, uint256 bps) internal returns (uint256 amount) {
        amount = Math.mulDiv(pool.tokens, bps, 10_000);
        pool.tokens -= amount;
    }

    /// @notice The tokens `shares` are worth now (rounded down).
    function value(Pool storage pool, uint256 shares) internal view returns (uint256) {
        if (shares == 0) return 0;
        return shares == pool.shares ? pool.tokens : Math.mulDiv(shares, pool.tokens, pool.shares);
    }

    /// @notice The shares that must be given up to take out `amount` tokens (rounded up, so the pool never loses).
    function sharesFor(Pool storage pool, uint256 amount) internal view returns (uint256) {
        return Math.mulDiv(amount, pool.shares, pool.tokens, Math.Rounding.Ceil);
    }
}
