"""Spot-checks of reported compute: re-execute a random training step (and always the last one, which made the
delivered adapter) or a random served answer, deterministically, and compare within a tolerance."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ledgerlm.factory import BaseModel
from ledgerlm.providers.errors import ProviderError
from ledgerlm.providers.schemas import ServingSpec, TrainingSpec

# float64 steps on the same code agree bit for bit on one machine; across CPUs and GPUs the order of sums
# differs by far less than this, while any deliberate change to a loss or a weight is far more.
TOLERANCE = 1e-6


@dataclass(frozen=True)
class SpotCheck:
    passed: bool
    evidence: dict  # what was recomputed and how far the report was from it; published with the job


def _require_shape(result: dict, keys: set[str], what: str) -> None:
    """Refuse keys the job's result does not have and any non-finite number anywhere in it: JSON parsing takes NaN
    and Infinity, but the stored result would then answer as null, no longer matching its signed result hash."""
    if not isinstance(result, dict) or set(result) - keys:
        raise ProviderError(f"a {what} result holds only {', '.join(sorted(keys))}; unknown keys: "
                            f"{', '.join(sorted(set(result) - keys)) if isinstance(result, dict) else 'not an object'}",
                            field="result")
    stack: list = [result]
    while stack:
        value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise ProviderError(f"the result holds a non-finite number ({value}); report finite numbers only",
                                field="result")
        # a wider integer cannot be hashed as JSON: the check would fail after its pick, drawing again on a resend
        if isinstance(value, int) and not -2**63 <= value < 2**63:
            raise ProviderError(f"the result holds an integer outside 64 bits ({value}); report losses as numbers "
                                "and token ids as the tokenizer's", field="result")
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def check_training_result(spec: TrainingSpec, result: dict) -> None:
    """Refuse a report whose shape is wrong (a 400 the provider can fix, not a failed check)."""
    _require_shape(result, {"losses", "checkpoints"}, "training")
    losses, checkpoints = result.get("losses"), result.get("checkpoints")
    if not isinstance(losses, list) or len(losses) != spec.steps or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in losses):
        raise ProviderError(f"result.losses must list {spec.steps} finite numbers, one per step", field="result")
    if not isinstance(checkpoints, list) or len(checkpoints) != spec.steps + 1 or not all(
            isinstance(h, str) and len(h) == 64 for h in checkpoints):
        raise ProviderError(f"result.checkpoints must list {spec.steps + 1} sha256 hashes: the adapter before "
                            "step 1 and after each step", field="result")


def check_serving_result(spec: ServingSpec, result: dict) -> None:
    _require_shape(result, {"answers"}, "serving")
    answers = result.get("answers")
    if not isinstance(answers, list) or len(answers) != len(spec.prompts) or not all(
            isinstance(a, dict) and isinstance(a.get("tokens"), list)
            and set(a) <= {"tokens", "text"} and isinstance(a.get("text", ""), str)
            and all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**31 for t in a["tokens"])
            and len(a["tokens"]) <= spec.max_new_tokens for a in answers):
        raise ProviderError(f"result.answers must hold one answer (its token ids, at most {spec.max_new_tokens}, "
                            f"and optionally its text) per prompt ({len(spec.prompts)})", field="result")


def spot_check_training(base: BaseModel, spec: TrainingSpec, result: dict, load: Callable[[str], dict],
                        pick: int) -> SpotCheck:
    """Recompute the adapter's seeded start, step `pick` (1-based) and the last step from the provider's own
    checkpoints; `load(sha256)` reads a checkpoint's weights."""
    from ledgerlm.providers.training import TrainingRun, max_difference

    run = TrainingRun(base, spec)
    hashes, losses = result["checkpoints"], result["losses"]
    start = max_difference(run.state(), load(hashes[0]))
    checked = []
    for step in sorted({pick, spec.steps}):
        try:
            loss, after = run.step(load(hashes[step - 1]), step)
        except ProviderError as exc:  # a checkpoint of other weights than the job's adapter
            checked.append({"step": step, "error": exc.message})
            continue
        checked.append({"step": step, "reported_loss": losses[step - 1], "recomputed_loss": loss,
                        "loss_difference": abs(loss - losses[step - 1]),
                        "max_weight_difference": max_difference(after, load(hashes[step]))})
    passed = start <= TOLERANCE and all("error" not in c and c["loss_difference"] <= TOLERANCE
                                        and c["max_weight_difference"] <= TOLERANCE for c in checked)
    return SpotCheck(passed, {"kind": "train", "tolerance": TOLERANCE, "start_weight_difference": _finite(start),
                              "steps": [{k: _finite(v) for k, v in c.items()} for c in checked], "passed": passed})


def spot_check_serving(base: BaseModel, spec: ServingSpec, result: dict, pick: int) -> SpotCheck:
    """Regenerate answer `pick` (0-based) greedily; the tokens must match exactly."""
    from ledgerlm.providers.inference import GreedyAnswerer

    answerer = GreedyAnswerer(base, spec)
    # every answer's text, where given, must be its own tokens decoded: the requester reads the text, and one
    # checked by its tokens alone could say anything. Checked before the picked answer is regenerated: a report
    # refused after the regeneration would spend no nonce and record nothing, so its timing could be probed for the
    # pick again and again
    try:
        forged = [i for i, a in enumerate(result["answers"]) if "text" in a
                  and a["text"] != answerer.text(a["tokens"])]
    except (OverflowError, ValueError, IndexError, TypeError) as exc:
        raise ProviderError(f"result.answers holds a token id the model's tokenizer cannot decode: {exc}",
                            field="result") from exc
    expected = answerer.answer(pick)
    reported = result["answers"][pick]["tokens"]
    passed = expected == reported and not forged
    first = next((i for i, (a, b) in enumerate(zip(expected, reported)) if a != b),
                 None if len(expected) == len(reported) else min(len(expected), len(reported)))
    return SpotCheck(passed, {"kind": "serve", "prompt": pick, "reported_tokens": reported,
                              "recomputed_tokens": expected, "first_difference": first,
                              "texts_not_their_tokens": forged, "passed": passed})


def _finite(value):
    """JSON has no infinity: a checkpoint of the wrong weights reads as a difference of None."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
