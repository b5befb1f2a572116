"""The evaluation's gradient variants compute what they claim: K-FAC-preconditioned gradients, per-token answer gradients, checkpoints that come back."""

from __future__ import annotations

import numpy as np
import pytest

from tests.attribution.conftest import datanet_records, fine_tuned


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import torch

    from ledgerlm.factory import TrainConfig, register_local, tiny_random_model

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("variants")
    records = datanet_records()
    texts = [r["question"] + " " + r["answer"] for r in records]
    base = register_local(root / "models", "tiny", tiny_random_model(root / "tiny-llama", texts))
    config = TrainConfig(rank=4, alpha=8, dropout=0.0, epochs=2, lr=1e-2, batch_size=2,
                         max_len=64, eval_split=0.0, warmup=0.0, seed=0)
    return fine_tuned(base, records, config, root / "model")


def test_kfac_features_are_the_gradients_preconditioned_by_the_kronecker_factors(trained):
    from ledgerlm.attribution.features import example_features, record_examples
    from ledgerlm.attribution.kfac import damped_inverse_sqrt, kfac_projector, kronecker_factors
    from ledgerlm.evals.attribution.baselines import exact_projector

    model, tokenizer, records = trained.model, trained.tokenizer, trained.records
    rows = [0, 5, 24]
    exact = exact_projector(model)
    everything = record_examples(records, list(range(len(records))), tokenizer, 64)
    factors = kronecker_factors(model, everything, (), max_len=64, pad_id=0)
    assert factors.tokens > 0
    examples = record_examples(records, rows, tokenizer, 64)
    plain = example_features(model, examples, exact, max_len=64, pad_id=0)
    whitened = example_features(model, examples, kfac_projector(exact, factors, 0.1),
                                max_len=64, pad_id=0)
    for m in exact.matrices:
        a = damped_inverse_sqrt(factors.activations[m.name], 0.1)
        g = damped_inverse_sqrt(factors.gradients[m.name], 0.1)
        for r in rows:
            w = plain[r][m.offset:m.offset + m.dim].reshape(m.rows, m.cols)
            expected = (g @ w @ a).ravel()
            got = whitened[r][m.offset:m.offset + m.dim]
            np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def test_per_token_gradients_average_to_the_answers_gradient(trained):
    from ledgerlm.attribution.features import LoraProjector, answer_example, answer_feature
    from ledgerlm.evals.attribution.variants import token_features

    model, tokenizer = trained.model, trained.tokenizer
    projector = LoraProjector.for_model(model, dim=256, seed=0)
    example = answer_example(tokenizer, "What colour is crate 3?", "Crate 3 is amber.")
    tokens = token_features(model, projector, example)
    whole = answer_feature(model, projector, example)
    assert len(tokens) > 1
    assert not np.allclose(tokens[0], tokens[-1])  # each token has a gradient of its own
    # float32 sums in another order: an entry near zero may differ by a few 1e-8 on another CPU
    np.testing.assert_allclose(tokens.mean(axis=0), whole, rtol=1e-4, atol=1e-5 * float(np.abs(whole).max()))


def test_a_checkpoint_is_used_inside_and_the_final_weights_come_back(trained):
    import torch

    from ledgerlm.evals.attribution.variants import at_checkpoint, lora_state

    model = trained.model
    final = lora_state(model)
    earlier = {n: torch.zeros_like(v) for n, v in final.items()}
    with at_checkpoint(model, earlier):
        assert all(float(p.abs().sum()) == 0 for n, p in model.named_parameters() if "lora_" in n)
    after = lora_state(model)
    assert all(torch.equal(after[n], final[n]) for n in final)
