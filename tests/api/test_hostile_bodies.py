"""Bodies built to break the parser: deep nesting, endless numbers, half surrogate pairs, bytes that are not text.
Each is refused with a 422 naming `body` before any route parses it, and the node keeps answering."""

import time

import pytest
from fastapi.testclient import TestClient

from ledgerlm.api import create_app
from ledgerlm.api.limits import MAX_JSON_DEPTH, json_body_problem
from ledgerlm.config import Home
from ledgerlm.node import Node
from tests.loops import run_apart

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    """One node for the module: every request here is refused, so none changes what the next one meets."""
    home = Home(tmp_path_factory.mktemp("hostile") / "home")
    Node.init(home).close()
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://ledgerlm.test") as client:
        yield client


def nested(depth: int) -> bytes:
    return b'{"model":"m","messages":' + b"[" * depth + b"]" * depth + b"}"


def assert_refused(response, words: str) -> None:
    # the OpenAI-compatible routes answer 400, as OpenAI does; the node's own 422
    openai = response.request.url.path.startswith("/v1/")
    assert response.status_code == (400 if openai else 422), response.text
    error = response.json()["error"]
    assert error["field"] == "body" and words in error["message"], error


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/datanets", "/economy/caps", "/attribution"])
def test_a_body_nested_past_the_parsers_stack_is_refused_and_the_node_lives(http, path):
    # 200,000 levels once ended the whole process: the interpreter's recursion limit is raised by py_ecc
    assert_refused(http.post(path, content=nested(200_000), headers=JSON), "nests")
    assert_refused(http.post(path, content=b"[" * 100_000, headers={}), "nests")  # no type: parsed as JSON too
    assert http.get("/node/info").status_code == 200


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-16"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/datanets"])
def test_a_json_body_in_utf16_or_utf32_is_refused_before_the_guard_misreads_it(http, path, encoding):
    # the parser decodes UTF-16 and UTF-32 by itself, but the guard reads bytes: an escaped quote in UTF-16 hid
    # every bracket after it, and 100,000 levels ended the process. Text in those encodings is refused whole.
    text = '["\\"", ' + "[" * 100_000 + "]" * 100_000 + "]"
    assert_refused(http.post(path, content=text.encode(encoding), headers=JSON), "not UTF-8")
    chat = '{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}'
    assert_refused(http.post(path, content=chat.encode(encoding), headers=JSON), "not UTF-8")
    assert http.get("/node/info").status_code == 200
    assert json_body_problem('{"a": "é"}'.encode("utf-8-sig")) is None  # UTF-8 with a byte-order mark is UTF-8


def test_a_second_content_type_header_does_not_let_a_deep_body_past_the_guard(http):
    # the route parses by the first Content-Type; a trailing form type once made the guard skip the body, and
    # 200,000 levels sent that way ended the process
    for types in (("application/json", "multipart/form-data"), ("application/x-www-form-urlencoded", "text/plain")):
        headers = [("content-type", t) for t in types]
        assert_refused(http.post("/v1/chat/completions", content=nested(1000), headers=headers), "nests")


def test_a_read_request_expiry_past_what_int_reads_is_named(http):
    # 5,000 digits passed the digits check and then failed to convert: a 500 on every read route
    node = http.get("/node/info").json()["node_address"]
    for digits, named in ((5000, "characters"), (400, "unix time")):  # past the header's bound, and within it
        value = "0x" + "11" * 20 + ":" + node + ":*:" + "9" * digits + ":0x00"
        response = http.get("/datanets", headers={"X-Ledgerlm-Read": value})
        assert response.status_code == 401, response.text
        assert response.json()["error"]["field"] == "x-ledgerlm-read" and named in response.json()["error"]["message"]


def test_half_a_surrogate_pair_is_refused_where_it_once_reached_the_database(http):
    lone = b'{"consumer":"0x' + b"11" * 20 + b'","cap":1,"nonce":1,"deadline":1,"signature":"0x\\ud800"}'
    assert_refused(http.post("/economy/caps", content=lone, headers=JSON), "surrogate")
    prompt = b'{"model":"m\\udc00x","prompt":"hi"}'
    assert_refused(http.post("/attribution", content=prompt, headers=JSON), "surrogate")


def test_a_number_longer_than_python_converts_is_named(http):
    body = b'{"address":"0x' + b"11" * 20 + b'","tokens":' + b"9" * 5000 + b"}"
    assert_refused(http.post("/chain/faucet", content=body, headers=JSON), "digits")


def test_bytes_that_are_not_utf8_get_the_error_shape_every_route_uses(http):
    response = http.post("/chain/faucet", content=b'{"address":"\xff\xfe"}', headers=JSON)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["field"] == "body" and "JSON" in error["message"]


