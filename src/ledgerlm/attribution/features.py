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
          exactly and its wide side is projected to dim // r by a count sketch (every coordinate
          added, with a random sign, into one random bucket), and the sketches of all weights are
          added. The result is one Johnson-Lindenstrauss projection of the whole LoRA gradient to
          `dim` numbers (the cross terms between weights have independent projections, so they
          vanish in expectation). Concatenating per-weight blocks instead leaves each of
          SmolLM2's 420 LoRA weights a 1 x 2 Kronecker block at dim 1,024 — a product of two
          scalar Gaussians, so heavy-tailed that the signal is lost.

Why a count sketch. A dense Gaussian matrix costs k x d multiply-adds per token and weight; at
SmolLM2's width of 8,192 that is about a forward pass more per token, and the matrices (680 MB)
had to be stored with the index. A count sketch costs d additions and stores d signed slots, and
its inner-product variance is never above the Gaussian's (it lacks the sum_i x_i^2 y_i^2 term);
on SmolLM2's exact LoRA gradients it kept the rows' cosines as well at 2,048 and better at 8,192
(benchmarks/attribution_projection_width.py). Gaussian wide sides (`wide="gaussian"`) remain
for comparison, and indexes built with them still load.

The sketches are drawn from a generator seeded by (seed, parameter name) and stored with the
index, so query features are projected with exactly the sketch the index was built with.
Accumulation is in float64: a feature is a sum over many tokens, and anyone recomputing a
receipt must get the same numbers.

Examples in a packed block never attend to each other (position ids restart), and the loss is a
sum of per-example losses, so grouping tokens by the example they belong to yields every
example's own gradient features from one backward pass — no per-example Python loop.

The last blocks only. A projector may feature only the LoRA weights of the model's last
`last_blocks` transformer blocks. Earlier blocks' LoRA weights then take no gradient, so the
backward pass stops at the first featured block and a pass over the final adapter costs about a
forward pass on a deep model; every feature, the query's included, is the gradient restricted to
those weights (the same Gaussian matrices as the whole sketch, which draws per weight name).

