"""Private Datanets through the real HTTP API: only the owner and members read, export, train or contribute."""

import pytest
from fastapi.testclient import TestClient

from ledgerlm.api import create_app
from ledgerlm.client import NodeClient, attribute
from ledgerlm.config import Home
from ledgerlm.datanets import DatanetSpec
from ledgerlm.errors import AuthError, LedgerError
from ledgerlm.identity import READ_HEADER, sign_read_request
from ledgerlm.node import Node

from .conftest import QA_SCHEMA, write_jsonl
from .test_bad_input import node_domain

RECORDS = [{"question": f"secret {i}?", "answer": f"answer {i}"} for i in range(3)]


def node_address(http) -> str:
    return http.get("/node/info").json()["node_address"]


def signed_read(http, account, **kwargs) -> str:
    """A read request for the node `http` talks to."""
    return sign_read_request(account, node_domain(http), node=node_address(http), **kwargs)


@pytest.fixture
def secret(client, alice, tmp_path):
    """A private Datanet owned by alice, with one published version of her own records."""
    client.create_datanet(DatanetSpec(name="secret", schema=QA_SCHEMA, visibility="private"), alice)
    client.reader = alice
    client.contribute("secret", [write_jsonl(tmp_path / "s.jsonl", RECORDS)], alice)
    for c in client.contributions("secret"):
        client.review(c.id, alice, accept=True)
    client.publish("secret", alice)
    client.reader = None


def _served(http, consumer, model: str, prompt, completion: str) -> None:
    """A receipt of `model` answering `consumer` `completion` to `prompt`, as serving writes one."""
    import time

    from ledgerlm.store.schema import receipts

    node, now = http.app.state.node, int(time.time())
    with node.db.begin() as conn:
        conn.execute(receipts.insert().values(
            id=f"r-{now}-{model}", epoch=1, consumer=consumer.address, model_id=model, adapter_sha256=None,
            prompt_tokens=3, completion_tokens=3, price_per_1k="0", fee="0", fee_policy={}, payouts=[],
            datanet_roots=[], attribution=None, state="final", body={}, signature=None, created_at=now,
            finalized_at=now, request={"prompt": prompt, "completion": completion, "finish_reason": "stop"}))


def as_reader(http, account):
    return NodeClient(http, reader=account)


READ_ROUTES = [
    "/datanets/secret",
    "/datanets/secret/contributions?payload=true",
    "/contributions/1",
    "/datanets/secret/versions/1",
    "/datanets/secret/versions/1/manifest",
    "/datanets/secret/versions/1/export?format=jsonl",
    "/datanets/secret/members",
    "/datanets/secret/gate-policy",
]


def test_anonymous_readers_see_nothing(http, secret):
    assert [d["name"] for d in http.get("/datanets").json()] == []
    for route in READ_ROUTES:
        response = http.get(route)
        assert response.status_code == 401, (route, response.text)
        assert "private" in response.json()["error"]["message"]
        assert "secret 0" not in response.text


def test_a_signed_stranger_is_refused(http, secret, carol):
    header = {READ_HEADER: signed_read(http, carol)}
    assert http.get("/datanets", headers=header).json() == []
    for route in READ_ROUTES:
        response = http.get(route, headers=header)
        assert response.status_code == 403, (route, response.text)
        assert carol.address in response.json()["error"]["message"]


def test_owner_and_members_read_and_strangers_cannot_contribute(http, secret, alice, bob, tmp_path):
    owner = as_reader(http, alice)
    assert [d.name for d in owner.datanets()] == ["secret"]
    assert [c.payload["question"] for c in owner.contributions("secret", payload=True)] == [
        r["question"] for r in RECORDS]
    out = owner.export("secret", 1, "jsonl", tmp_path / "secret.jsonl")
    assert out["bytes"] > 0 and "secret 0" in (tmp_path / "secret.jsonl").read_text()
    assert owner.validation.policy("secret")["gates"]["exact_duplicate"]["action"] == "reject"

    member = as_reader(http, bob)
    upload = [write_jsonl(tmp_path / "b.jsonl", [{"question": "from bob", "answer": "hi"}])]
    with pytest.raises(LedgerError, match="neither its owner nor a member") as refused:
        member.contribute("secret", upload, bob)
    assert refused.value.status == 403
    assert owner.add_member("secret", bob.address, alice) == [bob.address]
    member.contribute("secret", upload, bob)
    assert len(member.contributions("secret")) == 4
    assert member.contribution(1).payload == RECORDS[0]
    assert owner.remove_member("secret", bob.address, alice) == []
    with pytest.raises(LedgerError, match="neither its owner nor a member"):
        member.contributions("secret")


