"""PaymentEscrow via its typed client: a node debits only what consumers signed, in chunks each
accepted once, into an epoch that stays open to top-ups until its root is posted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from test_contracts_world import (
    BACKENDS,
    PAYOUT_TYPES,
    TOKEN,
    WITHDRAW_DELAY,
    World,
    open_world,
    reverts,
    unauthorised,
)

from ledgerlm.chain import ChainError, Debit, PendingAmount, SignedSpendingCap, cap_nonce
from ledgerlm.chain.merkle import StandardMerkleTree

ZERO = "0x" + "00" * 20


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory) -> Iterator[World]:
    yield from open_world(request, tmp_path_factory)


def consumer_with_deposit(world, amount: int):
    consumer = world.actor(amount)
    world.contracts.escrow.deposit(consumer, amount)
    return consumer


def authorise(world, consumer, cap: int, *, settler: str | None = None, nonce: int | None = None,
              deadline: int | None = None) -> SignedSpendingCap:
    """The consumer signs a standing cap for the node (or `settler`); the node relays it."""
    signed = world.contracts.escrow.sign_spending_cap(
        consumer, settler or world.node.address, cap, cap_nonce() if nonce is None else nonce,
        world.now() + 3600 if deadline is None else deadline)
    world.contracts.escrow.set_spending_caps_with_sig(world.node, [signed])
    return signed


def debit(consumer, amount: int) -> Debit:
    return Debit(consumer.address, amount)


def payout_tree(world, total: int) -> tuple[list[tuple[str, int]], StandardMerkleTree]:
    """Split `total` between two fresh contributors, conserving it exactly."""
    payouts = [(world.actor().address, total * 2 // 3), (world.actor().address, 0)]
    payouts[1] = (payouts[1][0], total - payouts[0][1])
    return payouts, StandardMerkleTree.of([list(p) for p in payouts], PAYOUT_TYPES)


def test_a_deposit_moves_tokens_into_the_consumers_escrow_balance(world):
    token, escrow = world.contracts.token, world.contracts.escrow
    consumer = world.actor(10 * TOKEN)
    held = token.balance_of(escrow.address)

    first = escrow.deposit(consumer, 6 * TOKEN)
    escrow.deposit(consumer, TOKEN)

    assert escrow.balance_of(consumer.address) == 7 * TOKEN
    assert token.balance_of(consumer.address) == 3 * TOKEN
    assert token.balance_of(escrow.address) == held + 7 * TOKEN
    assert first.events(escrow.contract, "Deposited") == [
        {"consumer": consumer.address, "amount": 6 * TOKEN, "balance": 6 * TOKEN}]


def test_a_deposit_needs_an_amount_and_an_allowance(world):
    escrow = world.contracts.escrow
    consumer = world.actor(TOKEN)

    with reverts("ZeroAmount"):
        escrow.deposit(consumer, 0)
    with reverts("ERC20InsufficientAllowance", spender=escrow.address, allowance=0, needed=TOKEN):
        world.chain.transact(escrow.contract.functions.deposit(TOKEN), consumer)

    assert escrow.balance_of(consumer.address) == 0


def test_deposit_with_permit_takes_one_transaction_and_ignores_a_forged_permit(world):
    token, escrow = world.contracts.token, world.contracts.escrow
    consumer, forger = world.actor(5 * TOKEN), world.actor()
    deadline = world.now() + 3600
    forged = token.sign_permit(forger, escrow.address, 5 * TOKEN, deadline)

    with reverts("ERC20InsufficientAllowance"):
        world.chain.transact(escrow.contract.functions.depositWithPermit(
            5 * TOKEN, deadline, forged.v, forged.r, forged.s), consumer)
    escrow.deposit_with_permit(consumer, 5 * TOKEN, deadline)

    assert world.chain.nonce(consumer.address) == 1
    assert escrow.balance_of(consumer.address) == 5 * TOKEN
    assert escrow.balance_of(forger.address) == 0


def test_a_sponsor_funds_many_consumers_in_one_transfer_that_conserves_every_token(world):
    token, escrow = world.contracts.token, world.contracts.escrow
    sponsor = world.actor(10 * TOKEN)
    consumers = [world.actor().address for _ in range(3)]
    held = token.balance_of(escrow.address)

    result = escrow.deposit_for(sponsor, [*consumers, consumers[0]], [TOKEN, 2 * TOKEN, 3 * TOKEN, 1])

    assert [escrow.balance_of(c) for c in consumers] == [TOKEN + 1, 2 * TOKEN, 3 * TOKEN]
    assert token.balance_of(sponsor.address) == 4 * TOKEN - 1
    assert token.balance_of(escrow.address) == held + 6 * TOKEN + 1
    assert escrow.balance_of(sponsor.address) == 0
    assert [e["consumer"] for e in result.events(escrow.contract, "Deposited")] == [*consumers, consumers[0]]


def test_a_sponsored_deposit_refuses_mismatched_empty_zero_or_unfunded_batches(world):
    token, escrow = world.contracts.token, world.contracts.escrow
    sponsor, consumer = world.actor(TOKEN), world.actor().address
    escrow.token.ensure_allowance(sponsor, escrow.address, 10 * TOKEN)
    deposit_for = escrow.contract.functions.depositFor

    with reverts("LengthMismatch", consumers=1, amounts=2):
        world.chain.transact(deposit_for([consumer], [1, 1]), sponsor)
    with reverts("ZeroAmount"):
        world.chain.transact(deposit_for([], []), sponsor)
    with reverts("ZeroAmount"):
        world.chain.transact(deposit_for([consumer, consumer], [1, 0]), sponsor)
    with reverts("ZeroAddress"):
        world.chain.transact(deposit_for([consumer, ZERO], [1, 1]), sponsor)
    with reverts("ERC20InsufficientBalance"):
        world.chain.transact(deposit_for([consumer], [2 * TOKEN]), sponsor)

    assert escrow.balance_of(consumer) == 0
    assert token.balance_of(sponsor.address) == TOKEN


def test_a_withdrawal_waits_for_the_delay_and_a_new_request_restarts_it(world):
    token, escrow = world.contracts.token, world.contracts.escrow
    consumer = consumer_with_deposit(world, 10 * TOKEN)

    escrow.request_withdrawal(consumer, 3 * TOKEN)
    world.chain.advance_time(WITHDRAW_DELAY // 2)
    again = escrow.request_withdrawal(consumer, 2 * TOKEN)
    pending = escrow.pending_withdrawal(consumer.address)
    with reverts("WithdrawalNotReady", availableAt=pending.available_at):
        escrow.withdraw(consumer)
    world.chain.advance_time(WITHDRAW_DELAY)
    paid = escrow.withdraw(consumer)
    with reverts("NoWithdrawalPending"):
        escrow.withdraw(consumer)

    requested_at = world.chain.w3.eth.get_block(again.block_number)["timestamp"]
    assert pending == PendingAmount(5 * TOKEN, requested_at + WITHDRAW_DELAY)
    assert token.balance_of(consumer.address) == 5 * TOKEN
    assert escrow.balance_of(consumer.address) == 5 * TOKEN
    assert escrow.pending_withdrawal(consumer.address) == PendingAmount(0, 0)
    assert again.events(escrow.contract, "WithdrawalRequested")[0]["pendingTotal"] == 5 * TOKEN
    assert paid.events(escrow.contract, "Withdrawn") == [
        {"consumer": consumer.address, "amount": 5 * TOKEN}]


def test_a_withdrawal_request_needs_an_amount_within_the_balance(world):
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, 4 * TOKEN)
    escrow.request_withdrawal(consumer, 3 * TOKEN)

    with reverts("ZeroAmount"):
        escrow.request_withdrawal(consumer, 0)
    with reverts("InsufficientBalance", consumer=consumer.address, balance=4 * TOKEN,
                 amount=5 * TOKEN):
        escrow.request_withdrawal(consumer, 2 * TOKEN)  # 3 already pending

    assert escrow.pending_withdrawal(consumer.address).amount == 3 * TOKEN


def test_a_cancelled_withdrawal_leaves_the_balance_and_nothing_to_withdraw(world):
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, 4 * TOKEN)

    with reverts("NoWithdrawalPending"):
        escrow.cancel_withdrawal(consumer)
    escrow.request_withdrawal(consumer, 4 * TOKEN)
    cancelled = escrow.cancel_withdrawal(consumer)
    world.chain.advance_time(WITHDRAW_DELAY)
    with reverts("NoWithdrawalPending"):
        escrow.withdraw(consumer)
    with reverts("NoWithdrawalPending"):
        escrow.cancel_withdrawal(consumer)

    assert escrow.balance_of(consumer.address) == 4 * TOKEN
    assert cancelled.events(escrow.contract, "WithdrawalCancelled") == [
        {"consumer": consumer.address, "amount": 4 * TOKEN}]


def test_a_settlement_debits_within_caps_and_funds_the_epochs_payouts(world):
    token, escrow, distributor = (world.contracts.token, world.contracts.escrow,
                                  world.contracts.distributor)
    alice, bob = consumer_with_deposit(world, 10 * TOKEN), consumer_with_deposit(world, 8 * TOKEN)
    authorise(world, alice, 5 * TOKEN)
    authorise(world, bob, 5 * TOKEN)
    epoch = world.fresh_epoch()
    payouts, tree = payout_tree(world, 9 * TOKEN)
    escrow_held = token.balance_of(escrow.address)

    debits = [debit(alice, 4 * TOKEN), debit(bob, 5 * TOKEN)]
    result = escrow.settle(world.node, epoch, 0, debits)
    distributor.post_root(world.node, epoch, tree.root, 9 * TOKEN)
    for i, (account, amount) in enumerate(payouts):
        distributor.claim(world.node, epoch, account, amount, tree.proof(i))

    assert escrow.balance_of(alice.address) == 6 * TOKEN
    assert escrow.balance_of(bob.address) == 3 * TOKEN
    node = world.node.address
    assert (escrow.spending_cap(alice.address, node).spent, escrow.spending_cap(bob.address, node).spent) == (
        4 * TOKEN, 5 * TOKEN)
    assert escrow.spending_cap(alice.address, node).left == TOKEN
    assert token.balance_of(escrow.address) == escrow_held - 9 * TOKEN
    funding = distributor.epoch(epoch)
    assert (funding.root, funding.total, funding.claimed) == (tree.root, 9 * TOKEN, 9 * TOKEN)
    assert [token.balance_of(a) for a, _ in payouts] == [v for _, v in payouts]
    # one event per chunk; its hash commits to every debit, so a published debit list can be audited
    assert result.events(escrow.contract, "ChunkSettled") == [{
        "epoch": epoch, "chunk": 0, "total": 9 * TOKEN, "debitCount": 2,
        "debitsHash": keccak(b"".join(d.packed() for d in debits)), "settler": world.node.address}]


def test_a_standing_cap_renews_each_period_without_a_new_signature(world):
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, 10 * TOKEN)
    authorise(world, consumer, 2 * TOKEN)
    period = escrow.cap_period_seconds()

    for _ in range(3):
        world.chain.advance_time(period)
        allowance = escrow.spending_cap(consumer.address, world.node.address)
        assert (allowance.spent, allowance.left) == (0, 2 * TOKEN)
        escrow.settle(world.node, world.fresh_epoch(), 0, [debit(consumer, 2 * TOKEN)])

    assert escrow.balance_of(consumer.address) == 4 * TOKEN
    assert escrow.spending_cap(consumer.address, world.node.address).period_ends_at > world.now()


def test_a_stolen_settler_key_takes_at_most_one_cap_per_period_however_many_epochs_it_invents(world):
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, 10 * TOKEN)
    authorise(world, consumer, 2 * TOKEN)
    world.chain.advance_time(escrow.cap_period_seconds())

    escrow.settle(world.node, world.fresh_epoch(), 0, [debit(consumer, 2 * TOKEN)])
    for _ in range(2):
        with reverts("CapExceeded", consumer=consumer.address, spentAfter=3 * TOKEN, cap=2 * TOKEN):
            escrow.settle(world.node, world.fresh_epoch(), 0, [debit(consumer, TOKEN)])

    assert escrow.balance_of(consumer.address) == 8 * TOKEN


def test_two_nodes_settle_one_consumer_by_their_own_epoch_numbers_and_caps(world):
    """Spending is tracked per (consumer, settler): a node whose epoch numbers lag another's still settles."""
    escrow = world.contracts.escrow
    other = world.actor()
    escrow.grant_role(world.admin, "SETTLER_ROLE", other.address)
    consumer = consumer_with_deposit(world, 10 * TOKEN)
    authorise(world, consumer, 3 * TOKEN)
    authorise(world, consumer, 2 * TOKEN, settler=other.address)
    early, late = world.fresh_epoch(other), world.fresh_epoch()

    escrow.settle(world.node, late, 0, [debit(consumer, 3 * TOKEN)])
    escrow.settle(other, early, 0, [debit(consumer, 2 * TOKEN)])
    with reverts("CapExceeded", spentAfter=3 * TOKEN, cap=2 * TOKEN):  # the other node's own cap
        escrow.settle(other, early, 1, [debit(consumer, TOKEN)])

    assert escrow.spending_cap(consumer.address, world.node.address).spent == 3 * TOKEN
    assert escrow.spending_cap(consumer.address, other.address).spent == 2 * TOKEN
    assert escrow.balance_of(consumer.address) == 5 * TOKEN


