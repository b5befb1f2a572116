"""Pages open to anyone: the ledger explorer reads a bounded number of transactions, and no error names a server path."""

from __future__ import annotations

from eth_account import Account

from ledgerlm.web import ledger

UNIT = 10**18


def test_an_address_page_reads_at_most_its_bound_of_transactions(http, client, monkeypatch):
    who = Account.create().address
    for _ in range(6):  # six blocks of one transaction each, the newest first in the scan
        client.chain.faucet(Account.create().address, eth_wei=1)
    client.chain.faucet(who, eth_wei=UNIT)
    node = http.app.state.node
    reads = []
    transaction = node.chain.transaction
    monkeypatch.setattr(node.chain, "transaction", lambda h: reads.append(h) or transaction(h))
    monkeypatch.setattr(ledger, "ADDRESS_SCAN_TXS", 4)

    shown = http.get(f"/web/ledger/address/{who}")

    assert shown.status_code == 200 and len(reads) <= 4
    assert "Transactions in the last 4 blocks" in shown.text and who in shown.text


def test_a_model_whose_files_are_gone_is_named_by_its_id_not_the_servers_path(http, home, alice):
    """The model page and the API are open to anyone (a public Datanet's model): a missing adapter directory
    is reported without the node's file system layout."""
    import time

    from sqlalchemy import insert

    from ledgerlm.store.schema import models

    node = http.app.state.node
    with node.db.begin() as conn:
        conn.execute(insert(models).values(
            id="ghost-model", developer=alice.address, base_model="tiny", datanet="pub", version=1,
            version_root="0x" + "00" * 32, card={}, metrics={}, job_id=None, fee_policy=None, chain_tx=None,
            path=str(home.root / "models" / "trained" / "ghost-model"), created_at=int(time.time())))
    for path in ("/web/models/ghost-model", "/models/ghost-model"):
        shown = http.get(path)
        assert shown.status_code == 404 and "ghost-model" in shown.text, shown.text
        assert str(home.root) not in shown.text and "/models/trained" not in shown.text
