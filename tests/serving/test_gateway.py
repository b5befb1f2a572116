"""The gateway in front of two real serving processes sharing one database: requests for an adapter go
to the node that has it warm, a killed node's traffic fails over, streams pass through, and a request
retried on another node with the same Idempotency-Key is answered from the first receipt, not charged twice;
and, against small stand-in nodes on loopback, a node's 5xx moves the call on while its 4xx goes to the client."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select

from ledgerlm.gateway import GatewaySettings, create_gateway_app, rendezvous_weight
from ledgerlm.serving.claims import IdempotencyClaims, IdempotencyConflict
from ledgerlm.store import Database
from ledgerlm.store.schema import receipts, serving_claims

from .conftest import ASK, ask, free_port, homes_sharing_one_database, served, start_node, tiny_node, wait_until_up


@dataclass
class Cluster:
    nodes: dict[str, subprocess.Popen]  # url -> process
    gateway: str
    db: Database
    key: str

    def receipts_with(self, receipt_id: str) -> int:
        with self.db.connect() as conn:
            return conn.execute(select(func.count()).select_from(receipts).where(receipts.c.id == receipt_id)).scalar()

    def receipt_count(self) -> int:
        with self.db.connect() as conn:
            return conn.execute(select(func.count()).select_from(receipts)).scalar()

    def status(self) -> dict:
        return {n["url"]: n for n in httpx.get(f"{self.gateway}/gateway/status", timeout=10).json()["nodes"]}

    def wait_for(self, check, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check(self.status()):
            assert time.monotonic() < deadline, f"the gateway never saw {what}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(world, tmp_path_factory):
    """Two nodes of one deployment (copies of one home: same key, same contracts), whose second one uses the
    first one's database, as nodes sharing PostgreSQL do; and the gateway in front of both."""
    root = tmp_path_factory.mktemp("gateway")
    homes = homes_sharing_one_database(world, root, ("a", "b"), serving_claim_lease_seconds=3)
    ports = [free_port(), free_port()]
    processes = {f"http://127.0.0.1:{p}": start_node(h, p) for h, p in zip(homes, ports)}
    try:
        for url, process in processes.items():
            wait_until_up(url, process)
        settings = GatewaySettings(tuple(processes), health_interval=0.3, failover_wait=20)
        with served(None, app=create_gateway_app(settings)) as gateway:
            yield Cluster(processes, gateway, Database.at(homes[0].database_path), world.key)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def test_requests_for_an_adapter_go_to_the_node_that_has_it_warm(cluster):
    by_hash = max(cluster.nodes, key=lambda url: rendezvous_weight(url, "facts-a"))
    other = next(url for url in cluster.nodes if url != by_hash)
    # warm facts-a on the node hashing would NOT pick: from then on the gateway must prefer it
    assert ask(other, cluster.key, "facts-a").status_code == 200
    cluster.wait_for(lambda s: "facts-a" in s[other]["warm"]["device"], "facts-a warm")
    for _ in range(3):
        response = ask(cluster.gateway, cluster.key, "facts-a")
        assert response.status_code == 200, response.text
        assert response.headers["X-Ledgerlm-Node"] == other
    # a model warm nowhere goes where consistent hashing puts it
    cold = ask(cluster.gateway, cluster.key, "facts-b")
    assert cold.status_code == 200
    assert cold.headers["X-Ledgerlm-Node"] == max(cluster.nodes, key=lambda url: rendezvous_weight(url, "facts-b"))


def test_a_retry_on_another_node_gets_the_first_answer_and_no_second_receipt(cluster):
    before = cluster.receipt_count()
    first = ask(cluster.gateway, cluster.key, "facts-a", idempotency="order-7")
    assert first.status_code == 200, first.text
    served_by = first.headers["X-Ledgerlm-Node"]
    receipt = first.json()["x_ledgerlm_receipt"]
    other = next(url for url in cluster.nodes if url != served_by)
    again = ask(other, cluster.key, "facts-a", idempotency="order-7")  # as a gateway's retry would
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["x_ledgerlm_receipt"]["id"] == receipt["id"]
    assert again.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
    assert cluster.receipts_with(receipt["id"]) == 1
    assert cluster.receipt_count() == before + 1
    changed = ask(other, cluster.key, "facts-a", idempotency="order-7", max_tokens=3)
    assert changed.status_code == 422 and changed.json()["error"]["field"] == "idempotency_key"


