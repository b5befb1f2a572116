"""Routes that read server files or start heavy work answer only to the node operator's credential."""

import os
import stat

import pytest

from ledgerlm.node import OPERATOR_TOKEN_PREFIX


def operator_header(home) -> dict:
    return {"Authorization": f"Bearer {home.operator_token_path.read_text().strip()}"}


def test_init_writes_a_private_operator_token(home):
    token = home.operator_token_path.read_text().strip()
    assert token.startswith(OPERATOR_TOKEN_PREFIX) and not token.startswith("sk-lgr-")
    assert len(token) > len(OPERATOR_TOKEN_PREFIX) + 32
    assert stat.S_IMODE(os.stat(home.operator_token_path).st_mode) == 0o600
    # the database beside it holds private Datanets' records: the home is its user's alone
    assert stat.S_IMODE(os.stat(home.root).st_mode) == 0o700


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/models/base", {"name": "etc", "path": "/etc"}),
        ("POST", "/models/base/pull", {"name": "smollm2-135m"}),
        ("POST", "/models/some-model/merge", None),
        ("POST", "/chain/index", {"max_blocks": 10}),
    ],
)
def test_heavy_routes_refuse_anonymous_and_wrong_tokens(http, home, method, path, body):
    for headers in ({}, {"Authorization": "Bearer lgr-operator-wrong"}, {"Authorization": "Basic abc"}):
        response = http.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, response.text
        error = response.json()["error"]
        assert error["field"] == "authorization" and "operator" in error["message"]


def test_operator_gets_past_the_check(http, home, tmp_path):
    headers = operator_header(home)
    registered = http.post("/models/base", json={"name": "empty", "path": str(tmp_path)}, headers=headers)
    assert registered.status_code == 400, registered.text  # refused for what it is, not for who asks
    assert "authorization" != registered.json()["error"]["field"]
    merged = http.post("/models/no-such-model/merge", headers=headers)
    assert merged.status_code == 404, merged.text
    assert http.get("/models/base").status_code == 200  # reading the list stays open



def test_a_hosted_chain_endpoints_credential_is_shown_to_the_operator_only(http, home):
    """Hosted JSON-RPC endpoints carry their key in the URL (user:pass@, Infura's /v3/KEY, Alchemy's /v2/KEY): the
    node served it whole to anyone on /node/info, /chain/info and its dashboard's home page."""
    from ledgerlm.chain.endpoints import public_url

    url = "https://rpcuser:RPC-PASSWORD@eth.example.net:8545/v2/ALCHEMY-KEY-123?token=QUERY-SECRET"
    http.app.state.node.config.chain = url  # the node reads its chain elsewhere; this is what it shows
    secrets = ("RPC-PASSWORD", "rpcuser", "ALCHEMY-KEY-123", "QUERY-SECRET")
    for path in ("/node/info", "/chain/info", "/"):  # the chain route, unable to reach it, names it as safely
        shown = http.get(path).text
        assert not any(secret in shown for secret in secrets), path
        assert "https://eth.example.net:8545/***" in shown, path
    assert http.get("/node/info", headers=operator_header(home)).json()["chain"] == url
    assert public_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
    assert public_url("http://[::1]:8545/") == "http://[::1]:8545"
