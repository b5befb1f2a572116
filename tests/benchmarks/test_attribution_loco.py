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
