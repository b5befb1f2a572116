// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

import {EpochDistributor} from "./EpochDistributor.sol";

/// @title Staking
/// @notice Bonds of validators, agents, contributors and compute providers. Stake leaves only two ways: its owner
///         unstakes through a cooldown, or it is slashed for an outcome recorded here first (round id
///         and evidence hash: a validation round, or a compute provider's failed spot-check), at most once per (round, account, role) and at most
///         `slashCapBps` of the bond per round. Slashed stake never leaves to any key: it goes to the
///         validators' reward pool, which is paid out only into an EpochDistributor epoch.
/// @dev Slashing reaches pending (cooling-down) stake too, so unstaking cannot dodge a slash that is
///      decided within the cooldown.
contract Staking is AccessControl, ReentrancyGuard, Pausable {
    using SafeERC20 for IERC20;

    /// @notice Role allowed to record validation outcomes and slash within them (the node).
    bytes32 public constant SLASHER_ROLE = keccak256("SLASHER_ROLE");

    /// @notice Role allowed to move the reward pool into an epoch of the distributor (the node).
    bytes32 public constant REWARDS_ROLE = keccak256("REWARDS_ROLE");

    /// @notice Basis points in a whole.
    uint256 public constant BPS = 10_000;

    uint8 public constant ROLE_VALIDATOR = 0;
    uint8 public constant ROLE_AGENT = 1;
    uint8 public constant ROLE_CONTRIBUTOR_BOND = 2;
    uint8 public constant ROLE_PROVIDER = 3;

    struct Position {
        uint256 active;
        uint256 pending;
        uint64 releaseAt;
    }

    /// @notice The staked token.
    IERC20 public immutable token;

    /// @notice Seconds between an unstake request and the moment it can be withdrawn.
    uint64 public immutable cooldownSeconds;

    /// @notice Most of a bond (active plus pending) one round's slash may take, in basis points.
    uint256 public immutable slashCapBps;

    /// @notice Where the reward pool is paid out; this contract must hold its FUNDER_ROLE.
    EpochDistributor public immutable distributor;

    /// @notice Slashed stake not yet paid out to validators.
    uint256 public rewardPool;

    /// @notice Evidence hash of each recorded validation outcome (zero: none recorded).
    mapping(uint256 roundId => bytes32) public outcomes;

    /// @notice Whether the reward pool was already paid into an epoch.
    mapping(uint256 epoch => bool) public rewardsReleased;

    mapping(address account => mapping(uint8 role => Position)) private _positions;
    mapping(uint8 role => uint256) private _totalActive;
    mapping(uint256 roundId => mapping(address account => mapping(uint8 role => bool))) private _slashed;

    event Staked(address indexed account, uint8 indexed role, uint256 amount, uint256 activeStake);
    event UnstakeRequested(
        address indexed account, uint8 indexed role, uint256 amount, uint256 pendingTotal, uint64 releaseAt
    );
    event Withdrawn(address indexed account, uint8 indexed role, uint256 amount);
    event OutcomeRecorded(uint256 indexed roundId, bytes32 evidenceHash, address indexed recorder);
    event Slashed(
        address indexed account,
        uint8 indexed role,
        uint256 indexed roundId,
        uint256 amount,
        uint256 fromActive,
        uint256 fromPending,
        bytes32 evidenceHash
    );
    event RewardsReleased(uint256 indexed epoch, uint256 amount, uint256 poolLeft);

    error ZeroAddress();
    error ZeroAmount();
    error ZeroEvidence();
    error InvalidSlashCap(uint256 slashCapBps);
    error UnknownRole(uint8 role);
    error InsufficientStake(uint256 available, uint256 requested);
    error NothingToWithdraw();
    error CooldownNotElapsed(uint64 releaseAt);
    error OutcomeAlreadyRecorded(uint256 roundId);
    error UnknownOutcome(uint256 roundId);
    error AlreadySlashed(uint256 roundId, address account, uint8 role);
    error SlashAboveCap(uint256 roundId, address account, uint256 amount, uint256 cap);
    error RewardsAlreadyReleased(uint256 epoch);
    error InsufficientRewardPool(uint256 pool, uint256 amount);
    error ForeignEpoch(uint256 epoch, address caller);

    /// @param token_ The staked token.
    /// @param distributor_ Where the reward pool is paid out (grant this contract its FUNDER_ROLE).
    /// @param admin Receives DEFAULT_ADMIN_ROLE (grants SLASHER_ROLE and REWARDS_ROLE, pauses).
    /// @param cooldownSeconds_ Unstake cooldown in seconds.
    /// @param slashCapBps_ Most of a bond one round may slash, in basis points (1..10000).
    constructor(
        IERC20 token_,
        EpochDistributor distributor_,
        address admin,
        uint64 cooldownSeconds_,
        uint256 slashCapBps_
    ) {
        if (address(token_) == address(0) || address(distributor_) == address(0) || admin == address(0)) {
            revert ZeroAddress();
        }
        if (slashCapBps_ == 0 || slashCapBps_ > BPS) revert InvalidSlashCap(slashCapBps_);
        token = token_;
        distributor = distributor_;
        cooldownSeconds = cooldownSeconds_;
        slashCapBps = slashCapBps_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    modifier knownRole(uint8 role) {
        if (role > ROLE_PROVIDER) revert UnknownRole(role);
        _;
    }

    /// @notice Stakes `amount` of the caller's tokens under `role`; needs a prior allowance.
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond, 3 Provider.
    /// @param amount Amount in base units (non-zero).
    function stake(uint8 role, uint256 amount) external nonReentrant whenNotPaused knownRole(role) {
        _stake(role, amount);
    }

    /// @notice Like {stake}, with an ERC-2612 permit instead of a prior approval.
    /// @dev A failing permit is ignored, so a front-run permit cannot block the stake; the transfer
    ///      still needs a sufficient allowance.
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond, 3 Provider.
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
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond, 3 Provider.
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
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond, 3 Provider.
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

    /// @notice Records the outcome of validation round `roundId`: the hash of its published evidence
    ///         (the tally, votes and decisions). Slashes for the round are possible only after this, and
    ///         the record can never be changed.
    /// @param roundId The validation round.
    /// @param evidenceHash Hash of the round's published evidence (non-zero).
    function recordOutcome(uint256 roundId, bytes32 evidenceHash) external onlyRole(SLASHER_ROLE) {
        if (evidenceHash == bytes32(0)) revert ZeroEvidence();
        if (outcomes[roundId] != bytes32(0)) revert OutcomeAlreadyRecorded(roundId);
        outcomes[roundId] = evidenceHash;
        emit OutcomeRecorded(roundId, evidenceHash, msg.sender);
    }

    /// @notice Takes `amount` from `account`'s stake under `role` (active first, then pending) for the
    ///         recorded outcome of round `roundId`, into the validators' reward pool. At most once per
    ///         (round, account, role) and at most `slashCapBps` of the bond.
    /// @param roundId A round whose outcome is recorded.
    /// @param account The slashed staker.
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond, 3 Provider.
    /// @param amount Amount in base units (non-zero, within the cap).
    function slash(uint256 roundId, address account, uint8 role, uint256 amount)
        external
        nonReentrant
        onlyRole(SLASHER_ROLE)
        knownRole(role)
    {
        if (amount == 0) revert ZeroAmount();
        bytes32 evidence = outcomes[roundId];
        if (evidence == bytes32(0)) revert UnknownOutcome(roundId);
        if (_slashed[roundId][account][role]) revert AlreadySlashed(roundId, account, role);
        Position storage p = _positions[account][role];
        uint256 cap = (p.active + p.pending) * slashCapBps / BPS;
        if (amount > cap) revert SlashAboveCap(roundId, account, amount, cap);
        _slashed[roundId][account][role] = true;
        uint256 fromActive = amount <= p.active ? amount : p.active;
        uint256 fromPending = amount - fromActive;
        p.active -= fromActive;
        p.pending -= fromPending;
        // Nothing left cooling down: clear the release time so pendingOf reads (0, 0).
        if (p.pending == 0) p.releaseAt = 0;
        _totalActive[role] -= fromActive;
        rewardPool += amount;
        emit Slashed(account, role, roundId, amount, fromActive, fromPending, evidence);
    }

    /// @notice Pays `amount` of the reward pool into `epoch` of the distributor, once per epoch; the
    ///         epoch's payout root then owes it to validators.
    /// @param epoch An epoch id of the caller's own ({EpochDistributor-epochNode} is the caller) whose root is not
    ///        posted yet.
    /// @param amount Amount in base units (non-zero, at most the pool).
    function releaseRewards(uint256 epoch, uint256 amount) external nonReentrant onlyRole(REWARDS_ROLE) {
        if (amount == 0) revert ZeroAmount();
        if (distributor.epochNode(epoch) != msg.sender) revert ForeignEpoch(epoch, msg.sender);
        if (rewardsReleased[epoch]) revert RewardsAlreadyReleased(epoch);
        if (amount > rewardPool) revert InsufficientRewardPool(rewardPool, amount);
        rewardsReleased[epoch] = true;
        rewardPool -= amount;
        token.forceApprove(address(distributor), amount);
        distributor.fund(epoch, amount);
        emit RewardsReleased(epoch, amount, rewardPool);
    }

    /// @notice Whether `account` was already slashed under `role` for round `roundId`.
    /// @param roundId The validation round.
    /// @param account The staker.
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond, 3 Provider.
    function isSlashed(uint256 roundId, address account, uint8 role) external view returns (bool) {
        return _slashed[roundId][account][role];
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
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond, 3 Provider.
    function stakeOf(address account, uint8 role) external view knownRole(role) returns (uint256) {
        return _positions[account][role].active;
    }

    /// @notice Stake of `account` under `role` that is cooling down, and when it can be withdrawn.
    /// @param account The staker.
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond, 3 Provider.
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
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond, 3 Provider.
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
