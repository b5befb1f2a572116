"""Compact gradient features of a LoRA adapter, per training example and per answer, from batched passes.

What a feature is. Influence methods of the TracIn / TRAK / LoGra family compare the gradient of
an answer's loss with the gradient of each training example's loss. TracIn (Pruthi et al., 2020)
uses the raw dot product; TRAK (Park et al., 2023) first projects every gradient to a few thousand
dimensions with a random matrix (Johnson-Lindenstrauss keeps inner products). Projecting a full
gradient with a dense matrix costs (parameters x k) per example; LoGra (Choe et al., 2024) makes
it cheap by using the structure of a linear layer: its weight gradient is a sum over tokens of
outer products `g_t x_t^T` (output gradient times input activation), so a Kronecker-factored
projection `P_out (sum_t g_t x_t^T) P_in^T = sum_t (P_out g_t)(P_in x_t)^T` needs only the
projected activations and output gradients, which hooks see during one batched backward pass.

Every LoRA layer contributes two linear maps, `lora_A` (r x d_in) and `lora_B` (d_out x r). Two
layouts:

  exact   when all LoRA weights together fit in `dim` numbers, every gradient is kept as it is
          and the blocks are concatenated: the feature *is* the per-example LoRA gradient.
  sketch  otherwise every weight is sketched into the *whole* feature: its rank side (r) is kept
          exactly and its wide side is projected by a fixed Gaussian matrix to dim // r, and the
          sketches of all weights are added. The result is one Johnson-Lindenstrauss projection
          of the whole LoRA gradient to `dim` numbers (the cross terms between weights have
          independent projections, so they vanish in expectation). Concatenating per-weight
          blocks instead leaves each of SmolLM2's 420 LoRA weights a 1 x 2 Kronecker block at
          dim 1,024 — a product of two scalar Gaussians, so heavy-tailed that the signal is lost.

The Gaussian matrices are drawn from a generator seeded by (seed, parameter name), scaled by
1/sqrt(k) so projected inner products are unbiased, and stored with the index, so query features
are projected with exactly the matrices the index was built with. Accumulation is in float64:
a feature is a sum over many tokens, and anyone recomputing a receipt must get the same numbers.

Examples in a packed block never attend to each other (position ids restart), and the loss is a
sum of per-example losses, so grouping tokens by the example they belong to yields every
example's own gradient features from one backward pass — no per-example Python loop.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ledgerlm.attribution.errors import AttributionError
from ledgerlm.factory import (
    IGNORE,
    collate,
    lora_linears,
    on_lora_backward,
    pack_examples,
    token_losses,
    tokenize_record,
)

if TYPE_CHECKING:
    import torch

    from ledgerlm.factory import Segment

EXACT, SKETCH = "exact", "sketch"


@dataclass(frozen=True)
class MatrixProjection:
    """How one LoRA weight (rows x cols) enters the feature: a k_out x k_in block at `offset`."""

    name: str
    rows: int
    cols: int
    k_out: int
    k_in: int
    offset: int = 0

    @property
    def dim(self) -> int:
        return self.k_out * self.k_in


class LoraProjector:
    """Fixed random projections for every LoRA weight of one adapter; `dim` numbers per example."""

    def __init__(self, matrices: list[MatrixProjection], weights: dict[str, np.ndarray],
                 dim: int | None = None, layout: str = EXACT):
        self.matrices = matrices
        self.weights = weights  # "<name>|out" / "<name>|in" -> (k, size) float32; absent = identity
        self.layout = layout
        self.dim = dim if dim is not None else sum(m.dim for m in matrices)
        self._torch: dict[tuple[str, str], torch.Tensor] = {}

    @classmethod
    def for_model(cls, model, dim: int = 2048, seed: int = 0) -> LoraProjector:
        """The exact layout when the adapter fits in `dim` numbers, else a `dim`-wide sketch."""
        shapes = [(name, linear.out_features, linear.in_features)
                  for name, linear in lora_linears(model)]
        if not shapes:
            raise AttributionError(
                "the model has no LoRA layers; attribution needs a fine-tuned adapter",
                field="model",
            )
        if dim < 1:
            raise AttributionError(f"feature dim must be at least 1, not {dim}", field="dim")
        if sum(rows * cols for _, rows, cols in shapes) <= dim:
            matrices, offset = [], 0
            for name, rows, cols in shapes:
                matrices.append(MatrixProjection(name, rows, cols, rows, cols, offset))
                offset += rows * cols
            return cls(matrices, {}, offset, EXACT)
        matrices, weights = [], {}
        for name, rows, cols in shapes:
            wide_in = rows <= cols  # lora_A (r x d_in): the input side is wide; lora_B the output
            rank, wide = (rows, cols) if wide_in else (cols, rows)
            k_rank = min(rank, dim)
            k_wide = max(1, dim // k_rank)
            k_out, k_in = (k_rank, k_wide) if wide_in else (k_wide, k_rank)
            matrices.append(MatrixProjection(name, rows, cols, k_out, k_in, 0))
            wide_side, rank_side = ("in", "out") if wide_in else ("out", "in")
            # The wide side is always drawn at random, even when k_wide >= its size: the sketches
            # of different weights share coordinates, and only independent random matrices make
            # their cross terms vanish.
            weights[f"{name}|{wide_side}"] = _gaussian(seed, name, wide_side, k_wide, wide)
            if k_rank < rank:
                weights[f"{name}|{rank_side}"] = _gaussian(seed, name, rank_side, k_rank, rank)
        return cls(matrices, weights, dim, SKETCH)

    def to_meta(self) -> dict:
        return {"layout": self.layout, "dim": self.dim,
                "matrices": [vars(m).copy() for m in self.matrices]}

    @classmethod
    def from_meta(cls, meta: dict, weights: dict[str, np.ndarray]) -> LoraProjector:
        return cls([MatrixProjection(**m) for m in meta["matrices"]], weights, meta["dim"],
                   meta["layout"])

    def check_model(self, model) -> None:
        """Raise unless `model` has exactly the LoRA weights this projector was built for."""
        found = {name: (linear.out_features, linear.in_features)
                 for name, linear in lora_linears(model)}
        expected = {m.name: (m.rows, m.cols) for m in self.matrices}
        if found != expected:
            raise AttributionError(
                "the model's LoRA layers differ from those the attribution index was built for; "
                "rebuild the index for this adapter",
                field="model",
            )

    def project(self, name: str, side: str, values: torch.Tensor) -> torch.Tensor:
        """values (..., size) -> (..., k); identity when that side is kept exactly."""
        key = (name, side)
        if key not in self._torch:
            import torch

            w = self.weights.get(f"{name}|{side}")
            self._torch[key] = None if w is None else torch.from_numpy(w)
        w = self._torch[key]
        if w is None:
            return values
        if w.device != values.device:
            w = self._torch[key] = w.to(values.device)
        return values @ w.T


def _gaussian(seed: int, name: str, side: str, k: int, size: int) -> np.ndarray:
    # crc32 rather than hash(): stable across processes, so a rebuild draws the same matrices.
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), 0 if side == "out" else 1])
    return (rng.standard_normal((k, size)) / np.sqrt(k)).astype(np.float32)


@contextmanager
def capture_features(
    model, projector: LoraProjector, segments: list[tuple[Segment, ...]], seq_len: int
) -> Iterator[dict]:
    """Collect projected per-example LoRA gradients of the backward pass run inside.

    `segments` are the `PackedBatch.segments` of the batch (row b holds `segments[b]`) and
    `seq_len` its width; tokens outside every segment (padding) contribute nothing. Yields a dict
    that holds, after the backward pass, "examples" (record indices) and "features"
    (len(examples), dim) float64. The model is put in eval mode (no dropout) with its LoRA
    weights trainable for the duration; `projected_gradients` leaves the model as it is, for use
    inside a training step.
    """
    with lora_gradients_enabled(model), projected_gradients(model, projector, segments,
                                                            seq_len) as capture:
        yield capture


@contextmanager
def projected_gradients(
    model, projector: LoraProjector, segments: list[tuple[Segment, ...]], seq_len: int
) -> Iterator[dict]:
    """`capture_features` without touching the model's mode: the hook a training step runs inside."""
    import torch

    examples = sorted({s.example for row in segments for s in row})
    slot_of = {example: i for i, example in enumerate(examples)}
    slots = torch.full((len(segments), seq_len), -1, dtype=torch.long)
    for b, row in enumerate(segments):
        for seg in row:
            slots[b, seg.start:seg.end] = slot_of[seg.example]
    slots = slots.flatten()
    keep = slots >= 0
    slots = slots[keep]
    # Kept tokens in row-major order: each segment is one contiguous run of one example.
    cuts = [0] + (torch.nonzero(slots[1:] != slots[:-1]).flatten() + 1).tolist() + [len(slots)]
    runs = [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    run_slots = torch.tensor([int(slots[a]) for a, _ in runs], dtype=torch.long)
    # Runs padded to one length (padding points at an extra zero token), so every weight's
    # per-run outer-product sums are one batched product instead of a Python loop over runs.
    width = max((b - a for a, b in runs), default=0)
    gather = torch.full((len(runs), width), len(slots), dtype=torch.long)
    for i, (a, b) in enumerate(runs):
        gather[i, :b - a] = torch.arange(a, b)
    features = torch.zeros(len(examples), projector.dim, dtype=torch.float64)
    by_name = {m.name: m for m in projector.matrices}

    def receive(param: str, x, grad) -> None:
        matrix = by_name.get(param)
        if matrix is None:
            raise AttributionError(f"LoRA weight {param} is not in the attribution index",
                                   field="model")
        started = time.perf_counter()
        mask, index = keep.to(x.device), gather.to(x.device)
        # Only the examples' tokens are projected; padding would only add zeros.
        x = _padded(projector.project(param, "in", x.reshape(-1, x.shape[-1])[mask].float()), index)
        g = _padded(projector.project(param, "out", grad.reshape(-1, grad.shape[-1])[mask].float()),
                    index)
        # sum_t g_t x_t^T per run: (runs, k_out, T) @ (runs, T, k_in), in float64
        parts = torch.bmm(g.transpose(1, 2), x).reshape(len(runs), -1).cpu()
        features[:, matrix.offset:matrix.offset + matrix.dim].index_add_(0, run_slots, parts)
        capture["seconds"] += time.perf_counter() - started

    capture = {"examples": examples, "features": features, "seconds": 0.0}
    with on_lora_backward(model, receive):
        yield capture


def _padded(tokens, index):
    """(T, k) token rows -> (runs, width, k) float64, zero where a run is shorter than width."""
    import torch

    rows = torch.cat([tokens, tokens.new_zeros(1, tokens.shape[1])]).double()
    return rows[index]


@contextmanager
def lora_gradients_enabled(model):
    """Let backward reach the LoRA weights of a model loaded for inference, then restore it."""
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    before = [p.requires_grad for p in params]
    was_training = model.training
    model.eval()  # no dropout: features must not depend on a random mask
    for p in params:
        p.requires_grad_(True)
    try:
        yield params
    finally:
        for p, flag in zip(params, before):
            p.requires_grad_(flag)
        model.train(was_training)


def backward_to_lora(loss, params) -> None:
    """Run backward for the hooks without accumulating `.grad` on the model's parameters."""
    import torch

    torch.autograd.grad(loss, params, allow_unused=True)


def record_examples(records: list[dict], indices: list[int], tokenizer, max_len: int):
    """The tokenized examples of the records at `indices` (long text records give several)."""
    examples = []
    for i in indices:
        examples += tokenize_record(records[i], i, tokenizer, max_len)
    return examples


def example_features(
    model,
    examples: list,
    projector: LoraProjector,
    *,
    max_len: int,
    pad_id: int,
    batch_size: int = 8,
    token_weights: dict[int, list[float]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, np.ndarray]:
    """Projected gradient of each example's token loss: example index -> (dim,) float64.

    The loss is the sum over the example's labelled tokens, or, with `token_weights` (example
    index -> one weight per labelled token), the weighted mean. Examples are packed into blocks
    of `max_len` tokens; each batch of `batch_size` blocks takes one forward and one backward
    pass. Chunks of one record are summed (the gradient of their sum).
    """
    import torch

    blocks = pack_examples(examples, max_len, pad_id)
    out: dict[int, np.ndarray] = {}
    for start in range(0, len(blocks), batch_size):
        batch = collate(blocks[start:start + batch_size]).to(_device_of(model))
        width = batch.input_ids.shape[1]
        with (capture_features(model, projector, batch.segments, width) as cap,
              torch.enable_grad()):
            losses = token_losses(model, batch)
            if token_weights is not None:
                losses = losses * _loss_weights(batch, token_weights).to(losses.device)
            backward_to_lora(losses.sum(), [p for n, p in model.named_parameters()
                                            if "lora_" in n])
        for example, row in zip(cap["examples"], cap["features"].numpy()):
            out[example] = out[example] + row if example in out else row
        if progress:
            progress(min(start + batch_size, len(blocks)), len(blocks))
    return out


def _loss_weights(batch, token_weights: dict[int, list[float]]):
    """Per-entry weights of `token_losses(model, batch)`: w_t / sum(w) of the token's example."""
    import torch

    weights = torch.zeros(batch.labels.shape, dtype=torch.float32)
    labels = batch.labels.cpu()
    for b, row in enumerate(batch.segments):
        for seg in row:
            given = token_weights[seg.example]
            total = float(sum(given)) or 1.0
            positions = [p for p in range(seg.start, seg.end) if int(labels[b, p]) != IGNORE]
            for p, w in zip(positions, given):
                weights[b, p] = w / total
    return weights[:, 1:][labels[:, 1:] != IGNORE]


def answer_example(tokenizer, prompt: str | list[dict], answer: str, max_len: int | None = None):
    """The (prompt, answer) pair tokenized exactly as training tokenizes a chat record.

    Returns the example (input ids and labels, loss only on the answer) or raises when the answer
    leaves no token to score.
    """
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = [dict(m) for m in prompt]
    if not isinstance(answer, str) or not answer.strip():
        raise AttributionError("answer must be non-empty text to be attributed", field="answer")
    record = {"messages": messages + [{"role": "assistant", "content": answer}]}
    pieces = tokenize_record(record, 0, tokenizer, max_len or 1 << 20)
    if not pieces:
        raise AttributionError("the answer has no tokens left to attribute", field="answer")
    return pieces[0]


def answer_token_ids(example) -> list[int]:
    """The scored (answer) tokens of an example built by `answer_example`."""
    return [t for t, label in zip(example.input_ids, example.labels) if label != -100]


def prompt_token_ids(example) -> list[int]:
    """The prompt's tokens (everything before the answer) of an `answer_example`."""
    first = next((i for i, label in enumerate(example.labels) if label != -100),
                 len(example.labels))
    return list(example.input_ids[:first])


def span_readings(tokenizer, prompt: str | list[dict], answer: str, example) -> list[list[int]]:
    """The answer's tokens as served, and as they read when its first word follows a space.

    Byte-level BPE tokenises a word differently at the start of a turn than after a space, and
    training text mostly has a word mid-sentence ("... born in Vellmora."), so a short answer
    ("Vellmora.") would otherwise miss its own first word in the span index.
    """
    readings = [answer_token_ids(example)]
    spaced = answer_token_ids(answer_example(tokenizer, prompt, " " + answer.lstrip()))
    if spaced != readings[0]:
        readings.append(spaced)
    return readings


def answer_feature(model, projector: LoraProjector, example,
                   weights: list[float] | None = None) -> np.ndarray:
    """Projected gradient of the (weighted) mean loss of the answer's tokens, (dim,) float64."""
    n = len(answer_token_ids(example))
    weights = list(weights) if weights is not None else [1.0] * n
    features = example_features(model, [example], projector, max_len=len(example.input_ids),
                                pad_id=0, batch_size=1, token_weights={example.index: weights})
    return features[example.index]


def _device_of(model):
    return next(model.parameters()).device
