// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title EpochDistributor
/// @notice Pays each epoch's rewards against a Merkle root of (account, amount) pairs. Anyone may submit
///         a claim for anyone; the tokens always go to the account in the leaf. Unclaimed rewards stay
///         claimable forever.
/// @dev Leaves follow OpenZeppelin's StandardMerkleTree with types ["address", "uint256"]:
///      keccak256(bytes.concat(keccak256(abi.encode(account, amount)))).
contract EpochDistributor is AccessControl, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice Role allowed to fund epochs (the PaymentEscrow, or an operator paying rewards directly).
    bytes32 public constant FUNDER_ROLE = keccak256("FUNDER_ROLE");

    struct Epoch {
        bytes32 root;
        uint256 total;
        uint256 claimed;
    }

    /// @notice The paid-out token.
    IERC20 public immutable token;

    /// @notice Root, funded total and amount claimed so far of an epoch; root is zero until funded.
    mapping(uint256 epoch => Epoch) public epochs;

    mapping(uint256 epoch => mapping(address account => bool)) private _claimed;

    event EpochFunded(uint256 indexed epoch, bytes32 root, uint256 total, address indexed funder);
    event Claimed(uint256 indexed epoch, address indexed account, uint256 amount);

    error ZeroAddress();
    error ZeroRoot();
    error EpochAlreadyFunded(uint256 epoch);
    error UnknownEpoch(uint256 epoch);
    error AlreadyClaimed(uint256 epoch, address account);
    error InvalidProof(uint256 epoch, address account, uint256 amount);
    error EpochOverclaimed(uint256 epoch, uint256 remaining, uint256 amount);

    /// @param token_ The paid-out token.
    /// @param admin Receives DEFAULT_ADMIN_ROLE (grants FUNDER_ROLE).
    constructor(IERC20 token_, address admin) {
        if (address(token_) == address(0) || admin == address(0)) revert ZeroAddress();
        token = token_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Sets an epoch's payout root and pulls `total` tokens from the caller (needs an allowance).
    ///         Each epoch can be funded once.
    /// @param epoch Epoch number.
    /// @param root StandardMerkleTree root over (address account, uint256 amount) leaves (non-zero).
    /// @param total Sum of the amounts under the root; claims can never exceed it.
    function fundEpoch(uint256 epoch, bytes32 root, uint256 total) external nonReentrant onlyRole(FUNDER_ROLE) {
        if (root == bytes32(0)) revert ZeroRoot();
        Epoch storage e = epochs[epoch];
        if (e.root != bytes32(0)) revert EpochAlreadyFunded(epoch);
        e.root = root;
        e.total = total;
        token.safeTransferFrom(msg.sender, address(this), total);
        emit EpochFunded(epoch, root, total, msg.sender);
    }

    /// @notice Pays `amount` to `account` for `epoch` if (account, amount) is a leaf under the epoch's root.
    ///         Callable by anyone; each account claims at most once per epoch.
    /// @param epoch A funded epoch.
    /// @param account The leaf's account, which receives the tokens.
    /// @param amount The leaf's amount in base units.
    /// @param proof Sibling hashes from the leaf to the root (StandardMerkleTree proof).
    function claim(uint256 epoch, address account, uint256 amount, bytes32[] calldata proof) external nonReentrant {
        Epoch storage e = epochs[epoch];
        if (e.root == bytes32(0)) revert UnknownEpoch(epoch);
        if (_claimed[epoch][account]) revert AlreadyClaimed(epoch, account);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, amount))));
        if (!MerkleProof.verifyCalldata(proof, e.root, leaf)) revert InvalidProof(epoch, account, amount);
        uint256 remaining = e.total - e.claimed;
        if (amount > remaining) revert EpochOverclaimed(epoch, remaining, amount);
        _claimed[epoch][account] = true;
        e.claimed += amount;
        token.safeTransfer(account, amount);
        emit Claimed(epoch, account, amount);
    }

    /// @notice Whether `account` has already claimed for `epoch`.
    /// @param epoch Epoch number.
    /// @param account The account.
    function isClaimed(uint256 epoch, address account) external view returns (bool) {
        return _claimed[epoch][account];
    }
}
