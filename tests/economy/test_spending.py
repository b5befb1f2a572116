"""What each account spent, as running totals kept with every receipt and access payment: always equal to the sum
of the rows they summarise (per epoch and ever, to the base unit), backfilled by the migration that adds them, and
what an agent's budget check reads."""

from __future__ import annotations

import random
import time

from sqlalchemy import insert, select, update

from ledgerlm.economy import FeeShares, current_epoch, open_epoch, spent_by
from ledgerlm.economy.access import resolve_pending
from ledgerlm.node import Node
from ledgerlm.serving.catalog import ServedModel
from ledgerlm.serving.receipts import Completed, ReceiptLog
from ledgerlm.store import Database
from ledgerlm.store.schema import access_payments, epochs, receipts, signed_actions

from .helpers import key

BIG = 10**30  # past 64 bits: totals must not go through SQL arithmetic
ACCOUNTS = [key(f"spender-{i}").address for i in range(3)]


def _model(price: int) -> ServedModel:
    return ServedModel("m", "tiny", None, None, ACCOUNTS[0], price, FeeShares(500, 4000, 4500, 1000), None, (), 0)


def _from_rows(conn, account: str, epoch: int | None) -> int:
    """The sum a budget check computed before: every receipt fee, and every access payment pending or paid."""
    calls = select(receipts.c.fee).where(receipts.c.consumer == account)
    paid = select(access_payments.c.amount).where((access_payments.c.developer == account)
                                                  & access_payments.c.state.in_(("pending", "paid")))
    if epoch is not None:
        calls, paid = calls.where(receipts.c.epoch == epoch), paid.where(access_payments.c.epoch == epoch)
    return sum(int(v) for q in (calls, paid) for v in conn.execute(q).scalars())


def _pending_payment(conn, account: str, amount: int, epoch: int) -> None:
    """An access payment as one a crash left pending (stored and counted, its chain debit never sent)."""
    from ledgerlm.economy import add_spent

    action = conn.execute(insert(signed_actions).values(
        action="PayAccess", signer=account, nonce=str(random.getrandbits(62)), deadline=0, chain_id=1337, message={},
        signature="0x", created_at=0)).inserted_primary_key[0]
    conn.execute(insert(access_payments).values(
        datanet="d", version=1, developer=account, amount=str(amount), epoch=epoch, state="pending", tx=None,
        job_id=None, action_id=action, created_at=0, purpose="export"))
    add_spent(conn, account, epoch, amount)


def test_running_totals_equal_the_rows_through_receipts_payments_and_epochs(home):
    node = Node.open(home)
    rng = random.Random(7)
    log = ReceiptLog(node.db, node.account, domain=node.domain)
    try:
        for step in range(60):
            account = rng.choice(ACCOUNTS + [None])  # None: a free call with no consumer
            if step % 20 == 19:  # the next epoch opens, as a close leaves it
                with node.db.begin() as conn:
                    number = open_epoch(conn)
                    conn.execute(update(epochs).where(epochs.c.number == number).values(state="published"))
                    conn.execute(insert(epochs).values(number=number + 1, state="open", opened_at=int(time.time())))
            elif account is not None and rng.random() < 0.25:
                with node.db.begin() as conn:
                    _pending_payment(conn, account, rng.choice([1, 10**18, BIG]), open_epoch(conn))
            else:
                price = rng.choice([0, 1, 10**15, BIG])
                log.write(Completed(f"r{step}", account, _model(price), rng.randint(1, 50), rng.randint(0, 50),
                                    {"prompt": "p", "completion": "c"}), attributing=False)
        resolve_pending(node.db, node.contracts.escrow, node.account.address)  # no debit landed on chain: all fail, uncounted
        with node.db.connect() as conn:
            assert conn.execute(select(access_payments.c.state).distinct()).scalars().all() == ["failed"]
            last = current_epoch(conn)
            assert last == 4
            for account in ACCOUNTS:
                assert spent_by(conn, account) == _from_rows(conn, account, None) > 0
                for epoch in range(1, last + 1):
                    assert spent_by(conn, account, epoch) == _from_rows(conn, account, epoch)
                assert spent_by(conn, account) == sum(spent_by(conn, account, e) for e in range(1, last + 1))
    finally:
        node.close()


def test_the_migration_backfills_what_was_spent_before_it(tmp_path):
    db = Database.at(tmp_path / "old.db")
    from alembic import command

    with db.engine.begin() as connection:
        command.upgrade(db._alembic(connection), "0015")
    alice, bob = ACCOUNTS[:2]
    with db.begin() as conn:
        for i, (account, epoch, fee) in enumerate([(alice, 1, BIG), (alice, 1, 3), (alice, 2, 5), (bob, 2, 7),
                                                   (None, 2, 11)]):
            conn.execute(insert(receipts).values(
                id=f"r{i}", epoch=epoch, consumer=account, model_id="m", adapter_sha256=None, prompt_tokens=1,
                completion_tokens=1, price_per_1k="1", fee=str(fee), fee_policy={}, payouts=[], datanet_roots=[],
                attribution=None, state="final", body={}, signature=None, created_at=0, finalized_at=0))
        for i, (state, amount) in enumerate([("paid", 13), ("pending", 17), ("failed", 19)]):
            action = conn.execute(insert(signed_actions).values(
                action="PayAccess", signer=bob, nonce=str(i), deadline=0, chain_id=1337, message={}, signature="0x",
                created_at=0)).inserted_primary_key[0]
            conn.execute(insert(access_payments).values(
                datanet="d", version=1, developer=bob, amount=str(amount), epoch=2, state=state, tx=None, job_id=None,
                action_id=action, created_at=0, purpose="export"))
    db.upgrade()
    with db.connect() as conn:
        assert spent_by(conn, alice, 1) == BIG + 3 and spent_by(conn, alice, 2) == 5 and spent_by(conn, alice) == BIG + 8
        assert spent_by(conn, bob, 2) == spent_by(conn, bob) == 7 + 13 + 17  # the failed payment is not spent
        assert spent_by(conn, bob, 1) == 0
        for account in (alice, bob):
            assert spent_by(conn, account) == _from_rows(conn, account, None)
    db.close()
