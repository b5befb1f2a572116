"""What a receipt shows, and to whom: the records a private Datanet's model was attributed to only to the Datanet's
owner and members (the split and the node's signature stay checkable by anyone, in the receipt and in the epoch's
published file); a consumer's prompt and answer only for a read request they signed for every Datanet."""

from __future__ import annotations

from sqlalchemy import insert

from ledgerlm.attribution import (
    AttributionResult,
    AttributionSettings,
    ContributionShare,
    ContributorShare,
    ExampleAttribution,
)
from ledgerlm.datanets import DatanetSpec
from ledgerlm.economy.close import published_files
from ledgerlm.economy.verify import verify_epoch
from ledgerlm.identity import READ_HEADER, sign_read_request
from ledgerlm.serving.catalog import ServedModel
from ledgerlm.serving.receipts import Completed, ReceiptLog
from ledgerlm.store.schema import models
from tests.datanets.conftest import QA_SCHEMA
from tests.economy.helpers import SHARES, fund_consumer, key, write_receipt

CONTENT_HASH = "ab" * 32  # sha256 of the record's canonical JSON: enough for anyone to confirm a guessed record
OWNER, MEMBER, CONTRIBUTOR, STRANGER, CONSUMER, DEV = (key(n) for n in ("owner", "member", "contributor",
                                                                         "stranger", "consumer", "developer"))


def _secret(client) -> None:
    client.create_datanet(DatanetSpec(name="secret", schema=QA_SCHEMA, visibility="private"), OWNER)
    client.add_member("secret", MEMBER.address, OWNER)


def _result() -> AttributionResult:
    example = ExampleAttribution(row=3, record=0, contribution_id=7, contributor=CONTRIBUTOR.address,
                                 content_hash=CONTENT_HASH, gradient=0.9, gradient_evidence=0.8, span=0.7,
                                 longest_span=5, combined=0.6)
    return AttributionResult(
        examples=(example,), contributions=(ContributionShare(7, CONTRIBUTOR.address, CONTENT_HASH, 0.6, 6000),),
        contributors=(ContributorShare(CONTRIBUTOR.address, 0.6, 6000),), evidence_bps=6000, pool_bps=4000,
        span_coverage=0.5, gradient_bar=0.1, span_min_tokens=4, unattributed=False, answer_tokens=5,
        index_adapter_sha256="cd" * 32, settings=AttributionSettings())


def _attributed(node, model_datanet: str) -> str:
    """A paid call of a model trained on `model_datanet`, its receipt signed and attributed as serving does."""
    model = ServedModel(id=f"{model_datanet}-m", base_model="tiny", adapter=None, adapter_sha256="ef" * 32,
                        developer=DEV.address, price_per_1k=10**18, fee_shares=SHARES, datanet=model_datanet,
                        datanet_roots=({"datanet": model_datanet, "version": 1, "root": "0x" + "11" * 32},),
                        created_at=0)
    log = ReceiptLog(node.db, node.account, domain=node.domain)
    call = Completed(id=f"chatcmpl-{model_datanet}", consumer=CONSUMER.address, model=model, prompt_tokens=40,
                     completion_tokens=10, request={"messages": [{"role": "user", "content": "The vault's code?"}],
                                                    "completion": "X9-ALPHA.", "finish_reason": "stop"})
    receipt = log.write(call, attributing=True)
    return log.attach(receipt.id, _result()).id


def _read(node, account, datanet: str = "*") -> dict:
    return {READ_HEADER: sign_read_request(account, node.domain, node=node.account.address, datanet=datanet)}


def test_a_private_datanets_records_are_shown_to_its_owner_and_members_only(client, http):
    node = http.app.state.node
    _secret(client)
    rid = _attributed(node, "secret")

    shown = http.get(f"/receipts/{rid}").json()
    attribution = shown["receipt"]["attribution"]
    assert "examples" not in attribution and "contributions" not in attribution and "contributors" not in attribution
    assert CONTENT_HASH not in str(shown)
    assert attribution["contributor_bps"] == {CONTRIBUTOR.address: 6000} and attribution["evidence_bps"] == 6000
    assert {"examples", "contributions"} <= set(attribution["withheld"])
    assert shown["checks"]["signature_valid"] and shown["checks"]["split_recomputed"]
    # checked by the reader, without trusting the node: the split recomputes and the signature is the node's
    local = client.serving.receipt(rid)["checks"]
    assert local["signature_valid"] and local["body_matches"] and local["split_recomputed"]
    assert local["attribution_checked"] is False
    listed = http.get("/receipts", params={"account": CONTRIBUTOR.address}).json()
    assert [r["id"] for r in listed] == [rid] and CONTENT_HASH not in str(listed)
    assert CONTENT_HASH not in http.get(f"/receipts/{rid}", headers=_read(node, STRANGER)).text

    for reader in (OWNER, MEMBER):  # the owner and the members read the Datanet itself, so its receipts whole
        whole = http.get(f"/receipts/{rid}", headers=_read(node, reader)).json()["receipt"]["attribution"]
        assert whole["examples"][0]["content_hash"] == CONTENT_HASH and "withheld" not in whole
    assert CONTENT_HASH in http.get(f"/receipts/{rid}", headers=_read(node, MEMBER, "secret")).text
    assert CONTENT_HASH in str(http.get("/receipts", headers=_read(node, OWNER)).json())

    # the consumer reads their own prompt and answer, not the records of a Datanet they are no member of
    full = http.get(f"/receipts/{rid}/full", headers=_read(node, CONSUMER))
    assert full.status_code == 200, full.text
    assert full.json()["receipt"]["request"]["completion"] == "X9-ALPHA." and CONTENT_HASH not in full.text
    mine = client.serving.receipt(rid, CONSUMER)["checks"]
    assert mine["request_checked"] and mine["body_matches"] and mine["signature_valid"]