The chat template's head. Every chat example begins with the same tokens (SmolLM2's template
puts a 21-token system message and the user turn's header before the question). Their share of
an example's gradient, `sum_t g_t x_t^T` over those positions, lies along activations `x_t` that
are the same for every example, so it is a direction all rows have in common, not evidence about
any one of them. A feature therefore sums only the positions after the head (`template_head`,
kept with the projector). That also lets many examples run the head once (`share_prefix`), with
its keys and values shared by every row, instead of once per example: the gradient at a position
after the head does not depend on whether the head ran once or per row. Nor does it need the
head's own graph (a gradient never flows to an earlier position), so the head runs without
autograd, once for all the passes of an index build.
"""

from __future__ import annotations

import copy
import time
import weakref
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ledgerlm.attribution.casing import recased as recased_text
from ledgerlm.attribution.determinism import (
    deterministic_passes,
    is_nondeterministic_error,
    loss_on_cpu,
)
from ledgerlm.attribution.errors import AttributionError
from ledgerlm.factory import (
    IGNORE,
    chat_segments,
    collate,
    lora_linears,
    on_lora_backward,
    pack_examples,
    share_prefix,
    shared_prefix_length,
    token_losses,
    tokenize_record,
)

if TYPE_CHECKING:
    import torch

    from ledgerlm.factory import PackedBatch

EXACT, SKETCH = "exact", "sketch"
COUNT, GAUSSIAN = "count", "gaussian"
WIDE_SKETCHES = (COUNT, GAUSSIAN)
HASHED = "|hashed"  # key suffix of a side projected by a count sketch
# Numbers per feature. On SmolLM2 the projected gradients keep all of the exact LoRA gradients'
# LDS at 8,192 and 0.86 of it at 2,048 (README, attribution_projection_width); the count sketch
# makes the wide projection cost about what 2,048 did with Gaussian matrices.
DEFAULT_DIM = 8192


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
                 dim: int | None = None, layout: str = EXACT, head: tuple[int, ...] = (),
                 last_blocks: int = 0):
        self.matrices = matrices
        self.last_blocks = last_blocks  # featured blocks counted from the top; 0: every block
        self.weights = weights  # "<name>|out" / "<name>|in" -> (k, size) float32; absent = identity
        self.layout = layout
        self.dim = dim if dim is not None else sum(m.dim for m in matrices)
        self.head = tuple(head)  # template tokens a feature leaves out (module docstring)
        # per (name, side, device, dtype): a matrix, a count sketch's (sources, signs, k), or None
        self._torch: dict[tuple, object] = {}

    @classmethod
    def for_model(cls, model, dim: int = DEFAULT_DIM, seed: int = 0,
                  head: tuple[int, ...] = (), last_blocks: int = 0,
                  wide: str = COUNT) -> LoraProjector:
        """The exact layout when the adapter fits in `dim` numbers, else a `dim`-wide sketch.

        `head` is the chat template's head (`template_head(tokenizer)`); () sums every position.
        `last_blocks` > 0 features only the LoRA weights of that many last transformer blocks.
        `wide` is how a sketch projects each weight's wide side: a count sketch (the default) or
        a dense Gaussian matrix (what indexes were built with before; kept as a baseline).
        """
        if wide not in WIDE_SKETCHES:
            raise AttributionError(f"wide must be one of {', '.join(WIDE_SKETCHES)}, not {wide!r}",
                                   field="wide")
        if last_blocks < 0:
            raise AttributionError(f"last_blocks must be 0 (every block) or more, not {last_blocks}",
                                   field="last_blocks")
        shapes = [(name, linear.out_features, linear.in_features)
                  for name, linear in featured_linears(model, last_blocks)]
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
            return cls(matrices, {}, offset, EXACT, head, last_blocks)
        matrices, weights = [], {}
        for name, rows, cols in shapes:
            wide_in = rows <= cols  # lora_A (r x d_in): the input side is wide; lora_B the output
            rank, size = (rows, cols) if wide_in else (cols, rows)
            k_rank = min(rank, dim)
            k_wide = max(1, dim // k_rank)
            k_out, k_in = (k_rank, k_wide) if wide_in else (k_wide, k_rank)
            matrices.append(MatrixProjection(name, rows, cols, k_out, k_in, 0))
            wide_side, rank_side = ("in", "out") if wide_in else ("out", "in")
            # The wide side is always drawn at random, even when k_wide >= its size: the sketches
            # of different weights share coordinates, and only independent random matrices make
            # their cross terms vanish.
            if wide == COUNT:
                weights[f"{name}|{wide_side}{HASHED}"] = _count_sketch(seed, name, wide_side,
                                                                       k_wide, size)
            else:
                weights[f"{name}|{wide_side}"] = _gaussian(seed, name, wide_side, k_wide, size)
            if k_rank < rank:
                weights[f"{name}|{rank_side}"] = _gaussian(seed, name, rank_side, k_rank, rank)
        return cls(matrices, weights, dim, SKETCH, head, last_blocks)

    def to_meta(self) -> dict:
        return {"layout": self.layout, "dim": self.dim, "head": list(self.head),
                "last_blocks": self.last_blocks,
                "matrices": [vars(m).copy() for m in self.matrices]}

    @classmethod
    def from_meta(cls, meta: dict, weights: dict[str, np.ndarray]) -> LoraProjector:
        return cls([MatrixProjection(**m) for m in meta["matrices"]], weights, meta["dim"],
                   meta["layout"], tuple(meta.get("head", ())), meta.get("last_blocks", 0))

    def check_model(self, model) -> None:
        """Raise unless `model` has exactly the LoRA weights this projector was built for."""
        found = {name: (linear.out_features, linear.in_features)
                 for name, linear in featured_linears(model, self.last_blocks)}
        expected = {m.name: (m.rows, m.cols) for m in self.matrices}
        if found != expected:
            raise AttributionError(
                "the model's LoRA layers differ from those the attribution index was built for; "
                "rebuild the index for this adapter",
                field="model",
            )

    def project(self, name: str, side: str, values: torch.Tensor) -> torch.Tensor:
        """values (..., size) -> (..., k) in the values' dtype; identity when that side is kept exactly."""
        key = (name, side, values.device, values.dtype)
        if key not in self._torch:
            self._torch[key] = self._side(name, side, values.device, values.dtype)
        w = self._torch[key]
        if w is None:
            return values
        if isinstance(w, tuple):  # count sketch: add each signed coordinate into its bucket
            bucket, signs, k = w
            out = values.new_zeros(*values.shape[:-1], k)
            # one pass over the values; a gather of every slot, padding included, took 2-3 times
            # as long (index_add_ adds in coordinate order on CPU: the same sums on every run)
            return out.index_add_(-1, bucket, values * signs)
        return values @ w.T

    def _side(self, name: str, side: str, device, dtype):
        import torch

        w = self.weights.get(f"{name}|{side}")
        if w is not None:
            # The matrices are stored as float32; a float64 pass projects with them upcast (exact).
            return torch.from_numpy(w).to(device, dtype)
        hashed = self.weights.get(f"{name}|{side}{HASHED}")
        if hashed is None:
            return None
        k = self._shape(name, side)[0]
        bucket, signs = _sketch_buckets(hashed, k)
        return torch.from_numpy(bucket).to(device), torch.from_numpy(signs).to(device, dtype), k

    def _shape(self, name: str, side: str) -> tuple[int, int]:
        """(k, size) of one side's projection."""
        m = next(m for m in self.matrices if m.name == name)
        return (m.k_in, m.cols) if side == "in" else (m.k_out, m.rows)

    def dense(self, name: str, side: str) -> np.ndarray | None:
        """The (k, size) matrix a side is projected with, float64; None when kept exactly."""
        w = self.weights.get(f"{name}|{side}")
        if w is not None:
            return w.astype(np.float64)
        hashed = self.weights.get(f"{name}|{side}{HASHED}")
        if hashed is None:
            return None
        k, size = self._shape(name, side)
        out = np.zeros((k, size))
        bucket, signs = _sketch_buckets(hashed, k)
        out[bucket, np.arange(size)] = signs
        return out


