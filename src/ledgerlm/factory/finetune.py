"""One fine-tuning job end to end: train, compare with the base on held-out and trained records, record lineage.

The comparison on a sample of the trained records answers "did it learn the data?" (a Datanet of
facts has nothing to generalise to on held-out facts); the held-out one answers "does it
generalise?". Both score the same way (`evaluate.compare_before_after`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ledgerlm.factory.basemodels import BaseModel
from ledgerlm.factory.evaluate import EvalReport, compare_before_after, loss_curve_png
from ledgerlm.factory.lineage import ModelCard, make_card, write_lineage
from ledgerlm.factory.train import BatchEnd, TrainConfig, TrainProgress, TrainResult, train

LOSS_CURVE_FILE = "loss_curve.png"
TRAIN_SAMPLE = 32


@dataclass
class FineTuneResult:
    """A finished (or stopped) job; `card` and the reports are None when it was stopped."""

    model_dir: Path
    training: TrainResult
    evaluation: EvalReport | None
    card: ModelCard | None
    loss_curve: Path | None
    trained_sample: EvalReport | None = None


def fine_tune(
    base: BaseModel,
    records: list[dict],
    config: TrainConfig,
    out_dir: Path,
    *,
    model_id: str,
    datanet_roots: list[str] = (),
    progress: Callable[[TrainProgress], None] | None = None,
    resume: bool = False,
    should_stop: Callable[[], bool] | None = None,
    on_batch_end: Callable[[BatchEnd], None] | None = None,
    capture_batch: Callable | None = None,
    generate: bool = True,
    max_generate: int | None = 64,
    device: str | None = None,
    processes: int = 1,
) -> FineTuneResult:
    """Train an adapter, evaluate it before/after on the held-out split and write lineage.json.

    With `processes` > 1 the training runs data-parallel under torchrun (`distributed.launch`); the
    per-example gradient hooks run in one process only, so they are not passed on."""
    out_dir = Path(out_dir)
    if processes > 1:
        from ledgerlm.factory.distributed import launch

        result = launch(base, records, config, out_dir, processes=processes, progress=progress, resume=resume,
                        should_stop=should_stop, device=device)
    else:
        result = train(base, records, config, out_dir, progress=progress, resume=resume,
                       should_stop=should_stop, on_batch_end=on_batch_end, capture_batch=capture_batch,
                       device=device)
    if result.stopped:
        return FineTuneResult(out_dir, result, None, None, None)
    curve = loss_curve_png(result.history, out_dir / LOSS_CURVE_FILE, title=f"{model_id}: loss")
    report = None
    if result.eval_indices:
        report = compare_before_after(base, out_dir, records, result.eval_indices,
                                      result.config.max_len, generate=generate,
                                      max_generate=max_generate, model=result.model)
    sample = result.train_indices[::max(1, len(result.train_indices) // TRAIN_SAMPLE)][:TRAIN_SAMPLE]
    seen = compare_before_after(base, out_dir, records, sample, result.config.max_len,
                                generate=generate, max_generate=None, model=result.model)
    metrics = {
        "train": {"steps": result.steps, "final_loss": result.final_loss,
                  "tokens_seen": result.tokens_seen, "tokens_per_s": result.tokens_per_s},
        "trained_sample": seen.to_dict(),
        **({"eval": report.to_dict()} if report else {}),
    }
    card = make_card(model_id, base, out_dir, result.config.to_dict(), result.data_sha256,
                     list(datanet_roots), metrics)
    write_lineage(out_dir, card)
    return FineTuneResult(out_dir, result, report, card, curve, seen)
