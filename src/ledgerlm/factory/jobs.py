"""Training jobs on a node: signed requests, one worker, progress, cancel/resume, published models."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import and_, func, insert, or_, select, update

from ledgerlm.buckets import KeyedLimit, hourly
from ledgerlm.config import NodeConfig
from ledgerlm.datanets import Datanets
from ledgerlm.datanets.schemas import json_numbers_hashable
from ledgerlm.errors import AuthError, ConflictError, NotFoundError
from ledgerlm.factory.basemodels import get_model, list_models, verify_model
from ledgerlm.factory.errors import FactoryError
from ledgerlm.factory.train import TrainConfig
from ledgerlm.identity import ReadGrant, SignedAction, SigningDomain, verify_action
from ledgerlm.store import Database
from ledgerlm.store.actions import record_action
from ledgerlm.store.schema import models, signed_actions, training_jobs

log = logging.getLogger("ledgerlm.factory")

MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}[a-z0-9]\Z")
TERMINAL = ("stopped", "failed", "done")
MAX_JOBS_LISTED = 1000  # jobs one listing page returns at most; the next starts below X-Ledgerlm-Next-Before
NEXT_BEFORE_HEADER = "X-Ledgerlm-Next-Before"
MAX_MODELS_LISTED = 500  # models one listing page returns at most; the next starts after X-Ledgerlm-Next-After
NEXT_AFTER_HEADER = "X-Ledgerlm-Next-After"
LEASE_SECONDS = 30  # a running job whose node stopped renewing it for this long was orphaned by a crash
ORPHANED = ("interrupted: the node training it stopped renewing its lease (it crashed or was shut down); "
            "resume it")
ACTIVE = ("queued", "running")
# jobs one developer may have queued or running at once, unless the node's config says otherwise
JOBS_PER_DEVELOPER = NodeConfig.training_jobs_per_developer
DEFAULT_FEE_POLICY = {"node_bps": 500, "developer_bps": 4000, "contributors_bps": 4500, "validators_bps": 1000}


# Settings of a job that do not change the trained adapter.
JOB_SETTINGS = ("processes",)


class TrainRequest(BaseModel):
    """What a developer asks for: which data, which base model, which hyper-parameters."""

    model_id: str
    datanet: str
    version: int = Field(ge=1, le=2**63 - 1)
    base: str = "smollm2-135m"
    config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("config")
    @classmethod
    def _config(cls, value: dict[str, Any]) -> dict[str, Any]:
        return json_numbers_hashable(value)

    @field_validator("model_id")
    @classmethod
    def _model_id(cls, value: str) -> str:
        if not MODEL_ID.match(value):
            raise ValueError("must be 3-64 characters of lowercase letters, digits, '.', '_' or '-'")
        return value

    def train_config(self) -> TrainConfig:
        known = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(self.config) - known - set(JOB_SETTINGS))
        if unknown:
            raise FactoryError(f"unknown training setting(s): {', '.join(unknown)}", field=unknown[0])
        self.processes()
        values = {k: v for k, v in self.config.items() if k not in JOB_SETTINGS}
        if isinstance(values.get("target_modules"), list):  # anything else is left for validate to name
            values["target_modules"] = tuple(values["target_modules"])
        config = TrainConfig(**values)
        config.validate()
        return config

    def processes(self) -> int:
        """Data-parallel processes to train on (one per GPU): how the job runs, not what it learns, so it is
        signed with the request but left out of the training config and its lineage hash. A count this host
        cannot run (more than its GPUs, or than its CPU cores without CUDA) is refused."""
        from ledgerlm.factory.distributed import check_processes

        processes = self.config.get("processes", 1)
        check_processes(processes)
        return processes

    def config_hash(self) -> str:
        """What a TrainModel signature's configHash covers: the base model trained and every setting, so a signed
        request cannot be queued again on another base under the developer's name."""
        signed = {"base": self.base, "config": self.config}
        return "0x" + hashlib.sha256(orjson.dumps(signed, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Job(BaseModel):
    id: int
    model_id: str
    developer: str
    datanet: str
    version: int
    base_model: str
    config: dict[str, Any]
    state: str
    progress: dict[str, Any] | None
    error: str | None
    created_at: int
    updated_at: int
    licence: dict[str, Any] | None = None


class ModelRecord(BaseModel):
    id: str
    developer: str
    base_model: str
    datanet: str
    version: int
    version_root: str
    card: dict[str, Any]
    metrics: dict[str, Any]
    path: str
    job_id: int | None
    fee_policy: dict[str, int] | None
    chain_tx: str | None
    created_at: int
    price_per_1k: str | None = None  # base units per 1,000 tokens, set at publish
    lineage_ok: bool | None = None
    lineage_problems: list[str] = Field(default_factory=list)

    def without_record_texts(self) -> ModelRecord:
        """The record as shown to someone who may not read its Datanet: the before/after samples of the
        evaluation reports quote training and held-out records, so they are left out; the scores stay."""
        def withheld(metrics: dict) -> dict:
            return {k: ({**v, "samples": [], "samples_withheld": True} if isinstance(v, dict) and "samples" in v else v)
                    for k, v in metrics.items()}

        card = {**self.card, "metrics": withheld(self.card["metrics"])} if isinstance(self.card.get("metrics"), dict) \
            else self.card
        return self.model_copy(update={"metrics": withheld(self.metrics), "card": card})


class ModelFactory:
    """Runs one training job at a time in a background thread of the node process; several nodes on one database
    share the queue, each running job names its node (`instance`) and holds a lease that node renews."""

    def __init__(self, db: Database, models_dir: Path, datanets: Datanets, *, domain: SigningDomain,
                 register_model: Callable[[ModelRecord, dict, int], str] | None = None,
                 observe_training: Callable[[Any, Any], Any] | None = None,
                 pay_access: Callable[..., dict] | None = None, jobs_per_developer: int = JOBS_PER_DEVELOPER,
                 jobs_queued: int = NodeConfig.training_jobs_queued,
                 jobs_per_developer_per_hour: int = NodeConfig.training_jobs_per_developer_per_hour,
                 jobs_per_hour: int = NodeConfig.training_jobs_per_hour):
        self.db = db
        self.models_dir = Path(models_dir)
        self.datanets = datanets
        self.domain = domain
        self.register_model = register_model
        # Later rooms (attribution) hook in here; the node wires them, so factory never imports them.
        # observe_training(config, base) gives an observer with capture_batch / on_batch_end (run inside
        # each training micro-batch) and finish(out_dir, records, base, training) -> metrics.
        self.observe_training = observe_training
        # Paid access to private Datanets settles through the economy, which the node wires in here.
        self.pay_access = pay_access
        self.jobs_per_developer = jobs_per_developer
        self.jobs_queued = jobs_queued
        # Jobs submitted per hour, per developer and in all: a job cancelled at once frees its place in the queue,
        # and without these a free key could submit and cancel without end, each job a row listed for good and a
        # model id taken for good.
        self._submissions = KeyedLimit(hourly(jobs_per_developer_per_hour), hourly(jobs_per_hour))
        self.instance = uuid.uuid4().hex
        self._wake = threading.Event()
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self._wake_lease = threading.Event()
        self._closing = False
        self.stop_orphans()

    def stop_orphans(self, now: int | None = None) -> int:
        """Stop (resumably) the running jobs whose node died: their lease ran out, or they predate leases. Jobs
        that other live nodes are training, and queued jobs any node may still claim, are left alone."""
        now = int(time.time()) if now is None else now
        orphaned = (training_jobs.c.state == "running") & (
            training_jobs.c.lease_until.is_(None) | (training_jobs.c.lease_until < now))
        # Reading a job sweeps first: a read finds nothing to stop almost always, and then writes nothing.
        with self.db.connect() as conn:
            if conn.execute(select(training_jobs.c.id).where(orphaned).limit(1)).first() is None:
                return 0
        with self.db.begin() as conn:
            return conn.execute(update(training_jobs).where(orphaned)
                                .values(state="stopped", owner=None, lease_until=None, updated_at=now,
                                        error=ORPHANED)).rowcount

    # ------------------------------------------------------------------ submit and control

    def _record_action(self, conn, signed: SignedAction, signer: str) -> int:
        return record_action(conn, signed, signer, chain_id=self.domain.chain_id)

    def submit(self, request: TrainRequest, signed: SignedAction, payment: SignedAction | None = None) -> Job:
        developer = verify_action(signed, expected="TrainModel", domain=self.domain)
        m = signed.message
        if (m["modelId"], m["datanet"], m["version"], m["configHash"]) != (
            request.model_id, request.datanet, request.version, request.config_hash()
        ):
            raise AuthError("the signature does not cover this training request", field="configHash")
        from ledgerlm.factory.train import check_training_setup

        config = request.train_config()  # bad settings fail now, not minutes later in the worker
        # and so do settings the base model cannot take (unknown target modules, max_len past its positions)
        check_training_setup(get_model(self.models_dir, request.base), config)
        self.datanets.require_access(request.datanet, developer, "train on")
        version = self.datanets.version(request.datanet, request.version)
        if version.contribution_count == 0:
            raise FactoryError(f"{request.datanet} version {request.version} is empty", field="version")
        now = int(time.time())
        with self.db.begin() as conn:
            if self._id_taken(conn, request.model_id):
                raise ConflictError(f"model id {request.model_id!r} is already taken", field="model_id")
            if request.model_id in {m.name for m in list_models(self.models_dir)}:  # callers ask for models by id
                raise ConflictError(f"model id {request.model_id!r} is a base model's name: a call for it would be "
                                    "served by the base model", field="model_id")
            self._check_quota(conn, developer)
            if conn.execute(select(signed_actions.c.id).where(
                    (signed_actions.c.signer == developer) & (signed_actions.c.nonce == str(m["nonce"])))).first():
                raise AuthError(f"nonce {m['nonce']} was already used by {developer}: replayed TrainModel rejected",
                                field="nonce")
            self._take_submission(developer)  # last: a request refused before it spends none of the hour
        try:
            licence = self._pay(request, developer, payment)
            with self.db.begin() as conn:
                # again, under the id's lock: another request for the id may have landed while this one paid (a paid
                # licence stays the developer's, so refusing now costs nothing twice)
                self.db.lock(conn, f"model-id:{request.model_id}")
                if self._id_taken(conn, request.model_id):
                    raise ConflictError(f"model id {request.model_id!r} is already taken", field="model_id")
                self._check_quota(conn, developer)  # again: another request of the developer may have landed
                action_id = self._record_action(conn, signed, developer)
                job_id = conn.execute(insert(training_jobs).values(
                    model_id=request.model_id, developer=developer, datanet=request.datanet,
                    version=request.version, base_model=request.base, config=request.config, state="queued",
                    progress=None, error=None, action_id=action_id, created_at=now, updated_at=now, licence=licence,
                )).inserted_primary_key[0]
        except BaseException:
            self._submissions.give_back(developer.lower())  # no job: the hour is not spent
            raise
        self._start_worker()
        return self.job(job_id)

    def model_id_taken(self, model_id: str) -> bool:
        """Whether a fine-tuned model, or a job that has not failed, has the id."""
        with self.db.connect() as conn:
            return self._id_taken(conn, model_id)

    @staticmethod
    def _id_taken(conn, model_id: str) -> bool:
        return bool(conn.execute(select(models.c.id).where(models.c.id == model_id)).first() or conn.execute(
            select(training_jobs.c.id).where((training_jobs.c.model_id == model_id)
                                             & (training_jobs.c.state != "failed"))).first())

    def _take_submission(self, developer: str) -> None:
        """Count one job submitted by `developer` this hour, or refuse it (429) while theirs or the node's is spent."""
        def refusal(spent: str, most: int, wait: int) -> FactoryError:
            if spent == "each":
                return FactoryError(f"{developer} has submitted {most} training jobs within the hour, the most this "
                                    f"node takes from one developer; try again in {wait} s", field="developer",
                                    status=429)
            return FactoryError(f"this node has taken {most} training jobs within the hour, the most it takes; try "
                                f"again in {wait} s", field="request", status=429)

        self._submissions.take_or_refuse(developer.lower(), refusal)

    def _check_quota(self, conn, developer: str) -> None:
        """Refuse a job beyond the developer's share of the single worker (queued or running jobs at once)."""
        active = conn.execute(select(func.count()).select_from(training_jobs).where(
            (training_jobs.c.developer == developer) & training_jobs.c.state.in_(ACTIVE))).scalar()
        if active >= self.jobs_per_developer:
            raise FactoryError(f"{developer} already has {active} training job(s) queued or running, the most one "
                               f"developer may have at once on this node; wait for one to finish or cancel one",
                               field="developer", status=429)
        everyone = conn.execute(select(func.count()).select_from(training_jobs).where(
            training_jobs.c.state.in_(ACTIVE))).scalar()
        if everyone >= self.jobs_queued:
            raise FactoryError(f"this node has {everyone} training jobs queued or running, the most it queues; try "
                               "again when one has finished", field="request", status=429)

    def _pay(self, request: TrainRequest, developer: str, payment: SignedAction | None) -> dict | None:
        """Take the owner's price for a private Datanet version before the job exists: no licence, no job. A
        developer who already paid to train on the version trains on it again without paying again."""
        price = self.datanets.access_price(request.datanet, request.version, developer)
        if not price:
            return None
        if self.pay_access is None:
            raise FactoryError("this node has no chain to take payments on", field="chain", status=409)
        return self.pay_access(payment, payer=developer, datanet=request.datanet, version=request.version,
                               purpose="train", model_id=request.model_id, price=price)

    def control(self, job_id: int, signed: SignedAction) -> Job:
        """`cancel` stops a job at the next step wherever it runs, leaving a resumable checkpoint; `resume` requeues
        it (or, for a job still queued, starts this node's worker on the queue)."""
        developer = verify_action(signed, expected="ControlJob", domain=self.domain)
        job = self.job(job_id)  # a job whose node died shows as stopped, so its developer can resume it
        if signed.message["jobId"] != job_id:
            raise AuthError("the signature is for another job", field="jobId")
        if developer != job.developer:
            # naming nobody: job ids run in order, and a private Datanet's job names a member its list hides
            raise AuthError(f"only its developer may control job {job_id}", field="developer", status=403)
        command = signed.message["command"]
        if command == "resume":  # a job resumes only while its developer may still train on the data
            self.datanets.require_access(job.datanet, developer, "train on")
        with self.db.begin() as conn:
            self._record_action(conn, signed, developer)
            if command == "cancel":
                if job.state in TERMINAL:
                    raise ConflictError(f"job {job_id} is already {job.state}", field="jobId")
                # the flag reaches the job wherever it runs: its node's worker reads it between steps
                conn.execute(update(training_jobs).where(training_jobs.c.id == job_id).values(cancel_requested=True))
                if job.state == "queued":  # unless a worker claimed it meanwhile: that one stops at its next step
                    conn.execute(update(training_jobs).where((training_jobs.c.id == job_id)
                                                             & (training_jobs.c.state == "queued"))
                                 .values(state="stopped", updated_at=int(time.time())))
            elif command == "resume" and job.state == "queued":
                pass  # queued jobs outlive restarts; resuming one starts this node's worker on the queue
            elif command == "resume":
                if job.state != "stopped":
                    raise ConflictError(f"only a stopped job can resume; job {job_id} is {job.state}", field="jobId")
                # queued again, it counts as a new one would: stopping and resuming is no way past the queue's limits
                self._check_quota(conn, developer)
                if not conn.execute(update(training_jobs).where((training_jobs.c.id == job_id)
                                                                & (training_jobs.c.state == "stopped"))
                                    .values(state="queued", error=None, cancel_requested=False,
                                            updated_at=int(time.time()))).rowcount:
                    raise ConflictError(f"job {job_id} was resumed meanwhile", field="jobId")
            else:
                raise FactoryError(f"unknown job command {command!r}: use cancel or resume", field="command")
        self._start_worker()
        return self.job(job_id)

    def job(self, job_id: int) -> Job:
        """The job as it stands: one whose node died shows as stopped (interrupted, resumable), not running."""
        self.stop_orphans()
        with self.db.connect() as conn:
            row = conn.execute(select(training_jobs).where(training_jobs.c.id == job_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"no training job {job_id}", field="job")
        return Job(**{k: row[k] for k in Job.model_fields})

    def jobs(self, *, before: int | None = None, limit: int | None = None) -> list[Job]:
        """Jobs newest first (those with an id below `before`, at most `limit`), after stopping those whose
        node died."""
        self.stop_orphans()
        query = select(training_jobs).order_by(training_jobs.c.id.desc())
        if before is not None:
            query = query.where(training_jobs.c.id < before)
        if limit is not None:
            query = query.limit(limit)
        with self.db.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [Job(**{k: r[k] for k in Job.model_fields}) for r in rows]

    # ------------------------------------------------------------------ the worker

    def _start_worker(self) -> None:
        self._wake.set()
        # checked and started under a lock: two submits ending together each started a worker, and two jobs
        # trained at once in one process (their model loads at once broke every later one)
        with self._worker_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="ledgerlm-training", daemon=True)
                self._worker.start()

    def _next_job(self) -> Job | None:
        """The oldest queued job, claimed for this worker: moved to running only if it is still queued, so the
        workers of several nodes on one database never train the same job twice."""
        while True:
            with self.db.connect() as conn:
                row = conn.execute(select(training_jobs.c.id).where(training_jobs.c.state == "queued")
                                   .order_by(training_jobs.c.id).limit(1)).first()
            if row is None:
                return None
            now = int(time.time())
            with self.db.begin() as conn:
                claimed = conn.execute(update(training_jobs).where(
                    (training_jobs.c.id == row.id) & (training_jobs.c.state == "queued"))
                    .values(state="running", error=None, owner=self.instance, lease_until=now + LEASE_SECONDS,
                            updated_at=now)).rowcount
            if claimed:
                return self.job(row.id)

    def _run(self) -> None:
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(target=self._renew_leases, name="ledgerlm-training-lease",
                                               daemon=True)
            self._heartbeat.start()
        while not self._closing:
            job = self._next_job()
            if job is None:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            self._train(job)

    def _renew_leases(self) -> None:
        """Keep this node's running job leased, also through long steps (loading, indexing) without progress."""
        while not self._closing:
            try:
                with self.db.begin() as conn:
                    conn.execute(update(training_jobs).where(
                        (training_jobs.c.owner == self.instance) & (training_jobs.c.state == "running"))
                        .values(lease_until=int(time.time()) + LEASE_SECONDS))
            except Exception:  # a busy database: the next beat renews; the lease outlasts two misses
                pass
            self._wake_lease.wait(LEASE_SECONDS / 3)

    def _cancel_check(self, job_id: int) -> Callable[[], bool]:
        """Whether the node closes or any node asked to cancel the job (read at most once a second, between
        training steps)."""
        last = [0.0, False]  # when the flag was last read, and what it said

        def should_stop() -> bool:
            if not last[1] and time.monotonic() - last[0] >= 1.0:
                last[0] = time.monotonic()
                with self.db.connect() as conn:
                    last[1] = bool(conn.execute(select(training_jobs.c.cancel_requested).where(
                        training_jobs.c.id == job_id)).scalar())
            return self._closing or last[1]

        return should_stop

    def _set(self, job_id: int, *, conn=None, **values) -> None:
        """Update the job's row, in `conn`'s transaction when given, else in one of its own."""
        values["updated_at"] = int(time.time())
        with (nullcontext(conn) if conn is not None else self.db.begin()) as conn:
            conn.execute(update(training_jobs).where(training_jobs.c.id == job_id).values(**values))

    def _train(self, job: Job) -> None:
        out_dir = self.models_dir / "trained" / job.model_id
        last_write = [0.0]

        def progress(p) -> None:
            if time.time() - last_write[0] >= 1.0 or p.step == p.total_steps:
                last_write[0] = time.time()
                self._set(job.id, progress={k: v for k, v in asdict(p).items()})

        try:
            self._run_training(job, out_dir, progress)
        except Exception as exc:  # a failed job reports why; the node keeps serving
            self._fail(job, exc, out_dir)

    def _run_training(self, job: Job, out_dir: Path, progress) -> None:
        from ledgerlm.factory.finetune import fine_tune
        from ledgerlm.factory.train import has_checkpoint

        request = TrainRequest(model_id=job.model_id, datanet=job.datanet, version=job.version,
                               base=job.base_model, config=job.config)
        # checked again when the data is read: the owner may have removed the developer from a private
        # Datanet while the job waited in the queue
        self.datanets.require_access(job.datanet, job.developer, "train on")
        base = get_model(self.models_dir, job.base_model)
        version = self.datanets.version(job.datanet, job.version)
        from ledgerlm.factory.dataset import usable_records

        records, skipped = usable_records(list(self.datanets.iter_version(job.datanet, job.version)))
        config = request.train_config()
        observer = self.observe_training(config, base) if self.observe_training else None
        processes = request.processes()
        # per-example features are collected in one process; several build the index in a pass after
        collect = observer is not None and processes == 1
        result = fine_tune(
            base, records, config, out_dir, model_id=job.model_id,
            datanet_roots=[version.root], progress=progress,
            resume=has_checkpoint(out_dir),
            should_stop=self._cancel_check(job.id),
            on_batch_end=observer.on_batch_end if collect else None,
            capture_batch=observer.capture_batch if collect else None,
            processes=processes,
        )
        if result.card is None:
            self._set(job.id, state="stopped", owner=None, lease_until=None,
                      error="cancelled; a checkpoint was kept, resume to continue")
            return
        licence = self._licence(job.id)
        if licence:  # the lineage names the access paid for the data, beside the data's root
            from ledgerlm.factory.lineage import write_lineage

            write_lineage(out_dir, replace(result.card, licence=licence))
        card = {**result.card.to_dict(), "licence": licence or {}}
        metrics = dict(card.get("metrics", {}))
        if skipped:  # the developer sees which contributions could not be trained on
            metrics["skipped_records"] = skipped[:100]
        if observer is not None:
            self._set(job.id, progress={**(self.job(job.id).progress or {}), "stage": "indexing for attribution"})
            try:
                metrics["attribution"] = observer.finish(out_dir, records, base, result.training)
            except Exception as exc:  # the model is still usable; attribution reports it missing
                metrics["attribution"] = {"error": f"{type(exc).__name__}: {exc}"}
                traceback.print_exc()
        finished = {k: v for k, v in (self.job(job.id).progress or {}).items() if k != "stage"}  # nothing runs now
        # the model and its job's end in one transaction: a crash between left a model whose job, resumed,
        # trained again and then failed on the model's id
        with self.db.begin() as conn:
            conn.execute(insert(models).values(
                id=job.model_id, developer=job.developer, base_model=job.base_model, datanet=job.datanet,
                version=job.version, version_root=version.root, card=card, metrics=metrics,
                path=str(out_dir), job_id=job.id, fee_policy=None, chain_tx=None, created_at=int(time.time()),
            ))
            self._set(job.id, conn=conn, state="done", progress=finished)
        # a record withdrawn while the job trained was read at its start, and no model was there to clean then;
        # the job is done whatever happens here (the next start cleans what this could not)
        try:
            self.forget_withdrawn(job.datanet, model_id=job.model_id)
        except Exception:  # noqa: BLE001 - logged; a failure must not mark a stored model's job failed
            log.exception("withdrawn records' quotes were not taken out of model %s", job.model_id)

    def _fail(self, job: Job, exc: Exception, out_dir: Path) -> None:
        """Mark the job failed with why, and clear what it wrote: a failed job's id is free again, and a later job
        of that id must start afresh rather than resume this one's checkpoints (or take over its adapter)."""
        traceback.print_exc()
        # the error is shown to anyone who may read the job: paths inside the node's models folder are named
        # from there (the operator's log keeps the whole traceback)
        reason = f"{type(exc).__name__}: {exc}".replace(str(self.models_dir.resolve()), "<models>") \
            .replace(str(self.models_dir), "<models>")
        with self.db.connect() as conn:
            published = conn.execute(select(models.c.id).where(models.c.id == job.model_id)).first()
        if published is None:  # never another job's finished model, whatever went wrong
            shutil.rmtree(out_dir, ignore_errors=True)
        self._set(job.id, state="failed", error=reason)

    def _licence(self, job_id: int) -> dict | None:
        with self.db.connect() as conn:
            return conn.execute(select(training_jobs.c.licence).where(training_jobs.c.id == job_id)).scalar()

    def wait(self, job_id: int, timeout: float = 3600) -> Job:
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = self.job(job_id)
            if job.state in TERMINAL:
                return job
            time.sleep(0.2)
        raise FactoryError(f"job {job_id} did not finish within {timeout:.0f}s", field="job", status=504)

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        self._wake_lease.set()
        if self._worker is not None:
            self._worker.join(timeout=60)

    # ------------------------------------------------------------------ models

    def model(self, model_id: str, *, verify: bool = False) -> ModelRecord:
        with self.db.connect() as conn:
            row = conn.execute(select(models).where(models.c.id == model_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"no fine-tuned model {model_id!r}", field="model")
        record = ModelRecord(**dict(row))
        if verify:
            self._verify_files(record)
        return record

    def _verify_files(self, record: ModelRecord) -> None:
        """Hash the adapter and base weights against the lineage card; sets `lineage_ok` and `lineage_problems`."""
        from ledgerlm.factory.lineage import verify_lineage

        problems = [str(p) for p in verify_lineage(Path(record.path))]
        base = get_model(self.models_dir, record.base_model)
        if not verify_model(base):
            problems.append("base model weights changed")
        elif record.card.get("base_sha256") and base.sha256 != record.card["base_sha256"]:
            problems.append(f"base model {base.name!r} is other weights (sha256 {base.sha256}) than the model was "
                            f"trained on ({record.card['base_sha256']})")
        record.lineage_problems = problems
        record.lineage_ok = not record.lineage_problems

    def model_for(self, model_id: str, grant: ReadGrant | None, *, verify: bool = False) -> ModelRecord:
        """The model as the signer of `grant` (None: unsigned) may see it (`shown_to`); refused, without naming
        its Datanet, to one who may not see it at all.

        The files are hashed (`verify`) only once the reader passed: hashing reads every weight file, so one
        refused would otherwise make the node do that work, and learn from its timing, for a model it may
        not see."""
        record = self.model(model_id)
        reader = grant.reader if grant is not None and grant.covers(record.datanet) else None
        shown = self.shown_to(record, reader)
        if shown is None:
            self.datanets.require_reader(record.datanet, reader)
            # a member removed between the two reads: refused all the same
            raise AuthError(f"model {model_id!r} belongs to a private Datanet", field="model", status=403)
        if verify:
            self._verify_files(shown)
        return shown

    def shown_to(self, record: ModelRecord, reader: str | None) -> ModelRecord | None:
        """The record as `reader` (None: unsigned) may see it; None when it may not see it at all.

        A model of a private Datanet stays private until its developer publishes it; published, it
        is shown to anyone, but without the evaluation samples that quote the Datanet's records."""
        if self.datanets.may_read(record.datanet, reader):
            return record
        return record.without_record_texts() if record.chain_tx else None

    def forget_withdrawn(self, datanet: str, model_id: str | None = None) -> int:
        """Take the samples quoting any withdrawn contribution of `datanet` out of its models' reports (metrics,
        card and lineage.json; or model `model_id`'s): withdrawal deletes the record's text from the node. Returns
        how many models changed. Run after each withdrawal, after a job stores its model (a record withdrawn while
        it trained), and at start (a node that died between a withdrawal and this). A published model's metrics
        hash on chain stays that of the report it had."""
        from ledgerlm.factory.lineage import ModelCard, write_lineage
        from ledgerlm.store.schema import contributions, datanets

        def scrub(metrics: dict, gone: set[int]) -> tuple[dict, bool]:
            out, hit = {}, False
            for key, value in metrics.items():
                if isinstance(value, dict) and isinstance(value.get("samples"), list):
                    kept = [s for s in value["samples"] if not gone.intersection((
                        (s.get("before") or {}).get("contribution"), (s.get("after") or {}).get("contribution")))]
                    hit |= len(kept) != len(value["samples"])
                    value = {**value, "samples": kept}
                out[key] = value
            return out, hit

        changed = 0
        with self.db.begin() as conn:
            gone = set(conn.execute(select(contributions.c.id).join(datanets, datanets.c.id ==
                                                                    contributions.c.datanet_id)
                                    .where(and_(datanets.c.name == datanet, contributions.c.state == "withdrawn")))
                       .scalars())
            if not gone:
                return 0
            query = select(models.c.id, models.c.metrics, models.c.card, models.c.path).where(
                models.c.datanet == datanet)
            if model_id is not None:
                query = query.where(models.c.id == model_id)
            for row in conn.execute(query).mappings().all():
                metrics, hit = scrub(row["metrics"] or {}, gone)
                card_metrics, card_hit = scrub((row["card"] or {}).get("metrics") or {}, gone)
                if not (hit or card_hit):
                    continue
                card = {**(row["card"] or {}), "metrics": card_metrics}
                conn.execute(update(models).where(models.c.id == row["id"]).values(metrics=metrics, card=card))
                if row["path"] and (Path(row["path"]) / "lineage.json").is_file():
                    write_lineage(Path(row["path"]), ModelCard.from_dict(
                        {k: v for k, v in card.items() if k in ModelCard.__dataclass_fields__}))
                changed += 1
        return changed

    def forget_all_withdrawn(self) -> int:
        """`forget_withdrawn` for every Datanet with a model and a withdrawn contribution (at start)."""
        from ledgerlm.store.schema import contributions, datanets

        with self.db.connect() as conn:
            names = list(conn.execute(select(datanets.c.name).distinct()
                                      .join(contributions, contributions.c.datanet_id == datanets.c.id)
                                      .join(models, models.c.datanet == datanets.c.name)
                                      .where(contributions.c.state == "withdrawn")).scalars())
        return sum(self.forget_withdrawn(name) for name in names)

    def list(self) -> list[ModelRecord]:
        with self.db.connect() as conn:
            rows = conn.execute(select(models).order_by(models.c.created_at, models.c.id)).mappings().all()
        return [ModelRecord(**dict(r)) for r in rows]

    def page(self, reader: Callable[[str], str | None], *, after: str | None = None,
             limit: int = 100) -> tuple[list[ModelRecord], str | None]:
        """A page of the models a reader may see (`shown_to`; `reader(datanet)` is who reads that Datanet), oldest
        first: at most `limit`, after model `after` (one they may see); and the model to list the next page after
        (None: there is no more). Which models exist is read without their reports, and the cursor is always a
        model the reader was shown, so a page never names a model they may not see."""
        light = select(models.c.id, models.c.datanet, models.c.chain_tx, models.c.created_at)
        readable: dict[str, bool] = {}

        def visible(row) -> bool:
            if row.datanet not in readable:
                readable[row.datanet] = self.datanets.may_read(row.datanet, reader(row.datanet))
            return readable[row.datanet] or row.chain_tx is not None

        with self.db.connect() as conn:
            query = light.order_by(models.c.created_at, models.c.id)
            if after is not None:
                start = conn.execute(light.where(models.c.id == after)).first()
                if start is None or not visible(start):
                    raise NotFoundError(f"no model {after!r} to list after", field="after")
                query = query.where(or_(models.c.created_at > start.created_at,
                                        and_(models.c.created_at == start.created_at, models.c.id > after)))
            ids: list[str] = []
            for row in conn.execute(query):
                if visible(row):
                    ids.append(row.id)
                    if len(ids) > limit:
                        break
            rows = conn.execute(select(models).where(models.c.id.in_(ids[:limit]))
                                .order_by(models.c.created_at, models.c.id)).mappings().all() if ids else []
        shown = [self.shown_to(ModelRecord(**dict(r)), reader(r["datanet"])) for r in rows]
        return [m for m in shown if m is not None], (ids[limit - 1] if len(ids) > limit else None)

    def published(self, *, base: str | None = None, model_id: str | None = None) -> list[ModelRecord]:
        """Published models (on `base`, or the one `model_id`) as serving reads them, every call: without their
        evaluation reports, and with only the adapter's hash of their card, so a call's look-up does not read every
        model's reports."""
        adapter = models.c.card["adapter_sha256"].as_string().label("adapter_sha256")
        columns = [c for c in models.c if c.name not in ("card", "metrics")]
        query = select(*columns, adapter).where(models.c.chain_tx.is_not(None)).order_by(models.c.created_at)
        if base is not None:
            query = query.where(models.c.base_model == base)
        if model_id is not None:
            query = query.where(models.c.id == model_id)
        with self.db.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [ModelRecord(**{k: v for k, v in r.items() if k != "adapter_sha256"},
                            card={"adapter_sha256": r["adapter_sha256"]}, metrics={}) for r in rows]

    def published_bases(self) -> list[str]:
        """The base model of each published model (one entry per model), read alone."""
        with self.db.connect() as conn:
            return list(conn.execute(select(models.c.base_model).where(models.c.chain_tx.is_not(None))
                                     .order_by(models.c.created_at)).scalars())

    def publish(self, model_id: str, signed: SignedAction) -> ModelRecord:
        """Register the model, its lineage, its fee policy and its price on chain (the developer signs)."""
        developer = verify_action(signed, expected="PublishModel", domain=self.domain)
        m = signed.message
        if m["modelId"] != model_id:
            raise AuthError("the signature is for another model", field="modelId")
        # the developer is checked before the files are hashed, and a refusal names nobody: a model of a private
        # Datanet names a member its members list hides from strangers
        if developer != self.model(model_id, verify=False).developer:
            raise AuthError(f"only its developer may publish {model_id}", field="developer", status=403)
        record = self.model(model_id, verify=True)
        # publishing opens the model to every caller: a developer no longer allowed to read a private Datanet (a
        # removed member) may not do that with what it learned from the data
        self.datanets.require_access(record.datanet, developer, "publish a model of")
        if not record.lineage_ok:
            raise FactoryError(f"lineage of {model_id} does not verify: {'; '.join(record.lineage_problems)}", field="model")
        if m["adapterHash"] != "0x" + record.card["adapter_sha256"]:
            raise AuthError("the signed adapter hash differs from the model's adapter", field="adapterHash")
        policy = {"node_bps": m["nodeBps"], "developer_bps": m["developerBps"],
                  "contributors_bps": m["contributorsBps"], "validators_bps": m["validatorsBps"]}
        if sum(policy.values()) != 10_000:
            raise FactoryError(f"fee shares must sum to 10000 basis points, not {sum(policy.values())}", field="fee_policy")
        if record.chain_tx:
            raise ConflictError(f"{model_id} is already published (tx {record.chain_tx})", field="model")
        if self.register_model is None:
            raise FactoryError("this node has no chain to publish on", field="chain", status=409)
        with self.db.begin() as conn:
            self._record_action(conn, signed, developer)
        price = int(m["pricePer1k"])
        tx = self.register_model(record, policy, price)
        with self.db.begin() as conn:
            conn.execute(update(models).where(models.c.id == model_id)
                         .values(chain_tx=tx, fee_policy=policy, price_per_1k=str(price)))
        return self.model(model_id)