def test_a_public_datanets_receipt_shows_its_examples_to_anyone(client, http):
    client.create_datanet(DatanetSpec(name="open", schema=QA_SCHEMA), OWNER)
    rid = _attributed(http.app.state.node, "open")
    attribution = http.get(f"/receipts/{rid}").json()["receipt"]["attribution"]
    assert attribution["examples"][0]["content_hash"] == CONTENT_HASH and "withheld" not in attribution
    assert client.serving.receipt(rid)["checks"]["attribution_checked"] is True


def test_a_read_request_for_one_datanet_does_not_open_the_consumers_prompts(client, http):
    node = http.app.state.node
    client.create_datanet(DatanetSpec(name="open", schema=QA_SCHEMA), OWNER)
    rid = _attributed(node, "open")
    scoped = http.get(f"/receipts/{rid}/full", headers=_read(node, CONSUMER, "open"))
    assert scoped.status_code == 403 and scoped.json()["error"]["field"] == "x-ledgerlm-read"
    assert "X9-ALPHA" not in scoped.text
    assert http.get(f"/receipts/{rid}/full", headers=_read(node, CONSUMER)).status_code == 200
    assert client.serving.receipt(rid, CONSUMER)["receipt"]["request"]["completion"] == "X9-ALPHA."


def test_an_epochs_published_receipts_leave_a_private_datanets_records_out(client, http):
    node = http.app.state.node
    _secret(client)
    with node.db.begin() as conn:  # m1, the model write_receipt's receipts are for, trained on the private Datanet
        conn.execute(insert(models).values(
            id="m1", developer=DEV.address, base_model="tiny", datanet="secret", version=1,
            version_root="0x" + "11" * 32, card={}, metrics={}, path="/nonexistent", created_at=0))
    fund_consumer(node, CONSUMER, 10 * 10**18, 5 * 10**18)
    write_receipt(node, CONSUMER.address, 10**18, DEV.address, datanet="secret",
                  contributors={CONTRIBUTOR.address: 6000}, evidence_bps=6000,
                  attribution={**_result().to_dict(), "contributor_bps": {CONTRIBUTOR.address: 6000},
                               "evidence_bps": 6000})
    assert node.economy.close()["state"] == "published"

    files = published_files(node.db, 1, node.contracts)
    [published] = files["receipts"]["receipts"]
    assert CONTENT_HASH not in str(files) and "examples" not in published["attribution"]
    assert published["attribution"]["contributor_bps"] == {CONTRIBUTOR.address: 6000}
    assert http.get("/economy/epochs/1/receipts").json() == files["receipts"]
    funding = node.contracts.distributor.epoch(node.economy.chain_epoch(1))
    assert verify_epoch(files["payouts"], files["receipts"], funding) == []  # anyone still checks the epoch

    # the payout file: a private Datanet's pools by their amount only, its name out of the sources, to strangers
    shown = http.get("/economy/epochs/1/payouts").json()
    secret_pools = [p for p in shown["pools"] if p.get("datanet") == "secret" and p["kind"] in ("data_pool",
                                                                                                  "validators")]
    assert secret_pools and all(p["withheld"] and p["split"] == {} for p in secret_pools)
    assert all("secret" not in p["sources"]["datanets"] for p in shown["payouts"])
    assert {p["account"]: p["amount"] for p in shown["payouts"]} == \
        {p["account"]: p["amount"] for p in files["payouts"]["payouts"]}  # every leaf, to claim and to check
    assert verify_epoch(shown, files["receipts"], funding) == []
    tampered = {**shown, "payouts": [{**p, "amount": str(int(p["amount"]) + 1)} if i == 0 else p
                                     for i, p in enumerate(shown["payouts"])]}
    assert verify_epoch(tampered, files["receipts"], funding)  # the withheld pools' sum still binds the leaves
    assert http.get("/economy/epochs/1/payouts", headers=_read(node, OWNER)).json() == files["payouts"]
    for account in {a for p in files["payouts"]["pools"] if p.get("datanet") == "secret" for a in p["split"]}:
        earned = http.get(f"/economy/earnings/{account}").json()
        assert all("secret" not in e["sources"]["datanets"] for e in earned["epochs"])
