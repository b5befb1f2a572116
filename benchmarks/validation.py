"""Benchmark of the validation room: gate precision/recall and speed on three clean sources against the earlier gates, noisy-label detection, validator economics.

Run:  .venv/bin/python benchmarks/validation.py [--clean 3000] [--seed 7] [--minilm] [--tuning] [--no-baseline] [--no-node]

Clean sources (`validation_data`): generated template records (the source the gates were first
tuned on), docstrings of half of Python's standard-library modules and prose paragraphs of the
installed packages' READMEs (real text, never tuned on). `--tuning` adds the other half of the
standard library, the split thresholds may be chosen on; it is reported apart.

Into each source's batch go planted defects (junk, exact and near copies of the batch or of the
accepted records, personal data, injections, flipped labels, answers swapped between questions).
The same batch, with the same accepted records, goes through today's gates and through the gates
as of BASELINE_REV (extracted from git; each side timed in a fresh process, called the same way with the same
policy): per-class precision and recall, clean records rejected, records per CPU-second in all and
per gate, and how many records get different findings from the two.

The same gates are also measured end to end through a real node (`validation_data.through_node`):
signed uploads, the label field named by the Datanet's schema, copies of accepted and pending records.

Noisy-label detection compares KNN-Shapley, Data-OOB and kNN label disagreement with a random
baseline on the same labelled records, the same accepted records as reference and the same k;
each flags by its own rule (negative value, out-of-bag accuracy below one half, a disagreeing
majority), never by the true noise rate, and average precision ranks them without any threshold.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

# one thread, so records per CPU-second means one core
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from report import ResultTable, write_result  # noqa: E402  (benchmarks/ is the script's directory)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from validation_data import real_text, synthetic  # noqa: E402
from validation_data.defects import DEFECTS, plant  # noqa: E402
from validation_data.through_node import gates_through_node  # noqa: E402
from validation_data.validator_population import simulate_validators  # noqa: E402

from ledgerlm.heap import keep_freed_memory  # noqa: E402
from ledgerlm.validation.embeddings import resolve_embedder  # noqa: E402
from ledgerlm.validation.gates import Candidate, knn_label_disagreement, run_gates  # noqa: E402
from ledgerlm.validation.policy import GatePolicy, LabelNoiseRule  # noqa: E402
from ledgerlm.validation.valuation import data_oob, knn_shapley  # noqa: E402

# the gates before compiled kernels (junk counts, hashed embeddings, MinHash signatures); the
# earlier baselines were cb52371 (before batch-wide word tokens and sparse question products)
# and afb96fc (before batched checks)
BASELINE_REV = "213c1d5"
K = 10  # neighbours for every noisy-label method
REPEATS = 8  # timed runs per configuration; the fastest counts (a busy machine only slows a run down)
# fresh processes per side for the main throughput table, taken in turn: on a shared virtual machine
# one process can run a third slower than the next throughout, which no repeat inside it shows
PROCESSES = 5

# --------------------------------------------------------------------------- sources


def _synthetic(n: int, rng: random.Random) -> list[dict]:
    return [synthetic.make_clean(rng) for _ in range(n)]


SOURCES = {
    "synthetic (tuned on)": lambda n, rng: _synthetic(n, rng),
    "stdlib docstrings (reporting split)": lambda n, rng: real_text.stdlib_records("reporting"),
    "package READMEs": lambda n, rng: real_text.readme_records(),
}
TUNING = {"stdlib docstrings (tuning split)": lambda n, rng: real_text.stdlib_records("tuning")}


def to_candidate(cid: int, contributor: str, record: dict) -> Candidate:
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    h = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    return Candidate(cid, contributor, h, canonical, record, "label" if "label" in record else None)


def build_batch(records: list[dict], n_clean: int, rng: random.Random):
    """Accepted records (a fifth, at most 1,000) and a batch of the rest with planted defects."""
    records = list(records)
    rng.shuffle(records)
    n_existing = min(1000, len(records) // 5)
    existing, clean = records[:n_existing], records[n_existing : n_existing + n_clean]
    contributors = [f"0x{i:040x}" for i in range(1, 61)]
    candidates, truth = [], {}
    for cid, (cls, rec, _) in enumerate(plant(clean, existing, rng), start=1):
        candidates.append(to_candidate(cid, rng.choice(contributors), rec))
        truth[cid] = cls
    accepted = [to_candidate(-(i + 1), "0xdatanet", r) for i, r in enumerate(existing)]
    return candidates, truth, accepted


# --------------------------------------------------------------------------- gates: today vs baseline


def prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "tp": tp, "fp": fp, "fn": fn}


def score(outcome: dict[int, tuple[str, set[str]]], truth: dict[int, str]) -> dict:
    """Per-class precision/recall (a class is caught when its gate fires) and the clean rejection rate."""
    per_class = {}
    for cls in DEFECTS:
        support = sum(1 for t in truth.values() if t == cls)
        if not support:
            continue
        hit = {cid for cid, (_, gates) in outcome.items() if cls in gates}
        tp = sum(1 for cid in hit if truth[cid] == cls)
        per_class[cls] = prf(tp, len(hit) - tp, support - tp) | {"support": support}
    caught = {cid for cid, (decision, _) in outcome.items() if decision != "pass"}
    defects = {cid for cid, t in truth.items() if t != "clean"}
    overall = prf(len(caught & defects), len(caught - defects), len(defects - caught)) | {"support": len(defects)}
    n_clean = len(truth) - len(defects)
    clean_rejected = [cid for cid, (d, _) in outcome.items() if truth[cid] == "clean" and d == "reject"]
    clean_flagged = sum(1 for cid, (d, _) in outcome.items() if truth[cid] == "clean" and d == "flag")
    return {"per_class": per_class, "overall": overall, "clean": n_clean,
            "clean_rejected": len(clean_rejected), "clean_rejected_rate": len(clean_rejected) / max(n_clean, 1),
            "clean_flagged": clean_flagged, "clean_flagged_rate": clean_flagged / max(n_clean, 1),
            "clean_rejected_ids": clean_rejected}


def run_today(candidates, accepted, policy: dict | None = None, node_heap: bool = True) -> tuple[dict, float]:
    """Today's gates (every gate on by default) in their own process, exactly as the baseline runs; outcome and CPU seconds.

    A fresh process for both sides: the benchmark's own heap (every source loaded) would otherwise
    make today's run pay for garbage collections and memory the baseline's small process never sees.
    """
    return run_gates_apart(ROOT / "src", candidates, accepted, policy, node_heap)


def per_gate_policies() -> dict[str, dict]:
    """One gate on at a time, and every gate but the two embedding gates, as policy dicts."""
    gates = list(GatePolicy().to_dict()["gates"])
    out = {gate: {"gates": {g: "off" for g in gates if g != gate}} for gate in gates}
    out["every gate but label_noise and qa_consistency"] = {"gates": {"label_noise": "off", "qa_consistency": "off"}}
    return out


def per_gate_speed(candidates, accepted, base_src: Path | None) -> dict[str, dict]:
    """Records per CPU-second for each policy of `per_gate_policies`, today and (when given) at the baseline."""
    out = {}
    for name, policy in per_gate_policies().items():
        today = len(candidates) / run_today(candidates, accepted, policy)[1]
        base = len(candidates) / run_gates_apart(base_src, candidates, accepted, policy)[1] if base_src else None
        out[name] = {"records_per_cpu_s": today, "baseline_records_per_cpu_s": base}
    return out


# the pipeline's stage functions, timed where run_gates calls them (see `time_by_stage`)
_STAGES = {"junk_findings_many": "junk", "personal_data_findings_many": "personal_data",
           "injection_findings_many": "injection", "_duplicates": "exact and near duplicates",
           "knn_label_disagreement": "label_noise: nearest neighbours and votes",
           "qa_mismatches": "qa_consistency: similarities and tests"}


def remade(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates made afresh, as a node makes them from its stored rows for each gate run."""
    return [Candidate(c.contribution_id, c.contributor, c.content_hash, c.text, c.record, c.label_field)
            for c in candidates]


