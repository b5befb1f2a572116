"""Ingest: one signed upload parsed, deduplicated and stored as contributions, all or nothing."""

from __future__ import annotations

import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson
from eth_account.messages import encode_typed_data
from sqlalchemy import and_, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from ledgerlm.datanets import parsers
from ledgerlm.datanets.record_schema import compile_record_schema
from ledgerlm.datanets.schemas import (
    DOCUMENTS,
    DatanetError,
    DuplicateContribution,
    FileEntry,
    QuotaExceeded,
    UploadReceipt,
    manifest_hash,
)
from ledgerlm.errors import AuthError
from ledgerlm.identity import SignedAction, typed_data
from ledgerlm.store import BlobTooLarge, StagedBlob
from ledgerlm.store.actions import refuse_used_nonce
from ledgerlm.store.schema import contributions, uploads

_CONTRIBUTION_COLUMNS = (
    "id", "datanet_id", "upload_id", "contributor", "content_hash", "source", "blob", "payload",
    "state", "reason", "created_at", "updated_at",
)


_INSERT_CONTRIBUTIONS = (f"INSERT INTO contributions ({', '.join(_CONTRIBUTION_COLUMNS)}) "
                         f"VALUES ({', '.join(['?'] * len(_CONTRIBUTION_COLUMNS))})")  # SQLite's qmark style


class _NextIds:
    """SQLite: the write transaction holds the whole database, so an upload simply takes the next ids, and its
    receipt can name its contributions as (first id, count)."""

    def __init__(self, conn):
        self.first = (conn.execute(select(func.max(contributions.c.id))).scalar() or 0) + 1
        self.next = self.first

    def take(self, n: int) -> list[int]:
        ids = list(range(self.next, self.next + n))
        self.next += n
        return ids


class _StagedContributions:
    """PostgreSQL: the upload's rows are copied (COPY, no per-row statement) into a table private to the
    connection while it is parsed, in parallel with other nodes' uploads; then one INSERT ... SELECT moves
    them into `contributions` under consecutive ids, and only that statement waits for other nodes' uploads.
    Duplicates are left to that statement: the live-content index refuses them, and with skip_duplicates
    the statement leaves them out."""

    TABLE = "ledgerlm_staged_contributions"

    def __init__(self, conn):
        # a temporary table lives as long as the connection; its rows only until the transaction ends
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.TABLE} (ord integer NOT NULL, content_hash text NOT NULL, "
            "source text NOT NULL, blob text NOT NULL, payload text) ON COMMIT DELETE ROWS")
        self.conn = conn
        self.rows = 0

    def copy(self, batch: list[tuple]) -> None:
        with self.conn.connection.dbapi_connection.cursor() as cursor, cursor.copy(
                f"COPY {self.TABLE} (ord, content_hash, source, blob, payload) FROM STDIN") as copy:
            for r in batch:
                copy.write_row((self.rows, r[_HASH], r[_SOURCE], r[_BLOB], r[_PAYLOAD]))
                self.rows += 1

    def move(self, db, row, upload_id: int, contributor: str, now: int, skip_duplicates: bool) -> tuple[int, int, int]:
        """(first id, contributions stored, duplicates left out) once the staged rows are in `contributions`."""
        if not self.rows:
            return 0, 0, 0
        db.lock(self.conn, "contributions:ids")  # held to commit: the next upload numbers after these ids
        first = (self.conn.execute(select(func.max(contributions.c.id))).scalar() or 0) + 1
        staged = (f"(SELECT DISTINCT ON (content_hash) * FROM {self.TABLE} ORDER BY content_hash, ord) AS s "
                  "WHERE NOT EXISTS (SELECT 1 FROM contributions AS c WHERE c.datanet_id = :datanet "
                  "AND c.content_hash = s.content_hash AND c.state IN ('pending', 'accepted'))"
                  if skip_duplicates else f"{self.TABLE} AS s")
        insert_rows = text(
            f"INSERT INTO contributions ({', '.join(_CONTRIBUTION_COLUMNS)}) "
            "SELECT :first + row_number() OVER (ORDER BY s.ord) - 1, :datanet, :upload, :contributor, "
            "s.content_hash, s.source, s.blob, s.payload, 'pending', NULL, :now, :now "
            f"FROM {staged} ORDER BY s.ord")
        params = {"first": first, "datanet": row["id"], "upload": upload_id, "contributor": contributor, "now": now}
        try:
            with self.conn.begin_nested():  # PostgreSQL aborts a transaction on any error: return here to explain
                stored = self.conn.execute(insert_rows, params).rowcount
        except IntegrityError:
            duplicate = self._duplicate(row)
            if duplicate is None:
                raise
            raise duplicate from None
        return first, stored, self.rows - stored

    def _duplicate(self, row) -> DuplicateContribution | None:
        """The first staged row the live-content index refused, as the error a contributor can act on."""
        inside = self.conn.execute(text(
            f"SELECT s.source, f.source FROM {self.TABLE} AS s JOIN {self.TABLE} AS f "
            "ON f.content_hash = s.content_hash AND f.ord < s.ord ORDER BY s.ord, f.ord LIMIT 1")).first()
        if inside is not None:
            return DuplicateContribution(f"{inside[0]} duplicates {inside[1]} in the same upload", field="files")
        live = self.conn.execute(text(
            f"SELECT s.source, c.id FROM {self.TABLE} AS s JOIN contributions AS c ON c.datanet_id = :datanet "
            "AND c.content_hash = s.content_hash AND c.state IN ('pending', 'accepted') ORDER BY s.ord LIMIT 1"),
            {"datanet": row["id"]}).first()
        return None if live is None else _already_live(live[0], row["name"], live[1])


