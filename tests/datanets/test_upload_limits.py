"""Upload limits enforced while the body is read: declared sizes first, then a running count."""

import hashlib
import io

import orjson
import pytest
from fastapi.testclient import TestClient

from ledgerlm.api import create_app
from ledgerlm.api.multipart import READ_BUFFER
from ledgerlm.datanets import FileEntry, manifest_hash
from ledgerlm.identity import sign_action
from ledgerlm.node import Node
from tests.loops import run_apart

from .test_bad_input import GOOD, assert_error, node_domain, stored

LIMIT = 100_000


def staged_files(home) -> list[str]:
    return sorted(p.name for p in (home.blobs / "staging").iterdir())


@pytest.fixture
def small_node(home, qa):
    """The node with a 100 kB per-file limit and a 250 kB quota per account."""
    config = home.load_config()
    config.max_upload_bytes = LIMIT
    config.storage_quota_bytes = 5 * LIMIT // 2
    home.save_config(config)
    with TestClient(create_app(lambda: Node.open(home))) as http:
        yield http


def post(http, account, files, *, declared=None, manifest=True, signed=None, headers=None, chunked=False):
    """Upload (name, bytes) files; `declared` replaces the manifest the contributor signs.

    `chunked` sends the body without a Content-Length, as a streaming client may, so only the
    running count can stop it."""
    entries = declared or [FileEntry(name=n, sha256=hashlib.sha256(b).hexdigest(), size=len(b)) for n, b in files]
    if signed is None:
        signed = sign_action(account, "Contribute", {"datanet": "qa", "manifestHash": manifest_hash(entries)},
                             domain=node_domain(http))
    data = {"action": orjson.dumps(signed.model_dump()).decode()}
    if manifest:
        data["manifest"] = orjson.dumps([[e.name, e.sha256, e.size] for e in entries]).decode()
    request = http.build_request("POST", "/datanets/qa/contributions", data=data, headers=headers or {},
                                 files=[("files", (n, io.BytesIO(b))) for n, b in files])
    if not chunked:
        return http.send(request)
    body = request.read()
    return http.post("/datanets/qa/contributions", content=iter([body]),
                     headers={"content-type": request.headers["content-type"]})


def big_file(size: int, tag: str = "") -> bytes:
    """`size` bytes of distinct JSON Lines records (the last line may be cut short)."""
    lines = []
    total = 0
    while total < size:
        lines.append(b'{"question": "q%s-%d", "answer": "%s"}\n' % (tag.encode(), len(lines), b"a" * 80))
        total += len(lines[-1])
    return b"".join(lines)[:size]


def test_declared_size_over_the_limit_is_refused_before_reading(small_node, home, bob):
    before = stored(home)
    response = post(small_node, bob, [("big.jsonl", big_file(2 * LIMIT))])
    assert_error(response, 413, "big.jsonl", "declared as 200000 bytes", f"limit is {LIMIT}", "nothing was read")
    assert stored(home) == before and staged_files(home) == []


def test_a_file_larger_than_signed_stops_within_one_buffer(small_node, home, bob):
    """The manifest claims 1 kB; the body carries 5 MB: reading stops one buffer past 1 kB."""
    body = big_file(5_000_000)
    declared = [FileEntry(name="liar.jsonl", sha256=hashlib.sha256(body[:1000]).hexdigest(), size=1000)]
    response = post(small_node, bob, [("liar.jsonl", body)], declared=declared, chunked=True)
    error = assert_error(response, 401, "liar.jsonl", "signed size of 1000 bytes", "nothing was kept")
    read = int(error["message"].split("stopped reading after ")[1].split(" ")[0])
    assert 1000 < read <= 1000 + READ_BUFFER
    assert stored(home)[0] == (0, 0) and staged_files(home) == []


def test_without_a_manifest_a_file_stops_at_the_limit_plus_one_buffer(small_node, home, bob):
    response = post(small_node, bob, [("big.jsonl", big_file(3_000_000))], manifest=False, chunked=True)
    error = assert_error(response, 413, "big.jsonl", f"upload limit of {LIMIT} bytes")
    read = int(error["message"].split("stopped reading after ")[1].split(" ")[0])
    assert LIMIT < read <= LIMIT + READ_BUFFER
    assert stored(home)[0] == (0, 0) and staged_files(home) == []


