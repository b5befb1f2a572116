"""Gradient-score variants the influence literature says move LDS: K-FAC / EK-FAC preconditioning, per-token answer losses, checkpoint ensembles and unit-normalised rows.

K-FAC on the LoRA factors (Kronfluence, LoGra): the index's own option
(`ledgerlm.attribution.kfac`, whitening folded into the projection), scored here on the projected
features of the final adapter and, as a reference, on the exact LoRA gradients. EK-FAC (George
et al., 2018; Kronfluence's default) keeps K-FAC's eigenbases but refits the eigenvalues to the
per-example gradients' second moments in that basis; it is not a Kronecker product, so it is
computed only on the exact (unprojected) gradients.

Per-token answer losses. The index scores the gradient of the answer's mean token loss; a long
answer's gradient is then dominated by whichever tokens have the largest loss gradients. Scoring
each answer token's own gradient and aggregating the cosines (mean over tokens, weighted like the
index weighs tokens, or the best content token) follows the token-level attribution of
Kronfluence and of Grosse et al. (2023).

Checkpoint ensembles. TracIn-CP (Pruthi et al., 2020) sums over checkpoints the product of the
training and the query gradient *at that checkpoint*; TRAK (Park et al., 2023) averages its score
over several models. The training features of each of the last epochs are collected in training;
the query's feature is taken with that epoch's LoRA weights, and the per-checkpoint cosines are
averaged.

Unit-normalised training features. Cosine normalises both sides; normalising only the training
rows ranks rows exactly as cosine does for one query (the query's norm is one number per query),
so it is reported as a check. What does change a score is normalising the rows *before* the
preconditioner is fitted (TRAK's covariance of unit rows), reported for trak_cosine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np

from ledgerlm.attribution.features import (
    LoraProjector,
    answer_feature,
    example_features,
    record_examples,
    unit_rows,
)
from ledgerlm.attribution.kfac import KroneckerFactors, kfac_projector, kronecker_factors


def ekfac_whitener(exact: LoraProjector, factors: KroneckerFactors, fit_rows: np.ndarray,
                   damping: float):
    """A function mapping exact LoRA gradients (n, D) to EK-FAC-whitened ones (n, D).

    Per weight: rotate into K-FAC's eigenbases (Q_G^T W Q_A), divide by the square root of the
    damped second moment the training rows `fit_rows` have in that basis (EK-FAC's corrected
    eigenvalues).
    """
    parts = []
    for m in exact.matrices:
        qa = np.linalg.eigh(factors.activations[m.name])[1]
        qg = np.linalg.eigh(factors.gradients[m.name])[1]
        block = fit_rows[:, m.offset:m.offset + m.dim].reshape(-1, m.rows, m.cols)
        # optimize: two matrix products; the plain three-operand loop took minutes per SmolLM2 weight
        moment = (np.einsum("ro,nrc,cd->nod", qg, block, qa, optimize=True) ** 2).mean(axis=0)
        lam = damping * float(moment.mean()) or damping
        parts.append((m, qa, qg, 1.0 / np.sqrt(moment + lam)))

    def whiten(rows: np.ndarray) -> np.ndarray:
        rows = np.atleast_2d(rows)
        out = np.empty_like(rows, dtype=np.float64)
        for m, qa, qg, scale in parts:
            block = rows[:, m.offset:m.offset + m.dim].reshape(-1, m.rows, m.cols)
            rotated = np.einsum("ro,nrc,cd->nod", qg, block, qa, optimize=True) * scale
            out[:, m.offset:m.offset + m.dim] = rotated.reshape(len(rows), -1)
        return out

    return whiten


def token_features(model, projector: LoraProjector, example) -> np.ndarray:
    """(answer tokens, dim): the projected gradient of each answer token's own loss, one pass.

    The example is repeated once per answer token with only that token labelled; the copies run
    the template head once and never see each other (features.feature_batches).
    """
    from ledgerlm.factory import IGNORE

    positions = [p for p, label in enumerate(example.labels) if label != IGNORE]
    copies = [replace(example, index=j, labels=[label if p == pos else IGNORE
                                                for p, label in enumerate(example.labels)])
              for j, pos in enumerate(positions)]
    found = example_features(model, copies, projector, max_len=len(example.input_ids), pad_id=0,
                             batch_size=len(copies))
    return np.stack([found[j] for j in range(len(copies))])


def per_token_scores(rows: np.ndarray, tokens: np.ndarray, weights: list[float]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per-token cosines aggregated two ways: the weighted mean and the best content token.

    `weights` are the index's per-token weights (1 content, less for restated tokens); the best
    token is taken among those of the largest weight.
    """
    cos = unit_rows(np.asarray(tokens, np.float64)) @ unit_rows(np.asarray(rows, np.float64)).T
    w = np.asarray(weights, dtype=np.float64)[: len(cos)]
    mean = (w @ cos) / (w.sum() or 1.0)
    best = cos[w >= w.max()].max(axis=0)
    return mean, best


