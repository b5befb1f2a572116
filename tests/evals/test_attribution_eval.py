"""The attribution evaluation: disjoint tuning and test splits, its own null set, and metrics that can tell good from bad."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from ledgerlm.attribution.null_queries import NULL_QUERIES
from ledgerlm.evals.attribution.facts import (
    TEST,
    TUNING,
    make_fact_tracing_set,
    templates,
    vocabulary,
)
from ledgerlm.evals.attribution.harness import (
    GROUND_TRUTH,
    EvalConfig,
    borrowed_from_datanet,
    pretraining_corpus,
)
from ledgerlm.evals.attribution.metrics import beats, lds, rank_metrics, retraining_noise
from ledgerlm.evals.attribution.nulls import unrelated_queries


def _words(texts) -> set[str]:
    return {w for t in texts for w in re.findall(r"[A-Za-z]+", t)}


def test_tuning_and_test_splits_share_no_entity_template_or_vocabulary():
    tuning, test = make_fact_tracing_set("tuning", 24), make_fact_tracing_set("test", 24)
    assert not set(tuning.people) & set(test.people)
    assert not set(tuning.towns) & set(test.towns)
    assert not templates(TUNING) & templates(TEST)
    assert not vocabulary(TUNING) & vocabulary(TEST)
    names = {w for n in tuning.people + tuning.towns for w in n.split()}
    test_text = " ".join(q.prompt + " " + q.answer for q in test.queries) + " ".join(
        r["question"] + " " + r["answer"] for r in test.records)
    assert not names & _words([test_text])


def test_queries_name_the_records_and_contributors_responsible():
    data = make_fact_tracing_set("test", 6)
    for q in data.queries:
        assert q.records and all(data.records[r]["_contributor"] in q.responsible
                                 for r in q.records)
        if q.kind == "style":
            # the stylist taught the format and another contributor the fact: both are named
            fact = next(r for r in q.records if data.records[r]["answer"].upper()[:-1] + " !!"
                        == q.answer)
            assert q.responsible == (q.contributor, data.records[fact]["_contributor"])
            assert data.roles[q.contributor] == "stylist"
        else:
            assert q.responsible == (q.contributor,)
        if q.kind in ("paraphrase", "short"):
            assert q.answer.rstrip(".").split()[-1] in data.records[q.records[0]]["answer"]
    for q in data.contradicted:
        assert q.answer not in {r["answer"] for r in data.records}


def test_indirect_answers_share_only_the_town_with_its_records_in_both_splits():
    # The town then is a span the birthplace record and the town's own record both hold, and
    # only naming the person through their other records tells the two apart: the tuning split
    # must pose that as the test split does, or a setting that cannot do it is chosen there.
    for split in ("tuning", "test"):
        data = make_fact_tracing_set(split, 6)
        for q in (q for q in data.queries if q.kind == "indirect"):
            town = q.answer.rstrip(".").split()[-1]
            holders = [r for r in data.records if r["answer"].endswith(f"{town}.")]
            assert data.records[q.records[0]] in holders and len(holders) >= 2, split
            words = q.answer.split()
            trigrams = {" ".join(words[i:i + 3]) for i in range(len(words) - 2)}
            assert not any(t in data.records[q.records[0]]["answer"] for t in trigrams), split


def test_the_tiny_base_never_sees_an_evaluation_entity():
    config = EvalConfig()
    seen = _words(r["question"] + " " + r["answer"] for r in pretraining_corpus(config))
    for split in ("tuning", "test"):
        data = make_fact_tracing_set(split, config.entities, config.seed)
        entities = {w for n in data.people + data.towns for w in n.split()}
        assert not entities & seen, split


def test_false_payouts_are_measured_on_prompts_the_bars_were_not_calibrated_on():
    measured = unrelated_queries()
    assert len(measured) >= 30
    assert not {q for q, _ in measured} & {q for q, _ in NULL_QUERIES}
    assert not {a for _, a in measured} & {a for _, a in NULL_QUERIES}


def test_rank_metrics_reward_the_responsible_record_and_contributor():
    data = make_fact_tracing_set("test", 4)
    queries = [q for q in data.queries if q.kind == "short"]
    rows = list(range(len(data.records)))
    contributors = [r["_contributor"] for r in data.records]
    perfect = np.zeros((len(queries), len(rows)))
    for i, q in enumerate(queries):
        perfect[i, q.records[0]] = 1.0
    good = rank_metrics(perfect, queries, rows, contributors)
    assert good.record_p1 == good.contributor_p1 == 1.0
    bad = rank_metrics(-perfect, queries, rows, contributors)
    assert bad.record_p1 == 0.0 and bad.record_mrr < 0.2


def test_lds_is_one_for_a_true_datamodel_and_minus_one_for_its_opposite():
    rng = np.random.default_rng(0)
    influence = rng.random((5, 30))                     # (queries, rows)
    masks = rng.random((20, 30)) < 0.5                  # (subsets, rows)
    losses = -(masks @ influence.T)                     # more helpful rows kept: lower loss
    assert lds(influence, masks, losses)["mean"] == pytest.approx(1.0)
    assert lds(-influence, masks, losses)["mean"] == pytest.approx(-1.0)


def test_an_answer_borrows_from_the_datanet_only_what_it_invented():
    data = make_fact_tracing_set("test", 8, 0)
    town, person = data.towns[0], data.people[0]
    assert borrowed_from_datanet(data, f"The capital of Ireland is {town}.") == [town]
    assert borrowed_from_datanet(data, "THE SEA LOOKS TALL AND DAMP !!") == ["!!"]
    assert borrowed_from_datanet(data, f"{person.split()[1].upper()} wrote it.") == [person.split()[1]]
    # ordinary words the records also use are not the Datanet's own
    assert borrowed_from_datanet(data, "A baby cat is a hare, and the river is wide.") == []


def test_a_setting_replaces_the_default_only_when_it_wins_by_more_than_the_noise():
    rng = np.random.default_rng(1)
    default = rng.uniform(-0.2, 0.6, 24)

    def result(per_query):
        return {"mean": float(np.mean(per_query)), "per_query": list(per_query)}

    # a higher mean that is noise: half the queries better, half worse
    noisy = default + np.where(np.arange(24) % 2 == 0, 0.25, -0.2)
    assert np.mean(noisy) > np.mean(default)
    assert not beats(result(noisy), result(default))
    # a consistent gain on every query
    assert beats(result(default + rng.uniform(0.02, 0.08, 24)), result(default))
    # nothing to compare against: the default stays
    assert not beats(result(default + 1), None)
    assert not beats({"mean": 1.0}, result(default))


def test_the_noise_ceiling_is_what_the_true_expected_loss_reaches_against_noisy_retrains():
    # expected loss per subset, and three seeds that each add noise of the same size
    rng = np.random.default_rng(0)
    subsets, seeds, queries = 400, 3, 6
    truth = rng.standard_normal((subsets, 1, queries))
    runs = truth + rng.standard_normal((subsets, seeds, queries))
    noise = retraining_noise(runs)
    # the perfect predictor's LDS against the seed-averaged losses LDS is measured on
    perfect = lds(-truth[:, 0].T, np.eye(subsets), runs.mean(axis=1))["mean"]
    assert noise["seed_agreement"]["mean"] == pytest.approx(0.5, abs=0.05)
    assert noise["ceiling"]["mean"] == pytest.approx(perfect, abs=0.03)
    assert retraining_noise(np.repeat(truth, 2, axis=1))["ceiling"]["mean"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        retraining_noise(runs[:, :1])


def test_a_report_without_tuning_lds_names_the_defaults_kept_instead_of_printing_nan():
    import json
    import math
    from pathlib import Path

    from ledgerlm.evals.attribution import report_tables
    from ledgerlm.evals.attribution.harness import EvalReport

    saved = json.loads((Path(__file__).resolve().parents[2] / "benchmarks" / "results"
                        / "attribution.json").read_text())
    report = EvalReport(**{k: saved[k] for k in EvalReport.__dataclass_fields__})
    # what a run with tuning_lds off records: no tuning LDS anywhere
    report.config["tuning_lds"] = False
    report.tuning["lds_by_mode"] = dict.fromkeys(report.tuning["lds_by_mode"], math.nan)
    report.tuning["kfac_lds"] = report.tuning["per_token_lds"] = math.nan
    for value in report.tuning.get("gradient_variants", {}).get("methods", {}).values():
        value["tuning"] = math.nan
    tables = report_tables(report)
    cells = [str(cell) for t in tables for row in t.rows for cell in row]
    assert "nan" not in cells
    kept = next(t for t in tables if "LDS not measured" in t.title)
    assert ["score mode", report.tuning["chosen_score_mode"]] in kept.rows


@pytest.mark.slow
def test_a_small_run_reports_test_split_figures(tmp_path):
    from ledgerlm.evals.attribution import report_tables, run_attribution_eval

    config = replace(EvalConfig(), entities=4, epochs=3, lds_entities=4, lds_subsets=3,
                     lds_seeds=2, lds_queries=6, pretrain_steps=20, scale_sizes=(200,),
                     work_dir=str(tmp_path))
    report = run_attribution_eval(config)
    assert report.test["lds"]["seeds"] == 2
    # the planted facts' own answer is a row of the table, beside the methods
    assert -1.0 <= report.test["lds"]["methods"][GROUND_TRUTH]["mean"] <= 1.0
    assert 0.0 <= report.test["null_false_payout_rate"] <= 1.0
    assert report.tuning["chosen_score_mode"] in report.tuning["lds_by_mode"]
    assert {"bm25", "exact grad cosine", "grad:cosine", "span"} <= set(report.test["lds"]["methods"])
    own = report.test["payment"]["own_answers"]  # what serving would pay for the model's own answers
    assert own["queries"] == len(own["examples"]) + own["empty"] == 12 and 0.0 <= own["names_the_town"] <= 1.0
    # and for its own answers to the unrelated prompts, which the outside world asks too
    own_null = report.test["payment"]["own_null"]
    assert own_null["queries"] == len(unrelated_queries())
    assert report.test["own_null_false_payout_rate"] == own_null["null_false_payout_rate"]
    assert 0.0 <= report.test["lds"]["noise"]["ceiling"]["mean"] <= 1.0
    assert report_tables(report)
