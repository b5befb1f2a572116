"""Shared fixtures: a fresh node home, the real app in-process, and signing accounts."""

from __future__ import annotations

import os

import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

os.environ.setdefault("LEDGERLM_KDF_ITERATIONS", "1024")  # keystores stay real, unlock stays fast
os.environ.setdefault("LEDGERLM_NODE_PASSPHRASE", "node-passphrase-for-tests")
os.environ.setdefault("LEDGERLM_ADMIN_PASSPHRASE", "admin-passphrase-for-tests")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Property tests judge outcomes, never speed: a busy two-core CI machine must not fail them by timing.
settings.register_profile("ledgerlm", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ledgerlm")

from ledgerlm.api import create_app  # noqa: E402
from ledgerlm.client import NodeClient  # noqa: E402
from ledgerlm.config import Home  # noqa: E402
from ledgerlm.node import Node  # noqa: E402


@pytest.fixture
def home(tmp_path) -> Home:
    h = Home(tmp_path / "home")
    Node.init(h).close()
    return h


@pytest.fixture
def http(home):
    # A loopback client address, as for a local CLI; the faucet answers only on loopback.
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://ledgerlm.test",
                    client=("127.0.0.1", 50000)) as c:
        yield c


@pytest.fixture
def client(http, home) -> NodeClient:
    """The node operator's client: it sends the home's operator token, as the CLI does."""
    return NodeClient(http, operator_token=home.operator_token_path.read_text().strip())


@pytest.fixture
def alice():
    return Account.from_key(b"\x01" * 32)


@pytest.fixture
def bob():
    return Account.from_key(b"\x02" * 32)


@pytest.fixture
def carol():
    return Account.from_key(b"\x03" * 32)
