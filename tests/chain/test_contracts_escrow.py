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

from ledgerlm.chain import ChainError, Debit, PendingAmount
from ledgerlm.chain.merkle import StandardMerkleTree

ZERO = "0x" + "00" * 20


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory) -> Iterator[World]:
    yield from open_world(request, tmp_path_factory)


def consumer_with_deposit(world, amount: int):
    consumer = world.actor(amount)
    world.contracts.escrow.deposit(consumer, amount)
    return consumer


def debit(world, consumer, amount: int, cap: int, epoch: int, *, settler: str | None = None,
          deadline: int | None = None) -> Debit:
    deadline = world.now() + 3600 if deadline is None else deadline
    signature = world.contracts.escrow.sign_spending_cap(
        consumer, settler or world.node.address, epoch, cap, deadline)
    return Debit(consumer.address, amount, cap, deadline, signature)


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
    epoch = world.fresh_epoch()
    payouts, tree = payout_tree(world, 9 * TOKEN)
    escrow_held = token.balance_of(escrow.address)

    debits = [debit(world, alice, 4 * TOKEN, 5 * TOKEN, epoch), debit(world, bob, 5 * TOKEN, 5 * TOKEN, epoch)]
    result = escrow.settle(world.node, epoch, 0, debits)
    distributor.post_root(world.node, epoch, tree.root, 9 * TOKEN)
    for i, (account, amount) in enumerate(payouts):
        distributor.claim(world.node, epoch, account, amount, tree.proof(i))

    assert escrow.balance_of(alice.address) == 6 * TOKEN
    assert escrow.balance_of(bob.address) == 3 * TOKEN
    assert (escrow.spent(alice.address, epoch), escrow.spent(bob.address, epoch)) == (
        4 * TOKEN, 5 * TOKEN)
    assert escrow.spent(alice.address, epoch + 1) == 0
    assert token.balance_of(escrow.address) == escrow_held - 9 * TOKEN
    funding = distributor.epoch(epoch)
    assert (funding.root, funding.total, funding.claimed) == (tree.root, 9 * TOKEN, 9 * TOKEN)
    assert [token.balance_of(a) for a, _ in payouts] == [v for _, v in payouts]
    # one event per chunk; its hash commits to every debit, so a published debit list can be audited
    assert result.events(escrow.contract, "ChunkSettled") == [{
        "epoch": epoch, "chunk": 0, "total": 9 * TOKEN, "debitCount": 2,
        "debitsHash": keccak(b"".join(w for d in debits for w in d.packed())), "settler": world.node.address}]


def test_a_consumers_earlier_epoch_cannot_be_settled_after_a_later_one(world):
    """Spent is tracked for a consumer's latest epoch only, so going back would reset the cap."""
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, 10 * TOKEN)
    early, late = world.fresh_epoch(), world.fresh_epoch()
    escrow.settle(world.node, late, 0, [debit(world, consumer, TOKEN, TOKEN, late)])
    with reverts("EpochOutOfOrder", epoch=early, latestEpoch=late):
        escrow.settle(world.node, early, 0, [debit(world, consumer, TOKEN, TOKEN, early)])
    with reverts("EpochOutOfOrder"):
        escrow.spent(consumer.address, early)
    assert escrow.spent(consumer.address, late) == TOKEN
    assert escrow.balance_of(consumer.address) == 9 * TOKEN


def test_only_a_settler_settles(world):
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, 2 * TOKEN)
    epoch = world.fresh_epoch()
    _, tree = payout_tree(world, TOKEN)

    for sender in (consumer, world.admin):
        charge = debit(world, consumer, TOKEN, TOKEN, epoch, settler=sender.address)
        with unauthorised(sender.address, "SETTLER_ROLE"):
            escrow.settle(sender, epoch, 0, [charge])

    assert escrow.balance_of(consumer.address) == 2 * TOKEN


def test_an_expired_authorisation_cannot_be_used(world):
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, 2 * TOKEN)
    epoch = world.fresh_epoch()
    _, tree = payout_tree(world, TOKEN)
    charge = debit(world, consumer, TOKEN, TOKEN, epoch, deadline=world.now() + 60)
    world.chain.advance_time(61)

    with reverts("AuthorisationExpired", consumer=consumer.address, deadline=charge.deadline):
        escrow.settle(world.node, epoch, 0, [charge])

    assert escrow.balance_of(consumer.address) == 2 * TOKEN


