"""An asset's shares exist only on its owner's consent: the owner signs the allocation root the node previews, in
IssueShares for the node and in the factory's ShareIssue for the chain, and the node's own key can neither issue an
asset's shares nor take the one issue away from its owner."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import delete, insert, select, update

from ledgerlm.chain import ChainError
from ledgerlm.chain.shares import AssetKind, sign_share_issue
from ledgerlm.economy.payouts import payout_tree
from ledgerlm.economy.shares import asset_chain_id
from ledgerlm.errors import LedgerError
from ledgerlm.store.schema import gate_reports, share_assets, signed_actions

from .helpers import key
from .test_shares import SUPPLY, _publish_model, world  # noqa: F401 - `world`: Datanet qa, owned by alice

QA = asset_chain_id("datanet", "qa")


def _signed(client, account, preview: dict, *, root: str | None = None, supply: int = SUPPLY,
            chain_signer=None, chain_root: str | None = None, chain_supply: int | None = None,
            chain_deadline: int | None = None) -> dict:
    """The body of POST /shares: IssueShares by `account` naming `root` (default: the previewed one) and a ShareIssue
    by `chain_signer` (default: `account`) over the terms given, each defaulting to the IssueShares' own."""
    root = root or preview["allocation_root"]
    action = client._sign(account, "IssueShares", {"kind": preview["kind"], "asset": preview["asset"], "version": 0,
                                                   "supply": supply, "ownerBps": preview["owner_bps"],
                                                   "allocationRoot": root})
    deadline = action["message"]["deadline"] if chain_deadline is None else chain_deadline
    signature = sign_share_issue(chain_signer or account, preview["share_issue_domain"],
                                 AssetKind[preview["kind"].upper()], preview["asset_id"],
                                 supply if chain_supply is None else chain_supply, chain_root or root, deadline,
                                 name=preview["name"], symbol=preview["symbol"])
    return {"action": action, "share_issue_signature": signature}


def test_the_nodes_key_alone_cannot_create_an_assets_shares_nor_block_its_owner(client, world, alice):  # noqa: F811
    """What a stolen hot key would do: create the Datanet's share token with the whole supply its own. The factory
    refuses it without alice's signature, so her own issue later is the asset's one token."""
    node = world
    factory, hot = node.contracts.share_factory, node.account
    to_hot_key = payout_tree([(hot.address, SUPPLY)]).root
    deadline = int(time.time()) + 600
    for signature in (b"", factory.sign_share_issue(hot, AssetKind.DATANET, QA, SUPPLY, to_hot_key, deadline,
                                                                  name="ledgerlm datanet qa", symbol="D-QA")):
        with pytest.raises(ChainError) as refused:
            factory.issue(hot, AssetKind.DATANET, QA, "ledgerlm datanet qa", "D-QA", SUPPLY, to_hot_key, deadline,
                          signature)
        assert refused.value.error_name == "InvalidShareIssueSignature"
        assert refused.value.error_args["owner"] == alice.address
    assert factory.share_of(AssetKind.DATANET, QA) is None

    preview = client.shares.preview("datanet", "qa", supply=SUPPLY)
    issued = client.shares.issue(alice, "datanet", "qa", supply=SUPPLY)
    assert issued["allocation_root"] == preview["allocation_root"] != to_hot_key
    assert factory.share_of(AssetKind.DATANET, QA) == issued["token"]
    assert node.contracts.share_token(issued["token"]).allocation_root() == preview["allocation_root"]
    assert hot.address not in {leaf["account"] for leaf in issued["allocation"]}


