"""The LoRA / QLoRA training loop: config, checkpoints, resume, stop, and the attribution hook.

One loop, read top to bottom in `train`: packed blocks are shuffled per epoch with a seeded
generator, so a step number alone says where in the data a run is, and resuming a checkpoint
replays nothing and skips nothing. The loss of an optimizer step is the mean over all labelled
tokens of its micro-batches, however they were packed.

Artifacts in `out_dir`: the adapter in standard PEFT format (`adapter_model.safetensors`,
`adapter_config.json`), `training.json` (config, data split, loss history), and
`checkpoints/step-N/` (adapter + optimizer + step + RNG state) every `checkpoint_every` steps,
when `should_stop()` turns true, and at the end.

Attribution hook: pass `on_batch_end`; each training micro-batch then runs inside
`capture_lora_grads` (or inside `capture_batch(model, batch, epoch)` when given, e.g. one that
projects the gradients as it goes) and the callback receives a `BatchEnd` with the batch, what the
capture collected and the factor the training loss applied to it (see `grads.py`).

Run under torch.distributed (`distributed.py` launches it with torchrun), each rank trains on its
share of every step's examples and the gradients are summed before the step, so the steps, the
checkpoints and the adapter are those of one process.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ledgerlm.factory.basemodels import BaseModel
from ledgerlm.factory.dataset import (
    MIN_MAX_LEN,
    PackedBatch,
    TokenizedExample,
    TrainingData,
    build_training_data,
    collate,
    pack_examples,
    share_prefix,
    shared_prefix_length,
)
from ledgerlm.factory.digest import canonical_json_sha256
from ledgerlm.factory.errors import FactoryError, TrainConfigError
from ledgerlm.factory.grads import LoraGradCapture, capture_lora_grads
from ledgerlm.factory.loading import (
    load_base_model,
    load_tokenizer,
    pick_device,
    require_qlora_support,
)
from ledgerlm.factory.loss import token_losses

METHODS = ("lora", "qlora")
SCHEDULERS = ("constant", "linear", "cosine")
# Attention and MLP projections under the names common decoder families give them.
PROJECTION_NAMES = (
    "q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "gate_proj", "up_proj", "down_proj",
    "gate_up_proj", "c_attn", "c_proj", "c_fc", "query_key_value", "dense", "dense_h_to_4h",
    "dense_4h_to_h", "fc1", "fc2", "out_proj", "Wqkv", "W_pack", "w1", "w2", "w3",
)
# A shared prefix costs one more (short) forward call per micro-batch, whose fixed cost matters on a
# small model: on the tiny benchmark model a 5-token turn header saving 10% of the positions made
# steps 14% slower, while SmolLM2's default system message saves about 38%.
SHARED_PREFIX_GAIN = 0.25
# Upper bounds on what one job may ask for. A node trains one job at a time for everyone, so a request
# must not be able to hold the worker for days or ask for more memory than any node has; the bounds are
# generous for LoRA on SmolLM2-class models (rank 8-64, a few epochs, a few hundred tokens per record).
MAX_RANK = 256
MAX_ALPHA = 1024.0  # alpha is usually rank or twice it
MAX_EPOCHS = 100
MAX_STEPS = 100_000
MAX_BATCH_SIZE = 512
MAX_GRAD_ACCUM = 256
MAX_LEN = 8192  # tokens per packed row; longer than SmolLM2's 8k context is never useful
MAX_WEIGHT_DECAY = 1.0
MAX_GRAD_NORM = 1e6
MAX_SEED = 2**32 - 1
# (setting, least, most) for the whole-number settings
WHOLE_NUMBER_BOUNDS = (
    ("rank", 1, MAX_RANK), ("epochs", 1, MAX_EPOCHS), ("batch_size", 1, MAX_BATCH_SIZE),
    ("grad_accum", 1, MAX_GRAD_ACCUM), ("max_len", MIN_MAX_LEN, MAX_LEN), ("seed", 0, MAX_SEED),
)
CHECKPOINTS = "checkpoints"
STATE_FILE = "state.pt"
TRAINING_FILE = "training.json"


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


MAX_TARGET_MODULES = 64  # module names one config may list (a model has a handful of projection kinds)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting that changes the trained adapter; its hash goes into the lineage.

    `batch_size` counts examples per micro-batch (packed into rows of at most `max_len` tokens);
    `warmup` is the fraction of optimizer steps over which the learning rate ramps up before the
    `scheduler` (constant, linear decay to 0, or cosine to 0) takes over; `max_grad_norm=None`
    clips nothing. `target_modules=None` means every attention and MLP projection the model has.

    The defaults are chosen on generated facts Datanets (see `benchmarks/train.py`): a constant
    rate without warm-up or clipping learns what a plain PEFT loop learns; decaying the rate
    linearly to zero over a short run halves the average step and loses most of the facts.
    """

    method: str = "lora"
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 8
    max_len: int = 512
    eval_split: float = 0.1
    seed: int = 0
    grad_accum: int = 1
    scheduler: str = "constant"
    warmup: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float | None = None
    max_steps: int | None = None

    def validate(self) -> None:
        """Raise a TrainConfigError naming the first setting of the wrong type or out of range.

        Settings arrive as JSON from requests, so a string where a number belongs is refused here
        rather than failing later inside the training loop."""
        for name in ("method", "scheduler"):
            if not isinstance(getattr(self, name), str):
                raise TrainConfigError(f"{name} must be a string, not {getattr(self, name)!r}", field=name)
        if self.method not in METHODS:
            raise TrainConfigError(
                f"method must be one of {', '.join(METHODS)}, not {self.method!r}", field="method"
            )
        if self.scheduler not in SCHEDULERS:
            raise TrainConfigError(
                f"scheduler must be one of {', '.join(SCHEDULERS)}, not {self.scheduler!r}",
                field="scheduler",
            )
        for name, least, most in WHOLE_NUMBER_BOUNDS:
            value = getattr(self, name)
            if not _is_whole(value) or not least <= value <= most:
                raise TrainConfigError(f"{name} must be a whole number from {least} to {most}, not {value!r}",
                                       field=name)
        if self.max_steps is not None and (not _is_whole(self.max_steps) or not 1 <= self.max_steps <= MAX_STEPS):
            raise TrainConfigError(f"max_steps must be a whole number from 1 to {MAX_STEPS} (or null for no "
                                   f"limit), not {self.max_steps!r}", field="max_steps")
        numbers = ["alpha", "dropout", "lr", "eval_split", "warmup", "weight_decay"]
        if self.max_grad_norm is not None:
            numbers.append("max_grad_norm")
        for name in numbers:
            value = getattr(self, name)
            if not _is_number(value):
                raise TrainConfigError(f"{name} must be a finite number, not {value!r}", field=name)
        checks = [
            ("alpha", 0 < self.alpha <= MAX_ALPHA, f"must be in (0, {MAX_ALPHA:g}]"),
            ("dropout", 0 <= self.dropout < 1, "must be in [0, 1)"),
            ("lr", 0 < self.lr < 1, "must be in (0, 1)"),
            ("eval_split", 0 <= self.eval_split < 1, "must be in [0, 1)"),
            ("warmup", 0 <= self.warmup < 1, "must be in [0, 1)"),
            ("weight_decay", 0 <= self.weight_decay <= MAX_WEIGHT_DECAY, f"must be in [0, {MAX_WEIGHT_DECAY:g}]"),
            ("max_grad_norm", self.max_grad_norm is None or 0 < self.max_grad_norm <= MAX_GRAD_NORM,
             f"must be in (0, {MAX_GRAD_NORM:g}] (or null for no clipping)"),
        ]
        for name, ok, reason in checks:
            if not ok:
                raise TrainConfigError(f"{name} {reason}, not {getattr(self, name)!r}", field=name)
        if self.target_modules is not None:
            modules = self.target_modules
            if not isinstance(modules, (list, tuple)) or not all(isinstance(m, str) and m for m in modules):
                raise TrainConfigError(f"target_modules must be a list of module names (or null for every "
                                       f"projection), not {str(modules)[:200]}", field="target_modules")
            if not modules:
                raise TrainConfigError("target_modules must name at least one module", field="target_modules")
            # stored with the job and shown in every listing of jobs: a model has a handful of projection kinds
            if len(modules) > MAX_TARGET_MODULES or any(len(m) > 128 for m in modules):
                raise TrainConfigError(f"target_modules names at most {MAX_TARGET_MODULES} modules of at most 128 "
                                       f"characters each, not {len(modules)}", field="target_modules")
            if len(set(modules)) != len(modules):
                raise TrainConfigError("target_modules names a module twice; name each once", field="target_modules")

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.target_modules is not None:
            data["target_modules"] = list(self.target_modules)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainConfigError(f"unknown training settings: {', '.join(unknown)}",
                                   field=unknown[0])
        values = dict(data)
        if isinstance(values.get("target_modules"), list):  # anything else is left for validate to name
            values["target_modules"] = tuple(values["target_modules"])
        return cls(**values)

    def sha256(self) -> str:
        """sha256 of the canonical JSON of these settings: the training-config hash in lineage."""
        return canonical_json_sha256(self.to_dict())


