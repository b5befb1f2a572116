"""The gateway against nodes that answer wrongly: a stray deployment up first, a status or answer sent a byte at a
time, an answer that decodes to hundreds of megabytes. It keeps routing to the deployment most nodes sign for and
never waits or buffers without bound."""

from __future__ import annotations

import asyncio
import gzip
import json

import httpx
from fastapi.testclient import TestClient

from ledgerlm.gateway import app as gateway_app
from ledgerlm.gateway.app import Gateway, GatewaySettings, create_gateway_app

NODES = ("http://stray", "http://a", "http://b", "http://c")


def _ask_through_a_gateway(handler, monkeypatch, **body) -> httpx.Response:
    """One chat call through a gateway whose one node is `handler` (an httpx mock transport's handler)."""
    real = httpx.AsyncClient

    def mocked(*args, **kwargs):
        kwargs["transport"] = httpx.MockTransport(handler)
        return real(*args, **kwargs)

    monkeypatch.setattr(gateway_app.httpx, "AsyncClient", mocked)
    with TestClient(create_gateway_app(GatewaySettings(nodes=("http://node",)))) as http:
        return http.post("/v1/chat/completions", json={"model": "m", "messages": [], **body})


def status(chain_id: int) -> dict:
    return {"signing_domain": {"name": "ledgerlm", "chainId": chain_id}, "instance": "i", "base_model": "tiny",
            "engine_loaded": True, "warm": {"device": [], "host": []}, "in_flight": 0}


def test_a_stray_node_up_first_does_not_keep_the_gateway_once_the_others_answer():
    up = {"http://stray"}

    async def handler(request: httpx.Request) -> httpx.Response:
        origin = f"{request.url.scheme}://{request.url.host}"
        if origin not in up:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=status(99 if origin == "http://stray" else 1))

    async def run():
        gateway = Gateway(GatewaySettings(nodes=NODES))
        gateway.client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        await gateway.check_all()
        first = gateway.signing_domain["chainId"]
        up.update(NODES)
        await gateway.check_all()
        chosen = gateway.signing_domain["chainId"]
        up.difference_update({"http://a", "http://b", "http://c"})  # the deployment's nodes briefly down
        await gateway.check_all()
        await gateway.client.aclose()
        return first, chosen, gateway.signing_domain["chainId"], [n.foreign for n in gateway.table.nodes]

    first, chosen, later, foreign = asyncio.run(run())
    assert (first, chosen, later) == (99, 1, 1) and foreign[0] is True


def test_a_status_sent_a_byte_at_a_time_fails_its_check_within_the_deadline():
    async def handler(request: httpx.Request) -> httpx.Response:
        async def trickle():
            for _ in range(600):
                await asyncio.sleep(0.05)
                yield b" "

        if request.url.host == "slow":
            return httpx.Response(200, content=trickle())
        return httpx.Response(200, json=status(1))

    async def run():
        gateway = Gateway(GatewaySettings(nodes=("http://slow", "http://good"), health_interval=0.5))
        gateway.client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await gateway.check_all()
        took = loop.time() - started
        await gateway.client.aclose()
        return took, [n.checked_at is not None for n in gateway.table.nodes]

    took, checked = asyncio.run(run())
    assert took < 5 and checked == [True, True]


def test_an_answer_that_decodes_past_the_bound_is_refused_not_buffered(monkeypatch):
    monkeypatch.setattr(gateway_app, "MAX_ANSWER_BYTES", 1024 * 1024)
    bomb = gzip.compress(b"{" + b" " * (8 * 1024 * 1024) + b"}")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/serving/status":
            return httpx.Response(200, json=status(1))
        return httpx.Response(200, content=bomb, headers={"content-encoding": "gzip",
                                                          "content-type": "application/json"})

    answered = _ask_through_a_gateway(handler, monkeypatch)
    assert answered.status_code == 502 and "larger than" in json.loads(answered.text)["error"]["message"]


