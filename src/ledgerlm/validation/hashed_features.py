"""Hashed TF-IDF rows from token streams: each text's features hashed, counted and weighted in compiled loops."""

from __future__ import annotations

import numpy as np

from ledgerlm.validation.compiled import compiled
from ledgerlm.validation.span_hashes import POLY, mix64
from ledgerlm.validation.sparse_rows import SparseRows


def token_runs(codes: np.ndarray, lengths: np.ndarray, ascii_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token streams (" tok1 tok2 ... ", uint64 code points) and their lengths from texts laid end to end.

    `codes` (uint32) holds the texts, `lengths` their lengths; an ASCII code point c becomes
    ascii_codes[c] (a space for a non-word character) and others stay. Each text's runs of
    spaces become one space, with one before its first token and one after its last (two
    spaces for a text without tokens).
    """
    return _token_runs(codes, lengths.astype(np.int64), ascii_codes)


def doc_features(codes: np.ndarray, lengths: np.ndarray, char_ngram: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each stream's distinct 32-bit feature hashes in ascending order, with their counts: (starts, hashes, counts).

    `codes` holds the streams (" tok1 tok2 ... ") end to end, `lengths` their lengths; text d's
    features are hashes[starts[d] : starts[d + 1]]. The features are the `char_ngram`-long
    windows of a stream, its words and its word bigrams, each hashed with `span_hashes`' polynomial
    hash, tagged in the low two bits (windows 0, words 1, bigrams 2) and mixed with `span_hashes.mix64`.
    """
    return _doc_features(codes.astype(np.uint64), lengths.astype(np.int64), char_ngram)


def tfidf_rows(starts: np.ndarray, hashes: np.ndarray, counts: np.ndarray, dim: int) -> SparseRows:
    """L2-normalised signed TF-IDF rows of `dim` buckets from `doc_features`, in CSR form.

    Weights are (1 + log tf) * (log((1 + n) / (1 + df)) + 1); a hash's bit 31 gives its sign and
    the rest its bucket. Colliding features are summed in float32 in ascending hash order, so
    every row is the same, bit for bit, as a sparse matrix of the (hash, text)-sorted entries
    densified; each row is then divided by its norm, taken in float64. The logarithms come from
    numpy tables: a compiled `log` may differ in the last bit.
    """
    n_docs = len(starts) - 1
    idf = np.log((1.0 + n_docs) / (1.0 + np.arange(n_docs + 1))) + 1.0
    scale = np.ones(int(counts.max(initial=1)) + 1)
    scale[2:] += np.log(np.arange(2, len(scale)))
    indptr, indices, values = _tfidf_rows(starts, hashes, counts, _document_frequencies(hashes), idf, scale, dim)
    return SparseRows(indptr, indices, values, dim)


@compiled
def _token_runs(raw, lengths, ascii_codes):
    codes = np.empty(len(raw) + 2 * len(lengths), dtype=np.uint64)
    out_lengths = np.empty(len(lengths), dtype=np.int64)
    pos = m = 0
    for d in range(len(lengths)):
        start = m
        codes[m] = 32
        m += 1
        space = True
        for i in range(pos, pos + lengths[d]):
            c = raw[i]
            if c < 128:
                c = ascii_codes[c]
            if c != 32:
                codes[m] = c
                m += 1
                space = False
            elif not space:
                codes[m] = 32
                m += 1
                space = True
        pos += lengths[d]
        if not space or m - start == 1:  # the closing space; a text without tokens gets two
            codes[m] = 32
            m += 1
        out_lengths[d] = m - start
    return codes[:m].copy(), out_lengths


@compiled
def _doc_features(codes, lengths, n):
    mask = np.uint64(0xFFFFFFFF)
    poly = np.uint64(POLY)
    top = np.uint64(1)  # poly ** (n - 1): the weight of a window's first character in its hash
    for _ in range(n - 1):
        top *= poly
    longest = 0
    for length in lengths:
        longest = max(longest, length)
    buf = np.empty(2 * longest + 2, dtype=np.uint64)  # windows, then words and bigrams: at most 2 per character
    spare = np.empty_like(buf)
    tally = np.empty(257, dtype=np.int64)
    hashes = np.empty(2 * len(codes) + 2, dtype=np.uint64)
    counts = np.empty(2 * len(codes) + 2, dtype=np.int64)
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)

    pos = filled = 0
    for d in range(len(lengths)):
        s, e = pos, pos + lengths[d]
        pos = e
        m = 0
        if e - s >= n:
            # each window's polynomial hash rolls on from the one before: arithmetic modulo 2**64
            # gives exactly the hash computed afresh
            h = np.uint64(0)
            for i in range(s, s + n):
                h = h * poly + codes[i]
            buf[m] = mix64(h << np.uint64(2)) & mask
            m += 1
            for i in range(s + n, e):
                h = (h - codes[i - n] * top) * poly + codes[i]
                buf[m] = mix64(h << np.uint64(2)) & mask
                m += 1
        word = previous = np.uint64(0)
        in_word = had_word = False
        for i in range(s, e):
            c = codes[i]
            if c != 32:
                word = word * poly + c
                in_word = True
            elif in_word:
                buf[m] = mix64((word << np.uint64(2)) | np.uint64(1)) & mask
                m += 1
                if had_word:
                    buf[m] = mix64(((previous * poly + word) << np.uint64(2)) | np.uint64(2)) & mask
                    m += 1
                previous, word = word, np.uint64(0)
                in_word, had_word = False, True
        # the 32-bit hashes sorted: spread over 256 bins by their top byte (a few per bin for a
        # text of a few hundred features), then an insertion sort finishes each bin's short run
        tally[:] = 0
        for i in range(m):
            tally[np.int64(buf[i] >> np.uint64(24)) + 1] += 1
        for b in range(256):
            tally[b + 1] += tally[b]
        for i in range(m):
            b = np.int64(buf[i] >> np.uint64(24))
            spare[tally[b]] = buf[i]
            tally[b] += 1
        for i in range(1, m):
            v = spare[i]
            j = i - 1
            while j >= 0 and spare[j] > v:
                spare[j + 1] = spare[j]
                j -= 1
            spare[j + 1] = v
        for i in range(m):
            if i == 0 or spare[i] != spare[i - 1]:
                hashes[filled] = spare[i]
                counts[filled] = 1
                filled += 1
            else:
                counts[filled - 1] += 1
        starts[d + 1] = filled
    return starts, hashes[:filled].copy(), counts[:filled].copy()


