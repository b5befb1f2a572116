"""Fine-tuning through the node: a signed job trains a tiny model on a Datanet version, the
model's lineage verifies, and publishing registers it on chain with its fee policy."""

import json
from pathlib import Path

import pytest
from eth_utils import keccak

from ledgerlm.attribution.collect import FEATURE_EPOCHS
from ledgerlm.errors import AuthError, LedgerError

from ..datanets.conftest import publish_qa

pytest.importorskip("torch")

FACTS = [{"question": f"What colour is the {thing}?", "answer": f"The {thing} is {colour}."}
         for thing, colour in [("reef", "copper"), ("gull", "grey"), ("tide", "green"), ("moon", "pale"),
                               ("kelp", "brown"), ("crab", "amber"), ("storm", "black"), ("sand", "gold")]]


@pytest.fixture
def trained(client, alice, bob, carol, tmp_path):
    from ledgerlm.factory import tiny_random_model

    texts = [f"{r['question']} {r['answer']}" for r in FACTS]
    tiny = tiny_random_model(tmp_path / "tiny", texts)
    client.factory.register_base("tiny", str(tiny))
    # Two contributors, so attribution has someone to get wrong: bob the first half, carol the rest.
    version = publish_qa(client, tmp_path, alice, [(bob, FACTS[:4]), (carol, FACTS[4:])])
    job = client.factory.train(carol, {
        "model_id": "colours-tiny", "datanet": "colours", "version": 1, "base": "tiny",
        "config": {"epochs": 8, "lr": 5e-3, "batch_size": 2, "max_len": 64, "eval_split": 0.25, "rank": 4,
                   "scheduler": "cosine", "warmup": 0.1, "max_grad_norm": 5.0, "weight_decay": 0.01},
    })
    node = client.http.app.state.node
    done = node.factory.wait(job["id"], timeout=300)
    assert done.state == "done", done.error
    return version, client.factory.model("colours-tiny")


def test_train_verify_publish_tamper(trained, client, carol, bob):
    """One training run (they take a while on two cores) checked end to end."""
    from pathlib import Path

    version, model = trained
    assert model["lineage_ok"] and model["version_root"] == version.root
    # where the adapter lies on the server is the operator's to know: any other reader gets the model without it
    assert Path(model["path"]).is_dir()
    for path in ("/models", "/models/colours-tiny"):
        request = client.http.build_request("GET", path)
        request.headers.pop("authorization")
        answer = client.http.send(request).json()
        shown = answer[0] if isinstance(answer, list) else answer
        assert shown["id"] == "colours-tiny" and "path" not in shown and model["path"] not in json.dumps(answer)
    assert model["card"]["datanet_roots"] == [version.root]
    assert model["metrics"]["train"]["steps"] == 24  # 6 training records, 2 per step, 8 epochs
    config = model["card"]["config"]  # the schedule settings came through the API into the lineage
    assert (config["scheduler"], config["warmup"], config["max_grad_norm"], config["weight_decay"]) == (
        "cosine", 0.1, 5.0, 0.01)
    lrs = [r["lr"] for r in json.loads((Path(model["path"]) / "training.json").read_text())["history"]]
    assert lrs[0] < lrs[1] == max(lrs) == 5e-3  # warm-up over 10% of 24 steps, then cosine decay
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:], strict=False)) and lrs[-1] < 5e-4
    ev = model["metrics"]["eval"]
    assert ev["after"]["loss"] < ev["before"]["loss"]  # it learned something held out too
    job = client.factory.jobs()[0]
    assert job["state"] == "done" and job["progress"]["step"] == job["progress"]["total_steps"]

    with pytest.raises(AuthError, match="only its developer") as refused:
        client.factory.publish(bob, "colours-tiny")
    assert "0x" not in refused.value.message  # a private Datanet's model would name a hidden member
    with pytest.raises(LedgerError, match="sum to 10000"):
        client.factory.publish(carol, "colours-tiny", {"node_bps": 1, "developer_bps": 1,
                                                        "contributors_bps": 1, "validators_bps": 1})
    published = client.factory.publish(carol, "colours-tiny")
    assert published["chain_tx"]
    registry = client.http.app.state.node.contracts.registry
    record = registry.get_model(keccak(text="colours-tiny"))
    assert record.developer == carol.address
    assert record.adapter_hash == "0x" + model["card"]["adapter_sha256"]
    policy = registry.fee_policy(keccak(text="colours-tiny"))
    assert (policy.node_bps, policy.developer_bps, policy.contributors_bps, policy.validators_bps) == (500, 4000, 4500, 1000)

    weights = Path(model["path"]) / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    shown = client.factory.model("colours-tiny")
    assert not shown["lineage_ok"] and shown["lineage_problems"]


