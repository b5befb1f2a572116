"""Unrelated questions for measuring false payouts: none from the Datanet, none from the calibration set.

The index calibrates its bars on `ledgerlm.attribution.null_queries`; measuring the false-payout
rate on those same answers would report the calibration back to itself. These are written with
other templates and other subjects.
"""

from __future__ import annotations

_CAPITALS = (("Peru", "Lima"), ("Egypt", "Cairo"), ("Norway", "Oslo"), ("Chile", "Santiago"),
             ("Greece", "Athens"), ("Poland", "Warsaw"), ("Portugal", "Lisbon"),
             ("Argentina", "Buenos Aires"), ("Ireland", "Dublin"), ("Thailand", "Bangkok"))
_SUMS = ((3, 4), (12, 30), (25, 25), (7, 8), (40, 2), (19, 1), (6, 6), (33, 11), (50, 49), (8, 13))
_OTHER = (
    ("How many wheels does a bicycle have?", "A bicycle has two wheels."),
    ("Name a fruit that is yellow.", "A banana is yellow."),
    ("What do cows drink?", "Cows drink water."),
    ("Which instrument has 88 keys?", "A piano has 88 keys."),
    ("What is the main ingredient of bread?", "Bread is mostly flour."),
    ("Recommend a book for a long flight.", "Try a thick mystery novel."),
    ("What colour are ripe tomatoes?", "Ripe tomatoes are red."),
    ("What sound does a dog make?", "A dog barks."),
    ("Give me a synonym for quick.", "Fast is a synonym for quick."),
    ("What shape has three sides?", "A triangle has three sides."),
    ("How many hours are in a day?", "A day has twenty-four hours."),
    ("What do you call frozen rain?", "Frozen rain is called hail."),
    ("Write one line about the sea.", "Grey waves roll in under a low sky."),
    ("Which metal is liquid at room temperature?", "Mercury is liquid at room temperature."),
    ("Suggest a weekend activity.", "Go for a walk in a park."),
    ("What is the opposite of up?", "Down is the opposite of up."),
    ("How do you greet someone in Spanish?", "You can say hola."),
    ("What is a baby cat called?", "A baby cat is a kitten."),
    ("What do bees make?", "Bees make honey."),
    ("How many sides does a square have?", "A square has four sides."),
)


def unrelated_queries() -> list[tuple[str, str]]:
    """40 (question, answer) pairs no Datanet record and no calibration answer contains."""
    out = [(f"Which city is the capital of {country}?", f"{city} is the capital of {country}.")
           for country, city in _CAPITALS]
    out += [(f"Add {a} and {b}.", f"{a} and {b} make {a + b}.") for a, b in _SUMS]
    return out + list(_OTHER)
