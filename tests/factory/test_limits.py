"""What one training request may ask for: typed, bounded settings, a process count the host can run, and
model hashes that repeated verifications do not recompute from unchanged files."""

import os

import pytest

from ledgerlm.factory import digest
from ledgerlm.factory.errors import FactoryError, TrainConfigError
from ledgerlm.factory.jobs import TrainRequest
from ledgerlm.factory.train import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_LEN,
    MAX_RANK,
    MAX_STEPS,
    TrainConfig,
)


def _request(config: dict) -> TrainRequest:
    return TrainRequest(model_id="m-1", datanet="d", version=1, base="tiny", config=config)


@pytest.mark.parametrize("setting", [
    {"epochs": MAX_EPOCHS + 1}, {"epochs": 10**9}, {"rank": MAX_RANK + 1}, {"rank": 10**6},
    {"max_len": MAX_LEN + 1}, {"max_len": 10**9}, {"max_len": 2}, {"batch_size": MAX_BATCH_SIZE + 1},
    {"grad_accum": 10**6}, {"max_steps": MAX_STEPS + 1}, {"alpha": 1e9}, {"weight_decay": 50.0},
    {"max_grad_norm": 1e300}, {"seed": -1}, {"lr": 2.0},
])
def test_a_setting_past_its_bound_is_refused_by_name(setting):
    name = next(iter(setting))
    with pytest.raises(FactoryError) as err:
        _request(setting).train_config()
    assert err.value.field == name and err.value.status == 400


def test_the_bounds_leave_room_for_real_runs():
    TrainConfig(rank=MAX_RANK, alpha=2.0 * MAX_RANK, epochs=MAX_EPOCHS, max_len=MAX_LEN,
                batch_size=MAX_BATCH_SIZE, max_steps=MAX_STEPS, weight_decay=0.1).validate()


@pytest.mark.parametrize("setting", [
    {"alpha": "x"}, {"dropout": None}, {"lr": "0.1"}, {"target_modules": 5}, {"target_modules": "q_proj"},
    {"target_modules": [1]}, {"eval_split": [1]}, {"max_steps": "3"}, {"max_steps": 3.0},
    {"weight_decay": "a"}, {"warmup": {}}, {"rank": 4.0}, {"epochs": True}, {"method": ["lora"]},
    {"scheduler": None}, {"seed": "0"}, {"max_grad_norm": "1"}, {"lr": float("nan")},
    {"target_modules": ["q_proj"] * 100_000}, {"target_modules": ["q_proj", "q_proj"]}, {"target_modules": ["x" * 200]},
])
def test_a_wrongly_typed_setting_is_refused_by_name(setting):
    name = next(iter(setting))
    with pytest.raises(TrainConfigError) as err:
        _request(setting).train_config()
    assert err.value.field == name and err.value.status == 400
    with pytest.raises(TrainConfigError) as err:  # the same from a stored config
        TrainConfig.from_dict(setting).validate()
    assert err.value.field == name


def test_more_processes_than_cores_is_refused_on_a_cpu_host(monkeypatch):
    import torch

    from ledgerlm.factory import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(distributed, "usable_cores", lambda: 2)
    distributed.check_processes(2)
    with pytest.raises(FactoryError, match="cores") as err:
        distributed.check_processes(3)
    assert err.value.field == "processes"
    with pytest.raises(FactoryError) as err:  # a request says so before it is queued
        _request({"processes": 64}).train_config()
    assert err.value.field == "processes"


@pytest.fixture
def settled_files(tmp_path, monkeypatch):
    """Weight-like files hashed through a counter, remembered at once (no settling wait)."""
    monkeypatch.setattr(digest, "_SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(digest, "_cache", type(digest._cache)())
    reads = []
    real = digest._hash_files
    monkeypatch.setattr(digest, "_hash_files", lambda paths: reads.append(paths) or real(paths))
    files = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    for f in files:
        f.write_bytes(os.urandom(4096))
    return files, reads


def test_unchanged_files_are_hashed_once(settled_files):
    files, reads = settled_files
    first = digest.files_sha256(files)
    assert digest.files_sha256(list(reversed(files))) == first
    assert len(reads) == 1
    assert first == digest._hash_files(sorted(files))  # the same value an uncached hash gives


def test_a_rewritten_file_is_hashed_again_even_with_its_size_and_mtime_restored(settled_files):
    files, reads = settled_files
    before = digest.files_sha256(files)
    st = files[0].stat()
    files[0].write_bytes(os.urandom(4096))
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert digest.files_sha256(files) != before
    assert len(reads) == 2


def test_a_file_that_just_changed_is_not_remembered(tmp_path, monkeypatch):
    monkeypatch.setattr(digest, "_cache", type(digest._cache)())
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"weights")
    digest.files_sha256([path])
    assert not digest._cache  # its timestamps could still hide a second write
