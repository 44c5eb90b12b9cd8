// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IStakeHook} from "../interfaces/IStakeHook.sol";
import {INodeRegistry} from "../interfaces/INodeRegistry.sol";

/// @title StakeHookProbe
/// @notice TEST DOUBLE, never deployed by the deploy script: a stake hook that records each call and the staker's
/// bonded shares the registry reports during it, so a test can check the hook runs before the shares change.
contract StakeHookProbe is IStakeHook {
    /// @notice Emitted on every call, with the staker's shares as the registry reports them at that moment.
    event SharesBeforeChange(address indexed operator, address indexed staker, uint256 shares, uint256 totalShares);

    INodeRegistry private immutable _registry;

    constructor(INodeRegistry registry_) {
        _registry = registry_;
    }

    /// @inheritdoc IStakeHook
    function beforeSharesChange(address operator, address staker) external {
        (uint256 shares, uint256 totalShares, ) = _registry.sharesOf(operator, staker);
        emit SharesBeforeChange(operator, staker, shares, totalShares);
    }
}
