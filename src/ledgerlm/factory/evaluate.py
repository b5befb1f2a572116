"""Before/after evaluation on the held-out split: loss, perplexity, exact match, token F1, loss curve.

Loss is the same token-level objective training minimises (`loss.token_losses`), averaged over all
held-out answer tokens. Generated answers are greedy and scored SQuAD-style: lower-cased, without
punctuation, articles or extra spaces (Rajpurkar et al., 2016).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ledgerlm.factory.basemodels import BaseModel
from ledgerlm.factory.dataset import (
    PackedBlock,
    collate,
    pack_examples,
    reference_pair,
    tokenize_record,
)
from ledgerlm.factory.loading import load_adapted_model, load_tokenizer, pick_device
from ledgerlm.factory.loss import token_losses

# A sample quotes at most this much of a record (question, reference) or of an answer: a model's report is stored
# twice (metrics and card), sent whole in every listing of models, and read by every call's catalog look-up,
# while a record may hold 16 MB.
SAMPLE_CHARS = 1_000


def _quoted(text: str) -> str:
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + "…"


@dataclass(frozen=True)
class Generation:
    """One held-out question, the reference answer and what the model said."""

    index: int
    question: str
    reference: str
    answer: str
    exact: bool
    f1: float
    contribution: int | None = None  # the record's contribution: withdrawing it takes the sample out of reports


@dataclass(frozen=True)
class EvalMetrics:
    """Held-out quality of one model; generation scores are None when no record has an answer."""

    loss: float | None
    perplexity: float | None
    n_tokens: int
    exact_match: float | None = None
    token_f1: float | None = None
    n_generated: int = 0


@dataclass
class EvalReport:
    """The base model and the fine-tuned model on the same held-out records."""

    before: EvalMetrics
    after: EvalMetrics
    eval_indices: list[int]
    samples: list[tuple[Generation, Generation]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "before": asdict(self.before),
            "after": asdict(self.after),
            "eval_indices": self.eval_indices,
            "samples": [{"before": asdict(b), "after": asdict(a)} for b, a in self.samples],
        }


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(reference)


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def eval_blocks(records: list[dict], indices: list[int], tokenizer, max_len: int) -> list[PackedBlock]:
    examples = [e for i in indices for e in tokenize_record(records[i], i, tokenizer, max_len)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return pack_examples(examples, max_len, pad)


def heldout_loss(model, blocks: list[PackedBlock], batch_size: int = 4) -> tuple[float | None, int]:
    """(mean token loss, number of scored tokens) over `blocks`."""
    import torch

    device = next(model.parameters()).device
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(blocks), batch_size):
            batch = collate(blocks[start:start + batch_size]).to(device)
            losses = token_losses(model, batch)
            total += float(losses.sum())
            count += losses.numel()
    return (total / count if count else None), count


def generate_answers(
    model, tokenizer, records: list[dict], indices: list[int], *,
    max_new_tokens: int = 64, batch_size: int = 8, max_prompt_tokens: int | None = None,
) -> list[Generation]:
    """Greedy answers to the instruction records among `indices` (plain text records are skipped), each prompt
    cut to its last `max_prompt_tokens` tokens: a record's question is as long as its uploader made it, and a
    batch padded to a 12,000-token prompt held 6.5 GiB on the smallest model."""
    import torch

    pairs = [(i, reference_pair(records[i], i)) for i in indices]
    pairs = [(i, p) for i, p in pairs if p is not None]
    device = next(model.parameters()).device
    side, cut_side = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side = tokenizer.truncation_side = "left"  # the end of a prompt is what is answered
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    limits = [v for v in (max_prompt_tokens, positions - max_new_tokens if positions else None) if v and v > 0]
    room = min(limits) if limits else None
    budget = max_new_tokens
    if pairs:
        longest = max(len(tokenizer(ref, add_special_tokens=False)["input_ids"]) for _, (_, ref) in pairs)
        budget = min(max_new_tokens, longest + 8)
    out: list[Generation] = []
    model.eval()
    try:
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            prompts = [tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                       for _, (messages, _) in chunk]
            inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False,
                               truncation=room is not None, max_length=room)
            inputs = {k: v.to(device) for k, v in inputs.items()}
            with torch.no_grad():
                generated = model.generate(
                    **inputs, max_new_tokens=budget, do_sample=False,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                )
            width = inputs["input_ids"].shape[1]
            for (index, (messages, reference)), ids in zip(chunk, generated, strict=True):
                answer = tokenizer.decode(ids[width:], skip_special_tokens=True).strip()
                contribution = records[index].get("_contribution_id") if isinstance(records[index], dict) else None
                out.append(Generation(index, _quoted(messages[-1]["content"]), _quoted(reference), _quoted(answer),
                                      exact_match(answer, reference), token_f1(answer, reference), contribution))
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = side, cut_side
    return out


def evaluate_model(
    model, tokenizer, records: list[dict], indices: list[int], max_len: int, *,
    generate: bool = True, max_generate: int | None = 64,
) -> tuple[EvalMetrics, list[Generation]]:
    """Held-out loss/perplexity over `indices`, and generation scores on up to `max_generate`."""
    loss, n_tokens = heldout_loss(model, eval_blocks(records, indices, tokenizer, max_len))
    generations = []
    if generate:
        chosen = indices if max_generate is None else indices[:max_generate]
        generations = generate_answers(model, tokenizer, records, chosen, max_prompt_tokens=max_len)
    metrics = EvalMetrics(
        loss=loss,
        perplexity=math.exp(min(loss, 50.0)) if loss is not None else None,
        n_tokens=n_tokens,
        exact_match=(sum(g.exact for g in generations) / len(generations)) if generations else None,
        token_f1=(sum(g.f1 for g in generations) / len(generations)) if generations else None,
        n_generated=len(generations),
    )
    return metrics, generations


def compare_before_after(
    base: BaseModel, adapter_dir: Path, records: list[dict], eval_indices: list[int], max_len: int,
    *, generate: bool = True, max_generate: int | None = 64, n_samples: int = 5, device=None,
    model=None,
) -> EvalReport:
    """Score the base model and base + adapter on the same held-out records.

    Pass the PEFT `model` still in memory after training to skip loading it again.
    """
    tokenizer = load_tokenizer(base)
    if model is None:
        model = load_adapted_model(base, Path(adapter_dir), pick_device(device))
    with model.disable_adapter():
        before, before_gen = evaluate_model(model, tokenizer, records, eval_indices, max_len,
                                            generate=generate, max_generate=max_generate)
    after, after_gen = evaluate_model(model, tokenizer, records, eval_indices, max_len,
                                      generate=generate, max_generate=max_generate)
    samples = list(zip(before_gen, after_gen, strict=True))[:n_samples]
    return EvalReport(before=before, after=after, eval_indices=list(eval_indices), samples=samples)


def loss_curve_png(history, path: Path, title: str = "training loss") -> Path | None:
    """Plot loss per optimizer step to `path`; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    steps = [r.step for r in history]
    losses = [r.loss for r in history]
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=120)
    axes.plot(steps, losses, linewidth=1.2, color="#3366cc")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss (answer tokens)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