@dataclass(frozen=True)
class TrainProgress:
    """One optimizer step done: what a progress bar shows."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    lr: float
    tokens_per_s: float
    eta_s: float
    tokens_seen: int


@dataclass(frozen=True)
class StepRecord:
    step: int
    loss: float
    lr: float
    tokens_seen: int
    seconds: float


@dataclass
class BatchEnd:
    """A training micro-batch after its backward pass, before the optimizer step.

    `capture` is what the batch's capture yielded — by default a `LoraGradCapture`, whose `grads`
    hold per-example gradients of `token_weight * (sum of that example's token losses)`; divide by
    `token_weight` for the unweighted sum.
    """

    step: int
    epoch: int
    batch: PackedBatch
    capture: LoraGradCapture | object
    token_weight: float
    model: object


@dataclass
class TrainResult:
    """What a training run produced and how it went."""

    out_dir: Path
    config: TrainConfig
    data_sha256: str
    steps: int
    total_steps: int
    stopped: bool
    history: list[StepRecord]
    tokens_seen: int
    train_seconds: float
    device: str
    train_indices: list[int] = field(default_factory=list)
    eval_indices: list[int] = field(default_factory=list)
    truncated: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    model: object = field(default=None, repr=False, compare=False)

    @property
    def config_sha256(self) -> str:
        return self.config.sha256()

    @property
    def final_loss(self) -> float | None:
        return self.history[-1].loss if self.history else None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_seen / self.train_seconds if self.train_seconds else 0.0

    def to_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "config_sha256": self.config_sha256,
            "data_sha256": self.data_sha256,
            "steps": self.steps,
            "total_steps": self.total_steps,
            "stopped": self.stopped,
            "tokens_seen": self.tokens_seen,
            "train_seconds": self.train_seconds,
            "tokens_per_s": self.tokens_per_s,
            "device": self.device,
            "history": [asdict(r) for r in self.history],
            "train_indices": self.train_indices,
            "eval_indices": self.eval_indices,
            "truncated": self.truncated,
            "dropped": self.dropped,
        }


def linear_module_names(model) -> list[str]:
    """Short names of the linear layers LoRA can adapt (the output head excluded)."""
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = set()
    for name, module in model.named_modules():
        is_linear = isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"
        if is_linear and module is not head:
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def resolve_target_modules(model, config: TrainConfig) -> tuple[str, ...]:
    """The configured target modules, checked against the model, or its projections by default."""
    available = linear_module_names(model)
    if config.target_modules is None:
        chosen = [n for n in PROJECTION_NAMES if n in available]
        return tuple(chosen or available)
    missing = [n for n in config.target_modules if n not in available]
    if missing:
        raise TrainConfigError(
            f"target module {', '.join(map(repr, missing))} does not exist in this model; "
            f"available linear modules: {', '.join(available)}",
            field="target_modules",
        )
    return tuple(config.target_modules)


def check_training_setup(base: BaseModel, config: TrainConfig) -> TrainConfig:
    """Validate `config` against `base` and this machine without loading weights.

    Returns the config with target modules resolved, the form whose hash lineage records.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config.validate()
    if config.method == "qlora":
        require_qlora_support()
    model_config = AutoConfig.from_pretrained(base.path)
    positions = getattr(model_config, "max_position_embeddings", None)
    if isinstance(positions, int) and config.max_len > positions:
        raise TrainConfigError(f"max_len={config.max_len} is longer than {base.name} reads at once "
                               f"({positions} positions)", field="max_len")
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(model_config)
    return replace(config, target_modules=resolve_target_modules(skeleton, config))


