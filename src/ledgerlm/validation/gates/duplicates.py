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
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ledgerlm.validation.compiled import compiled
from ledgerlm.validation.gates.candidate import Candidate
from ledgerlm.validation.letter_bigrams import surprisal_bits_of_word
from ledgerlm.validation.near_duplicates import (
    NearDuplicateIndex,
    Normalised,
    band_keys,
    estimate_jaccard,
    normalise,
)
from ledgerlm.validation.span_hashes import POLY


@dataclass(frozen=True)
class Match:
    """A confirmed duplicate: what it copies and how strongly."""

    code: str  # in_datanet | in_pending | in_batch
    key: Hashable | None  # None: a kept record known only by its content hash
    similarity: float
    exact: bool = False


def _is_typo(a: str, b: str) -> bool:
    """One insertion, deletion or substitution inside a word of 4+ letters, or two adjacent letters swapped (`teh`); no digit touched.

    Digits carry identity (`md5` and `sha1`, `v2` and `v3`, years), so a changed digit is never a typo.
    """
    if a == b:
        return True
    if min(len(a), len(b)) < 3 or abs(len(a) - len(b)) > 1:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    # an edit at either end of a word is how identifiers and word forms vary (`spawnl`/`spawnle`,
    # `exists`/`lexists`): only a slip inside the word, or two swapped letters, is a typo
    inside = 0 < i < min(len(a), len(b)) - 1 and min(len(a), len(b)) >= 4
    if len(a) == len(b):
        if a[i + 1 :] == b[i + 1 :]:  # substitution
            return inside and not (a[i].isdigit() or b[i].isdigit())
        swapped = i + 1 < len(a) and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2 :] == b[i + 2 :]
        return swapped and not (a[i].isdigit() or a[i + 1].isdigit())
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return inside and longer[i + 1 :] == shorter[i:] and not longer[i].isdigit()


# words that turn a statement into its opposite, as `normalise` leaves them ("isn't" is "isn t")
_NEGATIONS = frozenset("not no never t nor neither nobody nothing none without cannot nicht kein keine nie pas ne "
                       "jamais non nunca nada não nao niet geen nooit не нет 不 没 沒 無".split())


# Pairs of equal words the word diff may visit: a fraction of a second of the compiled loop per level of its
# recursion. Ordinary records of thousands of words stay far below it (their commonest word is a few per cent).
MAX_DIFF_PAIRS = 10**8


def _negated(words, added: bool) -> str | None:
    """"is safe" and "is not safe" share every other word and say the opposite: a correction, not a copy."""
    negation = next((w for w in words if w in _NEGATIONS), None)
    return None if negation is None else f"{negation!r} {'added' if added else 'removed'}: it says the opposite"


def _too_many_added(changed: int, wa: list[str], wb: list[str], max_inserted_words: int) -> str | None:
    allowed = max(max_inserted_words, round(0.1 * min(len(wa), len(wb))))
    return f"{changed} words added or removed" if changed > allowed else None


def _bag_difference(wa: list[str], wb: list[str], a: Counter, b: Counter, max_inserted_words: int) -> str | None:
    """`substantive_difference` read from the words' counts `a` and `b` alone, in linear time."""
    added, removed = b - a, a - b
    return (_negated(added, True) or _negated(removed, False)
            or _too_many_added(sum(added.values()) + sum(removed.values()), wa, wb, max_inserted_words))