def time_by_stage(candidates, accepted) -> dict[str, float]:
    """CPU milliseconds per stage of one full run of today's gates (every gate on), fastest of REPEATS runs.

    Each stage function of the pipeline module is wrapped for the run; embedding time is split
    from the stage that asked for it, and 'other' is the pipeline's own work (making the
    candidates and their texts, reports).
    """
    from ledgerlm.validation.embeddings import HashedTfidfEmbedder
    from ledgerlm.validation.gates import pipeline

    spent: dict[str, float] = {}
    inside: list[str] = []

    def timed(fn, name):
        def wrapper(*args, **kwargs):
            inside.append(name)
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.process_time() - t0
                inside.pop()
                spent[name] = spent.get(name, 0.0) + elapsed
                if inside:  # the caller's own time excludes this call
                    spent[inside[-1]] = spent.get(inside[-1], 0.0) - elapsed
        return wrapper

    originals = {attr: getattr(pipeline, attr) for attr in _STAGES}
    # every hashed embedding goes through `embed_sparse` where there is one (`embed` densifies its rows)
    embed_attr = "embed_sparse" if hasattr(HashedTfidfEmbedder, "embed_sparse") else "embed"
    embed = getattr(HashedTfidfEmbedder, embed_attr)
    best: dict[str, float] | None = None
    try:
        for attr, name in _STAGES.items():
            setattr(pipeline, attr, timed(originals[attr], name))

        def embed_for(self, texts):
            owner = "qa_consistency" if inside and inside[-1].startswith("qa_") else "label_noise"
            return timed(lambda: embed(self, texts), f"{owner}: hashed TF-IDF embeddings")()

        setattr(HashedTfidfEmbedder, embed_attr, embed_for)
        for _ in range(REPEATS):
            spent.clear()
            t0 = time.process_time()
            run_gates(remade(candidates), GatePolicy(), accepted=remade(accepted))
            total = time.process_time() - t0
            run = {k: v * 1000 for k, v in spent.items()} | {
                "other (candidates and their texts, reports)": (total - sum(spent.values())) * 1000,
                "total": total * 1000}
            if best is None or run["total"] < best["total"]:
                best = run
    finally:
        for attr, fn in originals.items():
            setattr(pipeline, attr, fn)
        setattr(HashedTfidfEmbedder, embed_attr, embed)
    return best or {}


