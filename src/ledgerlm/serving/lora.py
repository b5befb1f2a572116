"""Batched LoRA for many adapters in one forward pass: stacked weights per layer, gathered per row.

Every linear layer of the base model's decoder is wrapped once. Each wrapper reads, from the
shared `SlotBank`, the stacked weights of all adapters resident on the device —
A: (slots, rank, in) and B: (slots, out, rank), with the adapter's scaling folded into B — and
the slot of each row of the batch. Row i then computes

    y_i = W x_i + B[slot_i] (A[slot_i] x_i)

with two batched matmuls over gathered weights (the "gather" form of Punica's BGMV and S-LoRA's
batched kernels, in plain PyTorch). Slot 0 is all zeros, so base-model rows ride along for free,
and adapters of lower rank are zero-padded to the bank's rank, which leaves their output exact.
"""

from __future__ import annotations

import torch
from torch import nn

from ledgerlm.serving.errors import AdapterLoadError


class SlotBank:
    """Stacked LoRA weights of the adapters resident on one device, and the slot of each batch row."""

    def __init__(self, modules: dict[str, nn.Linear], slots: int, *, device, dtype):
        self.modules = modules
        self.slots = slots + 1  # slot 0: no adapter
        self.device = device
        self.dtype = dtype
        self.rank = 0
        self.A: dict[str, torch.Tensor] = {}
        self.B: dict[str, torch.Tensor] = {}
        self.rows: torch.Tensor | None = None

    def _ensure(self, name: str, rank: int) -> None:
        """Allocate `name`'s stack on first use and widen every stack when a larger rank arrives."""
        if rank > self.rank:
            for key in list(self.A):
                self.A[key] = nn.functional.pad(self.A[key], (0, 0, 0, rank - self.rank))
                self.B[key] = nn.functional.pad(self.B[key], (0, rank - self.rank))
            self.rank = rank
        if name not in self.A:
            linear = self.modules[name]
            self.A[name] = torch.zeros(self.slots, self.rank, linear.in_features, device=self.device, dtype=self.dtype)
            self.B[name] = torch.zeros(self.slots, linear.out_features, self.rank, device=self.device, dtype=self.dtype)

    def write(self, slot: int, layers: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Put one adapter's (A, scaled B) pairs into `slot`, clearing what the slot held before."""
        unknown = sorted(set(layers) - set(self.modules))
        if unknown:
            raise AdapterLoadError(f"the adapter targets {unknown[0]}, which the base model has no linear layer for",
                                   field="model")
        for name, (a, b) in layers.items():
            self._ensure(name, a.shape[0])
            linear = self.modules[name]
            if a.shape[1] != linear.in_features or b.shape[0] != linear.out_features:
                raise AdapterLoadError(
                    f"the adapter's {name} has shape {tuple(b.shape[:1]) + tuple(a.shape[1:])}, "
                    f"the base model's is ({linear.out_features}, {linear.in_features})", field="model")
        self.clear(slot)
        for name, (a, b) in layers.items():
            r = a.shape[0]
            self.A[name][slot, :r].copy_(a)
            self.B[name][slot, :, :r].copy_(b)

    def clear(self, slot: int) -> None:
        for name in self.A:
            self.A[name][slot].zero_()
            self.B[name][slot].zero_()


class BatchedLoraLinear(nn.Module):
    """A frozen linear layer plus, for each row of the batch, the LoRA delta of that row's adapter."""

    def __init__(self, base: nn.Linear, name: str, bank: SlotBank):
        super().__init__()
        self.base = base
        self.name = name
        self.bank = bank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        rows = self.bank.rows
        if rows is None or self.name not in self.bank.A:
            return y
        a = self.bank.A[self.name].index_select(0, rows)  # (batch, rank, in)
        b = self.bank.B[self.name].index_select(0, rows)  # (batch, out, rank)
        h = torch.bmm(x.to(a.dtype), a.transpose(1, 2))
        return y + torch.bmm(h, b.transpose(1, 2)).to(y.dtype)


def install(model: nn.Module, slots: int) -> SlotBank:
    """Wrap every linear layer inside the decoder layers of `model` and return their shared bank."""
    targets = {name: module for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and ".layers." in f".{name}"}
    parameter = next(model.parameters())
    bank = SlotBank(targets, slots, device=parameter.device, dtype=parameter.dtype)
    for name, linear in targets.items():
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, BatchedLoraLinear(linear, name, bank))
    return bank
