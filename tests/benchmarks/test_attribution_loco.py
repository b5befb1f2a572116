"""Retraining's verdict: the answer's log-likelihood is the loss training minimises on it, and a contributor is named only when its drop beats the runner-up's by more than the noise."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from attribution_loco import answer_logps, decisive  # noqa: E402


def test_answer_log_likelihood_is_minus_the_training_loss_on_the_answer_tokens(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ledgerlm.attribution.features import answer_example
    from ledgerlm.factory import tiny_random_model

    path = tiny_random_model(tmp_path / "tiny", ["Where is Kabax? Kabax lies on the Amber river."])
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompt, answer = "Where is Kabax?", "Kabax lies on the Amber river."
    example = answer_example(tokenizer, prompt, answer)
    scored = sum(label != -100 for label in example.labels)
    with torch.no_grad():
        loss = model(input_ids=torch.tensor([example.input_ids]),
                     labels=torch.tensor([example.labels])).loss
    (logp,) = answer_logps(model, tokenizer, [(prompt, answer)])
    assert scored > 0
    assert abs(logp + float(loss) * scored) < 1e-3


def test_retraining_decides_only_beyond_the_noise():
    q = {"drops": {"facts-1": 24.9, "stylist": 13.2, "facts-3": 10.2}, "noise": 6.9}
    assert decisive(q)
    assert not decisive({**q, "noise": 12.0})
    assert not decisive({"drops": {"facts-3": 14.3, "facts-1": 12.1}, "noise": 7.4})


def test_later_receipts_are_scored_against_the_kept_verdicts_of_the_same_draws():
    from attribution_loco_receipts import compare, tables

    from ledgerlm.evals.attribution.facts import make_fact_tracing_set

    data = make_fact_tracing_set("test", 4, 0)
    style = next(q for q in data.queries if q.kind == "style")
    fact = next(q for q in data.queries if q.kind == "short")
    fact_owner = data.roles[style.also[0]]
    verdicts = [{"kind": "style", "answer": style.answer, "label": "stylist", "retraining": fact_owner,
                 "receipt": "stylist", "drops": {fact_owner: 30.0, "stylist": 5.0}, "noise": 3.0},
                {"kind": "short", "answer": fact.answer, "label": data.roles[fact.contributor],
                 "retraining": data.roles[fact.contributor], "receipt": data.roles[fact.contributor],
                 "drops": {data.roles[fact.contributor]: 20.0, "stylist": 1.0}, "noise": 2.0}]
    loco = {"model": "smollm2", "split": "test", "entities": 4, "date": "d",
            "runs": [{"seed": 0, "questions": verdicts}]}
    receipts = {"model": "smollm2", "split": "test", "rule": 21,
                "runs": [{"seed": 0, "tops": [{"answer": style.answer, "receipt": fact_owner},
                                              {"answer": fact.answer, "receipt": "gazetteer"}]}]}
    rows = {r["kind"]: r for r in compare(receipts, loco)}
    assert rows["style"]["teachers"] == ["stylist", fact_owner]
    assert rows["style"]["receipt"] == rows["style"]["retraining"] != rows["style"]["kept_receipt"]
    summary = {row[0]: row for row in tables(list(rows.values()))[0].rows}
    assert summary["style"][2:6] == ["1 of 1", "0 of 1", "0 of 1", "1 of 1"]
    assert summary["short"][2] == "0 of 1" and summary["all"][6] == "0 of 2"