def stage_table(source: str, records: int, stages: dict[str, float]) -> ResultTable:
    t = ResultTable(f"Where the time goes: every gate on, {source}, {records:,} records, one run",
                    ["stage", "CPU ms", "ms per 1,000 records", "share"])
    total = stages["total"]
    for name, ms in sorted(((k, v) for k, v in stages.items() if k != "total"), key=lambda kv: -kv[1]):
        t.add_row(name, f"{ms:,.1f}", f"{ms / records * 1000:,.1f}", _pct(ms / total))
    t.add_row("total", f"{total:,.1f}", f"{total / records * 1000:,.1f}", "100.0%")
    return t


_GATE_RUNNER = """
import json, sys, time
data = json.load(sys.stdin)
if data["node_heap"]:
    try:  # the heap settings a node process makes when it opens (revisions before them have none)
        from ledgerlm.heap import keep_freed_memory
    except ImportError:
        pass
    else:
        keep_freed_memory()
from ledgerlm.validation.gates import Candidate, run_gates
from ledgerlm.validation.policy import GatePolicy
def cand(row):
    return Candidate(row[0], row[1], row[2], row[3], row[4], "label" if "label" in row[4] else None)
policy = GatePolicy.from_dict(data["policy"])
def gates(rows, accepted_rows):  # candidates are made per run, as a node makes them from its stored rows
    return run_gates([cand(r) for r in rows], policy, accepted=[cand(r) for r in accepted_rows])
gates(data["candidates"][:50], data["accepted"][:50])
cpu = float("inf")
for _ in range(data["repeats"]):
    c0 = time.process_time()
    reports = gates(data["candidates"], data["accepted"])
    cpu = min(cpu, time.process_time() - c0)
json.dump({"cpu": cpu, "outcome": {r.contribution_id: [r.decision, sorted(r.gates_hit())] for r in reports.values()}},
          sys.stdout)
"""


