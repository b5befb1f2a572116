// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title Staking
/// @notice Bonds of validators, agents and contributors. Stake leaves only two ways: its owner
///         unstakes through a cooldown, or a SLASHER_ROLE holder slashes it to the treasury.
/// @dev Slashing reaches pending (cooling-down) stake too, so unstaking cannot dodge a slash that is
///      decided within the cooldown.
contract Staking is AccessControl, ReentrancyGuard, Pausable {
    using SafeERC20 for IERC20;

    /// @notice Role allowed to slash stake (the node's validation and governance logic).
    bytes32 public constant SLASHER_ROLE = keccak256("SLASHER_ROLE");

    uint8 public constant ROLE_VALIDATOR = 0;
    uint8 public constant ROLE_AGENT = 1;
    uint8 public constant ROLE_CONTRIBUTOR_BOND = 2;

    struct Position {
        uint256 active;
        uint256 pending;
        uint64 releaseAt;
    }

    /// @notice The staked token.
    IERC20 public immutable token;

    /// @notice Seconds between an unstake request and the moment it can be withdrawn.
    uint64 public immutable cooldownSeconds;

    /// @notice Receives slashed stake.
    address public treasury;

    mapping(address account => mapping(uint8 role => Position)) private _positions;
    mapping(uint8 role => uint256) private _totalActive;

    event Staked(address indexed account, uint8 indexed role, uint256 amount, uint256 activeStake);
    event UnstakeRequested(
        address indexed account, uint8 indexed role, uint256 amount, uint256 pendingTotal, uint64 releaseAt
    );
    event Withdrawn(address indexed account, uint8 indexed role, uint256 amount);
    event Slashed(
        address indexed account,
        uint8 indexed role,
        uint256 amount,
        uint256 fromActive,
        uint256 fromPending,
        bytes32 reason
    );
    event TreasuryUpdated(address indexed previousTreasury, address indexed newTreasury);

    error ZeroAddress();
    error ZeroAmount();
    error UnknownRole(uint8 role);
    error InsufficientStake(uint256 available, uint256 requested);
    error NothingToWithdraw();
    error CooldownNotElapsed(uint64 releaseAt);

    /// @param token_ The staked token.
    /// @param admin Receives DEFAULT_ADMIN_ROLE (grants SLASHER_ROLE, sets the treasury, pauses).
    /// @param treasury_ Receives slashed stake.
    /// @param cooldownSeconds_ Unstake cooldown in seconds.
    constructor(IERC20 token_, address admin, address treasury_, uint64 cooldownSeconds_) {
        if (address(token_) == address(0) || admin == address(0) || treasury_ == address(0)) revert ZeroAddress();
        token = token_;
        cooldownSeconds = cooldownSeconds_;
        treasury = treasury_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        emit TreasuryUpdated(address(0), treasury_);
    }

    modifier knownRole(uint8 role) {
        if (role > ROLE_CONTRIBUTOR_BOND) revert UnknownRole(role);
        _;
    }

    /// @notice Stakes `amount` of the caller's tokens under `role`; needs a prior allowance.
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond.
    /// @param amount Amount in base units (non-zero).
    function stake(uint8 role, uint256 amount) external nonReentrant whenNotPaused knownRole(role) {
        _stake(role, amount);
    }

    /// @notice Like {stake}, with an ERC-2612 permit instead of a prior approval.
    /// @dev A failing permit is ignored, so a front-run permit cannot block the stake; the transfer
    ///      still needs a sufficient allowance.
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond.
    /// @param amount Amount in base units (non-zero); also the permitted value.
    /// @param deadline Permit deadline.
    /// @param v Permit signature v.
    /// @param r Permit signature r.
    /// @param s Permit signature s.
    function stakeWithPermit(uint8 role, uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        nonReentrant
        whenNotPaused
        knownRole(role)
    {
        try IERC20Permit(address(token)).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        _stake(role, amount);
    }

    /// @notice Starts the cooldown for `amount` of the caller's active stake. A second request adds to
    ///         the pending amount and restarts the cooldown for all of it.
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond.
    /// @param amount Amount in base units (non-zero, at most the active stake).
    function requestUnstake(uint8 role, uint256 amount) external whenNotPaused knownRole(role) {
        if (amount == 0) revert ZeroAmount();
        Position storage p = _positions[msg.sender][role];
        if (amount > p.active) revert InsufficientStake(p.active, amount);
        p.active -= amount;
        p.pending += amount;
        p.releaseAt = uint64(block.timestamp) + cooldownSeconds;
        _totalActive[role] -= amount;
        emit UnstakeRequested(msg.sender, role, amount, p.pending, p.releaseAt);
    }

    /// @notice Sends the caller's whole pending stake for `role` to the caller once the cooldown is over.
    ///         Works while paused.
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond.
    function withdraw(uint8 role) external nonReentrant knownRole(role) {
        Position storage p = _positions[msg.sender][role];
        uint256 amount = p.pending;
        if (amount == 0) revert NothingToWithdraw();
        if (block.timestamp < p.releaseAt) revert CooldownNotElapsed(p.releaseAt);
        p.pending = 0;
        p.releaseAt = 0;
        token.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, role, amount);
    }

    /// @notice Takes `amount` from `account`'s stake under `role` (active first, then pending) and sends it
    ///         to the treasury. Reverts with {InsufficientStake} if both together are smaller.
    /// @param account The slashed staker.
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond.
    /// @param amount Amount in base units (non-zero).
    /// @param reason Off-chain reference of the decision (e.g. hash of the round or rejection record).
    function slash(address account, uint8 role, uint256 amount, bytes32 reason)
        external
        nonReentrant
        onlyRole(SLASHER_ROLE)
        knownRole(role)
    {
        if (amount == 0) revert ZeroAmount();
        Position storage p = _positions[account][role];
        uint256 available = p.active + p.pending;
        if (amount > available) revert InsufficientStake(available, amount);
        uint256 fromActive = amount <= p.active ? amount : p.active;
        uint256 fromPending = amount - fromActive;
        p.active -= fromActive;
        p.pending -= fromPending;
        // Nothing left cooling down: clear the release time so pendingOf reads (0, 0).
        if (p.pending == 0) p.releaseAt = 0;
        _totalActive[role] -= fromActive;
        token.safeTransfer(treasury, amount);
        emit Slashed(account, role, amount, fromActive, fromPending, reason);
    }

    /// @notice Changes where slashed stake goes.
    /// @param newTreasury The new treasury (non-zero).
    function setTreasury(address newTreasury) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (newTreasury == address(0)) revert ZeroAddress();
        emit TreasuryUpdated(treasury, newTreasury);
        treasury = newTreasury;
    }

    /// @notice Stops new stakes and unstake requests; withdrawals and slashing continue.
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @notice Lifts a {pause}.
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    /// @notice Active (not cooling down) stake of `account` under `role`.
    /// @param account The staker.
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond.
    function stakeOf(address account, uint8 role) external view knownRole(role) returns (uint256) {
        return _positions[account][role].active;
    }

    /// @notice Stake of `account` under `role` that is cooling down, and when it can be withdrawn.
    /// @param account The staker.
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond.
    /// @return amount Pending amount in base units.
    /// @return releaseAt Timestamp from which {withdraw} succeeds (0 if nothing is pending).
    function pendingOf(address account, uint8 role)
        external
        view
        knownRole(role)
        returns (uint256 amount, uint64 releaseAt)
    {
        Position storage p = _positions[account][role];
        return (p.pending, p.releaseAt);
    }

    /// @notice Sum of all active stake under `role` (pending stake excluded).
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond.
    function totalStaked(uint8 role) external view knownRole(role) returns (uint256) {
        return _totalActive[role];
    }

    function _stake(uint8 role, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        token.safeTransferFrom(msg.sender, address(this), amount);
        Position storage p = _positions[msg.sender][role];
        p.active += amount;
        _totalActive[role] += amount;
        emit Staked(msg.sender, role, amount, p.active);
    }
}