def test_a_stream_passes_through_whole_with_its_receipt(cluster):
    whole = ask(cluster.gateway, cluster.key, "facts-b").json()
    chunks, receipt = [], None
    with httpx.stream("POST", f"{cluster.gateway}/v1/chat/completions", timeout=120,
                      headers={"Authorization": f"Bearer {cluster.key}"},
                      json={"model": "facts-b", "stream": True, **ASK}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                import json

                data = json.loads(line[6:])
                chunks.append(data["choices"][0]["delta"].get("content", ""))
                receipt = data.get("x_ledgerlm_receipt", receipt)
    assert "".join(chunks) == whole["choices"][0]["message"]["content"]
    assert receipt is not None and cluster.receipts_with(receipt["id"]) == 1


@pytest.mark.slow  # timing-bound: a lease must run out while the machine is busy
def test_a_node_frozen_mid_answer_is_retried_elsewhere_and_charged_once(cluster):
    """The hard case: the node took the call, then went silent. The gateway gives up on it, retries the same
    Idempotency-Key on the other node, which waits out the silent node's lease and takes the call over; when
    the frozen node wakes and finishes, its receipt is refused. One answer, one receipt."""
    import threading

    settings = GatewaySettings(tuple(cluster.nodes), health_interval=0.3, failover_wait=20, read_timeout=8)
    key = f"frozen-{time.time_ns()}"
    before = cluster.receipt_count()
    with served(None, app=create_gateway_app(settings)) as gateway:
        result = {}
        caller = threading.Thread(target=lambda: result.update(response=ask(
            gateway, cluster.key, "facts-b", idempotency=key, max_tokens=40)))
        caller.start()
        deadline = time.monotonic() + 60
        while True:  # the first node has claimed the key: freeze it before it can answer
            with cluster.db.connect() as conn:
                holder = conn.execute(select(serving_claims.c.instance).where(
                    serving_claims.c.receipt_id.is_(None))).scalar()
            if holder:
                break
            assert time.monotonic() < deadline, "no node claimed the call"
            time.sleep(0.005)
        frozen = next(url for url, n in cluster.status().items() if n["instance"] == holder)
        cluster.nodes[frozen].send_signal(signal.SIGSTOP)
        try:
            caller.join(timeout=90)
        finally:
            cluster.nodes[frozen].send_signal(signal.SIGCONT)
    response = result["response"]
    assert response.status_code == 200, response.text
    assert response.headers["X-Ledgerlm-Node"] != frozen  # answered by the node that took the call over
    deadline = time.monotonic() + 60
    while cluster.status()[frozen]["node_in_flight"] or not cluster.status()[frozen]["up"]:
        assert time.monotonic() < deadline, "the frozen node never finished its call"
        time.sleep(0.2)
    assert cluster.receipt_count() == before + 1
    assert cluster.receipts_with(response.json()["x_ledgerlm_receipt"]["id"]) == 1


def test_a_killed_node_fails_over_and_is_marked_down(cluster):
    warm = next(url for url, n in cluster.status().items() if "facts-a" in n["warm"]["device"])
    cluster.nodes[warm].send_signal(signal.SIGKILL)
    cluster.nodes[warm].wait(timeout=30)
    before = cluster.receipt_count()
    response = ask(cluster.gateway, cluster.key, "facts-a", idempotency="after-kill")
    assert response.status_code == 200, response.text
    assert response.headers["X-Ledgerlm-Node"] != warm
    assert cluster.receipt_count() == before + 1
    cluster.wait_for(lambda s: not s[warm]["up"], "the killed node down")


def test_a_claim_whose_node_died_lapses_and_its_late_receipt_is_refused(tmp_path):
    """The database invariant under a gateway's retries: one receipt per key, whoever finishes."""
    db = Database.at(tmp_path / "claims.db")
    db.upgrade()
    dead, alive = IdempotencyClaims(db, lease_seconds=3), IdempotencyClaims(db, lease_seconds=3)
    request = {"model": "m", "prompt": "p"}
    held = dead.claim("k", "0xabc", request)
    with pytest.raises(IdempotencyConflict) as busy:
        alive.claim("k", "0xabc", request)
    assert busy.value.retry_after and busy.value.status == 409
    assert alive.claim("k", "0xother", request).replay_of is None  # another consumer's key is another key
    with db.begin() as conn:  # the dead node stopped renewing: its lease runs out
        conn.execute(serving_claims.update().values(lease_until=int(time.time()) - 1))
    taken = alive.claim("k", "0xabc", request)
    with db.begin() as conn:
        alive.attach(conn, taken, "lgr-retry")
    with pytest.raises(IdempotencyConflict), db.begin() as conn:
        dead.attach(conn, held, "lgr-late")
    assert alive.claim("k", "0xabc", request).replay_of == "lgr-retry"
    # a day later the finished claim is gone; the one still running stays
    assert alive.prune(now=int(time.time()) + 86_400 + 1) == 1
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(serving_claims)).scalar() == 1
    dead.close()
    alive.close()
    db.close()