def _already_live(source: str, datanet: str, other_id: int) -> DuplicateContribution:
    return DuplicateContribution(
        f"{source} is already in Datanet {datanet!r} as contribution {other_id} "
        "(use --skip-duplicates to store only new ones)",
        field="files",
    )


_HASH, _SOURCE, _BLOB, _PAYLOAD = (_CONTRIBUTION_COLUMNS.index(c) for c in ("content_hash", "source", "blob", "payload"))
CHUNK = 2000
# Rows are inserted once this many payload bytes wait, however few they are: 2,000 records of 100 KB
# (a Parquet file of large cells) held 200 MB before one insert.
CHUNK_BYTES = 16 * 1024 * 1024


@dataclass
class IncomingFile:
    """One uploaded file as it arrives: its name and a stream of its bytes."""

    name: str
    stream: BinaryIO


class Ingest:
    """The upload half of Datanets: verify, stage, parse and insert in one transaction."""

    def _validator(self, row) -> Callable[[dict], Any] | None:
        if row["kind"] == DOCUMENTS:
            return None
        if row["id"] not in self._validators:
            self._validators[row["id"]] = compile_record_schema(row["schema"])
        return self._validators[row["id"]]

    def contribute(
        self,
        name: str,
        signed: SignedAction,
        files: list[IncomingFile],
        *,
        skip_duplicates: bool = False,
    ) -> UploadReceipt:
        """Store one signed upload: all its contributions, or nothing at all."""
        row, contributor = self.authorise_upload(name, signed)
        if not files:
            raise DatanetError("an upload needs at least one file", field="files")
        if len(files) > self.max_upload_files:  # the same cap an upload over HTTP meets (upload.py)
            raise DatanetError(
                f"an upload may hold at most {self.max_upload_files} files (max_upload_files); this one has"
                f" {len(files)}: send them as several uploads (nothing was read)", field="files", status=413)
        staged: list[tuple[str, StagedBlob]] = []
        try:
            for incoming in files:
                file_name = parsers.safe_file_name(incoming.name)
                staged.append((file_name, self.blobs.stage(incoming.stream, max_bytes=self.max_upload_bytes,
                                                           label=file_name)))
        except BaseException:
            self.discard_staged(staged)
            raise
        return self.store_staged(row, signed, contributor, staged, skip_duplicates=skip_duplicates)

    def authorise_upload(self, name: str, signed: SignedAction):
        """Before any file byte is read: the signature, the Datanet, and the signer's right to add to it."""
        contributor = self._verify(signed, "Contribute")
        if signed.message["datanet"] != name:
            raise AuthError(
                f"the signature is for Datanet {signed.message['datanet']!r}, not {name!r}", field="datanet"
            )
        with self.db.connect() as conn:
            refuse_used_nonce(conn, signed, contributor)
            row = self._row(conn, name)
            self._require(conn, row, contributor, "contribute to")
        if self.actor_guard is not None:  # the node's rules for this signer (an agent's policy)
            self.actor_guard(contributor, "contribute", name)
        return row, contributor

    def check_declared(self, signed: SignedAction, contributor: str, entries: list[FileEntry]) -> None:
        """Before any file byte is read: the signed manifest's sizes against the limits and the quota."""
        if not entries:
            raise DatanetError("an upload needs at least one file", field="files")
        if manifest_hash(entries) != signed.message["manifestHash"]:
            raise AuthError("the signature does not cover this manifest (manifestHash differs)", field="manifestHash")
        for entry in entries:
            parsers.safe_file_name(entry.name)
            if entry.size == 0:
                raise DatanetError(f"{entry.name} is empty (0 bytes)", field="files")
            if entry.size > self.max_upload_bytes:
                raise BlobTooLarge(
                    f"{entry.name} is declared as {entry.size} bytes; the upload limit is {self.max_upload_bytes}"
                    " bytes (nothing was read)",
                    field="files",
                )
        with self.db.connect() as conn:
            self._check_quota(conn, contributor, sum(e.size for e in entries))

    def quota_left(self, contributor: str) -> int:
        """How many more bytes the account may upload before it reaches its quota."""
        with self.db.connect() as conn:
            return self.storage_quota_bytes - self.stored_bytes(conn, contributor)

    def stored_bytes(self, conn, contributor: str) -> int:
        """What one account's uploads occupy so far, counted as uploaded."""
        return int(conn.execute(
            select(func.coalesce(func.sum(uploads.c.byte_count), 0)).where(uploads.c.contributor == contributor)
        ).scalar())

    def _check_quota(self, conn, contributor: str, incoming: int) -> int:
        """What the account stores so far; refused when `incoming` more would pass its quota."""
        used = self.stored_bytes(conn, contributor)
        if used + incoming > self.storage_quota_bytes:
            raise QuotaExceeded(
                f"{contributor} already stores {used} bytes; {incoming} more would pass the per-account quota"
                f" of {self.storage_quota_bytes} bytes",
                field="files",
            )
        return used

    def _check_payload(self, contributor: str, used: int, payload_bytes: int, where: str = "") -> None:
        """Refused when what the upload's records expand to (`where`: up to which record) passes the quota."""
        if used + payload_bytes > self.storage_quota_bytes:
            raise QuotaExceeded(
                f"the records of this upload come to {payload_bytes} bytes{where} (a compressed file counts as"
                f" what it expands to); {contributor} already stores {used} bytes and the per-account quota is"
                f" {self.storage_quota_bytes} bytes", field="files")

    def store_staged(
        self, row, signed: SignedAction, contributor: str, staged: list[tuple[str, StagedBlob]], *,
        skip_duplicates: bool = False,
    ) -> UploadReceipt:
        """Parse and store files already staged for an authorised upload; the staging is always cleared."""
        try:
            if not staged:
                raise DatanetError("an upload needs at least one file", field="files")
            for file_name, blob in staged:
                if blob.size == 0:
                    raise DatanetError(f"{file_name} is empty (0 bytes)", field="files")
            entries = [FileEntry(name=n, sha256=b.sha256, size=b.size) for n, b in staged]
            if manifest_hash(entries) != signed.message["manifestHash"]:
                # a form writes a quote in a file name as %22 (HTML's form-data encoding, as httpx and browsers
                # send it): the signature may cover the names with their quotes
                quoted = [FileEntry(name=e.name.replace("%22", '"'), sha256=e.sha256, size=e.size) for e in entries]
                if manifest_hash(quoted) != signed.message["manifestHash"]:
                    raise AuthError(
                        "the signature does not cover these files (manifestHash differs from the uploaded bytes)",
                        field="manifestHash",
                    )
                entries = quoted
                staged = [(e.name, b) for e, (_, b) in zip(quoted, staged)]
            return self._store_upload(row, signed, contributor, staged, entries, skip_duplicates)
        finally:
            self.discard_staged(staged)

    def discard_staged(self, staged: list[tuple[str, StagedBlob]]) -> None:
        for _, blob in staged:
            self.blobs.discard(blob)

    def _iter_items(self, row, staged: list[tuple[str, StagedBlob]]) -> Iterator[tuple[str, str, str, str, int]]:
        """Yield (content hash, payload, source, blob sha256, payload bytes) for every contribution in the upload."""
        validator = self._validator(row)
        for file_name, blob in staged:
            with open(blob.path, "rb") as fh:
                head = fh.read(8192)
            fmt = parsers.detect_format(file_name, head)
            if row["kind"] == DOCUMENTS:
                document = parsers.extract_document(blob.path, file_name, fmt)
                yield blob.sha256, document.text, file_name, blob.sha256, len(document.text.encode())
            else:
                if fmt not in parsers.RECORD_FORMATS:
                    raise DatanetError(
                        f"{file_name}: Datanet {row['name']!r} takes records "
                        f"({', '.join(sorted(parsers.RECORD_FORMATS))}), not {fmt}",
                        field="files",
                    )
                for parsed in parsers.iter_records(blob.path, file_name, fmt, validator=validator):
                    yield (parsed.content_hash, parsed.canonical.decode(), parsed.location, blob.sha256,
                           len(parsed.canonical))

    def _spool_items(self, row, staged, contributor: str, file_bytes: int, spool: BinaryIO) -> int:
        """Parse, validate and hash every contribution into `spool` before the write transaction; the payload bytes.

        SQLite has one writer at a time: parsing inside the transaction held every other write on the node
        (reviews, other uploads) for as long as a large upload took to parse, and they failed after the
        busy timeout. What is stored counts against the quota as it is parsed (compressed formats, Parquet,
        DOCX, PDF, expand: a 57 KB Parquet file once stored 400 MB counted as 57 KB); the transaction checks
        the quota again under its lock.
        """
        with self.db.connect() as conn:
            used = self._check_quota(conn, contributor, file_bytes)
        payload_bytes = 0
        for content_hash, payload, source, blob_hash, size in self._iter_items(row, staged):
            payload_bytes += size
            self._check_payload(contributor, used, payload_bytes, f" by {source[:300]}")
            meta = orjson.dumps((content_hash, source[:300], blob_hash, size))
            body = payload.encode("utf-8", "surrogatepass")
            spool.write(_FRAME.pack(len(meta), len(body)))
            spool.write(meta)
            spool.write(body)
        spool.flush()
        spool.seek(0)
        return payload_bytes

    def _store_upload(self, row, signed, contributor, staged, entries, skip_duplicates) -> UploadReceipt:
        file_bytes = sum(e.size for e in entries)
        # the spool sits beside the staged files: the same disk the upload already had room on
        with tempfile.TemporaryFile(dir=staged[0][1].path.parent) as spool:
            payload_bytes = self._spool_items(row, staged, contributor, file_bytes, spool)
            return self._insert_spooled(row, signed, contributor, staged, entries, skip_duplicates, spool,
                                        file_bytes, payload_bytes)

    def _insert_spooled(self, row, signed, contributor, staged, entries, skip_duplicates, spool, file_bytes,
                        payload_bytes) -> UploadReceipt:
        now = int(time.time())
        created_blobs: list[str] = []
        try:
            with self.db.begin() as conn:
                # Inside the write transaction: two uploads racing for the last of a quota cannot both pass.
                self.db.lock(conn, f"quota:{contributor}")
                if self.actor_guard is not None:  # again at store time: a pause or policy change made while the
                    # body streamed in (an upload may trickle for hours) applies to this upload too
                    self.actor_guard(contributor, "contribute", row["name"])
                used = self._check_quota(conn, contributor, file_bytes)
                self._check_payload(contributor, used, payload_bytes)
                action_id = self._record_action(conn, signed, contributor, now)
                upload_id = conn.execute(
                    insert(uploads).values(
                        datanet_id=row["id"],
                        contributor=contributor,
                        manifest_hash=signed.message["manifestHash"],
                        files=[e.model_dump() for e in entries],
                        contribution_count=0,
                        byte_count=file_bytes,
                        action_id=action_id,
                        receipt={},
                        receipt_signature="",
                        created_at=now,
                    )
                ).inserted_primary_key[0]
                # SQLite takes the next ids as it inserts; PostgreSQL stages the rows and numbers them at the end
                ids = _StagedContributions(conn) if self.db.postgres else _NextIds(conn)
                skipped = 0
                batch: list[tuple] = []
                batch_bytes = 0
                datanet_id = row["id"]
                # No per-upload set of hashes: duplicates, within the upload too, are caught by the
                # unique index on live content, so memory stays flat however long the upload is.
                for content_hash, payload, source, blob_hash, size in _spooled(spool):
                    # Tuples in _CONTRIBUTION_COLUMNS order: on SQLite the insert is a plain executemany.
                    # (the id comes when the rows are inserted, so skipped duplicates leave no gaps)
                    batch.append((0, datanet_id, upload_id, contributor, content_hash, source,
                                  blob_hash, payload, "pending", None, now, now))
                    batch_bytes += size
                    if len(batch) >= CHUNK or batch_bytes >= CHUNK_BYTES:
                        batch, dropped = self._insert_chunk(conn, row, batch, skip_duplicates, ids)
                        skipped += dropped
                        batch_bytes = 0
                if batch:
                    _, dropped = self._insert_chunk(conn, row, batch, skip_duplicates, ids)
                    skipped += dropped
                if isinstance(ids, _StagedContributions):
                    first_id, count, dropped = ids.move(self.db, row, upload_id, contributor, now, skip_duplicates)
                    skipped += dropped
                else:
                    first_id, count = ids.first, ids.next - ids.first
                if count == 0:
                    if skipped:
                        raise DuplicateContribution(
                            f"every one of the {skipped} contributions in this upload is already in "
                            f"Datanet {row['name']!r}: nothing new to store",
                            field="files",
                        )
                    raise DatanetError("the upload holds no contributions", field="files")
                receipt = self._sign_receipt(
                    upload_id, row["name"], contributor, signed.message["manifestHash"],
                    entries, first_id, count, skipped, now,
                )
                conn.execute(
                    update(uploads)
                    .where(uploads.c.id == upload_id)
                    .values(
                        contribution_count=count,
                        byte_count=max(file_bytes, payload_bytes),  # the quota counts what the upload occupies
                        receipt=receipt.model_dump(),
                        receipt_signature=receipt.node_signature,
                    )
                )
                # Blobs become visible before the rows that name them commit: a crash in between
                # leaves an unreferenced blob (harmless), never a row without its blob. The blob's lock keeps a
                # withdrawal of the same bytes from removing it between the two (Review._remove_if_unused).
                for _, blob in staged:
                    self.db.lock(conn, f"blob:{blob.sha256}")
                    if self.blobs.commit(blob):
                        created_blobs.append(blob.sha256)
        except BaseException:
            for sha in created_blobs:
                self.blobs.remove(sha)
            raise
        return receipt

    def _insert_chunk(self, conn, row, batch: list[tuple], skip_duplicates: bool,
                      ids: _NextIds | _StagedContributions) -> tuple[list, int]:
        dropped = 0
        first_seen: dict[str, tuple] = {}
        kept = []
        for r in batch:  # duplicates inside this chunk: the index would only name the first one
            if r[_HASH] in first_seen:
                if not skip_duplicates:
                    raise DuplicateContribution(
                        f"{r[_SOURCE]} duplicates {first_seen[r[_HASH]][_SOURCE]} in the same upload", field="files")
                dropped += 1
                continue
            first_seen[r[_HASH]] = r
            kept.append(r)
        batch = kept
        if isinstance(ids, _StagedContributions):
            if batch:
                ids.copy(batch)
            return [], dropped
        if skip_duplicates:
            existing = self._live_duplicates(conn, row, batch)
            kept = [r for r in batch if r[_HASH] not in existing]
            dropped += len(batch) - len(kept)
            batch = kept
        if not batch:
            return [], dropped
        batch = [(i, *r[1:]) for i, r in zip(ids.take(len(batch)), batch)]
        try:
            # Plain DBAPI executemany keeps ingest near raw sqlite3 speed; the partial unique index
            # catches content already live in the Datanet, so no lookup is paid on the happy path.
            conn.exec_driver_sql(_INSERT_CONTRIBUTIONS, batch)
        except IntegrityError:
            existing = self._live_duplicates(conn, row, batch)
            first = next((r for r in batch if r[_HASH] in existing), None)
            if first is None:
                raise
            other_id, other_source, other_upload = existing[first[_HASH]]
            if other_upload == first[2]:
                raise DuplicateContribution(
                    f"{first[_SOURCE]} duplicates {other_source} in the same upload", field="files") from None
            raise _already_live(first[_SOURCE], row["name"], other_id) from None
        return [], dropped

    def _live_duplicates(self, conn, row, batch: list[tuple]) -> dict[str, tuple[int, str, int]]:
        """content hash -> (contribution id, source, upload id) of live contributions in the batch."""
        return {
            r.content_hash: (r.id, r.source, r.upload_id)
            for r in conn.execute(
                select(contributions.c.content_hash, contributions.c.id, contributions.c.source,
                       contributions.c.upload_id).where(
                    and_(
                        contributions.c.datanet_id == row["id"],
                        contributions.c.state.in_(("pending", "accepted")),
                        contributions.c.content_hash.in_([r[_HASH] for r in batch]),
                    )
                )
            )
        }

    def _sign_receipt(self, upload_id, datanet, contributor, mhash, entries, first_id, count, skipped, now):
        message = {
            "node": self.node_account.address,
            "uploadId": upload_id,
            "contributor": contributor,
            "datanet": datanet,
            "manifestHash": mhash,
            "firstContributionId": first_id,
            "contributionCount": count,
            "timestamp": now,
        }
        signature = self.node_account.sign_message(
            encode_typed_data(full_message=typed_data("ContributionReceipt", message, self.domain))
        ).signature.hex()
        return UploadReceipt(
            upload_id=upload_id,
            datanet=datanet,
            contributor=contributor,
            manifest_hash=mhash,
            files=entries,
            first_contribution_id=first_id,
            contribution_count=count,
            skipped_duplicates=skipped,
            byte_count=sum(e.size for e in entries),
            created_at=now,
            node=self.node_account.address,
            node_signature="0x" + signature.removeprefix("0x"),
        )


# a spooled contribution: the lengths of its metadata (JSON) and of its payload (UTF-8), then both
_FRAME = struct.Struct("<IQ")


def _spooled(spool: BinaryIO) -> Iterator[tuple[str, str, str, str, int]]:
    """The (content hash, payload, source, blob sha256, payload bytes) `Ingest._spool_items` wrote, in order."""
    while header := spool.read(_FRAME.size):
        meta_len, body_len = _FRAME.unpack(header)
        content_hash, source, blob_hash, size = orjson.loads(spool.read(meta_len))
        yield content_hash, spool.read(body_len).decode("utf-8", "surrogatepass"), source, blob_hash, size
