"""Recompute a receipt's attribution and say where it differs: anyone can check a split bit for bit.

A receipt holds the model, the prompt, the answer and the attribution result the node paid by
(`ledgerlm attribute --json` prints exactly that). Attribution is a pure function of the model
files, the index, the prompt, the answer and the published settings, so a recomputation on any
CPU thread count gives the same split, and every difference is listed by field. A recomputation
on other hardware (a receipt made on a GPU node, checked on a CPU) sums float32 numbers in
another order; the rounded scores then agree except where one sat on a rounding boundary, and
such a difference, with the evidence and bps it moves, is reported as within rounding tolerance
rather than as a mismatch (`compare`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ledgerlm.attribution.calibration import SCORE_DECIMALS
from ledgerlm.attribution.errors import AttributionError
from ledgerlm.money import BPS

# Compared exactly: none of them depends on a floating-point sum.
EXACT = ("index_adapter_sha256", "gradient_bar", "span_min_tokens", "answer_tokens", "span_coverage")
SHARES = ("evidence_bps", "pool_bps")
EXACT_PER_ROW = ("record", "contribution_id", "contributor", "span", "longest_span")
# The largest difference in a (rounded) gradient score that counts as rounding: the order of
# float32 sums differs between a CPU and a GPU, so a score near a rounding boundary may land one
# unit of SCORE_DECIMALS either side of it. Chosen, not measured on a GPU host.
SCORE_TOLERANCE = 10 * 10.0**-SCORE_DECIMALS


@dataclass(frozen=True)
class AttributionReceipt:
    """What a receipt says was attributed and paid."""

    model: str
    prompt: str | list[dict]
    answer: str
    attribution: dict


def read_receipt(path: Path) -> AttributionReceipt:
    """A receipt file: `attribute --json` output, or a serving receipt (`receipts show --json`).

    A serving receipt keeps the prompt and answer in `request` (`prompt` or `messages`, and
    `completion`) only in its consumer's copy; the public copy cannot be recomputed.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise AttributionError(f"cannot read receipt {path}: {exc} (or pass a receipt id with --as its consumer's "
                               "key)", field="receipt") from exc
    return receipt_from(data, f"receipt {path}")


def receipt_from(data, label: str) -> AttributionReceipt:
    """The receipt in `data` (as `read_receipt` reads it from a file); `label` says which receipt in errors."""
    if not isinstance(data, dict):
        raise AttributionError(f"{label} is not a JSON object", field="receipt")
    if isinstance(data.get("receipt"), dict):  # `ledgerlm receipts show --json`
        data = data["receipt"]
    request = data.get("request") if isinstance(data.get("request"), dict) else {}
    attribution = data.get("attribution") if isinstance(data.get("attribution"), dict) else data
    model = data.get("model") or data.get("model_id")
    prompt = data.get("prompt") or request.get("messages") or request.get("prompt")
    answer = data.get("answer") or request.get("completion")
    for name, value in (("model", model), ("prompt", prompt), ("answer", answer)):
        if not value:
            raise AttributionError(f"{label} has no {name}; verification recomputes the "
                                   "attribution from the model, prompt and answer (a public "
                                   "receipt leaves the prompt and answer out: its consumer fetches "
                                   "their own copy with `receipts show ID --as KEY`)",
                                   field=f"receipt.{name}")
    if "evidence_bps" not in attribution or "contributions" not in attribution:
        raise AttributionError(f"{label} holds no attribution result (evidence_bps, "
                               "contributions)", field="receipt.attribution")
    return AttributionReceipt(str(model), prompt, answer, attribution)


@dataclass(frozen=True)
class Difference:
    """One field where a recomputed attribution differs from the receipt's.

    `within_rounding`: the difference follows from gradient scores that differ by at most
    `SCORE_TOLERANCE` while everything else is identical (a recomputation on other hardware), as
    opposed to a real mismatch (another model, index, answer or an edited receipt).
    """

    field: str
    receipt: object
    recomputed: object
    within_rounding: bool

    def __str__(self) -> str:
        if self.field == "rule":
            return (f"rule: the receipt was made under attribution rule {self.receipt}, this node computes rule "
                    f"{self.recomputed} (mismatch: only a node on rule {self.receipt} can recompute its split)")
        kind = "within rounding tolerance" if self.within_rounding else "mismatch"
        return f"{self.field}: receipt {self.receipt!r}, recomputed {self.recomputed!r} ({kind})"