def featured_linears(model, last_blocks: int = 0) -> list[tuple[str, object]]:
    """`lora_linears(model)` of the last `last_blocks` transformer blocks (0: all of them).

    A weight's block is the first number in its module path (`...layers.<n>.self_attn...`);
    weights outside any numbered block are kept.
    """
    linears = lora_linears(model)
    if not last_blocks:
        return linears
    blocks = {name: block_number(name) for name, _ in linears}
    kept = set(sorted({b for b in blocks.values() if b is not None})[-last_blocks:])
    return [(name, linear) for name, linear in linears
            if blocks[name] is None or blocks[name] in kept]


def block_number(name: str) -> int | None:
    """The transformer block a parameter belongs to: the first number in its dotted path."""
    return next((int(part) for part in name.split(".") if part.isdigit()), None)


def _count_sketch(seed: int, name: str, side: str, k: int, size: int) -> np.ndarray:
    """A count sketch of `size` coordinates into `k` buckets, as (m * k,) signed slots.

    Coordinate i lands in one random slot of m = ceil(size / k) rows of k buckets, with a random
    sign; slot j holds +-(i + 1), or 0 when empty, and its bucket is j mod k. Projecting adds each
    bucket's signed coordinates: size additions per token instead of the k x size a Gaussian
    matrix costs, and an inner product's variance is at most the Gaussian's (Charikar et al.,
    2002; Weinberger et al., 2009: it lacks the Gaussian's sum_i x_i^2 y_i^2 term).
    """
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), 0 if side == "out" else 1, 2])
    rows = -(-size // k)
    slots = np.zeros(rows * k, dtype=np.int32)
    signs = rng.integers(0, 2, size, dtype=np.int32) * 2 - 1
    slots[rng.permutation(rows * k)[:size]] = signs * np.arange(1, size + 1, dtype=np.int32)
    return slots


def _sketch_buckets(slots: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each coordinate's bucket and sign in a `_count_sketch` of `k` buckets (int64, per coordinate)."""
    slot = np.flatnonzero(slots)
    coordinate = np.abs(slots[slot]).astype(np.int64) - 1  # every coordinate has exactly one slot
    bucket, signs = np.empty(len(slot), dtype=np.int64), np.empty(len(slot), dtype=np.int64)
    bucket[coordinate], signs[coordinate] = slot % k, np.sign(slots[slot])
    return bucket, signs


def _gaussian(seed: int, name: str, side: str, k: int, size: int) -> np.ndarray:
    # crc32 rather than hash(): stable across processes, so a rebuild draws the same matrices.
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), 0 if side == "out" else 1])
    draws = rng.standard_normal((k, size))
    return np.divide(draws, np.sqrt(k), out=draws).astype(np.float32)  # in place: one array fewer