def _publish_stopped_at(step: str, client, developer, monkeypatch, **publish):
    """Publish colours-tiny with the node stopping at the registry's `step`; returns the registry."""
    registry = client.http.app.state.node.contracts.registry

    def stopped(*_args, **_kwargs):
        raise LedgerError("the node stopped here", status=500)

    monkeypatch.setattr(registry, step, stopped)
    with pytest.raises(LedgerError, match="stopped here"):
        client.factory.publish(developer, "colours-tiny", **publish)
    monkeypatch.undo()
    return registry


def test_a_publish_the_node_stopped_half_way_is_finished_by_publishing_again(trained, client, carol, monkeypatch):
    """The model was registered on chain, then the node stopped before the fee policy, the price and its own
    record: publishing again adopts that registration (it is this model's: same developer and adapter) and
    finishes the rest, instead of reverting with ModelAlreadyRegistered for good."""
    registry = _publish_stopped_at("set_fee_policy", client, carol, monkeypatch)
    assert registry.model_exists(keccak(text="colours-tiny")) and not client.factory.model("colours-tiny")["chain_tx"]
    published = client.factory.publish(carol, "colours-tiny", price_per_1k=7)
    assert published["chain_tx"] and registry.price_per_1k(keccak(text="colours-tiny")) == 7
    policy = registry.fee_policy(keccak(text="colours-tiny"))
    assert (policy.node_bps, policy.developer_bps, policy.contributors_bps, policy.validators_bps) == (500, 4000, 4500, 1000)


def test_publishing_again_with_another_split_than_the_chain_kept_is_named(trained, client, carol, monkeypatch):
    """The split was set on chain, then the node stopped before the price and its own record; the chain sets a
    model's split once, so a retry with another split reverted with a raw contract error."""
    _publish_stopped_at("set_price", client, carol, monkeypatch, price_per_1k=7)
    other = {"node_bps": 1000, "developer_bps": 3500, "contributors_bps": 4500, "validators_bps": 1000}
    with pytest.raises(LedgerError) as refused:
        client.factory.publish(carol, "colours-tiny", other, price_per_1k=7)
    assert (refused.value.status, refused.value.field) == (409, "fee_policy")
    assert "registered on chain with the fee split 500,4000,4500,1000" in refused.value.message
    assert client.factory.publish(carol, "colours-tiny", price_per_1k=7)["chain_tx"]


def test_a_base_model_name_keeps_its_weights_and_a_model_on_other_weights_does_not_verify(trained, client,
                                                                                         tmp_path):
    """Registering other weights under the name a model was trained on replaced them silently, and the model still
    showed "lineage verified" (and was served, and charged for, on the new base)."""
    import json as json_module

    from ledgerlm.factory import tiny_random_model
    from ledgerlm.factory.basemodels import CATALOGUE_FILE, describe_model_dir

    node = client.http.app.state.node
    other = tiny_random_model(tmp_path / "other", ["Some other text entirely, for other weights."])
    with pytest.raises(LedgerError) as refused:
        client.factory.register_base("tiny", str(other))
    assert (refused.value.status, refused.value.field) == (409, "name")
    assert client.factory.model("colours-tiny")["lineage_ok"]
    client.factory.register_base("tiny", str(tmp_path / "tiny"))  # the same weights again: allowed

    # a catalogue written before the refusal: the name now holds other weights
    catalogue = node.home.models / CATALOGUE_FILE
    entries = json_module.loads(catalogue.read_text())
    entries["tiny"] = {**entries["tiny"], **describe_model_dir(other, "tiny", "local").to_dict()}
    catalogue.write_text(json_module.dumps(entries))
    shown = client.factory.model("colours-tiny")
    assert not shown["lineage_ok"] and any("other weights" in p for p in shown["lineage_problems"])


def test_bad_requests(client, alice, carol, tmp_path):
    with pytest.raises(LedgerError, match="no base model named 'tiny'"):
        client.factory.train(carol, {"model_id": "m-1", "datanet": "missing", "version": 1, "base": "tiny",
                                     "config": {}})
    with pytest.raises(LedgerError, match="rank"):
        client.factory.train(carol, {"model_id": "m-2", "datanet": "missing", "version": 1, "config": {"rank": 0}})
    with pytest.raises(LedgerError, match="unknown training setting"):
        client.factory.train(carol, {"model_id": "m-3", "datanet": "x", "version": 1, "config": {"rnak": 4}})


def test_a_training_signature_covers_the_base_model(client, carol):
    """A signed request (one refused for now, say) cannot be queued again on another base under its signer."""
    from ledgerlm.factory.jobs import TrainRequest

    request = TrainRequest(model_id="m-4", datanet="colours", version=1, base="tiny", config={"rank": 4})
    action = client._sign(carol, "TrainModel", {"modelId": "m-4", "datanet": "colours", "version": 1,
                                                "configHash": request.config_hash()})
    other = request.model_copy(update={"base": "smollm2-135m"})
    answered = client.http.post("/factory/jobs", json={"request": other.model_dump(), "action": action})
    assert answered.status_code == 401 and answered.json()["error"]["field"] == "configHash"


