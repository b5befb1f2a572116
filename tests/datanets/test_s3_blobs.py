"""The Datanet path on a node whose blobs live in an S3 bucket: the same upload, export and crash tests as on
the home's blob directory, plus a check that the bytes really went to the bucket."""

import pytest

from ledgerlm.node import Node

from .test_crash_safety import test_kill_during_uploads_leaves_consistent_state as kill_during_uploads
from .test_lifecycle import (  # noqa: F401 - rerun on S3
    test_contribute_accept_publish_export,
    test_documents_datanet_takes_every_document_format,
)


@pytest.fixture
def home(s3_home):
    return s3_home


@pytest.mark.slow
def test_kill_during_uploads_on_s3(home, tmp_path):
    kill_during_uploads(home, tmp_path)


def test_blobs_live_in_the_bucket_not_the_home(client, qa, bob, home, tmp_path):
    from .conftest import write_jsonl

    receipt = client.contribute("qa", [write_jsonl(tmp_path / "b.jsonl", [{"question": "q?", "answer": "a"}])], bob)
    assert receipt.contribution_count == 1
    assert client.info()["blobs"].startswith("s3://")
    node = Node.open(home)
    try:
        stored = node.blobs.hashes()
        assert stored and all(node.blobs.exists(h) for h in stored)
        assert not list(home.blobs.glob("??/??/*")), "nothing under the home's blob directory"
    finally:
        node.close()
