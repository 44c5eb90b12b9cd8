// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IProtocolParameters, Parameter} from "../interfaces/IProtocolParameters.sol";

/// @title RelayRollupViewsDouble
/// @notice TEST DOUBLE, never deployed by the deploy script. It answers the views of IRelayRollup that the quality
/// oracle and the reward distributor read (work per node, guardian and epoch; settlement deadline; finality) from
/// values a test sets directly, so property tests can draw random settled work without proving batches. The
/// deadline and finality follow the real rollup's rule (epoch end + SettlementWindow). The end-to-end reward tests use
/// the real RelayRollup with real proofs.
contract RelayRollupViewsDouble {
    IProtocolParameters private immutable _parameters;

    mapping(address node => mapping(uint64 epoch => uint256)) private _work;
    mapping(uint64 epoch => uint256) private _epochWork;
    mapping(address guardian => mapping(uint64 epoch => uint256)) private _guardianWork;
    mapping(uint64 epoch => uint256) private _epochGuardianWork;

    constructor(IProtocolParameters parameters_) {
        _parameters = parameters_;
    }

    /// @notice Adds `work` for `node` in `epoch`, credited to `guardian` unless it is address zero (forced inclusion).
    function settle(uint64 epoch, address node, uint256 work, address guardian) external {
        _work[node][epoch] += work;
        _epochWork[epoch] += work;
        if (guardian != address(0)) {
            _guardianWork[guardian][epoch] += work;
            _epochGuardianWork[epoch] += work;
        }
    }

    function workOf(address node, uint64 epoch) external view returns (uint256) {
        return _work[node][epoch];
    }

    function epochWork(uint64 epoch) external view returns (uint256) {
        return _epochWork[epoch];
    }

    function guardianWorkOf(address guardian, uint64 epoch) external view returns (uint256) {
        return _guardianWork[guardian][epoch];
    }

    function epochGuardianWork(uint64 epoch) external view returns (uint256) {
        return _epochGuardianWork[epoch];
    }

    function settlementDeadline(uint64 epoch) public view returns (uint256) {
        return uint256(_parameters.epochStart(epoch + 1)) + _parameters.get(Parameter.SettlementWindow);
    }

    function isFinal(uint64 epoch) external view returns (bool) {
        return block.timestamp >= settlementDeadline(epoch);
    }
}
