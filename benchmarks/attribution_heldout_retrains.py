"""More retrains on random halves for a held-out attribution run, and every saved method's LDS over all of them beside the first run's.

Run:  python benchmarks/attribution_heldout.py --model smollm2 --models-dir DIR --lds-subsets 12 --work W
      python benchmarks/attribution_heldout_retrains.py --work W --models-dir DIR --halves 48
                                                        [--part 1/2] [--check]

A query's LDS is a Spearman correlation over the halves: with 12 retrains it is a rank
correlation of 12 points, and one method's LDS against another's (the projected gradient's
against the exact LoRA gradients') moves by a few hundredths with any small change of scores.
This script draws the next halves from the same random stream the held-out run drew its first
ones from (the saved masks are checked against it), retrains ModelFactory's defaults on each,
and keeps each retrain's losses of the LDS queries in `W/halves/` (a run can be cut and rerun,
and `--part K/N` runs every N-th missing half, so N processes can share the work). Once every
half has its losses, `W/lds.npz` is rewritten with all of them (the first run's file is kept as
`lds-first.npz`), and every score saved there is measured over the first run's halves and over
all, with the paired per-query difference from the exact LoRA gradients.

`--check` retrains the first saved half again and compares its losses with the saved ones: the
retrains here must be the held-out run's.

Prints the table and writes benchmarks/results/attribution_heldout_retrains.json and .md (`--out`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
from attribution_heldout import (  # noqa: E402
    half_masks,
    heldout_datanet,
    lds_batch,
    retrain_losses,
    train_settings,
)
from report import write_result  # noqa: E402
from rich.console import Console  # noqa: E402

from ledgerlm.evals.table import ResultTable  # noqa: E402

console = Console(width=160)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True,
                        help="the --work folder of an attribution_heldout.py run with --lds-subsets")
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="smollm2",
                        help="as the held-out run had it")
    parser.add_argument("--models-dir", default=None, help="where SmolLM2 is (ledgerlm models pull)")
    parser.add_argument("--halves", type=int, default=48, help="retrains on halves in all")
    parser.add_argument("--part", default="1/1",
                        help="K/N: retrain only every N-th missing half, from the K-th")
    parser.add_argument("--check", action="store_true",
                        help="first retrain the first saved half again and compare its losses")
    parser.add_argument("--epochs", type=int, default=10, help="as the held-out run had it")
    parser.add_argument("--contributors", type=int, default=8, help="as the held-out run had it")
    parser.add_argument("--facts-each", type=int, default=12, help="as the held-out run had it")
    parser.add_argument("--seed", type=int, default=0, help="the held-out run's --seed")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/results/attribution_heldout_retrains.json)")
    args = parser.parse_args(argv)
    try:
        part, parts = (int(v) for v in args.part.split("/"))
        if not 1 <= part <= parts:
            raise ValueError
    except ValueError:
        parser.error(f"--part: K/N with 1 <= K <= N, not {args.part!r}")

    import torch

    from ledgerlm.evals.attribution.harness import EXACT_HEAD, EvalConfig, _base_model
    from ledgerlm.evals.attribution.metrics import lds, paired_difference
    from ledgerlm.factory import load_tokenizer

    torch.set_num_threads(1)
    started = time.perf_counter()
    first = args.work / "lds-first.npz"
    saved = first if first.exists() else args.work / "lds.npz"
    if not saved.exists():
        parser.error(f"--work: {saved} not found; run attribution_heldout.py with --lds-subsets "
                     "and --work first")
    data = dict(np.load(saved))
    rows, chosen = data["rows"], data["queries"]
    done = len(data["masks"])
    if args.halves <= done:
        parser.error(f"--halves: the held-out run already has {done} halves; ask for more")
    masks = half_masks(args.seed, len(rows), args.halves)
    if not np.array_equal(masks[:done], data["masks"]):
        parser.error("the saved halves are not this seed's: pass the held-out run's --seed")

    records, queries, _contradicted, _facts = heldout_datanet(args.contributors, args.facts_each,
                                                              args.seed)
    config = EvalConfig(model=args.model, models_dir=args.models_dir, epochs=args.epochs,
                        seed=args.seed)
    settings = train_settings(config)  # the held-out run's
    base = _base_model(config, args.work, console.log)
    batch = lds_batch(load_tokenizer(base), queries, chosen)

    def retrain(j: int) -> np.ndarray:
        out = args.work / "halves" / f"model-{j}"
        losses = retrain_losses(base, records, rows, masks[j], settings, out, batch)
        shutil.rmtree(out, ignore_errors=True)  # the losses are what is kept
        return losses

    halves_dir = args.work / "halves"
    halves_dir.mkdir(exist_ok=True)
    check = None
    if args.check:
        console.log("retraining the first saved half again")
        again = retrain(0)
        check = float(np.max(np.abs(again - data["losses"][0])))
        console.log(f"largest loss difference from the saved retrain: {check:.2e}")
    missing = [j for j in range(done, args.halves) if not (halves_dir / f"{j}.npy").exists()]
    mine = missing[part - 1::parts]
    for n, j in enumerate(mine, 1):
        t0 = time.perf_counter()
        losses = retrain(j)
        np.save(halves_dir / f"{j}.npy.tmp.npy", losses)
        os.replace(halves_dir / f"{j}.npy.tmp.npy", halves_dir / f"{j}.npy")
        console.log(f"half {j + 1}/{args.halves} ({n}/{len(mine)} of this part) in "
                    f"{time.perf_counter() - t0:.0f} s")
    still = [j for j in range(done, args.halves) if not (halves_dir / f"{j}.npy").exists()]
    if still:
        console.log(f"{len(still)} halves still to retrain (other parts); nothing measured yet")
        return {"missing": still}

    losses = np.concatenate([data["losses"],
                             np.stack([np.load(halves_dir / f"{j}.npy")
                                       for j in range(done, args.halves)])])
    if not first.exists():
        shutil.copyfile(saved, first)
    np.savez(args.work / "lds.npz", **{**data, "masks": masks, "losses": losses})

    names = [k.removeprefix("scores:") for k in data if k.startswith("scores:")]
    results = {}
    for name in names:
        scores = data[f"scores:{name}"]
        results[name] = {"first": lds(scores, masks[:done], losses[:done]),
                         "all": lds(scores, masks, losses)}
    table = ResultTable(
        f"LDS on the held-out Datanet over the first run's {done} halves and over all "
        f"{args.halves} ({len(chosen)} queries); paired difference from the exact LoRA gradients",
        ["method", f"LDS, {done} halves", f"LDS, {args.halves} halves", "less exact's, paired",
         "share of exact's"])
    exact_all = results[EXACT_HEAD]["all"]
    for name, r in sorted(results.items(), key=lambda kv: -kv[1]["all"]["mean"]):
        d = paired_difference(r["all"], exact_all)
        table.add_row(name, f"{r['first']['mean']:.3f} ± {r['first']['sem']:.3f}",
                      f"{r['all']['mean']:.3f} ± {r['all']['sem']:.3f}",
                      "" if name == EXACT_HEAD else f"{d[0]:+.3f} ± {d[1]:.3f}",
                      f"{r['all']['mean'] / exact_all['mean']:.2f}")
    table.print()
    seconds = time.perf_counter() - started
    payload = {"work": str(args.work), "halves": args.halves, "first_halves": done,
               "queries": int(len(chosen)), "check_max_loss_difference": check,
               "methods": {name: {"first": {k: v for k, v in r["first"].items()},
                                  "all": {k: v for k, v in r["all"].items()}}
                           for name, r in results.items()},
               "seconds": seconds}
    write_result("attribution_heldout_retrains", payload, [table], json_path=args.out, notes=[
        f"one torch thread; retrains of ModelFactory's defaults ({args.epochs} epochs) on halves "
        f"drawn from the held-out run's stream (seed {args.seed}); the first {done} are that run's",
        "scores are the held-out run's saved ones (lds.npz): nothing is re-scored"])
    return payload


if __name__ == "__main__":
    main()