@compiled
def _document_frequencies(hashes):
    """How many texts hold each entry's hash (each text lists a hash once), by open addressing.

    The entries are first split by the top 8 of their 32 bits, each copied beside its place, so
    each part's table is small enough to stay in cache and its hashes are read in order: one
    table for the whole batch would miss the cache on most lookups. A slot holds its hash plus
    one in the high half and the count in the low half (0: empty), one read per probe.
    """
    n = len(hashes)
    parts = 256
    start = np.zeros(parts + 1, dtype=np.int64)
    for i in range(n):
        start[np.int64(hashes[i] >> np.uint64(24)) + 1] += 1
    for p in range(parts):
        start[p + 1] += start[p]
    largest = 0
    for p in range(parts):
        largest = max(largest, start[p + 1] - start[p])
    order = np.empty(n, dtype=np.int64)
    keyed = np.empty(n, dtype=np.uint32)
    fill = start[:-1].copy()
    for i in range(n):
        p = np.int64(hashes[i] >> np.uint64(24))
        order[fill[p]] = i
        keyed[fill[p]] = np.uint32(hashes[i])
        fill[p] += 1
    size, bits = 1, 0
    while size < 2 * largest + 2:
        size, bits = size * 2, bits + 1
    table = np.zeros(size, dtype=np.uint64)
    slots = np.empty(largest, dtype=np.int64)
    df = np.empty(n, dtype=np.int64)
    for p in range(parts):
        a, b = start[p], start[p + 1]
        for t in range(a, b):
            h = np.uint64(keyed[t])
            tag = (h + np.uint64(1)) << np.uint64(32)
            j = np.int64((h * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits)) if bits else np.int64(0)
            while True:
                v = table[j]
                if v == 0:
                    table[j] = tag | np.uint64(1)
                    break
                if v & np.uint64(0xFFFFFFFF00000000) == tag:
                    table[j] = v + np.uint64(1)
                    break
                j = (j + 1) & (size - 1)
            slots[t - a] = j
        for t in range(a, b):
            df[order[t]] = np.int64(table[slots[t - a]] & np.uint64(0xFFFFFFFF))
        for t in range(a, b):  # only the slots this part filled are cleared for the next
            table[slots[t - a]] = 0
    return df


@compiled
def _tfidf_rows(starts, hashes, counts, df, idf, scale, dim):
    n_docs = len(starts) - 1
    indptr = np.zeros(n_docs + 1, dtype=np.int64)
    indices = np.empty(len(hashes), dtype=np.int64)  # a feature fills at most one bucket
    values = np.empty(len(hashes), dtype=np.float32)
    row = np.zeros(dim, dtype=np.float32)
    # the buckets a text fills, one bit each: read back word by word they come in ascending order
    # without a sort; a de Bruijn sequence numbers a word's lowest set bit
    bits = np.zeros((dim + 63) // 64, dtype=np.uint64)
    de_bruijn = np.uint64(0x03F79D71B4CB0A89)
    lowest = np.zeros(64, dtype=np.int64)
    for i in range(64):
        lowest[np.int64(((np.uint64(1) << np.uint64(i)) * de_bruijn) >> np.uint64(58))] = i
    # a bucket is the hash modulo `dim`: for a power of two (the default) its low bits, without a division
    mask = np.uint64(dim - 1) if dim & (dim - 1) == 0 else np.uint64(0)
    filled = 0
    for d in range(n_docs):
        for i in range(starts[d], starts[d + 1]):
            weight = scale[counts[i]] * idf[df[i]]
            h = hashes[i]
            b = np.int64(h & mask) if mask else np.int64(h % np.uint64(dim))
            row[b] += np.float32(weight if h & np.uint64(0x80000000) else -weight)
            bits[b >> 6] |= np.uint64(1) << np.uint64(b & 63)
        norm = 0.0
        start = filled
        for w in range(len(bits)):
            word = bits[w]
            bits[w] = 0
            while word:
                low = word & (~word + np.uint64(1))
                word ^= low
                b = w * 64 + lowest[np.int64((low * de_bruijn) >> np.uint64(58))]
                v = row[b]
                row[b] = 0.0
                if v != 0:  # colliding features may cancel: the bucket stays empty
                    indices[filled] = b
                    values[filled] = v
                    norm += np.float64(v) * np.float64(v)
                    filled += 1
        if norm > 0:
            norm = np.sqrt(norm)
            for t in range(start, filled):
                values[t] = np.float32(np.float64(values[t]) / norm)
        indptr[d + 1] = filled
    return indptr, indices[:filled].copy(), values[:filled].copy()
