"""One signed upload as its parts arrive: signature and manifest checked first, files counted as they stream."""

from __future__ import annotations

import orjson
from pydantic import ValidationError

from ledgerlm.config import NodeConfig
from ledgerlm.datanets import parsers
from ledgerlm.datanets.schemas import DatanetError, FileEntry, QuotaExceeded, UploadReceipt
from ledgerlm.errors import AuthError
from ledgerlm.identity import SignedAction
from ledgerlm.store import BlobTooLarge, BlobWriter, StagedBlob

# Form fields are a JSON action, a JSON manifest and a flag; anything longer is not one of them.
MAX_FIELD_BYTES = 1 << 20


class UploadInProgress:
    """Receives the parts of one upload in order: `action`, then optionally `manifest`, then files.

    Nothing touches the disk until the signature verifies and the signer may contribute; with a
    manifest (the SDK always sends one) every declared size is checked against the limits and
    the quota before the first file byte, and each file is cut off at its declared size; without
    one, the files are cut off where together they would pass the signer's quota.
    At most `max_files` files make one upload (the node's `max_upload_files`): a manifest listing
    more is refused before any file byte, and without one the next file is refused before any of it
    is written. Whatever goes wrong, `abort()` leaves no staged bytes behind.

    The methods block (signature check, database queries, staging files, fsync): the API calls them
    from a worker thread, one part after another, never from the event loop.
    """

    def __init__(self, datanets, name: str, *, max_files: int | None = None):
        self.datanets = datanets
        self.name = name
        self.max_files = NodeConfig.max_upload_files if max_files is None else max_files
        self.signed: SignedAction | None = None
        self.row = None
        self.contributor: str | None = None
        self.entries: list[FileEntry] | None = None
        self.skip_duplicates = False
        self.staged: list[tuple[str, StagedBlob]] = []
        self._staged_bytes = 0  # the sum of the staged files' sizes, kept as they finish
        self._declared_bytes: int | None = None  # the signed manifest's sizes, summed once
        self._writer: BlobWriter | None = None
        self._file_name = ""
        self._quota_left: int | None = None  # without a manifest: the signer's quota left when files began

    # ---------------------------------------------------------------- form fields

    def field(self, name: str, value: bytes) -> None:
        if name == "action":
            self._action(value)
        elif name == "manifest":
            self._manifest(value)
        elif name == "skip_duplicates":
            self.skip_duplicates = value.strip().lower() in (b"true", b"1", b"yes", b"on")
        else:
            raise DatanetError(f"unknown form field {name!r}: send action, manifest, skip_duplicates and files",
                               field=name)

    def _action(self, value: bytes) -> None:
        if self.signed is not None:
            raise AuthError("the upload holds two action fields", field="action")
        try:
            signed = SignedAction.model_validate(orjson.loads(value))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            raise AuthError(f"action is not a signed action JSON object: {exc}", field="action") from exc
        self.row, self.contributor = self.datanets.authorise_upload(self.name, signed)
        self.signed = signed

    def _manifest(self, value: bytes) -> None:
        self._require_action("manifest")
        try:
            rows = orjson.loads(value)
            entries = [FileEntry(name=n, sha256=s, size=z) for n, s, z in rows]
        except (orjson.JSONDecodeError, ValidationError, TypeError, ValueError) as exc:
            raise DatanetError(f"manifest must be a JSON list of [name, sha256, size]: {exc}",
                               field="manifest") from exc
        if len(entries) > self.max_files:
            raise DatanetError(
                f"the signed manifest lists {len(entries)} files; an upload may hold at most {self.max_files}"
                " (max_upload_files): send them as several uploads (nothing was read)",
                field="files", status=413,
            )
        self.entries = entries
        self._declared_bytes = sum(e.size for e in entries)
        self.datanets.check_declared(self.signed, self.contributor, self.entries)

    def _require_action(self, what: str) -> None:
        if self.signed is None:
            raise AuthError(f"the signed action must come before the {what} in the upload form", field="action")

    @property
    def declared_bytes(self) -> int | None:
        return None if self.entries is None else self._declared_bytes

    # ---------------------------------------------------------------- files

    def begin_file(self, file_name: str) -> None:
        self._require_action("files")
        if self.entries is None and len(self.staged) >= self.max_files:  # a manifest was held to it already
            raise DatanetError(
                f"an upload may hold at most {self.max_files} files (max_upload_files); file"
                f" {len(self.staged) + 1} ({file_name!r}) is one too many: send them as several uploads"
                " (nothing was stored)",
                field="files", status=413,
            )
        file_name = parsers.safe_file_name(file_name)
        limit, reason = self.datanets.max_upload_bytes, "the upload limit"
        if self.entries is not None:
            index = len(self.staged)
            if index >= len(self.entries):
                raise AuthError(f"{file_name} is not in the signed manifest (it lists {len(self.entries)} files)",
                                field="manifestHash")
            declared = self.entries[index]
            if declared.name != file_name and declared.name.replace('"', "%22") == file_name:
                # a form writes a quote in a file name as %22 (HTML's form-data encoding, as httpx and browsers send
                # it) and a "%" as it is: the signed name says which was meant
                file_name = declared.name
            if declared.name != file_name:
                raise AuthError(f"file {index + 1} is {file_name!r} but the signed manifest lists {declared.name!r}",
                                field="manifestHash")
            if declared.size < limit:
                limit, reason = declared.size, "its signed size"
        else:
            if self._quota_left is None:
                self._quota_left = self.datanets.quota_left(self.contributor)
            room = self._quota_left - self._staged_bytes
            if room <= 0:
                raise QuotaExceeded(f"{self.contributor} has no storage quota left for {file_name}; nothing was stored",
                                    field="files")
            if room < limit:
                limit, reason = room, "the account's storage quota left"
        self._file_name = file_name
        self._writer = self.datanets.blobs.writer(max_bytes=limit, label=file_name, limit_reason=reason)

    def file_data(self, chunk: bytes) -> None:
        try:
            self._writer.write(chunk)
        except BlobTooLarge as exc:
            self._writer = None
            if "signed size" in exc.message:  # more bytes than were signed for: not this manifest
                raise AuthError(exc.message, field="manifestHash") from None
            raise

    def end_file(self) -> None:
        writer, self._writer = self._writer, None
        blob = writer.finish()
        self.staged.append((self._file_name, blob))
        self._staged_bytes += blob.size

    # ---------------------------------------------------------------- end

    def finish(self) -> UploadReceipt:
        """Parse and store everything received; the staged files are gone afterwards either way."""
        self._require_action("files")
        if self.entries is not None and len(self.staged) != len(self.entries):
            self.abort()
            raise AuthError(f"the signed manifest lists {len(self.entries)} files but {len(self.staged)} arrived",
                            field="manifestHash")
        staged, self.staged, self._staged_bytes = self.staged, [], 0
        return self.datanets.store_staged(self.row, self.signed, self.contributor, staged,
                                          skip_duplicates=self.skip_duplicates)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        self.datanets.discard_staged(self.staged)
        self.staged, self._staged_bytes = [], 0
