"""What the node's attribution rule pays against the rule before it, on a saved held-out run's own answers.

Run:  python benchmarks/attribution_heldout.py --model smollm2 --models-dir DIR --no-exact --work W --out RUN
      python benchmarks/attribution_rule_change.py --run RUN --work W [--out FILE]

`attribution_heldout.py --work W` keeps the fine-tuned model and its index; its JSON keeps the
model's own greedy answers to the Datanet's questions and to the unrelated prompts. Each answer's
gradient feature is computed once, as serving computes it (float64), and its evidence is gathered
under the node's rule and under the previous one (`attribute.DEPARTURE_OVER_UNASKED` off: rule 17)
in the same run. Prints, per kind of answer, the mean bps paid to the right contributor, to wrong
ones and to the data pool under each rule, and every answer whose split changed; writes
benchmarks/results/attribution_rule_change.json and .md (`--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from unittest.mock import patch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from report import write_result  # noqa: E402

from ledgerlm.evals.table import ResultTable  # noqa: E402

GROUPS = ("own answers naming the value", "own answers not naming it", "own answers to unrelated prompts")


def splits(attributor, prompt: str, answer: str, rules: tuple[str, str]) -> dict[str, dict[str, int]]:
    """Contributor -> bps of one answer under the previous rule and the node's (`rules`, their labels), from one
    gradient pass."""
    from ledgerlm.attribution.attribute import (
        AttributionSettings,
        answer_feature,
        gather_evidence,
        prepare_answer,
        result_from_evidence,
    )

    module = sys.modules["ledgerlm.attribution.attribute"]  # the package exports a function of that name
    index, settings = attributor.index, attributor.settings or AttributionSettings()
    query = prepare_answer(attributor.tokenizer, prompt, answer,
                           index.calibration.settings.restated_weight)
    feature = answer_feature(attributor.model, index.projector, query.example, query.weights[0],
                             per_token=index.config.per_token_query)
    out = {}
    for rule, follows in zip(rules, (False, True)):
        with patch.object(module, "DEPARTURE_OVER_UNASKED", follows):
            result = result_from_evidence(index, gather_evidence(index, feature, query, settings),
                                          settings)
        out[rule] = {c.contributor: c.bps for c in result.contributors}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True,
                        help="JSON that attribution_heldout.py wrote (--out) for the saved model")
    parser.add_argument("--work", type=Path, required=True,
                        help="the --work folder of that run (holds model/)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/results/attribution_rule_change.json)")
    args = parser.parse_args()

    import torch

    from ledgerlm.attribution import load_attributor
    from ledgerlm.attribution.attribute import RULE

    torch.set_num_threads(1)
    started = time.perf_counter()
    run = json.loads(args.run.read_text())
    attributor = load_attributor(args.work / "model")
    rules = (f"rule {RULE - 1}", f"rule {RULE}")
    answers = [(GROUPS[0] if q["names_the_value"] else GROUPS[1], q["prompt"], q["answer"],
                q["right_contributor"]) for q in run["own_answers"]["examples"]]
    answers += [(GROUPS[2], q["prompt"], q["answer"], None) for q in run["own_null"]["examples"]]
    totals = {(g, r): [0, 0, 0, 0] for g in GROUPS for r in rules}  # right, wrong, answers, paid
    changed = []
    for n, (group, prompt, answer, right) in enumerate(answers, 1):
        paid = splits(attributor, prompt, answer, rules)
        for rule, split in paid.items():
            t = totals[group, rule]
            t[0] += split.get(right, 0) if right else 0
            t[1] += sum(v for who, v in split.items() if who != right)
            t[2] += 1
            t[3] += sum(split.values()) > 0
        if paid[rules[0]] != paid[rules[1]]:
            changed.append({"kind": group, "prompt": prompt, "answer": answer, "right": right,
                            **paid})
        print(f"\r{n}/{len(answers)} answers attributed", end="", file=sys.stderr)
    print(file=sys.stderr)

    table = ResultTable(
        f"The model's own answers under {rules[1]} and {rules[0]} (same features, same run): "
        "mean bps of the contributor share",
        ["answers", "rule", "right", "wrong", "data pool", "paid anyone"])
    summary = {}
    for group in GROUPS:
        for rule in rules:
            right, wrong, count, anyone = totals[group, rule]
            if not count:
                continue
            row = {"answers": count, "right": right / count, "wrong": wrong / count,
                   "pool": 10_000 - (right + wrong) / count, "paid_anyone": anyone / count}
            summary[f"{group} | {rule}"] = row
            table.add_row(f"{group} ({count})", rule, f"{row['right']:.0f}", f"{row['wrong']:.0f}",
                          f"{row['pool']:.0f}", f"{row['paid_anyone']:.2f}")
    moved = ResultTable("Answers whose split changed (contributor: bps)",
                        ["kind", "answer", rules[0], rules[1], "right contributor"])
    for c in changed:
        def shown(split):
            return ", ".join(f"{who[:10]}: {bps}" for who, bps in split.items()) or "nobody"
        moved.add_row(c["kind"], c["answer"], shown(c[rules[0]]), shown(c[rules[1]]),
                      (c["right"] or "none")[:10])
    table.print()
    moved.print()
    seconds = time.perf_counter() - started
    write_result("attribution_rule_change", {"run": str(args.run), "rules": list(rules),
                                             "summary": summary, "changed": changed,
                                             "seconds": round(seconds, 1)},
                 [table, moved], json_path=args.out,
                 notes=[f"run: {run.get('command', args.run)}", f"one torch thread; total {seconds:.0f} s",
                        "every answer's feature is computed once; only the rule differs"])


if __name__ == "__main__":
    main()