def test_a_garbage_signature_is_refused_before_any_file_byte(small_node, home, bob):
    entries = [FileEntry(name="a.jsonl", sha256="00" * 32, size=len(GOOD))]
    signed = sign_action(bob, "Contribute", {"datanet": "qa", "manifestHash": manifest_hash(entries)},
                         domain=node_domain(small_node))
    signed.signature = "0x" + "11" * 65
    response = post(small_node, bob, [("a.jsonl", big_file(2_000_000))], manifest=False, signed=signed,
                    chunked=True)
    assert_error(response, 401, "signature")
    assert staged_files(home) == [] and stored(home)[0] == (0, 0)


def test_a_request_longer_than_any_upload_may_be_is_refused_unread(small_node, home, bob):
    response = post(small_node, bob, [("a.jsonl", GOOD)], headers={"Content-Length": str(10**12)})
    assert_error(response, 413, "declares 1000000000000 bytes", "nothing was read")


def test_the_per_account_quota(small_node, home, bob, carol):
    for n in range(2):
        lines = big_file(LIMIT - 1000, tag=str(n)).rsplit(b"\n", 1)[0] + b"\n"
        assert post(small_node, bob, [(f"part{n}.jsonl", lines)]).status_code == 201
    before = stored(home)
    response = post(small_node, bob, [("more.jsonl", big_file(LIMIT, tag="m"))])
    assert_error(response, 413, "quota of 250000 bytes", bob.address)
    assert stored(home) == before and staged_files(home) == []
    other = big_file(LIMIT - 1000, tag="c").rsplit(b"\n", 1)[0] + b"\n"
    assert post(small_node, carol, [("other.jsonl", other)]).status_code == 201  # the quota is per account


def test_without_a_manifest_files_together_stop_at_the_quota_left(small_node, home, bob):
    files = [(f"f{n}.jsonl", big_file(LIMIT - 10_000, tag=str(n))) for n in range(4)]  # 360 kB against 250 kB
    response = post(small_node, bob, files, manifest=False, chunked=True)
    assert_error(response, 413, "f2.jsonl", "storage quota left")
    assert stored(home)[0] == (0, 0) and staged_files(home) == []


def _receive_counted(small_node, messages: list[bytes], max_body: int):
    """`receive_upload` of a body sent as `messages` without a length; the error or None, and how many it read."""

    from starlette.requests import Request

    from ledgerlm.api.multipart import receive_upload
    from ledgerlm.datanets import UploadInProgress
    from ledgerlm.errors import LedgerError

    read = []

    async def receive():
        read.append(1)
        more = len(read) < len(messages)
        return {"type": "http.request", "body": messages[len(read) - 1], "more_body": more}

    content_type = messages[-1].decode()  # the last message stands for the content type
    messages = messages[:-1]
    scope = {"type": "http", "method": "POST", "path": "/datanets/qa/contributions",
             "headers": [(b"content-type", content_type.encode())]}
    upload = UploadInProgress(small_node.app.state.node.datanets, "qa")
    try:
        run_apart(receive_upload(Request(scope, receive), upload, max_body=max_body))
        error = None
    except LedgerError as exc:
        error = exc
    upload.abort()
    return error, len(read)


