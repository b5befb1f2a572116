"""Database schema and migrations, and the content-addressed blob store (a directory, or an S3 bucket)."""

from pathlib import Path

from ledgerlm.store import schema
from ledgerlm.store.blobs import BlobError, BlobStaging, BlobStore, BlobTooLarge, BlobWriter, StagedBlob
from ledgerlm.store.db import Database, DatabaseError, lock_key
from ledgerlm.store.s3blobs import S3BlobStore, S3Location, s3_client


def open_blob_store(url: str, directory: Path, *, endpoint_url: str = "", region: str = "") -> BlobStaging:
    """The blob store a node's config names: empty for `directory`, `s3://bucket/prefix` for a bucket (staging
    stays in `directory`)."""
    if not url:
        return BlobStore(directory)
    return S3BlobStore(S3Location.parse(url), Path(directory) / "staging",
                       client=s3_client(endpoint_url, region))


__all__ = ["BlobError", "BlobStaging", "BlobStore", "BlobTooLarge", "BlobWriter", "Database", "DatabaseError", "S3BlobStore",
           "S3Location", "StagedBlob", "lock_key", "open_blob_store", "schema"]
