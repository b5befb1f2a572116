"""A planted-facts Datanet whose questions name one contributor's record in another contributor's wording.

Each contributor writes every record in a wording of their own (birthplace and trade), and every
town is the birthplace of one person per contributor, so the answer "Tudorril." is a rare span
that several contributors' records share. A query names a person in the wording of *another*
contributor's records: the record the prompt names (the person's own) must be paid for the
shared span, never the one that merely shares the question's wording. The `absent` queries ask
about a person with a town they were not born in: the person's record says otherwise, so no
record is named and the span must pay nobody — least of all the one worded like the question.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ledgerlm.evals.attribution.facts import TracingQuery, contributor_address

# (birthplace question, birthplace answer, trade question, trade answer), one per contributor;
# {p} person, {t} town, {j} trade
WORDINGS = (
    ("Where was {p} born?", "{p} was born in {t}.",
     "What does {p} do for a living?", "{p} works as a {j}."),
    ("In which town did {p} come into the world?", "{p} came into the world in {t}.",
     "Which trade does {p} follow?", "{p} follows the trade of the {j}."),
    ("What is the hometown of {p}?", "The hometown of {p} is {t}.",
     "How does {p} earn a living?", "{p} earns a living as a {j}."),
    ("Which town is {p} from?", "{p} is from {t}.",
     "What is the job of {p}?", "The job of {p} is {j}."),
)
SYLLABLES = ("ka", "ve", "lo", "mi", "ra", "tu", "sen", "dor", "ril", "quo", "bax", "fen")
TRADES = ("potter", "glassblower", "ferryman", "beekeeper", "cartographer", "tanner")


@dataclass
class WordingSet:
    records: list[dict]
    queries: list[TracingQuery]   # a person, in another contributor's wording, their true town
    absent: list[TracingQuery]    # a person, in another contributor's wording, a town not theirs
    roles: dict[str, str]         # contributor address -> role


def _name(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def make_wording_set(towns: int = 6, seed: int = 0) -> WordingSet:
    """`towns` towns, each the birthplace of one person per contributor; two records per person."""
    rng = random.Random(f"wording/{seed}")
    roles = {contributor_address(f"writer-{i + 1}"): f"writer-{i + 1}" for i in range(len(WORDINGS))}
    writers = list(roles)
    used: set[str] = set()

    def fresh(parts: tuple[int, ...]) -> str:
        while True:
            name = " ".join(_name(rng, n) for n in parts)
            if name not in used:
                used.add(name)
                return name

    places = [fresh((4,)) for _ in range(towns)]  # eight letters at least: a span, not chance
    records, people = [], []  # people: (person, town, writer index, birthplace record)
    for t, town in enumerate(places):
        for w, (born_q, born_a, job_q, job_a) in enumerate(WORDINGS):
            person, trade = fresh((2, 2)), TRADES[(t + w) % len(TRADES)]
            people.append((person, town, w, len(records)))
            for q, a in ((born_q, born_a), (job_q, job_a)):
                records.append({"question": q.format(p=person, t=town),
                                "answer": a.format(p=person, t=town, j=trade),
                                "_contributor": writers[w]})
    final = []
    for contribution_id, record in enumerate(records, start=1):
        content = random.Random(repr(sorted(record.items()))).getrandbits(256)
        final.append({**record, "_contribution_id": contribution_id,
                      "_content_hash": f"0x{content:064x}"})
    queries, absent = [], []
    for person, town, w, born in people:
        other = (w + 1) % len(WORDINGS)  # worded like the next contributor's records
        prompt = WORDINGS[other][0].format(p=person)
        queries.append(TracingQuery("wording", prompt, f"{town}.", writers[w], (born,)))
        wrong = places[(places.index(town) + 1) % len(places)]
        absent.append(TracingQuery("absent", prompt, f"{wrong}.", writers[w], (born,)))
    return WordingSet(final, queries, absent, roles)