@contextmanager
def capture_features(model, projector: LoraProjector, batch: PackedBatch,
                     precise: bool = True) -> Iterator[dict]:
    """Collect projected per-example LoRA gradients of the backward pass run inside.

    `batch` is the batch the forward pass runs on (row b holds `batch.segments[b]`; a shared
    prefix runs once in a pass of its own); tokens outside every segment (padding) and those of
    the projector's template head contribute nothing. Yields a dict that holds, after the
    backward pass, "examples" (record indices) and "features" (len(examples), dim) float64. The
    model is put in eval mode (no dropout) with its LoRA weights trainable for the duration;
    `projected_gradients` leaves the model as it is, for use inside a training step. Only the
    projector's weights take gradients, so a last-blocks projector's backward stops early.
    """
    names = {m.name for m in projector.matrices}
    with (lora_gradients_enabled(model, names),
          projected_gradients(model, projector, batch, precise) as capture):
        yield capture


def feature_slots(batch: PackedBatch, head: tuple[int, ...]):
    """(rows, width) long tensor: the slot of the example each token's gradient counts for, -1
    for padding and for the template head; and the examples in slot order."""
    import torch

    segments = batch.segments
    examples = sorted({s.example for row in segments for s in row})
    slot_of = {example: i for i, example in enumerate(examples)}
    rows, width = batch.input_ids.shape
    slots = torch.full((rows, width), -1, dtype=torch.long)
    shared = [] if batch.prefix_ids is None else batch.prefix_ids.tolist()
    ids = batch.input_ids.tolist()
    for b, row in enumerate(segments):
        for seg in row:
            skip = max(0, head_length(shared + ids[b][seg.start:seg.end], head) - len(shared))
            slots[b, seg.start + skip:seg.end] = slot_of[seg.example]
    return slots, examples


def head_length(ids: list[int], head: tuple[int, ...]) -> int:
    """How many leading tokens of `ids` are the template head."""
    n = 0
    for a, b in zip(ids, head):
        if a != b:
            break
        n += 1
    return n