def test_a_signature_binds_the_consumer_settler_epoch_cap_and_deadline(world):
    escrow = world.contracts.escrow
    consumer, forger, rival = (consumer_with_deposit(world, 5 * TOKEN), world.actor(),
                               world.actor())
    escrow.grant_role(world.admin, "SETTLER_ROLE", rival.address)
    epoch = world.fresh_epoch()
    _, tree = payout_tree(world, TOKEN)
    genuine = debit(world, consumer, TOKEN, TOKEN, epoch)
    by_forger = debit(world, forger, TOKEN, 5 * TOKEN, epoch)
    for_next_epoch = debit(world, consumer, TOKEN, TOKEN, epoch + 1)
    tampered = [
        Debit(consumer.address, TOKEN, 5 * TOKEN, genuine.deadline, by_forger.signature),
        Debit(consumer.address, TOKEN, 5 * TOKEN, genuine.deadline, genuine.signature),
        Debit(consumer.address, TOKEN, TOKEN, genuine.deadline + 1, genuine.signature),
        Debit(consumer.address, TOKEN, TOKEN, genuine.deadline, for_next_epoch.signature),
        Debit(consumer.address, TOKEN, TOKEN, genuine.deadline, b"\x01" * 65),
        Debit(consumer.address, TOKEN, TOKEN, genuine.deadline, b"\x00" * 65),
        Debit(consumer.address, TOKEN, TOKEN, genuine.deadline, genuine.signature[:64] + b"\x1d"),  # v neither 27/28
    ]
    with pytest.raises(ChainError) as short:
        escrow.settle(world.node, epoch, 0, [Debit(consumer.address, TOKEN, TOKEN, genuine.deadline, b"\x01" * 10)])
    assert short.value.field == "signature"

    for forged in tampered:
        with reverts("InvalidSignature", consumer=consumer.address):
            escrow.settle(world.node, epoch, 0, [forged])
    with reverts("InvalidSignature", consumer=consumer.address):
        escrow.settle(rival, epoch, 0, [genuine])  # signed for the node, not rival

    assert escrow.balance_of(consumer.address) == 5 * TOKEN
    escrow.settle(world.node, epoch, 0, [genuine])
    assert escrow.balance_of(consumer.address) == 4 * TOKEN


def test_the_cap_bounds_the_epochs_total_across_debits_and_settlements(world):
    escrow, distributor = world.contracts.escrow, world.contracts.distributor
    consumer = consumer_with_deposit(world, 10 * TOKEN)
    epoch = world.fresh_epoch()
    _, tree = payout_tree(world, 3 * TOKEN)
    cap = 5 * TOKEN

    with reverts("CapExceeded", consumer=consumer.address, epoch=epoch, spentAfter=cap + 1,
                 cap=cap):
        escrow.settle(world.node, epoch, 0, [debit(world, consumer, cap + 1, cap,
                                                                 epoch)])
    with reverts("CapExceeded", spentAfter=6 * TOKEN):  # two debits in one settlement add up
        escrow.settle(world.node, epoch, 0, [
            debit(world, consumer, 3 * TOKEN, cap, epoch),
            debit(world, consumer, 3 * TOKEN, cap, epoch)])
    escrow.settle(world.node, epoch, 0, [debit(world, consumer, 3 * TOKEN, cap, epoch)])
    # A second chunk of the same epoch is measured against what the first already spent...
    with reverts("CapExceeded", spentAfter=6 * TOKEN, cap=cap):
        escrow.settle(world.node, epoch, 1, [debit(world, consumer, 3 * TOKEN, cap, epoch)])
    # ...a chunk number is accepted once, so a resumed settlement cannot charge twice...
    with reverts("ChunkAlreadySettled", epoch=epoch, chunk=0):
        escrow.settle(world.node, epoch, 0, [debit(world, consumer, TOKEN, cap, epoch)])
    # ...and a new chunk within the cap tops the epoch up until its root is posted.
    escrow.settle(world.node, epoch, 1, [debit(world, consumer, TOKEN, cap, epoch)])
    distributor.post_root(world.node, epoch, tree.root, 4 * TOKEN)
    with reverts("EpochFinal", epoch=epoch):
        escrow.settle(world.node, epoch, 2, [debit(world, consumer, TOKEN, cap, epoch)])

    assert escrow.is_chunk_settled(epoch, 0) and escrow.is_chunk_settled(epoch, 1)
    assert not escrow.is_chunk_settled(epoch, 2)
    assert escrow.spent(consumer.address, epoch) == 4 * TOKEN
    assert escrow.balance_of(consumer.address) == 6 * TOKEN
    assert distributor.epoch(epoch).total == 4 * TOKEN


