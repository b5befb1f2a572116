"""Review: reading contributions and moving them between states (owner review, withdrawal)."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from sqlalchemy import and_, func, insert, select, update

from ledgerlm.datanets.schemas import (
    DOCUMENTS,
    MAX_CONTRIBUTIONS_PAGE,
    MAX_PAYLOAD_PAGE,
    MAX_REVIEW_BATCH,
    PAGE_PAYLOAD_BYTES,
    Contribution,
    ContributionPage,
    DatanetError,
    ReviewBatch,
)
from ledgerlm.errors import AuthError, ConflictError, NotFoundError
from ledgerlm.identity import SignedAction
from ledgerlm.store.schema import contribution_events, contributions, datanets, gate_reports, versions

log = logging.getLogger(__name__)


class Review:
    """Contributions as users see them, and the single place their state changes."""

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
        """One page of the Datanet's contributions in id order (`contribution_page`)."""
        return self.contribution_page(name, state=state, limit=limit, offset=offset, with_payload=with_payload,
                                      with_events=with_events).contributions

    def contribution_page(
        self, name: str, *, state: str | None = None, limit: int = 100, offset: int = 0,
        with_payload: bool = False, with_events: bool = False,
    ) -> ContributionPage:
        """Up to `limit` contributions from `offset` on, in id order, and where the next page starts.

        A page holds at most MAX_CONTRIBUTIONS_PAGE rows, MAX_PAYLOAD_PAGE with their data; the data stop
        at PAGE_PAYLOAD_BYTES (the first row always comes, whatever its size, so every row can be read)."""
        if state is not None and state not in ("pending", "accepted", "rejected", "withdrawn"):
            raise DatanetError(
                f"unknown state {state!r}: use pending, accepted, rejected or withdrawn", field="state"
            )
        most = MAX_PAYLOAD_PAGE if with_payload else MAX_CONTRIBUTIONS_PAGE
        if not 1 <= limit <= most:
            raise DatanetError(
                f"limit must be between 1 and {most}{' with payload=true' if with_payload else ''}, not {limit}: "
                f"read the rest a page at a time with offset", field="limit")
        if offset < 0:
            raise DatanetError(f"offset must be 0 or more, not {offset}", field="offset")
        columns = [c for c in contributions.c if with_payload or c.name != "payload"]
        with self.db.connect() as conn:
            row = self._row(conn, name)
            where = [contributions.c.datanet_id == row["id"]]
            if state:
                where.append(contributions.c.state == state)
            # Ids and sizes first, one row past the page to tell whether more follow; the data are read
            # only for the rows that fit the budget, so a page of large documents is never held whole.
            sized = conn.execute(
                select(contributions.c.id, func.coalesce(func.length(contributions.c.payload), 0))
                .where(*where).order_by(contributions.c.id).limit(limit + 1).offset(offset)
            ).all()
            more = len(sized) > limit
            ids, spent = [], 0
            for cid, size in sized[:limit]:
                if with_payload and ids and spent + size > PAGE_PAYLOAD_BYTES:
                    more = True
                    break
                ids.append(cid)
                spent += size
            rows = conn.execute(
                select(*columns, datanets.c.name.label("datanet"), datanets.c.kind)
                .join(datanets, datanets.c.id == contributions.c.datanet_id)
                .where(contributions.c.id.in_(ids)).order_by(contributions.c.id)
            ).mappings().all() if ids else []
            events: dict[int, list] = {}
            if with_events and rows:
                for e in conn.execute(
                    select(contribution_events)
                    .where(contribution_events.c.contribution_id.in_(ids))
                    .order_by(contribution_events.c.id)
                ).mappings():
                    events.setdefault(e["contribution_id"], []).append(dict(e))
        return ContributionPage(
            contributions=[_contribution(r, with_payload, events.get(r["id"], [])) for r in rows],
            next_offset=offset + len(rows) if more else None,
        )

    def set_state(
        self, conn, contribution_id: int, state: str, *, reason: str | None, actor: str | None,
        action_id: int | None = None, details: dict | None = None, allowed_from: tuple[str, ...],
    ) -> None:
        """Move one contribution to a new state and record why: the single place states change."""
        # Locked to the end of the transaction: another node moving it meanwhile waits, then sees the new state.
        row = conn.execute(
            select(contributions.c.state).where(contributions.c.id == contribution_id).with_for_update()
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
            values["source"] = "withdrawn"  # the file's name may say whose data it was
            _forget_quotes(conn, contribution_id)
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
                # asked for by id: a stranger is not told whose it is, nor which Datanet (it may be private)
                raise AuthError(f"only the owner of contribution {contribution_id}'s Datanet may review it",
                                field="owner", status=403)
            self._row(conn, target["datanet"], lock=True)  # the lock a round's opening takes: never both at once
            _not_in_an_open_round(conn, [contribution_id])
            action_id = self._record_action(conn, signed, owner, int(time.time()))
            accept = signed.message["accept"]
            self.set_state(
                conn, contribution_id, "accepted" if accept else "rejected",
                reason=signed.message["reason"] or ("accepted by owner" if accept else "rejected by owner"),
                actor=owner, action_id=action_id, allowed_from=("pending",),
            )
        return self.contribution(contribution_id)

    def review_many(self, name: str, signed: SignedAction) -> ReviewBatch:
        """The owner's accept/reject of many pending contributions under one signature, all or none."""
        owner = self._verify(signed, "ReviewContributions")
        if signed.message["datanet"] != name:
            raise AuthError(f"the signature is for Datanet {signed.message['datanet']!r}", field="datanet")
        ids = signed.message["contributionIds"]
        if not ids:
            raise DatanetError("contributionIds is empty: name at least one contribution", field="contributionIds")
        if len(ids) > MAX_REVIEW_BATCH:
            raise DatanetError(f"contributionIds lists {len(ids)} contributions; at most {MAX_REVIEW_BATCH} "
                               "per signature", field="contributionIds")
        if len(set(ids)) != len(ids):
            raise DatanetError("contributionIds lists a contribution more than once", field="contributionIds")
        if any(i >= 2**63 for i in ids):
            raise DatanetError("contributionIds lists an id past any contribution's (at most 2^63 - 1)",
                               field="contributionIds")
        accept = signed.message["accept"]
        state = "accepted" if accept else "rejected"
        reason = signed.message["reason"] or ("accepted by owner" if accept else "rejected by owner")
        with self.db.begin() as conn:
            row = self._row(conn, name, lock=True)  # the lock a round's opening takes: never both at once
            if row["owner"] != owner:
                raise AuthError(f"only the owner of Datanet {name!r} ({row['owner']}) may review it",
                                field="owner", status=403)
            found = dict(conn.execute(  # locked in id order, so two overlapping batches cannot deadlock
                select(contributions.c.id, contributions.c.state)
                .where(contributions.c.datanet_id == row["id"], contributions.c.id.in_(ids))
                .order_by(contributions.c.id).with_for_update()
            ).all())
            foreign = [i for i in ids if i not in found]
            if foreign:
                raise NotFoundError(f"{_some(foreign)} not in Datanet {name!r}", field="contributionIds")
            settled = [i for i in ids if found[i] != "pending"]
            if settled:
                raise ConflictError(f"{_some(settled)} no longer pending ({settled[0]} is "
                                    f"{found[settled[0]]}); nothing was changed", field="contributionIds")
            _not_in_an_open_round(conn, ids)
            action_id = self._record_action(conn, signed, owner, int(time.time()))
            for cid in ids:
                self.set_state(conn, cid, state, reason=reason, actor=owner, action_id=action_id,
                               allowed_from=("pending",))
        return ReviewBatch(datanet=name, state=state, reason=reason, contribution_ids=ids)

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
                raise AuthError(f"only its contributor may withdraw contribution {contribution_id}",
                                field="contributor", status=403)
            action_id = self._record_action(conn, signed, contributor, int(time.time()))
            self.set_state(
                conn, contribution_id, "withdrawn", reason="withdrawn by contributor", actor=contributor,
                action_id=action_id, allowed_from=("pending", "accepted", "rejected"),
            )
            blob = conn.execute(select(contributions.c.blob).where(contributions.c.id == contribution_id)).scalar()
        self._remove_if_unused(blob)
        withdrawn = self.contribution(contribution_id, with_payload=False)
        if self.after_withdrawal is not None:
            try:
                self.after_withdrawal(contribution_id, withdrawn.datanet)
            except Exception:  # the withdrawal is stored: it is answered as such, and the operator's log says what
                log.exception("copies of withdrawn contribution %s were not all removed", contribution_id)
        return withdrawn

    def _remove_if_unused(self, blob: str) -> None:
        """The uploaded file leaves too once every record it held is withdrawn (its hash stays in the rows); a crash
        before this removal leaves it to the next start's orphan collection (`referenced_blobs`)."""
        with self.db.begin() as conn:
            # An upload of the same bytes commits its blob under this lock, in the transaction that writes its
            # rows: it either sees the blob gone (and makes it again) or its rows are seen here.
            self.db.lock(conn, f"blob:{blob}")
            kept = conn.execute(select(contributions.c.id).where(and_(
                contributions.c.blob == blob, contributions.c.state != "withdrawn")).limit(1)).first()
            # blobs are named by their content: the same bytes may be a version's manifest or a compute job's
            # checkpoint, which anyone can upload as a file and withdraw
            kept = kept or conn.execute(select(versions.c.id).where(versions.c.manifest_blob == blob)).first()
            if kept is None and not (self.blob_kept is not None and self.blob_kept(blob)):
                self.blobs.remove(blob)


def _not_in_an_open_round(conn, ids: list[int]) -> None:
    """Refuse the owner's review of contributions validators are scoring now: the round's tally decides them, and
    an owner's decision meanwhile would leave validators scoring what is already settled."""
    from ledgerlm.store.schema import round_assignments, validation_rounds

    scored = conn.execute(
        select(round_assignments.c.contribution_id, round_assignments.c.round_id).distinct()
        .join(validation_rounds, validation_rounds.c.id == round_assignments.c.round_id)
        .where(round_assignments.c.contribution_id.in_(ids), validation_rounds.c.state == "open")
        .order_by(round_assignments.c.contribution_id)).all()
    if scored:
        raise ConflictError(f"{_some([r.contribution_id for r in scored])} being scored in open validation round "
                            f"{scored[0].round_id}: its validators decide once it is tallied; nothing was changed",
                            field="contributionIds" if len(ids) > 1 else "id")


def _some(ids: list[int], shown: int = 10) -> str:
    """"contributions 4, 9 and 3 more are" — a bounded list for a one-line error."""
    head = ", ".join(str(i) for i in ids[:shown])
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return f"contribution{'s' if len(ids) > 1 else ''} {head}{more} {'are' if len(ids) > 1 else 'is'}"


def _contribution(row, with_payload: bool, events: list[dict]) -> Contribution:
    payload = None
    if with_payload and row["payload"] is not None:
        payload = row["payload"] if row["kind"] == DOCUMENTS else orjson.loads(row["payload"])
    return Contribution(
        id=row["id"], datanet=row["datanet"], upload_id=row["upload_id"], contributor=row["contributor"],
        content_hash=row["content_hash"], source=row["source"], state=row["state"], reason=row["reason"],
        created_at=row["created_at"], updated_at=row["updated_at"], payload=payload, events=events,
    )


def _unquoted(findings: list | None) -> list:
    """Gate findings without what their `detail` quoted of the record (up to 80 characters, card and ID tails)."""
    return [{**f, "detail": "(quote removed: withdrawn)"} for f in findings or []]


def _forget_quotes(conn, contribution_id: int) -> None:
    """A withdrawn contribution keeps what its gates decided (gate, code, severity, score), not their quotes."""
    conn.execute(update(gate_reports).where(gate_reports.c.contribution_id == contribution_id)
                 .values(findings=_unquoted(conn.execute(select(gate_reports.c.findings).where(
                     gate_reports.c.contribution_id == contribution_id)).scalar())))
    for e in conn.execute(select(contribution_events.c.id, contribution_events.c.reason, contribution_events.c.details)
                          .where(contribution_events.c.contribution_id == contribution_id)).all():
        findings = (e.details or {}).get("findings")
        if not findings:
            continue
        reason = e.reason
        if reason and reason.startswith("gates: "):
            reason = "gates: " + "; ".join(f"{f.get('gate')}/{f.get('code')}" for f in findings)
        conn.execute(update(contribution_events).where(contribution_events.c.id == e.id)
                     .values(reason=reason, details={**e.details, "findings": _unquoted(findings)}))