def train(
    base: BaseModel,
    records: list[dict],
    config: TrainConfig,
    out_dir: Path,
    *,
    progress: Callable[[TrainProgress], None] | None = None,
    resume: bool = False,
    should_stop: Callable[[], bool] | None = None,
    on_batch_end: Callable[[BatchEnd], None] | None = None,
    capture_batch: Callable[[object, PackedBatch, int], AbstractContextManager] | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 2,
    device: str | None = None,
) -> TrainResult:
    """Fine-tune a LoRA adapter of `base` on `records` and save it in `out_dir`."""
    import torch

    out_dir = Path(out_dir)
    config = check_training_setup(base, config)
    checkpoint = _latest_checkpoint(out_dir) if resume else None
    if resume and checkpoint is None:
        raise FactoryError(f"there is no checkpoint to resume in {out_dir / CHECKPOINTS}",
                           field="resume")
    if not resume and (out_dir / CHECKPOINTS).exists() and checkpoint is None and not has_checkpoint(out_dir):
        # only a checkpoint being written when the run was cut off (no complete one): nothing to resume or keep
        shutil.rmtree(out_dir / CHECKPOINTS)
    if not resume and (out_dir / CHECKPOINTS).exists():
        raise FactoryError(
            f"{out_dir} already holds a training run; resume it or choose another output directory",
            field="out_dir", status=409,
        )
    rank, world = data_parallel()
    if world > 1 and on_batch_end is not None:
        raise FactoryError("per-example gradient features are collected in one process; train on one process "
                           "or build the attribution index after training", field="processes")
    dev = pick_device(device)
    tokenizer = load_tokenizer(base)
    data = build_training_data(records, tokenizer, config.max_len, config.eval_split, config.seed)
    data_sha256 = canonical_json_sha256(records)
    model = _adapted_for_training(base, config, dev)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay,
                                  fused=_fused_adamw(dev))

    steps_per_epoch = math.ceil(len(data.train_examples) / (config.batch_size * config.grad_accum))
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    elif total_steps > MAX_STEPS:
        # without max_steps the version sets the job's length: one long text record cut into max_len pieces
        # made a job of millions of steps on the one worker every developer shares
        raise TrainConfigError(f"{len(data.train_examples):,} training examples for {config.epochs} epochs in "
                               f"batches of {config.batch_size * config.grad_accum} make {total_steps:,} steps; a job "
                               f"runs at most {MAX_STEPS:,}: set max_steps, or fewer epochs, a larger batch or max_len",
                               field="max_steps")
    every = checkpoint_every or max(1, total_steps // 10)

    step, history, tokens_seen, seconds = 0, [], 0, 0.0
    if checkpoint is not None:
        step, history, tokens_seen, seconds = _restore(
            checkpoint, model, optimizer, config, data_sha256
        )
    first_step = step

    out_dir.mkdir(parents=True, exist_ok=True)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if dev.type == "cuda" and torch.cuda.is_bf16_supported() else nullcontext())
    model.train()
    share = shares_prefix(config, dev)
    started, session_tokens = time.perf_counter(), 0
    stopped = False
    while step < total_steps:
        epoch = step // steps_per_epoch
        micro_examples = step_examples(data, config, epoch, step % steps_per_epoch)
        if world > 1:  # this rank's share of the step; the loss still divides by the whole step's tokens
            n_labelled = sum(micro_batch(m, config.max_len, data.pad_id).n_label_tokens for m in micro_examples)
            mine = [e for m in micro_examples for e in m][rank::world]
            micro_examples = [mine[j:j + config.batch_size] for j in range(0, len(mine), config.batch_size)]
        micro_batches = [micro_batch(m, config.max_len, data.pad_id).to(dev) for m in micro_examples]
        if world == 1:
            n_labelled = sum(b.n_label_tokens for b in micro_batches)
        step_loss = 0.0
        for i, batch in enumerate(micro_batches):
            capture = ((capture_batch or _exact_grads)(model, batch, epoch) if on_batch_end
                       else nullcontext())
            with capture as grads:
                if grads is None and share:
                    # Nothing reads this batch's per-example gradients, which a shared prefix
                    # would mix: run the prefix once (the same loss).
                    batch = micro_batches[i] = micro_batch(
                        micro_examples[i], config.max_len, data.pad_id, share=True).to(dev)
                with autocast:
                    loss = token_losses(model, batch).sum() / n_labelled
                loss.backward()
            step_loss += loss.item()
            if on_batch_end:
                on_batch_end(BatchEnd(step, epoch, batch, grads, 1.0 / n_labelled, model))
        step_tokens = sum(b.n_tokens for b in micro_batches)
        if world > 1:
            step_loss, step_tokens = sum_over_ranks(trainable, step_loss, step_tokens)
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
        lr = _lr_at(step, total_steps, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        tokens_seen += step_tokens
        session_tokens += step_tokens
        elapsed = time.perf_counter() - started
        history.append(StepRecord(step, step_loss, lr, tokens_seen, seconds + elapsed))
        if progress:
            progress(TrainProgress(
                step=step, total_steps=total_steps, epoch=epoch, loss=step_loss, lr=lr,
                tokens_per_s=session_tokens / elapsed if elapsed else 0.0,
                eta_s=elapsed / (step - first_step) * (total_steps - step),
                tokens_seen=tokens_seen,
            ))
        stopped = step < total_steps and should_stop is not None and should_stop()
        if world > 1:
            stopped = any_rank(stopped, dev)  # every rank stops at the same step
        if (step % every == 0 or step == total_steps or stopped) and rank == 0:
            # every rank holds the same weights and optimizer state: one writer, any process count resumes
            _save_checkpoint(out_dir, model, optimizer, step, history, tokens_seen,
                             seconds + (time.perf_counter() - started), config, data_sha256,
                             keep_checkpoints)
        if stopped:
            break

    result = TrainResult(
        out_dir=out_dir, config=config, data_sha256=data_sha256, steps=step,
        total_steps=total_steps, stopped=stopped, history=history, tokens_seen=tokens_seen,
        train_seconds=seconds + (time.perf_counter() - started), device=str(dev),
        train_indices=data.train_indices, eval_indices=data.eval_indices,
        truncated=data.truncated, dropped=data.dropped, model=model.eval(),
    )
    if rank == 0:
        if not stopped:
            model.save_pretrained(out_dir, safe_serialization=True)
        _write_json(out_dir / TRAINING_FILE, result.to_dict())
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # no rank leaves before the adapter is written
    return result


def data_parallel() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed group this process trains in; (0, 1) alone."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def sum_over_ranks(trainable, step_loss: float, step_tokens: int) -> tuple[float, int]:
    """Sum the ranks' gradients (each already divided by the whole step's tokens), loss and token count,
    in one all-reduce: afterwards every rank holds the gradient one process would have computed."""
    import torch
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in trainable]
    flat = torch.cat([g.reshape(-1).float() for g in grads] +
                     [torch.tensor([step_loss, float(step_tokens)], device=grads[0].device)])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, g in zip(trainable, grads):
        p.grad = flat[offset:offset + g.numel()].view_as(g).to(g.dtype)
        offset += g.numel()
    return float(flat[-2]), int(round(float(flat[-1])))


