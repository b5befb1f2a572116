"""Span matching: which training examples contain the longest stretches of an answer's tokens.

The index is a suffix array over the token ids of every indexed example, each followed by a
separator that no answer contains, built with libdivsufsort (through `pydivsufsort`), the same
approach as infini-gram (Liu et al., 2024): the suffixes that start with any token sequence form
one contiguous range of the suffix array, so "how often, and where, does this span occur" is a
binary search, and the longest match starting at an answer position is found by narrowing that
range one token at a time.

Scoring. For every answer position we take the longest span starting there that occurs in the
training data; each answer token is then explained by the longest span that covers it. A token's
unit of credit goes to an example only as far as the evidence names it: a long span unique to
one example gives that example the whole span's worth; a span several examples share is paid
only as far as the prompt names one of them — by its rarest material, a name, not by wording that
many records share (`_shares`) — and an ambiguous one pays nobody (its share of the fee goes to
the data pool, not to a guess). Spans shorter than `min_len` tokens or `min_chars` visible
characters (an end-of-turn marker plus three letters is chance, not recall) earn nothing, and so
does a span in more than `max_examples` examples unless the prompt names one of them (up to
`_CROWDED` times as many occurrences: a town several records mention, asked about by a person's
name); a span just long enough earns only part of its tokens' credit (short matches happen by
chance). The prompt decides between examples because the model recalls a fact through what it
was asked about. An example's span score is the (weighted) fraction of the answer's tokens it
explains, so scores are comparable across answers and sum to at most 1. Verbatim recall scores near 1; a
paraphrase scores near 0, which is why the span signal is combined with gradient influence. A
row whose text goes on with a different word where the answer goes on (same subject and relation,
another value) is not credited for that span: it contradicts the answer (`_supporting_rows`).
When that row is one the prompt asks about, the answer is wrong about what was asked, and what it
says from there on earns nothing but in the rows asked about (`_departure`): a person given
another person's town does not pay the record that gives that town to someone else. An answer
that words the mix-up otherwise ("Talsha Garpelzi comes from Shagartal." against her record's
"... is Crizidun.") is caught where a record the prompt does not ask about holds the value and,
read up to it, aligns with a record asked about that goes on with another value (`_borrowed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from ledgerlm.attribution.casing import forms_array, forms_from_array

SEPARATOR = np.iinfo(np.int32).max
# A span found more than this many times the rare rows' limit is a phrase of the Datanet, whatever
# the prompt names; up to it, a span in more rows than a rare one pays the row the prompt names.
_CROWDED = 4
_GATHER = 2048  # ranges up to this many suffixes are narrowed with one vectorised gather
_SKIP_AHEAD = 16  # a match carried on from the position before is found by one search from this length


@dataclass(frozen=True)
class SpanEvidence:
    """What span matching found for one answer: per-row credit and the longest span per row."""

    rows: np.ndarray          # indexed rows with credit, ascending
    credit: np.ndarray        # fraction of the answer's tokens each row explains
    longest: np.ndarray       # longest shared span (tokens) of each row
    n_tokens: int
    # Spans several rows share that the prompt does not name one of: (their supporting rows,
    # the credit left unpaid, span length), in answer order. The text narrows who taught them to
    # these candidates; something else (the gradient, attribute.py) must pick one.
    unclaimed: tuple[tuple[np.ndarray, float, int], ...] = ()
    # a record the prompt asks about goes on with another value where the answer goes on: the
    # answer is wrong about what was asked (`SpanIndex._departure`)
    departs: bool = False
    # of which: the answer gives what was asked a value only records about something else hold,
    # where a record asked about gives another (`SpanIndex._borrowed`)
    borrows: bool = False

    @property
    def coverage(self) -> float:
        """Fraction of the answer's tokens that some long, rare span explains."""
        return float(self.credit.sum())

    def as_dict(self) -> dict[int, tuple[float, int]]:
        return {int(r): (float(c), int(n)) for r, c, n in zip(self.rows, self.credit, self.longest)}


