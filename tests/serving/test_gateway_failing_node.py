"""A node whose calls keep failing is taken out of the gateway's rotation: users get every answer from the other
node, charged once, and the failing node sees no more calls until its status answers after a back-off."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time

import httpx
import pytest
from sqlalchemy import func, select

from ledgerlm.gateway import GatewaySettings, create_gateway_app, rendezvous_weight
from ledgerlm.store import Database
from ledgerlm.store.schema import receipts, serving_claims

from .conftest import ask, free_port, homes_sharing_one_database, served, start_node, tiny_node, wait_until_up


def gateway_status(gateway: str) -> dict:
    return {n["url"]: n for n in httpx.get(f"{gateway}/gateway/status", timeout=10).json()["nodes"]}


def wait_for(check, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)


@pytest.fixture
def damaged_pair(world, tmp_path):
    """Two serving processes of one deployment sharing one database; the one that rendezvous hashing ranks first
    for facts-a has a damaged copy of the base model, so its status answers while every completion fails (500)."""
    ports = [free_port(), free_port()]
    damaged_url = max((f"http://127.0.0.1:{p}" for p in ports), key=lambda url: rendezvous_weight(url, "facts-a"))
    urls = [next(f"http://127.0.0.1:{p}" for p in ports if f"http://127.0.0.1:{p}" != damaged_url), damaged_url]
    homes = homes_sharing_one_database(world, tmp_path, ("sound", "damaged"))
    catalogue_path = homes[1].models / "catalogue.json"  # base models are catalogued by where their files are
    catalogue = json.loads(catalogue_path.read_text())
    damaged_base = shutil.copytree(catalogue["tiny"]["path"], tmp_path / "damaged-tiny")
    weights = list(damaged_base.glob("*.safetensors"))
    assert weights, "the base model has no weights file to damage"
    for path in weights:
        path.write_bytes(b"not a safetensors file")
    catalogue["tiny"]["path"] = str(damaged_base)
    catalogue_path.write_text(json.dumps(catalogue))
    processes = [start_node(home, int(url.rsplit(":", 1)[1])) for home, url in zip(homes, urls)]
    try:
        for url, process in zip(urls, processes):
            wait_until_up(url, process)
        yield urls[0], urls[1], Database.at(homes[0].database_path)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


# Two real serve processes sharing one database: minutes on a two-core machine, so it runs with -m slow; the
# back-off rule itself is checked in-process below.
@pytest.mark.slow
def test_a_node_failing_every_call_is_taken_out_and_receipts_stay_exactly_once(damaged_pair, world):
    sound, damaged, db = damaged_pair
    # the damaged node is first for facts-a by hash; status checks are rare, so only failures move traffic
    model = "facts-a"
    settings = GatewaySettings((sound, damaged), health_interval=600, down_after=2, down_backoff=300)
    with db.connect() as conn:
        before = conn.execute(select(func.count()).select_from(receipts)).scalar()
    keys = [f"order-{i}-{time.time_ns()}" for i in range(6)]
    with served(None, app=create_gateway_app(settings)) as gateway:
        answers = [ask(gateway, world.key, model, idempotency=key) for key in keys]
        status = gateway_status(gateway)
    assert [a.status_code for a in answers] == [200] * len(keys), [a.text for a in answers]
    assert {a.headers["X-Ledgerlm-Node"] for a in answers} == {sound}
    # two calls failed on the damaged node and took it out; the other four never went there
    assert status[damaged]["failures"] == 2 and status[damaged]["routed"] == 0
    assert not status[damaged]["up"] and "out of rotation after 2 failed calls" in status[damaged]["error"]
    assert status[sound]["routed"] == len(keys) and status[sound]["failures"] == 0
    # one receipt per key: the failed attempts wrote none and gave their keys back
    receipt_ids = [a.json()["x_ledgerlm_receipt"]["id"] for a in answers]
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(receipts)).scalar() == before + len(keys)
        claimed = conn.execute(select(serving_claims.c.receipt_id).where(
            serving_claims.c.receipt_id.in_(receipt_ids) | serving_claims.c.receipt_id.is_(None))).scalars().all()
    assert sorted(claimed) == sorted(receipt_ids)  # no claim left open by the failed attempts
    again = ask(sound, world.key, model, idempotency=keys[0])
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["x_ledgerlm_receipt"]["id"] == receipt_ids[0]


def test_a_node_taken_out_returns_after_its_back_off_and_a_status_check():
    answers = {"facts": 503}
    ailing = tiny_node("ailing", answers, warm=("facts",))  # warm, so the gateway prefers it while it is up
    healthy = tiny_node("healthy", {})
    with served(None, app=ailing) as ailing_url, served(None, app=healthy) as healthy_url:
        settings = GatewaySettings((ailing_url, healthy_url), health_interval=0.1, down_after=3, down_backoff=2.0)
        with served(None, app=create_gateway_app(settings)) as gateway:
            for _ in range(3):
                response = ask(gateway, "key", "facts")
                assert response.status_code == 200 and response.json()["id"] == "healthy-answer"
            node = gateway_status(gateway)[ailing_url]
            assert not node["up"] and node["failed_in_a_row"] == 3 and "after 2 s" in node["error"]
            asked = 0
            while time.time() < node["held_until"] - 0.3 or asked < 2:  # its status answers all along
                assert ask(gateway, "key", "facts").json()["id"] == "healthy-answer"
                asked += 1
            assert len(ailing.state.hits) == 3

            # the back-off passes and a status check puts it back; one more failure takes it out again, for longer
            wait_for(lambda: gateway_status(gateway)[ailing_url]["up"], "the ailing node back in rotation")
            assert ask(gateway, "key", "facts").json()["id"] == "healthy-answer"
            assert len(ailing.state.hits) == 4
            node = gateway_status(gateway)[ailing_url]
            assert not node["up"] and "after 4 s" in node["error"]

            # healed: once back, it answers, and its failures are forgiven
            answers["facts"] = 200
            wait_for(lambda: gateway_status(gateway)[ailing_url]["up"], "the healed node back in rotation")
            response = ask(gateway, "key", "facts")
            assert response.json()["id"] == "ailing-answer"
            node = gateway_status(gateway)[ailing_url]
            assert node["up"] and node["failed_in_a_row"] == 0 and node["error"] is None
