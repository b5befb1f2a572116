"""Spot-checkable serving for compute jobs: greedy answers in float64, which a verifier regenerates token for token."""

from __future__ import annotations

from ledgerlm.factory import BaseModel
from ledgerlm.providers.schemas import ServingSpec


class GreedyAnswerer:
    """The base model in float64, answering one chat prompt greedily."""

    def __init__(self, base: BaseModel, spec: ServingSpec):
        import torch
        from transformers import AutoModelForCausalLM

        from ledgerlm.factory.loading import from_pretrained, load_tokenizer

        self.spec = spec
        self.tokenizer = load_tokenizer(base)
        # loaded in the default float32, then widened (the same values): loading in float64 switches torch's
        # process-wide default dtype while it runs, under every other thread's work
        self.model = from_pretrained(AutoModelForCausalLM, base.path, dtype=torch.float32).to(torch.float64).eval()

    def answer(self, index: int) -> list[int]:
        import torch

        ids = self.tokenizer.apply_chat_template([{"role": "user", "content": self.spec.prompts[index]}],
                                                 add_generation_prompt=True, return_tensors="pt")
        if not isinstance(ids, torch.Tensor):  # newer tokenizers answer a BatchEncoding
            ids = ids["input_ids"]
        with torch.no_grad():
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=self.spec.max_new_tokens,
                                      pad_token_id=self.tokenizer.pad_token_id)
        return [int(t) for t in out[0, ids.shape[1]:]]

    def text(self, tokens: list[int]) -> str:
        """An answer's text: its tokens decoded (what a spot-check holds a reported text to)."""
        return self.tokenizer.decode(tokens, skip_special_tokens=True)


def run_serving(base: BaseModel, spec: ServingSpec, progress=None) -> dict:
    """Do the whole job: the token ids and text of each prompt's answer."""
    answerer = GreedyAnswerer(base, spec)
    answers = []
    for i in range(len(spec.prompts)):
        tokens = answerer.answer(i)
        answers.append({"tokens": tokens, "text": answerer.text(tokens)})
        if progress is not None:
            progress(i + 1, len(spec.prompts))
    return {"answers": answers}
