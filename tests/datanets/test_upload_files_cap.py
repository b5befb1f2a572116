"""The cap on files per upload (`max_upload_files`), enforced while the body is read."""

import asyncio
import threading

import pytest
from fastapi.testclient import TestClient

from ledgerlm.api import create_app
from ledgerlm.config import ConfigError, NodeConfig
from ledgerlm.datanets import UploadInProgress
from ledgerlm.node import Node
from tests.loops import run_apart

from .test_bad_input import assert_error, stored
from .test_upload_limits import _form, post, staged_files

CAP = 5


def files(count: int, tag: str = "") -> list[tuple[str, bytes]]:
    """`count` small JSON Lines files, each one distinct record."""
    return [(f"f{n}.jsonl", b'{"question": "q%s-%d", "answer": "a"}\n' % (tag.encode(), n)) for n in range(count)]


@pytest.fixture
def capped_node(home, qa):
    """The node with at most CAP files per upload; `writers` counts the staging files it begins."""
    config = home.load_config()
    config.max_upload_files = CAP
    home.save_config(config)
    with TestClient(create_app(lambda: Node.open(home))) as http:
        blobs = http.app.state.node.datanets.blobs
        begun = []
        writer = blobs.writer
        blobs.writer = lambda **kw: (begun.append(kw["label"]), writer(**kw))[1]
        http.writers = begun
        yield http


def test_the_default_cap_is_a_node_setting():
    assert NodeConfig().max_upload_files == 1000
    assert UploadInProgress(None, "qa").max_files == 1000


def test_a_cap_below_one_is_refused_in_the_config(home):
    config = home.load_config()
    config.max_upload_files = 0
    home.save_config(config)
    with pytest.raises(ConfigError) as refused:
        home.load_config()
    assert refused.value.field == "max_upload_files"


@pytest.mark.parametrize("chunked", [False, True])
def test_without_a_manifest_the_file_past_the_cap_is_refused_before_it_is_written(capped_node, home, bob,
                                                                                  chunked):
    before = stored(home)
    response = post(capped_node, bob, files(CAP + 1), manifest=False, chunked=chunked)
    error = assert_error(response, 413, f"at most {CAP} files", "max_upload_files", f"file {CAP + 1}",
                         f"f{CAP}.jsonl", "nothing was stored")
    assert error["field"] == "files"
    assert capped_node.writers == [f"f{n}.jsonl" for n in range(CAP)]  # the extra file was never begun
    assert stored(home) == before and staged_files(home) == []  # no contribution rows, no blobs, no staging


def test_a_manifest_listing_more_than_the_cap_is_refused_unread(capped_node, home, bob):
    before = stored(home)
    response = post(capped_node, bob, files(CAP + 1))
    error = assert_error(response, 413, f"lists {CAP + 1} files", f"at most {CAP}", "max_upload_files",
                         "nothing was read")
    assert error["field"] == "files"
    assert capped_node.writers == []
    assert stored(home) == before and staged_files(home) == []


@pytest.mark.parametrize("manifest", [True, False])
def test_an_upload_at_the_cap_is_stored(capped_node, home, bob, manifest):
    (contributions, uploads), _ = stored(home)
    response = post(capped_node, bob, files(CAP, tag=str(manifest)), manifest=manifest)
    assert response.status_code == 201, response.text
    assert stored(home)[0] == (contributions + CAP, uploads + 1)
    assert staged_files(home) == []
    # the cap is per upload: the next one may hold as many again
    assert post(capped_node, bob, files(CAP, tag=f"next{manifest}"), manifest=manifest).status_code == 201


def test_the_parts_are_staged_off_the_event_loop(capped_node, home, bob):
    """The blocking work of each part (staging files, fsync, the signature and quota checks) runs in a
    worker thread, never on the thread that runs the event loop."""
    from starlette.requests import Request

    from ledgerlm.api.multipart import receive_upload

    body, content_type = _form(capped_node, bob, files(3))
    messages = [{"type": "http.request", "body": body[i:i + 100], "more_body": i + 100 < len(body)}
                for i in range(0, len(body), 100)]
    datanets = capped_node.app.state.node.datanets
    threads = []
    writer = datanets.blobs.writer
    datanets.blobs.writer = lambda **kw: (threads.append(threading.get_ident()), writer(**kw))[1]

    async def receive():
        return messages.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/datanets/qa/contributions",
             "headers": [(b"content-type", content_type.encode())]}
    upload = UploadInProgress(datanets, "qa")
    try:
        _, loop_thread = run_apart(receive_upload(Request(scope, receive), upload, max_body=10**9, max_files=3))
        assert [name for name, _ in upload.staged] == ["f0.jsonl", "f1.jsonl", "f2.jsonl"]
        assert len(threads) == 3 and loop_thread not in threads
    finally:
        upload.abort()
    assert staged_files(home) == []


