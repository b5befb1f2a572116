"""Content-addressed blob store: files named by their sha256, written atomically, never mutated."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ledgerlm.errors import LedgerError

CHUNK = 1 << 20


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


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.staging = self.root / "staging"
        self.staging.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise BlobError(f"not a sha256 hex digest: {sha256!r}", field="sha256")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def stage(self, source: BinaryIO, *, max_bytes: int | None = None, label: str = "file") -> StagedBlob:
        """Copy a stream into staging while hashing it; refuses more than `max_bytes`."""
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=self.staging)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise BlobTooLarge(
                            f"{label} is larger than the upload limit of {max_bytes} bytes",
                            field="files",
                        )
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            os.unlink(tmp)
            raise
        return StagedBlob(digest.hexdigest(), size, Path(tmp))

    def commit(self, staged: StagedBlob) -> bool:
        """Move a staged blob under its hash; returns True if the store did not hold it before."""
        target = self.path(staged.sha256)
        if target.exists():
            staged.path.unlink(missing_ok=True)
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.path, target)  # atomic: readers see the whole file or none
        return True

    def discard(self, staged: StagedBlob) -> None:
        staged.path.unlink(missing_ok=True)

    def put_bytes(self, data: bytes) -> str:
        import io

        staged = self.stage(io.BytesIO(data))
        self.commit(staged)
        return staged.sha256

    def read_bytes(self, sha256: str) -> bytes:
        path = self.path(sha256)
        if not path.exists():
            raise BlobError(f"blob {sha256} is missing from the store", status=404)
        return path.read_bytes()

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def clear_staging(self) -> int:
        """Delete leftovers of uploads that a crash interrupted; returns how many."""
        count = 0
        for leftover in self.staging.iterdir():
            leftover.unlink(missing_ok=True)
            count += 1
        return count
