"""English letter-bigram surprisal, the yardstick the junk gate uses to tell prose from random letters.

BITS[i * 27 + j] is -log2 P(next = ALPHABET[j] | previous = ALPHABET[i]) rounded to whole bits and
written as a letter ('a' = 0 bits ... 'z' = 25), with " " standing for any word boundary. It was
counted (add-one smoothing) from the English text of Python's own documentation
(`pydoc_data.topics`, shipped with CPython); `build_table()` regenerates it. English prose
averages about 3.6 bits per letter pair, uniformly random letters about 7.
"""

from __future__ import annotations

import math
import re
from itertools import pairwise

import numpy as np

ALPHABET = " abcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_NON_LETTER = re.compile(r"[^a-z]+")

BITS = (
    "qdfeffehhdjhfffeflfedggfhij"
    "epfegkihofphdedpgndddghjigl"
    "fejgicmmmfdmdklehmfgjdmmmdm"
    "fdogldooefofdkldjmfjcfooojo"
    "bghkgcnnndmnhmlfnnkfifkmmhn"
    "cgieegfijioogfemfgdeenhhfgp"
    "bflnmfflndnlgmncjnelgennnhn"
    "bgjjmckgfemmfiehjmffgelmmmm"
    "ddnnnbmnmennkimdnnhlhjnnnjn"
    "hggegfegpkpiffcdgmgddpgpiph"
    "ehkikakkkkkkkkkhkkkkkfkkkkk"
    "cgkikbjhjekkikhjfkhejfkgkkk"
    "ddmjfcgkodnmdllejokefejioeo"
    "ddfllbmnnfnllfjednjghfnnnjn"
    "celedeidjgnlghhekomedghmnhm"
    "diefeieiohohgfcgfodgeegflml"
    "ednkhcknifnkdljeendhdhnmnfm"
    "ejjjjjjjjjjjjjjjjjjjjajjjjj"
    "cdihgcjfmdnjjffeiofefgjimfo"
    "bgogldkngenkhkkfflnedfologo"
    "celikdlpcdppijlekpeffgmingp"
    "gfffhdjgnenmdedieneddnnnnnn"
    "hblllbllldlllhlflllkkklllll"
    "demmjemmccmmhmgdmmfgmmmimmk"
    "celcjdlljelllklhcllhellkhil"
    "bkjhmhmmmfmmjiegdmmeemlfmmm"
    "ddiiibgiieiiiiigiiihiiiiihi"
)
PAIR_COST = np.frombuffer(BITS.encode("ascii"), dtype=np.uint8).astype(np.int64) - 97  # BITS as whole bits
_PAIR_BITS = PAIR_COST.tolist()
_BYTE_TO_INDEX = np.zeros(256, dtype=np.int64)
_BYTE_TO_INDEX[97:123] = np.arange(1, 27)


def mean_surprisal_bits(text: str) -> tuple[float, int]:
    """Mean bits per letter pair (word boundaries included) over the text's a-z letters, and the pair count."""
    s = " " + _NON_LETTER.sub(" ", text.lower()) + " "
    idx = _BYTE_TO_INDEX[np.frombuffer(s.encode("ascii"), dtype=np.uint8)]
    real = (idx[:-1] | idx[1:]) != 0  # a pair of two boundaries is not a letter pair
    costs = PAIR_COST[idx[:-1] * 27 + idx[1:]][real]
    return (int(costs.sum()) / len(costs), len(costs)) if len(costs) else (0.0, 0)


def surprisal_bits_of_word(word: str) -> tuple[float, int]:
    """`mean_surprisal_bits` of a short text such as one word, in plain Python: for a few
    letters the same sum costs less than numpy's per-call overhead."""
    total = pairs = before = 0
    for ch in _NON_LETTER.sub(" ", word.lower()) + " ":
        letter = _INDEX[ch]
        if letter or before:  # a run of boundaries is one boundary
            total += _PAIR_BITS[before * 27 + letter]
            pairs += 1
            before = letter
    return (total / pairs, pairs) if pairs else (0.0, 0)


def build_table(corpus: str) -> str:
    """Recount BITS from a corpus (e.g. " ".join(pydoc_data.topics.topics.values()))."""
    s = _NON_LETTER.sub(" ", corpus.lower())
    counts = [[1] * 27 for _ in range(27)]
    for a, b in pairwise(s):
        counts[_INDEX[a]][_INDEX[b]] += 1
    counts[0][0] = 1
    out = []
    for row in counts:
        total = sum(row)
        out.append("".join(chr(97 + min(25, round(-math.log2(c / total)))) for c in row))
    return "".join(out)
