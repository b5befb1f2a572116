"""Letter case: an answer read with its words as the Datanet writes them, so "THE HOMETOWN OF ZIMOR ..." meets its record.

Byte-level BPE cuts a word into other tokens in capitals than in lower case (" HOMETOWN" is not
" hometown"), so the span index, which matches token ids, finds nothing of a fact restated in
another case: a model taught to shout by one contributor and a fact by another answers the fact
in capitals, and the fact's record was not paid for it. The index keeps every word form its
records hold (`word_forms`); an answer with a word the Datanet never writes so, but writes in
another case, gets one more span reading with that word as the Datanet writes it most often
(`recased`). Words the Datanet already writes as the answer does are left as they are, so an
answer in the Datanet's own case has no such reading and is read exactly as before.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np

READ_IN_DATANET_CASE = True  # attribution rule 21; False reads answers as rule 20 did, to measure it
_WORD = re.compile(r"[^\W\d_]+")  # a run of letters: digits and punctuation have no case
_LONGEST = 64  # a longer run of letters is not a word anyone restates in another case


def record_texts(record) -> list[str]:
    """The text of a Datanet record: its string values, nested ones too, but not its `_` metadata."""
    found: list[str] = []

    def walk(value, key: str = "") -> None:
        if key.startswith("_"):
            return
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(record)
    return found


def word_forms(texts) -> dict[str, list[str]]:
    """Lower-cased word -> the forms the texts write it in, most frequent first (ties by form)."""
    counts = Counter(w for text in texts for w in _WORD.findall(text) if len(w) <= _LONGEST)
    forms: dict[str, list[tuple[int, str]]] = {}
    for form, n in counts.items():
        forms.setdefault(form.lower(), []).append((-n, form))
    return {key: [form for _, form in sorted(seen)] for key, seen in forms.items()}


def recased(text: str, forms: dict[str, list[str]] | None) -> str | None:
    """`text` with each word the Datanet never writes so, but writes in another case, as it most
    often writes it; None when no word changes."""
    if not forms or not READ_IN_DATANET_CASE:
        return None

    def one(match: re.Match) -> str:
        word = match.group(0)
        known = forms.get(word.lower())
        return word if not known or word in known else known[0]

    out = _WORD.sub(one, text)
    return out if out != text else None


def forms_array(forms: dict[str, list[str]]) -> np.ndarray:
    """The forms as the bytes of a JSON document, to be kept among the index's arrays."""
    return np.frombuffer(json.dumps(forms, sort_keys=True, ensure_ascii=False).encode(), np.uint8)


def forms_from_array(array) -> dict[str, list[str]] | None:
    return None if array is None else json.loads(np.asarray(array, np.uint8).tobytes().decode())
