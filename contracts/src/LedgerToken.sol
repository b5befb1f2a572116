// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title LedgerToken
/// @notice The ledgerlm settlement token (LGR, 18 decimals). Consumers pay fees in it, stakers bond it,
///         and epoch rewards are paid in it. Supply grows only through holders of MINTER_ROLE.
/// @dev ERC-2612 permit lets staking and escrow deposits happen in one transaction.
contract LedgerToken is ERC20, ERC20Permit, AccessControl {
    /// @notice Role allowed to create new tokens.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    /// @notice An address argument that must be set was the zero address.
    error ZeroAddress();

    /// @param admin Receives DEFAULT_ADMIN_ROLE and MINTER_ROLE.
    constructor(address admin) ERC20("Ledger Token", "LGR") ERC20Permit("Ledger Token") {
        if (admin == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MINTER_ROLE, admin);
    }

    /// @notice Creates `amount` new tokens (base units) for `to`; emits {Transfer} from the zero address.
    /// @param to Recipient of the new tokens.
    /// @param amount Amount in base units (18 decimals).
    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
    }
}
