"""Spot-checkable LoRA training for compute jobs: plain SGD steps in float64 from a seeded start, each on a batch
drawn from (seed, step), so a verifier can re-execute any one step from the checkpoint before it and compare."""

from __future__ import annotations

import hashlib
import math
import random

from ledgerlm.factory import BaseModel
from ledgerlm.providers.errors import ProviderError
from ledgerlm.providers.schemas import TrainingSpec


class TrainingRun:
    """One job's model: the base in float64 with a LoRA adapter initialised from the job's seed."""

    def __init__(self, base: BaseModel, spec: TrainingSpec):
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        from ledgerlm.factory.loading import from_pretrained, load_tokenizer
        from ledgerlm.factory.train import PROJECTION_NAMES, linear_module_names

        self.spec = spec
        self.tokenizer = load_tokenizer(base)
        # Loaded in the default float32 and then widened (the same values): loading straight in float64 switches
        # torch's process-wide default dtype while it runs, and a check or a call in another thread then mixed
        # float64 into its float32 work.
        model = from_pretrained(AutoModelForCausalLM, base.path, dtype=torch.float32).to(torch.float64)
        available = linear_module_names(model)
        targets = [n for n in PROJECTION_NAMES if n in available] or available
        lora = LoraConfig(r=spec.rank, lora_alpha=2 * spec.rank, lora_dropout=0.0, target_modules=targets,
                          bias="none", task_type="CAUSAL_LM")
        self.model = get_peft_model(model, lora)
        # The adapter's initial weights follow from the seed alone, drawn from a generator of their own (PEFT's
        # initialisation, A Kaiming-uniform and B zero): drawn from the process-wide one, two spot-checks at once,
        # or one beside training or serving, took each other's numbers and failed honest work.
        generator = torch.Generator().manual_seed(spec.seed)
        with torch.no_grad():
            for name, param in sorted(self.model.named_parameters()):
                if ".lora_A." in name:
                    torch.nn.init.kaiming_uniform_(param, a=math.sqrt(5), generator=generator)
                elif ".lora_B." in name:
                    param.zero_()
        self.model.train()
        self.params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def state(self) -> dict:
        return {n: p.detach().clone() for n, p in sorted(self.params.items())}

    def load(self, state: dict) -> None:
        import torch

        if set(state) != set(self.params):
            raise ProviderError("the checkpoint does not hold this job's adapter weights", field="result")
        with torch.no_grad():
            for name, param in self.params.items():
                if tuple(state[name].shape) != tuple(param.shape):
                    raise ProviderError(f"checkpoint weight {name} has shape {tuple(state[name].shape)}, "
                                        f"not {tuple(param.shape)}", field="result")
                param.copy_(state[name].to(param.dtype))

    def batch(self, step: int) -> list[str]:
        """The texts of step `step` (1-based): a sample fixed by (seed, step)."""
        texts = self.spec.texts
        picks = random.Random(f"{self.spec.seed}:{step}").sample(range(len(texts)), min(self.spec.batch_size,
                                                                                        len(texts)))
        return [texts[i] for i in picks]

    def step(self, state: dict, step: int) -> tuple[float, dict]:
        """Train step `step` from `state`: returns its loss and the weights after it."""
        import torch

        self.load(state)
        self.model.zero_grad(set_to_none=True)
        enc = self.tokenizer(self.batch(step), return_tensors="pt", padding=True, truncation=True,
                             max_length=self.spec.max_len)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels).loss
        loss.backward()
        with torch.no_grad():
            for param in self.params.values():
                param -= self.spec.learning_rate * param.grad
        return float(loss.detach()), self.state()


def checkpoint_bytes(state: dict) -> bytes:
    from safetensors.torch import save

    return save({n: t.contiguous() for n, t in sorted(state.items())})


def read_checkpoint(data: bytes, field: str = "result") -> dict:
    """A checkpoint's weights; `field` names where a file that is none came from (the report's uploaded files)."""
    from safetensors.torch import load

    try:
        return load(data)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the provider's fault
        raise ProviderError(f"a checkpoint is not a safetensors file: {exc}", field=field) from exc


def run_training(base: BaseModel, spec: TrainingSpec, progress=None) -> tuple[dict, dict[str, bytes]]:
    """Do the whole job: returns the result (losses per step, checkpoint hashes from before step 1 to after the
    last) and the checkpoint files by their sha256."""
    run = TrainingRun(base, spec)
    state = run.state()
    files = {}
    hashes, losses = [], []
    for step in range(spec.steps + 1):
        if step:
            loss, state = run.step(state, step)
            losses.append(loss)
        data = checkpoint_bytes(state)
        sha = hashlib.sha256(data).hexdigest()
        files[sha] = data
        hashes.append(sha)
        if progress is not None:
            progress(step, spec.steps)
    return {"losses": losses, "checkpoints": hashes}, files


def max_difference(a: dict, b: dict) -> float:
    """The largest absolute difference between two checkpoints' weights (inf when they hold different weights)."""
    if set(a) != set(b) or any(tuple(a[n].shape) != tuple(b[n].shape) for n in a):
        return float("inf")
    return max(float((a[n].double() - b[n].double()).abs().max()) for n in a)