def test_a_node_answering_5xx_fails_over_and_a_4xx_is_the_clients():
    # the ailing node has every model warm, so the gateway tries it first
    answers = {"busy": 503, "broken": 500, "bad": 400, "unknown": 404}
    ailing = tiny_node("ailing", answers, warm=tuple(answers))
    healthy = tiny_node("healthy", {})
    with served(None, app=ailing) as ailing_url, served(None, app=healthy) as healthy_url:
        settings = GatewaySettings((ailing_url, healthy_url), health_interval=60)
        with served(None, app=create_gateway_app(settings)) as gateway:
            for model in ("busy", "broken"):
                response = ask(gateway, "key", model)
                assert response.status_code == 200, response.text
                assert response.headers["X-Ledgerlm-Node"] == healthy_url
                assert response.json()["id"] == "healthy-answer"
            for model, code in (("bad", 400), ("unknown", 404)):
                response = ask(gateway, "key", model)
                assert response.status_code == code
                assert response.json()["error"]["message"] == f"ailing says {code}"
                assert response.headers["X-Ledgerlm-Node"] == ailing_url
            status = httpx.get(f"{gateway}/gateway/status", timeout=10).json()
    assert ailing.state.hits == ["busy", "broken", "bad", "unknown"]
    assert healthy.state.hits == ["busy", "broken"]  # a client's error is never tried on another node
    nodes = {n["url"]: n for n in status["nodes"]}
    assert nodes[ailing_url]["failures"] == 2 and nodes[ailing_url]["routed"] == 2
    assert nodes[healthy_url]["failures"] == 0 and nodes[healthy_url]["routed"] == 2
    assert status["failovers"] == 2


def test_a_node_whose_status_is_malformed_is_left_out_and_the_others_are_still_checked():
    odd = tiny_node("odd", {}, status={"signing_domain": {"name": "ledgerlm", "chainId": 1}, "in_flight": "n/a",
                                       "warm": ["x"]})
    healthy = tiny_node("healthy", {})
    with served(None, app=odd) as odd_url, served(None, app=healthy) as healthy_url:
        settings = GatewaySettings((odd_url, healthy_url), health_interval=0.3)
        with served(None, app=create_gateway_app(settings)) as gateway:  # it starts all the same
            def status() -> dict:
                return {n["url"]: n for n in httpx.get(f"{gateway}/gateway/status", timeout=10).json()["nodes"]}

            first = status()
            # checked again after the odd node's failed check: waited for, not slept on (a busy
            # machine can hold the health loop past any fixed pause)
            deadline = time.monotonic() + 30
            while (later := status())[healthy_url]["checked_at"] <= first[healthy_url]["checked_at"]:
                assert time.monotonic() < deadline, "the gateway never checked the healthy node again"
                time.sleep(0.1)
            assert ask(gateway, "key", "m").headers["X-Ledgerlm-Node"] == healthy_url
    assert not later[odd_url]["up"] and "status check failed" in later[odd_url]["error"]
    assert later[healthy_url]["up"] and later[healthy_url]["checked_at"] > first[healthy_url]["checked_at"]


def test_a_node_of_another_deployment_never_gets_a_call_or_a_key():
    # the stray node has the model warm and the real ones refuse it: the call fails rather than go astray
    stray = tiny_node("stray", {}, warm=("m",), chain_id=99)
    real = [tiny_node(f"real-{i}", {"m": 503}) for i in range(2)]
    with served(None, app=stray) as stray_url, served(None, app=real[0]) as a, served(None, app=real[1]) as b:
        settings = GatewaySettings((stray_url, a, b), health_interval=60)
        with served(None, app=create_gateway_app(settings)) as gateway:
            response = ask(gateway, "sk-lgr-secret", "m")
            status = httpx.get(f"{gateway}/gateway/status", timeout=10).json()
    assert response.status_code == 503 and stray.state.hits == []  # the deployment most nodes sign for
    assert "another deployment" in {n["url"]: n for n in status["nodes"]}[stray_url]["error"]


