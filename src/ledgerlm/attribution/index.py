"""The attribution index of one fine-tuned model: a gradient feature and the tokens of every trained example.

Built once, right after training (`build_index`). The training rows' features come from one
extra forward and backward pass over the final adapter, as TRAK (Park et al., 2023) and LoGra
(Choe et al., 2024) score — what a node does — or from the last training epochs' own backward
passes when a caller collected them (collect.py: TracIn's (Pruthi et al., 2020) checkpoint
features, at the cost of the projection only). Which source attributes better is measured on the
evaluation's tuning splits (`ledgerlm.evals.attribution`, benchmarks/attribution_real_text.py). Saved next to the adapter as `attribution/index.npz` (arrays) and
`attribution/meta.json` (which row belongs to which contribution, contributor and content hash).

Only examples the model was actually trained on are indexed: the held-out split of
`training.json` is left out, so a record the model never saw can never be paid.

Duplicates. Rows are keyed by content hash. When the same content was contributed more than once
(under one identity or several), it is indexed once and owned by the earliest contribution (the
lowest contribution id, i.e. the first one the Datanet accepted); the later ones are listed as
duplicates and earn nothing. Splitting would reward copying someone's record under many
identities; first-come keeps the total credit of a piece of content the same however often it
was submitted.

Search. The embedded default is a flat float32 matrix, multiplied with the query in float64 chunks
(rows x 8192 multiply-adds per query: 26 ms at 10k rows on a 2-core CPU, so a few hundred at
100k); FAISS or a sharded index can replace `gradient_scores` at larger scale.

Calibration. Right after the features, the shipped null answers are attributed against the new
index and the payment bars are set above what they reach (calibration.py); the bars are saved
with the index.

Scores (`ScoreMode`):
  dot          projected TracIn: <phi_i, q>
  cosine       <phi_i, q> / (|phi_i| |q|) — unit-normalised, as in Akyürek et al. (2022)
               and LESS (Xia et al., 2024), so high-loss outliers do not win every query
  trak         <phi_i, H^-1 q> with H = Phi^T Phi / n + lambda I, the damped inverse of the
               feature covariance (TRAK's (Phi^T Phi)^-1, DataInf's damped inverse-Hessian
               view, Kwon et al., 2023)
  trak_cosine  trak, normalised in the H^-1 metric

K-FAC. Built with `kfac=True`, the projection itself is whitened by the trained rows' K-FAC
factors (kfac.py, after Kronfluence and LoGra), so every mode above scores K-FAC-preconditioned
gradients; whether to is chosen on the evaluation's tuning split.

Only the two cosine modes pay (their scores are bounded, so "how far above the bar" has a
scale); the default is chosen on the evaluation's tuning split (ledgerlm.evals.attribution), never
on the split it reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from ledgerlm.attribution.calibration import Calibration, CalibrationSettings, calibrate
from ledgerlm.attribution.casing import record_texts, word_forms
from ledgerlm.attribution.errors import AttributionError, IndexNotFoundError
from ledgerlm.attribution.features import (
    COUNT,
    DEFAULT_DIM,
    LoraProjector,
    example_features,
    record_examples,
    template_head,
)
from ledgerlm.attribution.kfac import kfac_projector, kronecker_factors
from ledgerlm.attribution.spans import SpanIndex, token_classes

INDEX_DIR = "attribution"
ARRAYS_FILE = "index.npz"
META_FILE = "meta.json"
SCORE_MODES = ("dot", "cosine", "trak", "trak_cosine")
ScoreMode = Literal["dot", "cosine", "trak", "trak_cosine"]
DEFAULT_MODE: ScoreMode = "cosine"
FORMAT = 2
_CHUNK = 8192  # rows per float64 block when scoring a stack of answers
_CACHED = 1 << 18  # numbers per float64 block when scoring one answer (2 MiB)


@dataclass(frozen=True)
class IndexedExample:
    """One indexed row: the training record it is and the contribution that owns it."""

    row: int
    record: int
    contribution_id: int | str
    contributor: str
    content_hash: str
    duplicates: tuple[int | str, ...] = ()


@dataclass(frozen=True)
class IndexConfig:
    """How the index was built; recorded in meta.json and checked when it is loaded."""

    dim: int
    seed: int
    damping: float
    max_len: int
    score_mode: str = DEFAULT_MODE
    adapter_sha256: str = ""
    data_sha256: str = ""
    n_records: int = 0
    build_seconds: float = 0.0
    rows_from_training: int = 0  # rows whose features were collected during training
    kfac: bool = False  # the projection is whitened by the rows' K-FAC factors (kfac.py)
    # an answer's feature is the weighted mean of its tokens' unit gradients, not the gradient of
    # its mean loss (features.token_mean_features): a pass per answer token
    per_token_query: bool = False


@dataclass
class AttributionIndex:
    """Gradient features, preconditioner and span index of every example a model was trained on."""

    examples: list[IndexedExample]
    features: np.ndarray
    preconditioner: Preconditioner
    projector: LoraProjector
    spans: SpanIndex
    config: IndexConfig
    calibration: Calibration | None = None
    norms: dict[str, np.ndarray] = field(default_factory=dict)
    tokenizer: object | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.examples)

    def query_vector(self, feature: np.ndarray, mode: ScoreMode | None = None) -> np.ndarray:
        """The vector(s) the index rows are multiplied with: q, or H^-1 q for the trak modes.

        `feature` is one (dim,) feature or a (queries, dim) stack of them.
        """
        mode = _check_mode(mode or self.config.score_mode)
        q = np.asarray(feature, dtype=np.float64)
        if not mode.startswith("trak"):
            return q
        return self.preconditioner.apply(q)

    def gradient_scores(self, feature: np.ndarray, mode: ScoreMode | None = None) -> np.ndarray:
        """Score of every row against an answer's feature, in float64.

        With a (queries, dim) stack of features, a (queries, rows) matrix: the same scores, from
        one product over the index instead of one per query (calibration scores 64 at once).
        """
        mode = _check_mode(mode or self.config.score_mode)
        feature = np.asarray(feature, dtype=np.float64)
        single = feature.ndim == 1
        q = feature[None] if single else feature
        v = self.query_vector(q, mode)
        scores = np.empty((len(q), len(self.features)), dtype=np.float64)
        # One answer: blocks of rows small enough to stay in cache while converted and multiplied
        # (2.5-4x faster at 8,192 numbers a row); a stack of them: large blocks, which a matrix
        # product uses better. How BLAS groups rows (by block, or by thread) moves a score by an
        # ulp or so, far below the fixed precision every ranked score is rounded to.
        step = _CHUNK if len(q) > 1 else max(1, _CACHED // self.features.shape[1])
        for start in range(0, len(self.features), step):
            chunk = self.features[start:start + step].astype(np.float64)
            scores[:, start:start + step] = v @ chunk.T
        if mode.endswith("cosine"):
            q_norm = np.sqrt(np.maximum(np.einsum("ij,ij->i", q, v), 0.0))
            scores = (scores * self.row_inverse_norms(mode)[None]
                      / np.where(q_norm > 0, q_norm, 1.0)[:, None])
        return scores[0] if single else scores

    def row_inverse_norms(self, mode: ScoreMode) -> np.ndarray:
        key = "trak" if mode.startswith("trak") else "plain"
        if key not in self.norms:
            self.norms[key] = _inverse_norms(self.features, self.preconditioner if key == "trak" else None)
        return self.norms[key]

    def owner_codes(self) -> np.ndarray:
        """One small integer per row naming its contributor (rows of one contributor share it)."""
        if "owners" not in self.norms:
            codes: dict[str, int] = {}
            self.norms["owners"] = np.array([codes.setdefault(e.contributor, len(codes))
                                             for e in self.examples], dtype=np.int64)
        return self.norms["owners"]

    def example(self, row: int) -> IndexedExample:
        return self.examples[row]

    # -------------------------------------------------------------------------- persistence

    def save(self, model_dir: Path) -> Path:
        """Write `<model_dir>/attribution/` atomically; returns that directory."""
        target = Path(model_dir) / INDEX_DIR
        staging = Path(model_dir) / f".{INDEX_DIR}.tmp"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        for mode in ("cosine", "trak_cosine"):
            self.row_inverse_norms(mode)
        arrays = {
            "features": self.features,
            **self.preconditioner.arrays(self.features),
            **{f"norm_{k}": v for k, v in self.norms.items() if k in ("plain", "trak")},
            **{f"proj|{k}": v for k, v in self.projector.weights.items()},
            **self.spans.arrays(),
        }
        np.savez(staging / ARRAYS_FILE, **arrays)
        meta = {
            "format": FORMAT,
            "config": asdict(self.config),
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "projections": self.projector.to_meta(),
            "examples": [_example_meta(e) for e in self.examples],
        }
        (staging / META_FILE).write_text(json.dumps(meta, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
        return target

    @classmethod
    def load(cls, model_dir: Path) -> AttributionIndex:
        where = Path(model_dir) / INDEX_DIR
        if not (where / META_FILE).is_file() or not (where / ARRAYS_FILE).is_file():
            raise IndexNotFoundError(
                f"{model_dir} has no attribution index; build it with "
                "`ledgerlm.attribution.build_index(model_dir, records)` after training",
                field="model_dir",
            )
        meta = json.loads((where / META_FILE).read_text())
        if meta.get("format") != FORMAT:
            raise AttributionError(
                f"the attribution index in {where} has format {meta.get('format')}, this "
                f"version reads format {FORMAT}; rebuild it",
                field="model_dir",
            )
        with np.load(where / ARRAYS_FILE) as npz:
            arrays = {k: npz[k] for k in npz.files}
        weights = {k.split("|", 1)[1]: v for k, v in arrays.items() if k.startswith("proj|")}
        norms = {k[len("norm_"):]: v for k, v in arrays.items() if k.startswith("norm_")}
        return cls(
            examples=[_example_from_meta(e) for e in meta["examples"]],
            features=arrays["features"],
            preconditioner=Preconditioner.from_arrays(arrays, arrays["features"]),
            projector=LoraProjector.from_meta(meta["projections"], weights),
            spans=SpanIndex.from_arrays(arrays),
            config=IndexConfig(**meta["config"]),
            calibration=(Calibration.from_dict(meta["calibration"]) if meta.get("calibration")
                         else None),
            norms=norms,
        )


def top_rows(scores: np.ndarray, top_k: int) -> np.ndarray:
    """The `top_k` best rows of a score vector, best first, ties broken by row."""
    k = min(top_k, len(scores))
    if k == 0:
        return np.zeros(0, np.int64)
    top = np.argpartition(-scores, k - 1)[:k]
    # argpartition may cut through a tie: widen to every row scoring at least the k-th score
    top = np.flatnonzero(scores >= scores[top].min())
    return top[np.lexsort((top, -scores[top]))][:k].astype(np.int64)


def _check_mode(mode: str) -> str:
    if mode not in SCORE_MODES:
        raise AttributionError(f"score mode must be one of {', '.join(SCORE_MODES)}, not {mode!r}",
                               field="score_mode")
    return mode


def _inverse_norms(features: np.ndarray, preconditioner: Preconditioner | None) -> np.ndarray:
    """1 / |phi_i| (or 1 / |phi_i|_H^-1) of every row, float64; 0 for a zero row."""
    squared = np.empty(len(features), dtype=np.float64)
    for start in range(0, len(features), _CHUNK):
        chunk = features[start:start + _CHUNK].astype(np.float64)
        seen = chunk if preconditioner is None else preconditioner.apply(chunk)
        squared[start:start + _CHUNK] = np.einsum("ij,ij->i", seen, chunk)
    norms = np.sqrt(np.maximum(squared, 0.0))
    return np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)


@dataclass(frozen=True)
class Preconditioner:
    """H^-1 = (Phi^T Phi / n + lambda I)^-1, kept in whichever form takes fewer numbers.

    Dense: the dim x dim matrix. Low rank: with fewer rows than dimensions, the Woodbury identity
    H^-1 = (I - Phi^T (n lambda I + Phi Phi^T)^-1 Phi) / lambda needs only the n rows it was fitted
    on and one n x n inverse, so a wide projection does not cost a dim x dim matrix (268 MB at
    dim 8,192) while there are few rows; applying it costs two products with the rows.
    """

    dense: np.ndarray | None = None  # (dim, dim) float32
    basis: np.ndarray | None = None  # (n, dim) float32: the rows it was fitted on
    inner: np.ndarray | None = None  # (n, n) float64: (n lambda I + Phi Phi^T)^-1
    lam: float = 1.0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.dense, self.basis, self.inner) if a is not None)

    def apply(self, q: np.ndarray) -> np.ndarray:
        """H^-1 q for every row of a (queries, dim) float64 stack."""
        if self.dense is not None:
            return q @ self._float64.T
        basis = self._float64
        return (q - ((q @ basis.T) @ self.inner) @ basis) / self.lam

    @cached_property
    def _float64(self) -> np.ndarray:  # converted once, not per query
        return (self.dense if self.dense is not None else self.basis).astype(np.float64)

    def arrays(self, features: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """What is saved; a basis that is `features` itself is not saved twice."""
        if self.dense is not None:
            return {"preconditioner": self.dense}
        basis = {"preconditioner_basis": self.basis} if self.basis is not features else {}
        return {**basis, "preconditioner_inner": self.inner,
                "preconditioner_lambda": np.array(self.lam)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray],
                    features: np.ndarray | None = None) -> Preconditioner:
        if "preconditioner" in arrays:
            return cls(dense=arrays["preconditioner"])
        basis = arrays.get("preconditioner_basis", features)
        return cls(basis=basis, inner=arrays["preconditioner_inner"],
                   lam=float(arrays["preconditioner_lambda"]))


def damped_inverse_covariance(features: np.ndarray, damping: float) -> Preconditioner:
    """(Phi^T Phi / n + lambda I)^-1 with lambda = damping x the mean eigenvalue (trace / dim).

    Scaling the damping by the mean eigenvalue makes one setting work for features of any
    magnitude; it is symmetric positive definite for any damping > 0, so it always exists. While
    the rows and the n x n inverse take fewer numbers than a dim x dim matrix it is kept in the
    Woodbury form (`Preconditioner`), else as the dense inverse.
    """
    n, dim = features.shape
    phi = features.astype(np.float64)
    trace = float(np.einsum("ij,ij->", phi, phi)) / max(n, 1)
    lam = damping * (trace / dim if n else 1.0) or damping
    import scipy.linalg

    if n * dim + n * n < dim * dim:
        gram = n * lam * np.eye(n) + phi @ phi.T
        inner = scipy.linalg.cho_solve(scipy.linalg.cho_factor(gram), np.eye(n))
        # float32 rows are kept as they are (not copied): the index saves them once
        return Preconditioner(basis=np.asarray(features, dtype=np.float32), inner=inner, lam=lam)
    factor = scipy.linalg.cho_factor(phi.T @ phi / n + lam * np.eye(dim))
    return Preconditioner(dense=scipy.linalg.cho_solve(factor, np.eye(dim)).astype(np.float32))


def _example_meta(e: IndexedExample) -> dict:
    return {"row": e.row, "record": e.record, "contribution_id": e.contribution_id,
            "contributor": e.contributor, "content_hash": e.content_hash,
            "duplicates": list(e.duplicates)}


def _example_from_meta(data: dict) -> IndexedExample:
    return IndexedExample(data["row"], data["record"], data["contribution_id"], data["contributor"],
                          data["content_hash"], tuple(data.get("duplicates", ())))


# ------------------------------------------------------------------------------ building


def record_content_hash(record: dict) -> str:
    """The Datanet content hash a version export put on the record, else sha256 of its fields."""
    given = record.get("_content_hash")
    if isinstance(given, str) and given:
        return given
    plain = {k: v for k, v in record.items() if not k.startswith("_")}
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "0x" + hashlib.sha256(text.encode()).hexdigest()


def owners_by_content(records: list[dict], indices: list[int]) -> list[IndexedExample]:
    """One row per distinct content among `records[indices]`, owned by its earliest contribution."""
    groups: dict[str, list[int]] = {}
    for i in indices:
        record = records[i]
        contributor = record.get("_contributor")
        if not isinstance(contributor, str) or not contributor:
            raise AttributionError(
                f"record {i} has no _contributor; build the index from a Datanet version export, "
                "whose records carry _contribution_id, _contributor and _content_hash",
                field=f"records[{i}]._contributor",
            )
        groups.setdefault(record_content_hash(record), []).append(i)
    rows = []
    for content_hash, members in groups.items():
        members.sort(key=lambda i: (_id_order(records[i].get("_contribution_id", i)), i))
        first = members[0]
        rows.append((first, content_hash, members))
    rows.sort()
    return [
        IndexedExample(
            row=row, record=first,
            contribution_id=records[first].get("_contribution_id", first),
            contributor=records[first]["_contributor"],
            content_hash=content_hash,
            duplicates=tuple(records[i].get("_contribution_id", i) for i in members[1:]),
        )
        for row, (first, content_hash, members) in enumerate(rows)
    ]


def _id_order(value) -> tuple:
    return (0, value, "") if isinstance(value, int) else (1, 0, str(value))


def build_index(
    source,
    records: list[dict],
    *,
    base=None,
    train_indices: list[int] | None = None,
    max_len: int | None = None,
    dim: int = DEFAULT_DIM,
    seed: int = 0,
    damping: float = 0.1,
    batch_size: int = 8,
    score_mode: ScoreMode = DEFAULT_MODE,
    calibration: CalibrationSettings | None = CalibrationSettings(),
    save: bool | None = None,
    progress: Callable[[int, int], None] | None = None,
    features=None,
    loaded: tuple | None = None,
    last_blocks: int = 0,
    kfac: bool = False,
    per_token_query: bool = False,
    wide: str = COUNT,
) -> AttributionIndex:
    """Index the examples a model was trained on, for attribution of its answers.

    `source` is a factory output directory (the adapter plus training.json, whose data hash must
    match `records` and whose train split and max_len are used; saved there unless save=False) or
    a `(model, tokenizer)` pair (all records are indexed unless `train_indices` says otherwise;
    nothing is saved). `records` are the Datanet version export the model was trained on.
    `calibration` sets what the payment bars are calibrated for (None: no bars, the index can
    rank but not pay); how many null answers calibration spends a gradient pass on follows the
    tokens the training ran (training.json's `tokens_seen`; calibration.py). `features` (a `TrainingFeatures` filled while the model trained) supplies
    the rows it holds, so only the examples it missed take a pass here; `loaded` is the trained
    `(model, tokenizer)` when the caller still holds them, saving a load from disk.
    `last_blocks` > 0 features only the LoRA weights of the model's last that many transformer
    blocks (features.py), when the rows come from a pass here. `kfac` whitens the projection by
    the K-FAC factors of the trained rows (kfac.py; `damping` damps them too): one more pass,
    and every row then takes a pass of its own, since features collected in training were
    projected without it. `per_token_query` scores answers (and calibrates the bars) by the
    weighted mean of their tokens' unit gradients (features.token_mean_features). `wide` is how
    a sketch projects each weight's wide side (`LoraProjector.for_model`).
    """
    _check_mode(score_mode)
    started = time.perf_counter()
    adapter_sha = data_sha = ""
    model_dir = None
    training_tokens = 0  # unknown for a (model, tokenizer) source: calibration takes its cap
    if isinstance(source, (str, os.PathLike)):
        from ledgerlm.attribution.attribute import load_model
        from ledgerlm.factory import adapter_sha256, read_training
        from ledgerlm.factory.digest import canonical_json_sha256

        model_dir = Path(source)
        training = read_training(model_dir)
        data_sha = canonical_json_sha256(records)
        if data_sha != training["data_sha256"]:
            raise AttributionError(
                f"these records are not the ones {model_dir} was trained on (data hash "
                f"{data_sha[:12]} vs {training['data_sha256'][:12]}); pass the same Datanet "
                "version export",
                field="records",
            )
        train_indices = training["train_indices"] if train_indices is None else train_indices
        max_len = max_len or training["config"]["max_len"]
        training_tokens = int(training.get("tokens_seen") or 0)
        model, tokenizer = loaded or load_model(model_dir, base)
        adapter_sha = adapter_sha256(model_dir)
        save = True if save is None else save
    else:
        model, tokenizer = source
        if save:
            raise AttributionError("save=True needs a model directory as the source", field="save")
    indices = sorted(range(len(records)) if train_indices is None else train_indices)
    max_len = max_len or 512
    examples = owners_by_content(records, indices)
    if not examples:
        raise AttributionError("there are no trained records to index", field="records")

    head = template_head(tokenizer)
    collected = (features.rows if not kfac and features is not None
                 and features.projector is not None and features.projector.head == head else {})
    if collected:
        projector = features.projector
        projector.check_model(model)
    else:
        projector = LoraProjector.for_model(model, dim, seed, head, last_blocks, wide)
    owned = [e.record for e in examples]
    tokenized = record_examples(records, owned, tokenizer, max_len)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if kfac:
        factors = kronecker_factors(model, tokenized, head, max_len=max_len, pad_id=pad_id,
                                    batch_size=batch_size)
        projector = kfac_projector(projector, factors, damping)
    missing = [piece for piece in tokenized if piece.index not in collected]
    by_record = {r: collected[r] for r in owned if r in collected}
    heads: dict = {}  # the template head's keys and values: run once for rows and calibration
    if missing:
        by_record.update(example_features(model, missing, projector, max_len=max_len,
                                          pad_id=pad_id, batch_size=batch_size, progress=progress,
                                          heads=heads))
    features = np.zeros((len(examples), projector.dim), dtype=np.float32)  # stored: half the bytes
    tokens: dict[int, list[int]] = {}
    for piece in tokenized:
        tokens.setdefault(piece.index, []).extend(piece.input_ids)
    for e in examples:
        if e.record in by_record:
            features[e.row] = by_record[e.record]
    spans = SpanIndex.build([tokens.get(e.record, []) for e in examples], *token_classes(tokenizer))
    spans.forms = word_forms(text for e in examples for text in record_texts(records[e.record]))
    preconditioner = damped_inverse_covariance(features, damping)
    config = IndexConfig(
        dim=projector.dim, seed=seed, damping=damping, max_len=max_len, score_mode=score_mode,
        adapter_sha256=adapter_sha, data_sha256=data_sha, n_records=len(records),
        rows_from_training=sum(e.record in collected for e in examples), kfac=kfac,
        per_token_query=per_token_query,
    )
    index = AttributionIndex(examples, features, preconditioner, projector, spans, config,
                             tokenizer=tokenizer)
    if calibration is not None:
        index.calibration = calibrate(index, model, tokenizer, calibration,
                                      training_tokens=training_tokens, heads=heads)
    index.config = replace(config, build_seconds=time.perf_counter() - started)
    if save and model_dir is not None:
        index.save(model_dir)
    return index
