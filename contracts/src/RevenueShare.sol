// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// @title RevenueShare
/// @notice A standard ERC-20 (with ERC-2612 permit) whose holders are paid one asset's revenue (a
///         Datanet's or a model's) each settlement epoch, in proportion to their balance at the
///         epoch's closing block. The whole supply is minted once, at creation, to this contract and
///         handed out by a Merkle drop of (account, amount) leaves that anyone can verify and claim
///         for anyone; nobody can mint later.
/// @dev Every balance change writes a per-block checkpoint (OpenZeppelin Checkpoints), so
///      `balanceAt(account, block)` answers for any past block, the current one included, without an
///      archive node. Allocation leaves follow OpenZeppelin's StandardMerkleTree with types
///      ["address", "uint256"].
contract RevenueShare is ERC20, ERC20Permit {
    using Checkpoints for Checkpoints.Trace208;

    /// @notice What the shares are in: 0 a Datanet, 1 a model (the Registry's ids).
    uint8 public immutable assetKind;

    /// @notice The asset's id in the Registry (keccak256 of its name or model id).
    bytes32 public immutable assetId;

    /// @notice Root of the initial allocation: StandardMerkleTree over (address account, uint256 amount).
    bytes32 public immutable allocationRoot;

    /// @notice The block the shares were issued in.
    uint256 public immutable issuedBlock;

    mapping(address account => Checkpoints.Trace208) private _balanceHistory;
    mapping(address account => bool) private _allocationClaimed;

    /// @notice `account` received its initial allocation of `amount` shares.
    event AllocationClaimed(address indexed account, uint256 amount);

    error ZeroSupply();
    error ZeroRoot();
    error AllocationAlreadyClaimed(address account);
    error InvalidAllocationProof(address account, uint256 amount);
    error FutureBlock(uint256 blockNumber, uint256 current);

    /// @param name_ Token name.
    /// @param symbol_ Token symbol.
    /// @param kind 0 for a Datanet, 1 for a model.
    /// @param id The asset's Registry id.
    /// @param supply The whole, fixed supply in base units (18 decimals).
    /// @param root The allocation's Merkle root; its leaves must sum to `supply`.
    constructor(string memory name_, string memory symbol_, uint8 kind, bytes32 id, uint256 supply, bytes32 root)
        ERC20(name_, symbol_)
        ERC20Permit(name_)
    {
        if (supply == 0) revert ZeroSupply();
        if (root == bytes32(0)) revert ZeroRoot();
        assetKind = kind;
        assetId = id;
        allocationRoot = root;
        issuedBlock = block.number;
        _mint(address(this), supply);
    }

    /// @notice Sends `account` its initial allocation if (account, amount) is a leaf under the
    ///         allocation root. Anyone may submit it; the shares always go to the leaf's account.
    /// @param account The leaf's account.
    /// @param amount The leaf's amount in base units.
    /// @param proof Sibling hashes from the leaf to the root (StandardMerkleTree proof).
    function claimAllocation(address account, uint256 amount, bytes32[] calldata proof) external {
        if (_allocationClaimed[account]) revert AllocationAlreadyClaimed(account);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, amount))));
        if (!MerkleProof.verifyCalldata(proof, allocationRoot, leaf)) revert InvalidAllocationProof(account, amount);
        _allocationClaimed[account] = true;
        _transfer(address(this), account, amount);
        emit AllocationClaimed(account, amount);
    }

    /// @notice Whether `account` has claimed its initial allocation.
    /// @param account The account.
    function isAllocationClaimed(address account) external view returns (bool) {
        return _allocationClaimed[account];
    }

    /// @notice `account`'s balance at the end of block `blockNumber` (the current block included).
    /// @param account The account.
    /// @param blockNumber A block no later than the current one.
    function balanceAt(address account, uint256 blockNumber) public view returns (uint256) {
        if (blockNumber > block.number) revert FutureBlock(blockNumber, block.number);
        return _balanceHistory[account].upperLookupRecent(SafeCast.toUint48(blockNumber));
    }

    /// @notice `balanceAt` for many accounts in one call.
    /// @param accounts The accounts.
    /// @param blockNumber A block no later than the current one.
    function balancesAt(address[] calldata accounts, uint256 blockNumber) external view returns (uint256[] memory out) {
        out = new uint256[](accounts.length);
        for (uint256 i = 0; i < accounts.length; ++i) {
            out[i] = balanceAt(accounts[i], blockNumber);
        }
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        uint48 blockNow = SafeCast.toUint48(block.number);
        if (from != address(0)) _balanceHistory[from].push(blockNow, SafeCast.toUint208(balanceOf(from)));
        if (to != address(0)) _balanceHistory[to].push(blockNow, SafeCast.toUint208(balanceOf(to)));
    }
}