def test_only_a_settler_settles(world):
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, 2 * TOKEN)
    epoch = world.fresh_epoch()

    for sender in (consumer, world.admin):
        authorise(world, consumer, TOKEN, settler=sender.address)
        with unauthorised(sender.address, "SETTLER_ROLE"):
            escrow.settle(sender, epoch, 0, [debit(consumer, TOKEN)])

    assert escrow.balance_of(consumer.address) == 2 * TOKEN


def test_no_cap_means_no_debit(world):
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, 2 * TOKEN)
    epoch = world.fresh_epoch()

    with reverts("CapExceeded", consumer=consumer.address, spentAfter=TOKEN, cap=0):
        escrow.settle(world.node, epoch, 0, [debit(consumer, TOKEN)])

    assert escrow.balance_of(consumer.address) == 2 * TOKEN


def test_an_expired_authorisation_cannot_be_relayed(world):
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, 2 * TOKEN)
    signed = escrow.sign_spending_cap(consumer, world.node.address, TOKEN, cap_nonce(), world.now() + 60)
    world.chain.advance_time(61)

    with reverts("AuthorisationExpired", consumer=consumer.address, deadline=signed.deadline):
        escrow.set_spending_caps_with_sig(world.node, [signed])

    assert escrow.spending_cap(consumer.address, world.node.address).cap == 0


