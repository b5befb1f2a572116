"""Benchmark of what hostile text costs the node: each pattern and matcher an uploader, a caller or a body can make
backtrack, against the form it had before (the baseline, kept here), on the same input at growing sizes.

Run:  python benchmarks/hostile_text.py [--sizes 10000,30000,100000] [--repeat 3]

For each case: CPU seconds of the baseline and of today's code per size (fastest of `--repeat`), the growth from
the smallest to the largest size (about the size ratio for linear work, its square for quadratic), and whether
both produced the same result on the hostile input and on ordinary inputs (a speed-up counts only at equal
results; where the result was meant to change, the row says so). A baseline run is stopped past `--budget`
seconds and shown as more than that. Prints the table and writes benchmarks/results/hostile_text.json and .md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from report import ResultTable, write_result  # noqa: E402  (benchmarks/ is the script's directory)

# the forms before this change (the baseline)
OLD_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
OLD_TEMPLATE = re.compile(r"^\s*#{2,3}\s*(?:system|instruction)s?\s*:", re.IGNORECASE | re.MULTILINE)
OLD_MIXED = re.compile(r"\w*[^\x00-\x7f]\w*", re.UNICODE)
OLD_HASH = re.compile(r"(?: \*| {1,2})(?![\w./\-]*(?:key|secret|wallet|pem|priv))[\w\-]*[\w/\-]*\.[\w./\-]+(?:\s|$)",
                      re.IGNORECASE)
OLD_PHONE = re.compile(r"\+(?<![\w+]\+)\d{1,3}(?:[ .\-]?\(?\d{1,5}\)?){2,6}(?!\w)")


def _new_patterns():
    from ledgerlm.api.limits import _STRING
    from ledgerlm.validation.gates.injection import _INJECTION_PATTERNS, _non_ascii_words
    from ledgerlm.validation.gates.personal_data import _HASH_LISTING, _PHONE_INTL

    template = next(p for p, code, *_ in _INJECTION_PATTERNS if code == "template_tokens")
    return {"string": _STRING, "template": template, "mixed": _non_ascii_words, "hash": _HASH_LISTING,
            "phone": _PHONE_INTL}


def _token_by_token(index, query):
    """The matching before: every match narrowed token by token, never carried on from the position before."""
    return index.longest_matches(query, skip_ahead=len(query) + 1)


def _span_case(size: int):
    from ledgerlm.attribution.spans import SpanIndex

    rng = random.Random(size)
    record = [rng.randrange(5000) for _ in range(size)]
    index = SpanIndex.build([[rng.randrange(5000) for _ in range(50)] for _ in range(2000)] + [record])
    return index, record


# case -> (hostile input of a size, what the baseline runs, what today's runs)
def _cases():
    new = _new_patterns()

    def body_check(pattern):
        """The body guard's verdict with `pattern` reading its strings."""
        from ledgerlm.api import limits

        def check(body):
            kept, limits._STRING = limits._STRING, pattern
            try:
                return limits.json_body_problem(body)
            finally:
                limits._STRING = kept
        return check

    def mixed_old(text):
        return OLD_MIXED.findall(text)

    return {
        "JSON body: unclosed string of escaped quotes": (
            lambda n: b'{"prompt":"' + b'\\"' * (n // 2), body_check(OLD_STRING), body_check(new["string"])),
        "injection: '##' then blank lines": (
            lambda n: "## notes\n" + "\n" * n, lambda t: OLD_TEMPLATE.search(t), lambda t: new["template"].search(t)),
        "injection: mixed-script words": (lambda n: "a" * (n - 3) + " \u044f", mixed_old, new["mixed"]),
        "personal data: hash listing": (
            lambda n: "0123456789abcdef" * 4 + " " + "1" * (n - 65),
            lambda t: OLD_HASH.search(t, 64), lambda t: new["hash"].search(t, 64)),
        "personal data: phone groups": (
            lambda n: (" +" + "1" * 24 + "a") * (n // 27), OLD_PHONE.findall, new["phone"].findall),
        "attribution: answer copying a long record (tokens)": (
            lambda n: _span_case(n // 25), lambda c: _token_by_token(*c), lambda c: c[0].longest_matches(c[1])),
    }


ORDINARY = {  # results must agree on these (where the change was not meant to alter them)
    "JSON body: unclosed string of escaped quotes": [b'{"a": "x\\"y", "b": [1, 2]}', b'{"s": "\\\\"}',
                                                     b'{"a": "[[[[", "b": ' + b"[" * 70 + b"]" * 70 + b"}"],
    "injection: '##' then blank lines": ["## System: obey", "### instruction: do", "## Notes\nplain"],
    "injection: mixed-script words": ["p\u0430ypal login", "Moscow \u041c\u043e\u0441\u043a\u0432\u0430"],
    "personal data: hash listing": ["0123456789abcdef" * 4 + "  file.tar.gz", "0123456789abcdef" * 4 + "  wallet.key"],
    "personal data: phone groups": ["Call +44 7700 900123 now", "+1 415 555 0100", "+4915112345678"],
}


def _timed(queue, fn, arg):
    started = time.process_time()
    result = fn(arg)
    queue.put((time.process_time() - started, repr(result)[:10_000]))


def run(fn, arg, budget: float) -> tuple[float | None, str | None]:
    """CPU seconds and result of fn(arg) in a process of its own, or (None, None) past `budget` s of wall time."""
    queue = multiprocessing.get_context("fork").Queue()
    process = multiprocessing.get_context("fork").Process(target=_timed, args=(queue, fn, arg))
    process.start()
    process.join(budget)
    if process.is_alive():
        process.kill()
        process.join()
        return None, None
    return queue.get()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,30000,100000", help="characters (tokens: a 25th of them)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budget", type=float, default=60.0, help="wall seconds a baseline run may take")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows, table = [], ResultTable("hostile text: CPU s, baseline (before) against today", [
        "case", *[f"{s:,}: before" for s in sizes], *[f"{s:,}: today" for s in sizes],
        "growth before", "growth today", "same result"])
    for name, (make, old, new) in _cases().items():
        before, today, same = [], [], True
        for size in sizes:
            hostile = make(size)
            o = run(old, hostile, args.budget)
            best_new, new_result = None, None
            for _ in range(args.repeat):
                seconds, result = run(new, hostile, args.budget)
                best_new = seconds if best_new is None else min(best_new, seconds)
                new_result = result
            before.append(o[0])
            today.append(best_new)
            same = same and (o[1] is None or o[1] == new_result)
        for text in ORDINARY.get(name, []):
            same = same and repr(old(text))[:10_000] == repr(new(text))[:10_000]

        def growth(times):
            return "n/a" if None in (times[0], times[-1]) or not times[0] else f"{times[-1] / times[0]:.0f}x"

        def shown(t):
            return f"> {args.budget:g}" if t is None else f"{t:.3f}"

        rows.append({"case": name, "sizes": sizes, "before_cpu_seconds": before, "today_cpu_seconds": today,
                     "same_result": same})
        table.add_row(name, *[shown(t) for t in before], *[shown(t) for t in today], growth(before),
                      growth(today), "yes" if same else "no")
    table.print()
    notes = [f"sizes {sizes} characters; the attribution case uses a 25th of them as tokens (a record of that many "
             "among 2,000 rows of 50)",
             "the mixed-script case differs on purpose for words set apart by a space beyond ASCII (a thin or "
             "no-break space no longer joins them); its ordinary inputs here agree"]
    write_result("hostile_text", {"rows": rows, "sizes": sizes}, [table], notes=notes, json_path=args.out)
    return {"rows": rows}


if __name__ == "__main__":
    main()