def test_the_node_takes_only_the_root_it_computes_with_the_owners_share_issue_over_it(client, world, alice,  # noqa: F811
                                                                                     bob):
    preview = client.shares.preview("datanet", "qa", supply=SUPPLY)
    assert preview["owner"] == alice.address and int(preview["supply"]) == SUPPLY
    assert preview["share_issue_domain"] == world.contracts.share_factory.eip712_domain
    all_to_alice = payout_tree([(alice.address, SUPPLY)]).root

    def refused(body: dict, field: str, status: int) -> None:
        response = client.http.post("/shares", json=body)
        assert response.status_code == status, response.text
        assert response.json()["error"]["field"] == field, response.text

    refused(_signed(client, alice, preview, root=all_to_alice), "allocationRoot", 409)  # not what the data gives
    refused(_signed(client, alice, preview, chain_signer=bob), "share_issue_signature", 401)
    refused(_signed(client, alice, preview, chain_root=all_to_alice), "share_issue_signature", 401)
    refused(_signed(client, alice, preview, chain_supply=2 * SUPPLY), "share_issue_signature", 401)
    refused(_signed(client, alice, preview, chain_deadline=int(time.time()) + 7200), "share_issue_signature", 401)
    refused({**_signed(client, alice, preview), "share_issue_signature": "0x1234"}, "share_issue_signature", 401)
    refused(_signed(client, bob, preview), "owner", 403)  # bob signs both, over alice's Datanet
    with world.db.connect() as conn:
        recorded = conn.execute(select(signed_actions.c.id).where(signed_actions.c.action == "IssueShares")).all()
    assert world.shares.all() == [] and recorded == []

    response = client.http.post("/shares", json=_signed(client, alice, preview))
    assert response.status_code == 201, response.text
    assert response.json()["allocation_root"] == preview["allocation_root"]


def test_a_preview_changes_with_the_data_so_a_root_signed_before_is_refused(client, world, alice, bob,  # noqa: F811
                                                                            tmp_path):
    from ..datanets.conftest import write_jsonl

    before = client.shares.preview("datanet", "qa", supply=SUPPLY)
    body = _signed(client, alice, before)
    client.contribute("qa", [write_jsonl(tmp_path / "more.jsonl", [{"question": "q9", "answer": "a9"}])], bob)
    pending = client.contributions("qa", state="pending")
    client.review_many("qa", [c.id for c in pending], alice, accept=True)
    with world.db.begin() as conn:  # valued as the fixture values the others
        conn.execute(delete(gate_reports).where(gate_reports.c.contribution_id == pending[0].id))
        conn.execute(insert(gate_reports).values(contribution_id=pending[0].id, decision="pass", findings=[],
                                                 value={"value": 0.4}, created_at=0))
    client.publish("qa", alice)  # version 2: bob's new record earns him more of the supply
    after = client.shares.preview("datanet", "qa", supply=SUPPLY)
    assert after["version"] == 2 and after["allocation_root"] != before["allocation_root"]
    response = client.http.post("/shares", json=body)
    assert response.status_code == 409 and "preview the allocation again" in response.json()["error"]["message"]
    assert client.shares.issue(alice, "datanet", "qa", supply=SUPPLY)["allocation_root"] == after["allocation_root"]


def test_a_node_stopped_before_the_chain_finishes_on_the_stored_consent_or_asks_for_a_fresh_one(
        client, world, alice, monkeypatch):  # noqa: F811
    node, dev = world, key("dev")
    _publish_model(node, dev.address)
    factory = node.contracts.share_factory

    def outage(*args, **kwargs):
        raise ChainError("the chain went away", status=503)

    monkeypatch.setattr(factory, "issue", outage)
    for account, kind, asset in ((dev, "model", "m1"), (alice, "datanet", "qa")):
        with pytest.raises(LedgerError, match="went away"):
            client.shares.issue(account, kind, asset, supply=SUPPLY)
    monkeypatch.undo()
    with node.db.begin() as conn:  # alice's consent expired while the node was down
        conn.execute(update(share_assets).where(share_assets.c.asset == "qa").values(issue_deadline=1))

    with pytest.raises(LedgerError, match="waits for its owner's signature"):
        node.shares.reconcile()
    assert factory.share_of(AssetKind.MODEL, asset_chain_id("model", "m1")) is not None  # the developer's went on
    assert factory.share_of(AssetKind.DATANET, QA) is None
    issued = client.shares.issue(alice, "datanet", "qa", supply=SUPPLY)  # the same terms, signed again
    assert factory.share_of(AssetKind.DATANET, QA) == issued["token"]
    assert sorted(a.ref for a in node.shares.all() if a.token) == ["datanet:qa", "model:m1"]