def test_a_signature_binds_the_consumer_settler_cap_nonce_and_deadline(world):
    escrow = world.contracts.escrow
    consumer, forger, rival = (consumer_with_deposit(world, 5 * TOKEN), world.actor(),
                               world.actor())
    escrow.grant_role(world.admin, "SETTLER_ROLE", rival.address)
    nonce, deadline = cap_nonce(), world.now() + 3600
    genuine = escrow.sign_spending_cap(consumer, world.node.address, TOKEN, nonce, deadline)
    by_forger = escrow.sign_spending_cap(forger, world.node.address, 5 * TOKEN, nonce, deadline)
    g = genuine
    tampered = [
        SignedSpendingCap(g.consumer, g.settler, 5 * TOKEN, nonce, deadline, by_forger.signature),
        SignedSpendingCap(g.consumer, g.settler, 5 * TOKEN, nonce, deadline, g.signature),
        SignedSpendingCap(g.consumer, rival.address, TOKEN, nonce, deadline, g.signature),
        SignedSpendingCap(g.consumer, g.settler, TOKEN, nonce + 1, deadline, g.signature),
        SignedSpendingCap(g.consumer, g.settler, TOKEN, nonce, deadline + 1, g.signature),
        SignedSpendingCap(g.consumer, g.settler, TOKEN, nonce, deadline, b"\x01" * 65),
        SignedSpendingCap(g.consumer, g.settler, TOKEN, nonce, deadline, b"\x00" * 65),
        SignedSpendingCap(g.consumer, g.settler, TOKEN, nonce, deadline, g.signature[:64] + b"\x1d"),
    ]
    with pytest.raises(ChainError) as short:
        escrow.set_spending_caps_with_sig(world.node, [
            SignedSpendingCap(g.consumer, g.settler, TOKEN, nonce, deadline, b"\x01" * 10)])
    assert short.value.field == "signature"

    for forged in tampered:
        with reverts("InvalidSignature", consumer=consumer.address):
            escrow.set_spending_caps_with_sig(rival, [forged])  # anyone may relay; nobody may forge
    escrow.set_spending_caps_with_sig(rival, [genuine])
    with reverts("CapExceeded", cap=0):
        escrow.settle(rival, world.fresh_epoch(rival), 0, [debit(consumer, TOKEN)])  # the cap is the node's

    assert escrow.balance_of(consumer.address) == 5 * TOKEN
    escrow.settle(world.node, world.fresh_epoch(), 0, [debit(consumer, TOKEN)])
    assert escrow.balance_of(consumer.address) == 4 * TOKEN


