"""The evaluation report as titled tables of formatted cells, for the terminal and for Markdown."""

from __future__ import annotations

from ledgerlm.evals.attribution.facts import QUERY_KINDS
from ledgerlm.evals.attribution.harness import DEFAULT_SOURCE, EXACT_HEAD, EvalReport
from ledgerlm.evals.attribution.metrics import paired_difference
from ledgerlm.evals.attribution.variants import KFAC, TOKEN_MEAN
from ledgerlm.evals.table import ResultTable

# how the tuning split chooses a setting (metrics.beats)
USED = "another setting than the default only when it beats it by 2 s.e. of the paired difference"


def report_tables(report: EvalReport) -> list[ResultTable]:
    """Test-split fact tracing, payment, false payouts, LDS per method, tuning choice and cost."""
    test, tables = report.test, []
    kinds = ("all",) + QUERY_KINDS
    for level in ("contributor", "record"):
        t = ResultTable(f"Test split — responsible {level}: precision@1 / MRR", ["method", *kinds])
        for method in test["tracing"]["all"]:
            t.rows.append([method] + [f"{test['tracing'][k][method][f'{level}_p1']:.2f} / "
                                      f"{test['tracing'][k][method][f'{level}_mrr']:.2f}"
                                      for k in kinds])
        tables.append(t)
    mode = report.tuning["chosen_score_mode"]
    pay = ResultTable(f"Test split — what is paid (combined:{mode}), mean bps of the contributor "
                      "share", ["queries", "evidence", "to the right contributor",
                                "to wrong contributors", "to the data pool",
                                "top paid is right", "paid anyone"])
    for kind in kinds:
        p = test["payment"][kind]
        pay.rows.append([f"{kind} ({p['queries']})", f"{p['mean_evidence_bps']:.0f}",
                         f"{p['mean_bps_right']:.0f}", f"{p['mean_bps_wrong']:.0f}",
                         f"{p['mean_bps_pool']:.0f}", f"{p['top_paid_is_right']:.2f}",
                         f"{p['paid_anyone']:.2f}"])
    tables.append(pay)
    null, contra = test["payment"]["null"], test["payment"]["contradicted"]
    honesty = ResultTable("Test split — unrelated and contradicted answers", ["what", "value"])
    honesty.rows += [
        [f"null_false_payout_rate ({null['queries']} unrelated prompts)",
         f"{null['null_false_payout_rate']:.3f}"],
        ["mean evidence bps on unrelated prompts", f"{null['mean_evidence_bps']:.0f}"],
    ]
    own = test["payment"].get("own_null")
    if own:
        borrowing = own.get("borrowing", 0)
        clean = own["queries"] - own["empty"] - borrowing
        honesty.rows += [
            [f"false payout rate of the model's own answers to them that borrow nothing from the "
             f"Datanet ({clean}; {own['empty']} empty)", f"{own['null_false_payout_rate']:.3f}"],
            [f"payout rate of its answers that repeat an invented town or name or the stylist's "
             f"!! ({borrowing})", f"{own.get('payout_rate_borrowing', 0.0):.3f}"],
            ["mean evidence bps on the model's own answers to them",
             f"{own['mean_evidence_bps']:.0f}"],
        ]
    honesty.rows += [
        [f"bps to the record a contradicted answer contradicts ({contra['queries']})",
         f"{contra['bps_to_contradicted_record']:.0f}"],
        ["bps to the same record when the answer agrees (paraphrase)",
         f"{contra['bps_to_record_when_supported']:.0f}"],
        # a contradicted answer gives a person another's town: whoever is paid did not teach it
        ["mean evidence bps on contradicted answers (paid to anyone)",
         f"{contra['mean_evidence_bps']:.0f}"],
    ]
    tables.append(honesty)
    paid_own = [e for e in (own or {}).get("examples", []) if e["evidence_bps"] > 0]
    if paid_own:
        t = ResultTable("Test split — the model's own answers to unrelated prompts that paid anyone",
                        ["prompt", "answer", "repeats from the Datanet", "evidence bps"])
        t.rows += [[e["prompt"], e["answer"].replace("\n", " "),  # markdown() escapes pipes
                    ", ".join(e.get("borrows", [])) or "nothing", str(e["evidence_bps"])]
                   for e in paid_own]
        tables.append(t)
    tables.append(_lds_table("Test split", test["lds"]))
    variants = report.tuning.get("gradient_variants", {})
    measured = report.config.get("tuning_lds", True)
    if variants.get("methods"):
        v = ResultTable("Gradient variants — LDS chosen on the tuning split, reported on the test "
                        "split (K-FAC / EK-FAC, per-token answer losses, checkpoint ensembles, unit "
                        "rows; exact rows are references)",
                        ["method", "tuning LDS", "test LDS", "± s.e.", "chosen on tuning"])
        for name, value in sorted(variants["methods"].items(), key=lambda kv: -kv[1]["tuning"]):
            tuned = f"{value['tuning']:.3f}" if measured else "not measured"
            v.rows.append([name, tuned, f"{value['test']:.3f}",
                           f"{value['test_sem']:.3f}", "yes" if name == variants["chosen"] else ""])
        tables.append(v)
    tables.append(_projection_table(test))
    lds_of = report.tuning.get("lds", {}).get("methods", {})

    def against(name: str, default: str) -> str:
        # the paired difference metrics.beats compares with two standard errors
        if name == default:
            return "default"
        paired = paired_difference(lds_of.get(name), lds_of.get(default))
        return "" if paired is None else f"{paired[0]:+.3f} ± {paired[1]:.3f}"

    if measured:
        tuning = ResultTable(f"Tuning split — LDS of each paying score mode ({USED})",
                             ["score mode", "LDS", "less the default's (paired, ± s.e.)", "chosen"])
        for m, value in report.tuning["lds_by_mode"].items():
            tuning.rows.append([m, f"{value:.3f}", against(f"grad:{m}", "grad:cosine"),
                                "yes" if m == mode else ""])
        tables.append(tuning)
        if "lds_by_source" in report.tuning:
            source = ResultTable(f"Tuning split — LDS of grad:{mode} by where the training features "
                                 f"come from ({USED})",
                                 ["feature source", "LDS", "less the default's (paired, ± s.e.)", "chosen"])
            for name, value in report.tuning["lds_by_source"].items():
                source.rows.append([name, f"{value:.3f}",
                                    against(f"grad:{mode} ({name})", f"grad:{mode} ({DEFAULT_SOURCE})"),
                                    "yes" if name == report.tuning["chosen_feature_source"] else ""])
            tables.append(source)
        if "kfac_lds" in report.tuning:
            src = report.tuning["chosen_feature_source"]
            plain = report.tuning["plain_choice"]
            k = ResultTable("Tuning split — LDS of the plain projection (chosen mode and source) and "
                            f"of the K-FAC-whitened one ({USED})",
                            ["index projection", "LDS", "less the default's (paired, ± s.e.)", "chosen"])
            k.rows += [[f"plain, {plain}",
                        f"{report.tuning['lds_by_source'].get(src, float('nan')):.3f}", "default",
                        "" if report.tuning["chosen_kfac"] else "yes"],
                       ["K-FAC-whitened, grad:cosine (final adapter)",
                        f"{report.tuning['kfac_lds']:.3f}", against(KFAC, plain),
                        "yes" if report.tuning["chosen_kfac"] else ""]]
            tables.append(k)
        if "per_token_lds" in report.tuning:
            chosen = report.tuning["chosen_per_token"]
            kfac = report.tuning.get("chosen_kfac", False)
            before = "K-FAC-whitened" if kfac else "plain"
            t = ResultTable("Tuning split — LDS of answers scored by their mean loss's gradient (what was "
                            f"chosen above) and by their tokens' unit gradients ({USED})",
                            ["answer feature", "LDS", "less the default's (paired, ± s.e.)", "chosen"])
            t.rows += [[f"mean loss, {before} projection", f"{report.tuning['per_token_against_lds']:.3f}",
                        "default", "" if chosen else "yes"],
                       ["per-token (grad:cosine, final adapter)", f"{report.tuning['per_token_lds']:.3f}",
                        against(TOKEN_MEAN, KFAC if kfac else report.tuning.get("plain_choice", "")),
                        "yes" if chosen else ""]]
            tables.append(t)
    else:
        skipped = ResultTable("Tuning split — LDS not measured (tuning_lds off): the score mode, "
                              "feature source, K-FAC and per-token settings keep their defaults",
                              ["setting", "used"])
        skipped.rows += [["score mode", mode],
                         ["feature source", report.tuning["chosen_feature_source"]],
                         ["K-FAC-whitened index", "yes" if report.tuning["chosen_kfac"] else "no"],
                         ["per-token answers", "yes" if report.tuning["chosen_per_token"] else "no"]]
        tables.append(skipped)
    rows = ResultTable("Tuning split — what the paid attribution pays, and its contributor precision@1, by "
                       "min_span_rows (the most net pay is used)",
                       ["min_span_rows", "mean bps right less wrong", "precision@1", "chosen"])
    net = report.tuning.get("net_bps_by_min_span_rows", {})
    for choice, value in report.tuning["contributor_p1_by_min_span_rows"].items():
        rows.rows.append([str(choice), f"{net[choice]:.0f}" if choice in net else "",
                          f"{value:.2f}",
                          "yes" if choice == report.tuning["chosen_min_span_rows"] else ""])
    tables.append(rows)
    if "contributor_p1_by_ranking" in report.tuning:
        r = ResultTable("Tuning split — contributor precision@1 of the attribution's ranking "
                        "(ranking only: rows without evidence are not paid)",
                        ["ranking", "all", "indirect"])
        for name, value in report.tuning["contributor_p1_by_ranking"].items():
            r.rows.append([name, f"{value['all']:.2f}", f"{value['indirect']:.2f}"])
        tables.append(r)
    if "payment_by_candidates" in report.tuning:
        tables.append(_candidate_table(report.tuning["payment_by_candidates"], kinds))
    own = report.test["payment"].get("own_answers")
    if own:
        o = ResultTable(f"Test split — the model's own greedy answers to the fact questions "
                        f"({own['queries']}; {own['names_the_town']:.2f} name the planted town, "
                        f"{own.get('empty', 0)} empty), "
                        f"mean bps of the contributor share (combined:{mode})",
                        ["answers", "evidence", "to the question's contributor",
                         "to other contributors", "to the data pool", "top paid is right"])
        for label, key in (("name the planted town", "names_the_town_payment"),
                           ("do not", "does_not_payment")):
            pay = own[key]
            if not pay["queries"]:
                o.rows.append([f"{label} (0)", "-", "-", "-", "-", "-"])
                continue
            o.rows.append([f"{label} ({pay['queries']})", f"{pay['mean_evidence_bps']:.0f}",
                           f"{pay['mean_bps_right']:.0f}", f"{pay['mean_bps_wrong']:.0f}",
                           f"{pay['mean_bps_pool']:.0f}", f"{pay['top_paid_is_right']:.2f}"])
        tables.append(o)
    cost = report.cost
    c = ResultTable("Cost on this machine (test-split model)", ["what", "value"])
    c.rows += [
        ["fine-tuning (s)", f"{cost['train_seconds']:.1f}"],
        ["the index's feature source (chosen on the tuning split)",
         cost.get("feature_source", "final adapter")],
        ["features collected inside training (s)",
         f"{cost.get('features_in_training_seconds', 0.0):.1f}"],
        ["index build incl. those and calibration (s)", f"{cost['index_build_seconds']:.1f}"],
        ["index build / training", f"{cost['index_over_train']:.2f}"],
        ["feature dim (full LoRA gradient dim)",
         f"{cost['feature_dim']} ({cost['full_gradient_dim']})"],
        ["per answer: gradient feature (ms)", f"{cost['per_answer']['feature_ms']:.1f}"],
        ["per answer: attribution total (ms)", f"{cost['per_answer']['attribution_ms']:.1f}"],
        ["per answer: of which the token match's gradients (ms)",
         f"{cost['per_answer'].get('match_ms', 0.0):.1f}"],
    ]
    tables.append(c)
    scale = ResultTable("Search at scale (synthetic rows, cosine, top-10)",
                        ["examples", "search ms (median)", "search ms (p95)", "span ms (median)",
                         "feature index MB", "span index MB", "query peak MB"])
    for row in cost["scale"]:
        scale.rows.append([f"{row['examples']:,}", f"{row['search_ms_median']:.1f}",
                           f"{row['search_ms_p95']:.1f}", f"{row['span_ms_median']:.1f}",
                           f"{row['index_mb']:.0f}", f"{row['span_index_mb']:.0f}",
                           f"{row['query_peak_mb']:.1f}"])
    tables.append(scale)
    serving = cost.get("serving")
    if serving:
        s = ResultTable(f"Serving {serving['base']}: attribution vs generation "
                        f"({serving['answer_tokens']} answer tokens, {serving['rows']:,} rows)",
                        ["what", "ms"])
        for key in ("generate_ms", "feature_ms", "search_ms", "span_ms", "attribution_ms"):
            s.rows.append([key[:-3], f"{serving[key]:.1f}"])
        tables.append(s)
    return tables


