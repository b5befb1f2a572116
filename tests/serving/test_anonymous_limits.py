"""A free model answers without a key, but not without limits: calls without a key count against the caller's
address, with the same rate and concurrency a key gets."""

import pytest
from fastapi.testclient import TestClient

from ledgerlm.api import create_app
from ledgerlm.config import Home
from ledgerlm.node import Node


@pytest.fixture(scope="module")
def free_node(tmp_path_factory):
    pytest.importorskip("torch")
    from ledgerlm.factory import tiny_random_model
    from ledgerlm.factory.basemodels import register_local

    root = tmp_path_factory.mktemp("anonymous")
    home = Home(root / "home")
    Node.init(home).close()
    config = home.load_config()
    config.serving_base_model, config.serving_requests_per_minute, config.torch_threads = "tiny", 2, 1
    home.save_config(config)
    register_local(home.models, "tiny", tiny_random_model(root / "tiny"))
    return home


def test_calls_without_a_key_are_rate_limited_per_client_address(free_node):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    app = create_app(lambda: Node.open(free_node))
    with TestClient(app, client=("203.0.113.7", 40000)) as first:
        other = TestClient(app, client=("203.0.113.8", 40000))  # the same running node, another caller
        for _ in range(2):
            assert first.post("/v1/chat/completions", json=body).status_code == 200
        refused = first.post("/v1/chat/completions", json=body)
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert "203.0.113.7" in error["message"] and "2 requests per minute" in error["message"]
        # as OpenAI's: clients that retry read how long to wait, and where the error's field is
        assert 1 <= int(refused.headers["retry-after"]) <= 30 and error["param"] == error["field"]
        assert other.post("/v1/chat/completions", json=body).status_code == 200  # another address is not held up


def test_an_idempotency_key_without_an_api_key_belongs_to_the_callers_address(free_node):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    app = create_app(lambda: Node.open(free_node))
    with TestClient(app, client=("203.0.113.20", 40000)) as first:
        other = TestClient(app, client=("203.0.113.21", 40000))
        headers = {"Idempotency-Key": "order-1"}
        assert first.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
        # another caller's key of the same name is its own: neither refused as a clash nor handed the first answer
        mine = other.post("/v1/chat/completions", json={**body, "max_tokens": 2}, headers=headers)
        assert mine.status_code == 200 and "idempotent-replayed" not in mine.headers
        again = first.post("/v1/chat/completions", json=body, headers=headers)
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"


def test_numbers_past_64_bits_with_an_idempotency_key_are_answered_not_a_server_fault(free_node):
    """The claim of an Idempotency-Key hashes the request: a count or seed past 64 bits once made that a 500,
    which a gateway (that sends a key with every call) took for a failing node, and took each node out in turn."""
    app = create_app(lambda: Node.open(free_node))
    with TestClient(app, client=("203.0.113.30", 40000)) as http:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
        huge = http.post("/v1/chat/completions", json={**body, "max_tokens": 2**70},
                         headers={"Idempotency-Key": "big-1"})
        assert huge.status_code == 200, huge.text  # as without a key: cut to the room the context leaves
        for seed in (2**64, -(2**63) - 1):
            refused = http.post("/v1/chat/completions", json={**body, "max_tokens": 1, "seed": seed},
                                headers={"Idempotency-Key": f"seed-{seed}"})
            assert refused.status_code == 400 and refused.json()["error"]["param"] == "seed", refused.text
