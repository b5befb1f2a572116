"""Validator rounds on a node: gates on pending data, stake-sampled assignment, commit–reveal
votes, stake-weighted consensus, reputation and slashing — stored, signed and explained."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from eth_utils import keccak
from pydantic import BaseModel, Field
from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.engine import Connection

from ledgerlm.chain import StakeRole
from ledgerlm.datanets import DOCUMENTS, Datanets
from ledgerlm.errors import AuthError, ConflictError, NotFoundError
from ledgerlm.identity import ReadGrant, SignedAction, SigningDomain, verify_action
from ledgerlm.store import Database
from ledgerlm.store.actions import record_action, refuse_used_nonce
from ledgerlm.store.schema import (
    contributions,
    datanet_members,
    datanets,
    gate_reports,
    reputation,
    reputation_history,
    round_assignments,
    round_votes,
    signed_actions,
    uploads,
    validation_rounds,
)
from ledgerlm.times import format_time
from ledgerlm.validation.consensus import (
    BPS,
    Reveal,
    Round,
    RoundRules,
    RoundTally,
    SlashPolicy,
    ValidatorOutcome,
    assign_validators,
    check_commit,
    check_reveal,
    slashing_decisions,
    tally,
)
from ledgerlm.validation.errors import ValidationError
from ledgerlm.validation.gates import Candidate, label_field, run_gates
from ledgerlm.validation.policy import GatePolicy
from ledgerlm.validation.reputation import (
    NEUTRAL_BPS,
    contributor_outcome_bps,
    required_bond,
    validator_outcome_bps,
)
from ledgerlm.validation.reputation import update as update_reputation


def policy_hash(policy: dict) -> str:
    return "0x" + hashlib.sha256(orjson.dumps(policy, option=orjson.OPT_SORT_KEYS)).hexdigest()


class RoundSettings(BaseModel):
    validators_per_contribution: int = Field(3, ge=1, le=50)
    commit_seconds: int = Field(3600, ge=1)
    reveal_seconds: int = Field(3600, ge=1)
    accept_threshold: int = Field(60, ge=0, le=100)
    clip_distance: int = Field(25, ge=0, le=100)
    quorum_bps: int = Field(5000, ge=1, le=BPS)
    contributor_bond_slash_bps: int = Field(5000, ge=0, le=BPS)
    bond_per_contribution: int = Field(10**18, ge=0)  # LGR base units at stake per contribution


class RoundView(BaseModel):
    id: int
    datanet: str
    state: str
    commit_deadline: int
    reveal_deadline: int
    rules: dict[str, int]
    stakes: dict[str, str]
    assignments: dict[int, list[str]]
    committed: list[str]
    revealed: list[str]
    tally: dict[str, Any] | None
    gated: dict[str, Any] = Field(default_factory=dict)


class ValidationRounds:
    def __init__(
        self,
        db: Database,
        datanets_: Datanets,
        *,
        domain: SigningDomain,
        validator_stakes: Callable[[], Mapping[str, int]],
        contributor_bonds: Callable[[list[str]], Mapping[str, int]] = lambda addresses: {},
        validator_bonds: Callable[[], Mapping[str, int]] | None = None,
        slash: Callable[[int, str, str, int, int], tuple[str, int]] | None = None,
        settings: RoundSettings | None = None,
        clock: Callable[[], float] = time.time,
        seed_source: Callable[[], str] = lambda: "0x" + "00" * 32,
        actor_guard: Callable[[str, str, str | None], None] | None = None,
    ):
        self.db = db
        self.datanets = datanets_
        self.domain = domain
        self.validator_stakes = validator_stakes  # who may be assigned: stake still active
        # what a slash is sized on: active stake and stake cooling down to leave, which the contract slashes too,
        # so that asking to unstake before a tally does not dodge it (default: the active stake)
        self.validator_bonds = validator_bonds or validator_stakes
        self.contributor_bonds = contributor_bonds
        self.slash = slash
        self.settings = settings or RoundSettings()
        self.clock = clock
        self.seed_source = seed_source
        self.actor_guard = actor_guard  # the node's rules for a signer (an agent's policy), before it votes

    def now(self) -> int:
        return int(self.clock())

    def _record(self, conn, signed: SignedAction, signer: str) -> int:
        return record_action(conn, signed, signer, chain_id=self.domain.chain_id, now=self.now())

    def _datanet(self, conn, name: str):
        row = conn.execute(select(datanets).where(datanets.c.name == name)).mappings().first()
        if row is None:
            raise NotFoundError(f"no Datanet named {name!r}", field="datanet")
        return row

    # ------------------------------------------------------------------ gate policy

    def set_policy(self, name: str, policy: dict, signed: SignedAction) -> dict:
        owner = verify_action(signed, expected="SetGatePolicy", domain=self.domain)
        parsed = GatePolicy.from_dict(policy)  # names the unknown gate or field
        if signed.message["datanet"] != name or signed.message["policyHash"] != policy_hash(policy):
            raise AuthError("the signature does not cover this gate policy", field="policyHash")
        with self.db.begin() as conn:
            row = self._datanet(conn, name)
            if row["owner"] != owner:
                raise AuthError(f"only the owner of {name!r} may set its gate policy", field="owner", status=403)
            self._record(conn, signed, owner)
            conn.execute(update(datanets).where(datanets.c.id == row["id"]).values(gate_policy=parsed.to_dict()))
        return parsed.to_dict()

    def policy(self, name: str) -> GatePolicy:
        with self.db.connect() as conn:
            row = self._datanet(conn, name)
        return GatePolicy.from_dict(row["gate_policy"]) if row["gate_policy"] else GatePolicy()

    # ------------------------------------------------------------------ gates

    def run_gates(self, name: str) -> dict[str, Any]:
        """Gate every pending contribution not gated yet; gate rejections are final, with findings.

        The batch is compared with the accepted records and with earlier uploads still pending
        (gated, waiting for a round), so a copy of either is caught.
        """
        policy = self.policy(name)
        columns = (contributions.c.id, contributions.c.contributor, contributions.c.content_hash,
                   contributions.c.payload, contributions.c.source)
        with self.db.connect() as conn:
            row = self._datanet(conn, name)
            in_datanet = contributions.c.datanet_id == row["id"]
            pending = conn.execute(
                select(*columns, gate_reports.c.decision)
                .outerjoin(gate_reports, gate_reports.c.contribution_id == contributions.c.id)
                .where(and_(in_datanet, contributions.c.state == "pending"))
                .order_by(contributions.c.id)
            ).all()
            accepted = conn.execute(
                select(*columns).where(and_(in_datanet, contributions.c.state == "accepted"))
                .order_by(contributions.c.id)
            ).all()
        fresh = [r for r in pending if r.decision is None]
        if not fresh:
            return {"pass": 0, "flag": 0, "reject": 0}
        documents = row["kind"] == DOCUMENTS
        labels = label_field(row["schema"])

        def candidate(r) -> Candidate:
            if documents:  # the file name is exported beside the text (`source`), so it is read too
                return Candidate(r.id, r.contributor, r.content_hash, r.payload, None, labels, name=r.source)
            return Candidate(r.id, r.contributor, r.content_hash, r.payload, orjson.loads(r.payload), labels)

        # Each payload is parsed once: the same candidates feed the gates and the valuation.
        batch = {r.id: candidate(r) for r in fresh}
        reference = [candidate(a) for a in accepted]
        waiting = [candidate(r) for r in pending if r.decision is not None and r.decision != "reject"]
        reports = run_gates(list(batch.values()), policy, accepted=reference, pending=waiting)
        counts = {"pass": 0, "flag": 0, "reject": 0}
        now = self.now()
        rejected: list[tuple[int, str]] = []
        with self.db.begin() as conn:
            # Another node may have gated some of these since they were read: those keep their report.
            self.db.lock(conn, f"gates:{row['id']}")
            done = set(conn.execute(select(gate_reports.c.contribution_id).where(
                gate_reports.c.contribution_id.in_(list(reports)))).scalars())
            reports = {cid: report for cid, report in reports.items() if cid not in done}
            # A rejection by gates the owner set after the upload is the owner's choice, not the contributor's
            # fault: it stands, and costs neither reputation nor bond (`_gate_rejections`).
            predating = self._predating_policy(conn, name, [c for c, r in reports.items() if r.decision == "reject"])
            for cid, report in reports.items():
                counts[report.decision] += 1
                conn.execute(insert(gate_reports).values(
                    contribution_id=cid, decision=report.decision,
                    findings=[f.to_dict() for f in report.findings], value=None, created_at=now,
                    predates_policy=cid in predating,
                ))
                if report.decision == "reject":
                    self.datanets.set_state(
                        conn, cid, "rejected", reason="gates: " + "; ".join(report.reasons), actor=None,
                        details=report.to_dict(), allowed_from=("pending",),
                    )
                    rejected.append((cid, batch[cid].contributor))
        self._contributor_outcomes(None, [(c, a, "reject", None) for c, a in rejected if c not in predating])
        gone = {cid for cid, _ in rejected}
        counts["valuation"] = self._value([c for cid, c in batch.items() if cid not in gone], reference, now)
        return counts

    def _value(self, batch: list[Candidate], accepted: list[Candidate], now: int) -> dict | None:
        """Measured usefulness of what passed the gates: KNN-Shapley against the accepted data when
        there is enough of it, else Data-OOB within the batch (a lone record then goes unvalued); stored per
        contribution with its value `relative` to the batch's mean."""
        from ledgerlm.validation.errors import ValuationError
        from ledgerlm.validation.valuation import relative_values, value_contributions

        if not batch or (len(batch) < 2 and len(accepted) < 5):
            return None
        try:
            if len(accepted) >= 5:
                report = value_contributions(batch, accepted, method="knn_shapley", k=min(10, len(batch)))
            else:
                report = value_contributions(batch, method="data_oob", k=min(5, len(batch) - 1))
        except (ValuationError, ValueError) as exc:
            return {"error": str(exc)}
        relative = relative_values(report.values)
        with self.db.begin() as conn:
            for cid, value in report.values.items():
                conn.execute(update(gate_reports).where(gate_reports.c.contribution_id == cid).values(
                    value={"method": report.method, "value": value, "relative": relative[cid]}))
        summary = report.to_dict()
        summary.pop("values")
        return summary

    # ------------------------------------------------------------------ rounds

    def open_round(self, name: str, signed: SignedAction) -> RoundView:
        owner = verify_action(signed, expected="OpenRound", domain=self.domain)
        if signed.message["datanet"] != name:
            raise AuthError("the signature is for another Datanet", field="datanet")
        with self.db.connect() as conn:
            row = self._datanet(conn, name)
        if row["owner"] != owner:
            raise AuthError(f"only the owner of {name!r} may open a validator round", field="owner", status=403)
        with self.db.connect() as conn:
            # a replayed signature is turned away before the gates run: they reject, value and move reputation
            refuse_used_nonce(conn, signed, owner)
        stakes = {a: s for a, s in self.validator_stakes().items() if s > 0}
        if row["visibility"] == "private":
            # Validators read what they score: a private Datanet is scored only by its owner and members.
            with self.db.connect() as conn:
                allowed = {row["owner"], *conn.execute(select(datanet_members.c.member).where(
                    datanet_members.c.datanet_id == row["id"])).scalars()}
            stakes = {a: s for a, s in stakes.items() if a in allowed}
            if not stakes:
                raise ValidationError(f"{name!r} is private and none of its owner and members has validator stake: "
                                      "add staked validators as members first (`ledgerlm datanet add-member`)",
                                      field="validators", status=409)
        if not stakes:
            raise ValidationError("no validator has stake: stake as a validator first (`ledgerlm stake`)",
                                  field="validators", status=409)
        # only a round that can open runs the gates: a refused one changes nothing
        gated = self.run_gates(name)
        now = self.now()
        s = self.settings
        with self.db.begin() as conn:
            # One round opens at a time per Datanet, across nodes too: each sees the others' assignments as busy.
            conn.execute(select(datanets.c.id).where(datanets.c.id == row["id"]).with_for_update())
            busy = select(round_assignments.c.contribution_id).join(
                validation_rounds, validation_rounds.c.id == round_assignments.c.round_id
            ).where(validation_rounds.c.state == "open")
            contributor_of = dict(conn.execute(
                select(contributions.c.id, contributions.c.contributor).where(and_(
                    contributions.c.datanet_id == row["id"], contributions.c.state == "pending",
                    contributions.c.id.not_in(busy),
                )).order_by(contributions.c.id)
            ).all())
            queue = list(contributor_of)
            if not queue:
                raise ValidationError(f"{name!r} has no pending contributions left after the gates "
                                      f"({gated['reject']} rejected by gates)", field="datanet", status=409)
            self._record(conn, signed, owner)
            rules = RoundRules(s.accept_threshold, s.clip_distance, s.quorum_bps)
            round_id = conn.execute(insert(validation_rounds).values(
                datanet_id=row["id"], seed="0x" + "00" * 32, commit_deadline=now + s.commit_seconds,
                reveal_deadline=now + s.commit_seconds + s.reveal_seconds, rules=rules.__dict__,
                stakes={a: str(v) for a, v in stakes.items()}, state="open", tally=None, created_at=now,
            )).inserted_primary_key[0]
            # The seed mixes a chain value the node cannot choose with the round id.
            seed = "0x" + keccak(bytes.fromhex(self.seed_source().removeprefix("0x")) + round_id.to_bytes(32, "big")).hex()
            assignments = assign_validators(queue, stakes, min(s.validators_per_contribution, len(stakes)), seed,
                                            contributors=contributor_of)
            rows = [{"round_id": round_id, "contribution_id": cid, "validator": v}
                    for cid, validators in assignments.items() for v in validators]
            if not rows:  # a contribution whose contributor is its only staked validator waits for another one
                raise ValidationError("no pending contribution has a staked validator other than its own "
                                      "contributor: nobody scores their own data, so another validator must stake "
                                      "first (`ledgerlm stake`)", field="validators", status=409)
            conn.execute(update(validation_rounds).where(validation_rounds.c.id == round_id).values(seed=seed))
            conn.execute(insert(round_assignments), rows)
        view = self.round(round_id)
        view.gated = gated
        return view

    def _load(self, conn, round_id: int, *, lock: bool = False):
        """The round and its votes; `lock` holds the round's row (commits, reveals and the tally of one round
        take turns, on every node) until the transaction ends."""
        query = select(validation_rounds).where(validation_rounds.c.id == round_id)
        row = conn.execute(query.with_for_update() if lock else query).mappings().first()
        if row is None:
            raise NotFoundError(f"no validator round {round_id}", field="round")
        assignments: dict[int, list[str]] = {}
        for a in conn.execute(select(round_assignments).where(round_assignments.c.round_id == round_id)):
            assignments.setdefault(a.contribution_id, []).append(a.validator)
        votes = conn.execute(select(round_votes).where(round_votes.c.round_id == round_id)).mappings().all()
        rnd = Round(
            round_id=round_id,
            assignments={c: tuple(sorted(v)) for c, v in assignments.items()},
            stakes={a: int(v) for a, v in row["stakes"].items()},
            commit_deadline=row["commit_deadline"], reveal_deadline=row["reveal_deadline"],
            rules=RoundRules(**row["rules"]),
            commits={v["validator"]: v["commit"] for v in votes},
            reveals={v["validator"]: Reveal(v["validator"], {int(k): s for k, s in v["votes"].items()},
                                            bytes.fromhex(v["salt"][2:]))
                     for v in votes if v["votes"] is not None},
        )
        return row, rnd

    @staticmethod
    def _datanet_name(conn, datanet_id: int) -> str:
        return conn.execute(select(datanets.c.name).where(datanets.c.id == datanet_id)).scalar()

    def round(self, round_id: int) -> RoundView:
        with self.db.connect() as conn:
            row, rnd = self._load(conn, round_id)
            name = self._datanet_name(conn, row["datanet_id"])
        return RoundView(
            id=round_id, datanet=name, state=row["state"], commit_deadline=row["commit_deadline"],
            reveal_deadline=row["reveal_deadline"], rules=row["rules"], stakes=row["stakes"],
            assignments={c: list(v) for c, v in rnd.assignments.items()}, committed=sorted(rnd.commits),
            revealed=sorted(rnd.reveals), tally=row["tally"],
        )

    def require_round_reader(self, view: RoundView, reader: str | None) -> None:
        """A private Datanet's round names its contributions and validators: only its readers, and the
        validators the round was assigned to, may see it (raises for anyone else)."""
        try:
            # asked for by id: a stranger is not told which Datanet the round is of
            self.datanets.require_access(view.datanet, reader, named=False)
        except AuthError:
            # a validator may follow its round even after it lost read access to the data
            if reader is None or reader.lower() not in {v.lower() for v in view.stakes}:
                raise

    def latest_rounds_of(self, contribution_ids: list[int]) -> list[RoundView]:
        """The newest round each of these contributions was assigned in (each round once), read alone rather than
        among every round of its Datanet."""
        if not contribution_ids:
            return []
        with self.db.connect() as conn:
            ids = conn.execute(select(func.max(round_assignments.c.round_id))
                               .where(round_assignments.c.contribution_id.in_(list(contribution_ids)))
                               .group_by(round_assignments.c.contribution_id)).scalars().all()
        return [self.round(i) for i in sorted(set(ids))]

    def rounds(self, datanet: str | None = None, limit: int = 100) -> list[RoundView]:
        """Validator rounds, newest first; only those of `datanet` when given."""
        query = select(validation_rounds.c.id).order_by(validation_rounds.c.id.desc()).limit(limit)
        with self.db.connect() as conn:
            if datanet is not None:
                query = query.where(validation_rounds.c.datanet_id == self._datanet(conn, datanet)["id"])
            ids = conn.execute(query).scalars().all()
        return [self.round(i) for i in ids]

    def queue(self, validator: str, grant: ReadGrant | None = None, *, everything: bool = False) -> list[dict]:
        """Open rounds where `validator` has contributions to score, with the data to read, as the signer of
        `grant` (None: unsigned) may see them; `everything`: as the node's operator sees them.

        Of a private Datanet, the data (payload, the file's name, the gates' findings, which quote masked
        emails and card digits) goes only to the validator itself while it may read the Datanet. Its name and
        contribution ids go to the validator, which votes on them even after it lost access, and to the
        Datanet's readers, who see them on the round anyway. Anyone else learns what the Datanet listing
        and a refused round tell a stranger: that a round of some private Datanet waits for this validator,
        and until when; one entry per round, so not even how many of its contributions are assigned."""
        now = self.now()
        with self.db.connect() as conn:
            rows = conn.execute(
                select(round_assignments.c.round_id, contributions.c.id, contributions.c.payload,
                       contributions.c.source, validation_rounds.c.commit_deadline,
                       validation_rounds.c.reveal_deadline, gate_reports.c.findings,
                       datanets.c.name.label("datanet"), datanets.c.visibility)
                .join(validation_rounds, validation_rounds.c.id == round_assignments.c.round_id)
                .join(contributions, contributions.c.id == round_assignments.c.contribution_id)
                .join(datanets, datanets.c.id == contributions.c.datanet_id)
                .outerjoin(gate_reports, gate_reports.c.contribution_id == contributions.c.id)
                .where(and_(round_assignments.c.validator == validator, validation_rounds.c.state == "open"))
                .order_by(round_assignments.c.round_id, contributions.c.id)
            ).all()
        readable: dict[str, bool] = {}
        items: list[dict] = []
        placeheld: set[int] = set()
        for r in rows:
            item = {"round_id": r.round_id, "contribution_id": r.id, "datanet": r.datanet,
                    "private": r.visibility == "private", "source": r.source, "payload": r.payload,
                    "flags": r.findings or [], "phase": "commit" if now <= r.commit_deadline else
                    "reveal" if now <= r.reveal_deadline else "closed",
                    "commit_deadline": r.commit_deadline, "reveal_deadline": r.reveal_deadline}
            if not item["private"] or everything:
                items.append(item)
                continue
            reader = grant.reader if grant is not None and grant.covers(r.datanet) else None
            itself = reader is not None and reader.lower() == validator.lower()
            if r.datanet not in readable:
                readable[r.datanet] = self.datanets.may_read(r.datanet, reader)
            may_read = readable[r.datanet]
            if itself and may_read:
                items.append(item)
                continue
            item.update(payload=None, source=None, flags=[])
            if itself:
                item["withheld"] = (f"{validator} may no longer read Datanet {r.datanet!r}: its data is withheld;"
                                    " the assignment stays yours to vote on")
            elif may_read:
                item["withheld"] = f"the data goes to the validator only: sign a read request as {validator}"
            elif r.round_id in placeheld:
                continue
            else:
                placeheld.add(r.round_id)
                item.update(contribution_id=None, datanet=None,
                            withheld=f"private Datanet: sign a read request as {validator} to see it")
            items.append(item)
        return items

    def commit(self, round_id: int, signed: SignedAction) -> RoundView:
        validator = verify_action(signed, expected="CommitVotes", domain=self.domain)
        if signed.message["roundId"] != round_id:
            raise AuthError("the signature is for another round", field="roundId")
        with self.db.begin() as conn:
            row, rnd = self._load(conn, round_id, lock=True)
            # the round's own checks come first: the policy's refusal names the Datanet, which only the round's
            # validators may learn
            commit = check_commit(rnd, validator, signed.message["commit"], self.now())
            if self.actor_guard is not None:
                # only the commit casts a vote: the reveal of a vote cast before a pause still goes through,
                # so a kill switch never costs the agent the stake that backs its earlier votes
                self.actor_guard(validator, "validate", self._datanet_name(conn, row["datanet_id"]))
            self._record(conn, signed, validator)
            existing = conn.execute(select(round_votes.c.validator).where(and_(
                round_votes.c.round_id == round_id, round_votes.c.validator == validator))).first()
            if existing:  # replacing a commit before the deadline reveals nothing to anyone
                conn.execute(update(round_votes).where(and_(round_votes.c.round_id == round_id,
                                                            round_votes.c.validator == validator))
                             .values(commit=commit, committed_at=self.now()))
            else:
                conn.execute(insert(round_votes).values(round_id=round_id, validator=validator, commit=commit,
                                                        votes=None, salt=None, committed_at=self.now()))
        return self.round(round_id)

    def reveal(self, round_id: int, votes: Mapping[int, int], salt: str, signed: SignedAction) -> RoundView:
        validator = verify_action(signed, expected="RevealVotes", domain=self.domain)
        if signed.message["roundId"] != round_id:
            raise AuthError("the signature is for another round", field="roundId")
        try:
            salt_bytes = bytes.fromhex(salt.removeprefix("0x"))
        except ValueError:
            raise ValidationError("salt must be 32 bytes of hex", field="salt") from None
        votes = {int(k): int(v) for k, v in votes.items()}
        with self.db.begin() as conn:
            _, rnd = self._load(conn, round_id, lock=True)
            check_reveal(rnd, Reveal(validator, votes, salt_bytes), self.now())
            self._record(conn, signed, validator)
            conn.execute(update(round_votes).where(and_(round_votes.c.round_id == round_id,
                                                        round_votes.c.validator == validator))
                         .values(votes={str(k): v for k, v in votes.items()}, salt="0x" + salt_bytes.hex(),
                                 revealed_at=self.now()))
        return self.round(round_id)

    def tally(self, round_id: int, signed: SignedAction) -> RoundView:
        """After the reveal deadline anyone may close the round; the outcome is deterministic."""
        caller = verify_action(signed, expected="TallyRound", domain=self.domain)
        # A tally is recorded as the caller's action: it must be the one they signed, not another round's replayed.
        if int(signed.message["roundId"]) != round_id:
            raise AuthError("the signature is for another round", field="roundId")
        with self.db.begin() as conn:
            row, rnd = self._load(conn, round_id, lock=True)
            if row["state"] != "open":
                raise ConflictError(f"round {round_id} is already {row['state']}", field="round")
            if self.now() <= rnd.reveal_deadline:
                raise ValidationError(f"round {round_id} can be tallied after "
                                      f"{format_time(rnd.reveal_deadline, self.now())}", field="round", status=409)
            action_id = self._record(conn, signed, caller)
            result = tally(rnd)
            contributor_outcomes = []
            for cid, outcome in result.contributions.items():
                state = conn.execute(select(contributions.c.state, contributions.c.contributor)
                                     .where(contributions.c.id == cid)).first()
                details = {"round": round_id, "consensus": outcome.consensus, "votes": dict(outcome.votes),
                           "revealed_stake": str(outcome.revealed_stake)}
                if outcome.decision == "undecided":
                    continue  # stays pending for the next round
                if state.state != "pending":
                    # withdrawn while the round ran, it stays withdrawn; a rejection still costs its contributor
                    # the bond and reputation it would have, or withdrawing once the reveals go against it dodges both
                    if state.state == "withdrawn" and outcome.decision == "reject":
                        contributor_outcomes.append((cid, state.contributor, outcome.decision, outcome.consensus))
                    continue
                accept = outcome.decision == "accept"
                self.datanets.set_state(
                    conn, cid, "accepted" if accept else "rejected",
                    reason=f"validators: consensus {outcome.consensus} "
                           f"{'>=' if accept else '<'} threshold {rnd.rules.accept_threshold}",
                    # the validators decided, not whoever sent the tally (its signed action stays linked)
                    actor=None, action_id=action_id, details=details, allowed_from=("pending",),
                )
                contributor_outcomes.append((cid, state.contributor, outcome.decision, outcome.consensus))
            summary = _tally_json(result)
            # what the slash plan is made from, kept with the decisions: a crash before the plan is recorded
            # leaves the next start to plan it from these (`execute_slashes`), not from nothing
            summary["contributor_outcomes"] = [list(o) for o in contributor_outcomes]
            conn.execute(update(validation_rounds).where(validation_rounds.c.id == round_id)
                         .values(state="tallied", tally=summary))
            # reputation moves in the same transaction as the decisions it follows: all of it or none. A private
            # Datanet's owner picks who scores it (its own keys among them): its rounds may lower a reputation,
            # never raise it, or an owner could wash a record earned elsewhere with rounds it scores itself.
            private = conn.execute(select(datanets.c.visibility).where(
                datanets.c.id == row["datanet_id"])).scalar() == "private"
            self._validator_outcomes(round_id, result, conn, only_losses=private)
            self._contributor_outcomes(round_id, [o for o in contributor_outcomes if not private or o[2] == "reject"],
                                       conn)
        self._plan_slashes(round_id, contributor_outcomes)
        self.execute_slashes(round_id)
        return self.round(round_id)

    # ------------------------------------------------------------------ reputation and slashing

    def reputation(self, address: str, role: str) -> int:
        with self.db.connect() as conn:
            bps = conn.execute(select(reputation.c.bps).where(and_(reputation.c.address == address,
                                                                   reputation.c.role == role))).scalar()
        return NEUTRAL_BPS if bps is None else bps

    def reputation_history(self, address: str, role: str, limit: int = 200) -> list[dict[str, Any]]:
        """The latest `limit` changes of one address's reputation in one role, oldest first."""
        with self.db.connect() as conn:
            rows = conn.execute(
                select(reputation_history.c.round_id, reputation_history.c.bps, reputation_history.c.at)
                .where(and_(reputation_history.c.address == address, reputation_history.c.role == role))
                .order_by(reputation_history.c.id.desc()).limit(limit)
            ).all()
        return [{"round_id": r.round_id, "bps": r.bps, "at": r.at} for r in reversed(rows)]

    def _bump(self, address: str, role: str, outcome_bps: int, round_id: int | None,
              conn: Connection | None = None) -> None:
        """Move one reputation by one outcome, in `conn`'s transaction when given (else in one of its own)."""
        if conn is None:
            with self.db.begin() as own:
                self._bump(address, role, outcome_bps, round_id, own)
            return
        now = self.now()
        # Read and written under one lock: two nodes tallying rounds of the same validator both count.
        self.db.lock(conn, f"reputation:{address}:{role}")
        bps = conn.execute(select(reputation.c.bps).where(and_(reputation.c.address == address,
                                                               reputation.c.role == role))).scalar()
        new = update_reputation(NEUTRAL_BPS if bps is None else bps, outcome_bps)
        if conn.execute(update(reputation).where(and_(reputation.c.address == address, reputation.c.role == role))
                        .values(bps=new, updated_at=now)).rowcount == 0:
            conn.execute(insert(reputation).values(address=address, role=role, bps=new, updated_at=now))
        conn.execute(insert(reputation_history).values(address=address, role=role, round_id=round_id,
                                                       bps=new, at=now))

    def _validator_outcomes(self, round_id: int, result: RoundTally, conn: Connection | None = None,
                            only_losses: bool = False) -> None:
        # in address order: two nodes tallying rounds that share validators take their locks in the same order
        for v, outcome in sorted(result.validators.items()):
            if outcome.assigned:
                if only_losses and validator_outcome_bps(outcome) >= self.reputation(v, "validator"):
                    continue
                self._bump(v, "validator", validator_outcome_bps(outcome), round_id, conn)

    def _contributor_outcomes(self, round_id: int | None, outcomes: list[tuple[int, str, str, int | None]],
                              conn: Connection | None = None) -> None:
        if conn is not None:
            for contributor in sorted({o[1] for o in outcomes}):
                self.db.lock(conn, f"reputation:{contributor}:contributor")
        for _cid, contributor, decision, consensus in outcomes:
            self._bump(contributor, "contributor", contributor_outcome_bps(decision, consensus), round_id, conn)

    def _plan_slashes(self, round_id: int, contributor_outcomes: list[tuple[int, str, str, int | None]]) -> None:
        """Decide the round's slashes and record them, with the evidence hash, before any chain write.

        A recorded plan is never decided again, and the chain slashes each (round, account, role) at
        most once, so a crash or a failed slash followed by a rerun cannot slash the same round twice.
        """
        rejected = [(cid, c) for cid, c, d, _ in contributor_outcomes if d == "reject"]
        # The chain is read first, for everyone the plan may name: the lock below holds the whole database on
        # SQLite, and calls and uploads would wait behind chain reads.
        bonds = self.contributor_bonds(sorted({c for _, c in rejected + self._gate_rejections(round_id)}))
        stakes = dict(self.validator_bonds())
        with self.db.begin() as conn:
            # One plan at a time, node-wide and across nodes: each is made from the others' recorded plans (read
            # committed, in connections of their own), so two rounds tallied at once would each slash a bond for
            # the same gate-rejected record, or a validator for the same misconduct.
            self.db.lock(conn, "slash-plans")
            summary = conn.execute(select(validation_rounds.c.tally).where(validation_rounds.c.id == round_id)
                                   .with_for_update()).scalar()
            if summary is None or "slashed" in summary:  # another node planned it meanwhile: its plan stands
                return
            planned = (self._contributor_bond_slashes(rejected + self._gate_rejections(round_id), bonds)
                       + self._validator_slashes(round_id, stakes))
            summary = dict(summary)
            summary["slashed"] = planned
            summary["evidence_hash"] = evidence_hash(round_id, summary)
            conn.execute(update(validation_rounds).where(validation_rounds.c.id == round_id).values(tally=summary))

    def _predating_policy(self, conn, name: str, ids: list[int]) -> set[int]:
        """Those of contributions `ids` uploaded before the gate policy in force now was set: judged by rules their
        contributor could not have met. Uploads and policies are ordered by their signed actions' ids, one
        sequence for every node sharing the database."""
        if not ids:
            return set()
        changes = [a.id for a in conn.execute(select(signed_actions.c.id, signed_actions.c.message)
                                              .where(signed_actions.c.action == "SetGatePolicy"))
                   if (a.message or {}).get("datanet") == name]
        if not changes:
            return set()
        uploaded = conn.execute(select(contributions.c.id, uploads.c.action_id)
                                .join(uploads, uploads.c.id == contributions.c.upload_id)
                                .where(contributions.c.id.in_(ids))).all()
        return {cid for cid, action in uploaded if action < max(changes)}

    def _gate_rejections(self, round_id: int) -> list[tuple[int, str]]:
        """Contributions the gates rejected when this round (or an earlier one that planned no slash
        for them) opened: their bonds answer to this round's recorded outcome, unless the owner set the gate
        policy that rejected them after they were uploaded (`predates_policy`)."""
        with self.db.connect() as conn:
            rnd = conn.execute(select(validation_rounds.c.datanet_id, validation_rounds.c.created_at)
                               .where(validation_rounds.c.id == round_id)).first()
            rows = conn.execute(
                select(contributions.c.id, contributions.c.contributor)
                .join(gate_reports, gate_reports.c.contribution_id == contributions.c.id)
                .where(and_(contributions.c.datanet_id == rnd.datanet_id, gate_reports.c.decision == "reject",
                            gate_reports.c.created_at <= rnd.created_at, gate_reports.c.predates_policy.is_(False)))
            ).all()
            earlier = conn.execute(select(validation_rounds.c.tally).where(and_(
                validation_rounds.c.datanet_id == rnd.datanet_id, validation_rounds.c.id != round_id,
                validation_rounds.c.state == "tallied"))).scalars().all()
        answered = {cid for t in earlier for s in (t or {}).get("slashed", []) for cid in s.get("contributions", [])}
        return [(r.id, r.contributor) for r in rows if r.id not in answered]

    def _contributor_bond_slashes(self, rejected: list[tuple[int, str]],
                                  bonds: dict[str, int] | None = None) -> list[dict]:
        """Rejected contributions cost part of their contributor's bond (more with a poor reputation); `bonds`:
        the contributors' bonds read beforehand (else read here)."""
        if not rejected:
            return []
        by_contributor: dict[str, list[int]] = {}
        for cid, contributor in rejected:
            by_contributor.setdefault(contributor, []).append(cid)
        if bonds is None:
            bonds = self.contributor_bonds(sorted(by_contributor))
        planned = []
        for contributor, cids in sorted(by_contributor.items()):
            bond = required_bond(self.settings.bond_per_contribution, self.reputation(contributor, "contributor"))
            due = len(cids) * bond * self.settings.contributor_bond_slash_bps // BPS
            amount = min(due, bonds.get(contributor, 0))
            if amount > 0:
                planned.append({"account": contributor, "role": int(StakeRole.CONTRIBUTOR_BOND), "amount": str(amount),
                                "reason": f"{len(cids)} rejected contribution(s)", "contributions": sorted(cids),
                                "tx": None})
        return planned

    def _validator_slashes(self, round_id: int, stakes: dict[str, int] | None = None) -> list[dict]:
        with self.db.connect() as conn:
            tallied = conn.execute(select(validation_rounds.c.id, validation_rounds.c.tally, datanets.c.visibility)
                                   .join(datanets, datanets.c.id == validation_rounds.c.datanet_id)
                                   .where(validation_rounds.c.state == "tallied")
                                   .order_by(validation_rounds.c.id)).all()
        policy = SlashPolicy()
        history = []
        for r in tallied:
            if not r.tally or r.id > round_id:
                continue
            t = _tally_from_json(r.id, r.tally)
            if r.visibility == "private":
                # a round its owner chose the validators of counts against them, never for them: good private
                # rounds would push bad public ones out of the slash window
                t = RoundTally(t.round_id, {}, {v: o for v, o in t.validators.items() if policy.is_bad(o)})
            history.append(t)
        # A later round tallied first may have slashed for rounds up to it, these among them: every slash counts,
        # or misconduct already punished there would be punished again here.
        last_slashed: dict[str, int] = {}
        for r in tallied:
            for s in (r.tally or {}).get("slashed", []):
                if s.get("role", int(StakeRole.VALIDATOR)) == int(StakeRole.VALIDATOR):
                    last_slashed[s["account"]] = r.id
        stakes = dict(self.validator_bonds()) if stakes is None else stakes
        return [{"account": s.account, "role": int(StakeRole.VALIDATOR), "amount": str(s.amount),
                 "reason": s.reason, "tx": None}
                for s in slashing_decisions(history, stakes, policy, last_slashed)]

    def execute_slashes(self, round_id: int | None = None) -> int:
        """Carry out recorded slashes that have no transaction yet (all rounds, or one); returns how many.

        Rounds tallied before a crash that lost their plan are planned first.
        """
        if self.slash is None:
            return 0
        query = select(validation_rounds.c.id, validation_rounds.c.tally).where(validation_rounds.c.state == "tallied")
        if round_id is not None:
            query = query.where(validation_rounds.c.id == round_id)
        with self.db.connect() as conn:
            rows = conn.execute(query.order_by(validation_rounds.c.id)).all()
        done = 0
        for row in rows:
            if row.tally is not None and "slashed" not in row.tally:
                outcomes = [tuple(o) for o in row.tally.get("contributor_outcomes", [])]
                self._plan_slashes(row.id, outcomes)
                with self.db.connect() as conn:
                    row = conn.execute(query.where(validation_rounds.c.id == row.id)).first()
            summary = dict(row.tally or {})
            pending = [s for s in summary.get("slashed", []) if s.get("tx") is None]
            if not pending:
                continue
            finished = 0
            try:
                for entry in pending:
                    tx, taken = self.slash(row.id, summary["evidence_hash"], entry["account"], entry["role"],
                                           int(entry["amount"]))
                    entry["tx"], entry["taken"] = tx, str(taken)
                    finished += 1
            finally:
                # A slash the chain refused (its bond's slash window spent by another slash meanwhile, an outage)
                # leaves the round's earlier slashes written down with their transactions; only it is retried.
                if finished:
                    with self.db.begin() as conn:
                        conn.execute(update(validation_rounds).where(validation_rounds.c.id == row.id)
                                     .values(tally=summary))
                done += finished
        return done


def evidence_hash(round_id: int, summary: dict) -> str:
    """keccak256 of the round's published outcome (decisions, validator outcomes, planned slashes)."""
    body = {"round": round_id, "contributions": summary.get("contributions", {}),
            "validators": summary.get("validators", {}),
            "slashed": [{k: v for k, v in s.items() if k not in ("tx", "taken")}
                        for s in summary.get("slashed", [])]}
    return "0x" + keccak(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hex()


def _tally_json(result: RoundTally) -> dict:
    return {
        "contributions": {str(c): {"decision": o.decision, "consensus": o.consensus, "votes": dict(o.votes)}
                          for c, o in result.contributions.items()},
        "validators": {v: {"stake": str(o.stake), "assigned": o.assigned, "revealed": o.revealed,
                           "clipped": o.clipped, "agreement_points": o.agreement_points,
                           "reward_weight": str(o.stake * o.agreement_points)}
                       for v, o in result.validators.items()},
    }


def _tally_from_json(round_id: int, data: dict) -> RoundTally:
    return RoundTally(round_id, {}, {
        v: ValidatorOutcome(v, int(o["stake"]), o["assigned"], o["revealed"], o["clipped"], o["agreement_points"])
        for v, o in data.get("validators", {}).items()
    })
