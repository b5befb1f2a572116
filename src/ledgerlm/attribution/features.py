"""Compact gradient features of a LoRA adapter, per training example and per answer, from batched passes.

What a feature is. Influence methods of the TracIn / TRAK / LoGra family compare the gradient of
an answer's loss with the gradient of each training example's loss. TracIn (Pruthi et al., 2020)
uses the raw dot product; TRAK (Park et al., 2023) first projects every gradient to a few thousand
dimensions with a random matrix (Johnson-Lindenstrauss keeps inner products) and then
preconditions with the inverse of the projected gradients' covariance. Projecting a full gradient
with a dense matrix costs (parameters x k) per example; LoGra (Choe et al., 2024) makes it cheap
by using the structure of a linear layer: its weight gradient is a sum over tokens of outer
products `g_t x_t^T` (output gradient times input activation), so a Kronecker-factored projection
`P_out (sum_t g_t x_t^T) P_in^T = sum_t (P_out g_t)(P_in x_t)^T` needs only the projected
activations and output gradients, which hooks see during one batched forward and backward pass.

Here every LoRA layer contributes two linear maps, `lora_A` (r x d_in) and `lora_B` (d_out x r).
Each gets its own pair of fixed Gaussian matrices, scaled by 1/sqrt(k) so that projected inner
products are unbiased estimates of the true ones; a side whose size already fits the budget is
kept exactly (identity). The per-example feature is the concatenation of all projected blocks.
The matrices are drawn from a generator seeded by (seed, parameter name) and stored with the index,
so query features are projected with exactly the matrices the index was built with.

Why the hooks live here rather than in `factory.capture_lora_grads`: that capture forms the full
(out x in) gradient per example; projecting inside the hooks keeps only k_out + k_in numbers per
token, which is what lets a 135M model's index be built in the memory of a laptop.

Examples in a packed block never attend to each other (position ids restart), and the loss is a
sum of per-example losses, so grouping tokens by the example they belong to yields every
example's own gradient features from one backward pass — no per-example Python loop.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from math import isqrt
from typing import TYPE_CHECKING

import numpy as np

from ledgerlm.attribution.errors import AttributionError
from ledgerlm.factory import collate, lora_layers, pack_examples, token_losses, tokenize_record

if TYPE_CHECKING:
    import torch

    from ledgerlm.factory import Segment


@dataclass(frozen=True)
class MatrixProjection:
    """How one LoRA weight (rows x cols) is projected: to a k_out x k_in block of the feature."""

    name: str
    rows: int
    cols: int
    k_out: int
    k_in: int

    @property
    def dim(self) -> int:
        return self.k_out * self.k_in


class LoraProjector:
    """Fixed random projections for every LoRA weight of one adapter; `dim` numbers per example."""

    def __init__(self, matrices: list[MatrixProjection], weights: dict[str, np.ndarray]):
        self.matrices = matrices
        self.weights = weights  # "<name>|out" / "<name>|in" -> (k, size) float32; absent = identity
        self._torch: dict[tuple[str, str], torch.Tensor] = {}

    @property
    def dim(self) -> int:
        return sum(m.dim for m in self.matrices)

    @classmethod
    def for_model(cls, model, dim: int = 1024, seed: int = 0) -> LoraProjector:
        """Spread a budget of about `dim` numbers evenly over the model's LoRA weights."""
        shapes = []
        for layer in lora_layers(model):
            for part, linear in (("lora_A", layer.lora_A), ("lora_B", layer.lora_B)):
                shapes.append((f"{layer.name}.{part}.default.weight",
                               linear.out_features, linear.in_features))
        if not shapes:
            raise AttributionError(
                "the model has no LoRA layers; attribution needs a fine-tuned adapter",
                field="model",
            )
        if dim < 1:
            raise AttributionError(f"feature dim must be at least 1, not {dim}", field="dim")
        budget = max(1, dim // len(shapes))
        matrices, weights = [], {}
        for name, rows, cols in shapes:
            k_out = min(rows, max(1, isqrt(budget)))
            k_in = min(cols, max(1, budget // k_out))
            matrices.append(MatrixProjection(name, rows, cols, k_out, k_in))
            for side, k, size in (("out", k_out, rows), ("in", k_in, cols)):
                if k < size:
                    weights[f"{name}|{side}"] = _gaussian(seed, name, side, k, size)
        return cls(matrices, weights)

    def to_meta(self) -> list[dict]:
        return [vars(m).copy() for m in self.matrices]

    @classmethod
    def from_meta(cls, meta: list[dict], weights: dict[str, np.ndarray]) -> LoraProjector:
        return cls([MatrixProjection(**m) for m in meta], weights)

    def check_model(self, model) -> None:
        """Raise unless `model` has exactly the LoRA weights this projector was built for."""
        found = {}
        for layer in lora_layers(model):
            for part, linear in (("lora_A", layer.lora_A), ("lora_B", layer.lora_B)):
                found[f"{layer.name}.{part}.default.weight"] = (linear.out_features,
                                                                linear.in_features)
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


@dataclass
class FeatureCapture:
    """Projected per-example gradient blocks collected by one backward pass."""

    examples: list[int]
    blocks: dict[str, torch.Tensor]

    def features(self, projector: LoraProjector) -> np.ndarray:
        """(len(examples), projector.dim) in the projector's fixed block order."""
        import torch

        if not self.blocks:
            return np.zeros((len(self.examples), projector.dim), dtype=np.float32)
        parts = [self.blocks[m.name] if m.name in self.blocks
                 else torch.zeros(len(self.examples), m.dim) for m in projector.matrices]
        return torch.cat(parts, dim=1).cpu().numpy().astype(np.float32, copy=False)


@contextmanager
def capture_features(
    model, projector: LoraProjector, segments: list[tuple[Segment, ...]], seq_len: int
) -> Iterator[FeatureCapture]:
    """Collect projected per-example LoRA gradients of the backward pass run inside.

    `segments` are the `PackedBatch.segments` of the batch (row b holds `segments[b]`) and
    `seq_len` its width; tokens outside every segment (padding) contribute nothing.
    """
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
    capture = FeatureCapture(examples=examples, blocks={})
    by_name = {m.name: m for m in projector.matrices}
    handles = []
    with _lora_requires_grad(model):
        for layer in lora_layers(model):
            for part, linear in (("lora_A", layer.lora_A), ("lora_B", layer.lora_B)):
                matrix = by_name.get(f"{layer.name}.{part}.default.weight")
                if matrix is None:
                    raise AttributionError(
                        f"LoRA weight {layer.name}.{part} is not in the attribution index",
                        field="model",
                    )
                hook = _projecting_hook(capture, matrix, projector, slots, keep, len(examples))
                handles.append(linear.register_forward_hook(hook))
        try:
            yield capture
        finally:
            for handle in handles:
                handle.remove()


def _projecting_hook(capture, matrix: MatrixProjection, projector, slots, keep, n_examples):
    def on_forward(module, inputs, output):
        if not output.requires_grad:
            return
        x = projector.project(matrix.name, "in", inputs[0].detach().float())
        x = x.reshape(-1, matrix.k_in)[keep.to(x.device)]

        def on_grad(grad):
            import torch

            g = projector.project(matrix.name, "out", grad.detach().float())
            g = g.reshape(-1, matrix.k_out)[keep.to(g.device)]
            outer = (g.unsqueeze(2) * x.unsqueeze(1)).reshape(len(g), -1)
            block = capture.blocks.get(matrix.name)
            if block is None:
                block = capture.blocks[matrix.name] = torch.zeros(
                    n_examples, matrix.dim, dtype=torch.float32, device=g.device)
            block.index_add_(0, slots.to(g.device), outer)

        output.register_hook(on_grad)

    return on_forward


@contextmanager
def _lora_requires_grad(model):
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


def _backward_to_lora(loss, params) -> None:
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
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, np.ndarray]:
    """Projected gradient of each record's summed token loss: record index -> (dim,) float32.

    Examples are packed into blocks of `max_len` tokens; each batch of `batch_size` blocks takes one
    forward and one backward pass. Chunks of one record are summed (the gradient of their sum).
    """
    import torch

    blocks = pack_examples(examples, max_len, pad_id)
    out: dict[int, np.ndarray] = {}
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for start in range(0, len(blocks), batch_size):
        batch = collate(blocks[start:start + batch_size]).to(_device_of(model))
        width = batch.input_ids.shape[1]
        with capture_features(model, projector, batch.segments, width) as cap, torch.enable_grad():
            _backward_to_lora(token_losses(model, batch).sum(), params)
        for example, row in zip(cap.examples, cap.features(projector)):
            out[example] = out[example] + row if example in out else row
        if progress:
            progress(min(start + batch_size, len(blocks)), len(blocks))
    return out


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


def answer_feature(model, projector: LoraProjector, example) -> np.ndarray:
    """Projected gradient of the mean loss of the answer's tokens, (dim,) float32."""
    import torch

    block = pack_examples([example], len(example.input_ids), 0)
    batch = collate(block).to(_device_of(model))
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    width = batch.input_ids.shape[1]
    with capture_features(model, projector, batch.segments, width) as cap, torch.enable_grad():
        _backward_to_lora(token_losses(model, batch).mean(), params)
    return cap.features(projector)[0]


def _device_of(model):
    return next(model.parameters()).device
