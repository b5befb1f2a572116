"""The plain PyTorch + PEFT fine-tuning loop that ModelFactory is measured against.

What a practitioner writes in twenty lines: AdamW at a constant learning rate, one example per row,
rows padded to the longest in the batch, the loss on answer tokens only (the transformers mean over
a batch's labelled tokens), examples shuffled per epoch with a seeded generator. It shares no
code with `ledgerlm.factory`, so a parity test against it can fail.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recipe:
    """The settings both loops are given; `batch_size` counts examples per optimizer step."""

    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    lr: float = 1e-3
    epochs: int = 6
    batch_size: int = 8
    max_len: int = 64
    weight_decay: float = 0.0
    seed: int = 0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoopRun:
    """The adapted model and how the run went; `step_marks` is (wall s, process CPU s, real tokens) per step."""

    model: object
    steps: int
    real_tokens: int
    padded_tokens: int
    losses: list[float] = field(default_factory=list)
    step_marks: list[tuple[float, int]] = field(default_factory=list)


def answer_only_rows(tokenizer, records: list[dict], max_len: int) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per Q&A record: the chat-template prompt masked, answer and end token labelled."""
    rows = []
    for record in records:
        user = [{"role": "user", "content": record["question"]}]
        prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": record["answer"]}],
                                             tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
        ids = (prompt_ids + answer_ids)[:max_len]
        rows.append((ids, ([-100] * len(prompt_ids) + answer_ids)[:max_len]))
    return rows


def train_plain_peft(base_path: str, records: list[dict], recipe: Recipe, device: str = "cpu") -> LoopRun:
    """Fine-tune a LoRA adapter on Q&A `records` the plain way; returns the model in eval mode.

    On CUDA the steps run under bfloat16 autocast, as a GPU practitioner would (and as ledgerlm does).
    """
    from contextlib import nullcontext

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = answer_only_rows(tokenizer, records, recipe.max_len)
    torch.manual_seed(recipe.seed)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).to(device)
    model = get_peft_model(model, LoraConfig(
        r=recipe.rank, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
        target_modules=list(recipe.target_modules), bias="none", task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr,
                                  weight_decay=recipe.weight_decay)
    run = LoopRun(model=model, steps=0, real_tokens=0, padded_tokens=0)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else nullcontext()
    model.train()
    for epoch in range(recipe.epochs):
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(recipe.seed + epoch)).tolist()
        for start in range(0, len(order), recipe.batch_size):
            batch = [rows[i] for i in order[start:start + recipe.batch_size]]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch], device=device)
            labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch], device=device)
            mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch], device=device)
            with autocast:
                loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            tokens = int(mask.sum())
            run.steps += 1
            run.real_tokens += tokens
            run.padded_tokens += mask.numel()
            run.losses.append(loss.item())  # also waits for the GPU, so the step's mark is its end
            run.step_marks.append((time.perf_counter(), time.process_time(), tokens))
    model.eval()
    return run
