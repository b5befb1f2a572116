"""The compute market: providers' signed offers, jobs matched to them and paid from escrow, and the spot-check
of each reported result, which slashes a provider caught cheating through an outcome recorded on chain."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from eth_utils import keccak, to_checksum_address
from pydantic import ValidationError
from sqlalchemy import and_, func, insert, select, update

from ledgerlm.buckets import KeyedLimit, hourly
from ledgerlm.economy.access import CannotPay, PaymentPending, PaymentRequired
from ledgerlm.errors import AuthError, ConflictError, LedgerError, NotFoundError
from ledgerlm.factory.digest import canonical_json_sha256
from ledgerlm.identity import SignedAction, SigningDomain, verify_action
from ledgerlm.providers.errors import ProviderError
from ledgerlm.providers.schemas import KINDS, Job, Offer, ServingSpec, TrainingSpec
from ledgerlm.providers.spotcheck import (
    check_serving_result,
    check_training_result,
    spot_check_serving,
    spot_check_training,
)
from ledgerlm.store import BlobStaging, Database
from ledgerlm.store.actions import record_action, refuse_used_nonce
from ledgerlm.store.schema import compute_jobs, compute_offers

# Staking outcome ids of spot-checks: job id above this, so they never meet a validation round's id (and below
# 2**64 with it, the room an outcome id leaves for a node's own ids)
SPOT_CHECK_ROUND_BASE = 2**63
SPECS = {"train": TrainingSpec, "serve": ServingSpec}
# Open offers one provider may hold at once (each is listed, and matched, with chain reads of its stake)
MAX_OPEN_OFFERS = 16


@dataclass
class ComputeMarket:
    db: Database
    blobs: BlobStaging
    models_dir: Path
    domain: SigningDomain
    payments: object | None  # ledgerlm.economy.AccessPayments: its escrow debit and the closer's lock; None off chain
    stake_of: Callable[[str], int]  # a provider's bond under the provider role
    # (outcome id, evidence hash, account, amount) -> (tx, taken): records the outcome on chain, then slashes
    slash: Callable[[int, str, str, int], tuple[str, int]] | None
    # The most one slash of a provider's bond may take now (Staking.slashable: the per-round cap, less while the
    # bond's slash window is spent); None off chain, where no offer can be backed.
    slashable: Callable[[str], int] | None = None
    slash_cap_bps: Callable[[], int] | None = None  # Staking's per-round cap, to say how much stake a price needs
    # Keys the step (or prompt) a job's spot-check recomputes: one pick per job, whatever is reported and however
    # often, so a report refused or failed part-way cannot draw another one; secret, so none can be foreseen (the
    # node derives it from its key, so a restart keeps it).
    pick_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    # Each job's price is debited at once in a transaction whose gas the node pays, however small the price: jobs
    # accepted per hour in all (NodeConfig.compute_jobs_per_hour), and a tenth of that per requester.
    jobs_per_hour: int = 120

    def __post_init__(self):
        self._accepted = KeyedLimit(hourly(max(1, self.jobs_per_hour // 10)), hourly(self.jobs_per_hour))

    # ------------------------------------------------------------------ offers

    def offer(self, signed: SignedAction) -> Offer:
        """A provider's signed OfferCompute: hardware for `kind` jobs on a base model this node holds (so it
        can spot-check them), at a price per job, backed by stake the provider can lose."""
        from ledgerlm.factory.basemodels import get_model

        provider = verify_action(signed, expected="OfferCompute", domain=self.domain)
        m = signed.message
        check_kind(m["kind"])
        if not 0 < len(m["hardware"]) <= 200:
            raise ProviderError("hardware must describe the machine in 1 to 200 characters", field="hardware")
        if int(m["price"]) <= 0:
            raise ProviderError("price must be a positive number of base units per job", field="price")
        get_model(self.models_dir, m["baseModel"])  # the verifier re-executes on it: an unknown name is a 404
        self._require_stake(provider, int(m["price"]))
        now = int(time.time())
        with self.db.begin() as conn:
            # every open offer is listed and matched with chain reads of its provider's stake: one dust stake may
            # not back an unbounded number of them
            self.db.lock(conn, f"offers:{provider}")
            open_now = conn.execute(select(func.count()).select_from(compute_offers).where(and_(
                compute_offers.c.provider == provider, compute_offers.c.state == "open"))).scalar()
            if open_now >= MAX_OPEN_OFFERS:
                raise ConflictError(f"{provider} has {open_now} open offers, the most this node lists for one "
                                    "provider; withdraw one first", field="provider")
            action_id = record_action(conn, signed, provider, chain_id=self.domain.chain_id, now=now)
            offer_id = conn.execute(insert(compute_offers).values(
                provider=provider, kind=m["kind"], hardware=m["hardware"], price=str(int(m["price"])),
                base_model=m["baseModel"], state="open", action_id=action_id, created_at=now,
            )).inserted_primary_key[0]
        return self.offer_by_id(offer_id)

    def withdraw(self, offer_id: int, signed: SignedAction) -> Offer:
        """The provider's signed WithdrawOffer: no new jobs on the offer; jobs already taken still run and pay."""
        provider = verify_action(signed, expected="WithdrawOffer", domain=self.domain)
        offer = self.offer_by_id(offer_id)
        if int(signed.message["offerId"]) != offer_id:
            raise AuthError(f"the signed WithdrawOffer is for offer {signed.message['offerId']}, not {offer_id}",
                            field="offerId")
        if provider != offer.provider:
            raise AuthError(f"offer {offer_id} belongs to {offer.provider}, not {provider}", field="provider")
        with self.db.begin() as conn:
            action_id = record_action(conn, signed, provider, chain_id=self.domain.chain_id)
            done = conn.execute(update(compute_offers).where(and_(compute_offers.c.id == offer_id,
                                                                  compute_offers.c.state == "open"))
                                .values(state="withdrawn", action_id=action_id)).rowcount
            if not done:
                raise ConflictError(f"offer {offer_id} is already {offer.state}", field="offerId")
        return self.offer_by_id(offer_id)

    def offers(self, *, kind: str | None = None, provider: str | None = None) -> list[Offer]:
        """Open offers, cheapest first."""
        query = select(compute_offers).where(compute_offers.c.state == "open")
        if kind:
            check_kind(kind)
            query = query.where(compute_offers.c.kind == kind)
        if provider:
            query = query.where(compute_offers.c.provider == to_checksum_address(provider))
        with self.db.connect() as conn:
            rows = conn.execute(query.order_by(compute_offers.c.id)).mappings().all()
        offers = [self._offer(r) for r in rows]
        return sorted(offers, key=lambda o: (int(o.price), o.id))

    def offer_by_id(self, offer_id: int) -> Offer:
        with self.db.connect() as conn:
            row = conn.execute(select(compute_offers).where(compute_offers.c.id == offer_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"no compute offer {offer_id}", field="offer_id")
        return self._offer(row)

    def _offer(self, row) -> Offer:
        return Offer(id=row["id"], provider=row["provider"], kind=row["kind"], hardware=row["hardware"],
                     base_model=row["base_model"], price=row["price"], state=row["state"],
                     stake=str(self.stake_of(row["provider"])), created_at=row["created_at"])

    def _require_stake(self, provider: str, price: int, *, outstanding: int = 0,
                       read: tuple[int, int] | None = None) -> int:
        """Refuse a provider whose failed spot-check would cost it less than it is paid: one slash of its bond, as
        the contract allows it now, must take at least `price` plus the prices of its jobs still awaiting a report.
        Slashes of one bond share a window capped at a share of the bond, so jobs open at once share one slash; a
        bond whose window is spent can lose nothing more until it ends, and takes no job until then. `read`: the
        (stake, slashable) read from the chain beforehand (else read here)."""
        stake, slashable = read if read is not None else self._stake_read(provider)
        if stake <= 0:
            raise ConflictError(f"{provider} has no stake under the provider role: stake LGR first "
                                "(`ledgerlm stake AMOUNT --role provider`), so cheating has a cost", field="provider")
        at_risk = price + outstanding
        if slashable < at_risk:
            cap_bps = self.slash_cap_bps() if self.slash_cap_bps is not None else 0
            needed = f"a stake of at least {-(-at_risk * 10_000 // cap_bps)}" if cap_bps else "more stake"
            waiting = f" plus {outstanding} for its jobs awaiting a report" if outstanding else ""
            raise ConflictError(
                f"a failed spot-check must cost {provider} at least what it is paid ({price} per job{waiting}), but "
                f"one slash of its provider stake ({stake}) can take only {slashable} now: it needs {needed} under "
                "the provider role, with its slash window not spent", field="stake")
        return stake

    def _stake_read(self, provider: str) -> tuple[int, int]:
        """The provider's stake and what one slash of it can take now, from the chain."""
        return self.stake_of(provider), (self.slashable(provider) if self.slashable is not None else 0)

    def _outstanding(self, provider: str, conn=None) -> int:
        """What the provider's jobs still awaiting a report are paid: all of them may yet fail their spot-checks."""
        if conn is None:
            with self.db.connect() as own:
                return self._outstanding(provider, own)
        # a payment still pending may yet land (its transaction mined late): it counts until it has failed
        prices = conn.execute(select(compute_jobs.c.amount).where(and_(
            compute_jobs.c.provider == provider, compute_jobs.c.state == "accepted",
            compute_jobs.c.payment_state.in_(("paid", "pending"))))).scalars().all()
        return sum(int(p) for p in prices)

    def _backed(self, offer: Offer) -> bool:
        try:
            self._require_stake(offer.provider, int(offer.price), outstanding=self._outstanding(offer.provider))
        except ConflictError:
            return False
        return True

    # ------------------------------------------------------------------ jobs

    def accept(self, signed: SignedAction, kind: str, spec: dict) -> Job:
        """A requester's signed AcceptOffer: one job on an offer (offerId 0: the cheapest open offer of `kind`
        within the signed amount), its price debited at once from the requester's escrow into the open epoch."""
        requester = verify_action(signed, expected="AcceptOffer", domain=self.domain)
        m = signed.message
        parsed = parse_spec(kind, spec)
        spec_hash = "0x" + canonical_json_sha256(parsed.model_dump())
        if m["specHash"].lower() != spec_hash:
            raise AuthError("the signed AcceptOffer is for another job spec (specHash differs)", field="specHash")
        amount = int(m["amount"])
        offer = self._match(int(m["offerId"]), kind, amount, str(m["baseModel"]))
        if offer.provider == requester:
            raise ProviderError("a provider cannot take its own offer", field="offerId")
        if kind == "train":
            self._require_labels(offer.base_model, parsed)
        price = int(offer.price)
        if amount < price:
            raise ProviderError(f"offer {offer.id} costs {price} per job; the signature covers only {amount}",
                                field="amount", status=402)
        if self.payments is None:
            raise ConflictError("this node has no chain to take payments on", field="chain")
        with self.db.connect() as conn:
            refuse_used_nonce(conn, signed, requester)  # a replayed acceptance costs its requester no slot
        self._take_payment_slot(requester)

        def record(conn, epoch: int, action_id: int) -> int:
            # In the transaction that stores the job, before anything is sent: the offer is still open (a withdrawal
            # answered meanwhile takes no job after it), and the provider's stake backs this job beside every other
            # it has open, read under a lock each node's accepts take (the payments' own lock is one process's).
            self.db.lock(conn, f"provider-stake:{offer.provider}")
            state = conn.execute(select(compute_offers.c.state).where(compute_offers.c.id == offer.id)
                                 .with_for_update()).scalar()
            if state != "open":
                raise ConflictError(f"offer {offer.id} was {state} meanwhile; it takes no new jobs", field="offerId")
            self._require_stake(offer.provider, price, outstanding=self._outstanding(offer.provider, conn),
                                read=stake_read)
            return conn.execute(insert(compute_jobs).values(
                offer_id=offer.id, provider=offer.provider, requester=requester, kind=kind, spec=parsed.model_dump(),
                spec_hash=spec_hash, amount=str(price), epoch=epoch, payment_state="pending", payment_tx=None,
                state="accepted", action_id=action_id, created_at=int(time.time()),
            )).inserted_primary_key[0]

        try:
            with self.payments.paying():
                # the chain read before the payment's transaction (which holds the whole database on SQLite);
                # the jobs it must back are read again inside it, under the provider's lock
                stake_read = self._stake_read(offer.provider)
                self._require_stake(offer.provider, price, outstanding=self._outstanding(offer.provider),
                                    read=stake_read)
                job_id, _, _ = self.payments.debit_locked(
                    signed, requester, price, what=f"a {kind} job on offer {offer.id}", record=record,
                    rows=_job_rows())
        except CannotPay:  # refused before any transaction (an empty escrow, a cap too low): no gas, no slot used
            self._accepted.give_back(requester.lower())
            raise
        except (PaymentRequired, PaymentPending):  # the chain was asked: its gas counts
            raise
        except LedgerError:  # refused before any transaction (a stake another accept used meanwhile, a nonce used
            # meanwhile, the agent's policy): no gas, no slot used
            self._accepted.give_back(requester.lower())
            raise
        return self.job(job_id)

    def require_base_model_unused(self, name: str) -> None:
        """Refuse to let other weights take the name of a base model that open offers or jobs awaiting their report
        name: their spot-checks re-execute on it, and other weights would fail every honest report."""
        with self.db.connect() as conn:
            used = conn.execute(select(compute_offers.c.id).where(and_(
                compute_offers.c.base_model == name,
                (compute_offers.c.state == "open") | compute_offers.c.id.in_(
                    select(compute_jobs.c.offer_id).where(compute_jobs.c.state == "accepted"))))
                .limit(1)).first()
        if used is not None:
            raise ConflictError(f"base model {name!r} is named by open compute offers or jobs awaiting their report "
                                "(their spot-checks re-execute on it); register the new weights under another name",
                                field="name")

    def _require_labels(self, base_model: str, spec: TrainingSpec) -> None:
        """Refuse a training spec with a text of fewer than two tokens (within max_len): a batch of such texts has
        no token to predict, so its honest loss is NaN, which no report may carry and no spot-check can match; the
        provider would do the work and be refunded away or slashed."""
        from ledgerlm.factory.basemodels import get_model
        from ledgerlm.factory.loading import load_tokenizer

        tokenizer = load_tokenizer(get_model(self.models_dir, base_model))
        for i, text in enumerate(spec.texts):
            ids = tokenizer(text, truncation=True, max_length=spec.max_len)["input_ids"]
            if len(ids) < 2:
                raise ProviderError(f"spec.texts.{i} is {len(ids)} token of {base_model}'s tokenizer: each text "
                                    "needs at least two, so every step has a token to predict", field="texts")

    def _take_payment_slot(self, requester: str) -> None:
        """Count one paid job for `requester`, or refuse it (429, nothing stored) while theirs or the node's hour is
        spent."""
        def refusal(spent: str, most: int, wait: int) -> ProviderError:
            if spent == "each":
                return ProviderError(f"{requester} has had {most} jobs accepted within the hour, the most this node "
                                     f"debits for one requester; try again in {wait} s", field="requester", status=429)
            return ProviderError(f"this node has accepted {most} jobs within the hour, the most it pays the gas of; "
                                 f"try again in {wait} s", field="offerId", status=429)

        self._accepted.take_or_refuse(requester.lower(), refusal)

    def _match(self, offer_id: int, kind: str, amount: int, base_model: str = "") -> Offer:
        """The offer a job goes to; `base_model` (signed; "" for any) is the model the requester wants it run on:
        an offer on another model, one base unit cheaper, would otherwise take every matched job."""
        if offer_id:
            offer = self.offer_by_id(offer_id)
            if offer.state != "open":
                raise ConflictError(f"offer {offer_id} is {offer.state}", field="offerId")
            if offer.kind != kind:
                raise ProviderError(f"offer {offer_id} is for {offer.kind} jobs, not {kind}", field="kind")
            if base_model and offer.base_model != base_model:
                raise ProviderError(f"offer {offer_id} runs {offer.base_model}, not {base_model}", field="baseModel")
            return offer
        # The cheapest offer whose provider's stake still backs it: an under-backed one would win on price alone.
        # One provider's backing is read once: what it can lose and what it has outstanding are the same for all
        # its offers, and the cheapest of them it can back is the only one of its offers to try.
        tried: set[str] = set()
        for offer in self.offers(kind=kind):
            if (not base_model or offer.base_model == base_model) and int(offer.price) <= amount \
                    and offer.provider not in tried:
                tried.add(offer.provider)
                if self._backed(offer):
                    return offer
        on = f" on {base_model}" if base_model else ""
        raise NotFoundError(f"no open {kind} offer{on} costs at most {amount} from a provider whose stake backs it "
                            "(one failed spot-check must cost it at least the price)", field="offerId")

    def jobs(self, *, provider: str | None = None, requester: str | None = None) -> list[Job]:
        query = select(compute_jobs, compute_offers.c.base_model).join(
            compute_offers, compute_offers.c.id == compute_jobs.c.offer_id)
        if provider:
            query = query.where(compute_jobs.c.provider == to_checksum_address(provider))
        if requester:
            query = query.where(compute_jobs.c.requester == to_checksum_address(requester))
        with self.db.connect() as conn:
            return [_job(r) for r in conn.execute(query.order_by(compute_jobs.c.id)).mappings()]

    def job(self, job_id: int) -> Job:
        with self.db.connect() as conn:
            row = conn.execute(select(compute_jobs, compute_offers.c.base_model).join(
                compute_offers, compute_offers.c.id == compute_jobs.c.offer_id)
                .where(compute_jobs.c.id == job_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"no compute job {job_id}", field="job_id")
        if row["payment_state"] == "pending" and self.payments is not None and self.payments.job_landed(job_id):
            return self.job(job_id)  # its payment, sent on a slow chain, has landed since
        return _job(row)

    # ------------------------------------------------------------------ reports and spot-checks

    def report(self, job_id: int, signed: SignedAction, result: dict, files: dict[str, str]) -> Job:
        """The provider's signed ReportJob with the job's result (and, for training, every checkpoint as base64
        by its sha256). The node spot-checks it at once: passed, the job pays the provider at its epoch's close;
        failed, the requester is refunded and the provider slashed once, for the outcome recorded on chain."""
        from ledgerlm.factory.basemodels import get_model, verify_model

        job = self.job(job_id)
        provider = verify_action(signed, expected="ReportJob", domain=self.domain)
        if provider != job.provider:
            raise AuthError(f"job {job_id} belongs to provider {job.provider}, not {provider}", field="provider")
        if int(signed.message["jobId"]) != job_id:
            raise AuthError(f"the signed ReportJob is for job {signed.message['jobId']}, not {job_id}", field="jobId")
        result_hash = "0x" + canonical_json_sha256(result)
        if signed.message["resultHash"].lower() != result_hash:
            raise AuthError("the signed ReportJob is for another result (resultHash differs)", field="resultHash")
        # a report refused after its spot-check ran (a nonce used before) would be free to send again and again,
        # and how long each took would tell which step or prompt the check picks: refused before any work
        with self.db.connect() as conn:
            refuse_used_nonce(conn, signed, provider)
        self._require_open(job)
        spec = parse_spec(job.kind, job.spec)
        base = get_model(self.models_dir, job.base_model)
        if not verify_model(base):  # its files changed on disk: a check on them would slash honest work
            raise ConflictError(f"base model {job.base_model!r} no longer hashes to what was registered; the "
                                "operator must restore it before this job can be checked", field="base_model")
        if job.kind == "train":
            check_training_result(spec, result)
            checkpoints = self._store_checkpoints(result["checkpoints"], files)
            check = spot_check_training(base, spec, result, checkpoints.__getitem__, 1 + self._pick(job_id, spec.steps))
        else:
            check_serving_result(spec, result)
            check = spot_check_serving(base, spec, result, self._pick(job_id, len(spec.prompts)))
        # Under the closer's lock: a close either pays this job by its verdict or refunded it before we got here.
        with self.payments.paying():
            self._require_open(self.job(job_id))
            with self.db.begin() as conn:
                action_id = record_action(conn, signed, provider, chain_id=self.domain.chain_id)
                conn.execute(update(compute_jobs).where(and_(compute_jobs.c.id == job_id,
                                                             compute_jobs.c.state == "accepted")).values(
                    state="verified" if check.passed else "rejected", result=result, result_hash=result_hash,
                    spot_check={**check.evidence, "evidence_hash": _evidence_hash(job_id, result_hash,
                                                                                  check.evidence)},
                    report_action_id=action_id, reported_at=int(time.time())))
        if not check.passed:
            self.execute_slash(job_id)
        return self.job(job_id)

    def _pick(self, job_id: int, choices: int) -> int:
        """The job's spot-check pick in [0, choices): the same for every report of the job (`pick_secret`)."""
        digest = hmac.new(self.pick_secret, f"spot-check:{job_id}".encode(), hashlib.sha256).digest()
        return int.from_bytes(digest, "big") % choices

    def _require_open(self, job: Job) -> None:
        if job.payment_state != "paid":
            raise ConflictError(f"job {job.id} was not paid (payment {job.payment_state}); nothing to report",
                                field="job_id")
        if job.state == "expired":
            raise ConflictError(f"job {job.id} expired: epoch {job.epoch} closed before it was reported, and its "
                                "requester was refunded", field="job_id")
        if job.state != "accepted":
            raise ConflictError(f"job {job.id} was already reported ({job.state})", field="job_id")

    def _store_checkpoints(self, hashes: list[str], files: dict[str, str]) -> dict:
        """Keep every checkpoint in the blob store, each checked against its name; returns their weights."""
        from ledgerlm.providers.training import read_checkpoint

        weights = {}
        for sha in hashes:
            if sha in weights:
                continue
            if sha not in files:
                raise ProviderError(f"checkpoint {sha} is listed in the result but not uploaded", field="files")
            try:
                data = base64.b64decode(files[sha], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ProviderError(f"checkpoint {sha} is not base64", field="files") from exc
            if hashlib.sha256(data).hexdigest() != sha:
                raise ProviderError(f"checkpoint {sha} does not hash to its name", field="files")
            weights[sha] = read_checkpoint(data, field="files")
            self.blobs.put_bytes(data)
        return weights

    def execute_slash(self, job_id: int) -> tuple[str, int] | None:
        """Slash the provider of a rejected job for its recorded outcome; a job slashed before is not slashed
        again (the contract refuses a second slash for one outcome, and the node checks it first)."""
        job = self.job(job_id)
        if job.state != "rejected" or job.slash_tx is not None or self.slash is None:
            return None
        evidence = job.spot_check["evidence_hash"]
        # as much as one slash may take now: Staking.slashable counts stake cooling down to leave, so a provider that
        # asked to unstake before its report was checked is slashed all the same
        at_most = self.slashable(job.provider) if self.slashable is not None else self.stake_of(job.provider)
        tx, taken = self.slash(SPOT_CHECK_ROUND_BASE + job_id, evidence, job.provider, at_most)
        with self.db.begin() as conn:
            conn.execute(update(compute_jobs).where(compute_jobs.c.id == job_id).values(
                slash_tx=tx, slash_amount=str(taken)))
        return tx, taken

    def execute_slashes(self) -> int:
        """Finish the slashes a crash interrupted between a failed spot-check and the chain; returns how many."""
        with self.db.connect() as conn:
            ids = conn.execute(select(compute_jobs.c.id).where(and_(
                compute_jobs.c.state == "rejected", compute_jobs.c.slash_tx.is_(None)))).scalars().all()
        return sum(1 for job_id in ids if self.execute_slash(job_id) is not None)


def _job_rows():
    from ledgerlm.economy.access import JOB_ROWS

    return JOB_ROWS


def check_kind(kind: str) -> None:
    """Refuse a job kind this market does not trade, naming the ones it does."""
    if kind not in KINDS:
        raise ProviderError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}", field="kind")


def parse_spec(kind: str, spec: dict) -> TrainingSpec | ServingSpec:
    """A job spec of `kind`, checked, with its defaults filled in (what the AcceptOffer's specHash covers)."""
    check_kind(kind)
    try:
        return SPECS[kind].model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ProviderError(f"spec.{where}: {first.get('msg', 'invalid')}", field=where or "spec") from exc


def _evidence_hash(job_id: int, result_hash: str, evidence: dict) -> str:
    """keccak256 of the spot-check's published evidence: what the Staking outcome for this job commits to."""
    body = {"job": job_id, "result_hash": result_hash, "spot_check": evidence}
    return "0x" + keccak(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hex()


def _job(row) -> Job:
    return Job(**{k: row[k] for k in Job.model_fields if k in row.keys()})
