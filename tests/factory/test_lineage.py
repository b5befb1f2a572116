"""A finished job: before/after metrics, loss curve, lineage that verifies, tampering caught, merge."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ledgerlm.factory import (
    FactoryError,
    fine_tune,
    merge,
    read_lineage,
    register_local,
    verify_lineage,
)

ROOT = "0x" + "ab" * 32


@pytest.fixture(scope="module")
def job(tiny_base, records, fast_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("lineage") / "crates-v1"
    return fine_tune(tiny_base, records, replace(fast_config, epochs=6), out,
                     model_id="crates-v1", datanet_roots=[ROOT], max_generate=4)


def test_job_records_lineage_that_verifies(job, tiny_base):
    card = read_lineage(job.model_dir)
    assert card == job.card
    assert card.base_model == "tiny" and card.base_sha256 == tiny_base.sha256
    assert card.datanet_roots == [ROOT]
    assert card.config_sha256 == job.training.config.sha256()
    assert verify_lineage(job.model_dir, tiny_base) == []


def test_job_reports_base_versus_fine_tuned_on_held_out_records(job):
    report = job.evaluation
    assert report.eval_indices == job.training.eval_indices and len(report.eval_indices) == 5
    assert report.after.loss < report.before.loss
    assert report.after.perplexity < report.before.perplexity
    assert report.after.n_generated == 4 and 0 <= report.after.token_f1 <= 1
    assert job.card.metrics["eval"]["after"]["loss"] == report.after.loss
    assert job.loss_curve.stat().st_size > 1000


def test_tampered_adapter_is_detected(job, tiny_base, tmp_path):
    import shutil

    copy = shutil.copytree(job.model_dir, tmp_path / "copy", ignore=shutil.ignore_patterns("checkpoints"))
    weights = copy / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    [mismatch] = verify_lineage(copy, tiny_base)
    assert mismatch.field == "adapter_sha256"
    assert mismatch.recorded == job.card.adapter_sha256 != mismatch.actual
    with pytest.raises(FactoryError, match="does not match its lineage"):
        merge(copy, tiny_base, tmp_path / "merged")


def test_other_base_weights_are_detected(job, tiny_base, tmp_path):
    import shutil

    from ledgerlm.factory import tiny_random_model

    other = tiny_random_model(tmp_path / "other", seed=1)
    shutil.copy(tiny_base.path / "tokenizer.json", other / "tokenizer.json")
    impostor = replace(tiny_base, path=other)
    fields = {m.field for m in verify_lineage(job.model_dir, impostor)}
    assert fields == {"base_sha256"}


def test_merged_weights_give_the_adapted_logits(job, tiny_base, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    merged = merge(job.model_dir, tiny_base, tmp_path / "merged")
    assert merged.source == "merged:crates-v1"
    registered = register_local(tmp_path / "models", merged.name, merged.path)
    assert registered.sha256 == merged.sha256
    full = AutoModelForCausalLM.from_pretrained(merged.path).eval()
    ids = torch.tensor([[3, 14, 15, 92, 65, 35]])
    with torch.no_grad():
        assert torch.allclose(full(input_ids=ids).logits, job.training.model(input_ids=ids).logits,
                              atol=1e-4)


def test_bad_datanet_root_is_rejected(tiny_base, records, fast_config, tmp_path):
    with pytest.raises(FactoryError, match="not a hex string") as err:
        fine_tune(tiny_base, records, replace(fast_config, epochs=1), tmp_path / "m",
                  model_id="m", datanet_roots=["version-1"], generate=False)
    assert err.value.field == "datanet_roots"
