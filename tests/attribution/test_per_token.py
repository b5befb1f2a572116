"""Answers scored by their tokens' unit gradients: the feature, the index setting, and what it pays."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ledgerlm.attribution import attribute, build_index

from .conftest import SECRET, SOLO


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_a_per_token_feature_is_the_weighted_mean_of_each_tokens_unit_gradient(trained):
    from ledgerlm.attribution.features import (
        IGNORE,
        LoraProjector,
        answer_example,
        answer_feature,
        template_head,
    )

    tokenizer = trained.tokenizer
    example = answer_example(tokenizer, SECRET["question"], SECRET["answer"])
    projector = LoraProjector.for_model(trained.model, 256, 0, template_head(tokenizer))
    positions = [p for p, label in enumerate(example.labels) if label != IGNORE]
    weights = [0.2 if k % 3 == 0 else 1.0 for k in range(len(positions))]
    got = answer_feature(trained.model, projector, example, weights, per_token=True)
    # one token at a time, by hand: every token counts as its weight says, however large its loss
    by_hand = sum(
        w * _unit(answer_feature(trained.model, projector, replace(example, labels=[
            label if p == pos else IGNORE for p, label in enumerate(example.labels)]), [1.0]))
        for w, pos in zip(weights, positions)) / sum(weights)
    assert np.allclose(got, by_hand, rtol=1e-4, atol=1e-6)  # batched float32 passes
    # not the gradient of the mean loss, which the tokens of largest gradient dominate
    plain = answer_feature(trained.model, projector, example, weights)
    assert abs(float(_unit(plain) @ _unit(got))) < 0.999


def test_an_index_scoring_answers_per_token_pays_the_record_and_nobody_for_unrelated_text(trained):
    index = build_index(trained.model_dir, trained.records, dim=256, per_token_query=True,
                        save=False)
    assert index.config.per_token_query and index.calibration is not None
    result = attribute(trained.model, SECRET["question"], SECRET["answer"], index=index)
    assert [c.contributor for c in result.contributors][:1] == [SOLO]
    unrelated = attribute(trained.model, "What is 12 plus 30?", "12 plus 30 is 42.", index=index)
    assert unrelated.contributors == () and unrelated.pool_bps == 10_000