def test_only_the_owner_changes_members(http, secret, alice, bob, carol):
    with pytest.raises(LedgerError, match="only the owner") as refused:
        as_reader(http, bob).add_member("secret", carol.address, bob)
    assert refused.value.status == 403
    assert as_reader(http, alice).members("secret") == []


def test_forged_expired_and_foreign_read_requests_are_refused(http, home, secret, alice, carol, tmp_path):
    domain, node = node_domain(http), node_address(http)
    forged = sign_read_request(carol, domain, node=node).replace(carol.address, alice.address)
    assert "does not match reader" in http.get("/datanets/secret", headers={READ_HEADER: forged}).text
    expired = sign_read_request(alice, domain, node=node, ttl=-10)
    assert "expired" in http.get("/datanets/secret", headers={READ_HEADER: expired}).text
    too_long = sign_read_request(alice, domain, node=node, ttl=3600)
    assert "at most 300 s" in http.get("/datanets/secret", headers={READ_HEADER: too_long}).text
    other_home = Home(tmp_path / "other")
    Node.init(other_home).close()
    with TestClient(create_app(lambda: Node.open(other_home))) as other:
        other_domain, other_node = node_domain(other), node_address(other)
    # another deployment's domain, this node's key: the signature recovers someone else
    response = http.get("/datanets/secret", headers={READ_HEADER: sign_read_request(alice, other_domain, node=node)})
    assert response.status_code == 401 and "does not match reader" in response.text
    # a grant signed for another node (its key), this deployment's domain: refused before its signature is read
    response = http.get("/datanets/secret", headers={READ_HEADER: sign_read_request(alice, domain, node=other_node)})
    assert response.status_code == 401 and response.json()["error"]["field"] == "x-ledgerlm-read"
    assert other_node in response.text and node in response.text
    old_shape = ":".join(sign_read_request(alice, domain, node=node).split(":")[i] for i in (0, 2, 3, 4))
    response = http.get("/datanets/secret", headers={READ_HEADER: old_shape})  # a grant that names no node
    assert response.status_code == 401 and "reader:node:datanet:expiry:signature" in response.text
    narrow = sign_read_request(alice, domain, node=node, datanet="qa")  # scoped to another Datanet
    assert http.get("/datanets/secret", headers={READ_HEADER: narrow}).status_code == 401
    good = {READ_HEADER: sign_read_request(alice, domain, node=node)}
    # A read request carries no nonce: the same header serves several reads until it expires.
    assert [http.get("/datanets/secret", headers=good).status_code for _ in range(2)] == [200, 200]


def test_training_on_a_private_datanet_needs_membership(client, secret, carol, tmp_path):
    pytest.importorskip("torch")
    from ledgerlm.factory import tiny_random_model

    client.factory.register_base("tiny", str(tiny_random_model(tmp_path / "tiny", ["secret text"])))
    with pytest.raises(AuthError, match="may not train on") as refused:
        client.factory.train(carol, {"model_id": "stolen", "datanet": "secret", "version": 1, "base": "tiny"})
    assert refused.value.status == 403


def test_public_datanets_stay_open(client, qa, bob, tmp_path):
    client.contribute("qa", [write_jsonl(tmp_path / "q.jsonl", RECORDS)], bob)
    assert len(client.contributions("qa")) == 3
    assert [d.name for d in client.datanets()] == ["qa"]