def _impostor_receipt() -> tuple[dict, str]:
    """A receipt signed by a fresh key, and another key a node's status may claim to sign with."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    from ledgerlm.identity import SigningDomain
    from ledgerlm.identity.actions import typed_data

    domain = SigningDomain.from_dict(status(1)["signing_domain"])
    impostor, claimed = Account.create(), Account.create()
    body = {"node": impostor.address, "receiptId": "lgr-1", "epoch": 1, "consumer": impostor.address,
            "modelId": "m", "adapterHash": "0x" + "00" * 32, "promptTokens": 1, "completionTokens": 1,
            "pricePer1k": 0, "fee": 0, "feePolicyHash": "0x" + "00" * 32, "payoutsHash": "0x" + "00" * 32,
            "datanetRootsHash": "0x" + "00" * 32, "attributionHash": "0x" + "00" * 32,
            "requestHash": "0x" + "00" * 32, "state": "final", "createdAt": 1}
    signature = impostor.sign_message(encode_typed_data(full_message=typed_data("InferenceReceipt", body, domain)))
    receipt = {"id": "lgr-1", "epoch": 1, "consumer": impostor.address, "model_id": "m", "adapter_sha256": None,
               "prompt_tokens": 1, "completion_tokens": 1, "price_per_1k": "0", "fee": "0",
               "fee_policy": {"node_bps": 10000, "developer_bps": 0, "contributors_bps": 0, "validators_bps": 0},
               "payouts": [], "datanet_roots": [], "attribution": None, "state": "final", "body": body,
               "signature": "0x" + bytes(signature.signature).hex().removeprefix("0x"), "created_at": 1,
               "finalized_at": 1,
               "request": {"split": {"node": impostor.address, "developer": impostor.address, "datanet": None}}}
    return receipt, claimed.address


def test_a_whole_answer_whose_receipt_another_key_signed_is_refused(monkeypatch):
    """The client's receipt must be this deployment's, signed by the node that answered: a node whose status lied
    about its key (or changed it between checks) answers 502, not 200 with a receipt nobody here signed."""
    receipt, claimed = _impostor_receipt()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/serving/status":
            return httpx.Response(200, json={**status(1), "node_address": claimed})
        return httpx.Response(200, json={"id": "lgr-1", "x_ledgerlm_receipt": receipt})

    answered = _ask_through_a_gateway(handler, monkeypatch)
    assert answered.status_code == 502 and claimed in answered.json()["error"]["message"], answered.text


class _Dribble(httpx.AsyncByteStream):
    def __init__(self, data: bytes, size: int = 7):
        self.data, self.size = data, size

    async def __aiter__(self):
        for start in range(0, len(self.data), self.size):
            yield self.data[start:start + self.size]


def test_a_streamed_receipt_another_key_signed_ends_the_stream_with_an_error(monkeypatch):
    """The stream's text passes through as it comes, but the last event's receipt is checked as a whole answer's:
    the client gets an error event in its place, never a receipt nobody here signed (CRLF-separated events
    included)."""
    receipt, claimed = _impostor_receipt()
    chunk = {"id": "lgr-1", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}
    last = {"id": "lgr-1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "x_ledgerlm_receipt": receipt}
    stream = f"data: {json.dumps(chunk)}\r\n\r\ndata: {json.dumps(last)}\r\n\r\ndata: [DONE]\r\n\r\n".encode()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/serving/status":
            return httpx.Response(200, json={**status(1), "node_address": claimed})
        # sent a few bytes at a time, so events and CRLFs are split across chunks
        return httpx.Response(200, stream=_Dribble(stream), headers={"content-type": "text/event-stream"})

    answered = _ask_through_a_gateway(handler, monkeypatch, stream=True)
    events = [json.loads(line[6:]) for line in answered.text.split("\n") if line.startswith("data: {")]
    assert answered.status_code == 200
    assert events[0]["choices"][0]["delta"]["content"] == "Hel"
    assert "x_ledgerlm_receipt" not in answered.text and "[DONE]" not in answered.text
    assert claimed in events[-1]["error"]["message"]



def test_a_receipt_paying_contributors_its_attribution_does_not_name_is_refused(monkeypatch):
    """A node could sign a receipt whose attribution names nobody and still pay an address of its choosing."""
    receipt, _ = _impostor_receipt()
    signer = receipt["body"]["node"]
    receipt["attribution"] = {"evidence_bps": 0, "pool_bps": 10_000, "contributor_bps": {"0x" + "ee" * 20: 1}}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/serving/status":
            return httpx.Response(200, json={**status(1), "node_address": signer})
        return httpx.Response(200, json={"id": "lgr-1", "x_ledgerlm_receipt": receipt})

    answered = _ask_through_a_gateway(handler, monkeypatch)
    assert answered.status_code == 502 and "attribution does not name" in answered.json()["error"]["message"]


def _signed_by_the_node(receipt_fields: dict | None = None) -> tuple[dict, str]:
    """A receipt a node's key really signed, as serving writes one (its fields, then `receipt_fields` changed
    after signing), and that key."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    from ledgerlm.economy import split_fee
    from ledgerlm.identity import SigningDomain
    from ledgerlm.identity.actions import typed_data
    from ledgerlm.serving.receipts import FeeShares, receipt_message

    node = Account.create()
    shares = FeeShares(node_bps=10_000, developer_bps=0, contributors_bps=0, validators_bps=0)
    parties = {"node": node.address, "developer": node.address, "datanet": None}
    row = {"id": "lgr-1", "epoch": 1, "consumer": node.address, "model_id": "m", "adapter_sha256": None,
           "prompt_tokens": 1, "completion_tokens": 1, "price_per_1k": "0", "fee": "0",
           "fee_policy": shares.to_dict(), "payouts": [p.to_dict() for p in split_fee(0, shares, **parties)],
           "datanet_roots": [], "attribution": None, "state": "final", "created_at": 1, "finalized_at": 1,
           "request": {"split": parties}}
    body = receipt_message(row, node.address)
    domain = SigningDomain.from_dict(status(1)["signing_domain"])
    signature = node.sign_message(encode_typed_data(full_message=typed_data("InferenceReceipt", body, domain)))
    receipt = {**row, "body": body, "signature": "0x" + bytes(signature.signature).hex().removeprefix("0x")}
    receipt.update(receipt_fields or {})
    return receipt, node.address