def start_of_a_period(world) -> None:
    period = world.contracts.escrow.cap_period_seconds()
    world.chain.advance_time(period - world.now() % period + 1)


def test_a_newer_authorisation_or_an_on_chain_change_voids_every_older_signed_cap(world):
    """A higher cap the consumer signed earlier cannot be used once a lower one, or a revocation, landed."""
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, 10 * TOKEN)
    node = world.node.address
    start_of_a_period(world)
    deadline = world.now() + 3600
    high = escrow.sign_spending_cap(consumer, node, 8 * TOKEN, 100, deadline)
    low = escrow.sign_spending_cap(consumer, node, 2 * TOKEN, 200, deadline)
    escrow.set_spending_caps_with_sig(world.node, [low])
    epoch = world.fresh_epoch()

    with reverts("StaleNonce", nonce=100, lastNonce=200):
        escrow.set_spending_caps_with_sig(world.node, [high])  # the hot key replays the old, higher cap
    with reverts("CapExceeded", spentAfter=3 * TOKEN, cap=2 * TOKEN):
        escrow.settle(world.node, epoch, 0, [debit(consumer, 3 * TOKEN)])
    escrow.settle(world.node, epoch, 0, [debit(consumer, TOKEN)])
    escrow.set_spending_cap(consumer, node, 0, 300)  # revoked on chain
    for old in (high, low):
        with reverts("StaleNonce", lastNonce=300):
            escrow.set_spending_caps_with_sig(world.node, [old])
    world.chain.advance_time(15 * 60)  # past the grace
    with reverts("CapExceeded", cap=0):
        escrow.settle(world.node, epoch, 1, [debit(consumer, 1)])

    assert escrow.spending_cap(consumer.address, node).nonce == 300
    assert escrow.balance_of(consumer.address) == 9 * TOKEN


