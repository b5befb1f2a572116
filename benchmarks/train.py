"""LoRA fine-tuning quality and speed: ledgerlm's factory against a plain PyTorch + PEFT loop, same recipe.

Both train the same base model on the same generated facts Datanet (invented entities, one fact per
record, `facts.py`) with the same recipe: rank, alpha, targets, learning rate, epochs and examples per
optimizer step. The plain loop (`peft_loop.py`) is AdamW at a constant rate on padded batches with
the loss on answer tokens; ledgerlm runs with its defaults for everything else (schedule, warm-up,
clipping) and packs each step's examples into rows of `--max-len` tokens. One independent scorer
(`fact_recall.py`) asks both adapters every fact twice, as trained and paraphrased, greedily:
recall of the planted value, exact match of the answer sentence, and the answer loss under the
paraphrase (a held-out loss: those prompts were never trained on).

Throughput counts real (non-pad) tokens from the end of the first step to the end of the last, so
loading and warm-up count for neither: per wall-clock second, and per second of the process's CPU
time, which other work on a shared machine disturbs less (the load average is in the header).
`--repeats N` trains both N times, alternating, and reports the median of each, so a burst of
load lands on both.
ledgerlm runs a prompt prefix that every example of a micro-batch shares (SmolLM2's default system
message and turn header) once per micro-batch; its tokens still count once per example, as they
do for the plain loop, since the loss and gradients are those of the full examples. A speed-up counts only at equal quality: the table shows it
only when paraphrased recall is within 3 points of the plain loop's. `tokens/s x recall` is the
throughput of learned data: it drops to zero for a run that is fast and learns nothing.

`--ablate` adds ledgerlm runs that each change one thing (the former schedule, warm-up, clipping,
loss on every token, one step per epoch) on the tuning seed's facts; the defaults were chosen on
those, and the comparison above is reported on a separate seed.

    python benchmarks/train.py --ablate --repeats 3           # tiny model: a few minutes on 2 cores
    python benchmarks/train.py --model smollm2 --facts 40 --epochs 10 --out benchmarks/results/train-smollm2.json

On a CUDA host both loops train on the GPU (`--device`), ledgerlm under its bfloat16 autocast and
the plain loop under the same. `--qlora` adds a ledgerlm QLoRA run (4-bit NF4 base, bitsandbytes),
`--index` times the node's attribution index build from the trained adapter against the training,
and `--random-init DIR` trains from randomly initialised weights of the model whose config and
tokenizer are in DIR (for speed only, on a machine the real weights cannot reach: recall is then
near zero for every run, and the answer loss on the trained questions is the quality to compare).

    python benchmarks/train.py --model smollm2 --random-init DIR --facts 160 --epochs 3 --qlora --index \
        --out benchmarks/results/train-gpu.json

Writes benchmarks/results/train.json and train.md (or `--out` and the .md beside it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from fact_recall import score_facts
from facts import REPORT_SEED, TUNING_SEED, corpus, generate_facts
from peft_loop import Recipe, train_plain_peft
from report import ResultTable, write_result

EQUAL_QUALITY = 0.03

# (label, TrainConfig changes, record shape) for --ablate; each changes one thing from the defaults.
ABLATIONS = [
    ("former defaults: 5% warm-up, linear decay to 0, clip at 1.0",
     {"warmup": 0.05, "scheduler": "linear", "max_grad_norm": 1.0}, "qa"),
    ("linear decay to 0 only", {"scheduler": "linear"}, "qa"),
    ("cosine decay to 0 only", {"scheduler": "cosine"}, "qa"),
    ("5% warm-up only", {"warmup": 0.05}, "qa"),
    ("clip at 1.0 only", {"max_grad_norm": 1.0}, "qa"),
    ("loss on every token, not only the answer", {}, "text"),
    ("one step per epoch (former --batch-size: 512-token blocks)", {"batch_size": None}, "qa"),
]


def step_throughput(marks: list[tuple[float, float, int]]) -> tuple[float, float]:
    """Real tokens per wall second and per CPU second from the end of step 1 to the end of the last step."""
    if len(marks) < 2:
        return 0.0, 0.0
    tokens = sum(t for _, _, t in marks[1:])
    return tokens / (marks[-1][0] - marks[0][0]), tokens / (marks[-1][1] - marks[0][1])


def median_throughput(runs: list[tuple[float, float]]) -> tuple[float, float]:
    """The median wall and CPU throughput of repeated runs (each median on its own)."""
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def train_ledgerlm(base, records: list[dict], recipe: Recipe, work: Path, device: str | None = None,
                   keep: bool = False, **changes):
    """Train with ledgerlm; `keep` returns the TrainResult too (its adapter stays in the work folder)."""
    from ledgerlm.factory import TrainConfig, train

    config = replace(TrainConfig(
        rank=recipe.rank, alpha=recipe.alpha, dropout=recipe.dropout, epochs=recipe.epochs, lr=recipe.lr,
        batch_size=recipe.batch_size, max_len=recipe.max_len, eval_split=0.0, seed=recipe.seed,
        target_modules=recipe.target_modules,
    ), **changes)
    marks, seen = [], [0]

    def on_step(p) -> None:
        marks.append((time.perf_counter(), time.process_time(), p.tokens_seen - seen[0]))
        seen[0] = p.tokens_seen

    out = work / "ledgerlm-adapter"
    shutil.rmtree(out, ignore_errors=True)
    result = train(base, records, config, out, progress=on_step, checkpoint_every=10**9, device=device)
    if keep:
        return result.model, result.steps, step_throughput(marks), result
    return result.model, result.steps, step_throughput(marks)


def as_text_records(tokenizer, records: list[dict]) -> list[dict]:
    """The same conversations as plain text records, so every token carries a label."""
    return [{"text": tokenizer.apply_chat_template(
        [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}],
        tokenize=False)} for r in records]


def prepare_base(kind: str, models_dir: Path, work: Path, facts: list, random_init: Path | None = None):
    from ledgerlm.factory import pull_smollm2, register_local, tiny_random_model

    if random_init is not None:
        return register_local(work / "models", f"{kind}-random-init", random_weights(random_init, work / "random"))
    if kind == "smollm2":
        return pull_smollm2(models_dir, progress=lambda m: print(f"  {m}", flush=True))
    texts = corpus(generate_facts(200, seed=99)) + corpus(facts)
    return register_local(work / "models", "tiny-facts", tiny_random_model(work / "tiny", texts, hidden_size=128))


def datanet_export(records: list[dict]) -> list[dict]:
    """The records as a Datanet version export carries them (four contributors in turn), so the node's
    attribution index can be built from the adapter trained on them; training reads only the Q&A fields."""
    import hashlib

    return [{**r, "_contribution_id": i + 1, "_contributor": "0x" + f"{i % 4 + 1:02x}" * 20,
             "_content_hash": "0x" + hashlib.sha256(repr(sorted(r.items())).encode()).hexdigest()}
            for i, r in enumerate(records)]


def random_weights(source: Path, out: Path) -> Path:
    """A model directory with `source`'s config and tokenizer and randomly initialised weights (seed 0)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source)).save_pretrained(out)
    return out


