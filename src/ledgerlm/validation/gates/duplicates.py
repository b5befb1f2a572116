"""The duplicate gates: exact copies by content hash and near copies by MinHash, confirmed by a word diff.

MinHash finds candidate pairs cheaply, but estimated Jaccard alone cannot tell a defaced copy
(upper-cased, a typo, "Hope this helps." appended) from a distinct record written from the same
template (the docs of `hashlib.sha384` and `hashlib.md5` differ in one word). A pair is a near
duplicate only when the word-level diff of the normalised texts holds nothing but typos and a
few inserted words; one substituted word (`sha384` for `md5`, `True` for `False`) makes it a
different record.

Which copy survives: a copy already in the Datanet (accepted, or pending from an earlier
upload) always stays and the new one goes. Within a batch the best-presented copy stays (not
shouting, punctuated, no typos that appear nowhere else), ties going to the earliest
submission; a record rejected by another gate never survives, so an exact or near duplicate
group never loses all its copies to a defect only one of them has.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from ledgerlm.validation.gates.candidate import Candidate
from ledgerlm.validation.letter_bigrams import mean_surprisal_bits
from ledgerlm.validation.near_duplicates import NearDuplicateIndex, normalise


@dataclass(frozen=True)
class Match:
    """A confirmed duplicate: what it copies and how strongly."""

    code: str  # in_datanet | in_pending | in_batch
    key: Hashable | None  # None: a kept record known only by its content hash
    similarity: float
    exact: bool = False


def _is_typo(a: str, b: str) -> bool:
    """One insertion, deletion or substitution inside a word, or a swap of adjacent letters; no digit touched; 4+ letters.

    Digits carry identity (`md5` and `sha1`, `v2` and `v3`, years), so a changed digit is never a typo.
    """
    if a == b:
        return True
    if min(len(a), len(b)) < 4 or abs(len(a) - len(b)) > 1:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    # an edit at either end of a word is how identifiers and word forms vary (`spawnl`/`spawnle`,
    # `exists`/`lexists`): only a slip inside the word, or two swapped letters, is a typo
    inside = 0 < i < min(len(a), len(b)) - 1
    if len(a) == len(b):
        if a[i + 1 :] == b[i + 1 :]:  # substitution
            return inside and not (a[i].isdigit() or b[i].isdigit())
        return i + 1 < len(a) and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2 :] == b[i + 2 :]
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return inside and longer[i + 1 :] == shorter[i:] and not longer[i].isdigit()


def substantive_difference(a: str, b: str, max_inserted_words: int = 5) -> str | None:
    """Why two similar texts are different records (a substituted word, many added words), or None for a copy."""
    wa, wb = normalise(a).split(), normalise(b).split()
    inserted = 0
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if tag in ("insert", "delete"):
            inserted += (i2 - i1) + (j2 - j1)
            continue
        old, new = wa[i1:i2], wb[j1:j2]
        # a swapped space splits or joins words ("the cat" / "thec at"): compare the letters
        if len(old) == len(new) and all(_is_typo(x, y) for x, y in zip(old, new)):
            continue
        if _is_typo("".join(old), "".join(new)):
            continue
        return f"{' '.join(old)[:40]!r} became {' '.join(new)[:40]!r}"
    allowed = max(max_inserted_words, round(0.1 * min(len(wa), len(wb))))
    if inserted > allowed:
        return f"{inserted} words added or removed"
    return None


_SHOUTING = re.compile(r"\b[A-Z]{2,}\b")
_WORDS = re.compile(r"\w+", re.UNICODE)


def presentation_flaws(text: str, vocabulary: Counter) -> float:
    """How defaced a text looks: shouting, no capitals, no sentence punctuation, doubled spaces, one-off words."""
    words = _WORDS.findall(text)
    if not words:
        return 10.0
    letters = sum(ch.isalpha() for ch in text)
    upper = sum(ch.isupper() for ch in text)
    flaws = 0.0
    if letters >= 20 and len(_SHOUTING.findall(text)) > 0.5 * len(words):
        flaws += 1.0
    if letters >= 20 and upper == 0:
        flaws += 0.5
    if len(words) >= 8 and not any(p in text for p in ".?!:;"):
        flaws += 0.5
    if "  " in text.strip():
        flaws += 0.5
    # a typo makes a word nobody else writes, with letter pairs English rarely has; words two
    # copies share cancel out, so this compares the copies' differing words
    for w in words:
        if vocabulary[w.lower()] <= 1 and w.isalpha():
            bits, pairs = mean_surprisal_bits(w)
            flaws += 0.02 * bits * pairs
    return flaws


@dataclass
class KeptRecords:
    """Records a Datanet already keeps (accepted, or pending from an earlier upload) that new copies lose to."""

    code: str  # in_datanet | in_pending
    hashes: dict[str, Hashable | None]  # content hash -> key
    index: NearDuplicateIndex | None
    texts: dict[Hashable, str]  # key -> text, for the word diff; a key without text counts as a copy


def find_duplicates(
    candidates: Sequence[Candidate],
    texts: dict[int, str],
    excluded: set[int],
    kept: Sequence[KeptRecords],
    *,
    exact: bool,
    near: bool,
    within_batch: bool,
    threshold: float,
    max_inserted_words: int,
    vocabulary: Counter,
) -> dict[int, Match]:
    """The duplicate findings for a batch: contribution id -> the record it copies.

    `excluded` holds ids another gate already rejects: they never survive a duplicate group,
    so the copy that stays is one the gates accept.
    """
    found: dict[int, Match] = {}
    order = sorted(candidates, key=lambda c: (c.contribution_id in excluded,
                                              presentation_flaws(texts[c.contribution_id], vocabulary),
                                              c.contribution_id))
    kept_hash: dict[str, int] = {}
    for c in order if exact else ():
        cid = c.contribution_id
        earlier = next((k for k in kept if c.content_hash in k.hashes), None)
        if earlier is not None:
            found[cid] = Match(earlier.code, earlier.hashes[c.content_hash], 1.0, exact=True)
        elif c.content_hash in kept_hash:
            found[cid] = Match("in_batch", kept_hash[c.content_hash], 1.0, exact=True)
        elif cid not in excluded:
            kept_hash[c.content_hash] = cid
    if not near:
        return found
    base = next((k.index for k in kept if k.index is not None), None)
    params = ({"num_perm": base.num_perm, "shingle_size": base.shingle_size, "seed": base.seed}
              if base is not None else {})
    scratch = NearDuplicateIndex(threshold=min(threshold, 0.95), **params)
    todo = [c for c in order if c.contribution_id not in found]
    for c, sig in zip(todo, scratch.signatures([texts[c.contribution_id] for c in todo])):
        cid = c.contribution_id
        if sig is None:
            continue
        match = _near_match(texts[cid], sig, kept, threshold, max_inserted_words)
        if match is None and within_batch:
            for key, sim in scratch.query_signature(sig, threshold):
                if substantive_difference(texts[cid], texts[key], max_inserted_words) is None:
                    match = Match("in_batch", key, sim)
                    break
        if match is not None:
            found[cid] = match
        elif within_batch and cid not in excluded:
            scratch._insert(cid, sig)
    return found


def _near_match(text: str, sig, kept: Sequence[KeptRecords], threshold: float,
                max_inserted_words: int) -> Match | None:
    for pool in kept:
        if pool.index is None:
            continue
        for key, sim in pool.index.query_signature(sig, threshold):
            other = pool.texts.get(key)
            if other is None or substantive_difference(text, other, max_inserted_words) is None:
                return Match(pool.code, key, sim)
    return None