def test_attribution_through_the_api(trained, client, bob, carol, tmp_path):
    """Training also indexed the examples: an answer copied from the Datanet pays its contributor."""
    _, model = trained
    indexed = model["metrics"]["attribution"]
    assert indexed["indexed_examples"] >= 1
    # every row's gradient feature came from the default source: a pass over the final adapter
    # (from_training 0), or the last training epochs' own passes
    assert indexed["from_training"] == (indexed["indexed_examples"] if FEATURE_EPOCHS else 0)
    fact = FACTS[0]
    result = client.attribute("colours-tiny", fact["question"], fact["answer"])
    assert result["generated"] is False
    assert not result["unattributed"]  # the answer is copied verbatim from bob's record
    assert result["evidence_bps"] + result["pool_bps"] == 10_000
    assert sum(c["bps"] for c in result["contributors"]) == result["evidence_bps"] > 5_000
    shares = {c["contributor"]: c["bps"] for c in result["contributors"]}
    assert max(shares, key=shares.get) == bob.address  # bob wrote it; carol's records only rhyme
    assert shares[bob.address] > 2 * shares.get(carol.address, 0), shares
    again = client.attribute("colours-tiny", fact["question"], fact["answer"])
    assert again["contributors"] == result["contributors"]  # deterministic

    from ledgerlm.attribution.verify import read_receipt, verify_receipt

    receipt_path = tmp_path / "receipt.json"
    receipt_path.write_text(json.dumps(result))  # what `ledgerlm attribute --json` prints
    check = verify_receipt(read_receipt(receipt_path), client.attribute)
    assert check.verified and check.differences == []
    forged = {**result, "contributors": [{**result["contributors"][0],
                                          "bps": result["contributors"][0]["bps"] - 1}]}
    receipt_path.write_text(json.dumps(forged))
    check = verify_receipt(read_receipt(receipt_path), client.attribute)
    assert not check.verified and "contributors" in check.differences[0]
    generated = client.attribute("colours-tiny", fact["question"], max_new_tokens=8)
    assert generated["generated"] is True


def test_attribution_needs_a_signature_or_the_operator(trained, client, bob):
    """Attribution is compute on the node: anonymous callers are refused, a signed request works once."""
    from ledgerlm.client import NodeClient

    fact = FACTS[0]
    anonymous = NodeClient(client.http.__class__(app=client.http.app, base_url=str(client.http.base_url)))
    body = {"model": "colours-tiny", "prompt": fact["question"], "answer": fact["answer"], "max_new_tokens": 64}
    refused = anonymous.http.post("/attribution", json=body)
    assert refused.status_code == 401 and "RequestAttribution" in refused.json()["error"]["message"]
    from ledgerlm.api.attribution import AttributeRequest

    action = anonymous._sign(bob, "RequestAttribution",
                             {"model": "colours-tiny", "requestHash": AttributeRequest(**body).request_hash()})
    signed = anonymous.http.post("/attribution", json={**body, "action": action})
    assert signed.status_code == 200, signed.text
    assert [c["contributor"] for c in signed.json()["contributors"]] == [bob.address]
    node = client.http.app.state.node
    loads, attributor = [], node.attributor
    node.attributor = lambda model: loads.append(model) or attributor(model)
    try:  # a signature the node will not accept loads no model for it
        replayed = anonymous.http.post("/attribution", json={**body, "action": action})
        assert replayed.status_code == 401 and "already used" in replayed.json()["error"]["message"]
        other = anonymous.http.post("/attribution", json={**body, "answer": "The reef is blue.", "action": action})
        assert other.status_code == 401 and "requestHash" in other.json()["error"]["message"]
        assert loads == []
    finally:
        node.attributor = attributor
    blank = {**body, "answer": "  "}
    action = anonymous._sign(bob, "RequestAttribution",
                             {"model": "colours-tiny", "requestHash": AttributeRequest(**blank).request_hash()})
    refused = anonymous.http.post("/attribution", json={**blank, "action": action})
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "answer"
    with node.db.connect() as conn:  # refused before its nonce was spent
        from sqlalchemy import select

        from ledgerlm.store.schema import signed_actions
        assert conn.execute(select(signed_actions.c.id).where(
            signed_actions.c.nonce == action["message"]["nonce"])).first() is None
    # a model whose index is gone is named, not its folder on the node (the receipts that failed so are public)
    from ledgerlm.attribution.index import INDEX_DIR

    path = Path(node.factory.model_for("colours-tiny", None).path)
    (path / INDEX_DIR).rename(path / "index-moved")
    node.__dict__.pop("_attributors", None)
    action = anonymous._sign(bob, "RequestAttribution",
                             {"model": "colours-tiny", "requestHash": AttributeRequest(**body).request_hash()})
    missing = anonymous.http.post("/attribution", json={**body, "action": action})
    assert missing.status_code == 404 and "has no attribution index" in missing.text and str(path) not in missing.text


