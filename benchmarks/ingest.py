"""Ingest throughput: signed JSONL uploads and mixed files into a Datanet, against raw json+sqlite3.

Each measurement runs in a fresh process so its peak RSS is its own. Run:
    .venv/bin/python benchmarks/ingest.py [--records 100000] [--files 200]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent
# the benchmark node's keys are made without a terminal to ask for their passphrases
for _var, _value in (("LEDGERLM_KDF_ITERATIONS", "1024"), ("LEDGERLM_NODE_PASSPHRASE", "ingest-benchmark"),
                     ("LEDGERLM_ADMIN_PASSPHRASE", "ingest-benchmark")):
    os.environ.setdefault(_var, _value)
SCHEMA = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "minLength": 1},
        "answer": {"type": "string", "minLength": 1},
        "topic": {"type": "string"},
        "difficulty": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["question", "answer"],
}


def make_jsonl(path: Path, n: int) -> int:
    with open(path, "wb") as fh:
        for i in range(n):
            fh.write(orjson.dumps({
                "question": f"What is fact number {i} about topic {i % 97}?",
                "answer": f"Fact {i} says the value is {i * 7919 % 100003}.",
                "topic": f"topic-{i % 97}",
                "difficulty": 1 + i % 5,
            }) + b"\n")
    return path.stat().st_size


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_baseline(n: int, workdir: Path) -> dict:
    """Raw json.loads + sha256 + sqlite3 executemany of the same rows: the floor to compare with."""
    data = workdir / "data.jsonl"
    size = make_jsonl(data, n)
    db = sqlite3.connect(workdir / "raw.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, content_hash TEXT, payload TEXT)")
    start = time.perf_counter()
    rows = []
    with open(data, "rb") as fh, db:
        for line in fh:
            record = json.loads(line)
            canonical = json.dumps(record, sort_keys=True)
            rows.append((hashlib.sha256(canonical.encode()).hexdigest(), canonical))
            if len(rows) >= 2000:
                db.executemany("INSERT INTO rows (content_hash, payload) VALUES (?, ?)", rows)
                rows = []
        db.executemany("INSERT INTO rows (content_hash, payload) VALUES (?, ?)", rows)
    seconds = time.perf_counter() - start
    return {"records": n, "bytes": size, "seconds": seconds}


def _node(workdir: Path):
    from eth_account import Account

    from ledgerlm.config import Home
    from ledgerlm.node import Node

    return Node.init(Home(workdir / "home")), Account.from_key(b"\x01" * 32), Account.from_key(b"\x02" * 32)


def _upload(node, account, datanet: str, paths: list[Path]):
    from ledgerlm.datanets import FileEntry, IncomingFile, manifest_hash
    from ledgerlm.identity import sign_action

    entries = [FileEntry(name=p.name, sha256=hashlib.sha256(p.read_bytes()).hexdigest(), size=p.stat().st_size)
               for p in paths]
    signed = sign_action(account, "Contribute", {"datanet": datanet, "manifestHash": manifest_hash(entries)},
                         domain=node.domain)
    handles = [open(p, "rb") for p in paths]
    try:
        return node.datanets.contribute(datanet, signed, [IncomingFile(p.name, h) for p, h in zip(paths, handles)])
    finally:
        for h in handles:
            h.close()


def run_ledgerlm(n: int, workdir: Path) -> dict:
    """Signed upload through the Datanet service: signature check, streaming parse, schema check,
    canonical hashing, duplicate check, insert, node-signed receipt, all in one transaction."""
    from ledgerlm.datanets import DatanetSpec
    from ledgerlm.identity import sign_action

    data = workdir / "data.jsonl"
    size = make_jsonl(data, n)
    node, owner, contributor = _node(workdir)
    spec = DatanetSpec(name="bench", schema=SCHEMA)
    node.datanets.create(spec, sign_action(owner, "CreateDatanet", {"name": "bench", "specHash": spec.spec_hash()},
                                           domain=node.domain))
    start = time.perf_counter()
    receipt = _upload(node, contributor, "bench", [data])
    seconds = time.perf_counter() - start
    assert receipt.contribution_count == n
    node.close()
    return {"records": n, "bytes": size, "seconds": seconds}


def run_files(count: int, workdir: Path) -> dict:
    """Mixed documents (text, Markdown, PDF, DOCX) uploaded in batches of 10 files."""
    sys.path.insert(0, str(ROOT.parent))
    from tests.datanets.fixtures import make_docx, make_pdf

    from ledgerlm.datanets import DatanetSpec
    from ledgerlm.identity import sign_action

    files = []
    for i in range(count):
        body = " ".join(f"Paragraph {i}.{j} about subject {i % 13} with detail {j * i}." for j in range(40))
        kind = i % 4
        path = workdir / f"doc{i}.{['txt', 'md', 'pdf', 'docx'][kind]}"
        if kind == 0:
            path.write_text(body)
        elif kind == 1:
            path.write_text(f"# Document {i}\n\n{body}\n")
        elif kind == 2:
            make_pdf(path, body[:1500])
        else:
            make_docx(path, [body])
        files.append(path)
    size = sum(p.stat().st_size for p in files)
    node, owner, contributor = _node(workdir)
    spec = DatanetSpec(name="docs-bench", schema="documents")
    node.datanets.create(spec, sign_action(owner, "CreateDatanet", {"name": "docs-bench", "specHash": spec.spec_hash()},
                                           domain=node.domain))
    start = time.perf_counter()
    stored = 0
    for k in range(0, count, 10):
        stored += _upload(node, contributor, "docs-bench", files[k:k + 10]).contribution_count
    seconds = time.perf_counter() - start
    assert stored == count
    node.close()
    return {"records": count, "bytes": size, "seconds": seconds}


def one(kind: str, n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = {"baseline": run_baseline, "ledgerlm": run_ledgerlm, "files": run_files}[kind](n, Path(tmp))
    result["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result))


def measure(kind: str, n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", kind, "--n", str(n)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT.parent / "src")})
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise SystemExit(f"{kind} run failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "ingest.json")
    args = parser.parse_args()
    if args.one:
        return one(args.one, args.n)

    from report import ResultTable, write_result

    small = max(args.records // 5, 1000)
    rows = {
        f"baseline json+sqlite3, {args.records:,} records": measure("baseline", args.records),
        f"ledgerlm signed upload, {small:,} records": measure("ledgerlm", small),
        f"ledgerlm signed upload, {args.records:,} records": measure("ledgerlm", args.records),
        f"ledgerlm {args.files} mixed files (txt/md/pdf/docx)": measure("files", args.files),
    }
    base = rows[f"baseline json+sqlite3, {args.records:,} records"]
    base_rate = base["records"] / base["seconds"]
    table = ResultTable("ingest", ["run", "items", "seconds", "items/s", "MB/s", "peak RSS MB", "vs baseline"])
    for name, r in rows.items():
        r["per_second"] = r["records"] / r["seconds"]
        r["mb_per_second"] = r["bytes"] / r["seconds"] / 1e6
        r["ratio_to_baseline"] = None if "files" in name else r["per_second"] / base_rate
        ratio = "" if r["ratio_to_baseline"] is None else f"{r['ratio_to_baseline']:.2f}x"
        table.add_row(name, f"{r['records']:,}", f"{r['seconds']:.2f}", f"{r['per_second']:,.0f}",
                      f"{r['mb_per_second']:.1f}", f"{r['peak_rss_mb']:.0f}", ratio)
    table.print()
    write_result("ingest", {"runs": rows}, [table], json_path=args.out,
                 notes=["each run in a fresh process; baseline = json.loads + sha256 + sqlite3 executemany "
                        "of the same rows, no signature, schema or duplicate checks"])


if __name__ == "__main__":
    main()
