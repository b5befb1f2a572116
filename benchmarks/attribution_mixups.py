"""What span evidence pays when an answer gives the person asked about another person's town.

Run:  python benchmarks/attribution_mixups.py [--tokenizers tiny,smollm2] [--models-dir DIR]
                                              [--seeds 3] [--out FILE]

A small model mixes people up: asked where Talsha Garpelzi grew up, SmolLM2-135M answered
"Talsha Garpelzi comes from Shagartal.", the town another person's record gives. For every person
of the attribution evaluation's planted-facts Datanets (ledgerlm.evals.attribution.facts; 8 and 24
people, `--seeds` seeds per split), each question is answered in several wordings, once with the
person's own town and once with the next person's, and the answer's tokens are matched against
the Datanet's span index as a receipt matches them (`SpanIndex.explain`, both readings, the span
bar at its floor of 4 tokens, which calibration never lowers). No model runs: this is the text evidence alone, before any
gradient. Rules attribute the same answers in the same run, rule 9 and the node's current
one (rule 10 or later, named by its number in the tables):

  rule 9   what receipts did before: a mix-up departs only where the record asked about shares
           the answer's words up to the value (`SpanIndex._departure`);
  rule 10  also where a record the prompt does not ask about holds the value and aligns, read up
           to it, with a record asked about that gives another value (`SpanIndex._borrowed`);
           later rules change which records a prompt asks about (rule 11 reads it by whole words,
           rule 12 lets a whole word of four letters name a record).

A third column is the current rule on an index built before a clitic began a word of its own
(`spans.token_classes`): "'s" went on with the name before it, so a possessive question ("What
is <person>'s home town?") named nobody when read by whole words.

Figures per wording, as fractions of the answer's span credit (the receipt pays credit x the
contributor share): credit to the right contributor, to wrong ones, shared-span credit left for
the gradient to resolve among candidates (`unclaimed`: where a wrong answer's payment came from in
the SmolLM2 run), the share of answers paying any wrong contributor, and of answers that depart
(no gradient evidence either). The tuning split is where the rule was looked at; the test split,
with other templates and vocabulary, is what the rule is judged by. Prints the tables and writes
benchmarks/results/attribution_mixups.json and .md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from report import ResultTable, write_result  # noqa: E402  (benchmarks/ is the script's directory)

from ledgerlm.attribution.attribute import RULE  # noqa: E402

WORDINGS = {
    "the record's own wording": None,
    '"<person> comes from <town>."': "{p} comes from {t}.",
    '"The town <person> grew up in is <town>."': "The town {p} grew up in is {t}.",
    '"<person> grew up in <town>."': "{p} grew up in {t}.",
    '"<town>."': "{t}.",
    "indirect question, its answer's wording": None,
    # a possessive question (its own prompt): "'s" is a token of its own in both tokenizers
    '"What is <person>\'s home town?" -> "<person> comes from <town>."':
        ("What is {p}'s home town?", "{p} comes from {t}."),
}
GLUED = f"rule {RULE}, \"'s\" glued to the name"
RULES = ("rule 9", GLUED, f"rule {RULE}")


def tokenizer_for(name: str, models_dir: Path | None, work: Path):
    from ledgerlm.evals.attribution.baselines import record_text
    from ledgerlm.evals.attribution.harness import EvalConfig, pretraining_corpus
    from ledgerlm.factory import load_tokenizer, pull_smollm2, register_local, tiny_random_model

    if name == "smollm2":
        return load_tokenizer(pull_smollm2(models_dir or Path.home() / ".ledgerlm" / "models"))
    # the evaluation's tiny tokenizer: trained on facts about other people, never on these
    corpus = [record_text(r) for r in pretraining_corpus(EvalConfig())]
    path = tiny_random_model(work / "tiny-llama", corpus, hidden_size=128, layers=2, heads=4,
                             vocab_size=768, seed=0)
    return load_tokenizer(register_local(work / "models", "tiny-eval", path))


def answers(data, person: str, town: str, other: str):
    """(wording, which town, prompt, answer) for one person's questions."""
    para = next(q for q in data.queries if q.kind == "paraphrase" and person in q.prompt)
    indirect = next(q for q in data.queries if q.kind == "indirect" and q.records == para.records)
    for wording, phrase in WORDINGS.items():
        for which, t in (("own town", town), ("another's town", other)):
            if isinstance(phrase, tuple):
                yield wording, which, phrase[0].format(p=person), phrase[1].format(p=person, t=t)
            elif phrase is not None:
                yield wording, which, para.prompt, phrase.format(p=person, t=t)
            elif wording.startswith("indirect"):
                yield wording, which, indirect.prompt, indirect.answer.replace(town, t)
            else:
                yield wording, which, para.prompt, para.answer.replace(town, t)


def attribute_spans(spans, tokenizer, prompt: str, answer: str, rule: str):
    from ledgerlm.attribution.attribute import chosen_reading, prepare_answer
    from ledgerlm.attribution.calibration import CalibrationSettings, span_max_rows

    settings = CalibrationSettings()
    prepared = prepare_answer(tokenizer, prompt, answer, settings.restated_weight)
    max_rows = span_max_rows(spans.n_rows, settings)
    found = [spans.explain(ids, min_len=settings.min_span, max_examples=max_rows,
                           context=prepared.context, min_chars=settings.min_span_chars, weights=w)
             for ids, w in zip(prepared.readings, prepared.weights)]
    if rule == "rule 9":
        return max(found, key=lambda e: (e.coverage, sum(c for _, c, _ in e.unclaimed)))
    return chosen_reading(found, lambda: spans.asked_rows(prepared.context, max_rows))