def _lds_table(split: str, result: dict) -> ResultTable:
    seeds = result.get("seeds", 1)
    per = f" × {seeds} seeds (losses averaged)" if seeds > 1 else ""
    t = ResultTable(f"{split} — linear datamodeling score: {result['subsets']} retrains{per} on "
                    f"random halves of {result['records']} records, {result['queries']} queries",
                    ["method", "LDS (Spearman)", "± s.e."])
    for name, value in sorted(result["methods"].items(), key=lambda kv: -kv[1]["mean"]):
        t.rows.append([name, f"{value['mean']:.3f}", f"{value['sem']:.3f}"])
    noise = result.get("noise")
    if noise:
        # not methods: what retraining noise leaves of any method's LDS (metrics.retraining_noise)
        for label, key in ((f"ceiling from retraining noise ({noise['seeds']} seeds averaged)",
                            "ceiling"),
                           ("one retrain's losses against another seed's", "seed_agreement")):
            t.rows.append([label, f"{noise[key]['mean']:.3f}", f"{noise[key]['sem']:.3f}"])
    return t


def _projection_table(test: dict) -> ResultTable:
    """What the projection keeps: projected features against the exact LoRA gradients of the
    same adapter, on the same queries and the same retrains."""
    lds_of = test["lds"]["methods"]
    tracing = test["tracing"]["all"]
    t = ResultTable("Test split — projected gradient features against the exact LoRA gradients "
                    "of the same adapter (same queries)",
                    ["features", "LDS", "LDS / exact LDS", "record P@1", "contributor P@1"])
    exact = lds_of.get(EXACT_HEAD, {}).get("mean", float("nan"))
    rows = [("grad:cosine (final adapter)", "grad:cosine (final adapter)", None),
            ("grad:cosine (index's feature source)", "grad:cosine", "grad:cosine"),
            (EXACT_HEAD, EXACT_HEAD, EXACT_HEAD),
            ("exact grad cosine (every position)", "exact grad cosine", "exact grad cosine")]
    for label, lds_name, p1_name in rows:
        value = lds_of.get(lds_name, {}).get("mean", float("nan"))
        p1 = tracing.get(p1_name) if p1_name else None
        t.rows.append([label, f"{value:.3f}", f"{value / exact:.2f}" if exact > 0 else "n/a",
                       f"{p1['record_p1']:.2f}" if p1 else "",
                       f"{p1['contributor_p1']:.2f}" if p1 else ""])
    return t


def _candidate_table(found: dict, kinds: tuple[str, ...]) -> ResultTable:
    """What is paid on the tuning split without and with span candidates earning."""
    t = ResultTable(f"Tuning split — what is paid without and with span candidates earning "
                    f"(candidate bar {found['candidate_bar']:.4f}): bps right / wrong / pool, top "
                    "paid is right", ["queries", "without", "with"])
    for kind in kinds:
        cells = [f"{p['mean_bps_right']:.0f} / {p['mean_bps_wrong']:.0f} / "
                 f"{p['mean_bps_pool']:.0f}, {p['top_paid_is_right']:.2f}"
                 for p in (found["without"][kind], found["with"][kind])]
        t.rows.append([f"{kind} ({found['with'][kind]['queries']})", *cells])
    t.rows.append(["null_false_payout_rate", *(f"{found[s]['null']['null_false_payout_rate']:.3f}"
                                               for s in ("without", "with"))])
    t.rows.append(["bps to a contradicted record",
                   *(f"{found[s]['contradicted']['bps_to_contradicted_record']:.0f}"
                     for s in ("without", "with"))])
    return t
