"""Per-example gradients of the LoRA weights from one batched backward pass (the attribution hook).

A LoRA layer adds `lora_B(lora_A(dropout(x))) * scaling` to a frozen projection. Both `lora_A`
and `lora_B` are plain linear maps, so the gradient of a loss with respect to either weight is a
sum over tokens of outer products, (output gradient) x (input activation):

    dL/dW = sum_t  g_t  x_t^T

When examples in a packed batch do not attend to each other and the loss is a sum of per-example
losses, grouping that sum by the example each token belongs to yields every example's own gradient
from a single forward and backward pass. This is the observation LoGra builds on (Choe et al.,
"What is Your Data Worth to GPT?", 2024): keep the activations and output gradients, project them
if wanted, and form outer products only per example.

Use, with any scalar built from `example_losses` or `token_losses`:

    with capture_lora_grads(model, batch.segments) as capture:
        examples, losses = example_losses(model, batch)
        losses.sum().backward()
    capture.grads["...q_proj.lora_A.default.weight"]   # (len(capture.examples), out, in)

Pass `segments=None` to keep the raw per-token (input, output-gradient) pairs instead, e.g. to
project them before forming outer products. `train(..., on_batch_end=...)` opens the same capture
around each training micro-batch, so features can be collected during training without a second
training loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ledgerlm.factory.dataset import Segment

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LoraLayer:
    """The two trainable linear maps of one adapted projection and the adapter's scaling."""

    name: str
    lora_A: object
    lora_B: object
    scaling: float


@dataclass
class LoraGradCapture:
    """What one capture collected, keyed by the LoRA weight's parameter name.

    With segments: `grads[param] ` is (len(examples), out, in), row i belonging to record
    `examples[i]`. Without: `pairs[param]` lists the (input, output-gradient) tensors of each
    call, shaped (batch, seq, in) and (batch, seq, out).
    """

    examples: list[int]
    grads: dict[str, torch.Tensor] = field(default_factory=dict)
    pairs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict)

    def flat(self) -> torch.Tensor:
        """Every example's gradient over all LoRA weights as one row: (len(examples), n_params)."""
        import torch

        return torch.cat([g.flatten(1) for _, g in sorted(self.grads.items())], dim=1)


def active_adapter(model) -> str:
    """The name of the adapter a PEFT model is running ("default" unless the caller named one)."""
    name = getattr(model, "active_adapter", "default")
    return name[0] if isinstance(name, (list, tuple)) else str(name)


def lora_layers(model, adapter: str | None = None) -> list[LoraLayer]:
    """Every LoRA-adapted projection of a PEFT model, in module order (the active adapter's)."""
    adapter = adapter or active_adapter(model)
    layers = []
    for name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if lora_a is None or not hasattr(lora_a, "keys") or adapter not in lora_a:
            continue
        layers.append(
            LoraLayer(name, lora_a[adapter], module.lora_B[adapter], module.scaling[adapter])
        )
    return layers


def lora_linears(model, adapter: str | None = None) -> list[tuple[str, object]]:
    """(parameter name, linear map) of every lora_A and lora_B weight, in module order."""
    adapter = adapter or active_adapter(model)
    return [(f"{layer.name}.{part}.{adapter}.weight", linear)
            for layer in lora_layers(model, adapter)
            for part, linear in (("lora_A", layer.lora_A), ("lora_B", layer.lora_B))]


@contextmanager
def on_lora_backward(
    model, receive: Callable[[str, torch.Tensor, torch.Tensor], None], adapter: str | None = None
) -> Iterator[list[str]]:
    """Call `receive(param, x, grad)` for every LoRA linear map the backward run inside reaches.

    `x` is the map's input (batch, seq, in) and `grad` the loss gradient at its output
    (batch, seq, out), both detached: their outer products summed over tokens are the weight's
    gradient. Yields the parameter names hooked. This is the one place that walks the LoRA maps;
    per-example gradients (`capture_lora_grads`) and attribution's projected features both build
    on it.
    """
    handles, names = [], []
    for param, linear in lora_linears(model, adapter):
        names.append(param)
        handles.append(linear.register_forward_hook(_forward_hook(param, receive)))
    try:
        yield names
    finally:
        for handle in handles:
            handle.remove()


def _forward_hook(param: str, receive):
    def on_forward(module, inputs, output):
        if not output.requires_grad:
            return
        x = inputs[0].detach()
        # Registered per call: with gradient checkpointing the recomputed forward registers
        # again, and only the tensors that backward actually reaches fire.
        output.register_hook(lambda grad: receive(param, x, grad.detach()))

    return on_forward


@contextmanager
def capture_lora_grads(
    model, segments: list[tuple[Segment, ...]] | None = None, adapter: str | None = None
) -> Iterator[LoraGradCapture]:
    """Record per-example (or per-token) LoRA weight gradients of the backward run inside.

    `segments` is `PackedBatch.segments` of the batch the forward pass runs on; row b of the batch
    holds the tokens of `segments[b]`.
    """
    examples = sorted({s.example for row in segments for s in row}) if segments else []
    capture = LoraGradCapture(examples=examples)
    slot = {example: i for i, example in enumerate(examples)}

    def receive(param: str, x, grad) -> None:
        if segments is None:
            capture.pairs.setdefault(param, []).append((x, grad))
        else:
            _accumulate(capture, param, x, grad, segments, slot)

    with on_lora_backward(model, receive, adapter):
        yield capture


def _accumulate(capture: LoraGradCapture, key: str, x, grad, segments, slot) -> None:
    import torch

    per_example = capture.grads.get(key)
    if per_example is None:
        per_example = torch.zeros(
            len(slot), grad.shape[-1], x.shape[-1], dtype=torch.float32, device=grad.device
        )
        capture.grads[key] = per_example
    x, grad = x.float(), grad.float()
    for row, row_segments in enumerate(segments):
        for seg in row_segments:
            per_example[slot[seg.example]] += grad[row, seg.start:seg.end].T @ x[row, seg.start:seg.end]
