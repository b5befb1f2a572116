"""Versions: immutable snapshots of accepted contributions, their Merkle roots and exports."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
from sqlalchemy import and_, insert, select, update

from ledgerlm.chain.merkle import StandardMerkleTree
from ledgerlm.datanets.schemas import DOCUMENTS, EXPORT_FIELDS, DatanetError, DatanetVersion
from ledgerlm.errors import AuthError, ConflictError, NotFoundError
from ledgerlm.identity import SignedAction
from ledgerlm.store.schema import contributions, datanets, version_members, versions

LEAF_TYPES = ["bytes32", "address"]  # (content hash, contributor) per accepted contribution
_READ_ROWS = 2000


class Versions:
    """Publishing, reading and exporting Datanet versions."""

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
        taken = False
        try:
            with self.db.begin() as conn:
                # The Datanet's row is locked so two nodes cannot publish the same version number, and the members
                # are held so none is withdrawn while the version that names it commits.
                row = self._row(conn, name, lock=True)
                if row["owner"] != owner:
                    raise AuthError(f"only the owner of {name!r} ({row['owner']}) may publish it", field="owner", status=403)
                members = conn.execute(
                    select(contributions.c.id, contributions.c.content_hash, contributions.c.contributor)
                    .where(and_(contributions.c.datanet_id == row["id"], contributions.c.state == "accepted"))
                    .order_by(contributions.c.content_hash).with_for_update(read=True)
                ).all()
                if not members:
                    raise DatanetError(f"Datanet {name!r} has no accepted contributions to publish", field="datanet")
                tree = StandardMerkleTree.of([["0x" + m.content_hash, m.contributor] for m in members], LEAF_TYPES)
                previous = conn.execute(
                    select(versions.c.number, versions.c.root, versions.c.chain_tx)
                    .where(versions.c.datanet_id == row["id"]).order_by(versions.c.number.desc()).limit(1)
                ).first()
                if previous is not None and previous.root == tree.root:
                    if previous.chain_tx is not None or self.anchor is None:
                        raise ConflictError(
                            f"nothing changed since version {previous.number} of {name!r} (same root {tree.root})",
                            field="datanet",
                        )
                    number = previous.number  # its anchoring failed (the chain was away): publishing again finishes it
                else:
                    number = (previous.number if previous else 0) + 1
                    action_id = self._record_action(conn, signed, owner, now)
                    if self.anchor is not None:  # its root goes on chain at the node's expense; a replay costs no slot
                        self._take_anchoring(self._anchored_versions, owner, "published {} versions", field="datanet")
                        taken = True
                    manifest = {
                        "datanet": name,
                        "version": number,
                        "root": tree.root,
                        "leaf_types": LEAF_TYPES,
                        "contributions": [[m.id, "0x" + m.content_hash, m.contributor] for m in members],
                    }
                    manifest_bytes = orjson.dumps(manifest)
                    manifest_blob = self.blobs.put_bytes(manifest_bytes)
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
        except BaseException:
            if taken:  # nothing was stored: nor is the hour's anchoring spent
                self._anchored_versions.give_back(owner.lower())
            raise
        if self.anchor is not None:
            self.anchor_pending(name)
        return self.version(name, number)

    def anchor_pending(self, name: str) -> dict[str, int]:
        """Anchor the Datanet and each of its versions the chain does not hold yet, in order: the Registry takes
        versions one after another, so one whose anchoring failed would refuse every later one. Returns how many
        of each it anchored."""
        datanet = self.get(name)
        done = {"datanets": 0, "versions": 0}
        if datanet.chain_tx is None:
            self.anchor_datanet(datanet)
            done["datanets"] += 1
        for version in sorted(datanet.versions, key=lambda v: v.number):
            if version.chain_tx is None:
                self.anchor_version(name, version.number)
                done["versions"] += 1
        return done

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
            result = conn.execution_options(yield_per=_READ_ROWS).execute(
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
                meta = dict(zip(EXPORT_FIELDS, (r.id, r.contributor, r.content_hash), strict=True))
                if row["kind"] == DOCUMENTS:
                    yield {"text": r.payload, "source": r.source, **meta}
                else:
                    yield {**orjson.loads(r.payload), **meta}

    def export(self, name: str, number: int, fmt: str, out: Path) -> dict:
        from ledgerlm.datanets.export import write_export

        return write_export(self.iter_version(name, number), fmt, Path(out), version=self.version(name, number))


def _version(name: str, row) -> DatanetVersion:
    return DatanetVersion(
        datanet=name, number=row["number"], root=row["root"], contribution_count=row["contribution_count"],
        contributor_count=row["contributor_count"], manifest_hash=row["manifest_hash"],
        chain_tx=row["chain_tx"], created_at=row["created_at"],
    )
