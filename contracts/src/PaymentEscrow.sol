// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {EpochDistributor} from "./EpochDistributor.sol";

/// @title PaymentEscrow
/// @notice Holds consumers' prepaid balances. A consumer gives a node (a settler) a standing spending cap:
///         the most that settler may debit from them in any one cap period (`capPeriodSeconds`, e.g. a day).
///         At epoch close the settler (SETTLER_ROLE) debits what each consumer owes within that cap and
///         forwards the sum to the epoch in the EpochDistributor. A settlement comes in numbered chunks,
///         each accepted once, so any number of consumers can be settled in one epoch and a settlement
///         interrupted half-way resumes without charging anyone twice.
/// @dev A cap is set by the consumer directly ({setSpendingCap}) or by anyone relaying the consumer's
///      EIP-712 SpendingCap signature ({setSpendingCapsWithSig}); each carries a nonce above the last one
///      used for that (consumer, settler), so an older authorisation can never come back once a newer one,
///      or a lowering or revocation sent on chain, has landed. A change binds every debit not yet settled;
///      a lowering after CAP_GRACE_SECONDS, during which the cap it replaced still holds, so a close planned
///      just before it lands instead of reverting (a stolen settler key gains nothing from the grace: it
///      could have debited up to the old cap before the change anyway, and the grace ends with the cap period
///      the change landed in, so it never opens a fresh period under the old cap). Spending is tracked per (consumer, settler) and per period of chain time, not per epoch
///      number: a settler picks its own epoch numbers, so a cap per epoch would let a stolen settler key
///      drain a balance by settling made-up epochs; per period it takes at most one cap per period until
///      the consumer revokes (the allowance shape of Safe's AllowanceModule).
///      Withdrawals wait `withdrawDelaySeconds` and the requested funds stay debitable meanwhile, so a
///      node that settles within the delay is never short. The escrow must hold FUNDER_ROLE on the
///      distributor. Signatures are 65-byte ECDSA (r, s, v); a consumer with code is asked through
///      ERC-1271 with those same bytes, so contract wallets work.
///      Gas: a debit is one calldata word; it reads and rewrites the consumer's balance slot and the
///      (consumer, settler) slot that packs the cap, the latest period it debited in and what it debited
///      there, with no signature to check; one event per chunk replaces one per debit (the node publishes the
///      per-consumer debits in its payout file).
contract PaymentEscrow is AccessControl, ReentrancyGuard, EIP712 {
    using SafeERC20 for IERC20;

    /// @notice Role held by nodes that settle epochs.
    bytes32 public constant SETTLER_ROLE = keccak256("SETTLER_ROLE");

    /// @notice EIP-712 type hash of the consumer's standing spending authorisation for one settler.
    bytes32 public constant SPENDING_CAP_TYPEHASH =
        keccak256("SpendingCap(address consumer,address settler,uint256 cap,uint256 nonce,uint256 deadline)");

    /// @notice Caps are stored in 96 bits: a cap must be below this.
    uint256 public constant CAP_LIMIT = 2 ** 96;

    /// @notice For this long after a cap is lowered (or revoked), a settler may still debit up to the cap it
    ///         replaced, so a close planned just before the change still lands instead of reverting.
    uint256 public constant CAP_GRACE_SECONDS = 15 minutes;

    /// @dev What one settler may debit from one consumer, in one slot: the cap per period, the latest
    ///      period (block.timestamp / capPeriodSeconds) the settler debited the consumer in, and what it
    ///      debited there.
    struct Allowance {
        uint96 cap;
        uint32 period;
        uint96 spent;
    }

    /// @notice A consumer's signed SpendingCap, as relayed by anyone.
    struct SignedSpendingCap {
        address consumer;
        address settler;
        uint256 cap;
        uint256 nonce;
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// @dev Touched only when a cap changes, or a debit goes past the cap: the last nonce used, and the cap a
    ///      lowering replaced with when it landed.
    struct CapChange {
        uint64 nonce;
        uint96 previousCap;
        uint64 loweredAt;
    }

    struct Withdrawal {
        uint256 amount;
        uint64 availableAt;
    }

    /// @notice The payment token.
    IERC20 public immutable token;

    /// @notice Where settled epochs are funded.
    EpochDistributor public immutable distributor;

    /// @notice Seconds between a withdrawal request and the moment it can be withdrawn.
    uint64 public immutable withdrawDelaySeconds;

    /// @notice Length of the period a spending cap bounds, in seconds.
    uint64 public immutable capPeriodSeconds;

    mapping(address consumer => uint256) private _balances;
    mapping(address consumer => mapping(address settler => Allowance)) private _allowances;
    mapping(address consumer => mapping(address settler => CapChange)) private _capChanges;
    mapping(address consumer => Withdrawal) private _withdrawals;
    mapping(uint256 epoch => mapping(uint256 chunk => bool)) private _chunks;

    event Deposited(address indexed consumer, uint256 amount, uint256 balance);
    event WithdrawalRequested(address indexed consumer, uint256 amount, uint256 pendingTotal, uint64 availableAt);
    event WithdrawalCancelled(address indexed consumer, uint256 amount);
    event Withdrawn(address indexed consumer, uint256 amount);
    event SpendingCapSet(address indexed consumer, address indexed settler, uint256 cap, uint256 nonce);
    event ChunkSettled(
        uint256 indexed epoch,
        uint256 indexed chunk,
        uint256 total,
        uint256 debitCount,
        bytes32 debitsHash,
        address indexed settler
    );

    error ZeroAddress();
    error ZeroAmount();
    error EmptyChunk(uint256 epoch, uint256 chunk);
    error ChunkAlreadySettled(uint256 epoch, uint256 chunk);
    error InsufficientBalance(address consumer, uint256 balance, uint256 amount);
    error NoWithdrawalPending();
    error WithdrawalNotReady(uint64 availableAt);
    error AuthorisationExpired(address consumer, uint256 deadline);
    error InvalidSignature(address consumer);
    error StaleNonce(address consumer, address settler, uint256 nonce, uint256 lastNonce);
    error CapTooLarge(uint256 cap);
    error CapExceeded(address consumer, uint256 period, uint256 spentAfter, uint256 cap);
    error ZeroCapPeriod();
    error LengthMismatch(uint256 consumers, uint256 amounts);
    error ForeignEpoch(uint256 epoch, address caller);

    /// @param token_ The payment token.
    /// @param distributor_ The EpochDistributor that receives settled sums.
    /// @param admin Receives DEFAULT_ADMIN_ROLE (grants SETTLER_ROLE).
    /// @param withdrawDelaySeconds_ Delay between a withdrawal request and the withdrawal.
    /// @param capPeriodSeconds_ Length of the period a spending cap bounds (non-zero).
    constructor(
        IERC20 token_,
        EpochDistributor distributor_,
        address admin,
        uint64 withdrawDelaySeconds_,
        uint64 capPeriodSeconds_
    ) EIP712("ledgerlm-escrow", "1") {
        if (address(token_) == address(0) || address(distributor_) == address(0) || admin == address(0)) {
            revert ZeroAddress();
        }
        if (capPeriodSeconds_ == 0) revert ZeroCapPeriod();
        token = token_;
        distributor = distributor_;
        withdrawDelaySeconds = withdrawDelaySeconds_;
        capPeriodSeconds = capPeriodSeconds_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Adds `amount` of the caller's tokens to the caller's escrow balance (needs an allowance).
    /// @param amount Amount in base units (non-zero).
    function deposit(uint256 amount) external nonReentrant {
        _deposit(amount);
    }

    /// @notice Like {deposit}, with an ERC-2612 permit instead of a prior approval.
    /// @dev A failing permit is ignored, so a front-run permit cannot block the deposit; the transfer
    ///      still needs a sufficient allowance.
    /// @param amount Amount in base units (non-zero); also the permitted value.
    /// @param deadline Permit deadline.
    /// @param v Permit signature v.
    /// @param r Permit signature r.
    /// @param s Permit signature s.
    function depositWithPermit(uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        nonReentrant
    {
        try IERC20Permit(address(token)).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        _deposit(amount);
    }

    /// @notice Adds `amounts[i]` of the caller's tokens to the escrow balance of `consumers[i]`, in one
    ///         transfer of the total (needs an allowance): a sponsor, such as an app paying for its users,
    ///         funds many consumers at once. The funds belong to the consumers; the sponsor keeps no claim.
    /// @param consumers Accounts credited (none zero; may repeat).
    /// @param amounts Amount per consumer in base units (each non-zero), as many as `consumers`.
    function depositFor(address[] calldata consumers, uint256[] calldata amounts) external nonReentrant {
        if (consumers.length != amounts.length) revert LengthMismatch(consumers.length, amounts.length);
        if (consumers.length == 0) revert ZeroAmount();
        uint256 total = 0;
        for (uint256 i = 0; i < consumers.length; ++i) {
            total += _credit(consumers[i], amounts[i]);
        }
        token.safeTransferFrom(msg.sender, address(this), total);
    }

    /// @notice Asks to withdraw `amount` after the delay. A second request adds to the pending amount and
    ///         restarts the delay. Until then the funds can still be debited by settlements.
    /// @param amount Amount in base units (non-zero; pending total at most the balance).
    function requestWithdrawal(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Withdrawal storage w = _withdrawals[msg.sender];
        uint256 pendingTotal = w.amount + amount;
        uint256 balance = _balances[msg.sender];
        if (pendingTotal > balance) revert InsufficientBalance(msg.sender, balance, pendingTotal);
        w.amount = pendingTotal;
        w.availableAt = uint64(block.timestamp) + withdrawDelaySeconds;
        emit WithdrawalRequested(msg.sender, amount, pendingTotal, w.availableAt);
    }

    /// @notice Drops the caller's pending withdrawal request; the balance is untouched.
    function cancelWithdrawal() external {
        uint256 amount = _withdrawals[msg.sender].amount;
        if (amount == 0) revert NoWithdrawalPending();
        delete _withdrawals[msg.sender];
        emit WithdrawalCancelled(msg.sender, amount);
    }

    /// @notice After the delay, sends the caller the requested amount, or the whole balance if
    ///         settlements in the meantime left less.
    function withdraw() external nonReentrant {
        Withdrawal memory w = _withdrawals[msg.sender];
        if (w.amount == 0) revert NoWithdrawalPending();
        if (block.timestamp < w.availableAt) revert WithdrawalNotReady(w.availableAt);
        uint256 balance = _balances[msg.sender];
        uint256 amount = w.amount <= balance ? w.amount : balance;
        delete _withdrawals[msg.sender];
        _balances[msg.sender] = balance - amount;
        token.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    /// @notice Sets the most `settler` may debit from the caller in any one cap period; 0 revokes.
    ///         Binds every debit not yet settled (a lowering after {CAP_GRACE_SECONDS}), and voids any
    ///         signed authorisation for this settler with a nonce up to `nonce`.
    /// @param settler The node account that settles (non-zero).
    /// @param cap Cap per period in base units, below {CAP_LIMIT}.
    /// @param nonce Above the last nonce used for (caller, settler), below 2**64; ledgerlm clients use the time
    ///        in milliseconds.
    function setSpendingCap(address settler, uint256 cap, uint256 nonce) external {
        _setSpendingCap(msg.sender, settler, cap, nonce);
    }

    /// @notice Relays consumers' signed SpendingCap(consumer, settler, cap, nonce, deadline) authorisations;
    ///         anyone may send them. Each sets that (consumer, settler) cap as {setSpendingCap} does; the
    ///         whole call reverts if any is expired, badly signed or not newer than the last one used.
    /// @param caps The signed authorisations.
    function setSpendingCapsWithSig(SignedSpendingCap[] calldata caps) external {
        for (uint256 i = 0; i < caps.length; ++i) {
            SignedSpendingCap calldata c = caps[i];
            if (block.timestamp > c.deadline) revert AuthorisationExpired(c.consumer, c.deadline);
            bytes32 digest = spendingCapDigest(c.consumer, c.settler, c.cap, c.nonce, c.deadline);
            _checkSignature(c.consumer, digest, c.v, c.r, c.s);
            _setSpendingCap(c.consumer, c.settler, c.cap, c.nonce);
        }
    }

    /// @notice Debits consumers for `epoch` and adds the sum to that epoch in the distributor. A consumer's
    ///         debits by one settler within one cap period never exceed the standing cap the consumer set for
    ///         that settler. Reverts as a whole if any debit is invalid. Each (epoch, chunk) is accepted once;
    ///         the epoch's root is posted on the distributor after the last chunk.
    /// @param epoch Epoch id of the settler's own (`uint256(uint160(settler)) << 64 | number`, see
    ///        {EpochDistributor-epochId}), its root not posted yet.
    /// @param chunk Chunk number within the epoch, chosen by the settler.
    /// @param debits One word per debit: `consumer << 96 | amount` — at least one, summing above zero.
    function settle(uint256 epoch, uint256 chunk, bytes32[] calldata debits)
        external
        nonReentrant
        onlyRole(SETTLER_ROLE)
    {
        if (distributor.epochNode(epoch) != msg.sender) revert ForeignEpoch(epoch, msg.sender);
        if (_chunks[epoch][chunk]) revert ChunkAlreadySettled(epoch, chunk);
        uint32 period = _period();
        uint256 total = 0;
        for (uint256 i = 0; i < debits.length; ++i) {
            total += _debit(period, uint256(debits[i]));
        }
        if (total == 0) revert EmptyChunk(epoch, chunk);
        _chunks[epoch][chunk] = true;
        token.forceApprove(address(distributor), total);
        distributor.fund(epoch, total);
        emit ChunkSettled(epoch, chunk, total, debits.length, keccak256(abi.encodePacked(debits)), msg.sender);
    }

    /// @notice Whether chunk `chunk` of `epoch` was settled.
    /// @param epoch Epoch number.
    /// @param chunk Chunk number.
    function isChunkSettled(uint256 epoch, uint256 chunk) external view returns (bool) {
        return _chunks[epoch][chunk];
    }

    /// @notice Escrow balance of `consumer`, including any amount requested for withdrawal.
    /// @param consumer The consumer.
    function balanceOf(address consumer) external view returns (uint256) {
        return _balances[consumer];
    }

    /// @notice The consumer's pending withdrawal request.
    /// @param consumer The consumer.
    /// @return amount Requested amount (0 if none).
    /// @return availableAt Timestamp from which {withdraw} succeeds.
    function pendingWithdrawal(address consumer) external view returns (uint256 amount, uint64 availableAt) {
        Withdrawal storage w = _withdrawals[consumer];
        return (w.amount, w.availableAt);
    }

    /// @notice What `settler` may debit from `consumer`: the standing cap, the nonce that set it, what it
    ///         already debited in the current period, and when that period ends.
    /// @param consumer The consumer.
    /// @param settler The settler.
    function spendingCap(address consumer, address settler)
        external
        view
        returns (uint256 cap, uint256 nonce, uint256 spentThisPeriod, uint256 periodEndsAt)
    {
        Allowance memory a = _allowances[consumer][settler];
        uint32 period = _period();
        return (a.cap, _capChanges[consumer][settler].nonce, a.period == period ? a.spent : 0,
            (uint256(period) + 1) * capPeriodSeconds);
    }

    /// @notice The cap a debit by `settler` is checked against now: the standing cap or, while the grace after a
    ///         lowering runs, the higher cap it replaced; and when that grace ends (0 when none runs). A settler
    ///         reads it to debit no more than the consumer allows instead of sending a chunk that reverts.
    /// @param consumer The consumer.
    /// @param settler The settler.
    function capInForce(address consumer, address settler) external view returns (uint256 cap, uint256 graceEndsAt) {
        CapChange memory h = _capChanges[consumer][settler];
        cap = _allowances[consumer][settler].cap;
        if (_graceRuns(h) && h.previousCap > cap) {
            uint256 periodEnds = (uint256(h.loweredAt) / capPeriodSeconds + 1) * capPeriodSeconds;
            return (h.previousCap, Math.min(uint256(h.loweredAt) + CAP_GRACE_SECONDS, periodEnds));
        }
        return (cap, 0);
    }

    /// @notice The EIP-712 digest a consumer signs to let `settler` debit up to `cap` in each cap period.
    /// @param consumer The consumer.
    /// @param settler The node account that will submit settlements.
    /// @param cap Most the settler may debit in any one cap period, in base units.
    /// @param nonce Above the last nonce used for (consumer, settler).
    /// @param deadline Last timestamp at which the authorisation can be relayed.
    function spendingCapDigest(address consumer, address settler, uint256 cap, uint256 nonce, uint256 deadline)
        public
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(keccak256(abi.encode(SPENDING_CAP_TYPEHASH, consumer, settler, cap, nonce, deadline)));
    }

    /// @notice The EIP-712 domain separator (name "ledgerlm-escrow", version "1").
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function _deposit(uint256 amount) private {
        _credit(msg.sender, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @dev Credits before the transfer that pays for it; the transfer reverts the whole call if it fails,
    ///      and nonReentrant on every entry point keeps a token callback from seeing the credit early.
    function _credit(address consumer, uint256 amount) private returns (uint256) {
        if (consumer == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        uint256 balance = _balances[consumer] + amount;
        _balances[consumer] = balance;
        emit Deposited(consumer, amount, balance);
        return amount;
    }

    function _setSpendingCap(address consumer, address settler, uint256 cap, uint256 nonce) private {
        if (consumer == address(0) || settler == address(0)) revert ZeroAddress();
        if (cap >= CAP_LIMIT) revert CapTooLarge(cap);
        CapChange memory h = _capChanges[consumer][settler];
        if (nonce <= h.nonce) revert StaleNonce(consumer, settler, nonce, h.nonce);
        h.nonce = SafeCast.toUint64(nonce);
        uint96 current = _allowances[consumer][settler].cap;
        if (cap < current) {
            // a second lowering within the grace keeps the highest cap the grace still honours
            bool inGrace = _graceRuns(h);
            h.previousCap = inGrace && h.previousCap > current ? h.previousCap : current;
            h.loweredAt = uint64(block.timestamp);
        }
        _capChanges[consumer][settler] = h;
        _allowances[consumer][settler].cap = uint96(cap);
        emit SpendingCapSet(consumer, settler, cap, nonce);
    }

    /// @dev Whether a cap lowered moments ago still lets the settler reach `spentAfter`.
    function _withinGrace(address consumer, uint256 spentAfter) private view returns (bool) {
        CapChange memory h = _capChanges[consumer][msg.sender];
        return _graceRuns(h) && spentAfter <= h.previousCap;
    }

    /// @dev The grace runs for CAP_GRACE_SECONDS after a lowering, and only within the cap period it landed in:
    ///      in the next period the spent count starts again, and the old cap would be a whole fresh cap for a
    ///      settler the consumer had just revoked.
    function _graceRuns(CapChange memory h) private view returns (bool) {
        return h.loweredAt != 0 && block.timestamp < uint256(h.loweredAt) + CAP_GRACE_SECONDS
            && uint256(h.loweredAt) / capPeriodSeconds == block.timestamp / capPeriodSeconds;
    }

    function _period() private view returns (uint32) {
        return SafeCast.toUint32(block.timestamp / capPeriodSeconds);
    }

    function _debit(uint32 period, uint256 word) private returns (uint256 amount) {
        address consumer = address(uint160(word >> 96));
        amount = uint96(word);
        Allowance memory a = _allowances[consumer][msg.sender];
        uint256 spentAfter = (a.period == period ? uint256(a.spent) : 0) + amount;
        if (spentAfter > a.cap && !_withinGrace(consumer, spentAfter)) {
            revert CapExceeded(consumer, period, spentAfter, a.cap);
        }
        uint256 balance = _balances[consumer];
        if (amount > balance) revert InsufficientBalance(consumer, balance, amount);
        unchecked {
            _balances[consumer] = balance - amount;
        }
        // spentAfter <= cap < 2**96
        _allowances[consumer][msg.sender] = Allowance(a.cap, period, uint96(spentAfter));
    }

    function _checkSignature(address consumer, bytes32 digest, uint8 v, bytes32 r, bytes32 s) private view {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, v, r, s);
        if (err == ECDSA.RecoverError.NoError && signer == consumer) return;
        if (
            consumer.code.length > 0
                && SignatureChecker.isValidERC1271SignatureNow(consumer, digest, abi.encodePacked(r, s, v))
        ) return;
        revert InvalidSignature(consumer);
    }
}
