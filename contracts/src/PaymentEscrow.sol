// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

import {EpochDistributor} from "./EpochDistributor.sol";

/// @title PaymentEscrow
/// @notice Holds consumers' prepaid balances. At epoch close the node (SETTLER_ROLE) debits what each
///         consumer owes, bounded by a spending cap the consumer signed for that node and epoch, and
///         forwards the sum to the epoch in the EpochDistributor. A settlement comes in numbered
///         chunks, each accepted once, so any number of consumers can be settled in one epoch and a
///         settlement interrupted half-way resumes without charging anyone twice.
/// @dev Withdrawals wait `withdrawDelaySeconds` and the requested funds stay debitable meanwhile, so a
///      node that settles within the delay is never short. The escrow must hold FUNDER_ROLE on the
///      distributor. Signatures are checked with SignatureChecker, so ERC-1271 contract wallets work.
contract PaymentEscrow is AccessControl, ReentrancyGuard, EIP712 {
    using SafeERC20 for IERC20;

    /// @notice Role held by nodes that settle epochs.
    bytes32 public constant SETTLER_ROLE = keccak256("SETTLER_ROLE");

    /// @notice EIP-712 type hash of the consumer's spending authorisation.
    bytes32 public constant SPENDING_CAP_TYPEHASH =
        keccak256("SpendingCap(address consumer,address settler,uint256 epoch,uint256 cap,uint256 deadline)");

    /// @notice One consumer's charge in a settlement, with the signed cap that authorises it.
    /// @param consumer The charged consumer (the signer).
    /// @param amount Charged amount in base units.
    /// @param cap Most the consumer allows this settler to charge in this epoch, in total.
    /// @param deadline Last timestamp at which the authorisation can be used.
    /// @param signature EIP-712 signature (or ERC-1271 data) over SpendingCap.
    struct Debit {
        address consumer;
        uint256 amount;
        uint256 cap;
        uint256 deadline;
        bytes signature;
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

    mapping(address consumer => uint256) private _balances;
    mapping(address consumer => Withdrawal) private _withdrawals;
    mapping(address consumer => mapping(uint256 epoch => uint256)) private _spent;
    mapping(uint256 epoch => mapping(uint256 chunk => bool)) private _chunks;

    event Deposited(address indexed consumer, uint256 amount, uint256 balance);
    event WithdrawalRequested(address indexed consumer, uint256 amount, uint256 pendingTotal, uint64 availableAt);
    event WithdrawalCancelled(address indexed consumer, uint256 amount);
    event Withdrawn(address indexed consumer, uint256 amount);
    event Debited(uint256 indexed epoch, address indexed consumer, uint256 amount, uint256 spentInEpoch);
    event ChunkSettled(
        uint256 indexed epoch, uint256 indexed chunk, uint256 total, uint256 debitCount, address indexed settler
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

    /// @notice Debits consumers for `epoch` and adds the sum to that epoch in the distributor. Each debit
    ///         needs the consumer's signature over SpendingCap(consumer, msg.sender, epoch, cap, deadline);
    ///         the consumer's total debits in the epoch never exceed `cap`. Reverts as a whole if any
    ///         debit is invalid. Each (epoch, chunk) is accepted once; the epoch's root is posted on the
    ///         distributor after the last chunk.
    /// @param epoch Epoch number (its root not posted yet).
    /// @param chunk Chunk number within the epoch, chosen by the settler.
    /// @param debits The charges with their signed authorisations (at least one, summing above zero).
    function settle(uint256 epoch, uint256 chunk, Debit[] calldata debits)
        external
        nonReentrant
        onlyRole(SETTLER_ROLE)
    {
        if (_chunks[epoch][chunk]) revert ChunkAlreadySettled(epoch, chunk);
        uint256 total = 0;
        for (uint256 i = 0; i < debits.length; ++i) {
            total += _debit(epoch, debits[i]);
        }
        if (total == 0) revert EmptyChunk(epoch, chunk);
        _chunks[epoch][chunk] = true;
        token.forceApprove(address(distributor), total);
        distributor.fund(epoch, total);
        emit ChunkSettled(epoch, chunk, total, debits.length, msg.sender);
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

    /// @notice Total already debited from `consumer` in `epoch`.
    /// @param consumer The consumer.
    /// @param epoch Epoch number.
    function spent(address consumer, uint256 epoch) external view returns (uint256) {
        return _spent[consumer][epoch];
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
        if (amount == 0) revert ZeroAmount();
        token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 balance = _balances[msg.sender] + amount;
        _balances[msg.sender] = balance;
        emit Deposited(msg.sender, amount, balance);
    }

    function _debit(uint256 epoch, Debit calldata d) private returns (uint256) {
        if (block.timestamp > d.deadline) revert AuthorisationExpired(d.consumer, d.deadline);
        bytes32 digest = spendingCapDigest(d.consumer, msg.sender, epoch, d.cap, d.deadline);
        if (!SignatureChecker.isValidSignatureNowCalldata(d.consumer, digest, d.signature)) {
            revert InvalidSignature(d.consumer);
        }
        uint256 spentAfter = _spent[d.consumer][epoch] + d.amount;
        if (spentAfter > d.cap) revert CapExceeded(d.consumer, epoch, spentAfter, d.cap);
        uint256 balance = _balances[d.consumer];
        if (d.amount > balance) revert InsufficientBalance(d.consumer, balance, d.amount);
        _spent[d.consumer][epoch] = spentAfter;
        _balances[d.consumer] = balance - d.amount;
        emit Debited(epoch, d.consumer, d.amount, spentAfter);
        return d.amount;
    }
}