def test_a_model_of_a_private_datanet_is_private_until_published_and_quotes_records_only_to_members(client, http, secret, alice, carol, tmp_path):
    pytest.importorskip("torch")
    from ledgerlm.factory import tiny_random_model

    client.factory.register_base("tiny", str(tiny_random_model(tmp_path / "tiny", ["secret text"])))
    job = client.factory.train(alice, {"model_id": "vault", "datanet": "secret", "version": 1, "base": "tiny",
                                       "config": {"epochs": 1, "max_steps": 1, "batch_size": 2, "max_len": 64}})
    assert http.app.state.node.factory.wait(job["id"], timeout=300).state == "done"
    member = {READ_HEADER: signed_read(http, alice)}
    stranger = {READ_HEADER: signed_read(http, carol)}
    shown = http.get("/models/vault", headers=member).json()
    assert shown["metrics"]["trained_sample"]["samples"] and "secret 0" in str(shown)
    # unpublished, the model is as private as its Datanet
    for headers in ({}, stranger):
        assert http.get("/models", headers=headers).json() == []
        refused = http.get("/models/vault", headers=headers)
        assert refused.status_code in (401, 403) and "secret" not in refused.text
        assert http.get("/web/models/vault", headers=headers).status_code in (401, 403)
    anonymous = NodeClient(http.__class__(app=http.app, base_url=str(http.base_url)))  # no operator token
    with pytest.raises(LedgerError) as hidden:  # not even attributed for a stranger
        attribute(anonymous, "vault", "secret 0?", "answer 0", account=carol)
    assert hidden.value.status == 404 and "secret" not in hidden.value.message
    client.factory.publish(alice, "vault")
    # published, a stranger's attribution of an answer the model gave them says what the split paid, not which
    # records (an answer of their own choosing is refused: the next test)
    _served(http, carol, "vault", "secret 0?", "answer 0")
    paid = attribute(anonymous, "vault", "secret 0?", "answer 0", account=carol)
    assert "examples" not in paid and "contributions" not in paid and "evidence_bps" in paid
    assert "examples" in paid["withheld"] and "secret" not in str(paid).replace("secret 0?", "")
    assert "examples" in attribute(anonymous, "vault", "secret 0?", "answer 0", account=alice)
    for headers in ({}, stranger):
        for body in (http.get("/models/vault", headers=headers).json(), http.get("/models", headers=headers).json()[0],
                     http.get("/web/models/vault", headers=headers).text):
            assert "secret 0" not in str(body) and "answer 0" not in str(body)
        report = http.get("/models/vault", headers=headers).json()["metrics"]["trained_sample"]
        assert report["samples"] == [] and report["samples_withheld"] and "after" in report
        # its jobs are not listed, and asked for by id they do not name the Datanet
        assert http.get("/factory/jobs", headers=headers).json() == []
        for route in (f"/factory/jobs/{job['id']}", f"/factory/jobs/{job['id']}/events", "/contributions/1"):
            refused = http.get(route, headers=headers)
            assert refused.status_code in (401, 403) and "secret" not in refused.text, route
    assert [j["model_id"] for j in http.get("/factory/jobs", headers=member).json()] == ["vault"]
    assert http.get(f"/factory/jobs/{job['id']}", headers=member).status_code == 200


