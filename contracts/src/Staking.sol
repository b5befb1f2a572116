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
///         and evidence hash: a validation round, or a compute provider's failed spot-check), at most once per
///         (round, account, role), at most `slashCapBps` of the bond per round and at most `slashCapBps` of the
///         bond per slash window, however many rounds are recorded. A slash is first held for
///         `slashDisputeSeconds`, during which the admin may revoke it and give the stake back; only then can anyone
///         settle it into the validators' reward pool, which is paid out only into an EpochDistributor epoch, at
///         most `rewardReleaseLimit` per release window. The hot key that releases it also posts the root naming
///         who is paid, so that limit is what a stolen key could take of the pool in a window before the admin
///         revokes its REWARDS_ROLE.
/// @dev Slashing reaches pending (cooling-down) stake too, so unstaking cannot dodge a slash that is
///      decided within the cooldown. Round ids are the slasher's to choose, so the per-round cap alone would let a
///      stolen slasher key drain a bond round by round; the window cap bounds that: a staker who sees an unjust
///      slash can unstake and be out within one cooldown (the window is at least that long), so invented outcomes
///      reach at most about two windows' caps before the stake is gone, and each of those slashes is still held
///      where the admin can revoke it.
contract Staking is AccessControl, ReentrancyGuard, Pausable {
    using SafeERC20 for IERC20;

    /// @notice Role allowed to record validation outcomes and slash within them (the node).
    bytes32 public constant SLASHER_ROLE = keccak256("SLASHER_ROLE");

    /// @notice Role allowed to move the reward pool into an epoch of the distributor (the node).
    bytes32 public constant REWARDS_ROLE = keccak256("REWARDS_ROLE");

    /// @notice Basis points in a whole.
    uint256 public constant BPS = 10_000;

    /// @notice The shortest slash window: with a cooldown of zero (tests, a chain that wants none) the window cap
    ///         still bounds a run of slashes per day rather than per block.
    uint64 public constant MIN_SLASH_WINDOW_SECONDS = 1 days;

    /// @notice The shortest dispute time a deployment may choose: a slash that matured at once could be paid out in
    ///         the block that made it, before the admin could look at it.
    uint64 public constant MIN_SLASH_DISPUTE_SECONDS = 1 hours;

    uint8 public constant ROLE_VALIDATOR = 0;
    uint8 public constant ROLE_AGENT = 1;
    uint8 public constant ROLE_CONTRIBUTOR_BOND = 2;
    uint8 public constant ROLE_PROVIDER = 3;

    struct Position {
        uint256 active;
        uint256 pending;
        uint64 releaseAt;
    }

    /// @dev One (account, role) bond's current slash window: it opens with the first slash after the last one
    ///      ended and caps the window's slashes at `slashCapBps` of the bond it found.
    struct SlashWindow {
        uint64 startedAt;
        uint256 bondAtStart;
        uint256 slashed;
    }

    /// @notice Where a slash stands: held (revocable until it matures), revoked (back in the bond) or settled
    ///         (in the reward pool).
    enum SlashState {
        None,
        Held,
        Revoked,
        Settled
    }

    struct HeldSlash {
        address account;
        uint8 role;
        SlashState state;
        uint64 maturesAt;
        uint256 roundId;
        uint256 amount;
    }

    /// @notice The staked token.
    IERC20 public immutable token;

    /// @notice Seconds between an unstake request and the moment it can be withdrawn.
    uint64 public immutable cooldownSeconds;

    /// @notice Most of a bond (active plus pending) one round's slash may take, and most that all slashes within one
    ///         slash window may take of the bond the window started with, in basis points.
    uint256 public immutable slashCapBps;

    /// @notice Length of a slash window: the cooldown, or `MIN_SLASH_WINDOW_SECONDS` if that is longer.
    uint64 public immutable slashWindowSeconds;

    /// @notice Seconds a slash is held, revocable by the admin, before anyone may settle it into the reward pool.
    uint64 public immutable slashDisputeSeconds;

    /// @notice Where the reward pool is paid out; this contract must hold its FUNDER_ROLE.
    EpochDistributor public immutable distributor;

    /// @notice Settled slashed stake not yet paid out to validators: all {releaseRewards} may spend.
    uint256 public rewardPool;

    /// @notice Length of a release window: {releaseRewards} pays out at most `rewardReleaseLimit` per window.
    uint64 public constant RELEASE_WINDOW_SECONDS = 1 days;

    /// @notice Most of the reward pool REWARDS_ROLE (the node's hot key) may release per release window. The key
    ///         also posts the root that says who is paid, so this bounds what a stolen key could take of the
    ///         validators' pool before the admin revokes its role; the admin sets it ({setRewardReleaseLimit}).
    uint256 public rewardReleaseLimit;

    /// @notice When the current release window began, and what was released within it.
    uint64 public releaseWindowStart;
    uint256 public releasedInWindow;

    /// @notice Slashed stake held until its slash matures, revocable meanwhile (not part of `rewardPool`).
    uint256 public slashesHeld;

    /// @notice How many slashes were ever made; slash ids are 0 .. slashCount - 1, in the order they were made.
    uint256 public slashCount;

    /// @notice The first slash id {settleMaturedSlashes} looks at: every lower id is settled or revoked.
    uint256 public nextSlashToSettle;

    /// @notice Evidence hash of each recorded validation outcome (zero: none recorded).
    mapping(uint256 roundId => bytes32) public outcomes;

    /// @notice Whether the reward pool was already paid into an epoch.
    mapping(uint256 epoch => bool) public rewardsReleased;

    mapping(address account => mapping(uint8 role => Position)) private _positions;
    mapping(uint8 role => uint256) private _totalActive;
    mapping(uint256 roundId => mapping(address account => mapping(uint8 role => bool))) private _slashed;
    mapping(address account => mapping(uint8 role => SlashWindow)) private _windows;
    mapping(uint256 slashId => HeldSlash) private _heldSlashes;

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
        uint256 slashId,
        uint256 amount,
        uint256 fromActive,
        uint256 fromPending,
        bytes32 evidenceHash,
        uint64 maturesAt
    );
    event SlashRevoked(
        uint256 indexed slashId, address indexed account, uint8 indexed role, uint256 roundId, uint256 amount
    );
    event SlashSettled(
        uint256 indexed slashId, address indexed account, uint8 indexed role, uint256 roundId, uint256 amount
    );
    event RewardsReleased(uint256 indexed epoch, uint256 amount, uint256 poolLeft);
    event RewardReleaseLimitSet(uint256 limit);

    error ZeroAddress();
    error ZeroAmount();
    error ZeroEvidence();
    error InvalidSlashCap(uint256 slashCapBps);
    error InvalidSlashDispute(uint64 slashDisputeSeconds);
    error UnknownRole(uint8 role);
    error InsufficientStake(uint256 available, uint256 requested);
    error NothingToWithdraw();
    error CooldownNotElapsed(uint64 releaseAt);
    error OutcomeAlreadyRecorded(uint256 roundId);
    error UnknownOutcome(uint256 roundId);
    error AlreadySlashed(uint256 roundId, address account, uint8 role);
    error SlashAboveCap(uint256 roundId, address account, uint256 amount, uint256 cap);
    error SlashAboveWindowCap(address account, uint8 role, uint256 amount, uint256 left, uint64 windowEndsAt);
    error UnknownSlash(uint256 slashId);
    error SlashNotHeld(uint256 slashId, SlashState state);
    error SlashMatured(uint256 slashId, uint64 maturesAt);
    error SlashNotMatured(uint256 slashId, uint64 maturesAt);
    error RewardsAlreadyReleased(uint256 epoch);
    error InsufficientRewardPool(uint256 pool, uint256 amount);
    error ReleaseAboveLimit(uint256 left, uint256 amount, uint64 windowEndsAt);
    error ForeignEpoch(uint256 epoch, address caller);
    error ForeignOutcome(uint256 roundId, address caller);

    /// @param token_ The staked token.
    /// @param distributor_ Where the reward pool is paid out (grant this contract its FUNDER_ROLE).
    /// @param admin Receives DEFAULT_ADMIN_ROLE (grants SLASHER_ROLE and REWARDS_ROLE, pauses, revokes held slashes).
    /// @param cooldownSeconds_ Unstake cooldown in seconds.
    /// @param slashCapBps_ Most of a bond one round, and one slash window, may slash, in basis points (1..10000).
    /// @param slashDisputeSeconds_ Seconds a slash stays held and revocable before it may be settled (at least
    ///        `MIN_SLASH_DISPUTE_SECONDS`).
    /// @param rewardReleaseLimit_ Most of the reward pool REWARDS_ROLE may release per release window.
    constructor(
        IERC20 token_,
        EpochDistributor distributor_,
        address admin,
        uint64 cooldownSeconds_,
        uint256 slashCapBps_,
        uint64 slashDisputeSeconds_,
        uint256 rewardReleaseLimit_
    ) {
        if (address(token_) == address(0) || address(distributor_) == address(0) || admin == address(0)) {
            revert ZeroAddress();
        }
        if (slashCapBps_ == 0 || slashCapBps_ > BPS) revert InvalidSlashCap(slashCapBps_);
        if (slashDisputeSeconds_ < MIN_SLASH_DISPUTE_SECONDS) revert InvalidSlashDispute(slashDisputeSeconds_);
        token = token_;
        distributor = distributor_;
        cooldownSeconds = cooldownSeconds_;
        slashCapBps = slashCapBps_;
        slashWindowSeconds = cooldownSeconds_ > MIN_SLASH_WINDOW_SECONDS ? cooldownSeconds_ : MIN_SLASH_WINDOW_SECONDS;
        slashDisputeSeconds = slashDisputeSeconds_;
        rewardReleaseLimit = rewardReleaseLimit_;
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
        if (outcomeNode(roundId) != msg.sender) revert ForeignOutcome(roundId, msg.sender);
        if (evidenceHash == bytes32(0)) revert ZeroEvidence();
        if (outcomes[roundId] != bytes32(0)) revert OutcomeAlreadyRecorded(roundId);
        outcomes[roundId] = evidenceHash;
        emit OutcomeRecorded(roundId, evidenceHash, msg.sender);
    }

    /// @notice Takes `amount` from `account`'s stake under `role` (active first, then pending) for the
    ///         recorded outcome of round `roundId` and holds it as slash `slashCount`: the admin may revoke it
    ///         until `slashDisputeSeconds` have passed, after which anyone may settle it into the validators' reward
    ///         pool. At most once per (round, account, role), at most `slashCapBps` of the bond, and at most what
    ///         the bond's slash window has left ({slashable} gives the most a slash may take now).
    /// @param roundId A round whose outcome is recorded.
    /// @param account The slashed staker.
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond, 3 Provider.
    /// @param amount Amount in base units (non-zero, within both caps).
    function slash(uint256 roundId, address account, uint8 role, uint256 amount)
        external
        nonReentrant
        onlyRole(SLASHER_ROLE)
        knownRole(role)
    {
        if (amount == 0) revert ZeroAmount();
        bytes32 evidence = outcomes[roundId];
        if (evidence == bytes32(0)) revert UnknownOutcome(roundId);
        if (outcomeNode(roundId) != msg.sender) revert ForeignOutcome(roundId, msg.sender);
        if (_slashed[roundId][account][role]) revert AlreadySlashed(roundId, account, role);
        Position storage p = _positions[account][role];
        uint256 cap = (p.active + p.pending) * slashCapBps / BPS;
        if (amount > cap) revert SlashAboveCap(roundId, account, amount, cap);
        _spendWindow(account, role, p, amount);
        _slashed[roundId][account][role] = true;
        uint256 fromActive = amount <= p.active ? amount : p.active;
        uint256 fromPending = amount - fromActive;
        p.active -= fromActive;
        p.pending -= fromPending;
        // Nothing left cooling down: clear the release time so pendingOf reads (0, 0).
        if (p.pending == 0) p.releaseAt = 0;
        _totalActive[role] -= fromActive;
        (uint256 slashId, uint64 maturesAt) = _hold(roundId, account, role, amount);
        emit Slashed(account, role, roundId, slashId, amount, fromActive, fromPending, evidence, maturesAt);
    }

    /// @notice Gives held slash `slashId` back to its staker's active stake, before it matures. Only the admin: the
    ///         key that answers for a slash the node should not have made. The (round, account, role) stays used and
    ///         the amount stays counted in its slash window, so revoking never lets a slasher take more.
    /// @param slashId A held slash that has not matured.
    function revokeSlash(uint256 slashId) external onlyRole(DEFAULT_ADMIN_ROLE) {
        HeldSlash storage h = _held(slashId);
        if (block.timestamp >= h.maturesAt) revert SlashMatured(slashId, h.maturesAt);
        h.state = SlashState.Revoked;
        slashesHeld -= h.amount;
        _positions[h.account][h.role].active += h.amount;
        _totalActive[h.role] += h.amount;
        emit SlashRevoked(slashId, h.account, h.role, h.roundId, h.amount);
    }

    /// @notice Moves matured held slash `slashId` into the reward pool. Anyone may call it.
    /// @param slashId A held slash whose dispute time has passed.
    function settleSlash(uint256 slashId) external {
        HeldSlash storage h = _held(slashId);
        if (block.timestamp < h.maturesAt) revert SlashNotMatured(slashId, h.maturesAt);
        _settle(slashId, h);
        slashesHeld -= h.amount;
        rewardPool += h.amount;
    }

    /// @notice Settles every matured held slash, oldest first, looking at no more than `maxCount` slash ids (so a
    ///         long backlog is settled over several calls). Anyone may call it; with nothing matured it changes
    ///         nothing. Slashes mature in id order (one dispute time for all), so it stops at the first one that
    ///         has not.
    /// @param maxCount Most slash ids to look at.
    /// @return settled How many slashes it settled.
    /// @return amount What it moved into the reward pool.
    function settleMaturedSlashes(uint256 maxCount) external returns (uint256 settled, uint256 amount) {
        uint256 id = nextSlashToSettle;
        uint256 end = slashCount;
        if (end - id > maxCount) end = id + maxCount;
        for (; id < end; ++id) {
            HeldSlash storage h = _heldSlashes[id];
            if (h.state != SlashState.Held) continue;
            if (block.timestamp < h.maturesAt) break;
            _settle(id, h);
            amount += h.amount;
            ++settled;
        }
        nextSlashToSettle = id;
        slashesHeld -= amount;
        rewardPool += amount;
    }

    /// @notice Pays `amount` of the reward pool into `epoch` of the distributor, once per epoch; the
    ///         epoch's payout root then owes it to validators. The pool holds settled slashes only, so a slash
    ///         still open to revocation can never be paid out.
    /// @param epoch An epoch id of the caller's own ({EpochDistributor-epochNode} is the caller) whose root is not
    ///        posted yet.
    /// @param amount Amount in base units (non-zero, at most the pool and what the release window has left).
    function releaseRewards(uint256 epoch, uint256 amount) external nonReentrant onlyRole(REWARDS_ROLE) {
        if (amount == 0) revert ZeroAmount();
        if (distributor.epochNode(epoch) != msg.sender) revert ForeignEpoch(epoch, msg.sender);
        if (rewardsReleased[epoch]) revert RewardsAlreadyReleased(epoch);
        if (amount > rewardPool) revert InsufficientRewardPool(rewardPool, amount);
        if (block.timestamp >= uint256(releaseWindowStart) + RELEASE_WINDOW_SECONDS) {
            releaseWindowStart = uint64(block.timestamp);
            releasedInWindow = 0;
        }
        uint256 left = rewardReleaseLimit > releasedInWindow ? rewardReleaseLimit - releasedInWindow : 0;
        if (amount > left) revert ReleaseAboveLimit(left, amount, releaseWindowStart + RELEASE_WINDOW_SECONDS);
        releasedInWindow += amount;
        rewardsReleased[epoch] = true;
        rewardPool -= amount;
        token.forceApprove(address(distributor), amount);
        distributor.fund(epoch, amount);
        emit RewardsReleased(epoch, amount, rewardPool);
    }

    /// @notice What {releaseRewards} may pay out now: the pool, within what the release window has left.
    function releasable() external view returns (uint256) {
        uint256 used =
            block.timestamp >= uint256(releaseWindowStart) + RELEASE_WINDOW_SECONDS ? 0 : releasedInWindow;
        uint256 left = rewardReleaseLimit > used ? rewardReleaseLimit - used : 0;
        return left < rewardPool ? left : rewardPool;
    }

    /// @notice Set the most of the reward pool REWARDS_ROLE may release per release window (the admin only).
    /// @param limit Amount in base units; 0 stops releases.
    function setRewardReleaseLimit(uint256 limit) external onlyRole(DEFAULT_ADMIN_ROLE) {
        rewardReleaseLimit = limit;
        emit RewardReleaseLimitSet(limit);
    }

    /// @notice The node an outcome id belongs to (`uint256(uint160(node)) << 64 | localId`, laid out as epoch ids
    ///         are): the only account that may record it and slash under it, so nodes sharing these contracts
    ///         neither use nor pre-empt each other's rounds. Zero for ids below 2**64, which no node holds.
    /// @param roundId Outcome id.
    function outcomeNode(uint256 roundId) public pure returns (address) {
        return roundId >> 224 == 0 ? address(uint160(roundId >> 64)) : address(0);
    }

    /// @notice Whether `account` was already slashed under `role` for round `roundId`.
    /// @param roundId The validation round.
    /// @param account The staker.
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond, 3 Provider.
    function isSlashed(uint256 roundId, address account, uint8 role) external view returns (bool) {
        return _slashed[roundId][account][role];
    }

    /// @notice Held slash `slashId`: whose stake, for which round, how much, when it matures and where it stands.
    /// @param slashId A slash id below `slashCount` (others revert `UnknownSlash`).
    function heldSlash(uint256 slashId)
        external
        view
        returns (address account, uint8 role, uint256 roundId, uint256 amount, uint64 maturesAt, SlashState state)
    {
        if (slashId >= slashCount) revert UnknownSlash(slashId);
        HeldSlash storage h = _heldSlashes[slashId];
        return (h.account, h.role, h.roundId, h.amount, h.maturesAt, h.state);
    }

    /// @notice The most one slash of `account` under `role` may take now: the per-round cap, or what the bond's slash
    ///         window has left if that is less (a window that has ended counts as a fresh one).
    /// @param account The staker.
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond, 3 Provider.
    function slashable(address account, uint8 role) external view knownRole(role) returns (uint256) {
        Position storage p = _positions[account][role];
        uint256 bond = p.active + p.pending;
        uint256 cap = bond * slashCapBps / BPS;
        SlashWindow storage w = _windows[account][role];
        if (_windowEnded(w)) return cap;
        uint256 left = w.bondAtStart * slashCapBps / BPS - w.slashed;
        return left < cap ? left : cap;
    }

    /// @notice The slash window of `account` under `role`: when it started, the bond it started with, what its
    ///         slashes took so far (revoked ones included) and when it ends (all zero before the first slash).
    /// @param account The staker.
    /// @param role 0 Validator, 1 Agent, 2 ContributorBond, 3 Provider.
    function slashWindow(address account, uint8 role)
        external
        view
        knownRole(role)
        returns (uint64 startedAt, uint256 bondAtStart, uint256 slashed, uint64 endsAt)
    {
        SlashWindow storage w = _windows[account][role];
        if (w.startedAt == 0) return (0, 0, 0, 0);
        return (w.startedAt, w.bondAtStart, w.slashed, w.startedAt + slashWindowSeconds);
    }

    /// @notice Stops new stakes and unstake requests; withdrawals, slashing, revoking and settling continue.
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

    /// @dev Counts `amount` against the bond's slash window, opening a new window if none is running.
    function _spendWindow(address account, uint8 role, Position storage p, uint256 amount) private {
        SlashWindow storage w = _windows[account][role];
        if (_windowEnded(w)) {
            w.startedAt = uint64(block.timestamp);
            w.bondAtStart = p.active + p.pending;
            w.slashed = 0;
        }
        uint256 left = w.bondAtStart * slashCapBps / BPS - w.slashed;
        if (amount > left) revert SlashAboveWindowCap(account, role, amount, left, w.startedAt + slashWindowSeconds);
        w.slashed += amount;
    }

    function _windowEnded(SlashWindow storage w) private view returns (bool) {
        return w.startedAt == 0 || block.timestamp >= uint256(w.startedAt) + slashWindowSeconds;
    }

    function _hold(uint256 roundId, address account, uint8 role, uint256 amount)
        private
        returns (uint256 slashId, uint64 maturesAt)
    {
        slashId = slashCount++;
        maturesAt = uint64(block.timestamp) + slashDisputeSeconds;
        _heldSlashes[slashId] = HeldSlash({
            account: account, role: role, state: SlashState.Held, maturesAt: maturesAt, roundId: roundId, amount: amount
        });
        slashesHeld += amount;
    }

    function _held(uint256 slashId) private view returns (HeldSlash storage h) {
        if (slashId >= slashCount) revert UnknownSlash(slashId);
        h = _heldSlashes[slashId];
        if (h.state != SlashState.Held) revert SlashNotHeld(slashId, h.state);
    }

    function _settle(uint256 slashId, HeldSlash storage h) private {
        h.state = SlashState.Settled;
        emit SlashSettled(slashId, h.account, h.role, h.roundId, h.amount);
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