@contextmanager
def projected_gradients(model, projector: LoraProjector, batch: PackedBatch,
                        precise: bool = True) -> Iterator[dict]:
    """`capture_features` without touching the model's mode: the hook a training step runs inside.

    Each weight's per-example product runs in float64 when `precise` (an answer's pass, which
    anyone must be able to recompute and rank alike), else in the model's working precision
    (an index build's rows and null answers: about half the time, scores within 1e-6)."""
    import torch

    slots, examples = feature_slots(batch, projector.head)
    rows, seq_len = slots.shape
    positions, valid, run_slots = _runs(slots.flatten())
    runs, width = positions.shape
    whole_rows = (runs, width) == (rows, seq_len) and bool(
        (positions[:, 0] == torch.arange(rows) * seq_len).all())
    features = torch.zeros(len(examples), projector.dim, dtype=torch.float64)
    by_name = {m.name: m for m in projector.matrices}
    moved: dict = {}

    def receive(param: str, x, grad) -> None:
        matrix = by_name.get(param)
        if matrix is None and projector.last_blocks:
            return  # a block below the featured ones (reached only while the model trains)
        if matrix is None:
            raise AttributionError(f"LoRA weight {param} is not in the attribution index",
                                   field="model")
        if tuple(x.shape[:2]) != (rows, seq_len) or not runs:
            # The shared prefix's own pass (one row, run before the batch's rows; a prefix is
            # only shared by two rows or more): template head, which no feature counts.
            return
        started, cpu = time.perf_counter(), time.process_time()
        # products in float64 when precise, else in the values' working precision
        dtype = torch.float64 if precise or x.dtype == torch.float64 else torch.float32
        if (x.device, dtype) not in moved:
            moved[x.device, dtype] = (None if whole_rows else positions.flatten().to(x.device),
                                      valid.to(x.device, dtype)[:, :, None])
        at, keep = moved[x.device, dtype]
        # Only the examples' tokens are gathered and projected, a row per run (padding included,
        # pointing at the run's first token); the zero weight on padding's output gradient
        # keeps it out of every sum. When every row is one run from its first token (the rows
        # after a shared head), the rows are the runs and need no gathering: their padding is
        # weighted zero just the same. A half-precision model's values are projected in float32,
        # a float64 model's (attribution's) in float64.
        xs, gs = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
        if at is not None:
            xs, gs = xs.index_select(0, at), gs.index_select(0, at)
        xs = projector.project(param, "in", _working(xs)).view(runs, width, -1).to(dtype)
        gs = torch.mul(projector.project(param, "out", _working(gs)).view(runs, width, -1).to(dtype),
                       keep)
        # sum_t g_t x_t^T per run: (runs, k_out, T) @ (runs, T, k_in); summed over weights in
        # float64 either way
        parts = torch.bmm(gs.transpose(1, 2), xs).reshape(runs, -1).cpu().double()
        features[:, matrix.offset:matrix.offset + matrix.dim].index_add_(0, run_slots, parts)
        capture["seconds"] += time.perf_counter() - started
        capture["cpu_seconds"] += time.process_time() - cpu

    capture = {"examples": examples, "features": features, "seconds": 0.0, "cpu_seconds": 0.0}
    with on_lora_backward(model, receive):
        yield capture


def _working(values):
    """`values` in float32, or in float64 when they already are."""
    import torch

    return values if values.dtype == torch.float64 else values.float()


def _runs(slots):
    """Runs of consecutive counted tokens of one example, from the flat slot of every token.

    Returns (runs, width) flat token positions (a run shorter than `width` repeats its first
    token), the (runs, width) mask of real entries, and each run's slot.
    """
    import torch

    kept = torch.nonzero(slots >= 0).flatten()
    owner = slots[kept]
    first = torch.ones(len(kept), dtype=torch.bool)
    first[1:] = owner[1:] != owner[:-1]
    starts = torch.nonzero(first).flatten()
    lengths = torch.diff(starts, append=torch.tensor([len(kept)]))
    width = int(lengths.max()) if len(lengths) else 0
    offsets = torch.arange(width)
    valid = offsets[None] < lengths[:, None]
    index = torch.where(valid, starts[:, None] + offsets[None], starts[:, None])
    return kept[index], valid, owner[starts]


