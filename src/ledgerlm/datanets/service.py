"""The Datanet lifecycle: create, contribute, review, withdraw, publish versions, export."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import fastjsonschema
import jsonschema
import orjson
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ledgerlm.chain.merkle import StandardMerkleTree
from ledgerlm.datanets import parsers
from ledgerlm.datanets.models import (
    DOCUMENTS,
    Contribution,
    Datanet,
    DatanetError,
    DatanetSpec,
    DatanetVersion,
    DuplicateContribution,
    FileEntry,
    UnknownDatanet,
    UploadReceipt,
    manifest_hash,
)
from ledgerlm.errors import AuthError, ConflictError, LedgerError, NotFoundError
from ledgerlm.identity import SignedAction, typed_data, verify_action
from ledgerlm.store import BlobStore, Database, StagedBlob
from ledgerlm.store.actions import record_action
from ledgerlm.store.schema import (
    contribution_events,
    contributions,
    datanets,
    uploads,
    version_members,
    versions,
)

_CONTRIBUTION_COLUMNS = (
    "id", "datanet_id", "upload_id", "contributor", "content_hash", "source", "blob", "payload",
    "state", "reason", "created_at", "updated_at",
)
_INSERT_CONTRIBUTION = (
    f"INSERT INTO contributions ({', '.join(_CONTRIBUTION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_CONTRIBUTION_COLUMNS))})"
)
_HASH, _SOURCE = _CONTRIBUTION_COLUMNS.index("content_hash"), _CONTRIBUTION_COLUMNS.index("source")
LEAF_TYPES = ["bytes32", "address"]  # (content hash, contributor) per accepted contribution
CHUNK = 2000



@dataclass
class IncomingFile:
    name: str
    stream: BinaryIO


class ChainAnchor:
    """What the node plugs in to mirror Datanets and versions on chain (None: off chain only)."""

    def register_datanet(self, datanet: Datanet) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def publish_version(self, datanet: Datanet, version: DatanetVersion) -> str:  # pragma: no cover
        raise NotImplementedError


class Datanets:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        *,
        chain_id: int,
        node_account: LocalAccount,
        max_upload_bytes: int = 50 * 1024 * 1024,
        anchor: ChainAnchor | None = None,
    ):
        self.db = db
        self.blobs = blobs
        self.chain_id = chain_id
        self.node_account = node_account
        self.max_upload_bytes = max_upload_bytes
        self.anchor = anchor
        self._validators: dict[int, Callable[[dict], Any]] = {}

    # ---------------------------------------------------------------- signed actions

    def _record_action(self, conn, signed: SignedAction, signer: str, now: int) -> int:
        return record_action(conn, signed, signer, chain_id=self.chain_id, now=now)

    def _verify(self, signed: SignedAction, expected: str) -> str:
        return verify_action(signed, expected=expected, chain_id=self.chain_id)

    # ---------------------------------------------------------------- Datanets

    def create(self, spec: DatanetSpec, signed: SignedAction) -> Datanet:
        owner = self._verify(signed, "CreateDatanet")
        if signed.message["name"] != spec.name:
            raise AuthError("the signed name differs from the Datanet spec's name", field="name")
        if signed.message["specHash"] != spec.spec_hash():
            raise AuthError("the signature does not cover this Datanet spec (specHash differs)", field="specHash")
        schema = None
        if spec.kind != DOCUMENTS:
            schema = spec.schema_
            _check_schema(schema)
        now = int(time.time())
        with self.db.begin() as conn:
            if conn.execute(select(datanets.c.id).where(datanets.c.name == spec.name)).first():
                raise ConflictError(f"a Datanet named {spec.name!r} already exists", field="name")
            action_id = self._record_action(conn, signed, owner, now)
            conn.execute(
                insert(datanets).values(
                    name=spec.name,
                    owner=owner,
                    description=spec.description,
                    tags=spec.tags,
                    licence=spec.licence,
                    kind=spec.kind,
                    schema=schema,
                    visibility=spec.visibility,
                    spec_hash=spec.spec_hash(),
                    action_id=action_id,
                    created_at=now,
                )
            )
        datanet = self.get(spec.name)
        if self.anchor is not None:
            self.anchor_datanet(datanet)
            datanet = self.get(spec.name)
        return datanet

    def anchor_datanet(self, datanet: Datanet) -> None:
        tx = self.anchor.register_datanet(datanet)
        with self.db.begin() as conn:
            conn.execute(update(datanets).where(datanets.c.id == datanet.id).values(chain_tx=tx))

    def _row(self, conn, name: str):
        row = conn.execute(select(datanets).where(datanets.c.name == name)).mappings().first()
        if row is None:
            raise UnknownDatanet(f"no Datanet named {name!r}", field="datanet")
        return row

    def get(self, name: str) -> Datanet:
        with self.db.connect() as conn:
            row = self._row(conn, name)
            counts = dict(
                conn.execute(
                    select(contributions.c.state, func.count())
                    .where(contributions.c.datanet_id == row["id"])
                    .group_by(contributions.c.state)
                ).all()
            )
            found = self._versions(conn, row)
        return Datanet(
            **row,
            counts={s: counts.get(s, 0) for s in ("pending", "accepted", "rejected", "withdrawn")},
            versions=found,
        )

    def list(self) -> list[Datanet]:
        with self.db.connect() as conn:
            names = conn.execute(select(datanets.c.name).order_by(datanets.c.id)).scalars().all()
        return [self.get(n) for n in names]

    # ---------------------------------------------------------------- contributions

    def _validator(self, row) -> Callable[[dict], Any] | None:
        if row["kind"] == DOCUMENTS:
            return None
        if row["id"] not in self._validators:
            self._validators[row["id"]] = fastjsonschema.compile(row["schema"])
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
        contributor = self._verify(signed, "Contribute")
        if signed.message["datanet"] != name:
            raise AuthError(
                f"the signature is for Datanet {signed.message['datanet']!r}, not {name!r}", field="datanet"
            )
        with self.db.connect() as conn:
            row = self._row(conn, name)
        if not files:
            raise DatanetError("an upload needs at least one file", field="files")
        staged: list[tuple[str, StagedBlob]] = []
        try:
            for incoming in files:
                file_name = parsers.safe_file_name(incoming.name)
                blob = self.blobs.stage(incoming.stream, max_bytes=self.max_upload_bytes, label=file_name)
                staged.append((file_name, blob))
                if blob.size == 0:
                    raise DatanetError(f"{file_name} is empty (0 bytes)", field="files")
            entries = [FileEntry(name=n, sha256=b.sha256, size=b.size) for n, b in staged]
            if manifest_hash(entries) != signed.message["manifestHash"]:
                raise AuthError(
                    "the signature does not cover these files (manifestHash differs from the uploaded bytes)",
                    field="manifestHash",
                )
            return self._store_upload(row, signed, contributor, staged, entries, skip_duplicates)
        finally:
            for _, blob in staged:
                self.blobs.discard(blob)

    def _iter_items(self, row, staged: list[tuple[str, StagedBlob]]) -> Iterator[tuple[str, str, str, str]]:
        """Yield (content hash, payload, source, blob sha256) for every contribution in the upload."""
        validator = self._validator(row)
        for file_name, blob in staged:
            with open(blob.path, "rb") as fh:
                head = fh.read(8192)
            fmt = parsers.detect_format(file_name, head)
            if row["kind"] == DOCUMENTS:
                document = parsers.extract_document(blob.path, file_name, fmt)
                yield blob.sha256, document.text, file_name, blob.sha256
            else:
                if fmt not in parsers.RECORD_FORMATS:
                    raise DatanetError(
                        f"{file_name}: Datanet {row['name']!r} takes records "
                        f"({', '.join(sorted(parsers.RECORD_FORMATS))}), not {fmt}",
                        field="files",
                    )
                for parsed in parsers.iter_records(blob.path, file_name, fmt, validator=validator):
                    yield parsed.content_hash, parsed.canonical.decode(), parsed.location, blob.sha256

    def _store_upload(self, row, signed, contributor, staged, entries, skip_duplicates) -> UploadReceipt:
        now = int(time.time())
        created_blobs: list[str] = []
        try:
            with self.db.begin() as conn:
                action_id = self._record_action(conn, signed, contributor, now)
                upload_id = conn.execute(
                    insert(uploads).values(
                        datanet_id=row["id"],
                        contributor=contributor,
                        manifest_hash=signed.message["manifestHash"],
                        files=[e.model_dump() for e in entries],
                        contribution_count=0,
                        byte_count=sum(e.size for e in entries),
                        action_id=action_id,
                        receipt={},
                        receipt_signature="",
                        created_at=now,
                    )
                ).inserted_primary_key[0]
                first_id = (conn.execute(select(func.max(contributions.c.id))).scalar() or 0) + 1
                next_id = first_id
                skipped = 0
                batch: list[tuple] = []
                datanet_id = row["id"]
                # No per-upload set of hashes: duplicates, within the upload too, are caught by the
                # unique index on live content, so memory stays flat however long the upload is.
                for content_hash, payload, source, blob_hash in self._iter_items(row, staged):
                    # Tuples in _CONTRIBUTION_COLUMNS order: the insert below is a plain executemany.
                    batch.append((next_id, datanet_id, upload_id, contributor, content_hash, source[:300],
                                  blob_hash, payload, "pending", None, now, now))
                    next_id += 1
                    if len(batch) >= CHUNK:
                        batch, dropped = self._insert_chunk(conn, row, batch, skip_duplicates)
                        skipped += dropped
                if batch:
                    _, dropped = self._insert_chunk(conn, row, batch, skip_duplicates)
                    skipped += dropped
                count = conn.execute(
                    select(func.count()).where(contributions.c.upload_id == upload_id)
                ).scalar()
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
                        receipt=receipt.model_dump(),
                        receipt_signature=receipt.node_signature,
                    )
                )
                # Blobs become visible before the rows that name them commit: a crash in between
                # leaves an unreferenced blob (harmless), never a row without its blob.
                for _, blob in staged:
                    if self.blobs.commit(blob):
                        created_blobs.append(blob.sha256)
        except BaseException:
            for sha in created_blobs:
                self.blobs.remove(sha)
            raise
        return receipt

    def _insert_chunk(self, conn, row, batch: list[tuple], skip_duplicates: bool) -> tuple[list, int]:
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
        if skip_duplicates:
            existing = self._live_duplicates(conn, row, batch)
            kept = [r for r in batch if r[_HASH] not in existing]
            dropped += len(batch) - len(kept)
            batch = kept
        if not batch:
            return [], dropped
        try:
            # Plain DBAPI executemany keeps ingest near raw sqlite3 speed; the partial unique index
            # catches content already live in the Datanet, so no lookup is paid on the happy path.
            conn.exec_driver_sql(_INSERT_CONTRIBUTION, batch)
        except IntegrityError:
            existing = self._live_duplicates(conn, row, batch)
            first = next((r for r in batch if r[_HASH] in existing), None)
            if first is None:
                raise
            other_id, other_source, other_upload = existing[first[_HASH]]
            if other_upload == first[2]:
                raise DuplicateContribution(
                    f"{first[_SOURCE]} duplicates {other_source} in the same upload", field="files") from None
            raise DuplicateContribution(
                f"{first[_SOURCE]} is already in Datanet {row['name']!r} as contribution "
                f"{other_id} (use --skip-duplicates to store only new ones)",
                field="files",
            ) from None
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
            encode_typed_data(full_message=typed_data("ContributionReceipt", message, self.chain_id))
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

    def contribution(self, contribution_id: int, *, with_payload: bool = True) -> Contribution:
        with self.db.connect() as conn:
            row = conn.execute(
                select(contributions, datanets.c.name.label("datanet"), datanets.c.kind)
                .join(datanets, datanets.c.id == contributions.c.datanet_id)
                .where(contributions.c.id == contribution_id)
            ).mappings().first()
            if row is None:
                raise NotFoundError(f"no contribution with id {contribution_id}", field="id")
            events = conn.execute(
                select(contribution_events).where(contribution_events.c.contribution_id == contribution_id)
                .order_by(contribution_events.c.id)
            ).mappings().all()
        return _contribution(row, with_payload, [dict(e) for e in events])

    def contributions(
        self, name: str, *, state: str | None = None, limit: int = 100, offset: int = 0,
        with_payload: bool = False, with_events: bool = False,
    ) -> list[Contribution]:
        if state is not None and state not in ("pending", "accepted", "rejected", "withdrawn"):
            raise DatanetError(
                f"unknown state {state!r}: use pending, accepted, rejected or withdrawn", field="state"
            )
        if limit < 1 or limit > 10_000:
            raise DatanetError("limit must be between 1 and 10000", field="limit")
        with self.db.connect() as conn:
            row = self._row(conn, name)
            query = (
                select(contributions, datanets.c.name.label("datanet"), datanets.c.kind)
                .join(datanets, datanets.c.id == contributions.c.datanet_id)
                .where(contributions.c.datanet_id == row["id"])
            )
            if state:
                query = query.where(contributions.c.state == state)
            rows = conn.execute(query.order_by(contributions.c.id).limit(limit).offset(offset)).mappings().all()
            events: dict[int, list] = {}
            if with_events and rows:
                for e in conn.execute(
                    select(contribution_events)
                    .where(contribution_events.c.contribution_id.in_([r["id"] for r in rows]))
                    .order_by(contribution_events.c.id)
                ).mappings():
                    events.setdefault(e["contribution_id"], []).append(dict(e))
        return [_contribution(r, with_payload, events.get(r["id"], [])) for r in rows]

    def set_state(
        self, conn, contribution_id: int, state: str, *, reason: str | None, actor: str | None,
        action_id: int | None = None, details: dict | None = None, allowed_from: tuple[str, ...],
    ) -> None:
        """Move one contribution to a new state and record why: the single place states change."""
        row = conn.execute(
            select(contributions.c.state).where(contributions.c.id == contribution_id)
        ).first()
        if row is None:
            raise NotFoundError(f"no contribution with id {contribution_id}", field="id")
        if row.state not in allowed_from:
            raise ConflictError(
                f"contribution {contribution_id} is {row.state}; it must be {' or '.join(allowed_from)} to become {state}",
                field="state",
            )
        now = int(time.time())
        values: dict[str, Any] = dict(state=state, reason=reason, updated_at=now)
        if state == "withdrawn":
            values["payload"] = None  # the right to be forgotten: the data leaves, its hash stays
        conn.execute(update(contributions).where(contributions.c.id == contribution_id).values(**values))
        conn.execute(
            insert(contribution_events).values(
                contribution_id=contribution_id, state=state, reason=reason, actor=actor,
                action_id=action_id, details=details, created_at=now,
            )
        )

    def review(self, contribution_id: int, signed: SignedAction) -> Contribution:
        """The owner's direct accept/reject, until validator rounds take this over."""
        owner = self._verify(signed, "ReviewContribution")
        if signed.message["contributionId"] != contribution_id:
            raise AuthError("the signature is for another contribution", field="contributionId")
        with self.db.begin() as conn:
            target = self.contribution_owner(conn, contribution_id)
            if target["owner"] != owner:
                raise AuthError(
                    f"only the owner of Datanet {target['datanet']!r} ({target['owner']}) may review it",
                    field="owner", status=403,
                )
            action_id = self._record_action(conn, signed, owner, int(time.time()))
            accept = signed.message["accept"]
            self.set_state(
                conn, contribution_id, "accepted" if accept else "rejected",
                reason=signed.message["reason"] or ("accepted by owner" if accept else "rejected by owner"),
                actor=owner, action_id=action_id, allowed_from=("pending",),
            )
        return self.contribution(contribution_id)

    def contribution_owner(self, conn, contribution_id: int):
        row = conn.execute(
            select(contributions.c.contributor, datanets.c.owner, datanets.c.name.label("datanet"))
            .join(datanets, datanets.c.id == contributions.c.datanet_id)
            .where(contributions.c.id == contribution_id)
        ).mappings().first()
        if row is None:
            raise NotFoundError(f"no contribution with id {contribution_id}", field="id")
        return row

    def withdraw(self, contribution_id: int, signed: SignedAction) -> Contribution:
        contributor = self._verify(signed, "WithdrawContribution")
        if signed.message["contributionId"] != contribution_id:
            raise AuthError("the signature is for another contribution", field="contributionId")
        with self.db.begin() as conn:
            target = self.contribution_owner(conn, contribution_id)
            if target["contributor"] != contributor:
                raise AuthError(
                    f"only the contributor ({target['contributor']}) may withdraw contribution {contribution_id}",
                    field="contributor", status=403,
                )
            action_id = self._record_action(conn, signed, contributor, int(time.time()))
            self.set_state(
                conn, contribution_id, "withdrawn", reason="withdrawn by contributor", actor=contributor,
                action_id=action_id, allowed_from=("pending", "accepted", "rejected"),
            )
        return self.contribution(contribution_id, with_payload=False)

    # ---------------------------------------------------------------- versions

    def _versions(self, conn, row) -> list[DatanetVersion]:
        return [
            _version(row["name"], v)
            for v in conn.execute(
                select(versions).where(versions.c.datanet_id == row["id"]).order_by(versions.c.number)
            ).mappings()
        ]

    def publish(self, name: str, signed: SignedAction) -> DatanetVersion:
        owner = self._verify(signed, "PublishVersion")
        if signed.message["datanet"] != name:
            raise AuthError(f"the signature is for Datanet {signed.message['datanet']!r}", field="datanet")
        now = int(time.time())
        with self.db.begin() as conn:
            row = self._row(conn, name)
            if row["owner"] != owner:
                raise AuthError(f"only the owner of {name!r} ({row['owner']}) may publish it", field="owner", status=403)
            members = conn.execute(
                select(contributions.c.id, contributions.c.content_hash, contributions.c.contributor)
                .where(and_(contributions.c.datanet_id == row["id"], contributions.c.state == "accepted"))
                .order_by(contributions.c.content_hash)
            ).all()
            if not members:
                raise DatanetError(f"Datanet {name!r} has no accepted contributions to publish", field="datanet")
            tree = StandardMerkleTree.of([["0x" + m.content_hash, m.contributor] for m in members], LEAF_TYPES)
            previous = conn.execute(
                select(versions.c.number, versions.c.root)
                .where(versions.c.datanet_id == row["id"]).order_by(versions.c.number.desc()).limit(1)
            ).first()
            if previous is not None and previous.root == tree.root:
                raise ConflictError(
                    f"nothing changed since version {previous.number} of {name!r} (same root {tree.root})",
                    field="datanet",
                )
            number = (previous.number if previous else 0) + 1
            manifest = {
                "datanet": name,
                "version": number,
                "root": tree.root,
                "leaf_types": LEAF_TYPES,
                "contributions": [[m.id, "0x" + m.content_hash, m.contributor] for m in members],
            }
            manifest_bytes = orjson.dumps(manifest)
            manifest_blob = self.blobs.put_bytes(manifest_bytes)
            action_id = self._record_action(conn, signed, owner, now)
            version_id = conn.execute(
                insert(versions).values(
                    datanet_id=row["id"],
                    number=number,
                    root=tree.root,
                    contribution_count=len(members),
                    contributor_count=len({m.contributor for m in members}),
                    manifest_blob=manifest_blob,
                    manifest_hash="0x" + manifest_blob,
                    action_id=action_id,
                    created_at=now,
                )
            ).inserted_primary_key[0]
            conn.execute(
                insert(version_members), [dict(version_id=version_id, contribution_id=m.id) for m in members]
            )
        version = self.version(name, number)
        if self.anchor is not None:
            self.anchor_version(name, number)
            version = self.version(name, number)
        return version

    def anchor_version(self, name: str, number: int) -> DatanetVersion:
        datanet = self.get(name)
        version = self.version(name, number)
        tx = self.anchor.publish_version(datanet, version)
        with self.db.begin() as conn:
            conn.execute(
                update(versions)
                .where(and_(versions.c.datanet_id == datanet.id, versions.c.number == number))
                .values(chain_tx=tx)
            )
        return self.version(name, number)

    def version(self, name: str, number: int | None = None) -> DatanetVersion:
        with self.db.connect() as conn:
            row = self._row(conn, name)
            query = select(versions).where(versions.c.datanet_id == row["id"])
            query = query.where(versions.c.number == number) if number else query.order_by(versions.c.number.desc())
            found = conn.execute(query.limit(1)).mappings().first()
        if found is None:
            what = f"version {number}" if number else "any published version"
            raise NotFoundError(f"Datanet {name!r} has no {what}", field="version")
        return _version(name, found)

    def manifest(self, name: str, number: int) -> dict:
        version = self.version(name, number)
        with self.db.connect() as conn:
            blob = conn.execute(
                select(versions.c.manifest_blob)
                .join(datanets, datanets.c.id == versions.c.datanet_id)
                .where(and_(datanets.c.name == name, versions.c.number == version.number))
            ).scalar()
        return orjson.loads(self.blobs.read_bytes(blob))

    def iter_version(self, name: str, number: int) -> Iterator[dict]:
        """Every example of one version, in Merkle-leaf order, with where it came from."""
        version = self.version(name, number)
        with self.db.connect() as conn:
            row = self._row(conn, name)
            result = conn.execution_options(yield_per=CHUNK).execute(
                select(
                    contributions.c.id, contributions.c.contributor, contributions.c.content_hash,
                    contributions.c.payload, contributions.c.source,
                )
                .join(version_members, version_members.c.contribution_id == contributions.c.id)
                .join(versions, versions.c.id == version_members.c.version_id)
                .where(and_(versions.c.datanet_id == row["id"], versions.c.number == version.number))
                .order_by(contributions.c.content_hash)
            )
            for r in result:
                if r.payload is None:
                    continue  # withdrawn since publication: its data is gone for good
                meta = {"_contribution_id": r.id, "_contributor": r.contributor, "_content_hash": r.content_hash}
                if row["kind"] == DOCUMENTS:
                    yield {"text": r.payload, "source": r.source, **meta}
                else:
                    yield {**orjson.loads(r.payload), **meta}

    def export(self, name: str, number: int, fmt: str, out: Path) -> dict:
        from ledgerlm.datanets.export import write_export

        return write_export(self.iter_version(name, number), fmt, Path(out), version=self.version(name, number))