def test_a_header_no_node_could_read_is_refused_and_leaves_no_call_counted():
    healthy = tiny_node("healthy", {})
    with served(None, app=healthy) as healthy_url:
        with served(None, app=create_gateway_app(GatewaySettings((healthy_url,), health_interval=60))) as gateway:
            for _ in range(3):
                response = httpx.post(f"{gateway}/v1/chat/completions", json={"model": "m", "messages": []},
                                      headers={"Idempotency-Key": "caf\xe9".encode("latin-1")}, timeout=30)
                assert response.status_code == 400 and response.json()["error"]["field"] == "idempotency-key"
            [node] = httpx.get(f"{gateway}/gateway/status", timeout=10).json()["nodes"]
    assert node["in_flight"] == 0 and healthy.state.hits == []


def test_the_gateway_names_the_caller_and_a_node_trusts_that_only_from_its_gateways():
    from types import SimpleNamespace

    from starlette.requests import Request

    from ledgerlm.api.deps import caller_address

    healthy = tiny_node("healthy", {})
    with served(None, app=healthy) as healthy_url:
        with served(None, app=create_gateway_app(GatewaySettings((healthy_url,), health_interval=60))) as gateway:
            ask(gateway, "key", "m")
    assert healthy.state.forwarded_for == ["127.0.0.1"]

    def caller(host, forwarded, trusted):
        request = Request({"type": "http", "client": (host, 5000),
                           "headers": [(b"x-forwarded-for", forwarded.encode())] if forwarded else []})
        return caller_address(request, SimpleNamespace(config=SimpleNamespace(trusted_proxies=trusted)))

    assert caller("10.0.0.5", "1.2.3.4", "") == "10.0.0.5"  # a gateway the node does not trust is the caller
    assert caller("10.0.0.5", "1.2.3.4", "10.0.0.5") == "1.2.3.4"
    assert caller("10.0.0.5", "6.6.6.6, 1.2.3.4", "10.0.0.5, 10.0.0.6") == "1.2.3.4"  # the gateway's own entry
    assert caller("9.9.9.9", "1.2.3.4", "10.0.0.5") == "9.9.9.9"  # anyone else's header is not read


def _receipts_for_prompt(db: Database, prompt: str) -> list[dict]:
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(select(receipts)).mappings() if (r["request"] or {}).get("prompt") == prompt]


def test_a_caller_who_leaves_the_gateway_pays_only_for_what_its_call_made(world, tmp_path):
    """The gateway waits on the node for a whole answer; once its caller has gone it closes that connection, so
    the node stops the call as it does for a caller of its own. A call still queued when its caller left is not
    charged at all, through the gateway or not, a stream included."""
    import threading

    (home,) = homes_sharing_one_database(world, tmp_path, ("queued",), serving_max_batch=1)
    headers = {"Authorization": f"Bearer {world.key}"}
    with served(home) as node_url:
        settings = GatewaySettings((node_url,), health_interval=60)
        with served(None, app=create_gateway_app(settings)) as gateway:
            db = Database.at(home.database_path)
            left = {"model": "tiny", "prompt": "left while it ran", "max_tokens": 900, "temperature": 0}
            with pytest.raises(httpx.TimeoutException):
                httpx.post(f"{gateway}/v1/completions", json=left, headers=headers, timeout=0.5)
            deadline = time.monotonic() + 60
            while not (found := _receipts_for_prompt(db, left["prompt"])):
                assert time.monotonic() < deadline, "no receipt for the call its caller left"
                time.sleep(0.1)
            assert 1 <= found[0]["completion_tokens"] < 900 and found[0]["request"]["finish_reason"] == "cancelled"
            for target, stream in ((gateway, False), (node_url, True)):
                running = threading.Event()

                def busy(running=running):  # holds the node's one row: the next call waits in the queue
                    with httpx.stream("POST", f"{node_url}/v1/completions", headers=headers, timeout=300, json={
                            "model": "tiny", "prompt": "busy", "max_tokens": 1000, "temperature": 0,
                            "stream": True}) as answer:
                        for _ in answer.iter_lines():
                            running.set()

                blocker = threading.Thread(target=busy)
                blocker.start()
                assert running.wait(60)
                queued = {"model": "tiny", "prompt": f"left in the queue {target}", "max_tokens": 50,
                          "temperature": 0, "stream": stream}
                with pytest.raises(httpx.TimeoutException):
                    httpx.post(f"{target}/v1/completions", json=queued, headers=headers, timeout=0.3)
                blocker.join()
                time.sleep(0.5)
                assert _receipts_for_prompt(db, queued["prompt"]) == []  # nothing ran, nothing charged