def any_rank(flag: bool, device) -> bool:
    import torch
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _exact_grads(model, batch: PackedBatch, epoch: int) -> AbstractContextManager:
    return capture_lora_grads(model, batch.segments)


def read_training(out_dir: Path) -> dict:
    """The `training.json` a run left in `out_dir`."""
    path = Path(out_dir) / TRAINING_FILE
    if not path.is_file():
        raise FactoryError(f"{out_dir} holds no training run ({TRAINING_FILE} missing)",
                           field="model_dir", status=404)
    return json.loads(path.read_text())


def _adapted_for_training(base: BaseModel, config: TrainConfig, device):
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    torch.manual_seed(config.seed)
    model = load_base_model(base, device, quantize_4bit=config.method == "qlora")
    if config.method == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=True,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def step_batches(
    data: TrainingData, config: TrainConfig, epoch: int, step_in_epoch: int, *, share: bool = False
) -> list[PackedBatch]:
    """The micro-batches of one optimizer step, reproducible from the step alone."""
    return [micro_batch(examples, config.max_len, data.pad_id, share=share)
            for examples in step_examples(data, config, epoch, step_in_epoch)]


def step_examples(
    data: TrainingData, config: TrainConfig, epoch: int, step_in_epoch: int
) -> list[list[TokenizedExample]]:
    """The examples of each micro-batch of one optimizer step, reproducible from the step alone.

    Examples (not blocks) are shuffled per epoch, so a step sees `batch_size x grad_accum`
    examples however short they are, as an ordinary padded loop would.
    """
    import torch

    order = torch.randperm(
        len(data.train_examples), generator=torch.Generator().manual_seed(config.seed + epoch)
    ).tolist()
    per_step = config.batch_size * config.grad_accum
    chosen = [data.train_examples[i] for i in order[step_in_epoch * per_step:(step_in_epoch + 1) * per_step]]
    return [chosen[j:j + config.batch_size] for j in range(0, len(chosen), config.batch_size)]


