"""Data-parallel training under torchrun (gloo, two CPU processes): the adapter matches one-process training,
and a checkpoint written by two processes resumes in one and ends where an unbroken run ends."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from ledgerlm.factory.distributed import check_processes, launch
from ledgerlm.factory.errors import FactoryError
from ledgerlm.factory.train import train


def _adapter(path):
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


def _close(a: dict, b: dict, tolerance: float = 1e-4) -> float:
    """The largest difference between two adapters' weights (they must hold the same tensors)."""
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_a_process_count_the_host_cannot_run_is_refused_by_name():
    with pytest.raises(FactoryError) as err:
        check_processes(0)
    assert err.value.field == "processes"
    with pytest.raises(FactoryError, match="whole number"):
        check_processes(True)


def test_the_process_count_is_a_job_setting_outside_the_training_config_and_its_hash(monkeypatch):
    from ledgerlm.factory import distributed
    from ledgerlm.factory.jobs import TrainRequest

    monkeypatch.setattr(distributed, "usable_cores", lambda: 2)  # a two-process job fits this host

    plain = TrainRequest(model_id="m-1", datanet="d", version=1, base="tiny", config={"rank": 4})
    wide = TrainRequest(model_id="m-1", datanet="d", version=1, base="tiny", config={"rank": 4, "processes": 2})
    assert wide.processes() == 2 and plain.processes() == 1
    assert wide.train_config().sha256() == plain.train_config().sha256()
    with pytest.raises(FactoryError) as err:
        TrainRequest(model_id="m-1", datanet="d", version=1, config={"processes": 0}).train_config()
    assert err.value.field == "processes"


@pytest.mark.slow
def test_two_processes_train_the_adapter_one_process_trains_and_their_checkpoint_resumes_in_one(
        tiny_base, records, fast_config, tmp_path):
    config = replace(fast_config, epochs=2, batch_size=3, eval_split=0.0)  # 3 per step: ranks get 2 and 1
    single = train(tiny_base, records, config, tmp_path / "single", device="cpu")
    progress = []
    double = launch(tiny_base, records, config, tmp_path / "double", processes=2, progress=progress.append,
                    checkpoint_every=4, keep_checkpoints=100, device="cpu")
    assert double.steps == single.steps and not double.stopped
    assert [p.step for p in progress] == list(range(1, single.steps + 1))
    # the same steps: the same loss history, and the same adapter up to float summation order
    assert [round(r.loss, 4) for r in double.history] == [round(r.loss, 4) for r in single.history]
    assert _close(_adapter(tmp_path / "single"), _adapter(tmp_path / "double")) < 1e-4
    assert double.model is not None  # loaded in this process for the evaluation that follows
    assert not (tmp_path / "double" / ".distributed").exists()  # no copy of the records stays behind

    # a two-process checkpoint from the middle of the run, resumed by one process
    middle = tmp_path / "resumed" / "checkpoints" / "step-00000004"
    shutil.copytree(tmp_path / "double" / "checkpoints" / "step-00000004", middle)
    resumed = train(tiny_base, records, config, tmp_path / "resumed", resume=True, device="cpu")
    assert resumed.steps == single.steps
    assert [r.step for r in resumed.history] == list(range(1, single.steps + 1))
    assert _close(_adapter(tmp_path / "single"), _adapter(tmp_path / "resumed")) < 1e-4