def baseline_tree(rev: str, into: Path) -> Path | None:
    """`src/` of ledgerlm at `rev`, extracted from git; None when this is not a git checkout."""
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], check=True,
                                 capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def run_gates_apart(src: Path, candidates, accepted, policy: dict | None = None,
                    node_heap: bool = True) -> tuple[dict, float]:
    """The gates of the `src` tree (today's, or the baseline revision's) in a process of their own; outcome and CPU seconds.

    `node_heap`: the process first makes the heap settings a node makes when it opens, where
    the tree has them (`ledgerlm.heap`); else it keeps glibc's defaults.
    """
    rows = lambda cs: [[c.contribution_id, c.contributor, c.content_hash, c.text, c.record] for c in cs]  # noqa: E731
    env = dict(os.environ, PYTHONPATH=str(src))
    done = subprocess.run([sys.executable, "-c", _GATE_RUNNER], env=env, check=True, capture_output=True,
                          input=json.dumps({"candidates": rows(candidates), "accepted": rows(accepted),
                                            "repeats": REPEATS, "policy": policy or {},
                                            "node_heap": node_heap}).encode())
    out = json.loads(done.stdout)
    return {int(cid): (d, set(g)) for cid, (d, g) in out["outcome"].items()}, out["cpu"]


# --------------------------------------------------------------------------- noisy-label detection


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mean precision at each true positive when ranking by score, highest first (no threshold)."""
    order = np.argsort(-scores, kind="stable")
    hits = positive[order]
    if not hits.any():
        return 0.0
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision_at[hits].mean())


def evaluate_noisy_labels(candidates, truth, accepted, embedder_name: str, seed: int) -> dict:
    """Every method gets the same labelled batch, the same accepted records and the same k."""
    train = [c for c in candidates if c.label is not None and truth[c.contribution_id] in ("clean", "label_noise")]
    reference = [c for c in accepted if c.label is not None]
    noisy = np.array([truth[c.contribution_id] == "label_noise" for c in train])
    embedder = resolve_embedder(embedder_name)
    vectors = embedder.embed([c.feature_text() for c in train + reference])
    tr, ref = vectors[: len(train)], vectors[len(train):]
    y_tr = np.array([c.label for c in train], dtype=object)
    y_all = np.array([c.label for c in train + reference], dtype=object)
    n = len(train)

    def judged(suspicion: np.ndarray, flagged: np.ndarray, seconds: float) -> dict:
        return prf(int((flagged & noisy).sum()), int((flagged & ~noisy).sum()), int((~flagged & noisy).sum())) | {
            "average_precision": average_precision(suspicion, noisy), "flagged": int(flagged.sum()),
            "seconds": seconds}

    out = {}
    rng = np.random.default_rng(seed)
    coin = rng.random(n)
    out["random (flags half)"] = judged(coin, coin < 0.5, 0.0)
    t0 = time.process_time()
    shap = knn_shapley(tr, y_tr, ref, y_all[n:], k=K)
    out["KNN-Shapley (value < 0)"] = judged(-shap, shap < 0, time.process_time() - t0)
    t0 = time.process_time()
    oob = data_oob(vectors, y_all, n_models=64, k=K, seed=seed)[:n]
    out["Data-OOB (OOB accuracy < 0.5)"] = judged(-oob, oob < 0.5, time.process_time() - t0)
    t0 = time.process_time()
    hoods = knn_label_disagreement(vectors, list(y_all), k=K, rows=range(n))
    dis = np.array([hoods[i].disagreement for i in range(n)])
    out["kNN disagreement (> 0.5)"] = judged(dis, dis > 0.5, time.process_time() - t0)
    # the label-noise gate's own rule: the similarity-weighted margin of the label the neighbours lean to
    margin_rule = LabelNoiseRule().min_margin
    margin = np.array([hoods[i].margin for i in range(n)])
    out[f"kNN similarity-weighted margin (>= {margin_rule}, the gate's rule)"] = judged(
        margin, margin >= margin_rule, time.process_time() - t0)
    return {"embedder": embedder_name, "labelled_records": n, "reference_records": len(reference), "k": K,
            "noise_rate": float(noisy.mean()) if n else 0.0, "methods": out}


# --------------------------------------------------------------------------- output


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def gate_table(source: str, today: dict, base: dict | None, rev: str) -> ResultTable:
    cols = ["class", "support", "precision", "recall", "F1"] + (["baseline P", "baseline R", "baseline F1"] if base else [])
    t = ResultTable(f"Gates on {source}: per-class precision / recall (today vs {rev})", cols)
    rows = list(today["per_class"].items()) + [("any defect", today["overall"])]
    for cls, m in rows:
        b = (base["per_class"].get(cls) if cls != "any defect" else base["overall"]) if base else None
        extra = ([f"{b['precision']:.3f}", f"{b['recall']:.3f}", f"{b['f1']:.3f}"] if b else ["-", "-", "-"]) if base else []
        t.add_row(cls, m["support"], f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", *extra)
    t.add_row("clean rejected", today["clean"], "", _pct(today["clean_rejected_rate"]), "",
              *(["", _pct(base["clean_rejected_rate"]), ""] if base else []))
    t.add_row("clean flagged", today["clean"], "", _pct(today["clean_flagged_rate"]), "",
              *(["", _pct(base["clean_flagged_rate"]), ""] if base else []))
    return t


def speed_table(rows: list[dict], rev: str) -> ResultTable:
    t = ResultTable(f"Gate throughput, every gate on, one thread (today vs {rev})",
                    ["source", "records", "records / CPU s", "glibc's default heap", "baseline records / CPU s",
                     "speed-up",
                     "F1 (any defect)", "baseline F1", "records with other findings"])
    for r in rows:
        b = r.get("baseline")
        t.add_row(r["source"], f"{r['records']:,}", f"{r['records_per_cpu_s']:,.0f}",
                  f"{r['default_heap_records_per_cpu_s']:,.0f}", f"{b['records_per_cpu_s']:,.0f}" if b else "-",
                  f"{r['records_per_cpu_s'] / b['records_per_cpu_s']:.1f}x" if b else "-",
                  f"{r['f1']:.3f}", f"{b['f1']:.3f}" if b else "-", f"{b['records_differing']:,}" if b else "-")
    return t


def per_gate_table(source: str, records: int, speeds: dict[str, dict], rev: str) -> ResultTable:
    t = ResultTable(f"Records per CPU-second by gate, {source}, {records:,} records (today vs {rev})",
                    ["gates on", "records / CPU s", "ms per 1,000 records", "baseline records / CPU s"])
    for gate, m in speeds.items():
        b = m["baseline_records_per_cpu_s"]
        t.add_row(gate, f"{m['records_per_cpu_s']:,.0f}", f"{1000 / m['records_per_cpu_s'] * 1000:,.1f}",
                  f"{b:,.0f}" if b else "-")
    return t


def node_table(rows: dict[str, dict]) -> ResultTable:
    t = ResultTable("Through a real node: signed uploads, label field named in the schema, copies of accepted and "
                    "pending records (the node's own gate run)",
                    ["source", "class", "support", "precision", "recall", "clean rejected", "clean flagged"])
    for source, res in rows.items():
        for cls, m in res["per_class"].items():
            t.add_row(source, cls, m["support"], f"{m['precision']:.3f}", f"{m['recall']:.3f}",
                      _pct(res["clean_rejected_rate"]), _pct(res["clean_flagged_rate"]))
    return t


def noisy_label_table(source: str, res: dict) -> ResultTable:
    t = ResultTable(f"Noisy-label detection on {source} ({res['embedder']} embeddings, {res['labelled_records']} "
                    f"labelled, {_pct(res['noise_rate'])} flipped, {res['reference_records']} accepted as reference, "
                    f"k={res['k']})", ["method", "flagged", "precision", "recall", "F1", "average precision", "CPU s"])
    for name, m in res["methods"].items():
        t.add_row(name, m["flagged"], f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}",
                  f"{m['average_precision']:.3f}", f"{m['seconds']:.2f}")
    return t


def simulation_table(res: dict, title: str) -> ResultTable:
    t = ResultTable(f"{title}: {res['rounds']} rounds x {res['contributions_per_round']} contributions, k={res['k']}, "
                    f"decision accuracy {_pct(res['decision_accuracy'])}, colluders' junk accepted "
                    f"{res['colluder_junk_accepted']}/{res['colluder_junk_total']}, pool conserved {res['pool_conserved']}",
                    ["population", "n", "stake share", "reward share", "earned / 1k staked", "slashed validators",
                     "slashed tokens", "reputation"])
    for pop, m in res["populations"].items():
        t.add_row(pop, m["validators"], _pct(m["stake_share"]), _pct(m["reward_share"]),
                  f"{m['earned_per_1k_staked']:.1f}", m["validators_slashed"], f"{m['slashed_tokens']:,.0f}",
                  f"{m['mean_reputation_bps'] / 100:.1f}%")
    return t


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clean", type=int, default=3000, help="clean records per source (at most)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--minilm", action="store_true", help="also detect noisy labels on all-MiniLM-L6-v2 embeddings")
    ap.add_argument("--tuning", action="store_true", help="also report the standard-library tuning split")
    ap.add_argument("--no-baseline", action="store_true", help="skip the baseline gates")
    ap.add_argument("--baseline", default=BASELINE_REV, help=f"git revision of the baseline gates (default {BASELINE_REV})")
    ap.add_argument("--no-node", action="store_true", help="skip the measurement through a real node")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/validation.json)")
    args = ap.parse_args(argv)
    rev = args.baseline

    keep_freed_memory()  # this process times stages as a node would run them
    sources = SOURCES | (TUNING if args.tuning else {})
    tables: list[ResultTable] = []
    speed_rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        base_src = None if args.no_baseline else baseline_tree(rev, Path(tmp))
        for name, load in sources.items():
            rng = random.Random(args.seed)
            candidates, truth, accepted = build_batch(load(args.clean + 1000, rng), args.clean, rng)
            base = base_outcome = None
            cpu = base_cpu = default_heap_cpu = float("inf")
            for _ in range(PROCESSES):
                outcome, seconds = run_today(candidates, accepted)
                cpu = min(cpu, seconds)
                default_heap_cpu = min(default_heap_cpu, run_today(candidates, accepted, node_heap=False)[1])
                if base_src is not None:
                    base_outcome, seconds = run_gates_apart(base_src, candidates, accepted)
                    base_cpu = min(base_cpu, seconds)
            today = score(outcome, truth)
            if base_src is not None:
                base = score(base_outcome, truth) | {"records_per_cpu_s": len(candidates) / base_cpu}
            table = gate_table(name, today, base, rev)
            table.print()
            tables.append(table)
            row = {"source": name, "records": len(candidates), "records_per_cpu_s": len(candidates) / cpu,
                   "default_heap_records_per_cpu_s": len(candidates) / default_heap_cpu,
                   "f1": today["overall"]["f1"]}
            if base:
                differing = sum(1 for cid, o in outcome.items() if base_outcome[cid] != o)
                row["baseline"] = {"records_per_cpu_s": base["records_per_cpu_s"], "f1": base["overall"]["f1"],
                                   "records_differing": differing}
            speed_rows.append(row)
            by_id = {c.contribution_id: c for c in candidates}
            examples = [by_id[cid].text[:160] for cid in today.pop("clean_rejected_ids")[:5]]
            if base:
                base.pop("clean_rejected_ids")
            noisy = [evaluate_noisy_labels(candidates, truth, accepted, "hashed", args.seed)]
            if args.minilm:
                noisy.append(evaluate_noisy_labels(candidates, truth, accepted, "minilm", args.seed))
            for res in noisy:
                t = noisy_label_table(name, res)
                t.print()
                tables.append(t)
            results[name] = {"today": today, "baseline": base, "clean_rejected_examples": examples,
                             "noisy_labels": noisy}
        speed = speed_table(speed_rows, rev)
        speed.print()
        tables.insert(0, speed)
        first = next(iter(SOURCES))
        rng = random.Random(args.seed)
        candidates, _, accepted = build_batch(SOURCES[first](args.clean + 1000, rng), args.clean, rng)
        by_gate = per_gate_speed(candidates, accepted, base_src)
        t = per_gate_table(first, len(candidates), by_gate, rev)
        t.print()
        tables.insert(1, t)
        stages = time_by_stage(candidates, accepted)
        t = stage_table(first, len(candidates), stages)
        t.print()
        tables.insert(2, t)
    node_rows = {} if args.no_node else {
        name: gates_through_node(SOURCES[name](0, random.Random(args.seed)), args.seed)
        for name in ("stdlib docstrings (reporting split)", "package READMEs")}
    if node_rows:
        t = node_table(node_rows)
        t.print()
        tables.insert(3, t)
    sims = {"commit_reveal": simulate_validators(args.seed),
            "counterfactual_votes_visible": simulate_validators(args.seed, copy_visible=True)}
    for key, title in (("commit_reveal", "Validator populations, commit-reveal"),
                       ("counterfactual_votes_visible", "Counterfactual: copycats can see votes")):
        t = simulation_table(sims[key], title)
        t.print()
        tables.append(t)
    payload = {"config": vars(args) | {"baseline_rev": rev, "policy": GatePolicy().to_dict()},
               "throughput": speed_rows, "throughput_by_gate": by_gate, "time_by_stage_ms": stages,
               "sources": results,
               "through_node": node_rows, "validator_simulation": sims,
               }
    notes = [f"baseline: the gates as of commit {rev}, same batch, same accepted records, same policy, "
             "called the same way, each side timed in a fresh process of its own; 'records with other findings' "
             "counts records whose decision or "
             "set of gates hit differs between the two",
             f"throughput: records per CPU-second of one thread (time.process_time), fastest of {REPEATS} runs "
             f"in each of {PROCESSES} fresh processes per side, taken in turn (before this run's table: 5 runs in "
             "each of 3); candidates are made inside each timed run, as a node makes them from its stored rows",
             "today's process first makes the heap settings a node makes when it opens (ledgerlm.heap: glibc keeps "
             "freed memory instead of returning it and faulting it in again on the next batch); the column glibc's "
             "default heap is today's gates without them, in processes of their own; the baseline has no such "
             "settings",
             "stdlib docstrings are split by module; thresholds may only be chosen on the tuning split",
             "where the time goes: today's pipeline stages timed inside one full run (fastest of "
             f"{REPEATS}); embedding time is counted apart from the gate that asked for it"]
    write_result("validation", payload, tables, notes=notes, json_path=Path(args.out) if args.out else None)
    return payload


if __name__ == "__main__":
    main()