def shares_prefix(config: TrainConfig, device) -> bool:
    """Whether a step may run its examples' common prefix once (`micro_batch(share=True)`).

    Not with QLoRA: a recomputing (gradient-checkpointed) forward would append to the prefix cache
    twice. Not on a GPU: there a step of a SmolLM2-sized model is bound by kernel launches, not
    arithmetic, and the prefix's extra forward and backward call doubles them while the positions
    it saves cost almost nothing (on an H200, SmolLM2's architecture, 8 examples per step: 0.53x the
    tokens/s of a plain PEFT loop with sharing, benchmarks/results/train-gpu.md).
    """
    return config.method == "lora" and device.type == "cpu"


def micro_batch(
    examples: list[TokenizedExample], max_len: int, pad_id: int, *, share: bool = False
) -> PackedBatch:
    """One micro-batch: `examples` packed into as few rows as fit, none wider than the longest.

    Packing fills only the padding a padded loop would waste and never makes rows longer, since
    attention grows with the square of a row's length. With `share`, examples that begin with the
    same tokens (a chat template's system message and turn header) run them once instead
    (`share_prefix`) when that saves at least `SHARED_PREFIX_GAIN` of the token positions: the same
    loss, but an example's tokens no longer have gradients of their own.
    """
    longest = max(len(e.input_ids) for e in examples)
    blocks = pack_examples(examples, min(max_len, longest), pad_id, tight=True)
    prefix = shared_prefix_length(examples) if share and len(examples) > 1 else 0
    if prefix:
        positions = prefix + len(examples) * (longest - prefix)
        if positions <= (1 - SHARED_PREFIX_GAIN) * sum(len(b.input_ids) for b in blocks):
            return share_prefix(examples, prefix, pad_id)
    return collate(blocks)


