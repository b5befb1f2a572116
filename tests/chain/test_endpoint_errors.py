"""A hosted JSON-RPC endpoint's key rides in its URL, which an HTTP client's errors repeat: no chain error names it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ledgerlm.chain import ChainError
from ledgerlm.chain.endpoints import public_url, scrub_urls
from ledgerlm.chain.rpc import open_rpc


class _Throttling(BaseHTTPRequestHandler):
    """Answers eth_chainId, then 429 to everything else, as a hosted endpoint over its rate does."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body["method"] == "eth_chainId":
            out = json.dumps({"jsonrpc": "2.0", "id": body["id"], "result": "0x539"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        else:
            self.send_response(429)
            self.send_header("Content-Length", "0")
            self.end_headers()


def test_an_endpoint_that_fails_a_call_is_named_without_its_key():
    server = HTTPServer(("127.0.0.1", 0), _Throttling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        chain = open_rpc(f"http://user:PASS@127.0.0.1:{server.server_port}/v2/SECRETKEY123?token=Q")
        with pytest.raises(ChainError) as refused:
            chain.send_raw(b"\x01\x02")
    finally:
        server.shutdown()
    text = f"{refused.value} {refused.value.reason}"
    assert not any(secret in text for secret in ("SECRETKEY123", "PASS", "token=Q"))
    assert refused.value.status == 503 and refused.value.field == "chain"  # the endpoint's fault, not the caller's


def test_urls_in_text_keep_scheme_host_and_port():
    assert scrub_urls("429 for url: https://eth.example:8545/v3/KEY?x=1 (retry)") == \
        "429 for url: https://eth.example:8545/*** (retry)"
    assert public_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
