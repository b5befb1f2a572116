// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title LedgerToken
/// @notice The ledgerlm settlement token (LGR, 18 decimals). Consumers pay fees in it, stakers bond it,
///         and epoch rewards are paid in it. The whole supply is minted once, at deployment, to one
///         treasury account; nobody can ever create more.
/// @dev No roles and no mint function: no key, however compromised, can inflate the supply. ERC-2612
///      permit lets staking and escrow deposits happen in one transaction.
contract LedgerToken is ERC20, ERC20Permit {
    /// @notice An address argument that must be set was the zero address.
    error ZeroAddress();

    /// @notice The fixed supply must be positive.
    error ZeroSupply();

    /// @param treasury Receives the entire, fixed supply.
    /// @param supply Total supply in base units (18 decimals).
    constructor(address treasury, uint256 supply) ERC20("Ledger Token", "LGR") ERC20Permit("Ledger Token") {
        if (treasury == address(0)) revert ZeroAddress();
        if (supply == 0) revert ZeroSupply();
        _mint(treasury, supply);
    }
}