def substantive_difference(a: str, b: str, max_inserted_words: int = 5,
                           normalised: Mapping[str, str] | None = None) -> str | None:
    """Why two similar texts are different records (a substituted word, many added words), or None for a copy.

    `normalised`: `normalise` of the texts where a caller has it already.
    """
    na, nb = (normalise(a), normalise(b)) if normalised is None else (normalised[a], normalised[b])
    if na == nb:  # a copy that differs only in case, punctuation or spacing: nothing to diff
        return None
    wa, wb = na.split(), nb.split()
    # the longest-match search visits every pair of equal words (at each level of its recursion): two long
    # records made mostly of one word would hold the gate for minutes. Their words as multisets say enough:
    # a negation added or removed, or more words changed than a copy's edits. The equal pairs are at most
    # len(wa) x len(wb), so most pairs never count them.
    if len(wa) * len(wb) > MAX_DIFF_PAIRS:
        a, b = Counter(wa), Counter(wb)
        if sum(n * b[w] for w, n in a.items()) > MAX_DIFF_PAIRS:
            return _bag_difference(wa, wb, a, b, max_inserted_words)
    inserted = 0
    for tag, i1, i2, j1, j2 in _opcodes(na, nb):
        if tag == "equal":
            continue
        if tag in ("insert", "delete"):
            negated = _negated(wa[i1:i2] + wb[j1:j2], tag == "insert")
            if negated:
                return negated
            inserted += (i2 - i1) + (j2 - j1)
            continue
        old, new = wa[i1:i2], wb[j1:j2]
        # a swapped space splits or joins words ("the cat" / "thec at"): compare the letters
        if len(old) == len(new) and all(_is_typo(x, y) for x, y in zip(old, new)):
            continue
        if _is_typo("".join(old), "".join(new)):
            continue
        return f"{' '.join(old)[:40]!r} became {' '.join(new)[:40]!r}"
    return _too_many_added(inserted, wa, wb, max_inserted_words)


