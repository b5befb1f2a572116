"""Scores a model on planted facts: recall of the planted value, exact match, and held-out answer loss.

The scorer is independent of the code under test: it renders prompts with the tokenizer's own chat
template (the generation prompt a served model sees), generates greedily in left-padded batches,
and computes losses with an ordinary padded forward pass. The same function scores every adapter
in a comparison, so differences come from training, not from measurement.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class FactScores:
    """Quality on one question form (trained wording or paraphrase); rates are fractions in [0, 1].

    `top_value_share` is how many answers name the single most frequent planted value: a model that
    collapses onto one value per attribute shows it here before recall says why.
    """

    questions: int
    recall: float
    exact_match: float
    answer_loss: float
    top_value_share: float

    def to_dict(self) -> dict:
        return asdict(self)


def score_facts(model, tokenizer, facts: list, *, paraphrased: bool, batch_size: int = 16) -> FactScores:
    """Ask every fact (as trained, or paraphrased) greedily and score the answers against the planted values."""
    from ledgerlm.factory import exact_match

    questions = [f.paraphrase if paraphrased else f.question for f in facts]
    answers = generate(model, tokenizer, questions, batch_size=batch_size,
                       max_new_tokens=max(len(tokenizer(f.answer)["input_ids"]) for f in facts) + 4)
    hits = [f.value.lower() in a.lower() for f, a in zip(facts, answers, strict=True)]
    named = Counter(v for f, a in zip(facts, answers, strict=True)
                    for v in _planted_values(facts) if v.lower() in a.lower())
    return FactScores(
        questions=len(facts),
        recall=sum(hits) / len(facts),
        exact_match=sum(exact_match(a, f.answer) for f, a in zip(facts, answers, strict=True)) / len(facts),
        answer_loss=answer_loss(model, tokenizer, questions, [f.answer for f in facts]),
        top_value_share=(named.most_common(1)[0][1] / len(facts)) if named else 0.0,
    )


def prompt_text(tokenizer, question: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)


def generate(model, tokenizer, questions: list[str], *, batch_size: int, max_new_tokens: int) -> list[str]:
    import torch

    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    out = []
    model.eval()
    try:
        for start in range(0, len(questions), batch_size):
            prompts = [prompt_text(tokenizer, q) for q in questions[start:start + batch_size]]
            inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
            width = inputs["input_ids"].shape[1]
            out += [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in ids]
    finally:
        tokenizer.padding_side = side
    return out


def answer_loss(model, tokenizer, questions: list[str], answers: list[str], batch_size: int = 16) -> float:
    """Mean cross-entropy per answer token given the question's generation prompt."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    model.eval()
    for start in range(0, len(questions), batch_size):
        rows = []
        for q, a in zip(questions[start:start + batch_size], answers[start:start + batch_size], strict=True):
            prompt = tokenizer(prompt_text(tokenizer, q), add_special_tokens=False)["input_ids"]
            answer = tokenizer(a + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
            rows.append((prompt + answer, [-100] * len(prompt) + answer))
        width = max(len(ids) for ids, _ in rows)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows], device=model.device)
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows], device=model.device)
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows], device=model.device)
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
        losses = F.cross_entropy(logits.float().transpose(1, 2), labels[:, 1:], reduction="none")
        keep = labels[:, 1:] != -100
        total += float(losses[keep].sum())
        count += int(keep.sum())
    return total / count


def _planted_values(facts: list) -> list[str]:
    return sorted({f.value for f in facts})