def test_a_client_that_goes_away_mid_upload_is_a_refusal_and_leaves_nothing_staged(capped_node, home, bob):
    from starlette.requests import Request

    from ledgerlm.api.multipart import receive_upload
    from ledgerlm.errors import LedgerError

    body, content_type = _form(capped_node, bob, files(3))
    messages = [{"type": "http.request", "body": body[: len(body) // 2], "more_body": True},
                {"type": "http.disconnect"}]

    async def receive():
        return messages.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/datanets/qa/contributions",
             "headers": [(b"content-type", content_type.encode())]}
    upload = UploadInProgress(capped_node.app.state.node.datanets, "qa")
    with pytest.raises(LedgerError, match="went away") as refused:
        run_apart(receive_upload(Request(scope, receive), upload, max_body=10**9))
    assert refused.value.field == "body" and refused.value.status == 400
    assert staged_files(home) == []


def test_a_file_named_only_by_an_encoded_filename_star_is_refused_as_such(capped_node, home, bob):
    body, content_type = _form(capped_node, bob, files(1))
    encoded = body.replace(b'filename="f0.jsonl"', b"filename*=UTF-8''..%2F..%2Ff0.jsonl")
    assert encoded != body
    response = capped_node.post("/datanets/qa/contributions", content=encoded, headers={"content-type": content_type})
    error = assert_error(response, 400, "filename=", "filename*= alone is not read")
    assert error["field"] == "files" and staged_files(home) == []


def test_an_upload_cancelled_while_a_worker_stages_its_chunk_leaves_nothing_staged(capped_node, home, bob):
    """A native task cancel (a server's shutdown timeout) stops awaiting the worker; the abort waits for it."""
    import time

    from starlette.requests import Request

    from ledgerlm.api.multipart import receive_upload

    body, content_type = _form(capped_node, bob, files(3))
    datanets = capped_node.app.state.node.datanets
    started = threading.Event()
    writer = datanets.blobs.writer

    def slow_writer(**kw):  # a slow disk: each staged file takes a while to create
        started.set()
        time.sleep(0.2)
        return writer(**kw)

    datanets.blobs.writer = slow_writer
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": "/datanets/qa/contributions",
             "headers": [(b"content-type", content_type.encode())]}
    upload = UploadInProgress(datanets, "qa")

    async def cancel_mid_chunk():
        task = asyncio.create_task(receive_upload(Request(scope, receive), upload, max_body=10**9, max_files=5))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(1.0)  # long enough for a worker left running to stage the rest of its chunk

    run_apart(cancel_mid_chunk())
    assert staged_files(home) == []


def test_a_replayed_upload_is_refused_before_any_file_byte_is_read(capped_node, home, bob):
    """Its signature is checked first, and its nonce with it: a captured upload sent again costs the node no
    parse and no staged file."""
    import hashlib

    from ledgerlm.datanets import FileEntry, manifest_hash
    from ledgerlm.identity import sign_action

    from .test_upload_limits import node_domain

    batch = files(2, tag="replay")
    entries = [FileEntry(name=n, sha256=hashlib.sha256(b).hexdigest(), size=len(b)) for n, b in batch]
    signed = sign_action(bob, "Contribute", {"datanet": "qa", "manifestHash": manifest_hash(entries)},
                         domain=node_domain(capped_node))
    assert post(capped_node, bob, batch, signed=signed).status_code == 201
    before, capped_node.writers[:] = stored(home), []
    again = post(capped_node, bob, batch, signed=signed)
    error = assert_error(again, 401, "already used", "replayed Contribute")
    assert error["field"] == "nonce"
    assert capped_node.writers == [] and stored(home) == before


def test_an_upload_in_process_meets_the_same_cap(home, qa, bob):
    """The CLI without --node stores uploads in-process: past max_upload_files it is refused before a file is
    read, as over HTTP."""
    import hashlib
    import io

    from ledgerlm.datanets import DatanetError, FileEntry, IncomingFile, manifest_hash
    from ledgerlm.identity import sign_action

    config = home.load_config()
    config.max_upload_files = CAP
    home.save_config(config)
    node = Node.open(home)
    try:
        batch = files(CAP + 1, tag="local")
        entries = [FileEntry(name=n, sha256=hashlib.sha256(b).hexdigest(), size=len(b)) for n, b in batch]
        signed = sign_action(bob, "Contribute", {"datanet": "qa", "manifestHash": manifest_hash(entries)},
                             domain=node.domain)
        before = stored(home)
        with pytest.raises(DatanetError) as refused:
            node.datanets.contribute("qa", signed, [IncomingFile(n, io.BytesIO(b)) for n, b in batch])
        assert refused.value.field == "files" and refused.value.status == 413
        assert f"at most {CAP} files" in refused.value.message and stored(home) == before
    finally:
        node.close()