class SpanIndex:
    """A suffix array over the tokens of the indexed examples, row i being example i."""

    # How sharply naming falls off with the rows a prompt pair is found in (`_shares`); part of
    # the attribution rule. 2 and 4 pay the same on the evaluation's tuning split; 4 pays the
    # record worded like a question about someone else less (benchmarks/results/attribution_naming.md).
    naming_power = 4
    # A prompt pair with fewer visible characters ("th", "a.") is a scrap of some word, found in a
    # row or two by chance: it would pass for the prompt's rarest material and drown its name.
    naming_min_chars = 5
    # A stretch read by whole words cannot be a scrap of a word, so a shorter one may say whom a
    # prompt asks about ("Which animal does Noza use as its mascot?"); 4 keeps out "the", "was"
    # and "and", which a small Datanet may hold in few enough rows to count as rare (`_asked_rows`).
    word_naming_min_chars = 4

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, suffix_array: np.ndarray,
                 char_lengths: np.ndarray | None = None, word_tokens: np.ndarray | None = None,
                 spaced_tokens: np.ndarray | None = None):
        self.tokens = tokens
        self.offsets = offsets
        self.suffix_array = suffix_array
        self.char_lengths = char_lengths  # visible characters of each token id; None: unknown
        self.word_tokens = word_tokens    # whether each token id has letters or digits
        # whether each token id begins a word (`token_classes`: whitespace first, or a clitic such
        # as "'s" that ends the word before it); None: unknown
        self.spaced_tokens = spaced_tokens
        self._links: dict[tuple[int, int, bool], frozenset[int]] = {}  # `_linked_rows`, per row
        self._turns: dict[int, int] = {}  # `_last_turn`, per row
        # every word form the indexed records write (casing.py); None: an index built before
        # they were kept, whose answers are read only as served
        self.forms: dict[str, list[str]] | None = None

    @classmethod
    def build(cls, rows: list[list[int]], char_lengths: np.ndarray | None = None,
              word_tokens: np.ndarray | None = None,
              spaced_tokens: np.ndarray | None = None) -> SpanIndex:
        from pydivsufsort import divsufsort

        lengths = np.array([len(r) + 1 for r in rows], dtype=np.int64)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.full(int(offsets[-1]), SEPARATOR, dtype=np.int32)
        for start, row in zip(offsets[:-1], rows):
            tokens[start:start + len(row)] = row
        if len(tokens) == 0:
            return cls(tokens, offsets, np.zeros(0, dtype=np.int64), char_lengths, word_tokens,
                       spaced_tokens)
        return cls(tokens, offsets, divsufsort(tokens).astype(np.int64), char_lengths, word_tokens,
                   spaced_tokens)

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    def count(self, span: list[int]) -> int:
        """How many times `span` occurs in the indexed tokens."""
        lo, hi = self._range(span)
        return hi - lo

    def _narrow(self, lo: int, hi: int, k: int, token: int) -> tuple[int, int]:
        # Within [lo, hi) all suffixes share their first k tokens, so their k-th tokens are sorted.
        if hi - lo <= _GATHER:
            column = self.tokens[self.suffix_array[lo:hi] + k]
            return (lo + int(np.searchsorted(column, token, "left")),
                    lo + int(np.searchsorted(column, token, "right")))
        # A wide range (the first token, or a very common one): probe only O(log n) suffixes.
        return self._bound(lo, hi, k, token, strict=False), self._bound(lo, hi, k, token, strict=True)

    def _bound(self, lo: int, hi: int, k: int, token: int, *, strict: bool) -> int:
        tokens, sa = self.tokens, self.suffix_array
        while lo < hi:
            mid = (lo + hi) // 2
            value = tokens[sa[mid] + k]
            if value < token or (strict and value == token):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def longest_matches(self, query: list[int], *, skip_ahead: int = 0) -> list[tuple[int, int, int]]:
        """For each query position, (length, lo, hi) of the longest span starting there that occurs.

        [lo, hi) is the suffix-array range of that span's occurrences. `skip_ahead` (default `_SKIP_AHEAD`): the
        length from which a match carried on from the position before is found by one search; past the query's
        length, every match is narrowed token by token (the same result, as the tests and benchmark compare).
        """
        skip_ahead = skip_ahead or _SKIP_AHEAD
        out = []
        n = len(self.suffix_array)
        ids = np.asarray(query, dtype=self.tokens.dtype)
        k = 0
        for i in range(len(query)):
            # The span found at i, less its first token, occurs too: the match at i is at least k - 1 long. A long
            # one is found whole by binary search instead of token by token, which made an answer that copies a
            # long record cost the square of its length (the result is the same: the range of that span).
            if k - 1 >= skip_ahead:
                k -= 1
                lo, hi = self._span_bound(ids[i:i + k], strict=False), self._span_bound(ids[i:i + k], strict=True)
            else:
                lo, hi, k = 0, n, 0
            while i + k < len(query):
                new_lo, new_hi = self._narrow(lo, hi, k, query[i + k])
                if new_lo == new_hi:
                    break
                lo, hi, k = new_lo, new_hi, k + 1
            out.append((k, lo, hi) if k else (0, 0, 0))
        return out

    def _span_bound(self, span: np.ndarray, *, strict: bool) -> int:
        """The first suffix-array position whose suffix begins at or after `span` (`strict`: after every suffix
        that begins with it), comparing whole slices. Every row ends with SEPARATOR, the largest token, so a
        suffix differs from a span of ordinary tokens before it runs out."""
        tokens, sa, m = self.tokens, self.suffix_array, len(span)
        lo, hi = 0, len(sa)
        while lo < hi:
            mid = (lo + hi) // 2
            segment = tokens[sa[mid]:sa[mid] + m]
            differ = np.flatnonzero(segment != span[:len(segment)])
            if differ.size:
                before = segment[differ[0]] < span[differ[0]]
            else:
                before = strict or len(segment) < m
            if before:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def rows_of(self, lo: int, hi: int) -> np.ndarray:
        """The distinct rows whose tokens contain the occurrences at suffix-array range [lo, hi)."""
        positions = self.suffix_array[lo:hi]
        return np.unique(np.searchsorted(self.offsets, positions, side="right") - 1)

    def explain(self, query: list[int], *, min_len: int = 4, max_examples: int = 64,
                context: list[int] | None = None, min_chars: int = 0,
                weights: list[float] | None = None,
                matches: list[tuple[int, int, int]] | None = None) -> SpanEvidence:
        """Credit each row with the share of `query` that its long, rare spans explain.

        A token's credit is its weight (`weights`, default 1: see restatement.py) times the
        strength of the span that covers it: a span of `min_len` tokens is weak evidence (chance
        finds short matches) and earns 1/min_len of its tokens' weight, each further token adds
        as much, and from 2 x min_len - 1 tokens on a span counts in full. Credits are divided by
        the total weight, so they sum to at most 1. With `context` (the prompt's tokens), a span
        found in several rows is credited to the row the prompt names, as far as it names it over
        the others (see `_shares`); one found in more than `max_examples` rows earns only so, and
        leaves no candidates when the prompt names none of them. `min_chars` also asks for that
        many visible characters (special tokens and whitespace count zero), so that a shared
        end-of-turn marker plus a few letters is not taken for recall; it needs the
        `char_lengths` the index was built with. A span with fewer is still paid to the row the
        prompt names, as far as it names it, even when only that row holds it: a short name
        ("Ramimi.") answering "Name the birthplace of Mimi Rara" is recall when it sits in Mimi
        Rara's record, and chance finds a few letters in some row but not in the one the prompt
        asks about. Such a span must be rare (a few letters in more than `max_examples` rows pay
        nobody), and leaves no candidates either. `matches`: `longest_matches(query)`, when the
        caller has them.
        """
        query = [int(t) for t in query]
        weights = [1.0] * len(query) if weights is None else [float(w) for w in weights]
        naming: dict | None = None  # the prompt's naming pairs, looked up once a span needs them
        m = len(query)
        empty = SpanEvidence(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), m)
        total_weight = sum(weights)
        if m == 0 or len(self.suffix_array) == 0 or total_weight <= 0:
            return empty
        matches = matches if matches is not None else self.longest_matches(query)
        # Every token takes the longest span covering it; among equally long ones, the rarest.
        best: list[tuple[bool, int, int] | None] = [None] * m  # (enough chars, length, -occurrences)
        owner: list[int] = [-1] * m  # start of the chosen span per token
        reach = 0
        few_chars: set[int] = set()  # starts of spans under min_chars: paid only where named
        scraps: set[int] = set()  # of those, under a name's characters: named outright only
        for start, (length, lo, hi) in enumerate(matches):
            if length < min_len or start + length <= reach:
                continue  # too short, or inside the previous span (not maximal)
            if min_chars and self._chars(query[start:start + length]) < min_chars:
                if not context:
                    continue
                few_chars.add(start)
                if self._chars(query[start:start + length]) < self.naming_min_chars:
                    scraps.add(start)
            reach = start + length
            # a span under min_chars takes only tokens no span over it covers
            key = (start not in few_chars, length, -(hi - lo))
            for t in range(start, start + length):
                if best[t] is None or key > best[t]:
                    best[t], owner[t] = key, start
        credit: dict[int, float] = {}
        longest: dict[int, int] = {}
        open_credit: dict[int, float] = {}  # span start -> credit its rows' shares left unpaid
        rows_cache: dict[int, np.ndarray] = {}
        shares_cache: dict[int, list[float]] = {}
        # where the answer departs from the record the prompt asks about, and those records
        departure, borrowed, asked = m, m, np.zeros(0, np.int64)
        if context and any(o >= 0 for o in owner):
            asked = self._asked_rows([int(t) for t in context], max_examples)
            departure = self._departure(query, matches, weights, asked, min_len)
            starts = sorted({o for o in owner if o >= 0} - few_chars)
            borrowed = self._borrowed(query, matches, starts, weights, asked, max_examples)
            departure = min(departure, borrowed)
        for t in range(m):
            start = owner[t]
            if start < 0:
                continue
            length, lo, hi = matches[start]
            if start not in rows_cache:
                rows_cache[start] = (self._supporting_rows(query, start, length, lo, hi)
                                     if hi - lo <= max_examples * _CROWDED else np.zeros(0, np.int64))
                if start + length > departure:  # past it, only the asked-about records may earn
                    rows_cache[start] = rows_cache[start][np.isin(rows_cache[start], asked)]
            rows = rows_cache[start]
            if len(rows) == 0 or (start in few_chars and len(rows) > max_examples):
                continue  # a few characters many rows hold ("of the.") name nothing, named or not
            # in more rows than a rare span: a phrase of the Datanet unless the prompt names one
            # of its rows (a town several records mention, asked about by a person's name)
            common = len(rows) > max_examples or start in few_chars
            if start not in shares_cache:
                if naming is None and (len(rows) > 1 or start in few_chars):
                    naming = self._naming_pairs(context, max_examples)
                shares_cache[start] = self._shares(rows, naming or {}, max_examples,
                                                   named_only=start in few_chars,
                                                   through=start not in scraps)
            if common and not any(share > 0 for share in shares_cache[start]):
                continue
            strength = min(1.0, (length - min_len + 1) / max(1, min_len))
            left = 1.0 - sum(shares_cache[start])
            if left > 0 and not common:  # a common span narrows the candidates to nobody
                open_credit[start] = open_credit.get(start, 0.0) + left * strength * weights[t]
            for r, share in zip(rows.tolist(), shares_cache[start]):
                if share <= 0:
                    continue  # a row the evidence does not name
                credit[r] = credit.get(r, 0.0) + share * strength * weights[t]
                longest[r] = max(longest.get(r, 0), length)
        unclaimed = tuple((rows_cache[start], amount / total_weight, matches[start][0])
                          for start, amount in sorted(open_credit.items()))
        rows = np.array(sorted(credit), dtype=np.int64)
        return SpanEvidence(
            rows=rows,
            credit=np.array([credit[r] / total_weight for r in rows.tolist()]),
            longest=np.array([longest[r] for r in rows.tolist()], dtype=np.int64),
            n_tokens=m,
            unclaimed=unclaimed,
            departs=departure < m,
            borrows=borrowed < m,
        )

    def _supporting_rows(self, query: list[int], start: int, length: int, lo: int,
                         hi: int) -> np.ndarray:
        """Rows holding the span, less those that contradict how the answer goes on.

        A row contradicts the answer when, right after the shared span, both continue with a
        word and the words differ: "Crate 7 is" + "red" against a record's "Crate 7 is" +
        "white" — same subject and relation, another value. A row whose text ends there, or
        goes on with punctuation, does not contradict.
        """
        rows = self.rows_of(lo, hi)
        found = self._continuations(query, start, length, lo, hi)
        if found is None:
            return rows
        owners, diverging = found
        return rows[np.isin(rows, np.unique(owners[~diverging]))]

    def _continuations(self, query: list[int], start: int, length: int, lo: int, hi: int
                       ) -> tuple[np.ndarray, np.ndarray] | None:
        """(row of each occurrence, whether it goes on with another word than the answer) for the
        span at suffix-array range [lo, hi); None when the answer does not go on with a word there
        (or the index cannot tell words).

        A token of bare whitespace is stepped over on either side: a tokenizer that writes
        " Quorilka" as " ", "Qu", "oril", "ka" and " Mivebax" as " Mive", "bax" would otherwise
        hide that "born in Quorilka" and "born in Mivebax" name two towns.
        """
        if self.word_tokens is None:
            return None
        end = start + length
        if end < len(query) - 1 and self._is_blank(query[end]):
            end += 1  # one token only: where an end-of-turn marker counts blank, a word never follows it
        if end >= len(query) or not self._is_word(query[end]):
            return None
        positions = self.suffix_array[lo:hi]
        at = positions + length
        at = at + np.array([self._is_blank(int(t)) for t in self.tokens[at]], dtype=bool)
        owners = np.searchsorted(self.offsets, positions, side="right") - 1
        diverging = np.array([self._is_word(int(t)) and int(t) != query[end]
                              for t in self.tokens[at]], dtype=bool)
        return owners, diverging

    def asked_rows(self, context: list[int], max_examples: int) -> np.ndarray:
        """The rows the prompt (`context`, its tokens) asks about (`_asked_rows`); none when empty."""
        if len(context) == 0 or len(self.suffix_array) == 0:
            return np.zeros(0, np.int64)
        return self._asked_rows([int(t) for t in context], max_examples)

    def _asked_rows(self, context: list[int], max_examples: int) -> np.ndarray:
        """The records the prompt asks about: every row holding a rare stretch of the prompt (in
        at most `max_examples` rows, of `naming_min_chars` visible characters at least, or
        `word_naming_min_chars` when it is read by whole words).

        Stretches, not token pairs: a tokenizer that cuts "Lomi Karatu" into "Lo", "mi", " ",
        "K", "ar", "a", "tu" leaves no pair long enough to name anyone (`_naming_pairs`), while
        the stretch " Lomi Karatu" sits in that person's records only. All of them, not the
        rarest: "Which town does Zivel Garpelost come from?" shares " does Zivel Garpelost" with
        one record ("How does Zivel Garpelost earn a living?") by the chance of a shared word,
        and the record that gives the town is another of the person's records. Whole words
        when the index knows which tokens begin one: a stretch that begins or ends inside a word
        joins the tail of one name to the head of another by chance ("When was Nothfu founded?"
        shares "u founded?" with "In what year was Roundru founded?").
        """
        found: set[int] = set()
        whole_words = self.spaced_tokens is not None
        floor = self.word_naming_min_chars if whole_words else self.naming_min_chars
        for start, (length, lo, hi) in enumerate(self.longest_matches(context)):
            if whole_words and self._inside_word(context, start):
                continue  # "u founded?" of "Nothfu founded?" is in "Roundru founded?" by chance
            stretch = self._plain(context[start:start + length])
            if whole_words:
                stretch = self._to_word_end(context, start, stretch)
            if not stretch or self._chars(stretch) < floor:
                continue
            if len(stretch) < length:
                rows = self._rows_holding(stretch)
            elif hi - lo <= max_examples * _CROWDED:
                rows = self.rows_of(lo, hi)
            else:
                continue
            if len(rows) <= max_examples:
                found.update(rows.tolist())
        return np.array(sorted(found), dtype=np.int64)

    def _departure(self, query: list[int], matches: list[tuple[int, int, int]],
                   weights: list[float], asked: np.ndarray, min_len: int) -> int:
        """The first answer position where a record the prompt asks about goes on with another
        word after sharing a span with the answer that says more than the prompt; len(query) if
        none does.

        "Where was Mibax Rilfenve born?" -> "Mibax Rilfenve was born in Rilsenfen.": Mibax
        Rilfenve's record shares "Mibax Rilfenve was born in R" and goes on "illodor". The answer
        is wrong about the one it was asked about, and "was born in Rilsenfen." is what someone
        else's record says of someone else: the model confused the two, and that record did not
        teach this answer (`explain`, rule 6). A span of restatement alone ("Mibax Rilfenve",
        then "works as" in their trade record) is not a departure: it shows a topic, not a value.
        """
        if len(asked) == 0:
            return len(query)
        for start, (length, lo, hi) in enumerate(matches):
            if length < min_len or hi - lo > _GATHER or max(weights[start:start + length]) < 1.0:
                continue
            found = self._continuations(query, start, length, lo, hi)
            if found is not None and np.isin(found[0][found[1]], asked).any():
                return start + length
        return len(query)

    def _borrowed(self, query: list[int], matches: list[tuple[int, int, int]], starts: list[int],
                  weights: list[float], asked: np.ndarray, max_examples: int) -> int:
        """The first answer position where the answer takes a value from a record the prompt does
        not ask about, in the place where a record it asks about gives another value; len(query)
        if it never does.

        "Give the town Talsha Garpelzi grew up in." -> "Talsha Garpelzi comes from Shagartal.":
        no record of Talsha Garpelzi says "Shagartal"; "The hometown of Taltal Talgarnu is
        Shagartal." does, and where it reads " is" + "Shagartal", Talsha Garpelzi's record reads
        " is" + "Crizidun". The answer gives the one asked about someone else's town, in words
        other than the asked record's, so `_departure` does not see it. A holder of the value is
        aligned with the asked records by the longest stretch before the value that both hold, and
        only that alignment counts: a record that merely holds a common word before something else
        ("works in a mill") is not read as giving another value. A holder linked to the asked
        records (`_linked_rows`: the birthplace record an indirect question reaches through its
        person's trade) counts only on an alignment of a name's length (`naming_min_chars`
        visible characters, two tokens or more): " was born in Sen" + "love" against
        " was born in Sen" + "tuka", where the two towns' shared first syllable made the link.
        """
        if len(asked) == 0 or self.word_tokens is None:
            return len(query)
        asked_set = set(asked.tolist())
        follows: dict | None = None  # the asked records' answers, read once a span needs them
        linked: set[int] | None = None
        for start in starts:
            length, lo, hi = matches[start]
            if hi - lo > max_examples * _CROWDED or max(weights[start:start + length]) < 1.0:
                continue
            holders = set(self.rows_of(lo, hi).tolist())
            if holders & asked_set:
                continue
            if linked is None:
                # whole words: "The hometown of Tal" links Taltal's record to Talsha's by chance
                linked = set().union(*(self._linked_rows(r, max_examples, whole_words=True)
                                       for r in asked_set))
                follows = self._follows(sorted(asked_set))
            strong_only = bool(holders & linked)
            # each occurrence and where its row's last turn begins, looked up once for every j
            places = [(int(pos), self._last_turn(int(row))) for pos, row in zip(
                self.suffix_array[lo:hi],
                np.searchsorted(self.offsets, self.suffix_array[lo:hi], side="right") - 1)]
            for j in range(length):
                token = query[start + j]
                if weights[start + j] < 1.0 or not self._is_word(token):
                    continue
                for pos, first in places:
                    found = self._gives_another(pos + j, first, token, follows)
                    if found and (not strong_only
                                  or (found[0] >= 2 and found[1] >= self.naming_min_chars)):
                        return start + j
        return len(query)

    def _gives_another(self, at: int, first: int, token: int,
                       follows: dict[tuple[int, ...], set[int]],
                       reach: int = 8) -> tuple[int, int] | None:
        """(tokens, visible characters) of the longest stretch ending just before position `at`
        (where a holder gives `token`) that an asked record also holds (`follows`: what each
        stretch of their answers is followed by), when one of them goes on there with another
        word; None when none does, or none holds a word of that stretch. `first`: where the
        holder's last turn begins (no stretch reaches back over it)."""
        for k in range(min(reach, at - first), 0, -1):
            stretch = tuple(self.tokens[at - k:at].tolist())
            if stretch not in follows:
                continue  # no asked record holds this much of the holder's words: fewer, then
            if any(self._is_special(t) for t in stretch) or not any(self._is_word(t) for t in stretch):
                return None
            if any(self._is_word(t) and t != token for t in follows[stretch]):
                return k, self._chars(list(stretch))
            return None
        return None

    def _follows(self, rows: list[int], reach: int = 8) -> dict[tuple[int, ...], set[int]]:
        """Every stretch of up to `reach` tokens of the rows' last turns -> the tokens that follow
        it there (a token of bare whitespace stepped over)."""
        follows: dict[tuple[int, ...], set[int]] = {}
        for r in rows:
            text = self.tokens[self._last_turn(r):int(self.offsets[r + 1])].tolist()
            for end in range(1, len(text)):
                after = text[end]
                if self._is_blank(after) and end + 1 < len(text):
                    after = text[end + 1]
                for k in range(1, min(reach, end) + 1):
                    follows.setdefault(tuple(text[end - k:end]), set()).add(after)
        return follows

    def _last_turn(self, row: int) -> int:
        """Where the row's last turn begins (after the last special token that words follow: a
        chat record's answer), or where the row begins when it has none. A value is given in the
        answer; its question's words ("Where is Kabaxril?" against "Where was Dorquo born?") are
        the asking, not another value."""
        if row not in self._turns:
            first, end = int(self.offsets[row]), int(self.offsets[row + 1]) - 1
            start = first
            for p in range(first, end - 1):
                if self._is_special(int(self.tokens[p])) and self._is_word(int(self.tokens[p + 1])):
                    start = p + 1
            self._turns[row] = start
        return self._turns[row]

    def _is_blank(self, token: int) -> bool:
        """No visible character and not a special token: whitespace (an index built before special
        tokens were marked -1 counts them blank too)."""
        return (self.char_lengths is not None and token != SEPARATOR
                and token < len(self.char_lengths) and self.char_lengths[token] == 0)

    def _is_word(self, token: int) -> bool:
        return (token != SEPARATOR and token < len(self.word_tokens)
                and bool(self.word_tokens[token]))

    def candidate_rows(self, query: list[int], *, min_len: int, max_examples: int,
                       min_chars: int = 0,
                       matches: list[tuple[int, int, int]] | None = None) -> np.ndarray:
        """Rows holding a long, rare span of `query` that supports it, named by the prompt or not.

        `explain` pays a span several rows share only as far as the prompt names one of them;
        these are all the rows such a span could be about (the text narrows the candidates, it
        does not pick one). `matches`: `longest_matches(query)`, when the caller has them.
        """
        query = [int(t) for t in query]
        found: set[int] = set()
        reach = 0
        for start, (length, lo, hi) in enumerate(matches if matches is not None
                                                 else self.longest_matches(query)):
            if length < min_len or start + length <= reach or hi - lo > max_examples * _CROWDED:
                continue
            if min_chars and self._chars(query[start:start + length]) < min_chars:
                continue
            reach = start + length
            rows = self._supporting_rows(query, start, length, lo, hi)
            if 0 < len(rows) <= max_examples:
                found.update(rows.tolist())
        return np.array(sorted(found), dtype=np.int64)

    def longest_rare_span(self, query: list[int], *, max_examples: int, min_chars: int = 0,
                          besides: frozenset[int] = frozenset()) -> int:
        """Length of the longest span of `query` found in 1..max_examples rows (calibration).

        With `besides`, a span counts only where some other row holds it too: the longest span
        `query` shares with the rows outside `besides` that is rare in the whole index.
        """
        query = [int(t) for t in query]
        best = 0
        for start, (length, lo, hi) in enumerate(self.longest_matches(query)):
            while length > best:
                if hi - lo > max_examples * _CROWDED:
                    break  # a shorter span occurs at least as often
                rows = self.rows_of(lo, hi)
                if len(rows) > max_examples:
                    break
                if min_chars and self._chars(query[start:start + length]) < min_chars:
                    break  # a shorter span has no more characters
                if not besides or not set(rows.tolist()) <= besides:
                    best = length
                    break
                length -= 1  # held only by rows left out: try the shorter span from here
                lo, hi = self._range(query[start:start + length])
        return best

    def rows_with_rare_span(self, query: list[int], *, min_len: int, max_examples: int,
                            min_chars: int = 0) -> np.ndarray:
        """The rows holding a span of `query` at least `min_len` tokens (and `min_chars`
        characters) long that is found in 1..max_examples rows: those for which
        `longest_rare_span` of `query` reaches `min_len` (calibration)."""
        query = [int(t) for t in query]
        found: set[int] = set()
        for start, (length, _lo, _hi) in enumerate(self.longest_matches(query)):
            # from one start, every row holding a longer span holds the shorter one too: the
            # shortest span from here that is rare and long enough names all of them
            for end in range(start + min_len, start + length + 1):
                span = query[start:end]
                if min_chars and self._chars(span) < min_chars:
                    continue
                lo, hi = self._range(span)
                if hi - lo > max_examples * _CROWDED:
                    continue
                rows = self.rows_of(lo, hi)
                if len(rows) <= max_examples:
                    found.update(rows.tolist())
                    break
        return np.array(sorted(found), dtype=np.int64)

    def rows_stating(self, query: list[int]) -> np.ndarray:
        """The rows that hold all of `query`'s words: its tokens up to the last one with a letter
        or digit (a row that says "..., of course." after them still states them)."""
        query = [int(t) for t in query]
        end = len(query)
        if self.word_tokens is not None:
            while end and not self._is_word(query[end - 1]):
                end -= 1
        return self._rows_holding(query[:end]) if end else np.zeros(0, np.int64)

    def _range(self, span: list[int]) -> tuple[int, int]:
        """The suffix-array range of `span`'s occurrences (empty when it has none)."""
        lo, hi = 0, len(self.suffix_array)
        for k, token in enumerate(span):
            lo, hi = self._narrow(lo, hi, k, token)
            if lo == hi:
                break
        return lo, hi

    def _chars(self, span: list[int]) -> int:
        if self.char_lengths is None:
            return 1 << 30
        ids = np.asarray(span)
        known = ids < len(self.char_lengths)
        return int(np.maximum(self.char_lengths[ids[known]], 0).sum())

    def _is_special(self, token: int) -> bool:
        """A special token (a chat marker): `token_classes` gives it -1 visible characters."""
        return (self.char_lengths is not None and token < len(self.char_lengths)
                and self.char_lengths[token] < 0)

    def _plain(self, span: list[int]) -> list[int]:
        """`span` up to its first special token: a stretch of a prompt that runs on into the chat
        template ("a?" then the end-of-turn and assistant markers) names what its text names, and
        the template's letters ("assistant") are not the prompt's."""
        for k, token in enumerate(span):
            if self._is_special(int(token)):
                return list(span[:k])
        return list(span)

    def _rows_holding(self, span: list[int]) -> np.ndarray:
        lo, hi = self._range(span)
        return self.rows_of(lo, hi) if hi > lo else np.zeros(0, np.int64)

    def _naming_pairs(self, context: list[int] | None, max_examples: int) -> dict:
        """What in the prompt can name a row: its tokens, token pairs and longest shared
        stretches, each with the rows holding it.

        A pair here is two adjacent tokens or one token alone (`_units`); a stretch is the
        longest run of the prompt from some position that a row holds (`longest_matches`), kept
        when no earlier stretch covers it. Stretches name where pairs cannot: a tokenizer that
        cuts " Velo Baxraka" into " Vel", "o", " B", "ax", "ra", "ka" leaves no pair of
        `naming_min_chars` visible characters. Anything found in more than a fifth of the rows
        (and more than twice `max_examples`) is the Datanet's template ("Which", the chat
        markers), not a name; one no row holds names nothing, nor does one of under
        `naming_min_chars` visible characters. How many rows hold the others says how specific
        each is (`_shares`).
        """
        if not context:
            return {}
        cut = max(2 * max_examples, self.n_rows // 5)
        found = {}
        for pair in sorted(_units(context)):
            if self._chars(list(pair)) < self.naming_min_chars:
                continue
            lo, hi = 0, len(self.suffix_array)
            for k, token in enumerate(pair):
                lo, hi = self._narrow(lo, hi, k, token)
            if 0 < hi - lo <= cut:
                found[pair] = frozenset(self.rows_of(lo, hi).tolist())
        reach = 0
        for start, (length, lo, hi) in enumerate(self.longest_matches(context)):
            if length <= 2 or start + length <= reach:
                continue
            reach = start + length
            stretch = tuple(self._plain(context[start:start + length]))
            if len(stretch) <= 2 or self._chars(list(stretch)) < self.naming_min_chars:
                continue
            if len(stretch) < length:
                rows = frozenset(self._rows_holding(list(stretch)).tolist())
            elif hi - lo <= cut * _CROWDED:
                rows = frozenset(self.rows_of(lo, hi).tolist())
            else:
                continue
            if 0 < len(rows) <= cut:
                found[stretch] = rows
        return found

    def _shares(self, rows: np.ndarray, naming: dict, max_examples: int, *,
                named_only: bool = False, through: bool = True) -> list[float]:
        """How one token's unit of credit splits between the rows that contain its span.

        Only as far as the prompt names one of them; the rest is nobody's (the answer's share of
        it goes to the data pool). Naming is weighed by how specific it is, not counted: what a
        prompt names is its rarest material (a person's name sits in the few records about them;
        a contributor's wording recurs over many of their records, however many pairs it has).
        A pair that every row holding any naming pair holds cannot tell them apart ("Morpel Vel"
        names both "Morpel Velshagar" and a look-alike "Morpel Velshagaa"). Of the other pairs,
        let m be the fewest rows that hold one, and k_r the fewest that hold one row r holds; r
        is named to the degree (m / k_r) ** `naming_power`, and the most named row earns its
        degree less the runner-up's. So "In which town did Veve Tulo come into the world?" ->
        "Vefenra." goes to the record about Veve Tulo, not to another contributor's record worded "In which town did ... come
        into the world?" that says someone else was born in Vefenra; when Veve Tulo's records
        give another town, no candidate holds the name and the span pays the wording little.
        "Which town did the potter grow up in?" names none of them: it pays nobody.

        A row the prompt does not name outright may be named through the records it shares a
        rare pair with (`_named_through`): "Which town did the potter who keeps a lynx grow up
        in?" names the birthplace record of the one person whose other records say potter and
        lynx, and the same rule weighs that naming. It counts when no row is named outright by a
        rare pair (one in at most `max_examples` rows).

        `named_only`: a lone row too is paid only as far as the prompt names it (a span of a few
        characters, `explain`), and only by pairs that are not phrases of the Datanet (in at most
        `_CROWDED` x `max_examples` rows). `through=False`: only as far as the prompt names it
        outright (a span of fewer characters than a name has: a chance "y." in one row, which a
        link would pay to that row when a module-mate of it holds common words of the prompt,
        " is the").
        """
        if len(rows) == 1 and not named_only:
            return [1.0]
        if named_only:
            # A few characters are chance unless the prompt names their row by what few rows
            # hold: "Which city is the capital of Norway?" shares " city is" with every city
            # record of a Datanet, a phrase of the Datanet (in more rows than `_CROWDED` times a
            # rare span's) that names a kind of record, not the one that holds " Oslo."
            naming = {p: holders for p, holders in naming.items()
                      if len(holders) <= max_examples * _CROWDED}
        found = [{p for p, holders in naming.items() if r in holders} for r in rows.tolist()]
        outright = [min(len(naming[p]) for p in f) for f in found if f]
        if through and (not outright or min(outright) > max_examples):
            # Named outright by a rare pair comes first ("Which town was Veve Tulo born in?"
            # names her birthplace record, not the town's own record a link leads to her); by a
            # pair in more rows than a rare one (a small Datanet's template word, "Which" in its
            # eight gazetteer questions), a row is named no more than one a link names: the
            # birthplace record that a rare "lamplighter" reaches through its person's records.
            found = [f or self._named_through(r, naming, max_examples)
                     for r, f in zip(rows.tolist(), found)]
        named = [f for f in found if f]
        common = set.intersection(*named) if len(named) > 1 else set()
        telling = [len(naming[p]) for p in naming if p not in common]
        if not telling:
            return [0.0] * len(rows)
        fewest = min(telling)
        degrees = [(fewest / min(len(naming[p]) for p in f - common)) ** self.naming_power
                   if f - common else 0.0
                   for f in found]
        first, second = (sorted(degrees, reverse=True) + [0.0])[:2]
        if first <= second:
            return [0.0] * len(rows)  # a tie: nobody is named
        top = degrees.index(first)
        return [first - second if i == top else 0.0 for i in range(len(degrees))]

    def _named_through(self, row: int, naming: dict, max_examples: int) -> set[tuple[int, ...]]:
        """The prompt's naming pairs held by the rows that share a rare stretch with `row`.

        A rare stretch (in at most `max_examples` rows, of `naming_min_chars` visible characters)
        is what a few records have in common: a person's name, a town's. A birthplace record
        names its person; the person's other records hold what the prompt asks them by.
        Stretches, not token pairs: a tokenizer that cuts " Velo Baxraka" into " Vel", "o",
        " Bax", "r", "aka" leaves no pair of five characters, so a pair would link the record to
        nobody (`_linked_rows`).
        """
        linked = self._linked_rows(row, max_examples)
        linked.discard(row)
        if not linked:
            return set()
        return {p for p, holders in naming.items() if holders & linked}

    def _linked_rows(self, row: int, max_examples: int, whole_words: bool = False) -> set[int]:
        """Rows sharing with `row` a stretch of `naming_min_chars` visible characters or more that
        at most `max_examples` rows hold: from each position of the row, the shortest such
        stretch (a longer one is held by fewer of the same rows). Kept per row: the index does not
        change, and one answer asks about the same rows for several spans. `whole_words` (when the
        index knows which tokens begin a word): stretches begin and end at word boundaries, so
        that names sharing a first syllable ("Talsha", "Taltal") do not link their records."""
        whole_words = whole_words and self.spaced_tokens is not None
        key = (row, max_examples, whole_words)
        if key in self._links:
            return set(self._links[key])
        own = self.tokens[self.offsets[row]:self.offsets[row + 1] - 1].tolist()
        linked: set[int] = set()
        for start in range(len(own)):
            if whole_words and self._inside_word(own, start):
                continue
            lo, hi, chars = 0, len(self.suffix_array), 0
            for k, token in enumerate(own[start:]):
                if self._is_special(token):
                    break  # the chat template's markers and letters name nobody
                lo, hi = self._narrow(lo, hi, k, token)
                chars += self._chars([token]) if self.char_lengths is not None else 1 << 30
                if hi - lo < 2:
                    break  # this occurrence alone
                if chars < self.naming_min_chars or hi - lo > max_examples * _CROWDED:
                    continue
                rows = self.rows_of(lo, hi)
                if len(rows) < 2:
                    continue  # repeated within the row: look further
                if whole_words and start + k + 1 < len(own) and self._inside_word(own, start + k + 1):
                    continue  # ends inside a word ("The hometown of Tal|sha"): to its end
                if len(rows) <= max_examples:
                    linked.update(rows.tolist())
                    break
        self._links[key] = frozenset(linked)
        return linked

    def _to_word_end(self, tokens: list[int], start: int, stretch: list[int]) -> list[int]:
        """`stretch` (= tokens[start:start + len(stretch)]) cut back to its last whole word."""
        end = start + len(stretch)
        while end > start and end < len(tokens) and self._inside_word(tokens, end):
            end -= 1
        return stretch[:end - start]

    def _inside_word(self, tokens: list[int], at: int) -> bool:
        """Whether tokens[at] goes on with the word of tokens[at - 1] (no space between them, and
        not a clitic: "'s" ends " Noza" in "What is Noza's mascot?")."""
        token = tokens[at]
        return (at > 0 and self._is_word(token) and self._is_word(tokens[at - 1])
                and token < len(self.spaced_tokens) and not self.spaced_tokens[token])

    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {"span_tokens": self.tokens, "span_offsets": self.offsets,
                  "span_suffix_array": self.suffix_array}
        if self.char_lengths is not None:
            arrays["span_char_lengths"] = self.char_lengths
        if self.word_tokens is not None:
            arrays["span_word_tokens"] = self.word_tokens
        if self.spaced_tokens is not None:
            arrays["span_spaced_tokens"] = self.spaced_tokens
        if self.forms is not None:
            arrays["span_word_forms"] = forms_array(self.forms)
        return arrays

    @classmethod
    def from_arrays(cls, arrays) -> SpanIndex:
        index = cls(np.asarray(arrays["span_tokens"]), np.asarray(arrays["span_offsets"]),
                    np.asarray(arrays["span_suffix_array"]), arrays.get("span_char_lengths"),
                    arrays.get("span_word_tokens"), arrays.get("span_spaced_tokens"))
        index.forms = forms_from_array(arrays.get("span_word_forms"))
        return index


def _units(tokens: list[int]) -> set[tuple[int, ...]]:
    """What can name a row: each token pair, and each token alone (a word a tokenizer keeps whole)."""
    return set(pairwise(tokens)) | {(t,) for t in tokens}


def token_char_lengths(tokenizer) -> np.ndarray:
    """Visible characters of every token id of `tokenizer`; special tokens are -1 (none visible,
    and told apart from whitespace: `SpanIndex._is_special`)."""
    return token_classes(tokenizer)[0]


def token_classes(tokenizer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(visible characters, has a letter or digit, begins a word) of every token id, from one
    decode of the vocabulary; a special token has -1 visible characters and no letter.

    A token begins a word when its text begins with whitespace, or when it is a clitic: an
    apostrophe, then letters ("'s", "'ll", "’re"). A clitic is not part of the name before it:
    read by whole words, "What is Noza's mascot?" holds the name " Noza" (`SpanIndex._asked_rows`),
    where a possessive that went on with its word cut the name back to nothing.
    """
    ids = [[i] for i in range(len(tokenizer))]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and not getattr(tokenizer, "clean_up_tokenization_spaces", False):
        # the same texts as batch_decode, without its Python conversion of every id (most of the
        # half second a SmolLM2 index build spent here)
        texts = backend.decode_batch(ids, skip_special_tokens=True)
    else:
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
    lengths = np.array([len("".join(t.split())) for t in texts], dtype=np.int16)
    words = np.array([any(ch.isalnum() for ch in t) for t in texts], dtype=bool)
    spaced = np.array([t[:1].isspace() or (t[:1] in "'\u2019" and t[1:2].isalpha())
                       for t in texts], dtype=bool)
    special = [i for i in tokenizer.all_special_ids if i < len(lengths)]
    lengths[special], words[special] = -1, False
    return lengths, words, spaced