def test_a_body_without_a_length_is_read_only_as_far_as_an_upload_may_go(small_node, home, bob):
    """Bytes after the closing boundary are no part of the form, and a body without a length is
    counted as it arrives: nothing past the most an upload may hold is read, whatever follows."""
    body, content_type = _form(small_node, bob, [("a.jsonl", GOOD)])
    trailing = [b"x" * 65536] * 1000  # 64 MB, if anyone read them
    error, read = _receive_counted(small_node, [body, *trailing, content_type.encode()], max_body=10**9)
    assert error is None and read == 1
    endless = [body[:body.index(GOOD)], *trailing, content_type.encode()]  # a file that never ends
    error, read = _receive_counted(small_node, endless, max_body=LIMIT // 2)  # below the file limit
    assert error.status == 413 and f"passed {LIMIT // 2} bytes" in error.message and read <= 3
    assert staged_files(home) == []


def _form(http, account, files):
    """The bytes and content type of a whole, signed upload form."""
    entries = [FileEntry(name=n, sha256=hashlib.sha256(b).hexdigest(), size=len(b)) for n, b in files]
    signed = sign_action(account, "Contribute", {"datanet": "qa", "manifestHash": manifest_hash(entries)},
                         domain=node_domain(http))
    request = http.build_request("POST", "/datanets/qa/contributions",
                                 data={"action": orjson.dumps(signed.model_dump()).decode()},
                                 files=[("files", (n, io.BytesIO(b))) for n, b in files])
    return request.read(), request.headers["content-type"]


def test_a_body_cut_short_in_a_file_stores_nothing_and_leaves_no_staged_bytes(small_node, home, bob):
    """A chunked body (or a Content-Length below the real size) may end cleanly in the middle of a file."""
    body, content_type = _form(small_node, bob, [("a.jsonl", GOOD + b'{"question": "q2", "answer": "b"}\n')])
    before = stored(home)
    cut = body[:body.index(GOOD) + len(GOOD)]
    response = small_node.post("/datanets/qa/contributions", content=iter([cut]),
                               headers={"content-type": content_type})
    error = assert_error(response, 400, "ended before the form's closing boundary", "nothing was stored")
    assert error["field"] == "body"
    assert stored(home) == before and staged_files(home) == []


@pytest.mark.parametrize("body", [
    b"--xx\r\nnot a header line\r\n\r\n",
    b"no boundary at all",
    b"--xx\r\nContent-Disposition: form-data; name=\"action\"\r\nX-Pad: " + b"a" * 100_000,  # an endless part header
])
def test_a_malformed_form_is_a_400_naming_the_body(small_node, home, body):
    response = small_node.post("/datanets/qa/contributions", content=body,
                               headers={"content-type": "multipart/form-data; boundary=xx"})
    error = assert_error(response, 400, "not a well-formed multipart/form-data body")
    assert error["field"] == "body"
    assert staged_files(home) == [] and small_node.get("/node/info").status_code == 200


def _parquet(rows: int, cell: int, tag: str) -> bytes:
    """A few KB of Parquet whose records come to about rows * cell bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(pa.table({"question": [f"{tag}{i}" for i in range(rows)],
                             "answer": [f"{tag}{i}" + "a" * cell for i in range(rows)]}), out, compression="zstd")
    return out.getvalue()


def test_the_quota_counts_what_a_compressed_file_expands_to(small_node, home, bob, carol):
    first = _parquet(20, 10_000, "a")  # 200 kB of records, 250 kB quota
    assert len(first) < 10_000
    assert post(small_node, bob, [("first.parquet", first)]).status_code == 201
    before = stored(home)
    # counted as its file bytes the first upload left room for this one; counted as stored it does not
    response = post(small_node, bob, [("second.parquet", _parquet(20, 10_000, "b"))])
    assert_error(response, 413, "per-account quota is 250000 bytes", bob.address, "second.parquet")
    assert stored(home) == before and staged_files(home) == []
    # one file alone may not expand past the quota either: refused while it is parsed
    response = post(small_node, carol, [("bomb.parquet", _parquet(40, 10_000, "c"))])
    assert_error(response, 413, "the records of this upload come to", "bomb.parquet row")
    assert stored(home) == before and staged_files(home) == []


def test_rows_are_inserted_once_their_bytes_add_up(small_node, home, bob, monkeypatch):
    from ledgerlm.datanets import ingest

    sizes = []
    insert = ingest.Ingest._insert_chunk
    monkeypatch.setattr(ingest, "CHUNK_BYTES", 25_000)
    monkeypatch.setattr(ingest.Ingest, "_insert_chunk",
                        lambda self, conn, row, batch, *a: (sizes.append(len(batch)), insert(self, conn, row, batch, *a))[1])
    assert post(small_node, bob, [("rows.parquet", _parquet(10, 10_000, "r"))]).status_code == 201
    assert sizes == [3, 3, 3, 1]  # 2,000 rows at a time would have held all ten


def test_an_upload_that_stops_sending_is_dropped_and_leaves_nothing(small_node, home, bob):
    """A client that sent part of a file and then nothing held its connection and staged file for good."""
    import asyncio

    from starlette.requests import Request

    from ledgerlm.api.multipart import receive_upload
    from ledgerlm.datanets import UploadInProgress
    from ledgerlm.errors import LedgerError

    body, content_type = _form(small_node, bob, [("a.jsonl", GOOD + b'{"question": "q2", "answer": "b"}\n')])
    messages = [{"type": "http.request", "body": body[:body.index(GOOD) + len(GOOD)], "more_body": True}]
    staged_while_waiting = []

    async def receive():
        if messages:
            return messages.pop(0)
        staged_while_waiting.extend(staged_files(home))
        await asyncio.sleep(3600)  # the client sends nothing more and keeps the connection open

    scope = {"type": "http", "method": "POST", "path": "/datanets/qa/contributions",
             "headers": [(b"content-type", content_type.encode())]}
    upload = UploadInProgress(small_node.app.state.node.datanets, "qa")
    with pytest.raises(LedgerError) as refused:
        run_apart(receive_upload(Request(scope, receive), upload, max_body=10**9, idle_seconds=0.2))
    assert (refused.value.status, refused.value.field) == (408, "body")
    assert "no byte of the upload arrived for 0.2 s" in refused.value.message
    assert len(staged_while_waiting) == 1 and staged_files(home) == []


def _trickled(small_node, bob, body_upto, **limits):
    """An upload whose client sends the body up to `body_upto` at once, then a byte every 0.05 s."""
    import asyncio

    from starlette.requests import Request

    from ledgerlm.api.multipart import receive_upload
    from ledgerlm.datanets import UploadInProgress
    from ledgerlm.errors import LedgerError

    body, content_type = _form(small_node, bob, [("a.jsonl", GOOD)])
    cut = body_upto(body)
    messages = [{"type": "http.request", "body": body[:cut], "more_body": True}]
    rest = list(body[cut:])

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(0.05)
        return {"type": "http.request", "body": bytes([rest.pop(0)]) if rest else b"", "more_body": bool(rest)}

    scope = {"type": "http", "method": "POST", "path": "/datanets/qa/contributions",
             "headers": [(b"content-type", content_type.encode())]}
    upload = UploadInProgress(small_node.app.state.node.datanets, "qa")
    with pytest.raises(LedgerError) as refused:
        run_apart(receive_upload(Request(scope, receive), upload, max_body=10**9, **limits))
    return refused.value


def test_an_upload_trickled_before_its_signed_fields_is_cut_off_at_their_deadline(small_node, home, bob):
    """Each byte came within the idle limit, so a connection sending the action a byte a minute was held for
    good before anything said who sent it; a few hundred took every file descriptor."""
    refused = _trickled(small_node, bob, lambda body: 10, fields_seconds=0.5)
    assert (refused.status, refused.field) == (408, "body")
    assert "the signed action and manifest did not arrive within 0.5 s" in refused.message
    assert staged_files(home) == []


def test_a_signed_upload_trickled_under_the_least_rate_is_cut_off(small_node, home, bob):
    refused = _trickled(small_node, bob, lambda body: body.index(GOOD) + 5, min_rate=10_000, rate_grace=0.3)
    assert (refused.status, refused.field) == (408, "body")
    assert "bytes/s, under the 10000 it must keep after 0.3 s" in refused.message
    assert staged_files(home) == []


def test_a_multipart_boundary_past_what_the_parser_reads_is_named(small_node, bob):
    http = small_node
    body, _ = _form(http, bob, [("a.jsonl", GOOD)])
    response = http.post("/datanets/qa/contributions", content=body,
                         headers={"content-type": "multipart/form-data; boundary=" + "b" * 300})
    assert response.status_code == 400 and response.json()["error"]["field"] == "content-type"
    assert "boundary is 300 bytes" in response.json()["error"]["message"]