def _check_schema(schema: Any) -> None:
    if not isinstance(schema, dict):
        raise DatanetError("schema must be a JSON Schema object or \"documents\"", field="schema")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "top level"
        raise DatanetError(f"schema is not valid JSON Schema at {where}: {exc.message}", field="schema") from exc
    if schema.get("type") != "object":
        raise DatanetError('a record schema must have "type": "object"', field="schema")
    try:
        fastjsonschema.compile(schema)
    except Exception as exc:  # fastjsonschema raises several kinds on unsupported constructs
        raise DatanetError(f"schema cannot be compiled: {exc}", field="schema") from exc


def _contribution(row, with_payload: bool, events: list[dict]) -> Contribution:
    payload = None
    if with_payload and row["payload"] is not None:
        payload = row["payload"] if row["kind"] == DOCUMENTS else orjson.loads(row["payload"])
    return Contribution(
        id=row["id"], datanet=row["datanet"], upload_id=row["upload_id"], contributor=row["contributor"],
        content_hash=row["content_hash"], source=row["source"], state=row["state"], reason=row["reason"],
        created_at=row["created_at"], updated_at=row["updated_at"], payload=payload, events=events,
    )


def _version(name: str, row) -> DatanetVersion:
    return DatanetVersion(
        datanet=name, number=row["number"], root=row["root"], contribution_count=row["contribution_count"],
        contributor_count=row["contributor_count"], manifest_hash=row["manifest_hash"],
        chain_tx=row["chain_tx"], created_at=row["created_at"],
    )


__all__ = ["ChainAnchor", "Datanets", "IncomingFile", "LEAF_TYPES", "LedgerError"]
