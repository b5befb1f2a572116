"""A version whose anchoring failed (the chain was away) is anchored by publishing again, and the next version is
anchored after it, without waiting for the node to restart."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from ledgerlm.chain import ChainError
from ledgerlm.datanets import DatanetSpec
from ledgerlm.errors import LedgerError

from .conftest import QA_SCHEMA, write_jsonl


def _accept_all(client, alice):
    for c in client.contributions("qa", state="pending"):
        client.review(c.id, alice, accept=True)


def test_publishing_again_anchors_a_version_the_chain_missed_and_the_next_follows(client, alice, bob, tmp_path,
                                                                                 monkeypatch):
    node = client.http.app.state.node
    client.create_datanet(DatanetSpec(name="qa", schema=QA_SCHEMA), alice)
    client.contribute("qa", [write_jsonl(tmp_path / "a.jsonl", [{"question": "q?", "answer": "a"}])], bob)
    _accept_all(client, alice)
    registry = node.contracts.registry

    def outage(*_args, **_kwargs):
        raise ChainError("the chain's RPC endpoint is down", status=503)

    monkeypatch.setattr(registry, "publish_version", outage)
    with pytest.raises(LedgerError, match="down"):
        client.publish("qa", alice)
    monkeypatch.undo()  # the chain is back

    again = client.publish("qa", alice)
    assert again.number == 1 and again.chain_tx
    assert registry.latest_version(keccak(text="qa")) == 1
    with pytest.raises(LedgerError, match="nothing changed since version 1"):  # anchored now: nothing to do
        client.publish("qa", alice)

    client.contribute("qa", [write_jsonl(tmp_path / "b.jsonl", [{"question": "r?", "answer": "b"}])], bob)
    _accept_all(client, alice)
    second = client.publish("qa", alice)
    assert second.number == 2 and second.chain_tx and registry.latest_version(keccak(text="qa")) == 2


def test_a_new_version_anchors_an_earlier_one_the_chain_missed_first(client, alice, bob, tmp_path, monkeypatch):
    node = client.http.app.state.node
    client.create_datanet(DatanetSpec(name="qa", schema=QA_SCHEMA), alice)
    client.contribute("qa", [write_jsonl(tmp_path / "a.jsonl", [{"question": "q?", "answer": "a"}])], bob)
    _accept_all(client, alice)
    registry = node.contracts.registry
    monkeypatch.setattr(registry, "publish_version", lambda *a, **k: (_ for _ in ()).throw(
        ChainError("the chain's RPC endpoint is down", status=503)))
    with pytest.raises(LedgerError, match="down"):
        client.publish("qa", alice)
    monkeypatch.undo()
    client.contribute("qa", [write_jsonl(tmp_path / "b.jsonl", [{"question": "r?", "answer": "b"}])], bob)
    _accept_all(client, alice)
    second = client.publish("qa", alice)
    assert second.number == 2 and second.chain_tx
    assert [bool(v.chain_tx) for v in client.datanet("qa").versions] == [True, True]
