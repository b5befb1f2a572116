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

import {EpochDistributor} from "./EpochDistributor.sol";

/// @title PaymentEscrow
/// @notice Holds consumers' prepaid balances. At epoch close the node (SETTLER_ROLE) debits what each
///         consumer owes, bounded by a spending cap the consumer signed for that node and epoch, and
///         forwards the sum to the epoch in the EpochDistributor. A settlement comes in numbered
///         chunks, each accepted once, so any number of consumers can be settled in one epoch and a
///         settlement interrupted half-way resumes without charging anyone twice.
/// @dev Withdrawals wait `withdrawDelaySeconds` and the requested funds stay debitable meanwhile, so a
///      node that settles within the delay is never short. The escrow must hold FUNDER_ROLE on the
///      distributor. Signatures are 65-byte ECDSA (r, s, v); a consumer with code is asked through
///      ERC-1271 with those same bytes, so contract wallets work.
///      Gas: a consumer's balance, the last epoch it was debited in and what it spent there share one
///      storage slot, so a debit rewrites one warm-after-read slot instead of creating a slot per epoch;
///      debits arrive packed in four words each; one event per chunk replaces one per debit (the
///      node publishes the per-consumer debits in its payout file, and {spent} reads them back).
contract PaymentEscrow is AccessControl, ReentrancyGuard, EIP712 {
    using SafeERC20 for IERC20;

    /// @notice Role held by nodes that settle epochs.
    bytes32 public constant SETTLER_ROLE = keccak256("SETTLER_ROLE");

    /// @notice EIP-712 type hash of the consumer's spending authorisation.
    bytes32 public constant SPENDING_CAP_TYPEHASH =
        keccak256("SpendingCap(address consumer,address settler,uint256 epoch,uint256 cap,uint256 deadline)");

    /// @dev A consumer's escrow account in one slot: balance, the latest epoch it was debited in, and
    ///      what it was debited in that epoch.
    struct Account {
        uint128 balance;
        uint32 epoch;
        uint96 spent;
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

    mapping(address consumer => Account) private _accounts;
    mapping(address consumer => Withdrawal) private _withdrawals;
    mapping(uint256 epoch => mapping(uint256 chunk => bool)) private _chunks;

    event Deposited(address indexed consumer, uint256 amount, uint256 balance);
    event WithdrawalRequested(address indexed consumer, uint256 amount, uint256 pendingTotal, uint64 availableAt);
    event WithdrawalCancelled(address indexed consumer, uint256 amount);
    event Withdrawn(address indexed consumer, uint256 amount);
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
    error CapExceeded(address consumer, uint256 epoch, uint256 spentAfter, uint256 cap);
    error EpochOutOfOrder(address consumer, uint256 epoch, uint256 latestEpoch);
    error MalformedDebits(uint256 words);
    error LengthMismatch(uint256 consumers, uint256 amounts);

    /// @param token_ The payment token.
    /// @param distributor_ The EpochDistributor that receives settled sums.
    /// @param admin Receives DEFAULT_ADMIN_ROLE (grants SETTLER_ROLE).
    /// @param withdrawDelaySeconds_ Delay between a withdrawal request and the withdrawal.
    constructor(IERC20 token_, EpochDistributor distributor_, address admin, uint64 withdrawDelaySeconds_)
        EIP712("ledgerlm-escrow", "1")
    {
        if (address(token_) == address(0) || address(distributor_) == address(0) || admin == address(0)) {
            revert ZeroAddress();
        }
        token = token_;
        distributor = distributor_;
        withdrawDelaySeconds = withdrawDelaySeconds_;
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
        uint256 balance = _accounts[msg.sender].balance;
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
        uint256 balance = _accounts[msg.sender].balance;
        uint256 amount = w.amount <= balance ? w.amount : balance;
        delete _withdrawals[msg.sender];
        _accounts[msg.sender].balance = uint128(balance - amount);
        token.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    /// @notice Debits consumers for `epoch` and adds the sum to that epoch in the distributor. Each debit
    ///         needs the consumer's signature over SpendingCap(consumer, msg.sender, epoch, cap, deadline);
    ///         the consumer's total debits in the epoch never exceed `cap`. Reverts as a whole if any
    ///         debit is invalid. Each (epoch, chunk) is accepted once; the epoch's root is posted on the
    ///         distributor after the last chunk. A consumer's epochs are settled in increasing order.
    /// @param epoch Epoch number (below 2**32, its root not posted yet).
    /// @param chunk Chunk number within the epoch, chosen by the settler.
    /// @param debits Four words per debit: `consumer << 96 | amount` (amount below 2**96),
    ///        `cap << 128 | deadline << 8 | v` (cap below 2**128, deadline below 2**64), `r`, `s` — at least
    ///        one debit, summing above zero.
    function settle(uint256 epoch, uint256 chunk, bytes32[] calldata debits)
        external
        nonReentrant
        onlyRole(SETTLER_ROLE)
    {
        if (_chunks[epoch][chunk]) revert ChunkAlreadySettled(epoch, chunk);
        if (debits.length % 4 != 0) revert MalformedDebits(debits.length);
        uint32 epoch32 = SafeCast.toUint32(epoch);
        uint256 total = 0;
        for (uint256 i = 0; i < debits.length; i += 4) {
            total += _debit(epoch32, debits[i:i + 4]);
        }
        if (total == 0) revert EmptyChunk(epoch, chunk);
        _chunks[epoch][chunk] = true;
        token.forceApprove(address(distributor), total);
        distributor.fund(epoch, total);
        emit ChunkSettled(epoch, chunk, total, debits.length / 4, keccak256(abi.encodePacked(debits)), msg.sender);
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
        return _accounts[consumer].balance;
    }

    /// @notice The consumer's pending withdrawal request.
    /// @param consumer The consumer.
    /// @return amount Requested amount (0 if none).
    /// @return availableAt Timestamp from which {withdraw} succeeds.
    function pendingWithdrawal(address consumer) external view returns (uint256 amount, uint64 availableAt) {
        Withdrawal storage w = _withdrawals[consumer];
        return (w.amount, w.availableAt);
    }

    /// @notice Total already debited from `consumer` in `epoch`: known for the latest epoch the consumer
    ///         was debited in and any later one (zero). Earlier epochs are kept only in the settlement
    ///         chunks (their `debitsHash`) and the node's published payout files.
    /// @param consumer The consumer.
    /// @param epoch Epoch number, not before the consumer's latest debited epoch.
    function spent(address consumer, uint256 epoch) external view returns (uint256) {
        Account memory a = _accounts[consumer];
        if (epoch == a.epoch) return a.spent;
        if (epoch < a.epoch) revert EpochOutOfOrder(consumer, epoch, a.epoch);
        return 0;
    }

    /// @notice The EIP-712 digest a consumer signs to let `settler` debit up to `cap` in `epoch`.
    /// @param consumer The consumer.
    /// @param settler The node account that will submit the settlement.
    /// @param epoch Epoch number.
    /// @param cap Most the settler may debit in that epoch, in base units.
    /// @param deadline Last timestamp at which the authorisation can be used.
    function spendingCapDigest(address consumer, address settler, uint256 epoch, uint256 cap, uint256 deadline)
        public
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(keccak256(abi.encode(SPENDING_CAP_TYPEHASH, consumer, settler, epoch, cap, deadline)));
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
        Account storage a = _accounts[consumer];
        uint128 balance = SafeCast.toUint128(uint256(a.balance) + amount);
        a.balance = balance;
        emit Deposited(consumer, amount, balance);
        return amount;
    }

    function _debit(uint32 epoch, bytes32[] calldata d) private returns (uint256 amount) {
        address consumer = address(uint160(uint256(d[0]) >> 96));
        amount = uint96(uint256(d[0]));
        uint256 cap = uint256(d[1]) >> 128;
        uint256 deadline = uint64(uint256(d[1]) >> 8);
        if (block.timestamp > deadline) revert AuthorisationExpired(consumer, deadline);
        bytes32 digest = spendingCapDigest(consumer, msg.sender, epoch, cap, deadline);
        _checkSignature(consumer, digest, uint8(uint256(d[1])), d[2], d[3]);
        Account memory a = _accounts[consumer];
        if (a.epoch > epoch) revert EpochOutOfOrder(consumer, epoch, a.epoch);
        uint256 spentAfter = (a.epoch == epoch ? uint256(a.spent) : 0) + amount;
        if (spentAfter > cap) revert CapExceeded(consumer, epoch, spentAfter, cap);
        if (amount > a.balance) revert InsufficientBalance(consumer, a.balance, amount);
        // cap < 2**128 and spentAfter <= cap, but a spend above 2**96 in one epoch must not wrap
        _accounts[consumer] = Account(uint128(a.balance - amount), epoch, SafeCast.toUint96(spentAfter));
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