def lora_state(model) -> dict:
    """A copy of the model's LoRA weights (a checkpoint of the adapter)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


@contextmanager
def at_checkpoint(model, state: dict) -> Iterator[None]:
    """Run with the LoRA weights of `state`, then put the current ones back."""
    import torch

    current = lora_state(model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, value in state.items():
            params[n].copy_(value)
    try:
        yield
    finally:
        with torch.no_grad():
            for n, value in current.items():
                params[n].copy_(value)


# Where the variants' names come from: "grad:" scores use the index's projection, "exact grad"
# ones the unprojected LoRA gradients of the same adapter (head left out, as the index does).
KFAC = "grad:kfac_cosine (final adapter)"
EXACT_KFAC = "exact grad kfac cosine (head left out)"
EXACT_EKFAC = "exact grad ekfac cosine (head left out)"
TOKEN_MEAN = "grad:cosine (per-token mean)"
TOKEN_MAX = "grad:cosine (per-token max)"
EXACT_TOKEN_MEAN = "exact grad cosine (per-token mean, head left out)"
UNIT_ROWS_DOT = "grad:dot (unit rows only)"
UNIT_ROWS_TRAK = "grad:trak_cosine (unit rows)"
ENSEMBLE_EPOCHS = 3  # besides every collected epoch


def ensemble_name(epochs: int) -> str:
    return f"grad:cosine ({epochs}-checkpoint ensemble)"


@dataclass
class VariantContext:
    """What the variants need beyond the trained model: fitted once per model, used per query."""

    kfac: LoraProjector
    kfac_rows: np.ndarray
    exact_kfac: LoraProjector
    exact_kfac_rows: np.ndarray
    ekfac: object
    ekfac_rows: np.ndarray
    unit_trak: object   # the index with unit rows and the preconditioner fitted on them


def variant_context(t, damping: float, max_len: int) -> VariantContext:
    """K-FAC factors over the indexed rows and every row in each preconditioned space."""
    from ledgerlm.attribution.index import damped_inverse_covariance

    rows = [e.record for e in t.index.examples]
    pad = t.tokenizer.pad_token_id if t.tokenizer.pad_token_id is not None else 0
    factors = kronecker_factors(t.model, record_examples(t.records, rows, t.tokenizer, max_len),
                                t.index.projector.head, max_len=max_len, pad_id=pad)

    def features_of(projector: LoraProjector) -> np.ndarray:
        found = example_features(t.model, record_examples(t.records, rows, t.tokenizer, max_len),
                                 projector, max_len=max_len, pad_id=pad)
        return np.stack([found.get(r, np.zeros(projector.dim)) for r in rows])

    # The plain projection the index was built with: the collector's (the index's own may be
    # whitened already when it was built with K-FAC).
    plain = t.collected.projector if t.collected is not None else t.index.projector
    kfac = kfac_projector(plain, factors, damping)
    exact_kfac = kfac_projector(t.exact_head, factors, damping)
    ekfac = ekfac_whitener(t.exact_head, factors, t.exact_head_rows, damping)
    unit = unit_rows(t.index.features.astype(np.float64)).astype(np.float32)
    unit_trak = replace(t.index, features=unit, norms={},
                        preconditioner=damped_inverse_covariance(unit, damping))
    return VariantContext(kfac, features_of(kfac), exact_kfac, features_of(exact_kfac), ekfac,
                          ekfac(t.exact_head_rows), unit_trak)


def variant_row_scores(t, ctx: VariantContext, prepared, *, ensembles: bool = True
                   ) -> dict[str, np.ndarray]:
    """Every variant's score of every indexed row for one prepared answer (attribute.AnswerQuery).

    `ensembles=False` leaves out the checkpoint ensembles (a pass per checkpoint and answer).
    """
    from ledgerlm.evals.attribution.baselines import cosine_rows

    model, example, weights = t.model, prepared.example, prepared.weights[0]
    out = {}
    q = answer_feature(model, ctx.kfac, example, weights)
    out[KFAC] = cosine_rows(ctx.kfac_rows, q)
    q = answer_feature(model, ctx.exact_kfac, example, weights)
    out[EXACT_KFAC] = cosine_rows(ctx.exact_kfac_rows, q)
    exact_q = answer_feature(model, t.exact_head, example, weights)
    out[EXACT_EKFAC] = cosine_rows(ctx.ekfac_rows, ctx.ekfac(exact_q)[0])
    tokens = token_features(model, t.index.projector, example)
    out[TOKEN_MEAN], out[TOKEN_MAX] = per_token_scores(t.index.features, tokens, weights)
    exact_tokens = token_features(model, t.exact_head, example)
    out[EXACT_TOKEN_MEAN] = per_token_scores(t.exact_head_rows, exact_tokens, weights)[0]
    q = answer_feature(model, t.index.projector, example, weights)
    out[UNIT_ROWS_DOT] = unit_rows(t.index.features.astype(np.float64)) @ q
    out[UNIT_ROWS_TRAK] = ctx.unit_trak.gradient_scores(q, "trak_cosine")
    collected = sorted(set(t.checkpoints) & set(t.collected.by_epoch)) if ensembles else []
    for epochs in sorted({min(ENSEMBLE_EPOCHS, len(collected)), len(collected)}):
        if epochs < 2:
            continue
        total = np.zeros(len(t.index))
        for epoch in collected[-epochs:]:
            with at_checkpoint(model, t.checkpoints[epoch]):
                q_e = answer_feature(model, t.collected.projector, example, weights)
            by_record = t.collected.by_epoch[epoch]
            rows_e = np.stack([by_record.get(e.record, np.zeros(len(q_e)))
                               for e in t.index.examples])
            total += cosine_rows(rows_e, q_e)
        out[ensemble_name(epochs)] = total / epochs
    return out