def test_a_stranger_asking_for_a_private_model_makes_the_node_hash_nothing(client, http, secret, alice, carol,
                                                                           tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from ledgerlm.factory import basemodels, lineage, tiny_random_model

    client.factory.register_base("tiny", str(tiny_random_model(tmp_path / "tiny", ["secret text"])))
    job = client.factory.train(alice, {"model_id": "vault", "datanet": "secret", "version": 1, "base": "tiny",
                                       "config": {"epochs": 1, "max_steps": 1, "batch_size": 2, "max_len": 64}})
    assert http.app.state.node.factory.wait(job["id"], timeout=300).state == "done"
    hashed = []  # every adapter or base-weight hash the node computes, the real one run
    for module, name in ((lineage, "adapter_sha256"), (basemodels, "files_sha256")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, _name=name, **k: hashed.append(_name) or _real(*a, **k))
    stranger = {READ_HEADER: signed_read(http, carol)}
    for headers in ({}, stranger):
        for route in ("/models/vault", "/web/models/vault"):
            refused = http.get(route, headers=headers)
            assert refused.status_code in (401, 403) and hashed == [], (route, headers)
    member = {READ_HEADER: signed_read(http, alice)}
    assert http.get("/models/vault", headers=member).json()["lineage_ok"] is True
    assert set(hashed) == {"adapter_sha256", "files_sha256"}  # the owner's request does verify the files


def test_a_members_read_is_never_kept_by_a_cache_in_front_of_the_node(http, secret, alice):
    header = {READ_HEADER: signed_read(http, alice)}
    for route in ("/datanets/secret/versions/1/export?format=jsonl", "/contributions/1?payload=true"):
        response = http.get(route, headers=header)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert "X-Ledgerlm-Read" in response.headers["vary"]


def test_a_strangers_review_or_withdraw_by_id_names_neither_the_datanet_nor_anyone(http, secret, alice, carol):
    stranger = NodeClient(http)
    for act in (lambda: stranger.review(1, carol, accept=False), lambda: stranger.withdraw(1, carol)):
        with pytest.raises(AuthError) as refused:
            act()
        assert "secret" not in refused.value.message and alice.address not in refused.value.message


def test_a_removed_member_may_not_publish_the_model_it_trained_on_the_private_data(client, secret, alice, bob,
                                                                                   tmp_path):
    pytest.importorskip("torch")
    from ledgerlm.factory import tiny_random_model

    client.factory.register_base("tiny", str(tiny_random_model(tmp_path / "tiny", ["secret text"])))
    client.add_member("secret", bob.address, alice)
    job = client.factory.train(bob, {"model_id": "learned", "datanet": "secret", "version": 1, "base": "tiny",
                                     "config": {"epochs": 1, "max_steps": 1, "batch_size": 2, "max_len": 32,
                                                "eval_split": 0.0, "rank": 2}})
    done = client.http.app.state.node.factory.wait(job["id"], timeout=300)
    assert done.state == "done", done.error
    adapter = client.factory.model("learned", verify=False, reader=bob)["card"]["adapter_sha256"]
    client.remove_member("secret", bob.address, alice)
    action = client._sign(bob, "PublishModel", {  # what bob signed while a member, sent now
        "modelId": "learned", "adapterHash": "0x" + adapter, "nodeBps": 1000, "developerBps": 2000,
        "contributorsBps": 6000, "validatorsBps": 1000, "pricePer1k": 0})
    refused = client.http.post("/models/learned/publish", json={"action": action})
    assert refused.status_code == 403 and "may not publish a model of" in refused.json()["error"]["message"]


def test_a_stranger_cannot_test_guessed_sentences_against_a_private_datanets_model(client, http, secret, alice,
                                                                                   carol, tmp_path):
    """A published model of a private Datanet is attributed for anyone, but only on the model's own answers: an
    answer of the caller's choosing, matched word for word against the records, would say whether a guess is
    in them."""
    pytest.importorskip("torch")
    from ledgerlm.factory import tiny_random_model

    client.factory.register_base("tiny", str(tiny_random_model(tmp_path / "tiny", [str(r) for r in RECORDS])))
    job = client.factory.train(alice, {"model_id": "kept", "datanet": "secret", "version": 1, "base": "tiny",
                                       "config": {"epochs": 1, "max_steps": 1, "batch_size": 2, "max_len": 32,
                                                  "eval_split": 0.0, "rank": 2}})
    assert http.app.state.node.factory.wait(job["id"], timeout=300).state == "done"
    client.reader = alice
    client.factory.publish(alice, "kept")
    client.reader = None
    stranger = NodeClient(TestClient(http.app, base_url=str(http.base_url)))  # no operator credential
    with pytest.raises(AuthError, match="private Datanet you may not read") as refused:
        attribute(stranger, "kept", "secret 0?", "answer 0", account=carol)
    assert refused.value.field == "answer" and refused.value.status == 403
    _served(http, carol, "kept", "secret 0?", "answer 1")  # what the model told carol on a call of hers
    assert attribute(stranger, "kept", "secret 0?", "answer 1", account=carol)["answer"] == "answer 1"
    with pytest.raises(AuthError, match="private Datanet you may not read"):  # another prompt, same answer
        attribute(stranger, "kept", "secret 1?", "answer 1", account=carol)
    assert attribute(client, "kept", "secret 0?", "answer 0", account=alice)["answer"] == "answer 0"  # a reader


def test_a_read_of_one_datanet_is_granted_for_that_datanet_alone(http, secret, client, alice):
    """Whoever receives a reader's grant (a node the reader was pointed at, for its two minutes) can use it only on
    the Datanet the reader was reading."""
    client.create_datanet(DatanetSpec(name="other", schema=QA_SCHEMA, visibility="private"), alice)
    sent = []
    http.event_hooks["request"].append(lambda request: sent.append(request.headers.get(READ_HEADER)))
    try:
        as_reader(http, alice).datanet("secret")
    finally:
        http.event_hooks["request"].pop()
    grant = sent[-1]
    assert grant.split(":")[1:3] == [node_address(http), "secret"]
    assert http.get("/datanets/secret", headers={READ_HEADER: grant}).status_code == 200
    assert http.get("/datanets/other", headers={READ_HEADER: grant}).status_code in (401, 403)
