"""Content-addressed blob store: files named by their sha256, written atomically, never mutated."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ledgerlm.errors import LedgerError

CHUNK = 1 << 20
ORPHAN_GRACE_SECONDS = 600


class BlobError(LedgerError):
    pass


class BlobTooLarge(BlobError):
    status = 413


@dataclass(frozen=True)
class StagedBlob:
    """A file hashed into the store's staging area, not yet visible under its hash."""

    sha256: str
    size: int
    path: Path


class BlobWriter:
    """One staging file written as its bytes arrive, hashed and counted on the way.

    A write that would pass `max_bytes` deletes the partial file and raises BlobTooLarge, so
    at most the limit plus the chunk in hand ever reaches the disk.
    """

    def __init__(self, staging: Path, *, max_bytes: int | None, label: str, limit_reason: str = ""):
        self.max_bytes = max_bytes
        self.label = label
        self.limit_reason = limit_reason or "the upload limit"
        self.size = 0
        self._digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=staging)
        self.path = Path(tmp)
        self._out = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        if self.max_bytes is not None and self.size + len(chunk) > self.max_bytes:
            read = self.size + len(chunk)
            self.abort()
            raise BlobTooLarge(
                f"{self.label} is larger than {self.limit_reason} of {self.max_bytes} bytes"
                f" (stopped reading after {read} bytes; nothing was kept)",
                field="files",
            )
        self.size += len(chunk)
        self._digest.update(chunk)
        self._out.write(chunk)

    def finish(self) -> StagedBlob:
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        return StagedBlob(self._digest.hexdigest(), self.size, self.path)

    def abort(self) -> None:
        if not self._out.closed:
            self._out.close()
        self.path.unlink(missing_ok=True)


def check_sha256(sha256: str) -> str:
    """The name of a blob, refused unless it is a lower-case sha256 hex digest."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise BlobError(f"not a sha256 hex digest: {sha256!r}", field="sha256")
    return sha256


def clear_staging(staging: Path, *, older_than: float = ORPHAN_GRACE_SECONDS) -> int:
    """Delete leftovers of uploads that a crash interrupted; returns how many.

    Several nodes may share one home, so a staged file younger than `older_than` seconds (its mtime moves
    with every chunk written) may be an upload still in flight in another process, and is kept.
    """
    cutoff = time.time() - older_than
    count = 0
    for leftover in staging.iterdir():
        try:
            if leftover.stat().st_mtime >= cutoff:
                continue
        except FileNotFoundError:  # finished or aborted by its writer meanwhile
            continue
        leftover.unlink(missing_ok=True)
        count += 1
    return count


class BlobStaging(ABC):
    """What every blob store shares: uploads are written and hashed in a local staging directory first,
    and become visible under their hash only through the store's `commit`."""

    staging: Path

    def writer(self, *, max_bytes: int | None = None, label: str = "file", limit_reason: str = "") -> BlobWriter:
        """A staging file to fill chunk by chunk as bytes arrive (see BlobWriter)."""
        return BlobWriter(self.staging, max_bytes=max_bytes, label=label, limit_reason=limit_reason)

    def stage(self, source: BinaryIO, *, max_bytes: int | None = None, label: str = "file") -> StagedBlob:
        """Copy a stream into staging while hashing it; refuses more than `max_bytes`."""
        writer = self.writer(max_bytes=max_bytes, label=label)
        try:
            while chunk := source.read(CHUNK):
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        return writer.finish()

    @abstractmethod
    def commit(self, staged: StagedBlob) -> bool:
        """Make a staged blob visible under its hash; returns True if the store did not hold it before."""

    def discard(self, staged: StagedBlob) -> None:
        staged.path.unlink(missing_ok=True)

    def put_bytes(self, data: bytes) -> str:
        staged = self.stage(io.BytesIO(data))
        self.commit(staged)
        return staged.sha256

    def clear_staging(self, *, older_than: float = ORPHAN_GRACE_SECONDS) -> int:
        """Delete leftovers of uploads that a crash interrupted, older than `older_than` seconds; returns how many."""
        return clear_staging(self.staging, older_than=older_than)


class BlobStore(BlobStaging):
    """Blobs as files under `<root>/<aa>/<bb>/<sha256>`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.staging = self.root / "staging"
        self.staging.mkdir(parents=True, exist_ok=True)

    def __str__(self) -> str:
        return str(self.root)

    def path(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def commit(self, staged: StagedBlob) -> bool:
        """Move a staged blob under its hash; returns True if the store did not hold it before."""
        target = self.path(staged.sha256)
        if target.exists():
            staged.path.unlink(missing_ok=True)
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.utime(staged.path)  # its age counts from now: the orphan sweep spares recent blobs
        try:
            # A link appears whole or not at all, and only once: of two uploads of the same bytes racing here,
            # exactly one creates the blob (and may remove it again if its rows roll back).
            os.link(staged.path, target)
            created = True
        except FileExistsError:
            created = False
        except OSError:  # a filesystem without hard links: replace is atomic too, only not exclusive
            created = not target.exists()
            os.replace(staged.path, target)
        staged.path.unlink(missing_ok=True)
        return created

    def read_bytes(self, sha256: str) -> bytes:
        path = self.path(sha256)
        if not path.exists():
            raise BlobError(f"blob {sha256} is missing from the store", status=404)
        return path.read_bytes()

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def hashes(self) -> list[str]:
        """Every blob in the store, by name."""
        return [blob.name for blob in self.root.glob("??/??/*")]

    def collect_orphans(self, referenced: set[str], *, older_than: float = ORPHAN_GRACE_SECONDS) -> int:
        """Delete blobs nothing refers to (an upload killed between blob and row); returns how many.

        Blobs become visible just before the rows naming them commit, so a blob younger than
        `older_than` seconds may belong to an upload still in flight in another process.
        """
        cutoff = time.time() - older_than
        count = 0
        for blob in self.root.glob("??/??/*"):
            if blob.name not in referenced and blob.stat().st_mtime < cutoff:
                blob.unlink(missing_ok=True)
                count += 1
        return count
