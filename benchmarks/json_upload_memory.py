"""Memory and CPU of reading a `.json` array upload: element by element against the whole body parsed at once.

The baseline is how `.json` uploads were read before: the body read whole, parsed with one
`orjson.loads` and checked once for long integers and repeated keys, then each record validated and
hashed by the same functions the reader uses. Peak memory is traced (tracemalloc) in a run of
its own; CPU time is the fastest of several runs without tracing. Run:
    .venv/bin/python benchmarks/json_upload_memory.py [--mb 5 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import fastjsonschema
import orjson
from report import ResultTable, write_result

from ledgerlm.datanets.parsers import iter_records
from ledgerlm.datanets.parsers.json_keys import check_unique_keys
from ledgerlm.datanets.parsers.records import _LONG_DIGITS, _check_int_range, _hashed

SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string", "minLength": 1}, "answer": {"type": "string", "minLength": 1}},
    "required": ["question", "answer"],
}


def make_array(path: Path, megabytes: float) -> int:
    """A one-line array of question/answer records, as `json.dump` writes one: about `megabytes` MB."""
    rows, size, i = [], 0, 0
    while size < megabytes * 1e6:
        row = {"question": f"What is fact number {i}?", "answer": f"Fact {i} says the value is {i * 7919 % 100003}."}
        rows.append(row)
        size += len(orjson.dumps(row)) + 1
        i += 1
    path.write_bytes(orjson.dumps(rows))
    return len(rows)


def whole_body(path: Path, validator) -> int:
    """The previous reader's work: the body parsed at once, checked once, then each record validated and hashed."""
    data = path.read_bytes()
    value = orjson.loads(data)
    if _LONG_DIGITS.search(data):
        _check_int_range(data, path.name)
    check_unique_keys(data, value, path.name, 1)
    count = 0
    for i, record in enumerate(value, 1):
        _hashed(record, f"{path.name} item {i}", validator)
        count += 1
    return count


def streamed(path: Path, validator) -> int:
    return sum(1 for _ in iter_records(path, path.name, "json", validator=validator))


def measure(read, path: Path, validator, runs: int) -> tuple[int, float, int]:
    """(records, fastest CPU seconds, traced peak bytes)."""
    cpu = float("inf")
    for _ in range(runs):
        start = time.process_time()
        count = read(path, validator)
        cpu = min(cpu, time.process_time() - start)
    tracemalloc.start()
    try:
        read(path, validator)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return count, cpu, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, nargs="+", default=[5, 20])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    validator = fastjsonschema.compile(SCHEMA)
    table = ResultTable("JSON array upload: read whole vs element by element",
                        ["file", "records", "read", "CPU s", "peak traced MB", "peak / file size"])
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for megabytes in args.mb:
            path = Path(tmp) / f"array-{megabytes:g}mb.json"
            make_array(path, megabytes)
            size = path.stat().st_size
            for label, read in (("baseline: whole body, one orjson.loads (the previous reader)", whole_body),
                                ("ledgerlm: element by element", streamed)):
                count, cpu, peak = measure(read, path, validator, args.runs)
                runs.append({"file_bytes": size, "records": count, "read": label, "cpu_s": round(cpu, 3),
                             "peak_traced_bytes": peak})
                table.add_row(f"{size / 1e6:.1f} MB", f"{count:,}", label, f"{cpu:.2f}", f"{peak / 1e6:.1f}",
                              f"{peak / size:.2f}x")
    table.print()
    write_result("json_upload_memory", {"runs": runs}, [table],
                 notes=["CPU: fastest of --runs runs; peak traced in a run of its own"])


if __name__ == "__main__":
    main()
