"""Recompute a receipt's attribution and say where it differs: anyone can check a split bit for bit.

A receipt holds the model, the prompt, the answer and the attribution result the node paid by
(`ledgerlm attribute --json` prints exactly that). Attribution is a pure function of the model
files, the index, the prompt, the answer and the published settings, so a recomputation on any
machine and any thread count gives the same split; every difference is listed by field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ledgerlm.attribution.errors import AttributionError

COMPARED = ("index_adapter_sha256", "evidence_bps", "pool_bps", "gradient_bar", "span_min_tokens")


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
        raise AttributionError(f"cannot read receipt {path}: {exc}", field="receipt") from exc
    if not isinstance(data, dict):
        raise AttributionError(f"receipt {path} is not a JSON object", field="receipt")
    if isinstance(data.get("receipt"), dict):  # `ledgerlm receipts show --json`
        data = data["receipt"]
    request = data.get("request") if isinstance(data.get("request"), dict) else {}
    attribution = data.get("attribution") if isinstance(data.get("attribution"), dict) else data
    model = data.get("model") or data.get("model_id")
    prompt = data.get("prompt") or request.get("messages") or request.get("prompt")
    answer = data.get("answer") or request.get("completion")
    for name, value in (("model", model), ("prompt", prompt), ("answer", answer)):
        if not value:
            raise AttributionError(f"receipt {path} has no {name}; verification recomputes the "
                                   "attribution from the model, prompt and answer (a public "
                                   "receipt leaves the prompt and answer out)",
                                   field=f"receipt.{name}")
    if "evidence_bps" not in attribution or "contributions" not in attribution:
        raise AttributionError(f"receipt {path} holds no attribution result (evidence_bps, "
                               "contributions)", field="receipt.attribution")
    return AttributionReceipt(str(model), prompt, answer, attribution)


def differences(expected: dict, actual: dict) -> list[str]:
    """Every field where a recomputed attribution differs from the receipt's, as readable lines."""
    found = [f"{name}: receipt {expected.get(name)!r}, recomputed {actual.get(name)!r}"
             for name in COMPARED if expected.get(name) != actual.get(name)]
    for level, key in (("contributions", ("contribution_id", "contributor")),
                       ("contributors", ("contributor",))):
        def shares(result, level=level, key=key):
            return {tuple(c[k] for k in key): c["bps"] for c in result.get(level, [])}

        want, got = shares(expected), shares(actual)
        for who in sorted(set(want) | set(got), key=str):
            if want.get(who) != got.get(who):
                found.append(f"{level} {'/'.join(map(str, who))}: receipt {want.get(who)} bps, "
                             f"recomputed {got.get(who)} bps")
    return found


@dataclass(frozen=True)
class Verification:
    """The outcome of recomputing one receipt."""

    verified: bool
    model: str
    differences: list[str]
    recomputed: dict


def verify_receipt(receipt: AttributionReceipt,
                   recompute: Callable[[str, str | list[dict], str], dict]) -> Verification:
    """Recompute the receipt's attribution with `recompute(model, prompt, answer)` and compare."""
    recomputed = recompute(receipt.model, receipt.prompt, receipt.answer)
    found = differences(receipt.attribution, recomputed)
    return Verification(not found, receipt.model, found, recomputed)