def _fused_adamw(device) -> bool:
    """Whether the fused AdamW kernel is the faster one here.

    On a GPU it always is; on a CPU it is several times faster with one thread and slower with
    several, where it splits each small LoRA tensor across threads.
    """
    import torch

    return device.type == "cuda" or (device.type == "cpu" and torch.get_num_threads() == 1)


def _lr_at(step: int, total: int, config: TrainConfig) -> float:
    """The learning rate of optimizer step `step` (0-based): linear warm-up, then the schedule."""
    warm = round(config.warmup * total)
    if step < warm:
        return config.lr * (step + 1) / warm
    if config.scheduler == "constant":
        return config.lr
    done = (step - warm) / max(1, total - warm)
    if config.scheduler == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * done))
    return config.lr * (1 - done)


def _start_step(checkpoint: Path | None) -> int:
    return int(checkpoint.name.split("-")[1]) if checkpoint is not None else 0


def has_checkpoint(out_dir: Path) -> bool:
    """Whether `out_dir` holds a complete checkpoint that `train(..., resume=True)` can continue."""
    return _latest_checkpoint(Path(out_dir)) is not None


def _latest_checkpoint(out_dir: Path) -> Path | None:
    found = sorted((out_dir / CHECKPOINTS).glob("step-*"), key=_start_step)
    found = [p for p in found if (p / STATE_FILE).is_file()]
    return found[-1] if found else None


def _save_checkpoint(out_dir, model, optimizer, step, history, tokens_seen, seconds, config,
                     data_sha256, keep):
    import torch

    root = out_dir / CHECKPOINTS
    final = root / f"step-{step:08d}"
    staging = root / f".step-{step:08d}.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    model.save_pretrained(staging, safe_serialization=True)
    rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save({
        "step": step,
        "optimizer": optimizer.state_dict(),
        "rng": rng,
        "history": [asdict(r) for r in history],
        "tokens_seen": tokens_seen,
        "seconds": seconds,
        "config_sha256": config.sha256(),
        "data_sha256": data_sha256,
    }, staging / STATE_FILE)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    for old in sorted(root.glob("step-*"), key=_start_step)[:-keep]:
        shutil.rmtree(old)


def _restore(checkpoint: Path, model, optimizer, config: TrainConfig, data_sha256: str):
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=False)
    if state["config_sha256"] != config.sha256():
        raise FactoryError(
            f"the checkpoint in {checkpoint} was made with different training settings; "
            "resume with the same settings or choose another output directory",
            field="resume", status=409,
        )
    if state["data_sha256"] != data_sha256:
        raise FactoryError(
            f"the checkpoint in {checkpoint} was trained on different records; "
            "resume with the same Datanet version or choose another output directory",
            field="resume", status=409,
        )
    weights = load_file(str(checkpoint / "adapter_model.safetensors"))
    set_peft_model_state_dict(model, weights)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    history = [StepRecord(**r) for r in state["history"]]
    return state["step"], history, state["tokens_seen"], state["seconds"]


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)
