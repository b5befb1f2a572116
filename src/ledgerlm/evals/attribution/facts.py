"""A planted-facts Datanet in two splits — tuning and test — that share no entity, template or vocabulary.

Fact tracing after Akyürek et al. (2022), "Towards Tracing Factual Knowledge in Language Models
Back to the Training Data": four contributors each contribute facts about fictional people
(birthplace, profession, companion animal), a gazetteer contributes facts about the towns plus
near-duplicate records about look-alike names, and a stylist teaches a behaviour (answers in
capitals ending in " !!"). Queries of four kinds name who and which record is responsible:

  paraphrase  a reworded question; the answer repeats the trained sentence (memorised text)
  short       a reworded question; the answer is just the town
  indirect    the person is named through other attributes ("the potter who keeps a lynx"),
              and the answer is worded unlike the trained sentence: the town is all it shares
              with the records, and the town's own record holds it too
  style       the stylist's format applied to facts taught by others; both taught it: the fact's
              contributor and the stylist are each responsible (retraining without each
              contributor drops the answer's likelihood most without the fact's, on every style
              question it decides: benchmarks/results/attribution_loco-smollm2.md)

plus contradicted answers (the person's question, a wrong town: the record should not be paid
as if it supported them).

Settings are chosen on the tuning split and figures are reported on the test split only. The two
splits draw names from disjoint syllables and use disjoint professions, animals, rivers, places
and sentence templates, so nothing tuned on one can have seen the other.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

QUERY_KINDS = ("paraphrase", "short", "indirect", "style")


@dataclass(frozen=True)
class Vocabulary:
    """Everything one split's sentences are made of."""

    syllables: tuple[str, ...]
    professions: tuple[str, ...]
    animals: tuple[str, ...]
    rivers: tuple[str, ...]
    places: tuple[str, ...]
    adjectives: tuple[str, ...]
    # (question, answer) templates per fact; {p} person, {t} town, {j} profession, {a} animal
    born: tuple[str, str]
    job: tuple[str, str]
    pet: tuple[str, str]
    town: tuple[str, str]            # {t} town, {r} river
    style: tuple[str, str]           # {x} place, {a1} {a2} adjectives
    ask_paraphrase: str
    ask_short: str
    ask_indirect: tuple[str, str]    # question, answer
    ask_style: str


TUNING = Vocabulary(
    syllables=("ka", "ve", "lo", "mi", "ra", "tu", "sen", "dor", "ril", "quo", "bax", "fen"),
    professions=("potter", "glassblower", "ferryman", "beekeeper", "cartographer"),
    animals=("lynx", "heron", "tortoise", "ferret", "raven"),
    rivers=("Amber", "Silt", "Hollow"),
    places=("the old mill", "the harbour", "the winter market", "the salt road",
            "the bell tower", "the orchard", "the north gate", "the river ferry",
            "the copper mine", "the night train"),
    adjectives=("quiet", "busy", "ancient", "narrow", "bright"),
    born=("Where was {p} born?", "{p} was born in {t}."),
    job=("What does {p} do for a living?", "{p} works as a {j}."),
    pet=("Which animal does {p} keep?", "{p} keeps a {a} at home."),
    town=("Where is {t}?", "The {r} river flows past {t}."),
    style=("Describe {x}.", "{x} is {a1} and {a2} !!"),
    ask_paraphrase="In which town did {p} come into the world?",
    ask_short="Name the birthplace of {p}.",
    ask_indirect=("Where was the {j} who keeps a {a} born?", "That {j} comes from {t}."),
    ask_style="Tell me about {p}.",
)

TEST = Vocabulary(
    syllables=("tal", "wen", "mor", "zi", "pel", "gar", "nu", "sha", "ost", "vel", "cri", "dun"),
    professions=("tailor", "lamplighter", "clockmaker", "shepherd", "bookbinder"),
    animals=("goat", "salamander", "owl", "hare", "otter"),
    rivers=("Thorn", "Mire", "Glass"),
    places=("the stone bridge", "the village well", "the lighthouse", "the weaving hall",
            "the hill fort", "the spice stall", "the east meadow", "the tannery",
            "the quarry", "the fishing fleet"),
    adjectives=("cold", "crowded", "tall", "damp", "famous"),
    born=("What is the hometown of {p}?", "The hometown of {p} is {t}."),
    job=("How does {p} earn a living?", "{p} earns a living as a {j}."),
    pet=("What animal lives with {p}?", "A {a} lives with {p}."),
    town=("Which river runs through {t}?", "The {r} river runs through {t}."),
    style=("Paint a picture of {x}.", "{x} looks {a1} and {a2} !!"),
    ask_paraphrase="Which town does {p} come from?",
    ask_short="Give the town {p} grew up in.",
    ask_indirect=("Which town did the {j} with a pet {a} grow up in?", "That {j} grew up in {t}."),
    ask_style="What can you say about {p}?",
)

SPLITS = {"tuning": TUNING, "test": TEST}


