"""Gradient features of the training examples, collected during the last epochs or left to a pass over the final adapter.

The index needs every trained example's projected LoRA gradient. Training already runs a forward
and a backward pass over every example each epoch, and the per-example gradients fall out of that
backward pass at the cost of the projection alone (features.py): TracIn's (Pruthi et al., 2020)
checkpoint features taken at the last epochs, instead of TRAK's (Park et al., 2023) features of
the final adapter, which need a pass of their own (about an epoch's forward and backward).

A row collected at a step is exactly the example's gradient at the adapter that step trained
(a test compares it with a separate pass over those weights), so the two sources differ only by
how far the adapter moves during the epoch. That is a lot when training has not settled: on real
text the tiny model's loss stays flat while a constant rate keeps moving the adapter, each step's
rows share a direction of their own that flips from step to step, and the last epoch's features
lose the gradient signal the final adapter's keep (benchmarks/results/attribution_real_text.md).
So a node indexes from the final adapter (`FEATURE_EPOCHS = 0`); collecting in training is kept
for callers that choose it. Examples a collecting run did not see (a run resumed inside its last
epoch, or cut by `max_steps`) are computed afterwards by `build_index` from the final adapter.

Wiring: the node hands `capture_batch` and `on_batch_end` to the training loop (factory never
imports attribution) and `finish` builds and saves the index from what was collected.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from ledgerlm.attribution.features import LoraProjector, projected_gradients
from ledgerlm.attribution.index import DEFAULT_DIM, build_index

# Where a node's index rows come from, chosen by LDS on the evaluation's tuning split against
# what each costs (README, benchmarks/results/attribution*.md): how many last training epochs'
# passes are summed (0: none, a pass over the final adapter after training), and how many last
# transformer blocks that pass's backward reaches (0: every block).
FEATURE_EPOCHS = 0
FEATURE_LAST_BLOCKS = 0


class TrainingFeatures:
    """Projected per-example gradients of the training loss over the last `last_epochs` epochs.

    `last_epochs=0` collects nothing: `finish` computes every row from the final adapter, with its
    backward cut to the last `last_blocks` blocks when that is set.
    """

    def __init__(self, epochs: int, *, last_epochs: int = 1, dim: int = DEFAULT_DIM,
                 seed: int = 0, head: tuple[int, ...] = (), last_blocks: int = 0,
                 per_token_query: bool = False):
        self.first_epoch = max(0, epochs - last_epochs)
        self.last_blocks = last_blocks
        self.per_token_query = per_token_query  # the index it builds (index.IndexConfig)
        self.dim = dim
        self.seed = seed
        self.head = tuple(head)  # the tokenizer's `template_head`, which features leave out
        self.projector: LoraProjector | None = None
        self.by_epoch: dict[int, dict[int, np.ndarray]] = {}
        self.seconds_by_epoch: dict[int, float] = {}  # spent projecting and keeping features
        self.cpu_by_epoch: dict[int, float] = {}  # the same in CPU time, which load does not inflate

    @property
    def seconds(self) -> float:
        """Time the collection added to training (projection and bookkeeping)."""
        return sum(self.seconds_by_epoch.values())

    @property
    def cpu_seconds(self) -> float:
        """CPU time the collection added to training."""
        return sum(self.cpu_by_epoch.values())

    @property
    def rows(self) -> dict[int, np.ndarray]:
        """Example index -> feature, summed over the collected epochs (TracIn's checkpoint sum)."""
        return self.last(len(self.by_epoch))

    def last(self, epochs: int) -> dict[int, np.ndarray]:
        """The features summed over the last `epochs` collected epochs."""
        out: dict[int, np.ndarray] = {}
        for epoch in sorted(self.by_epoch)[-epochs:] if epochs > 0 else []:
            for example, row in self.by_epoch[epoch].items():
                out[example] = out[example] + row if example in out else row
        return out

    def capture_batch(self, model, batch, epoch: int):
        """The context a training micro-batch's forward and backward run inside."""
        if epoch < self.first_epoch:
            return nullcontext(None)
        if self.projector is None:
            self.projector = LoraProjector.for_model(model, self.dim, self.seed, self.head)
        return projected_gradients(model, self.projector, batch)

    def restricted(self, epochs: int) -> TrainingFeatures:
        """The same collection keeping only its last `epochs` epochs (0: none, a separate pass)."""
        view = TrainingFeatures(0, dim=self.dim, seed=self.seed, head=self.head,
                                last_blocks=self.last_blocks, per_token_query=self.per_token_query)
        view.projector = self.projector
        kept = sorted(self.by_epoch)[-epochs:] if epochs else []
        view.by_epoch = {e: self.by_epoch[e] for e in kept}
        view.seconds_by_epoch = {e: self.seconds_by_epoch.get(e, 0.0) for e in kept}
        view.cpu_by_epoch = {e: self.cpu_by_epoch.get(e, 0.0) for e in kept}
        return view

    def on_batch_end(self, end) -> None:
        """Keep each example's gradient of its summed token loss (training scaled it)."""
        if end.capture is None:
            return
        started, cpu = time.perf_counter(), time.process_time()
        rows = self.by_epoch.setdefault(end.epoch, {})
        scale = 1.0 / end.token_weight
        for example, row in zip(end.capture["examples"], end.capture["features"].numpy()):
            row = row * scale
            rows[example] = rows[example] + row if example in rows else row
        spent = end.capture["seconds"] + time.perf_counter() - started
        self.cpu_by_epoch[end.epoch] = (self.cpu_by_epoch.get(end.epoch, 0.0) + end.capture["cpu_seconds"]
                                         + time.process_time() - cpu)
        self.seconds_by_epoch[end.epoch] = self.seconds_by_epoch.get(end.epoch, 0.0) + spent

    def finish(self, model_dir: Path, records: list[dict], base, training=None) -> dict:
        """Build and save the index of `model_dir` from the collected features."""
        started = time.perf_counter()
        loaded = None
        if training is not None and training.model is not None:
            from ledgerlm.factory import load_tokenizer

            loaded = (training.model, load_tokenizer(base))
        index = build_index(model_dir, records, base=base, dim=self.dim, seed=self.seed,
                            features=self, loaded=loaded, last_blocks=self.last_blocks,
                            per_token_query=self.per_token_query)
        return {"indexed_examples": len(index.examples),
                "from_training": index.config.rows_from_training,
                "seconds": round(time.perf_counter() - started, 3)}