def test_attribution_refuses_text_past_the_models_context_before_any_compute(trained, client, bob):
    """Any key may sign a RequestAttribution, so its work must be bounded: a prompt or answer past the model's
    context (1,024 tokens here) once ran a gradient pass over all of it (13,000 tokens: 24 s, quadratic), holding
    the lock receipts are attributed under. It is refused naming the field, and the nonce stays unused."""
    from ledgerlm.api.attribution import AttributeRequest
    from ledgerlm.client import NodeClient

    anonymous = NodeClient(client.http.__class__(app=client.http.app, base_url=str(client.http.base_url)))
    short = "What colour is the reef?"
    cases = [("prompt", {"prompt": short + " " + short * 200, "answer": "The reef is copper."}),
             ("prompt", {"prompt": "x" * 2_000_000, "answer": "The reef is copper."}),  # refused untokenized
             ("answer", {"prompt": short, "answer": "The reef is copper. " * 300}),
             ("max_new_tokens", {"prompt": short + " " + short * 100, "answer": None, "max_new_tokens": 1024}),
             ("prompt", {"prompt": [{"role": "user", "content": {"text": short}}], "answer": "copper"}),
             ("prompt", {"prompt": [{"content": short}], "answer": "copper"}),
             ("prompt", {"prompt": [{"role": "assistant", "content": short}], "answer": "copper"})]
    for field, fields in cases:
        body = {"model": "colours-tiny", "max_new_tokens": 64, **fields}
        action = client._sign(bob, "RequestAttribution",
                              {"model": "colours-tiny", "requestHash": AttributeRequest(**body).request_hash()})
        refused = anonymous.http.post("/attribution", json={**body, "action": action})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["field"] == field, refused.text
        operator = client.http.post("/attribution", json=body)
        assert operator.status_code == 400 and operator.json()["error"]["field"] == field, operator.text
    body = {"model": "colours-tiny", "prompt": short, "answer": "The reef is copper.", "max_new_tokens": 64}
    action = client._sign(bob, "RequestAttribution",
                          {"model": "colours-tiny", "requestHash": AttributeRequest(**body).request_hash()})
    assert anonymous.http.post("/attribution", json={**body, "action": action}).status_code == 200


def test_settings_a_job_could_never_run_with_are_refused_before_it_is_queued(client, alice, carol, tmp_path,
                                                                            monkeypatch):
    """Wrong types, settings past their bounds, modules the base model lacks, more processes than the host has:
    each a 4xx naming the setting, through the signed API and the unsigned signing form, with nothing stored."""
    from ledgerlm.factory import tiny_random_model
    from ledgerlm.factory.jobs import ModelFactory

    monkeypatch.setattr(ModelFactory, "_start_worker", lambda self: None)  # refusals only: nothing trains
    tiny = tiny_random_model(tmp_path / "tiny", [f"{r['question']} {r['answer']}" for r in FACTS])
    client.factory.register_base("tiny", str(tiny))
    publish_qa(client, tmp_path, alice, [(alice, FACTS)])
    refused = [{"alpha": "x"}, {"dropout": None}, {"lr": "0.1"}, {"target_modules": 5}, {"eval_split": [1]},
               {"max_steps": "3"}, {"weight_decay": "a"}, {"warmup": {}}, {"epochs": 10**9}, {"rank": 10**6},
               {"max_len": 10**9}, {"batch_size": 10**6}, {"processes": 64}, {"target_modules": ["nope"]}]
    for i, config in enumerate(refused):
        name = next(iter(config))
        with pytest.raises(LedgerError) as err:
            client.factory.train(carol, {"model_id": f"bad-{i}", "datanet": "colours", "version": 1, "base": "tiny",
                                         "config": config})
        assert 400 <= err.value.status < 500 and err.value.field == name, (config, err.value)
        if config == {"target_modules": ["nope"]}:
            continue  # only submitting checks the settings against the base model's modules
        form = client.http.post("/web/typed-data", json={"action": "TrainModel", "signer": carol.address, "train": {
            "model_id": f"bad-{i}", "datanet": "colours", "version": 1, "base": "tiny", "config": config}})
        assert 400 <= form.status_code < 500 and form.json()["error"]["field"] == name, (config, form.text)
    assert client.factory.jobs() == []


