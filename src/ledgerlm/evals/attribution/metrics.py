"""Ranking and counterfactual metrics: precision@1 and MRR of the responsible record and contributor, and LDS.

The linear datamodeling score (LDS, Park et al., 2023): retrain on random halves of the training
set; for each query, correlate (Spearman) the sum of a method's scores over the kept examples
with the retrained model's actual answer loss (negated), and average over queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ledgerlm.evals.attribution.facts import TracingQuery


@dataclass(frozen=True)
class RankMetrics:
    record_p1: float
    record_mrr: float
    contributor_p1: float
    contributor_mrr: float
    n: int


def rank_metrics(scores: np.ndarray, queries: list[TracingQuery], row_records: list[int],
                 row_contributors: list[str], tie_seed: int = 0) -> RankMetrics:
    """Precision@1 and MRR of the responsible record and contributor; ties broken at random."""
    rng = np.random.default_rng(tie_seed)
    rec_rr, con_rr = [], []
    contributors = np.array(row_contributors)
    records = np.array(row_records)
    for q, s in zip(queries, scores):
        order = np.lexsort((rng.random(len(s)), -s))
        relevant = np.isin(records[order], q.records)
        rec_rr.append(1.0 / (1 + int(np.argmax(relevant))) if relevant.any() else 0.0)
        seen: list[str] = []
        for c in contributors[order]:
            if c not in seen:
                seen.append(c)
        ranks = [seen.index(c) for c in q.responsible if c in seen]
        con_rr.append(1.0 / (1 + min(ranks)) if ranks else 0.0)
    rec, con = np.array(rec_rr), np.array(con_rr)
    return RankMetrics(float((rec == 1).mean()), float(rec.mean()), float((con == 1).mean()),
                       float(con.mean()), len(queries))


def lds(scores: np.ndarray, masks: np.ndarray, losses: np.ndarray) -> dict:
    """Mean and standard error over queries of Spearman(predicted, -loss) across subsets.

    `scores` (queries, rows), `masks` (subsets, rows) of kept rows, `losses` (subsets, queries).
    """
    from scipy.stats import spearmanr

    predicted = masks.astype(np.float64) @ np.asarray(scores, dtype=np.float64).T
    rhos = []
    for qi in range(scores.shape[0]):
        rho = spearmanr(predicted[:, qi], -losses[:, qi]).statistic
        rhos.append(0.0 if np.isnan(rho) else float(rho))
    return {**_mean_sem(rhos), "per_query": [round(r, 6) for r in rhos]}


def _mean_sem(values) -> dict:
    """Mean and standard error of the mean (0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()),
            "sem": float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0}


def beats(challenger: dict | None, default: dict | None, z: float = 2.0) -> bool:
    """Whether `challenger`'s LDS beats `default`'s on the same queries by more than `z` standard
    errors of their paired per-query difference (`lds` results; a missing one never beats).

    Which setting an evaluation uses is chosen on its tuning split's LDS, whose s.e. is about 0.04
    against differences between settings of the same size: taking the higher point estimate made
    the choice (and precision@1, which it moves) flip between runs of the same code. A setting
    other than the default has to be better by more than the noise of the comparison.
    """
    paired = paired_difference(challenger, default)
    if paired is None:
        return False
    mean, sem = paired
    return mean > z * sem if sem > 0 else mean > 0


def choose(default: str, options, lds_of: dict, name=lambda option: option) -> str:
    """The option whose LDS (`lds_of[name(option)]`) is highest among those that beat the
    default's (`beats`); the default when none does."""
    winners = [o for o in options
               if o != default and beats(lds_of.get(name(o)), lds_of.get(name(default)))]
    return max(winners, key=lambda o: lds_of[name(o)]["mean"]) if winners else default


def paired_difference(a: dict | None, b: dict | None) -> tuple[float, float] | None:
    """Mean and standard error over queries of LDS `a` less LDS `b` (`lds` results on the same
    queries); None when either lacks per-query values or they differ in length."""
    x, y = (a or {}).get("per_query"), (b or {}).get("per_query")
    if x is None or y is None or len(x) != len(y) or len(x) < 2:
        return None
    diff = _mean_sem(np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64))
    return diff["mean"], diff["sem"]


def retraining_noise(runs: np.ndarray) -> dict:
    """How far retraining noise alone caps LDS, from `runs` (subsets, seeds, queries): the answer
    losses of every seed's retrain on every subset.

    Two retrains on the same subset that differ only in seed (data order, LoRA init) disagree, so
    even the true expected loss of each subset would not correlate perfectly with the seed-averaged
    losses LDS is measured against. `seed_agreement` is the mean over queries of Spearman between
    two seeds' losses across subsets (the reliability of one retrain, averaged over seed pairs);
    `ceiling` is, per query, the square root of the Spearman-Brown reliability of the k-seed mean,
    k r / (1 + (k - 1) r): the correlation a perfect predictor of the expected loss would reach in
    expectation (classical test theory; a negative reliability counts as 0). Any method's LDS,
    additive or not, sits below it up to sampling error. Needs two seeds or more.
    """
    from itertools import combinations

    from scipy.stats import spearmanr

    runs = np.asarray(runs, dtype=np.float64)
    _, seeds, queries = runs.shape
    if seeds < 2:
        raise ValueError("retraining noise needs losses from two seeds or more")
    agreement, ceiling = [], []
    for qi in range(queries):
        pairs = [spearmanr(runs[:, a, qi], runs[:, b, qi]).statistic
                 for a, b in combinations(range(seeds), 2)]
        r = float(np.mean(np.nan_to_num(pairs, nan=0.0)))
        agreement.append(r)
        ceiling.append(float(np.sqrt(seeds * r / (1 + (seeds - 1) * r))) if r > 0 else 0.0)
    return {"seeds": seeds, "seed_agreement": _mean_sem(agreement), "ceiling": _mean_sem(ceiling)}
