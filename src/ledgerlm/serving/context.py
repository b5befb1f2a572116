"""How much text a model's context can hold, judged from characters before anything is tokenized."""

from __future__ import annotations

import weakref

from ledgerlm.serving.errors import ServingError

_LONGEST: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> its longest token's characters


def longest_token_chars(tokenizer) -> int:
    """Characters of the vocabulary's longest token, read once per tokenizer (30 ms for SmolLM2's)."""
    if tokenizer not in _LONGEST:
        _LONGEST[tokenizer] = max(len(t) for t in tokenizer.get_vocab())
    return _LONGEST[tokenizer]


def check_text_fits(tokenizer, context: int, texts: list[str], field: str, *, messages: bool = False,
                    what: str = "prompt") -> None:
    """Refuse text that cannot fit `context` tokens before tokenizing it (megabytes take seconds of CPU): no
    token covers more characters than the vocabulary's longest entry, so more than context times that many
    characters are more tokens than the context holds. With `messages`, `texts` are chat turns, each of
    which takes at least one token of the template. `what` names the text in the refusal."""
    if messages and len(texts) >= context:
        raise ServingError(f"the prompt has {len(texts)} messages; this model's context is {context} tokens, "
                           "and every message takes at least one", field=field)
    longest = longest_token_chars(tokenizer)
    chars = sum(len(t) for t in texts)
    if chars > context * longest:
        raise ServingError(
            f"the {what} is {chars} characters; this model's context is {context} tokens, which hold at "
            f"most {context * longest} characters ({longest} per token at best)", field=field)