def _queue_only(client, alice, tmp_path, monkeypatch):
    """alice's `colours` Datanet on a tiny base, with no worker taking jobs (they stay queued); returns
    train(account, model_id), which submits a one-epoch job."""
    from ledgerlm.factory import tiny_random_model
    from ledgerlm.factory.jobs import ModelFactory

    monkeypatch.setattr(ModelFactory, "_start_worker", lambda self: None)
    tiny = tiny_random_model(tmp_path / "tiny", [f"{r['question']} {r['answer']}" for r in FACTS])
    client.factory.register_base("tiny", str(tiny))
    publish_qa(client, tmp_path, alice, [(alice, FACTS)])

    def train(account, model_id):
        return client.factory.train(account, {"model_id": model_id, "datanet": "colours", "version": 1,
                                              "base": "tiny", "config": {"epochs": 1, "max_len": 64}})

    return train


def test_one_developer_may_not_queue_ahead_of_everyone(client, alice, carol, tmp_path, monkeypatch):
    from ledgerlm.factory.jobs import JOBS_PER_DEVELOPER

    train = _queue_only(client, alice, tmp_path, monkeypatch)
    queued = [train(carol, f"carol-{i}") for i in range(JOBS_PER_DEVELOPER)]
    with pytest.raises(LedgerError, match="queued or running") as err:
        train(carol, "carol-spam")
    assert err.value.status == 429 and err.value.field == "developer"
    train(alice, "alice-one")  # another developer still gets in line
    client.factory.control(carol, queued[0]["id"], "cancel")
    train(carol, "carol-again")  # a job that ended (here: cancelled) frees its place
    assert "carol-spam" not in {j["model_id"] for j in client.factory.jobs()}
    # stopping jobs and resuming them is no way past the limit: a resumed job counts as a new one
    with pytest.raises(LedgerError, match="queued or running") as err:
        client.factory.control(carol, queued[0]["id"], "resume")
    assert err.value.status == 429 and err.value.field == "developer"
    assert client.factory.job(queued[0]["id"])["state"] == "stopped"


def test_submitting_and_cancelling_without_end_is_bounded_by_the_hour(client, alice, carol, tmp_path, monkeypatch):
    """A job cancelled at once leaves the queue, so the queue's bounds alone let a free key submit and cancel
    without end, each job a row listed for good and a model id taken for good."""
    from ledgerlm.buckets import KeyedLimit, hourly

    train = _queue_only(client, alice, tmp_path, monkeypatch)
    # the node's `training_jobs_per_developer_per_hour` set to 3
    client.http.app.state.node.factory._submissions = KeyedLimit(hourly(3), hourly(100))
    for i in range(3):
        client.factory.control(carol, train(carol, f"churn-{i}")["id"], "cancel")
    with pytest.raises(LedgerError, match="within the hour") as err:
        train(carol, "churn-3")
    assert err.value.status == 429 and err.value.field == "developer"
    with pytest.raises(LedgerError, match="already taken"):
        train(alice, "churn-0")  # a refusal before the job exists spends none of the hour
    train(alice, "alice-one")  # another developer still may
    assert {j["model_id"] for j in client.factory.jobs()} == {"churn-0", "churn-1", "churn-2", "alice-one"}
    # the listing is paged, newest first: the node's history of jobs is not one answer
    assert [j["model_id"] for j in client.factory.jobs(limit=2)] == ["alice-one", "churn-2"]
    first = client.http.get("/factory/jobs", params={"limit": 3})
    assert [j["model_id"] for j in first.json()] == ["alice-one", "churn-2", "churn-1"]
    rest = client.http.get("/factory/jobs", params={"limit": 3, "before": first.headers["X-Ledgerlm-Next-Before"]})
    assert [j["model_id"] for j in rest.json()] == ["churn-0"] and "X-Ledgerlm-Next-Before" not in rest.headers
    too_many = client.http.get("/factory/jobs", params={"limit": 1001})
    assert too_many.status_code == 422 and "limit" in too_many.text


def test_job_event_streams_open_at_once_are_capped_and_the_job_stays_readable(trained, client, monkeypatch):
    """Each event stream polls the database while its job runs and needs no signature to open: past the
    node's cap a stream is refused with 429 naming the job, and the job itself still reads."""
    from ledgerlm.api import factory as routes

    job_id = client.http.get("/factory/jobs").json()[0]["id"]
    events = f"/factory/jobs/{job_id}/events"
    finished = client.http.get(events)
    assert finished.status_code == 200 and '"state": "done"' in finished.text
    assert routes.EVENT_STREAMS["open"] == 0  # a stream that ended no longer counts
    assert routes.STREAMS_BY_CLIENT == {}
    monkeypatch.setattr(routes, "MAX_EVENT_STREAMS", 0)
    refused = client.http.get(events)
    assert refused.status_code == 429 and "event streams are open" in refused.text
    assert refused.json()["error"]["field"] == "job_id"
    assert client.http.get(f"/factory/jobs/{job_id}").json()["state"] == "done"
    monkeypatch.setattr(routes, "MAX_EVENT_STREAMS", 64)  # one client holding its share of streams
    monkeypatch.setitem(routes.STREAMS_BY_CLIENT, "127.0.0.1", routes.MAX_EVENT_STREAMS_PER_CLIENT)
    refused = client.http.get(events)
    assert refused.status_code == 429 and "the most one client may hold" in refused.text


