"""The base-model catalogue: registering local directories, lookups, and the real SmolLM2 pull."""

from __future__ import annotations

import pytest

from ledgerlm.factory import (
    FactoryError,
    ModelNotFoundError,
    TrainConfig,
    get_model,
    list_models,
    register_local,
    train,
    verify_model,
)


def test_registered_model_is_listed_and_found(tiny_base, tmp_path):
    models = tmp_path / "models"
    model = register_local(models, "tiny-copy", tiny_base.path)
    assert model.sha256 == tiny_base.sha256 and len(model.sha256) == 64
    assert model.n_params > 10_000
    assert [m.name for m in list_models(models)] == ["tiny-copy"]
    assert get_model(models, "tiny-copy") == model
    assert verify_model(model)


def test_unknown_model_names_the_known_ones(tiny_base, tmp_path):
    register_local(tmp_path, "tiny", tiny_base.path)
    with pytest.raises(ModelNotFoundError, match="known models: tiny") as err:
        get_model(tmp_path, "smollm2-135m")
    assert "models pull smollm2-135m" in err.value.message
    assert err.value.status == 404


def test_directory_without_a_model_is_rejected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FactoryError, match="config.json is missing"):
        register_local(tmp_path / "models", "nothing", tmp_path / "empty")
    with pytest.raises(FactoryError, match="may use only"):
        register_local(tmp_path / "models", "../escape", tmp_path / "empty")


@pytest.mark.slow
def test_smollm2_pull_and_a_few_training_steps(tmp_path):
    from ledgerlm.factory import pull_smollm2

    stages = []
    model = pull_smollm2(tmp_path / "models", progress=stages.append)
    assert model.n_params > 130_000_000 and stages
    assert get_model(tmp_path / "models", "smollm2-135m") == model
    assert pull_smollm2(tmp_path / "models") == model
    records = [{"question": f"What is the ledger code of crate {i}?", "answer": f"LC-{i:03d}"}
               for i in range(16)]
    config = TrainConfig(rank=4, alpha=8, batch_size=2, max_len=128, max_steps=4, lr=1e-3,
                         eval_split=0.0, warmup=0.0)
    result = train(model, records, config, tmp_path / "run")
    assert result.steps == 4 and result.history[-1].loss < result.history[0].loss
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()
