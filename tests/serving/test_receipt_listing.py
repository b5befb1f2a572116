"""Listing receipts: at most 1,000 a page, paged on with `before`, and an account's receipts read from the accounts
each receipt names (kept with every write and attribution, backfilled by the migration that adds them), in index
order, so a page costs the same however many receipts the node holds."""

from __future__ import annotations

from alembic import command
from sqlalchemy import event, insert, select

from ledgerlm.node import Node
from ledgerlm.serving.catalog import ServedModel
from ledgerlm.serving.receipts import Completed, ReceiptLog
from ledgerlm.store import Database
from ledgerlm.store.schema import receipt_accounts, receipts
from tests.economy.helpers import SHARES, key

ALICE, BOB, DEV, CONTRIBUTOR = (key(n) for n in ("alice", "bob", "developer", "contributor"))
MODEL = ServedModel("m", "tiny", None, None, DEV.address, 10**15, SHARES, "colours", (), 0)


class _Attributed:
    """The part of an attribution result the receipt log reads."""

    contributors = (type("Share", (), {"contributor": CONTRIBUTOR.address, "bps": 10_000})(),)
    evidence_bps = 5000
    unattributed = False

    def to_dict(self) -> dict:
        return {"contributors": [{"contributor": CONTRIBUTOR.address, "bps": 10_000}]}


def _write(log: ReceiptLog, rid: str, consumer: str, attributing: bool = False) -> str:
    call = Completed(rid, consumer, MODEL, 20, 10, {"prompt": "p", "completion": "c"})
    return log.write(call, attributing=attributing).id


def _plans(node, run) -> list[str]:
    """SQLite's plan of every SELECT `run` sends, one line per step."""
    sent: list[tuple] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(node.db.engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(node.db.engine, "before_cursor_execute", record)
    with node.db.engine.connect() as conn:
        return [row[-1] for statement, parameters in sent
                for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()]


def test_an_accounts_receipts_are_paged_from_its_own_rows(home):
    node = Node.open(home)
    log = ReceiptLog(node.db, node.account, domain=node.domain)
    try:
        mine = [_write(log, f"a{i:02d}", ALICE.address) for i in range(7)]
        for i in range(40):
            _write(log, f"b{i:02d}", BOB.address)
        attributed = _write(log, "a-attributed", ALICE.address, attributing=True)
        log.attach(attributed, _Attributed())  # its contributor is paid now, so the contributor lists it

        pages, before = [], None
        while page := log.list(account=ALICE.address.lower(), limit=3, before=before):
            pages.append([r.id for r in page])
            before = page[-1].id
        listed = [rid for page in pages for rid in page]
        assert sorted(listed) == sorted([*mine, attributed]) and len(listed) == 8 and max(map(len, pages)) == 3
        assert listed == [r.id for r in log.list(account=ALICE.address, limit=1000)]  # newest first, one order
        assert [r.id for r in log.list(account=CONTRIBUTOR.address)] == [attributed]
        assert len(log.list(account=DEV.address, limit=1000)) == 48  # the developer is paid by every receipt
        assert len(log.list(limit=1000)) == 48 and len(log.list(account=key("nobody").address)) == 0

        # the page is found through the account's index, never by reading receipts that are not its own
        plan = _plans(node, lambda: log.list(account=ALICE.address, limit=3, before=listed[2]))
        assert any("ix_receipt_accounts_listing" in step for step in plan), plan
        assert not any(step.startswith("SCAN") or "TEMP B-TREE" in step for step in plan), plan
    finally:
        node.close()


def test_a_listing_past_the_limit_is_refused_naming_it(http):
    for limit in (1001, 1_000_000):
        response = http.get("/receipts", params={"limit": limit})
        assert response.status_code == 422 and response.json()["error"]["field"] == "limit"
    assert http.get("/receipts", params={"limit": 1000}).json() == []
    unknown = http.get("/receipts", params={"before": "lgr-unknown"})
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "before"


def test_the_migration_names_the_accounts_of_receipts_written_before_it(tmp_path):
    db = Database.at(tmp_path / "old.db")
    with db.engine.begin() as connection:
        command.upgrade(db._alembic(connection), "0022")
    payouts = [{"role": "developer", "account": DEV.address, "datanet": None, "amount": "3"},
               {"role": "data_pool", "account": None, "datanet": "colours", "amount": "1"}]
    with db.begin() as conn:
        for i, consumer in enumerate([ALICE.address, None, BOB.address] + [ALICE.address] * 1500):
            conn.execute(insert(receipts).values(
                id=f"r{i:04d}", epoch=1, consumer=consumer, model_id="m", adapter_sha256=None, prompt_tokens=1,
                completion_tokens=1, price_per_1k="1", fee="4", fee_policy={}, payouts=payouts, datanet_roots=[],
                attribution=None, state="final", body={}, signature=None, created_at=i, finalized_at=i))
    db.upgrade()
    try:
        with db.connect() as conn:
            named = conn.execute(select(receipt_accounts.c.receipt_id, receipt_accounts.c.account,
                                        receipt_accounts.c.created_at)).all()
        assert len(named) == 1503 * 2 - 1  # each names its developer, and its consumer but the free call
        assert ("r0001", DEV.address, 1) in named and ("r0002", BOB.address, 2) in named
        assert {a for rid, a, _ in named if rid == "r1502"} == {ALICE.address, DEV.address}
    finally:
        db.close()