def test_a_developer_removed_from_a_private_datanet_while_queued_trains_nothing_on_it(client, alice, carol, tmp_path,
                                                                                      monkeypatch):
    from sqlalchemy import update

    from ledgerlm.factory import tiny_random_model
    from ledgerlm.factory.jobs import ModelFactory
    from ledgerlm.store.schema import datanets

    start_worker = ModelFactory._start_worker
    monkeypatch.setattr(ModelFactory, "_start_worker", lambda self: None)  # the job waits in the queue
    tiny = tiny_random_model(tmp_path / "tiny", [f"{r['question']} {r['answer']}" for r in FACTS])
    client.factory.register_base("tiny", str(tiny))
    publish_qa(client, tmp_path, alice, [(alice, FACTS)])
    node = client.http.app.state.node
    with node.db.begin() as conn:  # made private once published (publish_qa reads its contributions unsigned)
        conn.execute(update(datanets).where(datanets.c.name == "colours").values(visibility="private"))
    client.add_member("colours", carol.address, alice)
    job = client.factory.train(carol, {"model_id": "carol-secret", "datanet": "colours", "version": 1,
                                       "base": "tiny", "config": {"epochs": 1, "max_len": 64}})
    client.remove_member("colours", carol.address, alice)

    monkeypatch.setattr(ModelFactory, "_start_worker", start_worker)
    node.factory._start_worker()
    done = node.factory.wait(job["id"], timeout=120)
    assert done.state == "failed" and "private" in done.error, done.error
    assert not (node.factory.models_dir / "trained" / "carol-secret").exists()

    # the job's events read as the job does: the dashboard's signed-read cookie (an EventSource sends no header)
    from ledgerlm.web.access import READ_COOKIE

    events = f"/factory/jobs/{job['id']}/events"
    assert client.http.get(events, headers={"Authorization": ""}).status_code in (401, 403)
    client.http.cookies.set(READ_COOKIE, client.read_header(alice))
    try:
        shown = client.http.get(events, headers={"Authorization": ""})
        assert shown.status_code == 200 and '"state": "failed"' in shown.text
    finally:
        client.http.cookies.clear()


def test_a_model_id_may_not_be_a_base_models_name_nor_the_reverse(client, alice, carol, tmp_path, monkeypatch):
    from ledgerlm.factory import tiny_random_model
    from ledgerlm.factory.jobs import ModelFactory

    monkeypatch.setattr(ModelFactory, "_start_worker", lambda self: None)
    tiny = tiny_random_model(tmp_path / "tiny", [f"{r['question']} {r['answer']}" for r in FACTS])
    client.factory.register_base("tiny", str(tiny))
    publish_qa(client, tmp_path, alice, [(alice, FACTS)])
    with pytest.raises(LedgerError, match="base model's name") as refused:  # calls for "tiny" are the base's
        client.factory.train(carol, {"model_id": "tiny", "datanet": "colours", "version": 1, "base": "tiny",
                                     "config": {"epochs": 1, "max_len": 64}})
    assert refused.value.status == 409 and refused.value.field == "model_id"
    client.factory.train(carol, {"model_id": "colours-x", "datanet": "colours", "version": 1, "base": "tiny",
                                 "config": {"epochs": 1, "max_len": 64}})  # queued: the id is the job's already
    with pytest.raises(LedgerError, match="fine-tuned model's id") as refused:
        client.factory.register_base("colours-x", str(tiny))
    assert refused.value.status == 409 and refused.value.field == "name"


def test_fresh_keys_cannot_queue_training_without_end(client, alice, tmp_path, monkeypatch):
    from eth_account import Account

    from ledgerlm.factory import tiny_random_model
    from ledgerlm.factory.jobs import ModelFactory

    monkeypatch.setattr(ModelFactory, "_start_worker", lambda self: None)  # the jobs stay queued
    tiny = tiny_random_model(tmp_path / "tiny", [f"{r['question']} {r['answer']}" for r in FACTS])
    client.factory.register_base("tiny", str(tiny))
    publish_qa(client, tmp_path, alice, [(alice, FACTS)])
    client.http.app.state.node.factory.jobs_queued = 3
    keys = [Account.create() for _ in range(4)]  # each under its own per-developer bound

    def train(account, model_id):
        return client.factory.train(account, {"model_id": model_id, "datanet": "colours", "version": 1,
                                              "base": "tiny", "config": {"epochs": 1, "max_len": 64}})

    for i, account in enumerate(keys[:3]):
        train(account, f"sybil-{i}")
    with pytest.raises(LedgerError, match="the most it queues") as refused:
        train(keys[3], "sybil-3")
    assert refused.value.status == 429 and refused.value.field == "request"


