// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title EpochDistributor
/// @notice Pays each epoch's rewards against a Merkle root of (account, amount) pairs. An epoch is
///         funded in any number of parts (escrow settlement chunks, the validators' reward pool) while
///         it is open, then its root is posted once, for exactly the funded total. Anyone may submit a
///         claim for anyone; the tokens always go to the account in the leaf. After the claim window,
///         what is left unclaimed can be swept to the treasury.
/// @dev Leaves follow OpenZeppelin's StandardMerkleTree with types ["address", "uint256"]:
///      keccak256(bytes.concat(keccak256(abi.encode(account, amount)))).
///      Epoch ids carry the node that settles them: `uint256(uint160(node)) << 64 | number` ({epochId}). Only that
///      node posts the root ({postRoot}), and the funders (PaymentEscrow, Staking) fund an epoch only for it, so
///      nodes sharing one distributor each number their epochs 1, 2, 3, ... and never collide.
contract EpochDistributor is AccessControl, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice Role allowed to fund epochs (the PaymentEscrow and the Staking reward pool).
    bytes32 public constant FUNDER_ROLE = keccak256("FUNDER_ROLE");

    /// @notice Role allowed to post an epoch's payout root (the node that settles).
    bytes32 public constant POSTER_ROLE = keccak256("POSTER_ROLE");

    /// @notice Role allowed to sweep unclaimed funds to the treasury after the claim window.
    bytes32 public constant SWEEPER_ROLE = keccak256("SWEEPER_ROLE");

    struct Epoch {
        bytes32 root;
        uint256 total;
        uint256 claimed;
        uint64 fundedAt;
        uint64 postedAt;
        bool swept;
    }

    /// @notice The paid-out token.
    IERC20 public immutable token;

    /// @notice Seconds after an epoch's root is posted (or, if it never is, after its first funding)
    ///         before its unclaimed funds can be swept.
    uint64 public immutable claimWindowSeconds;

    /// @notice Receives swept funds.
    address public treasury;

    /// @notice Root (zero until posted), funded total, claimed amount, timestamps and sweep flag.
    mapping(uint256 epoch => Epoch) public epochs;

    mapping(uint256 epoch => mapping(address account => bool)) private _claimed;

    event EpochFunded(uint256 indexed epoch, uint256 amount, uint256 total, address indexed funder);
    event RootPosted(uint256 indexed epoch, bytes32 root, uint256 total, uint64 sweepableAt, address indexed poster);
    event Claimed(uint256 indexed epoch, address indexed account, uint256 amount);
    event Swept(uint256 indexed epoch, address indexed treasury, uint256 amount);
    event TreasuryUpdated(address indexed previousTreasury, address indexed newTreasury);

    error ZeroAddress();
    error ZeroAmount();
    error ZeroRoot();
    error EpochFinal(uint256 epoch);
    error EmptyEpoch(uint256 epoch);
    error FundingMismatch(uint256 epoch, uint256 funded, uint256 total);
    error UnknownEpoch(uint256 epoch);
    error EpochSwept(uint256 epoch);
    error ClaimWindowOpen(uint256 epoch, uint64 sweepableAt);
    error AlreadyClaimed(uint256 epoch, address account);
    error InvalidProof(uint256 epoch, address account, uint256 amount);
    error EpochOverclaimed(uint256 epoch, uint256 remaining, uint256 amount);
    error ForeignEpoch(uint256 epoch, address caller);

    /// @param token_ The paid-out token.
    /// @param admin Receives DEFAULT_ADMIN_ROLE (grants the other roles, moves the treasury).
    /// @param treasury_ Receives swept funds.
    /// @param claimWindowSeconds_ Claim window before unclaimed funds can be swept.
    constructor(IERC20 token_, address admin, address treasury_, uint64 claimWindowSeconds_) {
        if (address(token_) == address(0) || admin == address(0) || treasury_ == address(0)) revert ZeroAddress();
        token = token_;
        treasury = treasury_;
        claimWindowSeconds = claimWindowSeconds_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        emit TreasuryUpdated(address(0), treasury_);
    }

    /// @notice Adds `amount` tokens from the caller (needs an allowance) to `epoch`, any number of
    ///         times until its root is posted.
    /// @param epoch Epoch number.
    /// @param amount Amount in base units (non-zero).
    function fund(uint256 epoch, uint256 amount) external nonReentrant onlyRole(FUNDER_ROLE) {
        if (amount == 0) revert ZeroAmount();
        Epoch storage e = epochs[epoch];
        if (e.root != bytes32(0)) revert EpochFinal(epoch);
        if (e.fundedAt == 0) e.fundedAt = uint64(block.timestamp);
        e.total += amount;
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit EpochFunded(epoch, amount, e.total, msg.sender);
    }

    /// @notice Posts `epoch`'s payout root, once. `total` must equal what the epoch was funded with,
    ///         so every leaf is covered and nothing funded is left outside the tree.
    /// @param epoch A funded epoch of the caller's own ({epochNode} is the caller).
    /// @param root StandardMerkleTree root over (address account, uint256 amount) leaves (non-zero).
    /// @param total Sum of the amounts under the root.
    function postRoot(uint256 epoch, bytes32 root, uint256 total) external onlyRole(POSTER_ROLE) {
        if (root == bytes32(0)) revert ZeroRoot();
        if (epochNode(epoch) != msg.sender) revert ForeignEpoch(epoch, msg.sender);
        Epoch storage e = epochs[epoch];
        if (e.root != bytes32(0)) revert EpochFinal(epoch);
        if (e.total == 0) revert EmptyEpoch(epoch);
        if (e.total != total) revert FundingMismatch(epoch, e.total, total);
        e.root = root;
        e.postedAt = uint64(block.timestamp);
        emit RootPosted(epoch, root, total, e.postedAt + claimWindowSeconds, msg.sender);
    }

    /// @notice Pays `amount` to `account` for `epoch` if (account, amount) is a leaf under the epoch's root.
    ///         Callable by anyone; each account claims at most once per epoch, before a sweep.
    /// @param epoch An epoch with a posted root.
    /// @param account The leaf's account, which receives the tokens.
    /// @param amount The leaf's amount in base units.
    /// @param proof Sibling hashes from the leaf to the root (StandardMerkleTree proof).
    function claim(uint256 epoch, address account, uint256 amount, bytes32[] calldata proof) external nonReentrant {
        Epoch storage e = epochs[epoch];
        if (e.root == bytes32(0)) revert UnknownEpoch(epoch);
        if (e.swept) revert EpochSwept(epoch);
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

    /// @notice After the claim window, sends what `epoch` still holds to the treasury and closes it to
    ///         claims. An epoch whose root was never posted becomes sweepable a claim window after its
    ///         first funding, so funds cannot be stranded by a settlement that never finished.
    /// @param epoch A funded epoch.
    function sweep(uint256 epoch) external nonReentrant onlyRole(SWEEPER_ROLE) {
        Epoch storage e = epochs[epoch];
        if (e.total == 0) revert UnknownEpoch(epoch);
        if (e.swept) revert EpochSwept(epoch);
        uint64 sweepableAt = (e.postedAt != 0 ? e.postedAt : e.fundedAt) + claimWindowSeconds;
        if (block.timestamp < sweepableAt) revert ClaimWindowOpen(epoch, sweepableAt);
        uint256 amount = e.total - e.claimed;
        e.swept = true;
        e.claimed = e.total;
        if (e.root == bytes32(0)) e.root = bytes32(uint256(1)); // closed to further funding and posting
        if (amount > 0) token.safeTransfer(treasury, amount);
        emit Swept(epoch, treasury, amount);
    }

    /// @notice Changes where swept funds go.
    /// @param newTreasury The new treasury (non-zero).
    function setTreasury(address newTreasury) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (newTreasury == address(0)) revert ZeroAddress();
        emit TreasuryUpdated(treasury, newTreasury);
        treasury = newTreasury;
    }

    /// @notice The id of `node`'s epoch `number`: the node's address above the number's 64 bits.
    /// @param node The node (its settling and posting account).
    /// @param number The node's own epoch number.
    function epochId(address node, uint64 number) public pure returns (uint256) {
        return uint256(uint160(node)) << 64 | number;
    }

    /// @notice The node an epoch id belongs to: the only account that may post its root (and, through the
    ///         funders, settle and release rewards into it). Zero for ids below 2**64, which no node holds.
    /// @param epoch Epoch id.
    function epochNode(uint256 epoch) public pure returns (address) {
        return epoch >> 224 == 0 ? address(uint160(epoch >> 64)) : address(0);
    }

    /// @notice Whether `account` has already claimed for `epoch`.
    /// @param epoch Epoch number.
    /// @param account The account.
    function isClaimed(uint256 epoch, address account) external view returns (bool) {
        return _claimed[epoch][account];
    }
}
