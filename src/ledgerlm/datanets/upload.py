"""One signed upload as its parts arrive: signature and manifest checked first, files counted as they stream."""

from __future__ import annotations

import orjson
from pydantic import ValidationError

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
    Whatever goes wrong, `abort()` leaves no staged bytes behind.
    """

    def __init__(self, datanets, name: str):
        self.datanets = datanets
        self.name = name
        self.signed: SignedAction | None = None
        self.row = None
        self.contributor: str | None = None
        self.entries: list[FileEntry] | None = None
        self.skip_duplicates = False
        self.staged: list[tuple[str, StagedBlob]] = []
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
            self.entries = [FileEntry(name=n, sha256=s, size=z) for n, s, z in rows]
        except (orjson.JSONDecodeError, ValidationError, TypeError, ValueError) as exc:
            raise DatanetError(f"manifest must be a JSON list of [name, sha256, size]: {exc}",
                               field="manifest") from exc
        self.datanets.check_declared(self.signed, self.contributor, self.entries)

    def _require_action(self, what: str) -> None:
        if self.signed is None:
            raise AuthError(f"the signed action must come before the {what} in the upload form", field="action")

    @property
    def declared_bytes(self) -> int | None:
        return None if self.entries is None else sum(e.size for e in self.entries)

    # ---------------------------------------------------------------- files

    def begin_file(self, file_name: str) -> None:
        self._require_action("files")
        file_name = parsers.safe_file_name(file_name)
        limit, reason = self.datanets.max_upload_bytes, "the upload limit"
        if self.entries is not None:
            index = len(self.staged)
            if index >= len(self.entries):
                raise AuthError(f"{file_name} is not in the signed manifest (it lists {len(self.entries)} files)",
                                field="manifestHash")
            declared = self.entries[index]
            if declared.name != file_name:
                raise AuthError(f"file {index + 1} is {file_name!r} but the signed manifest lists {declared.name!r}",
                                field="manifestHash")
            if declared.size < limit:
                limit, reason = declared.size, "its signed size"
        else:
            if self._quota_left is None:
                self._quota_left = self.datanets.quota_left(self.contributor)
            room = self._quota_left - sum(blob.size for _, blob in self.staged)
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
        self.staged.append((self._file_name, writer.finish()))

    # ---------------------------------------------------------------- end

    def finish(self) -> UploadReceipt:
        """Parse and store everything received; the staged files are gone afterwards either way."""
        self._require_action("files")
        if self.entries is not None and len(self.staged) != len(self.entries):
            self.abort()
            raise AuthError(f"the signed manifest lists {len(self.entries)} files but {len(self.staged)} arrived",
                            field="manifestHash")
        staged, self.staged = self.staged, []
        return self.datanets.store_staged(self.row, self.signed, self.contributor, staged,
                                          skip_duplicates=self.skip_duplicates)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        self.datanets.discard_staged(self.staged)
        self.staged = []