def compare(expected: dict, actual: dict) -> list[Difference]:
    """Every field where `actual` (recomputed) differs from `expected` (the receipt's result).

    Token-level quantities (spans, coverage, bars, the adapter hash) must match exactly. Gradient
    scores may differ by up to `SCORE_TOLERANCE`; the evidence and bps that follow from them may
    then differ by at most what such scores can move them (`_bps_bound`), and only then do those
    differences count as rounding.
    """
    found = [*_malformed(expected, "receipt"), *_malformed(actual, "recomputed")]
    found += [Difference(name, expected.get(name), actual.get(name), False)
              for name in EXACT if (name in expected or name in actual)
              and expected.get(name) != actual.get(name)]
    # Another rule splits the same evidence differently: say so first, since every bps below follows from it.
    rule, recomputed_rule = expected.get("rule", 1), actual.get("rule", 1)
    if rule != recomputed_rule:
        found.insert(0, Difference("rule", rule, recomputed_rule, False))
    want = {e["row"]: e for e in expected.get("examples", [])}
    got = {e["row"]: e for e in actual.get("examples", [])}
    gap = 0.0
    for row in sorted(set(want) & set(got)):
        w, g = want[row], got[row]
        for key in EXACT_PER_ROW:
            if w.get(key) != g.get(key):
                found.append(Difference(f"examples row {row} {key}", w.get(key), g.get(key), False))
        delta = abs(float(w.get("gradient", 0.0)) - float(g.get("gradient", 0.0)))
        if delta:
            found.append(Difference(f"examples row {row} gradient", w.get("gradient"),
                                    g.get("gradient"), delta <= SCORE_TOLERANCE))
            gap = max(gap, delta)
        # the token match orders rows listed without evidence and moves no money
        moved = abs(float(w.get("match", 0.0)) - float(g.get("match", 0.0)))
        if moved:
            found.append(Difference(f"examples row {row} match", w.get("match"), g.get("match"),
                                    moved <= SCORE_TOLERANCE))
    # Rounding can explain the rest only when scores alone differ, and each by little.
    tolerable = gap > 0 and all(d.within_rounding for d in found)
    earning = {e["row"] for e in [*want.values(), *got.values()]
               if e.get("gradient_evidence", 0) > 0 or e.get("candidate", 0) > 0}
    slack = _evidence_slack(gap, float(expected.get("gradient_bar") or 0.0)) if tolerable else 0.0
    for row in sorted(set(want) ^ set(got)):
        listed = want.get(row) or got.get(row)
        # A row listed on one side only moved across the top-k cut: harmless when it earns nothing.
        harmless = tolerable and float(listed.get("combined", 0.0)) <= slack
        found.append(Difference(f"examples row {row}", want.get(row) and want[row].get("combined"),
                                got.get(row) and got[row].get("combined"), harmless))
    for row in sorted(set(want) & set(got)):
        for key in ("gradient_evidence", "candidate", "combined"):
            a, b = want[row].get(key), got[row].get(key)
            if a != b:
                close = abs(float(a or 0.0) - float(b or 0.0)) <= slack + 1e-6
                found.append(Difference(f"examples row {row} {key}", a, b, tolerable and close))
    bound = _bps_bound(slack, len(earning)) if tolerable else 0
    for name in SHARES:
        if expected.get(name) != actual.get(name):
            found.append(Difference(name, expected.get(name), actual.get(name),
                                    _close(expected.get(name), actual.get(name), bound)))
    for level, key in (("contributions", ("contribution_id", "contributor")),
                       ("contributors", ("contributor",))):
        def shares(result, level=level, key=key):
            return {tuple(c[k] for k in key): c["bps"] for c in result.get(level, [])}

        want_bps, got_bps = shares(expected), shares(actual)
        for who in sorted(set(want_bps) | set(got_bps), key=str):
            a, b = want_bps.get(who), got_bps.get(who)
            if a != b:
                found.append(Difference(f"{level} {'/'.join(map(str, who))} bps", a, b,
                                        _close(a or 0, b or 0, bound)))
    return found


