"""KNN-Shapley equals brute-force Shapley; valuation ranks harmful records lowest and rolls up per contributor."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from ledgerlm.validation.errors import ValuationError
from ledgerlm.validation.valuation import data_oob, knn_shapley, value_contributions

from .helpers import candidate


def _unit(rng, n, d):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _knn_utility(subset, tr, y_tr, va, y_va, k):
    """U(S) of Jia et al. (2019): mean over validation points of (1/K) * matches among the K nearest."""
    if not subset:
        return 0.0
    total = 0.0
    for x, y in zip(va, y_va):
        nearest = sorted(subset, key=lambda i: (-(x @ tr[i]), i))[:k]
        total += sum(y_tr[i] == y for i in nearest) / k
    return total / len(va)


def _brute_force_shapley(tr, y_tr, va, y_va, k):
    n = len(tr)
    values = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for s in itertools.combinations(others, size):
                values[i] += weight * (_knn_utility(list(s) + [i], tr, y_tr, va, y_va, k)
                                       - _knn_utility(list(s), tr, y_tr, va, y_va, k))
    return values


@pytest.mark.parametrize("seed,n,m,k,classes", [(0, 6, 3, 2, 2), (1, 7, 4, 3, 3), (2, 5, 2, 8, 2), (3, 8, 3, 1, 2)])
def test_knn_shapley_matches_brute_force_enumeration(seed, n, m, k, classes):
    rng = np.random.default_rng(seed)
    tr, va = _unit(rng, n, 5), _unit(rng, m, 5)
    y_tr, y_va = rng.integers(0, classes, n), rng.integers(0, classes, m)
    exact = knn_shapley(tr, y_tr, va, y_va, k=k)
    assert np.allclose(exact, _brute_force_shapley(tr, y_tr, va, y_va, k), atol=1e-12)
    # efficiency: the values share out exactly the utility of the whole set
    assert math.isclose(exact.sum(), _knn_utility(list(range(n)), tr, y_tr, va, y_va, k), abs_tol=1e-12)


def _two_clusters(seed=0, n=30):
    rng = np.random.default_rng(seed)
    centres = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    y = np.arange(n) % 2
    x = centres[y] + 0.15 * rng.normal(size=(n, 4))
    return x / np.linalg.norm(x, axis=1, keepdims=True), y, centres


def test_a_mislabelled_record_gets_the_lowest_knn_shapley_and_data_oob_value():
    x, y, centres = _two_clusters()
    y_noisy = y.copy()
    y_noisy[7] = 1 - y_noisy[7]
    rng = np.random.default_rng(9)
    y_val = np.arange(20) % 2
    val = centres[y_val] + 0.15 * rng.normal(size=(20, 4))
    val /= np.linalg.norm(val, axis=1, keepdims=True)
    shap = knn_shapley(x, y_noisy, val, y_val, k=5)
    assert shap.argmin() == 7 and shap[7] < 0
    oob = data_oob(x, y_noisy, n_models=50, k=3, seed=0)
    assert oob.argmin() == 7 and oob[7] < 0.2


def _texts(topic_words, n, rng, label=None, contributor="0xa", start=0):
    out = []
    for i in range(n):
        rec = {"text": " ".join(rng.choice(topic_words) for _ in range(10))}
        if label is not None:
            rec["label"] = label
        out.append(candidate(start + i, record=rec, label_field="label" if label else None,
                             contributor=contributor))
    return out


SPORT = ["match", "goal", "striker", "league", "coach", "referee", "stadium", "season", "penalty", "trophy"]
FOOD = ["recipe", "oven", "garlic", "sauce", "dough", "simmer", "basil", "butter", "skillet", "pastry"]


def test_valuation_uses_labels_and_rolls_up_per_contributor():
    rng = random.Random(0)
    good = _texts(SPORT, 10, rng, "sports", "0xgood", 0) + _texts(FOOD, 10, rng, "food", "0xgood", 10)
    bad = [candidate(100 + i, record={"text": c.record["text"], "label": "food"}, label_field="label",
                     contributor="0xbad") for i, c in enumerate(_texts(SPORT, 4, rng))]
    val = _texts(SPORT, 8, rng, "sports", start=500) + _texts(FOOD, 8, rng, "food", start=600)
    report = value_contributions(good + bad, val, k=5)
    assert report.label_source == "label_field"
    assert set(report.values) == {c.contribution_id for c in good + bad}
    roll = report.by_contributor
    assert roll["0xgood"].count == 20 and roll["0xbad"].count == 4
    assert math.isclose(roll["0xbad"].total, sum(report.values[100 + i] for i in range(4)))
    assert math.isclose(roll["0xbad"].mean, roll["0xbad"].total / 4)
    assert roll["0xbad"].mean < roll["0xgood"].mean
    assert set(report.lowest(4 / 24)) == {100, 101, 102, 103}


def test_unlabelled_text_is_valued_through_a_cluster_proxy():
    rng = random.Random(1)
    on_topic = _texts(SPORT, 12, rng, contributor="0xon") + _texts(FOOD, 12, rng, contributor="0xon", start=12)
    off_topic = [candidate(99, "zebra quantum violin glacier saxophone nebula tundra origami lantern")]
    val = _texts(SPORT, 6, rng, start=500) + _texts(FOOD, 6, rng, start=600)
    report = value_contributions(on_topic + off_topic, val, k=5, n_clusters=2)
    assert report.label_source == "cluster_proxy"
    assert report.values[99] < min(v for cid, v in report.values.items() if cid != 99)


def test_data_oob_needs_no_validation_set_and_ranks_flipped_labels_lowest():
    rng = random.Random(2)
    batch = _texts(SPORT, 12, rng, "sports") + _texts(FOOD, 12, rng, "food", start=12)
    flipped = [candidate(50 + i, record={"text": c.record["text"], "label": "food"}, label_field="label",
                         contributor="0xbad") for i, c in enumerate(_texts(SPORT, 3, rng))]
    report = value_contributions(batch + flipped, method="data_oob", k=3)
    assert report.method == "data_oob" and all(0.0 <= v <= 1.0 for v in report.values.values())
    assert set(report.lowest(3 / 27)) == {50, 51, 52}
    assert report.by_contributor["0xbad"].mean < report.by_contributor["0xa"].mean


def test_a_better_validation_match_earns_more():
    """Values follow the validation set: the same batch is valued by what the validation data needs."""
    rng = random.Random(4)
    batch = _texts(SPORT, 8, rng, "sports") + _texts(FOOD, 8, rng, "food", start=8)
    sport_val = _texts(SPORT, 10, rng, "sports", start=500) + _texts(FOOD, 2, rng, "food", start=600)
    food_val = _texts(FOOD, 10, rng, "food", start=700) + _texts(SPORT, 2, rng, "sports", start=800)
    by_sport = value_contributions(batch, sport_val, k=3).values
    by_food = value_contributions(batch, food_val, k=3).values
    sport_ids, food_ids = range(8), range(8, 16)
    assert min(by_sport[i] for i in sport_ids) > max(by_sport[i] for i in food_ids)
    assert min(by_food[i] for i in food_ids) > max(by_food[i] for i in sport_ids)


@pytest.mark.parametrize("kwargs,field", [
    ({"method": "loo"}, "method"),
    ({"method": "knn_shapley"}, "validation"),
])
def test_valuation_input_errors_name_the_field(kwargs, field):
    with pytest.raises(ValuationError) as err:
        value_contributions([candidate(1, "some text here")], **kwargs)
    assert err.value.field == field