def test_the_guard_reads_json_as_json():
    assert json_body_problem(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is None
    assert "65 levels" in json_body_problem(b"[" * (MAX_JSON_DEPTH + 1))
    assert json_body_problem(b'{"text":"' + b"[" * 10_000 + b'"}') is None  # brackets inside a string are text
    assert json_body_problem(b'{"text":"\\"[[[[\\\\"}') is None  # escaped quotes do not end the string
    assert json_body_problem(b'["\\ud83d\\ude00", "\\uD83D\\uDE00"]') is None  # a pair is one character
    assert json_body_problem(b'["\\\\ud800"]') is None  # an escaped backslash, then the text "ud800"
    assert json_body_problem(b'["\\\\\\ud800"]') is not None  # a backslash, then a lone escape
    assert json_body_problem(b'["\\ude00\\ud83d"]') is not None  # low before high is no pair
    assert json_body_problem(b'["\\ud83d", "\\ude00"]') is not None  # halves in two strings
    assert json_body_problem(b'{"amount":' + b"9" * 78 + b"}") is None  # a uint256 stays readable
    assert json_body_problem(b'{"text":"' + b"9" * 5000 + b'"}') is None  # digits in a string are text


@pytest.mark.parametrize("method, path, body, field", [
    ("POST", "/economy/caps", {"consumer": "0x" + "11" * 19 + "zz", "cap": 1, "nonce": 1, "deadline": 1,
                               "signature": "0x00"}, "consumer"),
    ("GET", "/receipts?account=%ff", None, "account"),
    ("GET", "/apikeys?consumer=not-an-address", None, "consumer"),
    ("GET", "/receipts?limit=-1", None, "limit"),
    ("GET", "/economy/earnings/x", None, "address"),
    ("GET", "/economy/caps/0", None, "consumer"),
    ("GET", "/providers/offers?provider=x", None, "provider"),
    ("GET", "/providers/jobs?provider=x", None, "provider"),
    ("GET", "/providers/jobs?requester=datanet:x", None, "requester"),
    ("GET", "/reputation/-1", None, "address"),
    ("GET", "/validation/queue/x", None, "address"),
    ("POST", "/factory/jobs", {"request": {"bogus": 1}, "action": {"action": "TrainModel", "message": {},
                                                                   "signature": "0x"}}, "model_id"),
    ("POST", "/factory/jobs", {"request": {"model_id": "../../x", "datanet": "a", "version": 1},
                               "action": {"action": "TrainModel", "message": {}, "signature": "0x"}}, "model_id"),
])
def test_a_malformed_address_or_limit_is_named_not_a_server_error(http, method, path, body, field):
    response = http.request(method, path, json=body)
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize("signature", ["0x" + "00" * 65, "0x" + "00" * 10, "0x" + "ff" * 65, "zz", ""])
def test_a_signature_that_cannot_be_recovered_is_named_not_a_server_error(http, signature):
    # eth-keys refuses these with its own exceptions (BadSignature, ValidationError), which once became a 500
    cap = {"consumer": "0x" + "11" * 20, "cap": 1, "nonce": 1, "deadline": 10**12, "signature": signature}
    claim = {"action": {"action": "ClaimPayout", "signature": signature, "message": {
        "account": "0x" + "11" * 20, "epoch": 1, "nonce": 1, "deadline": int(time.time()) + 600}}}
    for path, body in (("/economy/caps", cap), ("/economy/claims", claim)):
        response = http.post(path, json=body)
        assert response.status_code == 401, response.text
        error = response.json()["error"]
        assert error["field"] == "signature" and "signature is malformed" in error["message"], error


def test_a_body_that_trickles_in_is_cut_off_at_the_deadline():
    import asyncio

    from ledgerlm.api.limits import BodyLimit, BodyTooSlow

    async def route(scope, receive, send):  # reads the whole body, as every route does before it parses
        while (await receive()).get("more_body"):
            pass

    async def trickle():
        await asyncio.sleep(0.05)
        return {"type": "http.request", "body": b"[", "more_body": True}

    async def whole():
        return {"type": "http.request", "body": b"[]", "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    guarded = BodyLimit(route, body_seconds=0.3)
    with pytest.raises(BodyTooSlow, match="within 0.3 s"):
        run_apart(guarded(scope, trickle, None))
    run_apart(guarded(scope, whole, None))  # a body that arrives in time passes


def test_what_the_framework_refuses_reads_like_every_other_refusal(http):
    response = http.get("/no/such/route")
    assert response.status_code == 404 and response.json()["error"]["message"] == "Not Found"
    response = http.post("/web/playground/attribution", data={"prompt": "x" * (1 << 21)})
    assert response.status_code == 400 and "maximum size" in response.json()["error"]["message"]


def test_the_node_info_shows_server_paths_to_the_operator_only(http):
    public = http.get("/node/info").json()
    assert "home" not in public and public["blobs"] == "local" and public["signing_domain"]
    token = (http.app.state.node.home.root / "operator_token").read_text().strip()
    private = http.get("/node/info", headers={"Authorization": f"Bearer {token}"}).json()
    assert private["home"] == str(http.app.state.node.home.root) and private["blobs"] != "local"


def test_a_body_that_is_not_json_says_why_and_where(http):
    response = http.post("/datanets", content=b'{"spec": ', headers=JSON)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "body" and error["message"].startswith("the request body is not valid JSON: ")
    assert "at character" in error["message"], error
