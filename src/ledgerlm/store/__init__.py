"""Database schema and migrations, and the content-addressed blob store."""

from ledgerlm.store import schema
from ledgerlm.store.blobs import BlobError, BlobStore, BlobTooLarge, BlobWriter, StagedBlob
from ledgerlm.store.db import Database

__all__ = ["BlobError", "BlobStore", "BlobTooLarge", "BlobWriter", "Database", "StagedBlob", "schema"]