def _malformed(result: dict, side: str) -> list[Difference]:
    """What no attribution can hold, whatever it recomputes to: a row, contribution or contributor listed twice (the
    comparison reads one entry per key, so a second one would pass unread), or shares that do not add up: the
    contributions' and the contributors' bps each sum to `evidence_bps`, and that plus `pool_bps` is 10,000."""
    found = []
    for level, key in (("examples", ("row",)), ("contributions", ("contribution_id", "contributor")),
                       ("contributors", ("contributor",))):
        seen: set[tuple] = set()
        for entry in result.get(level, []):
            who = tuple(entry.get(k) for k in key)
            if who in seen:
                found.append(Difference(f"{side}: {level} {'/'.join(map(str, who))} listed twice", 1, 2, False))
            seen.add(who)
    if "evidence_bps" in result:
        evidence = result.get("evidence_bps")
        for level in ("contributions", "contributors"):
            total = sum(int(c.get("bps", 0)) for c in result.get(level, []))
            if level in result and total != evidence:
                found.append(Difference(f"{side}: {level} bps sum", evidence, total, False))
        if "pool_bps" in result and evidence + result["pool_bps"] != BPS:
            found.append(Difference(f"{side}: evidence_bps + pool_bps", BPS, evidence + result["pool_bps"], False))
    # a serving receipt pays by `contributor_bps`: it must be the contributors' shares this comparison checks
    if "contributor_bps" in result:
        listed = {c.get("contributor"): int(c.get("bps", 0)) for c in result.get("contributors", [])}
        paid = {a: int(b) for a, b in (result.get("contributor_bps") or {}).items() if int(b) > 0}
        if paid != {a: b for a, b in listed.items() if b > 0}:
            found.append(Difference(f"{side}: contributor_bps (what the payouts pay)", listed, paid, False))
    return found


def _evidence_slack(score_gap: float, bar: float) -> float:
    """How far scores that differ by `score_gap` can move one row's evidence.

    A row's clearance (s - max(bar, rival)) / (1 - bar) moves by at most 2 gap / (1 - bar) (its
    score and its rival's both move); its share of the gradient evidence, c_i x max(c) / sum(c),
    by at most three times that. A span candidate's evidence has the same form under the
    candidate bar, which sits below the gradient bar. An index whose bar is 1 (its gradient not
    calibrated) pays no score-based evidence, so scores move none.
    """
    if bar >= 1.0:
        return 0.0
    return 3 * 2 * score_gap / (1.0 - bar)


def _bps_bound(slack: float, earning_rows: int) -> int:
    """The most any bps figure can move when each of `earning_rows` rows' evidence moves by `slack`
    (+2: floor and largest-remainder rounding on each side)."""
    return math.ceil(BPS * slack * max(1, earning_rows)) + 2 if slack > 0 else 0


def _close(a, b, bound: int) -> bool:
    return bound > 0 and isinstance(a, int) and isinstance(b, int) and abs(a - b) <= bound


def differences(expected: dict, actual: dict) -> list[str]:
    """`compare` as readable lines, one per differing field."""
    return [str(d) for d in compare(expected, actual)]


@dataclass(frozen=True)
class Verification:
    """The outcome of recomputing one receipt.

    `identical`: the recomputed attribution equals the receipt's in every compared field.
    `verified`: identical, or every difference is within rounding tolerance (`Difference`).
    """

    verified: bool
    identical: bool
    model: str
    differences: list[str]
    mismatches: list[str]
    recomputed: dict


def verify_receipt(receipt: AttributionReceipt,
                   recompute: Callable[[str, str | list[dict], str], dict]) -> Verification:
    """Recompute the receipt's attribution with `recompute(model, prompt, answer)` and compare."""
    recomputed = recompute(receipt.model, receipt.prompt, receipt.answer)
    found = compare(receipt.attribution, recomputed)
    mismatches = [str(d) for d in found if not d.within_rounding]
    return Verification(not mismatches, not found, receipt.model, [str(d) for d in found],
                        mismatches, recomputed)