def test_a_chunk_must_charge_something(world):
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, TOKEN)
    epoch = world.fresh_epoch()

    with reverts("EmptyChunk", epoch=epoch, chunk=0):
        escrow.settle(world.node, epoch, 0, [])
    with reverts("EmptyChunk", epoch=epoch, chunk=0):
        escrow.settle(world.node, epoch, 0, [debit(world, consumer, 0, TOKEN, epoch)])

    assert world.contracts.distributor.epoch(epoch) is None


def test_a_debit_beyond_the_balance_fails_the_whole_settlement(world):
    escrow, distributor = world.contracts.escrow, world.contracts.distributor
    rich, poor = consumer_with_deposit(world, 10 * TOKEN), consumer_with_deposit(world, TOKEN)
    epoch = world.fresh_epoch()
    _, tree = payout_tree(world, 4 * TOKEN)

    with reverts("InsufficientBalance", consumer=poor.address, balance=TOKEN, amount=2 * TOKEN):
        escrow.settle(world.node, epoch, 0, [
            debit(world, rich, 2 * TOKEN, 5 * TOKEN, epoch),
            debit(world, poor, 2 * TOKEN, 5 * TOKEN, epoch)])

    assert escrow.balance_of(rich.address) == 10 * TOKEN
    assert escrow.spent(rich.address, epoch) == 0
    assert distributor.epoch(epoch) is None


def test_a_pending_withdrawal_stays_debitable_and_pays_what_is_left(world):
    token, escrow = world.contracts.token, world.contracts.escrow
    consumer = consumer_with_deposit(world, 10 * TOKEN)
    epoch = world.fresh_epoch()
    _, tree = payout_tree(world, 7 * TOKEN)
    escrow.request_withdrawal(consumer, 9 * TOKEN)

    escrow.settle(world.node, epoch, 0, [debit(world, consumer, 7 * TOKEN,
                                                             7 * TOKEN, epoch)])
    world.chain.advance_time(WITHDRAW_DELAY)
    paid = escrow.withdraw(consumer)

    assert paid.events(escrow.contract, "Withdrawn")[0]["amount"] == 3 * TOKEN
    assert token.balance_of(consumer.address) == 3 * TOKEN
    assert escrow.balance_of(consumer.address) == 0


def test_an_epoch_whose_root_is_posted_can_no_longer_be_settled(world):
    escrow = world.contracts.escrow
    consumer = consumer_with_deposit(world, 2 * TOKEN)
    epoch, _ = world.fund_payouts([(world.actor().address, TOKEN)])

    with reverts("EpochFinal", epoch=epoch):
        escrow.settle(world.node, epoch, 0, [debit(world, consumer, TOKEN, TOKEN, epoch)])

    assert escrow.balance_of(consumer.address) == 2 * TOKEN


def test_the_cap_digest_is_the_eip712_message_a_wallet_signs(world):
    escrow = world.contracts.escrow
    consumer = world.actor()
    deadline = world.now() + 3600
    typed = escrow.spending_cap_typed_data(consumer.address, world.node.address, 42, TOKEN,
                                           deadline)
    signature = escrow.sign_spending_cap(consumer, world.node.address, 42, TOKEN, deadline)

    digest = escrow.spending_cap_digest(consumer.address, world.node.address, 42, TOKEN, deadline)

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
                           WITHDRAW_DELAY, sender=world.admin)