def _node(answer, *, address=True, signer=None, code=200, content_type="application/json"):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/serving/status":
            return httpx.Response(200, json={**status(1), **({"node_address": signer} if address else {})})
        body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        return httpx.Response(code, content=body, headers={"content-type": content_type})
    return handler


def test_answers_that_went_around_the_receipt_check_are_refused(monkeypatch):
    """A dishonest node's receipt passed unchecked when the answer was a 201, held a byte that is not UTF-8 (a
    lenient client still reads it), came from a node whose status named no key, was for another model than the
    one asked for, or showed fields other than those signed."""
    forged, claimed = _impostor_receipt()
    real, signer = _signed_by_the_node()
    other_model, _ = _signed_by_the_node({"model_id": "another"})
    shown_otherwise, _ = _signed_by_the_node({"prompt_tokens": 999})
    cases = {
        "a 201": _node({"id": "lgr-1", "x_ledgerlm_receipt": forged}, signer=claimed, code=201),
        "not UTF-8": _node(json.dumps({"id": "lgr-1\udcff", "x_ledgerlm_receipt": forged}).encode()
                           .replace(b"\\udcff", b"\xff"), signer=claimed),
        "no key named": _node({"id": "lgr-1", "x_ledgerlm_receipt": forged}, address=False),
        "another model": _node({"id": "lgr-1", "x_ledgerlm_receipt": other_model}, signer=signer),
        "fields not signed": _node({"id": "lgr-1", "x_ledgerlm_receipt": shown_otherwise}, signer=signer),
    }
    for case, handler in cases.items():
        answered = _ask_through_a_gateway(handler, monkeypatch)
        monkeypatch.undo()  # the next case's node in place of this one's
        assert answered.status_code == 502, (case, answered.text)
        assert "cannot vouch for" in answered.json()["error"]["message"], case
    honest = _ask_through_a_gateway(_node({"id": "lgr-1", "x_ledgerlm_receipt": real}, signer=signer), monkeypatch)
    assert honest.status_code == 200, honest.text


def test_a_node_answer_nested_past_the_parsers_stack_is_refused_and_the_gateway_lives(monkeypatch):
    """Once eth_account is imported the recursion limit is 100,000, and parsing a node's answer nested that deep
    ended the gateway's process (every caller's and every node's)."""
    import eth_account  # noqa: F401 - what raises the recursion limit, as the first receipt check does

    real, signer = _signed_by_the_node()
    deep = b'{"id": "lgr-1", "x_ledgerlm_receipt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    answered = _ask_through_a_gateway(_node(deep, signer=signer), monkeypatch)
    assert answered.status_code == 502 and "nests" in answered.json()["error"]["message"]
    error = _node_error_of(b'{"error": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert error.startswith('{"error"')


def _node_error_of(body: bytes) -> str:
    return gateway_app._node_error(httpx.Response(503), body)


def test_a_node_whose_every_receipt_fails_is_taken_out_of_rotation(monkeypatch):
    """Each answer counted as answered before its receipt was checked, so the failures never ran in a row and a
    node forging every receipt kept taking the calls of its warm model."""
    forged, claimed = _impostor_receipt()
    calls = {"http://bad": 0, "http://good": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        origin = f"{request.url.scheme}://{request.url.host}"
        if request.url.path == "/serving/status":
            return httpx.Response(200, json={**status(1), "node_address": claimed})
        calls[origin] += 1
        if origin == "http://bad":
            return httpx.Response(200, json={"id": "lgr-1", "x_ledgerlm_receipt": forged})
        return httpx.Response(200, json={"id": "lgr-2"})

    real = httpx.AsyncClient

    def mocked(*args, **kwargs):
        kwargs["transport"] = httpx.MockTransport(handler)
        return real(*args, **kwargs)

    monkeypatch.setattr(gateway_app.httpx, "AsyncClient", mocked)
    settings = GatewaySettings(nodes=("http://bad", "http://good"), down_after=3, health_interval=3600)
    with TestClient(create_gateway_app(settings)) as http:
        codes = [http.post("/v1/chat/completions", json={"model": "m", "messages": []}).status_code
                 for _ in range(10)]
    assert calls["http://bad"] <= 3 and codes.count(200) >= 7, (calls, codes)