def test_a_failed_jobs_files_are_cleared_so_a_later_job_of_its_id_starts_afresh(client, alice, carol, tmp_path,
                                                                                  monkeypatch):
    """A job that fails after writing checkpoints (out of memory in its evaluation, say) frees its id: the next job
    of that id, whoever sends it, must not resume the failed run's checkpoints or take over its adapter."""
    import ledgerlm.factory.finetune as finetune
    from ledgerlm.factory import tiny_random_model

    tiny = tiny_random_model(tmp_path / "tiny", [f"{r['question']} {r['answer']}" for r in FACTS])
    client.factory.register_base("tiny", str(tiny))
    publish_qa(client, tmp_path, alice, [(alice, FACTS)])
    node = client.http.app.state.node
    real = finetune.fine_tune

    def fails_after_writing(base, records, config, out_dir, **kwargs):
        (out_dir / "checkpoints" / "step-00000002").mkdir(parents=True)  # what a run leaves before it dies
        raise MemoryError("out of memory in the evaluation")

    monkeypatch.setattr(finetune, "fine_tune", fails_after_writing)
    request = {"model_id": "reused", "datanet": "colours", "version": 1, "base": "tiny",
               "config": {"epochs": 1, "max_len": 64, "eval_split": 0.0}}
    failed = node.factory.wait(client.factory.train(carol, request)["id"], timeout=120)
    assert failed.state == "failed" and "MemoryError" in failed.error
    assert not (node.factory.models_dir / "trained" / "reused").exists()

    monkeypatch.setattr(finetune, "fine_tune", real)
    again = node.factory.wait(client.factory.train(alice, request)["id"], timeout=300)
    assert again.state == "done", again.error


def test_two_requests_for_one_model_id_cannot_both_be_queued_while_the_first_pays(client, alice, carol, tmp_path,
                                                                                   monkeypatch):
    from ledgerlm.factory import tiny_random_model
    from ledgerlm.factory.jobs import ModelFactory

    monkeypatch.setattr(ModelFactory, "_start_worker", lambda self: None)
    tiny = tiny_random_model(tmp_path / "tiny", [f"{r['question']} {r['answer']}" for r in FACTS])
    client.factory.register_base("tiny", str(tiny))
    publish_qa(client, tmp_path, alice, [(alice, FACTS)])
    node = client.http.app.state.node
    request = {"model_id": "contested", "datanet": "colours", "version": 1, "base": "tiny",
               "config": {"epochs": 1, "max_len": 64}}
    pay = ModelFactory._pay

    def slow_payment(self, *args):  # the other request lands while this one pays
        monkeypatch.setattr(ModelFactory, "_pay", pay)
        client.factory.train(alice, request)
        return pay(self, *args)

    monkeypatch.setattr(ModelFactory, "_pay", slow_payment)
    with pytest.raises(LedgerError, match="already taken") as refused:
        client.factory.train(carol, request)
    assert refused.value.status == 409 and refused.value.field == "model_id"
    assert [j.model_id for j in node.factory.jobs()] == ["contested"]


def test_attributions_past_the_node_s_slots_are_refused_with_their_nonce_unspent(trained, client, bob, monkeypatch):
    """Each attribution holds a worker thread that every synchronous route shares while it runs or waits for its
    model: past the node's slots a signed request is answered 429 at once, and may be sent again."""
    from ledgerlm.api import attribution as route
    from ledgerlm.api.attribution import AttributeRequest
    from ledgerlm.client import NodeClient

    anonymous = NodeClient(client.http.__class__(app=client.http.app, base_url=str(client.http.base_url)))
    body = {"model": "colours-tiny", "prompt": FACTS[0]["question"], "answer": FACTS[0]["answer"],
            "max_new_tokens": 64}
    action = anonymous._sign(bob, "RequestAttribution",
                             {"model": "colours-tiny", "requestHash": AttributeRequest(**body).request_hash()})
    node = client.http.app.state.node
    monkeypatch.setattr(route, "ATTRIBUTIONS_AT_ONCE", 1)
    node.__dict__.pop("_attribution_slots", None)
    with route.admitted(node):  # one attribution running: the only slot
        busy = anonymous.http.post("/attribution", json={**body, "action": action})
    assert busy.status_code == 429 and busy.json()["error"]["field"] == "model"
    assert busy.headers["retry-after"] == str(route.ATTRIBUTION_RETRY_SECONDS)
    again = anonymous.http.post("/attribution", json={**body, "action": action})  # the same signature, later
    assert again.status_code == 200, again.text
    node.__dict__.pop("_attribution_slots", None)


