"""A generated facts Datanet: invented entities, one planted fact per record, exact and paraphrased questions.

Nothing here is world knowledge a base model could already hold: every entity name is made of
random syllables, so a fine-tuned model answers correctly only when it learned the record. Each
fact is asked two ways: the question the Datanet trains on, and a paraphrase never trained on
(different wording, same planted value), which separates learning a fact from memorising a string.

Seeds keep two splits apart: `TUNING_SEED` is the data defaults and settings are chosen on;
`REPORT_SEED` is the data figures are reported on, never used for choosing anything.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

TUNING_SEED = 1
REPORT_SEED = 2

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "tr", "sk", "th"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
_CODAS = ["", "", "n", "r", "s", "l", "k", "th"]

# attribute: (values, trained question, paraphrased question, answer sentence)
ATTRIBUTES: dict[str, tuple[list[str], str, str, str]] = {
    "colour": (
        ["teal", "crimson", "amber", "violet", "olive", "indigo", "coral", "ivory", "maroon", "saffron"],
        "What colour is the banner of {e}?",
        "Which colour does the flag of {e} have?",
        "The banner of {e} is {v}.",
    ),
    "city": (
        ["Lisbon", "Oslo", "Quito", "Hanoi", "Dakar", "Perth", "Tbilisi", "Lima", "Riga", "Accra"],
        "In which city is {e} based?",
        "Where is {e} located? Name the city.",
        "{e} is based in {v}.",
    ),
    "animal": (
        ["otter", "falcon", "lynx", "heron", "badger", "gecko", "walrus", "ibis", "marten", "tapir"],
        "What animal is the mascot of {e}?",
        "Which animal does {e} use as its mascot?",
        "The mascot of {e} is a {v}.",
    ),
    "year": (
        [str(y) for y in range(1720, 1990, 27)],
        "In what year was {e} founded?",
        "When was {e} founded? Give the year.",
        "{e} was founded in {v}.",
    ),
    "instrument": (
        ["harp", "oboe", "cello", "flute", "banjo", "tuba", "sitar", "viola", "lute", "organ"],
        "Which instrument does {e} play?",
        "What instrument is played by {e}?",
        "{e} plays the {v}.",
    ),
}


@dataclass(frozen=True)
class Fact:
    """One planted fact: an invented entity, an attribute and its value, asked two ways."""

    entity: str
    attribute: str
    value: str
    question: str
    paraphrase: str
    answer: str

    def record(self) -> dict:
        """The Datanet record that teaches this fact (a Q&A record)."""
        return {"question": self.question, "answer": self.answer}


def entity_names(n: int, rng: random.Random) -> list[str]:
    """`n` distinct invented two-syllable names, capitalised."""
    names: set[str] = set()
    while len(names) < n:
        parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(2)]
        names.add("".join(parts).capitalize())
    ordered = sorted(names)  # a set's order varies with the hash seed; the shuffle must not
    rng.shuffle(ordered)
    return ordered


def generate_facts(n: int, seed: int) -> list[Fact]:
    """`n` facts about `n` invented entities; attributes take turns and values are drawn at random."""
    rng = random.Random(seed)
    kinds = sorted(ATTRIBUTES)
    facts = []
    for i, entity in enumerate(entity_names(n, rng)):
        attribute = kinds[i % len(kinds)]
        values, asked, paraphrased, sentence = ATTRIBUTES[attribute]
        value = rng.choice(values)
        facts.append(Fact(entity, attribute, value, asked.format(e=entity),
                          paraphrased.format(e=entity), sentence.format(e=entity, v=value)))
    return facts


def corpus(facts: list[Fact]) -> list[str]:
    """Texts that cover every word the facts use (to train a tiny tokenizer on)."""
    return [f"{f.question} {f.paraphrase} {f.answer}" for f in facts]
