"""Which tokens of an answer carry its content, and which only restate the question.

"How deep is the Varnish Reef?" -> "The Varnish Reef is 100 feet deep.": the words "Varnish" and
"Reef" come from the question, so a training record that shares "The Varnish Reef is" with the
answer shows only that both talk about the same reef — not that it taught "100 feet", and if it
says "14 metres" it contradicts the answer. Attribution therefore weighs each answer token: a
token whose text also occurs in the prompt, or that has no letters or digits (punctuation, the
end-of-turn marker), counts `restated` (a fraction of 1); every other token counts 1. Both span
credit and the answer's gradient use these weights, so a match on the restatement alone earns
little, while a record that also contains the answer's own words earns in full.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W_]+")


def _normal(text: str) -> str:
    return "".join(_WORD.findall(text.lower()))


def content_weights(tokenizer, prompt_ids: list[int], answer_ids: list[int],
                    restated: float) -> list[float]:
    """One weight per answer token: 1 for content, `restated` for restatement and punctuation."""
    prompt_pieces = {_normal(tokenizer.decode([t])) for t in prompt_ids}
    prompt_words = set(_WORD.findall(tokenizer.decode(prompt_ids).lower()))
    weights = []
    for t in answer_ids:
        piece = _normal(tokenizer.decode([t], skip_special_tokens=True))
        carried = piece and piece not in prompt_pieces and piece not in prompt_words
        weights.append(1.0 if carried else float(restated))
    return weights