@contextmanager
def lora_gradients_enabled(model, names: set[str] | None = None):
    """Let backward reach the LoRA weights of a model loaded for inference, then restore it.

    With `names`, only those LoRA weights take gradients and the others none, so backward stops
    at the first of them. Yields the weights that take gradients.
    """
    params = [(n, p) for n, p in model.named_parameters() if "lora_" in n]
    before = [p.requires_grad for _, p in params]
    was_training = model.training
    model.eval()  # no dropout: features must not depend on a random mask
    for n, p in params:
        p.requires_grad_(names is None or n in names)
    try:
        yield [p for _, p in params if p.requires_grad]
    finally:
        for (_, p), flag in zip(params, before):
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
    deterministic: bool = False,
    heads: dict | None = None,
) -> dict[int, np.ndarray]:
    """Projected gradient of each example's token loss: example index -> (dim,) float64.

    The loss is the sum over the example's labelled tokens, or, with `token_weights` (example
    index -> one weight per labelled token), the weighted mean. Each pass holds about
    `batch_size` x `max_len` tokens: examples that begin with the projector's template head run
    it once per pass (`feature_batches`), the rest are packed into blocks of `max_len` tokens.
    Chunks of one record are summed (the gradient of their sum). With `deterministic` (an
    answer's pass, which anyone must be able to recompute) a CUDA pass runs under
    `deterministic_passes` with its losses on CPU (determinism.py) and its per-weight products in
    float64; an index build does not pay for that: the index is published as it was built, not
    recomputed. A shared head runs without
    autograd (no feature counts it) and once for all passes: `heads` keeps its keys and values
    for later calls on the same weights (an index build passes one dict to its rows' pass and to
    calibration's).
    """
    import torch

    batches = feature_batches(examples, projector.head, max_len, pad_id, batch_size)
    heads = {} if heads is None else heads
    out: dict[int, np.ndarray] = {}
    device = _device_of(model)
    for done, batch in enumerate(batches, 1):
        batch = batch.to(device)
        with (deterministic_passes(device) if deterministic else nullcontext(),
              capture_features(model, projector, batch, precise=deterministic) as cap,
              torch.enable_grad()):
            params = [p for n, p in model.named_parameters() if "lora_" in n and p.requires_grad]
            losses = token_losses(model, batch, loss_on_cpu=deterministic and loss_on_cpu(device),
                                  frozen_prefixes=heads)
            if token_weights is not None:
                losses = losses * _loss_weights(batch, token_weights).to(losses.device)
            backward_to_lora(losses.sum(), params)
        for example, row in zip(cap["examples"], cap["features"].numpy()):
            out[example] = out[example] + row if example in out else row
        if progress:
            progress(done, len(batches))
    return out


def feature_batches(examples: list, head: tuple[int, ...], max_len: int, pad_id: int,
                    batch_size: int) -> list[PackedBatch]:
    """The passes `example_features` runs: about `batch_size` x `max_len` tokens each.

    Examples that begin with the whole template head go, shortest first, into passes that run
    the head once and one row per example after it (`share_prefix`); sorting by length keeps the
    rows' padding small. Which pass an example lands in changes no feature: features leave the
    head out, and examples in a pass never see each other.
    """
    headed = [e for e in examples
              if len(head) > 0 and head_length(e.input_ids, head) == len(head)
              and len(e.input_ids) > len(head)]
    taken = {id(e) for e in headed}
    rest = [e for e in examples if id(e) not in taken]
    blocks = pack_examples(rest, max_len, pad_id)
    batches = [collate(blocks[i:i + batch_size]) for i in range(0, len(blocks), batch_size)]
    budget = batch_size * max_len
    group: list = []
    for example in sorted(headed, key=lambda e: (len(e.input_ids), e.index)):
        if group and (len(group) + 1) * (len(example.input_ids) - len(head)) > budget:
            batches.append(_shared_batch(group, head, pad_id))
            group = []
        group.append(example)
    if group:
        batches.append(_shared_batch(group, head, pad_id))
    return batches


def _shared_batch(group: list, head: tuple[int, ...], pad_id: int) -> PackedBatch:
    prefix = min(shared_prefix_length(group), len(head)) if len(group) > 1 else 0
    if not prefix:
        return collate(pack_examples(group, max(len(e.input_ids) for e in group), pad_id))
    return share_prefix(group, prefix, pad_id)


