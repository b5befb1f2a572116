"""What a compute spot-check costs the verifier and what it catches: CPU seconds of the node's spot-check of a
training job against the baseline of re-executing the whole job, and how often it catches a tampered result.

Tampering kinds: the delivered adapter (last checkpoint) moved by 1e-3, the last step's loss moved by 1e-3, and
one middle step's loss moved by 1e-3 (the spot-check recomputes one random step plus the last, so a middle step
is caught only when it is the one drawn). Run:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/provider_spot_check.py [--steps 8 32] [--trials 20]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
import random
import tempfile
import time
from pathlib import Path

from report import ResultTable, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--trials", type=int, default=20, help="spot-checks per tampering kind")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from ledgerlm.factory import describe_model_dir, tiny_random_model
    from ledgerlm.providers import TrainingSpec
    from ledgerlm.providers.spotcheck import spot_check_training
    from ledgerlm.providers.training import checkpoint_bytes, read_checkpoint, run_training

    texts = [f"Ferry {i} leaves pier {i % 5} at {6 + i % 12} o'clock and stops at island {i * 7 % 13}."
             for i in range(32)]
    base = describe_model_dir(tiny_random_model(Path(tempfile.mkdtemp()) / "tiny", texts), "tiny", "local")
    rng = random.Random(0)
    table = ResultTable("provider_spot_check", ["steps", "re-execute job (CPU s)", "spot-check (CPU s)",
                                                "verifier cost vs re-execution", "honest passed",
                                                "adapter tampered caught", "last loss tampered caught",
                                                "middle loss tampered caught"])
    runs = []
    for steps in args.steps:
        spec = TrainingSpec(texts=texts, steps=steps, batch_size=4, learning_rate=0.05, rank=4, seed=3, max_len=48)
        start = time.process_time()
        result, files = run_training(base, spec)
        full = time.process_time() - start
        weights = {sha: read_checkpoint(data) for sha, data in files.items()}

        def check(res, store, pick, spec=spec):
            return spot_check_training(base, spec, res, store.__getitem__, pick).passed

        start = time.process_time()
        honest = [check(result, weights, 1 + rng.randrange(steps)) for _ in range(args.trials)]
        spot = (time.process_time() - start) / args.trials

        forged_result, forged_weights = copy.deepcopy(result), dict(weights)
        state = dict(weights[result["checkpoints"][-1]])
        name = sorted(state)[0]
        state[name] = state[name] + 1e-3
        forged_sha = hashlib.sha256(checkpoint_bytes(state)).hexdigest()
        forged_result["checkpoints"][-1] = forged_sha
        forged_weights[forged_sha] = state
        last_loss = copy.deepcopy(result)
        last_loss["losses"][-1] += 1e-3
        middle = copy.deepcopy(result)
        middle["losses"][steps // 2 - 1] += 1e-3  # step steps // 2
        caught = {
            "adapter": sum(not check(forged_result, forged_weights, 1 + rng.randrange(steps))
                           for _ in range(args.trials)),
            "last_loss": sum(not check(last_loss, weights, 1 + rng.randrange(steps)) for _ in range(args.trials)),
            "middle_loss": sum(not check(middle, weights, 1 + rng.randrange(steps)) for _ in range(args.trials)),
        }
        runs.append({"steps": steps, "full_job_cpu_s": full, "spot_check_cpu_s": spot, "honest_passed": sum(honest),
                     "trials": args.trials, "caught": caught})
        table.add_row(str(steps), f"{full:.2f}", f"{spot:.2f}", f"{spot / full:.2f}x",
                      f"{sum(honest)}/{args.trials}", f"{caught['adapter']}/{args.trials}",
                      f"{caught['last_loss']}/{args.trials}", f"{caught['middle_loss']}/{args.trials}")
    table.print()
    write_result("provider_spot_check", {"runs": runs, "torch_threads": 1,
                                         "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}, [table],
                 notes=["baseline: the verifier re-executes the whole job (every step) from the seeded start",
                        "spot-check: the seeded start, one random step and the last step, from the provider's "
                        "own checkpoints; a middle step's tampering is caught only when that step is drawn "
                        "(about 1 in `steps` per check)",
                        "tiny random Llama (hidden 64, 2 layers), LoRA rank 4, batch 4, float64, one torch thread"])


if __name__ == "__main__":
    main()