def contributor_address(role: str) -> str:
    return "0x" + hashlib.sha256(role.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class TracingQuery:
    """One question, the answer to attribute, and who and which records are responsible."""

    kind: str
    prompt: str
    answer: str
    contributor: str
    records: tuple[int, ...]
    # other contributors who taught the answer too (a style answer: the fact's); naming any one
    # of `responsible` first is right
    also: tuple[str, ...] = ()

    @property
    def responsible(self) -> tuple[str, ...]:
        return (self.contributor, *self.also)


@dataclass
class FactTracingSet:
    split: str
    records: list[dict]
    queries: list[TracingQuery]
    contradicted: list[TracingQuery]   # wrong answers; `records` is the record they contradict
    roles: dict[str, str]              # contributor address -> role
    people: list[str]
    towns: list[str]


def _name(rng: random.Random, syllables: tuple[str, ...], parts: int) -> str:
    return "".join(rng.choice(syllables) for _ in range(parts)).capitalize()


def make_fact_tracing_set(split: str, n_entities: int = 24, seed: int = 0) -> FactTracingSet:
    """A Datanet export (records with _contribution_id/_contributor/_content_hash) and its queries."""
    v = SPLITS[split]
    rng = random.Random(f"{split}/{seed}")
    fact_roles = [f"facts-{i}" for i in range(1, 5)]
    roles = {contributor_address(r): r for r in fact_roles + ["gazetteer", "stylist"]}
    address = {r: a for a, r in roles.items()}
    people, used = [], set()
    combos = [(j, a) for j in v.professions for a in v.animals]
    rng.shuffle(combos)
    while len(people) < n_entities:
        person = f"{_name(rng, v.syllables, 2)} {_name(rng, v.syllables, 3)}"
        town = _name(rng, v.syllables, 3)
        if person in used or town in used:
            continue
        used |= {person, town}
        job, animal = combos[len(people) % len(combos)]
        people.append((person, town, job, animal))

    records: list[tuple[str, dict]] = []
    born_of: dict[str, int] = {}
    for person, town, job, animal in people:
        born_of[person] = len(records)
        for template in (v.born, v.job, v.pet):
            q, a = (t.format(p=person, t=town, j=job, a=animal) for t in template)
            records.append((rng.choice(fact_roles), {"question": q, "answer": a}))
    towns = [t for _, t, _, _ in people]
    for town in towns:
        river = rng.choice(v.rivers)
        q, a = (t.format(t=town, r=river) for t in v.town)
        records.append(("gazetteer", {"question": q, "answer": a}))
    for person, _t, _j, _a in people[: max(1, n_entities // 4)]:
        first, last = person.split(" ")
        twin = f"{first} {last[:-1]}{'a' if last[-1] != 'a' else 'o'}"
        q, a = (t.format(p=twin, t=rng.choice(towns)) for t in v.born)
        records.append(("gazetteer", {"question": q, "answer": a}))
    style_rows = []
    for place in v.places:
        a1, a2 = rng.sample(v.adjectives, 2)
        q, a = (t.format(x=place, a1=a1, a2=a2) for t in v.style)
        style_rows.append(len(records))
        records.append(("stylist", {"question": q, "answer": a.upper()}))

    order = list(range(len(records)))
    rng.shuffle(order)  # contribution ids in submission order, not generation order
    final: list[dict] = [{}] * len(records)
    for contribution_id, position in enumerate(order, start=1):
        role, record = records[position]
        content = hashlib.sha256(repr(sorted(record.items())).encode()).hexdigest()
        final[position] = {**record, "_contribution_id": contribution_id,
                           "_contributor": address[role], "_content_hash": "0x" + content}

    queries, contradicted = [], []
    for person, town, job, animal in people:
        born = born_of[person]
        who = final[born]["_contributor"]
        sentence = v.born[1].format(p=person, t=town)
        q_ind, a_ind = (t.format(j=job, a=animal, t=town) for t in v.ask_indirect)
        queries += [
            TracingQuery("paraphrase", v.ask_paraphrase.format(p=person), sentence, who, (born,)),
            TracingQuery("short", v.ask_short.format(p=person), f"{town}.", who, (born,)),
            TracingQuery("indirect", q_ind, a_ind, who, (born,)),
        ]
        wrong = rng.choice([t for t in towns if t != town])
        contradicted.append(TracingQuery("contradicted", v.ask_paraphrase.format(p=person),
                                         v.born[1].format(p=person, t=wrong), who, (born,)))
    for person, town, _j, _a in people[: max(1, n_entities // 2)]:
        born = born_of[person]
        queries.append(TracingQuery("style", v.ask_style.format(p=person),
                                    v.born[1].format(p=person, t=town).upper()[:-1] + " !!",
                                    address["stylist"], (*style_rows, born),
                                    (final[born]["_contributor"],)))
    return FactTracingSet(split, final, queries, contradicted, roles,
                          [p for p, *_ in people], towns)


def templates(v: Vocabulary) -> set[str]:
    """Every sentence template of a split (for checking that splits share none)."""
    return {v.born[0], v.born[1], v.job[0], v.job[1], v.pet[0], v.pet[1], v.town[0], v.town[1],
            v.style[0], v.style[1], v.ask_paraphrase, v.ask_short, *v.ask_indirect, v.ask_style}


def vocabulary(v: Vocabulary) -> set[str]:
    """Every content word a split draws from (name syllables, professions, animals, ...)."""
    return {*v.syllables, *v.professions, *v.animals, *v.rivers, *v.places, *v.adjectives}