def template_head(tokenizer) -> tuple[int, ...]:
    """The tokens the tokenizer's chat template puts before every conversation's first words.

    Read off two conversations that differ from their first character on, so it is whatever the
    template writes first (a default system message, the user turn's header) and nothing else.
    """
    one, two = (tokenize_record({"messages": [{"role": "user", "content": text},
                                              {"role": "assistant", "content": "ok"}]},
                                0, tokenizer, 1 << 20)
                for text in ("1 2 3", "Zebras?"))
    ids = one[0].input_ids if one else []
    return tuple(ids[:head_length(ids, tuple(two[0].input_ids))]) if one and two else ()


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
    example = pieces[0]
    # Training labels every assistant turn of a record; here only the answer is the model's. An assistant
    # turn of the prompt was written by the caller: scored as answer it would pay for the caller's text
    # (and let one who may not read a private Datanet test a guessed record through it).
    segments = chat_segments(record["messages"], tokenizer)
    context = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text, _ in segments[:-1])
    labels = [IGNORE] * min(context, len(example.labels)) + list(example.labels[context:])
    if all(label == IGNORE for label in labels):
        raise AttributionError("the answer has no tokens left to attribute", field="answer")
    return replace(example, labels=labels)


def answer_token_ids(example) -> list[int]:
    """The scored (answer) tokens of an example built by `answer_example`."""
    return [t for t, label in zip(example.input_ids, example.labels) if label != -100]


def answer_token_logprobs(model, example) -> np.ndarray:
    """(answer tokens,) float64: the log-probability `model` gives each scored token of an
    `answer_example`, after the tokens before it (what training's loss reads)."""
    import torch

    ids = torch.tensor([example.input_ids], device=_device_of(model))
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1).cpu()
    return np.array([float(logp[p - 1, example.input_ids[p]])
                     for p, label in enumerate(example.labels) if label != -100])


def prompt_token_ids(example) -> list[int]:
    """The prompt's tokens (everything before the answer) of an `answer_example`."""
    first = next((i for i, label in enumerate(example.labels) if label != -100),
                 len(example.labels))
    return list(example.input_ids[:first])


def span_readings(tokenizer, prompt: str | list[dict], answer: str, example,
                  forms: dict[str, list[str]] | None = None) -> list[list[int]]:
    """The answer's tokens as served, and as they read when its first word follows a space; with
    the index's word `forms`, also with its words in the case the Datanet writes them (casing.py).

    Byte-level BPE tokenises a word differently at the start of a turn than after a space, and
    training text mostly has a word mid-sentence ("... born in Vellmora."), so a short answer
    ("Vellmora.") would otherwise miss its own first word in the span index.
    """
    readings = [answer_token_ids(example)]
    texts = [" " + answer.lstrip()]
    recased = recased_text(answer, forms)
    if recased is not None:
        texts += [recased, " " + recased.lstrip()]
    for text in texts:
        ids = answer_token_ids(answer_example(tokenizer, prompt, text))
        if ids not in readings:
            readings.append(ids)
    return readings


def answer_feature(model, projector: LoraProjector, example,
                   weights: list[float] | None = None, *, per_token: bool = False) -> np.ndarray:
    """Projected gradient of the (weighted) mean loss of the answer's tokens, (dim,) float64;
    with `per_token`, the weighted mean of each answer token's unit gradient instead
    (`token_mean_features`).

    When the model is on CUDA and one of its operations has no deterministic CUDA kernel, the
    pass runs on a CPU copy of the model instead (kept for the next answer): a feature that
    varied from run to run could not be recomputed from a receipt.
    """
    n = len(answer_token_ids(example))
    weights = list(weights) if weights is not None else [1.0] * n

    def feature(on):
        if per_token:
            return token_mean_features(on, [example], projector, {example.index: weights},
                                       max_len=len(example.input_ids), pad_id=0,
                                       deterministic=True)[example.index]
        return example_features(on, [example], projector, max_len=len(example.input_ids),
                                pad_id=0, batch_size=1, token_weights={example.index: weights},
                                deterministic=True)[example.index]

    return _reproducibly(feature, model)