def _opcodes(na: str, nb: str) -> list[tuple[str, int, int, int, int]]:
    """`SequenceMatcher(None, na.split(), nb.split(), autojunk=False).get_opcodes()` of two normalised texts.

    `na` and `nb` are words joined by single spaces (`normalise`). A compiled loop numbers the
    words (equal words, equal numbers) and `_matching_blocks` runs difflib's own recursion over
    the numbers (the longest matching block, earliest in `na` then in `nb`, then the parts on
    either side), so the opcodes are the same, tag for tag.
    """
    codes = np.frombuffer(f"{na} {nb}".encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    numbers, n_a, n_numbers = _word_numbers(codes, len(na))
    answer = []
    i = j = 0
    for ai, bj, size in _matching_blocks(numbers[:n_a], numbers[n_a:], n_numbers).tolist():
        tag = "replace" if i < ai and j < bj else "delete" if i < ai else "insert" if j < bj else ""
        if tag:
            answer.append((tag, i, ai, j, bj))
        i, j = ai + size, bj + size
        if size:
            answer.append(("equal", ai, i, bj, j))
    return answer


@compiled
def _word_numbers(codes, split):
    """The words of `codes` (runs of code points other than a space) numbered in order of first
    appearance, equal words alike; with how many start before `split`, and how many numbers."""
    n = len(codes)
    starts = np.empty(n // 2 + 1, dtype=np.int64)
    lengths = np.empty(n // 2 + 1, dtype=np.int64)
    hashes = np.empty(n // 2 + 1, dtype=np.uint64)
    words = n_a = 0
    k = 0
    while k < n:
        if codes[k] == 32:
            k += 1
            continue
        begin = k
        h = np.uint64(0)
        while k < n and codes[k] != 32:
            h = h * np.uint64(POLY) + np.uint64(codes[k])
            k += 1
        starts[words], lengths[words], hashes[words] = begin, k - begin, h
        words += 1
        if begin < split:
            n_a = words
    size, bits = 2, 1
    while size < 2 * words:
        size, bits = size * 2, bits + 1
    table = np.full(size, -1, dtype=np.int64)  # slot -> the first word of its kind
    numbers = np.empty(words, dtype=np.int64)
    n_numbers = 0
    for w in range(words):
        j = np.int64((hashes[w] * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits))
        while True:
            first = table[j]
            if first < 0:
                table[j] = w
                numbers[w] = n_numbers
                n_numbers += 1
                break
            if hashes[first] == hashes[w] and lengths[first] == lengths[w]:
                same = True  # equal hashes are not yet equal words
                for t in range(lengths[w]):
                    if codes[starts[first] + t] != codes[starts[w] + t]:
                        same = False
                        break
                if same:
                    numbers[w] = numbers[first]
                    break
            j = (j + 1) & (size - 1)
    return numbers, n_a, n_numbers


@compiled
def _matching_blocks(a, b, n_words):
    """difflib's `get_matching_blocks` (no junk) over word numbers below `n_words`: (i, j, size)
    rows, adjacent blocks joined, ending with (len(a), len(b), 0)."""
    la, lb = len(a), len(b)
    # where each word stands in `b`, ascending: difflib's b2j
    b2j_start = np.zeros(n_words + 1, dtype=np.int64)
    for j in range(lb):
        b2j_start[b[j] + 1] += 1
    for w in range(n_words):
        b2j_start[w + 1] += b2j_start[w]
    b2j = np.empty(lb, dtype=np.int64)
    fill = b2j_start[:-1].copy()
    for j in range(lb):
        b2j[fill[b[j]]] = j
        fill[b[j]] += 1
    # difflib keeps the run length ending at each j of the previous row in a dict; here two rows
    # of an array, each entry valid only with the stamp of the (search, row) that wrote it
    run = np.zeros((2, lb + 1), dtype=np.int64)
    stamp = np.full((2, lb + 1), -1, dtype=np.int64)
    queue = np.empty((la + lb + 2, 4), dtype=np.int64)
    blocks = np.empty((la + lb + 2, 3), dtype=np.int64)
    queue[0, 0], queue[0, 1], queue[0, 2], queue[0, 3] = 0, la, 0, lb
    waiting, found, search = 1, 0, 0
    while waiting:
        waiting -= 1
        alo, ahi, blo, bhi = queue[waiting, 0], queue[waiting, 1], queue[waiting, 2], queue[waiting, 3]
        besti, bestj, bestsize = alo, blo, 0
        search += 1
        for i in range(alo, ahi):
            row, before = i & 1, (i - 1) & 1
            word = a[i]
            for t in range(b2j_start[word], b2j_start[word + 1]):
                j = b2j[t]
                if j < blo:
                    continue
                if j >= bhi:
                    break
                k = 1
                if j > 0 and stamp[before, j - 1] == search * (la + 1) + i - 1:
                    k = run[before, j - 1] + 1
                run[row, j] = k
                stamp[row, j] = search * (la + 1) + i
                if k > bestsize:
                    besti, bestj, bestsize = i - k + 1, j - k + 1, k
        while besti > alo and bestj > blo and a[besti - 1] == b[bestj - 1]:
            besti, bestj, bestsize = besti - 1, bestj - 1, bestsize + 1
        while besti + bestsize < ahi and bestj + bestsize < bhi and a[besti + bestsize] == b[bestj + bestsize]:
            bestsize += 1
        if bestsize:
            blocks[found, 0], blocks[found, 1], blocks[found, 2] = besti, bestj, bestsize
            found += 1
            if alo < besti and blo < bestj:
                queue[waiting, 0], queue[waiting, 1], queue[waiting, 2], queue[waiting, 3] = alo, besti, blo, bestj
                waiting += 1
            if besti + bestsize < ahi and bestj + bestsize < bhi:
                queue[waiting, 0], queue[waiting, 1] = besti + bestsize, ahi
                queue[waiting, 2], queue[waiting, 3] = bestj + bestsize, bhi
                waiting += 1
    # sorted by (i, j): blocks never overlap in `a`, so their starts in `a` differ
    order = np.argsort(blocks[:found, 0])
    out = np.empty((found + 1, 3), dtype=np.int64)
    n_out = 0
    i1 = j1 = k1 = 0
    for t in range(found):
        i2, j2, k2 = blocks[order[t], 0], blocks[order[t], 1], blocks[order[t], 2]
        if i1 + k1 == i2 and j1 + k1 == j2:
            k1 += k2
        else:
            if k1:
                out[n_out, 0], out[n_out, 1], out[n_out, 2] = i1, j1, k1
                n_out += 1
            i1, j1, k1 = i2, j2, k2
    if k1:
        out[n_out, 0], out[n_out, 1], out[n_out, 2] = i1, j1, k1
        n_out += 1
    out[n_out, 0], out[n_out, 1], out[n_out, 2] = la, lb, 0
    return out[: n_out + 1]


_SHOUTING = re.compile(r"\b[A-Z]{2,}\b")
_WORDS = re.compile(r"\w+", re.UNICODE)


_NOT_LETTERS = bytes(c for c in range(128) if not chr(c).isalpha())
_NOT_CAPITALS = bytes(c for c in range(128) if not chr(c).isupper())


def _letters_and_capitals(text: str) -> tuple[int, int]:
    """How many characters are letters and how many capitals (`str.isalpha` / `str.isupper`)."""
    if text.isascii():  # byte deletion in C instead of a Python call per character
        raw = text.encode("ascii")
        return len(raw.translate(None, _NOT_LETTERS)), len(raw.translate(None, _NOT_CAPITALS))
    return sum(map(str.isalpha, text)), sum(map(str.isupper, text))


def presentation_flaws(text: str, vocabulary: Counter) -> float:
    """How defaced a text looks: shouting, no capitals, no sentence punctuation, doubled spaces, one-off words."""
    words = _WORDS.findall(text)
    if not words:
        return 10.0
    letters, upper = _letters_and_capitals(text)
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
            bits, pairs = surprisal_bits_of_word(w)
            flaws += 0.02 * bits * pairs
    return flaws


@dataclass
class KeptRecords:
    """Records a Datanet already keeps (accepted, or pending from an earlier upload) that new copies lose to."""

    code: str  # in_datanet | in_pending
    hashes: dict[str, Hashable | None]  # content hash -> key
    keys: list[Hashable]  # one per signature row
    signatures: np.ndarray  # MinHash signatures, (len(keys) x num_perm)
    texts: dict[Hashable, str]  # key -> text, for the word diff; a key without text counts as a copy


# An LSH bucket holding more rows than this is not compared pair by pair: templated records (one sentence with a
# number changed) all share their bands, and 20,000 of them in one upload made 125 million pairs (60 GiB) and stopped
# every round of the Datanet. In such a bucket each row meets the BUCKET_WINDOW rows nearest it in each of
# BUCKET_ORDERS orders of the rows' band keys (each led by another band), where rows that agree on most bands
# (near-duplicates) sit together: a copy that differs from its original in one leading band is still met in the
# others' orders. The bound is on purpose: an uploader who pads a bucket can hide a copy that differs from its
# original in every leading band, which the owner's review and the validators still see.
MAX_BUCKET_PAIRWISE = 64
BUCKET_WINDOW = 8
BUCKET_ORDERS = 4


def candidate_pairs(keys: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
    """(i, j) rows that share an LSH band key: within `keys` (i < j), or between `keys` and `other`; sorted, each
    once. In a bucket past `MAX_BUCKET_PAIRWISE` rows, only each row's nearest (see there)."""
    n = len(keys)
    every = keys if other is None else np.concatenate([keys, other])
    flat = np.ascontiguousarray(every).ravel()
    width = every.shape[1] if every.ndim == 2 else 1
    orders = min(BUCKET_ORDERS, width)
    rank = np.empty((orders, len(every)), dtype=np.int64)
    for k in range(orders):  # order k: the band keys compared from band k * width // orders on, round the row
        lead = k * width // orders
        columns = [*range(lead, width), *range(lead)]
        if len(every):
            rank[k, np.lexsort(every[:, columns].T[::-1])] = np.arange(len(every))
    return _shared_key_pairs(flat, np.argsort(flat), width, n, other is not None, rank,
                             MAX_BUCKET_PAIRWISE, BUCKET_WINDOW)


@compiled
def _shared_key_pairs(flat, order, width, n, across, rank, most, window):
    """Every pair of rows (row = `width` consecutive keys of `flat`) that share a key, as sorted
    unique (i, j), i < j; with `across`, only pairs of a row below `n` and one from `n` on, the
    second numbered from `n`. `order` sorts `flat`. A bucket of more than `most` rows pairs each row with the
    `window` rows on either side of it in each of `rank`'s orders only (with `across`: the `window` nearest of
    the other side, looked for among at most 4 x `window` rows each way)."""
    n_rows = len(flat) // width if width else 0
    members = np.empty(len(flat), dtype=np.int64)
    codes = np.empty(0, dtype=np.int64)
    found = 0  # first count the pairs, then write them
    for sweep in range(2):
        if sweep:
            codes = np.empty(found, dtype=np.int64)
            found = 0
        start = 0
        while start < len(order):
            stop = start + 1
            while stop < len(order) and flat[order[stop]] == flat[order[start]]:
                stop += 1
            if stop - start > 1:
                size = 0
                for t in range(start, stop):
                    members[size] = order[t] // width
                    size += 1
                group = np.unique(members[:size])
                if len(group) <= most:
                    for x in range(len(group)):
                        for y in range(x + 1, len(group)):
                            i, j = group[x], group[y]
                            if across and not (i < n <= j):
                                continue
                            if sweep:
                                codes[found] = i * n_rows + (j - n if across else j)
                            found += 1
                else:
                    for k in range(rank.shape[0]):
                        near = group[np.argsort(rank[k][group])]
                        for x in range(len(near)):
                            if across and near[x] >= n:
                                continue
                            for direction in (1, -1):
                                if direction == -1 and not across:
                                    break  # within one side each pair is met from its lower position
                                taken = 0
                                y = x + direction
                                looked = 0
                                while 0 <= y < len(near) and taken < window and looked < 4 * window:
                                    looked += 1
                                    other = near[y]
                                    y += direction
                                    if across:
                                        if other < n:
                                            continue
                                        i, j = near[x], other
                                    else:
                                        i, j = min(near[x], other), max(near[x], other)
                                    taken += 1
                                    if sweep:
                                        codes[found] = i * n_rows + (j - n if across else j)
                                    found += 1
            start = stop
    codes = np.unique(codes)
    out = np.empty((len(codes), 2), dtype=np.int64)
    for t in range(len(codes)):
        out[t, 0], out[t, 1] = codes[t] // n_rows, codes[t] % n_rows
    return out


def find_duplicates(
    candidates: Sequence[Candidate],
    texts: dict[int, str],
    excluded: set[int],
    kept: Sequence[KeptRecords],
    sketch: NearDuplicateIndex,
    *,
    exact: bool,
    near: bool,
    within_batch: bool,
    threshold: float,
    max_inserted_words: int,
    normalised: Normalised | None = None,
) -> dict[int, Match]:
    """The duplicate findings for a batch: contribution id -> the record it copies.

    `sketch` supplies the MinHash parameters (those of the kept records' signatures). `excluded`
    holds ids another gate already rejects: they never survive a duplicate group, so the copy
    that stays is one the gates accept. `normalised`: texts already folded for the word diff.
    """
    found: dict[int, Match] = {}
    normalised = Normalised() if normalised is None else normalised
    if exact:
        groups: dict[str, list[Candidate]] = {}
        holder: dict[str, KeptRecords] = {}  # content hash -> the first pool of `kept` that holds it
        for pool in reversed(kept):
            holder.update(dict.fromkeys(pool.hashes, pool))
        for c in candidates:
            earlier = holder.get(c.content_hash)
            if earlier is not None:
                found[c.contribution_id] = Match(earlier.code, earlier.hashes[c.content_hash], 1.0, exact=True)
            else:
                groups.setdefault(c.content_hash, []).append(c)
        for group in groups.values():
            if len(group) > 1:
                # exact copies look alike: the first one another gate accepts stays
                survivor = min(group, key=lambda c: (c.contribution_id in excluded, c.contribution_id))
                for c in group:
                    if c is not survivor:
                        found[c.contribution_id] = Match("in_batch", survivor.contribution_id, 1.0, exact=True)
    if not near:
        return found
    todo = [c for c in candidates if c.contribution_id not in found]
    signatures, present = sketch.signature_matrix([texts[c.contribution_id] for c in todo])
    todo = [c for c, ok in zip(todo, present) if ok]
    signatures = signatures[present]
    keys = band_keys(signatures, threshold) if len(todo) else np.zeros((0, 1), dtype=np.uint64)

    for pool in kept:
        if not len(pool.keys) or not len(todo):
            continue
        pairs = candidate_pairs(keys, band_keys(pool.signatures, threshold))
        if not len(pairs):
            continue
        sims = estimate_jaccard(signatures[pairs[:, 0]], pool.signatures[pairs[:, 1]])
        for (i, j), sim in sorted(zip(pairs.tolist(), sims.tolist()), key=lambda p: (p[0][0], -p[1], p[0][1])):
            cid = todo[i].contribution_id
            if sim < threshold or cid in found:
                continue
            other = pool.texts.get(pool.keys[j])
            if other is None or substantive_difference(texts[cid], other, max_inserted_words, normalised) is None:
                found[cid] = Match(pool.code, pool.keys[j], sim)
    if not within_batch:
        return found

    rest = [i for i, c in enumerate(todo) if c.contribution_id not in found]
    pairs = candidate_pairs(keys[rest]) if len(rest) > 1 else np.zeros((0, 2), dtype=np.int64)
    rest_ids = np.asarray(rest)
    edges: dict[int, dict[int, float]] = {}
    if len(pairs):
        a, b = rest_ids[pairs[:, 0]], rest_ids[pairs[:, 1]]
        sims = estimate_jaccard(signatures[a], signatures[b])
        for i, j, sim in zip(a.tolist(), b.tolist(), sims.tolist()):
            ci, cj = todo[i].contribution_id, todo[j].contribution_id
            if sim >= threshold and substantive_difference(texts[ci], texts[cj], max_inserted_words,
                                                           normalised) is None:
                edges.setdefault(ci, {})[cj] = sim
                edges.setdefault(cj, {})[ci] = sim
    if not edges:
        return found
    # within each group of copies the earliest contributor's best-presented copy another gate accepts
    # stays; the rest name a kept copy they were confirmed against. Between contributors the earlier
    # upload wins: a pending record is readable, so a tidier copy uploaded after it must not take its
    # place (and get its author's bond slashed); a contributor's own copies are ranked by presentation.
    # words counted across the copies only: a typo is the copy's own word, the original's word
    # is the other copy's, and letter-pair surprisal tells which of the two is the slip
    vocabulary = Counter(w for cid in edges for w in normalised[texts[cid]].split())
    author = {c.contribution_id: c.contributor for c in todo}
    first_of: dict[tuple[int, str], int] = {}  # (group of copies, contributor) -> their earliest copy in it
    group_of: dict[int, int] = {}
    for start in sorted(edges):
        if start in group_of:
            continue
        stack = [start]
        group_of[start] = start
        while stack:
            for other in edges[stack.pop()]:
                if other not in group_of:
                    group_of[other] = start
                    stack.append(other)
    for cid in sorted(edges):
        first_of.setdefault((group_of[cid], author.get(cid, "")), cid)
    members = sorted(edges, key=lambda cid: (cid in excluded, first_of[(group_of[cid], author.get(cid, ""))],
                                             presentation_flaws(texts[cid], vocabulary), cid))
    survivors: list[int] = []
    for cid in members:
        confirmed = [(sim, other) for other, sim in edges[cid].items() if other in survivors]
        if confirmed:
            sim, other = max(confirmed, key=lambda p: (p[0], -p[1]))
            found[cid] = Match("in_batch", other, sim)
        elif cid not in excluded:
            survivors.append(cid)
    return found