def measure(tokenizer, split: str, seeds: int) -> dict:
    import numpy as np

    from ledgerlm.attribution.features import record_examples
    from ledgerlm.attribution.spans import SpanIndex, token_classes
    from ledgerlm.evals.attribution.facts import make_fact_tracing_set

    chars, words, spaced = token_classes(tokenizer)
    # what indexes built before a clitic began a word of its own hold: "'s" went on with the word
    # before it, as any token without a space first does
    texts = tokenizer.batch_decode([[i] for i in range(len(spaced))], skip_special_tokens=True)
    spaced_before = np.array([t[:1].isspace() for t in texts], dtype=bool)
    totals: dict = {}
    for seed in range(seeds):
        for people in (8, 24):
            data = make_fact_tracing_set(split, people, seed)
            records = data.records
            tokens: dict[int, list[int]] = {}
            for piece in record_examples(records, list(range(len(records))), tokenizer, 256):
                tokens.setdefault(piece.index, []).extend(piece.input_ids)
            rows = [tokens[i] for i in range(len(records))]
            spans = SpanIndex.build(rows, chars, words, spaced)
            glued = SpanIndex.build(rows, chars, words, spaced_before)
            for i, (person, town) in enumerate(zip(data.people, data.towns)):
                other = data.towns[(i + 1) % people]
                right_owner = next(q.contributor for q in data.queries
                                   if q.kind == "paraphrase" and person in q.prompt)
                for wording, which, prompt, answer in answers(data, person, town, other):
                    for rule in RULES:
                        with rule_in_force(rule):
                            e = attribute_spans(glued if rule == GLUED else spans, tokenizer,
                                                prompt, answer, rule)
                        credit = dict(zip(e.rows.tolist(), e.credit.tolist()))
                        right = sum(c for r, c in credit.items()
                                    if records[r]["_contributor"] == right_owner)
                        wrong = sum(credit.values()) - right
                        t = totals.setdefault((wording, which, rule), [0, 0.0, 0.0, 0.0, 0, 0])
                        t[0] += 1
                        t[1] += right
                        t[2] += wrong
                        t[3] += sum(c for _, c, _ in e.unclaimed)
                        t[4] += wrong > 1e-12
                        t[5] += e.departs
    return {f"{w} | {which} | {rule}": {"answers": n, "right": r / n, "wrong": w_ / n,
                                        "unclaimed": u / n, "paid_wrong": pw / n,
                                        "departs": d / n}
            for (w, which, rule), (n, r, w_, u, pw, d) in totals.items()}


@contextmanager
def rule_in_force(rule: str):
    """Rule 9 is the current rule without `SpanIndex._borrowed` (and its choice of reading)."""
    from ledgerlm.attribution.spans import SpanIndex

    saved = SpanIndex._borrowed
    if rule == "rule 9":
        SpanIndex._borrowed = lambda _self, query, *_a, **_k: len(query)
    try:
        yield
    finally:
        SpanIndex._borrowed = saved


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizers", default="tiny,smollm2",
                        help="comma-separated: tiny (the evaluation's), smollm2 (needs the model)")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/results/attribution_mixups.json)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results: dict = {}
    tables = []
    with tempfile.TemporaryDirectory(prefix="ledgerlm-mixups-") as work:
        for name in [n for n in args.tokenizers.split(",") if n]:
            tokenizer = tokenizer_for(name, args.models_dir, Path(work))
            for split in ("test", "tuning"):
                found = measure(tokenizer, split, args.seeds)
                results[f"{name}/{split}"] = found
                table = ResultTable(
                    f"{split} split, {name} tokenizer — span credit right / wrong / left to the "
                    "gradient among candidates; answers paying a wrong contributor; answers that "
                    "depart", ["wording", "town", *RULES])
                for wording in WORDINGS:
                    for which in ("another's town", "own town"):
                        cells = []
                        for rule in RULES:
                            v = found[f"{wording} | {which} | {rule}"]
                            cells.append(f"{v['right']:.3f} / {v['wrong']:.3f} / "
                                         f"{v['unclaimed']:.3f}; {v['paid_wrong']:.2f} paid "
                                         f"wrong; {v['departs']:.2f} depart")
                        table.rows.append([wording, which, *cells])
                table.print()
                tables.append(table)
    payload = {"config": {"tokenizers": args.tokenizers, "seeds": args.seeds,
                          "people": [8, 24]},
               "results": results, "seconds": time.perf_counter() - started}
    notes = [f"{args.seeds} seeds x (8, 24) people per split; no model runs (span evidence only); "
             f"total {payload['seconds']:.0f} s",
             "the rule was looked at on the tuning split; the test split (other templates and "
             "vocabulary) is the one to judge it by"]
    write_result("attribution_mixups", payload, tables, notes=notes, json_path=args.out)
    return payload


if __name__ == "__main__":
    main()
