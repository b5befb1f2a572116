"""Shared fixtures: a fresh node home, the real app in-process, and signing accounts."""

from __future__ import annotations

import os
import shutil

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
from tests.postgres import database_url, postgres_server, pytest_generate_tests  # noqa: E402, F401


@pytest.fixture(scope="session")
def sqlite_home_template(tmp_path_factory) -> Home:
    """One freshly initialised SQLite home per session. Deploying the contracts on the embedded chain is most
    of `Node.init`'s cost, and every test that needs a home would otherwise pay it again."""
    h = Home(tmp_path_factory.mktemp("template") / "home")
    Node.init(h).close()
    return h


@pytest.fixture
def home(tmp_path, database_url, request) -> Home:  # noqa: F811 - the fixture imported above
    """A fresh node home; its database is SQLite, or PostgreSQL where a suite runs on both.

    A SQLite home is a copy of the session's freshly initialised one: the same files `Node.init` writes
    (keys, deployment, chain state, database), with nothing any test did to them."""
    h = Home(tmp_path / "home")
    if database_url:
        Node.init(h, database_url=database_url).close()
    else:
        shutil.copytree(request.getfixturevalue("sqlite_home_template").root, h.root)
    return h


@pytest.fixture
def http(home):
    # A loopback client address, as for a local CLI; the faucet answers only on loopback.
    with TestClient(create_app(lambda: Node.open(home)), base_url="http://localhost",
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


@pytest.fixture(scope="session")
def s3_endpoint():
    """A local S3-compatible server (moto in server mode) on a loopback port, for the S3 blob store's tests."""
    try:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
    except Exception as exc:  # noqa: BLE001 - any failure to start means the S3 tier cannot run here
        pytest.skip(f"the local S3 server (moto[server]) cannot start: {exc}")
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_blobs(s3_endpoint, monkeypatch, request) -> str:
    """A fresh bucket on the local S3 server; returns its s3://bucket/prefix URL (credentials set in the env)."""
    import uuid

    import boto3

    for name, value in (("AWS_ACCESS_KEY_ID", "ledgerlm-test"), ("AWS_SECRET_ACCESS_KEY", "ledgerlm-test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    bucket = f"ledgerlm-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/node-a"


@pytest.fixture
def s3_home(tmp_path, s3_endpoint, s3_blobs) -> Home:
    """A node home whose blobs live in a bucket on the local S3 server."""
    h = Home(tmp_path / "home")
    Node.init(h, blobs=s3_blobs, s3_endpoint_url=s3_endpoint).close()
    return h
