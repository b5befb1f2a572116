"""The Datanet lifecycle: create and read Datanets; ingest, review and versions come from their modules."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import jsonschema
from eth_account.signers.local import LocalAccount
from sqlalchemy import func, insert, select, update

from ledgerlm.buckets import KeyedLimit, hourly
from ledgerlm.datanets.access import Access
from ledgerlm.datanets.ingest import Ingest
from ledgerlm.datanets.record_schema import compile_record_schema
from ledgerlm.datanets.review import Review
from ledgerlm.datanets.schemas import (
    DOCUMENTS,
    LABEL_FIELD_ANNOTATION,
    Datanet,
    DatanetError,
    DatanetSpec,
    DatanetVersion,
    UnknownDatanet,
)
from ledgerlm.datanets.versions import Versions
from ledgerlm.errors import AuthError, ConflictError
from ledgerlm.identity import SignedAction, SigningDomain, verify_action
from ledgerlm.store import BlobStore, Database
from ledgerlm.store.actions import record_action
from ledgerlm.store.schema import contributions, datanets, versions


class ChainAnchor(Protocol):
    """What the node plugs in to mirror Datanets and versions on chain (None: off chain only)."""

    def register_datanet(self, datanet: Datanet) -> str: ...

    def publish_version(self, datanet: Datanet, version: DatanetVersion) -> str: ...


class Datanets(Access, Ingest, Review, Versions):
    """Every Datanet on this node: its spec and counts here; uploads, review and versions mixed in."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        *,
        domain: SigningDomain,
        node_account: LocalAccount,
        max_upload_bytes: int = 50 * 1024 * 1024,
        storage_quota_bytes: int = 1024 * 1024 * 1024,
        max_upload_files: int = 1000,
        anchor: ChainAnchor | None = None,
        datanets_per_hour: int = 60,
        datanets_per_owner_per_hour: int = 10,
        versions_per_hour: int = 120,
        versions_per_owner_per_hour: int = 30,
    ):
        self.db = db
        self.blobs = blobs
        self.domain = domain
        self.node_account = node_account
        self.max_upload_bytes = max_upload_bytes
        self.storage_quota_bytes = storage_quota_bytes
        self.max_upload_files = max_upload_files
        self.anchor = anchor
        # the node pays the gas of every Datanet it registers and every version root it anchors
        # (NodeConfig.datanets_per_hour, versions_per_hour): per owner, then in all
        self._registrations = KeyedLimit(hourly(datanets_per_owner_per_hour), hourly(datanets_per_hour))
        self._anchored_versions = KeyedLimit(hourly(versions_per_owner_per_hour), hourly(versions_per_hour))
        # called with (signer, action, Datanet) before a signed action takes effect; may refuse it
        self.actor_guard: Callable[[str, str, str | None], None] | None = None
        # told (contribution id, Datanet) once a withdrawal is stored: copies of its record elsewhere go too
        self.after_withdrawal: Callable[[int, str], None] | None = None
        # whether another room keeps a blob (a compute job's checkpoint): a withdrawal must not delete it
        self.blob_kept: Callable[[str], bool] | None = None
        self._validators: dict[int, Callable[[dict], Any]] = {}

    # ---------------------------------------------------------------- signed actions

    def _record_action(self, conn, signed: SignedAction, signer: str, now: int) -> int:
        return record_action(conn, signed, signer, chain_id=self.domain.chain_id, now=now)

    def _verify(self, signed: SignedAction, expected: str) -> str:
        return verify_action(signed, expected=expected, domain=self.domain)

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
        taken = False
        try:
            with self.db.begin() as conn:
                if conn.execute(select(datanets.c.id).where(datanets.c.name == spec.name)).first():
                    raise ConflictError(f"a Datanet named {spec.name!r} already exists", field="name")
                action_id = self._record_action(conn, signed, owner, now)
                if self.anchor is not None:
                    # counted only once the name is free and the signature unused, and inside the transaction, so
                    # the refusal stores nothing: requests that store nothing cost nobody's hour of gas
                    self._take_anchoring(self._registrations, owner, "created {} Datanets", field="name")
                    taken = True
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
                        owner_share_bps=spec.owner_share_bps,
                        spec_hash=spec.spec_hash(),
                        action_id=action_id,
                        created_at=now,
                    )
                )
        except BaseException:
            if taken:  # nothing was stored (a value the database refused, a race on the name): nor is the hour spent
                self._registrations.give_back(owner.lower())
            raise
        datanet = self.get(spec.name)
        if self.anchor is not None:
            self.anchor_datanet(datanet)
            datanet = self.get(spec.name)
        return datanet

    def _take_anchoring(self, limit: KeyedLimit, owner: str, done: str, *, field: str) -> None:
        """Count one on-chain write the node pays for on behalf of `owner` (`done`: what they did, "{}" the
        count), or refuse it (429) while the owner's or the node's hour is spent; nothing is stored and the
        signed action stays unused, so it may be sent again later."""
        def refusal(spent: str, most: int, wait: int) -> DatanetError:
            if spent == "each":
                return DatanetError(f"{owner} has {done.format(most)} within the hour, the most this node anchors for "
                                    f"one owner; try again in {wait} s", field="owner", status=429)
            return DatanetError(f"this node has anchored its {most} writes of that kind within the hour, the most it "
                                f"pays the gas of; try again in {wait} s", field=field, status=429)

        limit.take_or_refuse(owner.lower(), refusal)

    def anchor_datanet(self, datanet: Datanet) -> None:
        tx = self.anchor.register_datanet(datanet)
        with self.db.begin() as conn:
            conn.execute(update(datanets).where(datanets.c.id == datanet.id).values(chain_tx=tx))

    def _row(self, conn, name: str, *, lock: bool = False):
        """The Datanet's row; `lock` holds it against other nodes' writes until the transaction ends."""
        query = select(datanets).where(datanets.c.name == name)
        row = conn.execute(query.with_for_update() if lock else query).mappings().first()
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

    def referenced_blobs(self) -> set[str]:
        """Every blob a row points to: uploaded files holding a record not withdrawn, and version manifests."""
        with self.db.connect() as conn:
            files = conn.execute(select(contributions.c.blob).where(contributions.c.state != "withdrawn")
                                 .distinct()).scalars()
            manifests = conn.execute(select(versions.c.manifest_blob)).scalars()
            return set(files) | set(manifests)

    def list(self, reader: str | None = None, *, shows_private: Callable[[str], bool] | None = None,
             offset: int = 0, limit: int | None = None) -> list[Datanet]:
        """Every public Datanet, and the private ones `reader` owns or is a member of (and, given
        `shows_private`, that it says yes to), in creation order: `limit` of them from `offset` on."""
        return self.page(reader, shows_private=shows_private, offset=offset, limit=limit)[0]

    def page(self, reader: str | None = None, *, shows_private: Callable[[str], bool] | None = None,
             offset: int = 0, limit: int | None = None,
             budget_bytes: int | None = None) -> tuple[list[Datanet], int | None]:
        """`list`, and where the next page starts (None after the last): a page also ends once its Datanets'
        JSON passes `budget_bytes`, so one answer stays bounded however long the descriptions and schemas are."""
        with self.db.connect() as conn:
            names = self.readable_names(conn, reader, shows_private)
        end = len(names) if limit is None else min(len(names), offset + limit)
        found: list[Datanet] = []
        size = 0
        for name in names[offset:end]:
            datanet = self.get(name)
            found.append(datanet)
            if budget_bytes is not None:
                size += len(datanet.model_dump_json(by_alias=True))
                if size >= budget_bytes:
                    break
        following = offset + len(found)
        return found, (following if following < len(names) else None)

    def listed_names(self, reader: str | None = None, *, shows_private: Callable[[str], bool] | None = None,
                     query: str = "") -> list[str]:
        """The names `list` would give (matching every word of `query` in a name, description, tag or licence), in
        creation order, read without loading each Datanet."""
        with self.db.connect() as conn:
            return self.readable_names(conn, reader, shows_private, query=query)

    def public_contribution_counts(self) -> dict[str, int]:
        """Contributions per state over every public Datanet, counted in one query."""
        with self.db.connect() as conn:
            rows = conn.execute(
                select(contributions.c.state, func.count()).join(datanets, datanets.c.id == contributions.c.datanet_id)
                .where(datanets.c.visibility != "private").group_by(contributions.c.state)).all()
        return {state: int(n) for state, n in rows}

    def all(self) -> list[Datanet]:
        """Every Datanet, private ones included: for the node's own upkeep, never for a reader."""
        with self.db.connect() as conn:
            names = conn.execute(select(datanets.c.name).order_by(datanets.c.id)).scalars().all()
        return [self.get(n) for n in names]


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
    label = schema.get(LABEL_FIELD_ANNOTATION)
    properties = schema.get("properties")
    if label is not None and not (isinstance(label, str) and isinstance(properties, dict) and label in properties):
        raise DatanetError(f'"{LABEL_FIELD_ANNOTATION}" must name one of the schema\'s properties, got {label!r}',
                           field=f"schema.{LABEL_FIELD_ANNOTATION}")
    compile_record_schema(schema)
