"""The blob store keeps the same promises on a directory and on an S3 bucket: content addressing, idempotent
re-puts, no half-written blob under its name, orphans swept only when old."""

import hashlib
import io

import pytest

from ledgerlm.store import BlobError, BlobStore, BlobTooLarge, S3BlobStore, S3Location, open_blob_store, s3_client
from tests.loops import at_once


@pytest.fixture(params=["directory", "s3"])
def store(request, tmp_path):
    if request.param == "directory":
        return BlobStore(tmp_path / "blobs")
    endpoint = request.getfixturevalue("s3_endpoint")
    return open_blob_store(request.getfixturevalue("s3_blobs"), tmp_path / "blobs", endpoint_url=endpoint)


def test_blob_is_named_by_its_sha256_and_reads_back(store):
    data = b"a record worth keeping\n" * 100
    name = store.put_bytes(data)
    assert name == hashlib.sha256(data).hexdigest()
    assert store.exists(name)
    assert store.read_bytes(name) == data
    assert store.hashes() == [name]


def test_putting_the_same_bytes_again_keeps_one_copy(store):
    first = store.stage(io.BytesIO(b"same bytes"))
    again = store.stage(io.BytesIO(b"same bytes"))
    assert store.commit(first) is True
    assert store.commit(again) is False
    assert store.hashes() == [first.sha256]
    assert store.read_bytes(first.sha256) == b"same bytes"
    assert not any(store.staging.iterdir()), "both staging files are gone"


def test_concurrent_puts_of_one_blob_both_succeed(store):
    data = b"uploaded by two nodes at once" * 1000
    staged = [store.stage(io.BytesIO(data)) for _ in range(2)]
    created = []
    errors = at_once(lambda blob: created.append(store.commit(blob)), [(b,) for b in staged])
    assert not errors
    assert sorted(created) == [False, True]
    assert store.read_bytes(staged[0].sha256) == data


def test_oversized_stream_leaves_nothing(store):
    with pytest.raises(BlobTooLarge):
        store.stage(io.BytesIO(b"x" * 5000), max_bytes=4096, label="big.jsonl")
    assert not any(store.staging.iterdir())
    assert store.hashes() == []


def test_missing_and_malformed_names(store):
    with pytest.raises(BlobError) as missing:
        store.read_bytes("0" * 64)
    assert missing.value.status == 404
    with pytest.raises(BlobError) as bad:
        store.exists("../../etc/passwd")
    assert bad.value.field == "sha256"


def test_orphans_are_swept_only_when_old_and_unreferenced(store):
    kept = store.put_bytes(b"named by a contribution")
    orphan = store.put_bytes(b"left by an upload killed before its rows committed")
    assert store.collect_orphans({kept}) == 0, "young blobs may belong to an upload in flight"
    assert store.collect_orphans({kept}, older_than=-1) == 1
    assert store.hashes() == [kept]
    assert not store.exists(orphan)


def test_clear_staging_removes_crash_leftovers(store):
    writer = store.writer(label="partial.jsonl")
    writer.write(b"half an upload")  # the process dies here: no finish, no abort
    assert store.clear_staging(older_than=-1) == 1
    assert store.hashes() == []


def test_a_node_starting_on_a_shared_home_keeps_uploads_in_flight(home):
    """Another node process opening the same home spares a young staged upload, but clears an old leftover."""
    import os
    import time

    from ledgerlm.node import Node

    first = Node.open(home)
    try:
        in_flight = first.blobs.writer(label="in-flight.jsonl")
        in_flight.write(b"the first half of an upload, ")
        crashed = first.blobs.writer(label="crashed.jsonl")
        crashed.write(b"what a crash left an hour ago")
        leftover = crashed.path
        os.utime(leftover, (time.time() - 3600, time.time() - 3600))
        Node.open(home).close()  # a second node starts (and stops) on the same home meanwhile
        assert not leftover.exists()
        in_flight.write(b"and the second half")
        staged = in_flight.finish()
        first.blobs.commit(staged)
        assert first.blobs.read_bytes(staged.sha256) == b"the first half of an upload, and the second half"
    finally:
        first.close()


# ---------------------------------------------------------------- S3 only: what a bucket adds


@pytest.fixture
def bucket(s3_endpoint, s3_blobs, tmp_path) -> S3BlobStore:
    return open_blob_store(s3_blobs, tmp_path / "blobs", endpoint_url=s3_endpoint)


def test_staged_file_changed_before_upload_is_refused(bucket):
    staged = bucket.stage(io.BytesIO(b"the bytes that were hashed"))
    staged.path.write_bytes(b"other bytes swapped in on disk")
    with pytest.raises(BlobError, match="changed on disk"):
        bucket.commit(staged)
    assert bucket.hashes() == []


def test_upload_cut_off_midway_leaves_no_object(bucket):
    data = b"y" * 200_000
    staged = bucket.stage(io.BytesIO(data))

    class Dies(io.BytesIO):
        def read(self, size=-1):
            if self.tell() > 50_000:
                raise ConnectionResetError("the node died mid-upload")
            return super().read(min(size, 10_000) if size and size > 0 else 10_000)

    with pytest.raises(Exception):  # noqa: B017 - whatever the transport raises
        bucket._put(bucket.key(staged.sha256), Dies(data), staged.sha256, hashlib.md5(data).digest())
    assert not bucket.exists(staged.sha256), "no half-written object under the final name"
    assert bucket.commit(staged) is True  # the retry after restart stores it whole
    assert bucket.read_bytes(staged.sha256) == data


def test_object_changed_in_the_bucket_is_refused_on_read(bucket, s3_endpoint):
    name = bucket.put_bytes(b"original")
    s3_client(s3_endpoint).put_object(Bucket=bucket.location.bucket, Key=bucket.key(name), Body=b"tampered")
    with pytest.raises(BlobError, match="does not hash to its name"):
        bucket.read_bytes(name)


def test_bucket_shared_with_other_objects(bucket, s3_endpoint):
    other = s3_client(s3_endpoint)
    other.put_object(Bucket=bucket.location.bucket, Key="someone-else/report.pdf", Body=b"not ours")
    other.put_object(Bucket=bucket.location.bucket, Key=bucket.location.key("notes.txt"), Body=b"not a blob")
    assert bucket.hashes() == []
    assert bucket.collect_orphans(set(), older_than=-1) == 0


def test_location_parsing_names_the_field():
    assert S3Location.parse("s3://my-bucket/a/b/") == S3Location("my-bucket", "a/b")
    assert S3Location.parse("s3://my-bucket").key("ab") == "ab"
    for bad in ("http://x/y", "s3://A_B/prefix", "s3://x/p"):
        with pytest.raises(BlobError) as err:
            S3Location.parse(bad)
        assert err.value.field == "blobs"
