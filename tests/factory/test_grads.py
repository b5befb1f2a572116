"""The attribution hook: per-example LoRA gradients from one batched pass, and during training."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ledgerlm.factory import (
    capture_lora_grads,
    collate,
    example_losses,
    lora_layers,
    pack_examples,
    tokenize_record,
    train,
)


@pytest.fixture
def trained(tiny_base, records, fast_config, tmp_path):
    return train(tiny_base, records, replace(fast_config, epochs=1), tmp_path / "m").model


def lora_params(model):
    return {n: p for n, p in model.named_parameters() if "lora_" in n}


def test_per_example_gradients_match_separate_backward_passes(trained, tokenizer, records):
    examples = [tokenize_record(records[i], i, tokenizer, 64)[0] for i in (2, 5, 11, 17)]
    batch = collate(pack_examples(examples, 96, tokenizer.pad_token_id))
    assert any(len(row) > 1 for row in batch.segments), "the test needs a block with 2+ examples"
    params = lora_params(trained)

    trained.zero_grad()
    with capture_lora_grads(trained, batch.segments) as capture:
        ids, losses = example_losses(trained, batch)
        losses.sum().backward()
    assert capture.examples == ids.tolist() == [2, 5, 11, 17]
    assert set(capture.grads) == set(params)
    for name, param in params.items():
        assert capture.grads[name].sum(0).allclose(param.grad, atol=1e-6)

    for slot, example in enumerate(examples):
        trained.zero_grad()
        _, alone = example_losses(trained, collate(pack_examples([example], 64, 0)))
        alone.sum().backward()
        for name, param in params.items():
            assert capture.grads[name][slot].allclose(param.grad, atol=1e-6), name
    assert capture.flat().shape == (4, sum(p.numel() for p in params.values()))


def test_raw_pairs_mode_keeps_token_level_activations(trained, tokenizer, records):
    batch = collate(pack_examples([tokenize_record(records[0], 0, tokenizer, 64)[0]], 64, 0))
    with capture_lora_grads(trained, None) as capture:
        example_losses(trained, batch)[1].sum().backward()
    layer = lora_layers(trained)[0]
    x, g = capture.pairs[f"{layer.name}.lora_A.default.weight"][0]
    assert x.shape[:2] == g.shape[:2] == (1, 64)
    assert g.shape[-1] == layer.lora_A.out_features


def test_on_batch_end_sees_every_training_example_with_its_gradient(
    tiny_base, records, fast_config, tmp_path
):
    seen: dict[int, int] = {}
    weights = []

    def collect(event):
        weights.append(event.token_weight)
        grads = event.capture.flat()
        assert grads.shape[0] == len(event.capture.examples)
        assert bool((grads.abs().sum(1) > 0).all())
        for example in event.capture.examples:
            seen[example] = seen.get(example, 0) + 1

    result = train(tiny_base, records, replace(fast_config, epochs=2), tmp_path / "m",
                   on_batch_end=collect)
    assert seen == {i: 2 for i in result.train_indices}
    assert all(0 < w < 1 for w in weights)
