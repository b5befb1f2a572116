"""The event index through the API: the operator indexes on demand, or `serve` follows the chain by itself."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from ledgerlm.api import create_app
from ledgerlm.node import Node


def test_serve_keeps_the_index_at_the_head_when_told_to(home):
    config = home.load_config()
    config.chain_index_seconds = 1
    home.save_config(config)

    with TestClient(create_app(lambda: Node.open(home)), base_url="http://localhost",
                    client=("127.0.0.1", 50000)) as http:
        deadline = time.monotonic() + 30
        while True:
            status = http.get("/chain/index").json()
            if status["indexed_block"] == status["chain_head"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)

    assert status["indexed_block"] == status["chain_head"] and status["lag"] == 0
    assert status["events"] > 0  # the deployment's role grants and the treasury's mint
    assert set(status["derived"]) >= {"anchored_versions", "deposits", "settled_chunks", "claims"}