def quality_row(name: str, steps: int, tps: tuple[float, float], exact, para,
                baseline_tps: tuple[float, float] | None, baseline_para) -> list:
    speedup = "-"
    if baseline_tps:
        equal = abs(para.recall - baseline_para.recall) <= EQUAL_QUALITY
        speedup = (f"{tps[0] / baseline_tps[0]:.2f}x / {tps[1] / baseline_tps[1]:.2f}x" if equal
                   else "no (quality differs)")
    return [name, str(steps), f"{exact.recall:.0%}", f"{exact.exact_match:.0%}", f"{para.recall:.0%}",
            f"{para.exact_match:.0%}", f"{exact.answer_loss:.3f}", f"{para.answer_loss:.3f}", f"{para.top_value_share:.0%}",
            f"{tps[0]:,.0f}", f"{tps[1]:,.0f}", f"{tps[0] * para.recall:,.0f}", speedup]


COLUMNS = ["run", "steps", "recall (trained q.)", "exact (trained q.)", "recall (paraphrase)",
           "exact (paraphrase)", "answer loss (trained q.)", "held-out answer loss", "top value share", "tokens/s",
           "tokens per CPU s", "tokens/s x recall", "speed-up at equal quality (wall / CPU)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--facts", type=int, default=48, help="facts in the Datanet (one per record)")
    parser.add_argument("--epochs", type=int, help="default: 30 (tiny), the TrainConfig default (smollm2)")
    parser.add_argument("--lr", type=float, help="default: 3e-3 (tiny), the TrainConfig default (smollm2)")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per optimizer step")
    parser.add_argument("--max-len", type=int, default=256, help="ledgerlm's packed row length (cut for both)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both runs")
    parser.add_argument("--repeats", type=int, default=1,
                        help="train both N times, alternating, and report the median throughput "
                             "(quality is scored on the first runs; the runs are seeded)")
    parser.add_argument("--ablate", action="store_true", help="also run one-change ablations on the tuning seed")
    parser.add_argument("--models-dir", type=Path,
                        default=Path(os.environ.get("LEDGERLM_HOME", "~/.ledgerlm")).expanduser() / "models")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ledgerlm-train-benchmark",
                        help="scratch directory for models and adapters (emptied first)")
    parser.add_argument("--out", type=Path, help="JSON result path (Markdown beside it) [default: results/train.json]")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="where both loops train [default: cuda if present]")
    parser.add_argument("--qlora", action="store_true", help="add a ledgerlm QLoRA run (CUDA and bitsandbytes)")
    parser.add_argument("--index", action="store_true",
                        help="time the node's attribution index build from ledgerlm's adapter against its training")
    parser.add_argument("--random-init", type=Path, metavar="DIR",
                        help="train from random weights of the model whose config and tokenizer are in DIR")
    args = parser.parse_args()

    import torch

    from ledgerlm.factory import TrainConfig, load_tokenizer

    torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    defaults = TrainConfig()
    tiny = args.model == "tiny"
    recipe = Recipe(rank=defaults.rank, alpha=defaults.alpha, dropout=defaults.dropout,
                    lr=args.lr or (3e-3 if tiny else defaults.lr),
                    epochs=args.epochs or (30 if tiny else defaults.epochs),
                    batch_size=args.batch_size, max_len=args.max_len)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    reported, tuning = generate_facts(args.facts, REPORT_SEED), generate_facts(args.facts, TUNING_SEED)
    base = prepare_base(args.model, args.models_dir, args.work, reported + tuning, args.random_init)
    tokenizer = load_tokenizer(base)
    print(f"base {base.name}; {args.facts} facts; {device}; recipe {recipe}", flush=True)

    def scores(model, facts):
        return (score_facts(model, tokenizer, facts, paraphrased=False),
                score_facts(model, tokenizer, facts, paraphrased=True))

    records = datanet_export([f.record() for f in reported])
    plain_runs, ledgerlm_runs = [], []
    for repeat in range(args.repeats):
        print(f"training the plain PyTorch + PEFT loop ({repeat + 1}/{args.repeats}) ...", flush=True)
        plain = train_plain_peft(base.path, records, recipe, device)
        plain_runs.append(step_throughput(plain.step_marks))
        if repeat == 0:
            plain_exact, plain_para = scores(plain.model, reported)
        print(f"training with ledgerlm ({repeat + 1}/{args.repeats}) ...", flush=True)
        model, steps, tps, result = train_ledgerlm(base, records, recipe, args.work, device, keep=True)
        ledgerlm_runs.append(tps)
        if repeat == 0:
            exact, para = scores(model, reported)
            trained = result
    plain_tps, tps = median_throughput(plain_runs), median_throughput(ledgerlm_runs)

    title = (f"{base.name}, {args.facts} facts (report seed {REPORT_SEED}), rank {recipe.rank}, lr {recipe.lr:g}, "
             f"{recipe.epochs} epochs of {recipe.batch_size} examples per step, {device}, "
             f"{args.threads} torch thread(s)")
    table = ResultTable(title, COLUMNS)
    table.add_row(*quality_row("plain PyTorch + PEFT loop (baseline)", plain.steps, plain_tps, plain_exact,
                               plain_para, None, plain_para))
    table.add_row(*quality_row("ledgerlm factory.train, defaults", steps, tps, exact, para, plain_tps, plain_para))
    runs = {"plain": {"steps": plain.steps, "tokens_per_s": plain_tps[0], "tokens_per_cpu_s": plain_tps[1],
                      "exact": plain_exact.to_dict(), "paraphrased": plain_para.to_dict(),
                      "padding_fraction": 1 - plain.real_tokens / plain.padded_tokens},
            "ledgerlm": {"steps": steps, "tokens_per_s": tps[0], "tokens_per_cpu_s": tps[1],
                         "exact": exact.to_dict(), "paraphrased": para.to_dict()},
            "throughput_repeats": {"plain": plain_runs, "ledgerlm": ledgerlm_runs}, "device": device}
    if args.qlora:
        print("training with ledgerlm, QLoRA ...", flush=True)
        model, steps, q_tps = train_ledgerlm(base, records, recipe, args.work / "qlora", device, method="qlora")
        q_exact, q_para = scores(model, reported)
        table.add_row(*quality_row("ledgerlm factory.train, QLoRA (4-bit NF4 base)", steps, q_tps, q_exact, q_para,
                                   plain_tps, plain_para))
        runs["ledgerlm_qlora"] = {"steps": steps, "tokens_per_s": q_tps[0], "tokens_per_cpu_s": q_tps[1],
                                  "exact": q_exact.to_dict(), "paraphrased": q_para.to_dict()}
        del model
    tables = [table]
    if args.index:
        from ledgerlm.attribution import build_index

        print("building the attribution index from ledgerlm's adapter ...", flush=True)
        started = time.perf_counter()
        index = build_index(trained.out_dir, records, base=base, loaded=(trained.model, tokenizer))
        build_s = time.perf_counter() - started
        cost = ResultTable("attribution index build (node default: a pass over the final adapter, calibration "
                           "included) against ledgerlm's training, wall s", ["examples", "training", "index build",
                                                                             "build / training"])
        cost.add_row(str(len(index.examples)), f"{trained.train_seconds:.1f}", f"{build_s:.1f}",
                     f"{build_s / trained.train_seconds:.2f}")
        runs["index_build"] = {"examples": len(index.examples), "train_seconds": trained.train_seconds,
                               "build_seconds": build_s}
        tables.append(cost)
        cost.print()
    table.print()

    if args.ablate:
        tune_records = [f.record() for f in tuning]
        ablation = ResultTable(f"one change at a time from ledgerlm's defaults, tuning seed {TUNING_SEED}", COLUMNS)
        model, steps, tps = train_ledgerlm(base, tune_records, recipe, args.work)
        defaults_exact, defaults_para = scores(model, tuning)
        ablation.add_row(*quality_row("ledgerlm defaults", steps, tps, defaults_exact, defaults_para, None, None))
        runs["ablations"] = {"defaults": {"exact": defaults_exact.to_dict(), "paraphrased": defaults_para.to_dict()}}
        for label, changes, shape in ABLATIONS:
            print(f"ablation: {label} ...", flush=True)
            changes = {k: (len(tune_records) if v is None else v) for k, v in changes.items()}
            data = tune_records if shape == "qa" else as_text_records(tokenizer, tune_records)
            model, steps, tps = train_ledgerlm(base, data, recipe, args.work, **changes)
            a_exact, a_para = scores(model, tuning)
            ablation.add_row(*quality_row(label, steps, tps, a_exact, a_para, None, None))
            runs["ablations"][label] = {"changes": changes, "records": shape, "steps": steps,
                                        "exact": a_exact.to_dict(), "paraphrased": a_para.to_dict()}
        ablation.print()
        tables.append(ablation)

    import peft
    import transformers

    write_result("train", {
        "base_model": base.to_dict() | {"path": None},
        "recipe": {**recipe.__dict__, "target_modules": list(recipe.target_modules)},
        "ledgerlm_defaults": defaults.to_dict(),
        "facts": args.facts, "report_seed": REPORT_SEED, "tuning_seed": TUNING_SEED,
        "torch_threads": args.threads,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "runs": runs,
    }, tables, notes=[
        "recall: the planted value appears in the greedy answer; exact: the answer sentence matches; "
        "paraphrase: a wording never trained on; held-out answer loss: under the paraphrase",
        f"a speed-up counts only when paraphrased recall is within {EQUAL_QUALITY:.0%} of the baseline's",
    ], json_path=args.out)


if __name__ == "__main__":
    main()
