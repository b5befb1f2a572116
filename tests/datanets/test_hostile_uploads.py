"""Hostile uploads through the real HTTP API: bombs, repeated keys, failures that must leave no trace."""

import io
import os
import time
import zipfile

import orjson
from fastapi.testclient import TestClient
from sqlalchemy import select

from ledgerlm.api import create_app
from ledgerlm.node import Node
from ledgerlm.store import BlobStore
from ledgerlm.store.schema import signed_actions

from .fixtures import make_docx
from .test_bad_input import GOOD, assert_error, node_domain, stored, upload


def _docx_with_body(tmp_path, body: bytes) -> bytes:
    """A real DOCX whose word/document.xml is replaced by `body`."""
    source = make_docx(tmp_path / "plain.docx", ["hello"])
    out = io.BytesIO()
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for item in original.infolist():
            data = body if item.filename == "word/document.xml" else original.read(item)
            bomb.writestr(item.filename, data)
    return out.getvalue()


W = b'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def test_docx_bomb_is_refused_from_the_zip_directory(http, home, docs, bob, tmp_path):
    paragraph = b"<w:p><w:r><w:t>" + b"a" * 200 + b"</w:t></w:r></w:p>"
    body = b"<w:document " + W + b"><w:body>" + paragraph * (50 * 1024 * 1024 // len(paragraph)) + b"</w:body></w:document>"
    bomb = _docx_with_body(tmp_path, body)
    assert len(bomb) < 1024 * 1024 < 50 * 1024 * 1024 <= len(body)  # small on the wire, 50 MiB inflated
    before = stored(home)
    response, _ = upload(http, "docs", bob, [("bomb.docx", bomb)])
    assert_error(response, 400, "bomb.docx", "bytes of XML", "the limit is 16777216")
    assert stored(home) == before


def test_deeply_nested_docx_is_refused(http, home, docs, bob, tmp_path):
    depth = 5000
    body = b"<w:document " + W + b"><w:body>" + b"<w:p>" * depth + b"</w:p>" * depth + b"</w:body></w:document>"
    response, _ = upload(http, "docs", bob, [("deep.docx", _docx_with_body(tmp_path, body))])
    assert_error(response, 400, "deep.docx", "deeper than 256 levels")


def test_a_docx_of_countless_empty_paragraphs_is_refused_before_it_becomes_objects(http, home, docs, bob, tmp_path):
    """Within the XML byte limit, but two million elements: python-docx took 660 MB and 20 s over them."""
    body = b"<w:document " + W + b"><w:body>" + b"<w:p/>" * 2_000_000 + b"</w:body></w:document>"
    bomb = _docx_with_body(tmp_path, body)
    assert len(bomb) < 100_000 and len(body) < 16 * 1024 * 1024
    before = stored(home)
    response, _ = upload(http, "docs", bob, [("paragraphs.docx", bomb)])
    assert_error(response, 400, "paragraphs.docx", "more than 500000 XML elements")
    assert stored(home) == before


def test_docx_with_a_doctype_is_refused(http, docs, bob, tmp_path):
    body = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa">]><w:document ' + W + b"><w:body/></w:document>"
    response, _ = upload(http, "docs", bob, [("entities.docx", _docx_with_body(tmp_path, body))])
    assert_error(response, 400, "entities.docx", "DOCTYPE")


def test_an_ordinary_docx_still_reads(client, docs, bob, tmp_path):
    path = make_docx(tmp_path / "fine.docx", ["first paragraph", "second paragraph"], table=[["a", "b"]])
    receipt = client.contribute("docs", [path], bob)
    assert client.contribution(receipt.first_contribution_id).payload.startswith("first paragraph")


def test_a_file_name_with_a_quote_uploads_as_signed(client, qa, bob, tmp_path):
    from .conftest import write_jsonl

    path = write_jsonl(tmp_path / 'the "best" facts.jsonl', [{"question": "q?", "answer": "a."}])
    receipt = client.contribute("qa", [path], bob)  # sent as %22 in the form, as browsers and httpx write it
    assert client.contribution(receipt.first_contribution_id).source.startswith('the "best" facts.jsonl')
    literal = write_jsonl(tmp_path / "up 100%22.jsonl", [{"question": "p?", "answer": "b."}])  # a "%" is sent as is
    receipt = client.contribute("qa", [literal], bob)
    assert client.contribution(receipt.first_contribution_id).source.startswith("up 100%22.jsonl")
    both = write_jsonl(tmp_path / 'say "hi" 100%22.jsonl', [{"question": "s?", "answer": "c."}])
    receipt = client.contribute("qa", [both], bob)
    assert client.contribution(receipt.first_contribution_id).source.startswith('say "hi" 100%22.jsonl')


def test_a_quoted_file_name_uploads_without_a_manifest_field_too(http, qa, bob):
    body = orjson.dumps({"question": "q?", "answer": "a."}) + b"\n"
    response, _ = upload(http, "qa", bob, [('the "best".jsonl', body)])  # signed over the name with its quotes
    assert response.status_code == 201, response.text


def test_duplicate_keys_are_refused_with_the_line(http, home, qa, bob):
    body = GOOD + b'{"question": "q2", "answer": "a", "answer": "b"}\n'
    before = stored(home)
    response, _ = upload(http, "qa", bob, [("dups.jsonl", body)])
    assert_error(response, 400, "dups.jsonl line 2", "'answer' appears twice")
    assert stored(home) == before
    array = b'[\n  {"question": "q", "answer": "a"},\n  {"question": "q2",\n   "answer": "http://x",\n   "answer": "y"}\n]\n'
    response, _ = upload(http, "qa", bob, [("dups.json", array)])
    assert_error(response, 400, "dups.json item 2 (line 5)", "'answer' appears twice")
    same_key_in_two_objects = b'{"question": "q3", "answer": "at 10:30", "meta": {"answer": 1}}\n'
    assert upload(http, "qa", bob, [("fine.jsonl", same_key_in_two_objects)])[0].status_code == 201


def test_a_failed_upload_keeps_its_nonce_unused(http, home, qa, bob):
    """The action and its effect commit together: a refused upload records no action."""
    from ledgerlm.identity import sign_action

    nonce = 424242
    bad = b'{"question": "q"}\n'  # no answer: the schema refuses it while the upload is parsed
    import hashlib

    from ledgerlm.datanets import FileEntry, manifest_hash

    def signed_for(body):
        entries = [FileEntry(name="a.jsonl", sha256=hashlib.sha256(body).hexdigest(), size=len(body))]
        return sign_action(bob, "Contribute", {"datanet": "qa", "manifestHash": manifest_hash(entries)},
                           domain=node_domain(http), nonce=nonce)

    before = stored(home)
    response, _ = upload(http, "qa", bob, [("a.jsonl", bad)], signed=signed_for(bad))
    assert_error(response, 400, "answer")
    assert stored(home) == before
    node = Node.open(home)
    try:
        with node.db.connect() as conn:
            used = conn.execute(select(signed_actions.c.nonce).where(signed_actions.c.signer == bob.address)).all()
    finally:
        node.close()
    assert used == []
    retry, _ = upload(http, "qa", bob, [("a.jsonl", GOOD)], signed=signed_for(GOOD))
    assert retry.status_code == 201, retry.text


def test_orphan_blobs_are_collected_at_start(home, qa, bob):
    with TestClient(create_app(lambda: Node.open(home))) as http:
        assert upload(http, "qa", bob, [("a.jsonl", GOOD)])[0].status_code == 201
    blobs = BlobStore(home.blobs)
    kept = {p.name for p in blobs.root.glob("??/??/*")}
    old_orphan = blobs.put_bytes(b"left behind by an upload killed before its rows committed")
    fresh_orphan = blobs.put_bytes(b"an upload in flight in another process")
    an_hour_ago = time.time() - 3600
    os.utime(blobs.path(old_orphan), (an_hour_ago, an_hour_ago))
    for name in kept:  # referenced blobs survive however old they are
        os.utime(blobs.path(name), (an_hour_ago, an_hour_ago))
    Node.open(home).close()
    left = {p.name for p in blobs.root.glob("??/??/*")}
    assert old_orphan not in left
    assert left == kept | {fresh_orphan}