def test_the_owner_signs_the_tokens_name_and_refuses_one_named_after_another(client, world, alice,  # noqa: F811
                                                                              monkeypatch):
    """The owner's ShareIssue did not cover the token's name and symbol: the node relaying it could name the asset's
    one token "Tether USD" (USDT), or after a private Datanet's real name, for good. Now the owner signs the name
    the preview shows, and the client signs none that is not the asset's own."""
    shown = client.shares.preview("datanet", "qa", supply=SUPPLY)
    assert (shown["name"], shown["symbol"]) == ("ledgerlm datanet qa", "D-QA")
    for name, symbol in (("Tether USD", "USDT"), ("ledgerlm datanet qa", "D-USDT"), ("ledgerlm datanet vault", "D-QA")):
        forged = {**shown, "name": name, "symbol": symbol}
        monkeypatch.setattr(type(client.shares), "preview", lambda self, *a, forged=forged, **k: forged)
        with pytest.raises(LedgerError, match="nothing was signed") as refused:
            client.shares.issue(alice, "datanet", "qa", supply=SUPPLY)
        assert refused.value.field == "name"
        monkeypatch.undo()
    forged = {**shown, "name": "Tether USD", "symbol": "USDT"}

    body = _signed(client, alice, forged)  # alice's consent to a token of another name: the node refuses it
    response = client.http.post("/shares", json=body)
    assert response.status_code == 401 and response.json()["error"]["field"] == "share_issue_signature"
    issued = client.shares.issue(alice, "datanet", "qa", supply=SUPPLY)
    token = world.contracts.share_token(issued["token"])
    assert token.contract.functions.name().call() == "ledgerlm datanet qa"


def test_a_factory_deployed_before_names_were_signed_is_named_before_anything_is_signed(client, world,  # noqa: F811
                                                                                        monkeypatch):
    """Such a factory refuses every ShareIssue signed today: the owner is told to redeploy instead of signing twice
    for an issue that reverts."""
    from eth_utils import keccak

    factory = world.contracts.share_factory
    old = keccak(text="ShareIssue(uint8 kind,bytes32 assetId,uint256 supply,bytes32 allocationRoot,uint256 deadline)")
    real = factory._call
    monkeypatch.setattr(factory, "_call", lambda name, *a: old if name == "SHARE_ISSUE_TYPEHASH" else real(name, *a))
    with pytest.raises(LedgerError, match="redeploy the contracts") as refused:
        client.shares.preview("datanet", "qa", supply=SUPPLY)
    assert refused.value.status == 409 and refused.value.field == "share_factory"


def test_a_token_the_chain_issued_before_the_node_stopped_is_adopted_with_its_transaction(
        client, world, alice, monkeypatch):  # noqa: F811
    node = world
    factory = node.contracts.share_factory
    issue = factory.issue
    sent = []

    def issued_then_stopped(*args, **kwargs):
        sent.append(issue(*args, **kwargs).tx_hash)
        raise ChainError("the node stopped here", status=503)

    monkeypatch.setattr(factory, "issue", issued_then_stopped)
    with pytest.raises(LedgerError, match="stopped here"):
        client.shares.issue(alice, "datanet", "qa", supply=SUPPLY)
    monkeypatch.undo()
    assert node.shares.reconcile() == 1
    adopted = node.shares.asset("datanet:qa")
    assert adopted.token == factory.share_of(AssetKind.DATANET, QA) and adopted.tx == sent[0]


def test_an_issue_another_request_landed_first_is_adopted_not_answered_with_the_revert(
        client, world, alice, monkeypatch):  # noqa: F811
    """Two issues of one asset at once (on one node or two): the second found no token yet, sent its own, and its
    owner got the factory's AlreadyIssued revert as a 400 though the shares existed."""
    node = world
    factory = node.contracts.share_factory
    issue = factory.issue
    landed = []

    def another_landed_first(*args, **kwargs):
        landed.append(issue(*args, **kwargs).tx_hash)  # the other request's, mined first
        return issue(*args, **kwargs)  # this one's: AlreadyIssued

    monkeypatch.setattr(factory, "issue", another_landed_first)
    issued = client.shares.issue(alice, "datanet", "qa", supply=SUPPLY)
    assert issued["token"] == factory.share_of(AssetKind.DATANET, QA)
    assert node.shares.asset("datanet:qa").tx == landed[0]
