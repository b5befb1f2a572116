"""The ledger explorer's address page, open to anyone, reads a bounded number of transactions from the chain."""

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
