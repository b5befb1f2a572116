"""Gradient features: the projection is exact when nothing is dropped, and reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from ledgerlm.attribution import AttributionError, LoraProjector, build_index
from ledgerlm.attribution.features import example_features, record_examples


def test_unprojected_features_are_the_per_example_lora_gradients(trained):
    import torch

    from ledgerlm.factory import capture_lora_grads, collate, pack_examples, token_losses

    examples = record_examples(trained.records, [1, 4, 9, 24], trained.tokenizer, 64)
    exact = LoraProjector.for_model(trained.model, dim=10**8)
    assert not exact.weights  # every side fits the budget: identity
    features = example_features(trained.model, examples, exact, max_len=96, pad_id=0)
    batch = collate(pack_examples(examples, 96, 0))
    with capture_lora_grads(trained.model, batch.segments) as capture, torch.enable_grad():
        for p in trained.model.parameters():
            p.grad = None
        token_losses(trained.model, batch).sum().backward()
    full = capture.flat().numpy()
    ours = np.stack([features[i] for i in capture.examples])
    assert np.allclose(ours @ ours.T, full @ full.T, rtol=1e-4, atol=1e-4)
    for p in trained.model.parameters():
        p.grad = None


def test_random_projection_keeps_the_gradient_geometry(trained):
    examples = record_examples(trained.records, list(range(12)), trained.tokenizer, 64)
    exact = LoraProjector.for_model(trained.model, dim=10**8)
    small = LoraProjector.for_model(trained.model, dim=2048, seed=3)
    assert small.dim <= 2048 and small.weights
    full = example_features(trained.model, examples, exact, max_len=64, pad_id=0)
    projected = example_features(trained.model, examples, small, max_len=64, pad_id=0)
    a = np.stack([full[i] for i in sorted(full)])
    b = np.stack([projected[i] for i in sorted(projected)])
    gram_a, gram_b = (a @ a.T).ravel(), (b @ b.T).ravel()
    assert np.corrcoef(gram_a, gram_b)[0, 1] > 0.9


def test_same_seed_draws_the_same_projection(trained):
    one = LoraProjector.for_model(trained.model, dim=256, seed=7)
    two = LoraProjector.for_model(trained.model, dim=256, seed=7)
    other = LoraProjector.for_model(trained.model, dim=256, seed=8)
    assert one.weights.keys() == two.weights.keys()
    assert all((one.weights[k] == two.weights[k]).all() for k in one.weights)
    assert any((one.weights[k] != other.weights[k]).any() for k in one.weights)


def test_a_count_sketch_projects_with_its_matrix_and_keeps_the_geometry_like_gaussian_matrices(
        trained):
    """The wide sides' count sketch is a linear map with one signed entry per coordinate, and
    at the same width keeps the rows' inner products at least about as well as the dense
    Gaussian matrices indexes were built with before."""
    import torch

    from ledgerlm.attribution.features import COUNT, GAUSSIAN

    sketch = LoraProjector.for_model(trained.model, dim=512, seed=2, wide=COUNT)
    hashed = [key.split("|")[:2] for key in sketch.weights if key.endswith("|hashed")]
    assert len(hashed) == len(sketch.matrices)  # every weight's wide side
    for name, side in hashed:
        matrix = sketch.dense(name, side)
        assert (np.abs(matrix).sum(axis=0) == 1).all()  # every coordinate lands in one bucket
        values = torch.randn(5, matrix.shape[1], dtype=torch.float64)
        assert np.allclose(sketch.project(name, side, values).numpy(), values.numpy() @ matrix.T)

    examples = record_examples(trained.records, list(range(12)), trained.tokenizer, 64)
    exact = LoraProjector.for_model(trained.model, dim=10**8)
    full = example_features(trained.model, examples, exact, max_len=64, pad_id=0)
    a = np.stack([full[i] for i in sorted(full)])
    truth = a @ a.T

    def gram_error(wide):
        errors = []
        for seed in range(3):
            projector = LoraProjector.for_model(trained.model, dim=512, seed=seed, wide=wide)
            found = example_features(trained.model, examples, projector, max_len=64, pad_id=0)
            b = np.stack([found[i] for i in sorted(found)])
            errors.append(np.linalg.norm(b @ b.T - truth) / np.linalg.norm(truth))
        return float(np.mean(errors))

    count, gaussian = gram_error(COUNT), gram_error(GAUSSIAN)
    assert count < 0.5 and count <= 1.2 * gaussian


def test_the_low_rank_preconditioner_is_the_damped_inverse_covariance():
    """With fewer rows than dimensions the index keeps the rows and an n x n inverse, not a
    dim x dim matrix, and applies exactly (Phi^T Phi / n + lambda I)^-1."""
    from ledgerlm.attribution.index import Preconditioner, damped_inverse_covariance

    rng = np.random.default_rng(0)
    for n, dim in ((20, 300), (400, 64)):
        phi = rng.standard_normal((n, dim)).astype(np.float32)
        found = damped_inverse_covariance(phi, 0.1)
        assert (found.dense is None) == (n < dim)
        p64 = phi.astype(np.float64)
        lam = 0.1 * np.einsum("ij,ij->", p64, p64) / n / dim
        expected = np.linalg.inv(p64.T @ p64 / n + lam * np.eye(dim))
        q = rng.standard_normal((3, dim))
        assert np.allclose(found.apply(q), q @ expected.T, rtol=1e-5, atol=1e-8 * np.abs(expected).max())
        saved = found.arrays(phi)
        assert "preconditioner_basis" not in saved  # the index's rows are not saved twice
        again = Preconditioner.from_arrays(saved, phi)
        assert np.array_equal(again.apply(q), found.apply(q))


def test_index_refuses_records_the_model_was_not_trained_on(trained):
    changed = [dict(r) for r in trained.records]
    changed[0]["answer"] = "Crate 0 is purple."
    with pytest.raises(AttributionError) as err:
        build_index(trained.model_dir, changed)
    assert err.value.field == "records"


def test_records_without_provenance_are_refused(trained):
    plain = [{k: v for k, v in r.items() if k != "_contributor"} for r in trained.records]
    with pytest.raises(AttributionError) as err:
        build_index((trained.model, trained.tokenizer), plain)
    assert "_contributor" in err.value.field


def test_a_sketch_an_eighth_of_the_gradient_ranks_rows_like_the_exact_gradients(trained):
    """The projection keeps the signal: cosine scores against the exact LoRA gradients of the
    same adapter correlate, and the best row is mostly the same."""
    import sys

    from ledgerlm.attribution.features import answer_example, answer_feature

    records = trained.records
    examples = record_examples(records, list(range(len(records))), trained.tokenizer, 64)
    exact = LoraProjector.for_model(trained.model, dim=sys.maxsize)
    sketch = LoraProjector.for_model(trained.model, dim=exact.dim // 8, seed=1)
    assert sketch.layout == "sketch" and exact.layout == "exact"

    def rows(projector):
        found = example_features(trained.model, examples, projector, max_len=64, pad_id=0)
        return np.stack([found[i] for i in range(len(records))])

    full, small = rows(exact), rows(sketch)
    correlations, same_top, by_query = [], [], []
    for i in range(12):
        record = records[i]
        example = answer_example(trained.tokenizer, record["question"], record["answer"])
        scores = []
        for projector, matrix in ((exact, full), (sketch, small)):
            q = answer_feature(trained.model, projector, example)
            scores.append(matrix @ q / np.linalg.norm(matrix, axis=1) / np.linalg.norm(q))
        correlations.append(np.corrcoef(*scores)[0, 1])
        same_top.append(scores[0].argmax() == scores[1].argmax())
        by_query.append(scores)
    assert np.mean(correlations) > 0.95 and min(correlations) > 0.9
    assert np.mean(same_top) >= 0.75

    # What LDS sees: the summed score of the rows a random half of the Datanet keeps. Ranked
    # the same way from projected and exact gradients, the two give the same LDS up to noise.
    from scipy.stats import spearmanr

    halves = np.zeros((64, len(records)), dtype=bool)
    rng = np.random.default_rng(0)
    for mask in halves:
        mask[rng.choice(len(records), len(records) // 2, replace=False)] = True
    agreement = [spearmanr(halves @ exact_scores, halves @ sketch_scores).statistic
                 for exact_scores, sketch_scores in by_query]
    assert np.mean(agreement) > 0.9


def test_features_collected_during_training_index_every_row_and_pay_the_source(
        tiny_base, train_config, tmp_path):
    """The last epoch's backward passes give the index its features: no second pass over the
    Datanet, and a memorised answer is still paid to the record it came from."""
    from ledgerlm.attribution import TrainingFeatures, attribute, template_head
    from ledgerlm.factory import load_tokenizer, train

    from .conftest import SECRET, SOLO, datanet_records

    records = datanet_records()
    tokenizer = load_tokenizer(tiny_base)
    collector = TrainingFeatures(train_config.epochs, dim=256, head=template_head(tokenizer))
    trained = train(tiny_base, records, train_config, tmp_path / "model",
                    on_batch_end=collector.on_batch_end, capture_batch=collector.capture_batch)
    assert set(collector.by_epoch) == {train_config.epochs - 1}  # the last epoch only
    index = build_index(tmp_path / "model", records, base=tiny_base, dim=256,
                        features=collector, loaded=(trained.model, tokenizer))
    assert index.config.rows_from_training == len(index) == len(records)
    result = attribute(trained.model, SECRET["question"], SECRET["answer"], index=index)
    assert result.contributors[0].contributor == SOLO


def test_a_row_collected_in_training_is_the_gradient_at_the_weights_that_step_trained(
        tiny_base, train_config, tmp_path):
    """Each collected row is its example's own loss gradient at the adapter its step saw: the same
    numbers a separate pass over those weights gives (packing, shuffling and the step's token
    scaling change nothing), so features collected in training differ from the final adapter's
    only by how far the adapter moved during the epoch."""
    from dataclasses import replace

    from ledgerlm.attribution import TrainingFeatures, template_head
    from ledgerlm.factory import build_training_data, load_tokenizer, train

    from .conftest import attributed, datanet_records

    long = {"question": "What is the whole story of the crates?", "answer": " ".join(
        f"Crate {i} is {c}." for i, c in enumerate(["red", "blue", "green", "amber", "violet"] * 2))}
    records = datanet_records() + [attributed(long, 26, "0x" + "e5" * 20)]
    tokenizer = load_tokenizer(tiny_base)
    # A long example makes a wide row that short ones share: several examples packed per row.
    config = replace(train_config, batch_size=4, max_len=128)
    data = build_training_data(records, tokenizer, config.max_len, 0.0, config.seed)
    collector = TrainingFeatures(config.epochs, dim=512, head=template_head(tokenizer))
    compared, packed = [], []

    def check(end):
        collector.on_batch_end(end)
        if end.capture is None:
            return
        packed.append(any(len(row) > 1 for row in end.batch.segments))
        examples = [e for e in data.train_examples if e.index in end.capture["examples"]]
        alone = example_features(end.model, examples, collector.projector, max_len=config.max_len,
                                 pad_id=data.pad_id)
        for example, row in collector.by_epoch[end.epoch].items():
            if example in alone:
                compared.append(example)
                assert np.allclose(row, alone[example], rtol=1e-4, atol=1e-6 * np.abs(row).max())

    train(tiny_base, records, config, tmp_path / "model", on_batch_end=check,
          capture_batch=collector.capture_batch)
    assert sorted(set(compared)) == list(range(len(records))) and any(packed)


def test_a_last_block_index_features_only_that_block_and_pays_the_source(trained):
    """A last-blocks index (the backward cut short) holds each row's gradient of the last block's
    LoRA weights, exactly; its queries get features of the same weights, and it still pays the
    record a memorised answer came from."""
    from ledgerlm.attribution import attribute
    from ledgerlm.attribution.features import block_number, featured_linears
    from ledgerlm.factory import lora_linears

    from .conftest import SECRET, SOLO

    blocks = {block_number(name) for name, _ in lora_linears(trained.model)}
    assert blocks == {0, 1}
    last = [name for name, _ in featured_linears(trained.model, 1)]
    assert last and {block_number(name) for name in last} == {1}
    examples = record_examples(trained.records, [2, 5, 24], trained.tokenizer, 64)
    whole = LoraProjector.for_model(trained.model, dim=10**8)
    cut = LoraProjector.for_model(trained.model, dim=10**8, last_blocks=1)
    assert [m.name for m in cut.matrices] == last
    before = {n: p.requires_grad for n, p in trained.model.named_parameters()}
    full = example_features(trained.model, examples, whole, max_len=64, pad_id=0)
    ours = example_features(trained.model, examples, cut, max_len=64, pad_id=0)
    assert {n: p.requires_grad for n, p in trained.model.named_parameters()} == before
    for i in full:
        kept = np.concatenate([full[i][m.offset:m.offset + m.dim] for m in whole.matrices
                               if m.name in last])
        assert np.allclose(ours[i], kept, rtol=1e-5, atol=1e-7)
    index = build_index(trained.model_dir, trained.records, dim=256, last_blocks=1, save=False,
                        loaded=(trained.model, trained.tokenizer))
    assert index.projector.last_blocks == 1
    result = attribute(trained.model, SECRET["question"], SECRET["answer"], index=index)
    assert result.contributors[0].contributor == SOLO


def test_running_the_template_head_once_changes_no_feature(trained):
    """Features leave the chat template's head out, so answers that run it once per pass get the
    features each gets alone, and a change in the head changes no feature."""
    from dataclasses import replace

    from ledgerlm.attribution import template_head
    from ledgerlm.attribution.features import answer_example, feature_batches

    head = template_head(trained.tokenizer)
    assert head and trained.tokenizer.decode(list(head)).startswith("<|im_start|>user")
    projector = LoraProjector.for_model(trained.model, dim=512, seed=2, head=head)
    pairs = [("What colour is crate 3?", "Crate 3 is green."), ("Name a colour.", "Blue."),
             ("What is the vault phrase?", "It is zebra lantern oxide marmalade.")]
    examples = [replace(answer_example(trained.tokenizer, p, a), index=i)
                for i, (p, a) in enumerate(pairs)]
    batches = feature_batches(examples, head, 64, 0, 8)
    assert len(batches) == 1 and batches[0].prefix_ids is not None  # one pass, head run once
    together = example_features(trained.model, examples, projector, max_len=64, pad_id=0)
    for example in examples:
        alone = example_features(trained.model, [example], projector, max_len=64, pad_id=0)
        assert np.allclose(together[example.index], alone[example.index], rtol=1e-5, atol=1e-6)
    whole = LoraProjector.for_model(trained.model, dim=512, seed=2)  # every position counted
    counted = example_features(trained.model, examples[:1], whole, max_len=64, pad_id=0)
    assert not np.allclose(counted[0], together[0], rtol=1e-3, atol=1e-5)



def test_an_index_build_runs_the_template_head_once_outside_autograd(trained):
    """The head's keys and values are kept for every pass of a build: it runs once, without a
    graph, and every feature is what a pass that runs the head with its graph gives."""
    from dataclasses import replace

    import torch

    from ledgerlm.attribution import template_head
    from ledgerlm.attribution.features import (
        answer_example,
        backward_to_lora,
        capture_features,
        feature_batches,
    )
    from ledgerlm.factory import token_losses

    head = template_head(trained.tokenizer)
    projector = LoraProjector.for_model(trained.model, dim=512, seed=2, head=head)
    pairs = [("What colour is crate 3?", "Crate 3 is green."), ("Name a colour.", "Blue."),
             ("What is the vault phrase?", "It is zebra lantern oxide marmalade.")]
    examples = [replace(answer_example(trained.tokenizer, p, a), index=i)
                for i, (p, a) in enumerate(pairs)]
    [batch] = feature_batches(examples, head, 64, 0, 8)
    # an index build's products (precise=False), as example_features runs them below
    with capture_features(trained.model, projector, batch, precise=False) as cap, torch.enable_grad():
        params = [p for n, p in trained.model.named_parameters()
                  if "lora_" in n and p.requires_grad]
        backward_to_lora(token_losses(trained.model, batch).sum(), params)  # head in the graph
    through_head = dict(zip(cap["examples"], cap["features"].numpy()))

    heads: dict = {}
    first = example_features(trained.model, examples, projector, max_len=64, pad_id=0,
                             heads=heads)
    [kept] = heads.values()
    assert not any(t.requires_grad for layer in kept.layers for t in (layer.keys, layer.values))
    assert all(np.array_equal(first[i], through_head[i]) for i in through_head)
    second = example_features(trained.model, examples[1:], projector, max_len=64, pad_id=0,
                              heads=heads)
    assert len(heads) == 1  # the second pass reused the head
    for i, feature in second.items():
        assert np.allclose(feature, through_head[i], rtol=1e-5, atol=1e-6)


def test_calibration_batches_the_null_answers_as_if_each_were_attributed_alone(trained, index):
    """Calibration runs many null answers per pass, padded to the longest; each gets the feature,
    and so the best score and the bar, that attributing it alone (as a user's answer) gives."""
    from dataclasses import replace

    from ledgerlm.attribution.calibration import (
        PAYING_MODES,
        CalibrationSettings,
        calibrate,
        gradient_bar,
        rounded,
    )
    from ledgerlm.attribution.features import (
        answer_example,
        answer_feature,
        feature_batches,
        prompt_token_ids,
        span_readings,
    )
    from ledgerlm.attribution.null_queries import NULL_QUERIES
    from ledgerlm.attribution.restatement import content_weights

    settings = CalibrationSettings(gradient_null_answers=len(NULL_QUERIES))
    model, tokenizer, projector = trained.model, trained.tokenizer, index.projector
    examples, weights = [], {}
    for i, (prompt, answer) in enumerate(NULL_QUERIES):
        example = replace(answer_example(tokenizer, prompt, answer), index=i)
        reading = span_readings(tokenizer, prompt, answer, example)[0]
        weights[i] = content_weights(tokenizer, prompt_token_ids(example), reading,
                                     settings.restated_weight)
        examples.append(example)
    width = max(len(e.input_ids) for e in examples)
    passes = feature_batches(examples, projector.head, width, 0, 8)
    assert len(passes) <= len(examples) // 4  # several answers share every pass
    assert any(len({s.end for row in p.segments for s in row}) > 1 for p in passes)  # padding

    together = example_features(model, examples, projector, max_len=width, pad_id=0,
                                batch_size=8, token_weights=weights)
    alone = np.stack([answer_feature(model, projector, e, weights[e.index]) for e in examples])
    together = np.stack([together[e.index] for e in examples])
    assert np.abs(together - alone).max() <= 1e-5 * np.abs(alone).max()
    batched = calibrate(index, model, tokenizer, settings)
    for mode in PAYING_MODES:
        best = [float(v) for v in rounded(index.gradient_scores(alone, mode)).max(axis=1)]
        assert best == batched.null_gradient_max[mode]
        assert gradient_bar(best, 1 - settings.false_payout_rate) == batched.gradient_bar[mode]


def test_an_index_builds_products_in_working_precision_within_a_millionth_of_float64(trained):
    """Rows and null answers take their per-weight products in the model's float32 (about half the
    hooks' time); an answer's pass keeps float64. Both give the same features to 1e-6."""
    projector = LoraProjector.for_model(trained.model, dim=512, seed=3)
    examples = record_examples(trained.records, list(range(6)), trained.tokenizer, 64)
    fast = example_features(trained.model, examples, projector, max_len=64, pad_id=0)
    precise = example_features(trained.model, examples, projector, max_len=64, pad_id=0,
                               deterministic=True)
    for i, row in precise.items():
        assert np.allclose(fast[i], row, rtol=1e-5, atol=1e-6 * float(np.abs(row).max()))