def test_a_record_the_trainer_cannot_read_is_skipped_and_a_withdrawn_one_leaves_the_models_samples(
        client, alice, bob, carol, tmp_path):
    """One accepted record of blanks failed every job on its version, naming no contribution; and a withdrawn
    record stayed quoted word for word in the evaluation samples of every model trained on it."""
    from ledgerlm.factory import tiny_random_model

    tiny = tiny_random_model(tmp_path / "tiny", [f"{r['question']} {r['answer']}" for r in FACTS])
    client.factory.register_base("tiny", str(tiny))
    publish_qa(client, tmp_path, alice, [(bob, FACTS), (carol, [{"question": "Anything?", "answer": " "}])])
    blank = next(c.id for c in client.contributions("colours") if c.contributor == carol.address)
    job = client.factory.train(carol, {"model_id": "skips-one", "datanet": "colours", "version": 1, "base": "tiny",
                                       "config": {"epochs": 1, "max_len": 64, "eval_split": 0.5}})
    done = client.http.app.state.node.factory.wait(job["id"], timeout=300)
    assert done.state == "done", done.error
    model = client.factory.model("skips-one")
    assert [s["contribution"] for s in model["metrics"]["skipped_records"]] == [blank]

    sampled = [s["after"] for s in model["metrics"]["eval"]["samples"]]
    assert sampled and all(s["contribution"] for s in sampled)
    gone = sampled[0]
    client.withdraw(gone["contribution"], bob)
    shown = client.http.get("/models/skips-one").text
    assert gone["question"] not in shown
    path = Path(client.http.app.state.node.factory.model_for("skips-one", None).path)
    assert gone["question"] not in (path / "lineage.json").read_text()
    assert len(client.factory.model("skips-one")["metrics"]["eval"]["samples"]) == len(sampled) - 1


def test_a_record_withdrawn_while_its_model_trained_or_before_a_crash_leaves_the_models_samples(
        client, alice, bob, tmp_path):
    """A node that died between storing a withdrawal and cleaning the reports left the record quoted for good; its
    next start takes the quotes out. A job reads its records at its start: those withdrawn while it trained found
    no model to clean and stayed quoted in the finished model's report."""
    from sqlalchemy import update

    from ledgerlm.factory import tiny_random_model
    from ledgerlm.identity import SignedAction
    from ledgerlm.store.schema import contributions

    node = client.http.app.state.node
    tiny = tiny_random_model(tmp_path / "tiny", [f"{r['question']} {r['answer']}" for r in FACTS])
    client.factory.register_base("tiny", str(tiny))
    publish_qa(client, tmp_path, alice, [(bob, FACTS)])
    config = {"epochs": 1, "max_len": 64, "eval_split": 0.5}

    def quoted(model_id):
        return {s["after"]["contribution"] for s in client.factory.model(model_id)["metrics"]["eval"]["samples"]}

    job = client.factory.train(bob, {"model_id": "first", "datanet": "colours", "version": 1, "base": "tiny",
                                     "config": config})
    assert node.factory.wait(job["id"], timeout=300).state == "done"
    crashed = sorted(quoted("first"))[0]
    with node.db.begin() as conn:  # the withdrawal is stored; the node dies before the reports are cleaned
        conn.execute(update(contributions).where(contributions.c.id == crashed).values(state="withdrawn"))
    assert crashed in quoted("first")
    assert node.reconcile()["withdrawn_samples"] == 1
    assert quoted("first") and crashed not in quoted("first")
    assert node.reconcile()["withdrawn_samples"] == 0

    # every other record is withdrawn once the next job has trained, before it stores its model
    rest = [c.id for c in client.contributions("colours") if c.id != crashed]
    withdrawals = [SignedAction(**client._sign(bob, "WithdrawContribution", {"contributionId": cid})) for cid in rest]
    licence = node.factory._licence

    def withdrawn_as_training_ends(job_id):
        for cid, signed in zip(rest, withdrawals):
            node.datanets.withdraw(cid, signed)
        return licence(job_id)

    node.factory._licence = withdrawn_as_training_ends
    job = client.factory.train(bob, {"model_id": "raced", "datanet": "colours", "version": 1, "base": "tiny",
                                     "config": config})
    done = node.factory.wait(job["id"], timeout=300)
    node.factory._licence = licence
    assert done.state == "done", done.error
    assert quoted("raced") == set()
    lineage = (Path(node.factory.model_for("raced", None).path) / "lineage.json").read_text()
    assert not any(r["question"] in lineage for r in FACTS)
