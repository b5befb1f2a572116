"""Adapters read straight from their PEFT files into a tiered LRU cache: device slots, host memory, disk.

A request's adapter is looked up in the device tier (a slot of the `SlotBank`), then in host
memory (tensors already read and scaled), and only then read from `adapter_model.safetensors`
in the home. Slots in use by running requests are pinned and never evicted. A load that fails
leaves every tier as it was, so the next request tries the files again.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from ledgerlm.serving.catalog import AdapterRef
from ledgerlm.serving.errors import AdapterLoadError
from ledgerlm.serving.lora import SlotBank

_UNSUPPORTED = ("use_dora", "lora_bias")


@dataclass(frozen=True)
class AdapterWeights:
    """One adapter in host memory: per base-model module, A (r, in) and B × scaling (out, r)."""

    model_id: str
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @property
    def nbytes(self) -> int:
        return sum(a.numel() * a.element_size() + b.numel() * b.element_size() for a, b in self.layers.values())


def read_adapter(ref: AdapterRef, dtype=torch.float32) -> AdapterWeights:
    """Read a PEFT LoRA adapter from disk without PEFT: its config and its safetensors weights."""
    from safetensors.torch import load_file

    config_path, weights_path = ref.path / "adapter_config.json", ref.path / "adapter_model.safetensors"
    try:
        config = json.loads(config_path.read_text())
        _check_header(weights_path)
        tensors = load_file(str(weights_path), device="cpu")
    except (OSError, ValueError) as exc:  # missing or corrupt files
        raise AdapterLoadError(f"adapter of {ref.model_id!r} cannot be read from {ref.path}: {exc}",
                               field="model") from exc
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterLoadError(f"adapter of {ref.model_id!r} is {config.get('peft_type')}, not LoRA", field="model")
    for option in _UNSUPPORTED:
        if config.get(option):
            raise AdapterLoadError(f"adapter of {ref.model_id!r} uses {option}, which serving does not support",
                                   field="model")
    alpha_pattern = config.get("alpha_pattern") or {}
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, a in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key.removesuffix(".lora_A.weight").removeprefix("base_model.model.")
        b = tensors.get(key.replace(".lora_A.", ".lora_B."))
        if b is None:
            raise AdapterLoadError(f"adapter of {ref.model_id!r} has {key} without its lora_B", field="model")
        rank = a.shape[0]
        alpha = next((v for k, v in alpha_pattern.items() if module.endswith(k)), config.get("lora_alpha", rank))
        scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        layers[module] = (a.to(dtype), (b.to(torch.float32) * scaling).to(dtype))
    if not layers:
        raise AdapterLoadError(f"adapter of {ref.model_id!r} holds no LoRA weights", field="model")
    return AdapterWeights(ref.model_id, layers)


def _check_header(path) -> None:
    """Refuse a file whose safetensors header cannot be right (the reader trusts its declared length)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        header = f.read(min(length, size))
    if size < 8 or length > size - 8 or not header.startswith(b"{"):
        raise ValueError(f"{path.name} is not a safetensors file")
    json.loads(header)


@dataclass
class CacheStats:
    """Where requests found their adapters, and how long loads took (seconds), for the benchmark."""

    device_hits: int = 0
    host_hits: int = 0
    disk_loads: int = 0
    failures: int = 0
    disk_seconds: list[float] = field(default_factory=list)
    switch_seconds: list[float] = field(default_factory=list)


class AdapterCache:
    """Device → host → disk LRU tiers over one `SlotBank`; used only from the engine's worker thread."""

    def __init__(self, bank: SlotBank, *, host_capacity: int):
        self.bank = bank
        self.host_capacity = max(1, host_capacity)
        self.host: OrderedDict[str, AdapterWeights] = OrderedDict()
        self.slots: OrderedDict[str, int] = OrderedDict()  # model id → slot, least recently used first
        self.pins: dict[int, int] = {}
        self.free = list(range(bank.slots - 1, 0, -1))
        self.stats = CacheStats()

    def can_acquire(self, ref: AdapterRef | None) -> bool:
        """Whether `acquire` would find or free a slot now (every slot may be pinned by running rows)."""
        if ref is None or ref.model_id in self.slots or self.free:
            return True
        return any(not self.pins.get(slot) for slot in self.slots.values())

    def acquire(self, ref: AdapterRef | None) -> int:
        """The pinned slot holding `ref`'s weights (0 for the base model), loading them if needed."""
        if ref is None:
            return 0
        slot = self.slots.get(ref.model_id)
        if slot is not None:
            self.stats.device_hits += 1
            self.slots.move_to_end(ref.model_id)
        else:
            weights = self._host(ref)
            started = time.perf_counter()
            slot = self._free_slot()
            try:
                self.bank.write(slot, weights.layers)
            except AdapterLoadError:
                self.bank.clear(slot)
                self.free.append(slot)
                self.host.pop(ref.model_id, None)
                self.stats.failures += 1
                raise
            self.slots[ref.model_id] = slot
            self.stats.switch_seconds.append(time.perf_counter() - started)
        self.pins[slot] = self.pins.get(slot, 0) + 1
        return slot

    def release(self, slot: int) -> None:
        if slot:
            self.pins[slot] -= 1

    def forget(self, model_id: str) -> None:
        """Drop an adapter from every tier (its files changed or it was withdrawn)."""
        self.host.pop(model_id, None)
        slot = self.slots.get(model_id)
        if slot is not None and not self.pins.get(slot):
            del self.slots[model_id]
            self.bank.clear(slot)
            self.free.append(slot)

    def _host(self, ref: AdapterRef) -> AdapterWeights:
        weights = self.host.get(ref.model_id)
        if weights is not None:
            self.stats.host_hits += 1
            self.host.move_to_end(ref.model_id)
            return weights
        started = time.perf_counter()
        try:
            weights = read_adapter(ref, self.bank.dtype)
        except AdapterLoadError:
            self.stats.failures += 1
            raise
        self.stats.disk_loads += 1
        self.stats.disk_seconds.append(time.perf_counter() - started)
        self.host[ref.model_id] = weights
        while len(self.host) > self.host_capacity:
            self.host.popitem(last=False)
        return weights

    def _free_slot(self) -> int:
        if self.free:
            return self.free.pop()
        for model_id, slot in self.slots.items():  # least recently used first
            if not self.pins.get(slot):
                del self.slots[model_id]
                return slot
        raise AdapterLoadError("every adapter slot is in use by running requests", field="model")