def _reproducibly(feature: Callable, model):
    """`feature(model)`, or `feature` of the model's CPU copy when a CUDA operation it runs has no
    deterministic kernel."""
    try:
        return feature(model)
    except RuntimeError as exc:
        if _device_of(model).type == "cpu" or not is_nondeterministic_error(exc):
            raise
        return feature(_cpu_copy(model))


def token_features(model, examples: list, projector: LoraProjector, *, max_len: int,
                   pad_id: int, batch_size: int = 8, deterministic: bool = False,
                   heads: dict | None = None, limit: int | None = None) -> dict[int, np.ndarray]:
    """Example index -> (answer tokens, dim) float64: the projected gradient of each answer
    token's loss alone (of its first `limit` answer tokens, when given).

    Each example runs once per token, with only that token labelled and cut after it, in passes
    of about `batch_size` copies (`example_features`).
    """
    copies, owner = [], []
    for example in examples:
        positions = [p for p, label in enumerate(example.labels) if label != IGNORE]
        for pos in positions[:limit]:
            # a causal model's loss at `pos` reads no later token: the copy ends there
            labels = [label if p == pos else IGNORE for p, label in enumerate(example.labels[:pos + 1])]
            copies.append(replace(example, index=len(copies), input_ids=example.input_ids[:pos + 1],
                                  labels=labels))
            owner.append(example.index)
    found = example_features(model, copies, projector, max_len=max_len, pad_id=pad_id,
                             batch_size=batch_size, deterministic=deterministic, heads=heads)
    rows: dict[int, list[np.ndarray]] = {}
    for j, example in enumerate(owner):
        rows.setdefault(example, []).append(np.asarray(found[j], dtype=np.float64))
    return {example: np.stack(found_rows) for example, found_rows in rows.items()}


def unit_rows(rows: np.ndarray) -> np.ndarray:
    """Each row (along the last axis) divided by its norm (a zero row stays zero)."""
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def token_mean_features(model, examples: list, projector: LoraProjector,
                        token_weights: dict[int, list[float]], *, max_len: int, pad_id: int,
                        batch_size: int = 8, deterministic: bool = False,
                        heads: dict | None = None) -> dict[int, np.ndarray]:
    """Example index -> the weighted mean of its answer tokens' unit projected gradients.

    The gradient of an answer's mean loss is dominated by its tokens of largest loss gradient
    (the ones the model is least sure of); normalising each token's gradient first lets every
    token count as its weight says. Cosine against a training row then equals the weighted
    mean of the tokens' own cosines with it, the per-token scoring of Kronfluence and of Grosse
    et al. (2023). `token_features` gives each token's gradient.
    """
    found = token_features(model, examples, projector, max_len=max_len, pad_id=pad_id,
                           batch_size=batch_size, deterministic=deterministic, heads=heads)
    out: dict[int, np.ndarray] = {}
    for example, rows in found.items():
        total = np.zeros(rows.shape[1], dtype=np.float64)
        for weight, unit in zip(token_weights[example], unit_rows(rows)):
            total += weight * unit  # token by token: the same sum on any thread count
        out[example] = total / (float(sum(token_weights[example])) or 1.0)
    return out


def answer_token_features(model, projector: LoraProjector, example, limit: int) -> np.ndarray:
    """(tokens, dim) float64: the projected gradient of each of the answer's first `limit`
    tokens' loss alone, computed as deterministically as `answer_feature` (the same CPU copy
    when a CUDA operation has no deterministic kernel)."""
    def feature(on):
        return token_features(on, [example], projector, max_len=len(example.input_ids),
                              pad_id=0, deterministic=True, limit=limit)[example.index]

    return _reproducibly(feature, model)


_cpu_copies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cpu_copy(model):
    """A copy of `model` on CPU, made once per model."""
    if model not in _cpu_copies:
        _cpu_copies[model] = copy.deepcopy(model).to("cpu")
    return _cpu_copies[model]


def _device_of(model):
    return next(model.parameters()).device