def test_a_lowered_cap_binds_after_a_grace_that_lets_a_close_planned_before_it_land(world):
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, 10 * TOKEN)
    node = world.node.address
    start_of_a_period(world)
    escrow.set_spending_cap(consumer, node, 4 * TOKEN, 1)
    escrow.settle(world.node, world.fresh_epoch(), 0, [debit(consumer, TOKEN)])

    lowered = escrow.set_spending_cap(consumer, node, TOKEN, 2)  # the node planned 2 more just before
    ends = escrow.cap_in_force(consumer.address, node)[1]
    assert escrow.cap_in_force(consumer.address, node) == (4 * TOKEN, ends) and ends > world.now()
    escrow.settle(world.node, world.fresh_epoch(), 0, [debit(consumer, 2 * TOKEN)])  # within the grace: old cap
    with reverts("CapExceeded", spentAfter=5 * TOKEN, cap=TOKEN):  # never past the cap it replaced
        escrow.settle(world.node, world.fresh_epoch(), 0, [debit(consumer, 2 * TOKEN)])
    escrow.set_spending_cap(consumer, node, TOKEN // 2, 3)  # lowered again: the grace still honours 4, not 1
    escrow.settle(world.node, world.fresh_epoch(), 0, [debit(consumer, TOKEN // 2)])
    world.chain.advance_time(15 * 60)
    assert escrow.cap_in_force(consumer.address, node) == (TOKEN // 2, 0)  # the grace is over: the standing cap
    with reverts("CapExceeded", spentAfter=3 * TOKEN + TOKEN // 2 + 1, cap=TOKEN // 2):
        escrow.settle(world.node, world.fresh_epoch(), 0, [debit(consumer, 1)])

    assert lowered.events(escrow.contract, "SpendingCapSet") == [
        {"consumer": consumer.address, "settler": node, "cap": TOKEN, "nonce": 2}]
    assert escrow.balance_of(consumer.address) == 10 * TOKEN - 3 * TOKEN - TOKEN // 2


def test_a_revocation_just_before_a_new_period_gives_no_fresh_cap_in_it(world):
    """The grace ends with the cap period the lowering landed in: past the boundary the spent count starts again,
    and the old cap would be a whole new cap for a settler (say a stolen node key) the consumer just revoked."""
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, 100 * TOKEN)
    node = world.node.address
    escrow.set_spending_cap(consumer, node, 10 * TOKEN, 1)
    period = escrow.cap_period_seconds()
    world.chain.advance_time(period - world.now() % period - 300)  # five minutes before the next period
    escrow.settle(world.node, world.fresh_epoch(), 0, [debit(consumer, 10 * TOKEN)])  # this period's whole cap
    escrow.set_spending_cap(consumer, node, 0, 2)  # revoked
    cap, ends = escrow.cap_in_force(consumer.address, node)
    assert cap == 10 * TOKEN and ends == (world.now() // period + 1) * period  # the grace stops at the boundary
    world.chain.advance_time(360)  # the next period, within fifteen minutes of the revocation
    assert escrow.cap_in_force(consumer.address, node) == (0, 0)
    with reverts("CapExceeded", spentAfter=10 * TOKEN, cap=0):
        escrow.settle(world.node, world.fresh_epoch(), 0, [debit(consumer, 10 * TOKEN)])
    assert escrow.balance_of(consumer.address) == 90 * TOKEN


def test_a_cap_must_fit_in_96_bits(world):
    escrow = world.contracts.escrow
    consumer = world.actor()
    with reverts("CapTooLarge", cap=2**96):
        escrow.set_spending_cap(consumer, world.node.address, 2**96, 1)
    with reverts("ZeroAddress"):
        escrow.set_spending_cap(consumer, ZERO, TOKEN, 1)


def test_the_cap_bounds_the_periods_total_across_debits_and_settlements(world):
    escrow, distributor = world.contracts.escrow, world.contracts.distributor
    consumer = consumer_with_deposit(world, 10 * TOKEN)
    cap = 5 * TOKEN
    authorise(world, consumer, cap)
    world.chain.advance_time(escrow.cap_period_seconds())  # the whole test in one fresh period
    epoch = world.fresh_epoch()
    _, tree = payout_tree(world, 3 * TOKEN)

    with reverts("CapExceeded", consumer=consumer.address, spentAfter=cap + 1, cap=cap):
        escrow.settle(world.node, epoch, 0, [debit(consumer, cap + 1)])
    with reverts("CapExceeded", spentAfter=6 * TOKEN):  # two debits in one settlement add up
        escrow.settle(world.node, epoch, 0, [debit(consumer, 3 * TOKEN), debit(consumer, 3 * TOKEN)])
    escrow.settle(world.node, epoch, 0, [debit(consumer, 3 * TOKEN)])
    # A second chunk is measured against what the first already spent...
    with reverts("CapExceeded", spentAfter=6 * TOKEN, cap=cap):
        escrow.settle(world.node, epoch, 1, [debit(consumer, 3 * TOKEN)])
    # ...a chunk number is accepted once, so a resumed settlement cannot charge twice...
    with reverts("ChunkAlreadySettled", epoch=epoch, chunk=0):
        escrow.settle(world.node, epoch, 0, [debit(consumer, TOKEN)])
    # ...and a new chunk within the cap tops the epoch up until its root is posted.
    escrow.settle(world.node, epoch, 1, [debit(consumer, TOKEN)])
    distributor.post_root(world.node, epoch, tree.root, 4 * TOKEN)
    with reverts("EpochFinal", epoch=epoch):
        escrow.settle(world.node, epoch, 2, [debit(consumer, TOKEN)])

    assert escrow.is_chunk_settled(epoch, 0) and escrow.is_chunk_settled(epoch, 1)
    assert not escrow.is_chunk_settled(epoch, 2)
    assert escrow.spending_cap(consumer.address, world.node.address).spent == 4 * TOKEN
    assert escrow.balance_of(consumer.address) == 6 * TOKEN
    assert distributor.epoch(epoch).total == 4 * TOKEN


def test_a_chunk_must_charge_something(world):
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, TOKEN)
    authorise(world, consumer, TOKEN)
    epoch = world.fresh_epoch()

    with reverts("EmptyChunk", epoch=epoch, chunk=0):
        escrow.settle(world.node, epoch, 0, [])
    with reverts("EmptyChunk", epoch=epoch, chunk=0):
        escrow.settle(world.node, epoch, 0, [debit(consumer, 0)])

    assert world.contracts.distributor.epoch(epoch) is None


def test_a_debit_beyond_the_balance_fails_the_whole_settlement(world):
    escrow, distributor = world.contracts.escrow, world.contracts.distributor
    rich, poor = consumer_with_deposit(world, 10 * TOKEN), consumer_with_deposit(world, TOKEN)
    authorise(world, rich, 5 * TOKEN)
    authorise(world, poor, 5 * TOKEN)
    epoch = world.fresh_epoch()

    with reverts("InsufficientBalance", consumer=poor.address, balance=TOKEN, amount=2 * TOKEN):
        escrow.settle(world.node, epoch, 0, [debit(rich, 2 * TOKEN), debit(poor, 2 * TOKEN)])

    assert escrow.balance_of(rich.address) == 10 * TOKEN
    assert escrow.spending_cap(rich.address, world.node.address).spent == 0
    assert distributor.epoch(epoch) is None


def test_a_pending_withdrawal_stays_debitable_and_pays_what_is_left(world):
    token, escrow = world.contracts.token, world.contracts.escrow
    consumer = consumer_with_deposit(world, 10 * TOKEN)
    authorise(world, consumer, 7 * TOKEN)
    epoch = world.fresh_epoch()
    escrow.request_withdrawal(consumer, 9 * TOKEN)

    escrow.settle(world.node, epoch, 0, [debit(consumer, 7 * TOKEN)])
    world.chain.advance_time(WITHDRAW_DELAY)
    paid = escrow.withdraw(consumer)

    assert paid.events(escrow.contract, "Withdrawn")[0]["amount"] == 3 * TOKEN
    assert token.balance_of(consumer.address) == 3 * TOKEN
    assert escrow.balance_of(consumer.address) == 0


def test_an_epoch_whose_root_is_posted_can_no_longer_be_settled(world):
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, 2 * TOKEN)
    authorise(world, consumer, TOKEN)
    epoch, _ = world.fund_payouts([(world.actor().address, TOKEN)])

    with reverts("EpochFinal", epoch=epoch):
        escrow.settle(world.node, epoch, 0, [debit(consumer, TOKEN)])

    assert escrow.balance_of(consumer.address) == 2 * TOKEN


def test_the_cap_digest_is_the_eip712_message_a_wallet_signs(world):
    escrow = world.contracts.escrow
    consumer = world.actor()
    deadline = world.now() + 3600
    typed = escrow.spending_cap_typed_data(consumer.address, world.node.address, TOKEN, 42, deadline)
    signature = escrow.sign_spending_cap(consumer, world.node.address, TOKEN, 42, deadline).signature

    digest = escrow.spending_cap_digest(consumer.address, world.node.address, TOKEN, 42, deadline)

    assert Account._recover_hash(bytes.fromhex(digest[2:]), signature=signature) == \
        consumer.address
    signable = encode_typed_data(full_message=typed)
    assert Account.recover_message(signable, signature=signature) == consumer.address
    assert world.chain.call(escrow.contract.functions.DOMAIN_SEPARATOR()) == signable.header
    assert escrow.eip712_domain == {"name": "ledgerlm-escrow", "version": "1",
                                    "chainId": world.chain.chain_id,
                                    "verifyingContract": escrow.address}
    assert escrow.withdraw_delay_seconds() == WITHDRAW_DELAY


@pytest.mark.parametrize("zero", ["token", "distributor", "admin"])
def test_the_escrow_refuses_zero_addresses_at_deployment(world, zero):
    args = {"token": world.contracts.token.address,
            "distributor": world.contracts.distributor.address, "admin": world.admin.address,
            zero: ZERO}
    with reverts("ZeroAddress"):
        world.chain.deploy("PaymentEscrow", args["token"], args["distributor"], args["admin"],
                           WITHDRAW_DELAY, 3600, sender=world.admin)


def test_the_escrow_refuses_a_zero_cap_period(world):
    with reverts("ZeroCapPeriod"):
        world.chain.deploy("PaymentEscrow", world.contracts.token.address, world.contracts.distributor.address,
                           world.admin.address, WITHDRAW_DELAY, 0, sender=world.admin)
