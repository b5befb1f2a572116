"""Data-parallel training over several processes launched by torchrun, one per GPU (gloo on a CPU host).

Every optimizer step is the step one process would take: each rank trains on its share of the
step's examples, its loss divided by the labelled tokens of the whole step, and the ranks' LoRA
gradients are summed (one all-reduce) before the identical optimizer step on every rank. Rank 0
writes the checkpoints, whose contents do not depend on the process count, so a run resumes from
them on any number of processes. `launch` runs in the parent (the node's training worker), writes
the run's inputs next to its output, starts torchrun, relays rank 0's progress and asks the ranks
to stop through a file; `main` is each rank's entry point.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from ledgerlm.factory.basemodels import BaseModel
from ledgerlm.factory.errors import FactoryError
from ledgerlm.factory.train import TRAINING_FILE, StepRecord, TrainConfig, TrainProgress, TrainResult, train

RUN_DIR = ".distributed"
STOP_FILE = "STOP"
PROGRESS = "ledgerlm-progress "
FAILURE = "ledgerlm-failure "
MAX_PROCESSES = 64


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_processes(processes: int, device: str | None = None) -> None:
    """Refuse a process count this host cannot run: more processes than GPUs, or a nonsensical number.

    Without CUDA the ranks train on CPU (gloo), each on at least one core of its own: more processes
    than the host's cores only contend for them, so at most one per usable core is allowed."""
    if not isinstance(processes, int) or isinstance(processes, bool) or not 1 <= processes <= MAX_PROCESSES:
        raise FactoryError(f"processes must be a whole number from 1 to {MAX_PROCESSES}, not {processes!r}",
                           field="processes")
    if processes == 1:  # any host runs one; a request checked while it is signed need not load torch for it
        return
    import torch

    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda and processes > torch.cuda.device_count():
        raise FactoryError(f"{processes} training processes need {processes} GPUs; this host has "
                           f"{torch.cuda.device_count()}", field="processes")
    if not cuda and processes > (cores := usable_cores()):
        raise FactoryError(f"{processes} training processes on CPU need {processes} cores; this host has "
                           f"{cores}", field="processes")


def launch(base: BaseModel, records: list[dict], config: TrainConfig, out_dir: Path, *, processes: int,
           progress: Callable[[TrainProgress], None] | None = None, resume: bool = False,
           should_stop: Callable[[], bool] | None = None, checkpoint_every: int | None = None,
           keep_checkpoints: int = 2, device: str | None = None) -> TrainResult:
    """Train as `train` does, on `processes` processes; returns the result with the trained model loaded here."""
    check_processes(processes, device)
    out_dir = Path(out_dir)
    run = out_dir / RUN_DIR
    run.mkdir(parents=True, exist_ok=True)
    (run / STOP_FILE).unlink(missing_ok=True)
    (run / "records.json").write_text(json.dumps(records))
    (run / "spec.json").write_text(json.dumps({
        "base": base.to_dict(), "config": config.to_dict(), "out_dir": str(out_dir), "resume": resume,
        "checkpoint_every": checkpoint_every, "keep_checkpoints": keep_checkpoints, "device": device}))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "ledgerlm.factory.distributed", str(run / "spec.json")]
    import ledgerlm

    # the ranks import the same ledgerlm as this process, wherever it was imported from
    package_root = str(Path(ledgerlm.__file__).resolve().parents[1])
    path = os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    try:
        ranks = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        errors: list[str] = []
        reader = threading.Thread(target=lambda: errors.extend(ranks.stderr), daemon=True)
        reader.start()
        failures: list[str] = []
        for line in ranks.stdout:
            if line.startswith(PROGRESS) and progress is not None:
                progress(TrainProgress(**json.loads(line[len(PROGRESS):])))
            elif line.startswith(FAILURE):
                failures.append(json.loads(line[len(FAILURE):]))
            if should_stop is not None and should_stop():
                (run / STOP_FILE).touch()
        ranks.wait()
        reader.join(timeout=10)
    finally:  # the records copy must not outlive the run in the model's directory
        shutil.rmtree(run, ignore_errors=True)
    if ranks.returncode != 0:
        why = failures[0] if failures else "".join(errors[-15:]).strip()[-1500:]
        raise FactoryError(f"data-parallel training on {processes} processes failed: {why}", field="processes",
                           status=500)
    return _result(base, out_dir, config, device)


def _result(base: BaseModel, out_dir: Path, config: TrainConfig, device: str | None) -> TrainResult:
    from ledgerlm.factory.train import check_training_setup

    done = json.loads((out_dir / TRAINING_FILE).read_text())
    model = None
    if not done["stopped"]:
        from peft import PeftModel

        from ledgerlm.factory.loading import from_pretrained, load_base_model, pick_device

        model = from_pretrained(PeftModel, load_base_model(base, pick_device(device)), str(out_dir)).eval()
    return TrainResult(
        out_dir=out_dir, config=check_training_setup(base, config), data_sha256=done["data_sha256"],
        steps=done["steps"], total_steps=done["total_steps"], stopped=done["stopped"],
        history=[StepRecord(**r) for r in done["history"]], tokens_seen=done["tokens_seen"],
        train_seconds=done["train_seconds"], device=done["device"], train_indices=done["train_indices"],
        eval_indices=done["eval_indices"], truncated=done["truncated"], dropped=done["dropped"], model=model)


def main(spec_path: str) -> None:
    import torch
    import torch.distributed as dist

    spec = json.loads(Path(spec_path).read_text())
    run = Path(spec_path).parent
    cuda = spec["device"] != "cpu" and torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    device = spec["device"]
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    first = dist.get_rank() == 0

    def report(p: TrainProgress) -> None:
        if first:
            from dataclasses import asdict

            print(PROGRESS + json.dumps(asdict(p)), flush=True)

    try:
        train(BaseModel.from_dict(spec["base"]), json.loads((run / "records.json").read_text()),
              TrainConfig.from_dict(spec["config"]), Path(spec["out_dir"]), progress=report, resume=spec["resume"],
              should_stop=lambda: (run / STOP_FILE).exists(), checkpoint_every=spec["checkpoint_every"],
              keep_checkpoints=spec["keep_checkpoints"], device=device)
    except Exception as exc:  # the parent reports the rank's own error, not the launcher's summary
        print(FAILURE + json.dumps(f"rank {dist.get_rank()}: {type(exc).__name__}: {exc}"), flush=True)
        raise
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
