"""Scale-out on one database: ingestion and API requests/s with 1, 2 and 4 node processes sharing one PostgreSQL,
against one node process on SQLite (the embedded default) in the same run.

Every node process opens the same home (`Node.open`, its own engine and connections) and drives the real HTTP
app in-process (FastAPI's TestClient, no sockets): first signed JSONL uploads (each process its own contributor),
then a request mix on the Datanet — reads of the Datanet, of one contribution and of a page of contributions,
and the owner's signed reviews (a row-locked state change), the signatures made before the clock starts.
Work is fixed per process, so N processes do N times the work; throughput is total work over the wall time from
the common start to the last process done. CPU-seconds are the node processes' own plus the PostgreSQL server's
(every backend), so per-CPU-second figures compare what each database costs, whatever else the machine runs.

    .venv/bin/python benchmarks/scaleout_db.py [--uploads 3] [--records 1500] [--requests 240] [--processes 1,2,4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
sys.path.insert(0, str(REPO))  # tests.postgres: the throwaway server the tests use

from report import ResultTable, write_result  # noqa: E402

SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
          "required": ["question", "answer"]}
OWNER_KEY = b"\x01" * 32
REVIEW_SHARE = 4  # one request in this many is a signed review


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------------- one node process

def worker(home: str, index: int, uploads: int, records: int, requests: int) -> None:
    """One node process: announce ready, wait for "go", upload, sign the reviews, wait for "go", run the mix."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from eth_account import Account
    from fastapi.testclient import TestClient

    from ledgerlm.api import create_app
    from ledgerlm.client import NodeClient
    from ledgerlm.config import Home
    from ledgerlm.identity import sign_action
    from ledgerlm.node import Node

    node = Node.open(Home(home))
    owner = Account.from_key(OWNER_KEY)
    contributor = Account.from_key((1000 + index).to_bytes(32, "big"))
    work = Path(tempfile.mkdtemp(prefix=f"scaleout-{index}-"))
    files = []
    for u in range(uploads):
        path = work / f"part-{u}.jsonl"
        path.write_text("".join(json.dumps({"question": f"node {index} upload {u} record {r}?",
                                            "answer": f"answer {r * 7919 % 100003}"}) + "\n"
                                for r in range(records)))
        files.append(path)
    with TestClient(create_app(lambda: node), base_url="http://ledgerlm.test", client=("127.0.0.1", 50000)) as http:
        client = NodeClient(http)
        _sync("ready")
        cpu, start = _cpu_seconds(), time.perf_counter()
        receipts = [client.contribute("bench", [path], contributor) for path in files]
        ingest = {"seconds": time.perf_counter() - start, "cpu": _cpu_seconds() - cpu,
                  "records": sum(r.contribution_count for r in receipts), "uploads": len(receipts)}
        print("ingested", flush=True)
        ids = [r.first_contribution_id + i for r in receipts for i in range(r.contribution_count)]
        reviews = [sign_action(owner, "ReviewContribution", {"contributionId": cid, "accept": True, "reason": ""},
                               domain=node.domain).model_dump()
                   for cid in ids[:requests // REVIEW_SHARE + 1]]
        _sync("signed")
        cpu, start = _cpu_seconds(), time.perf_counter()
        done = 0
        for i in range(requests):
            kind = i % REVIEW_SHARE
            if kind == 0:
                action = reviews[i // REVIEW_SHARE]
                r = http.post(f"/contributions/{action['message']['contributionId']}/review", json={"action": action})
            elif kind == 1:
                r = http.get("/datanets/bench")
            elif kind == 2:
                r = http.get(f"/contributions/{ids[(i * 7919) % len(ids)]}")
            else:
                r = http.get("/datanets/bench/contributions", params={"limit": 20, "offset": (i * 31) % len(ids)})
            if r.status_code != 200:
                raise SystemExit(f"request {i} failed: {r.status_code} {r.text[:300]}")
            done += 1
        api = {"seconds": time.perf_counter() - start, "cpu": _cpu_seconds() - cpu, "requests": done}
    node.close()
    print(json.dumps({"ingest": ingest, "api": api}), flush=True)


def _sync(stage: str) -> None:
    print(stage, flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("the benchmark driver went away")


# ---------------------------------------------------------------------------------------------- the driver

class Run:
    """N node processes on one home, started together phase by phase."""

    def __init__(self, home: Path, n: int, args, server_cpu):
        self.n, self.server_cpu = n, server_cpu
        command = [sys.executable, __file__, "--worker", str(home.root), "--uploads", str(args.uploads),
                   "--records", str(args.records), "--requests", str(args.requests)]
        env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.procs = [subprocess.Popen([*command, "--index", str(i)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True, env=env) for i in range(n)]

    def phase(self, ready: str) -> tuple[float, float]:
        """Wait until every process is `ready`, start them together; returns (start time, server CPU then)."""
        for p in self.procs:
            line = p.stdout.readline().strip()
            if line != ready:
                raise SystemExit(f"a node process said {line!r} instead of {ready!r}")
        cpu, start = self.server_cpu(), time.perf_counter()
        for p in self.procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        return start, cpu

    def measure(self) -> dict:
        ingest_start, ingest_server = self.phase("ready")
        for p in self.procs:  # the ingest phase ends when the last process has stored its last upload
            line = p.stdout.readline().strip()
            if line != "ingested":
                raise SystemExit(f"a node process said {line!r} instead of 'ingested'")
        ingest_wall = time.perf_counter() - ingest_start
        ingest_end_server = self.server_cpu()
        api_start, api_server = self.phase("signed")
        results = [json.loads(p.stdout.readline()) for p in self.procs]
        api_wall = time.perf_counter() - api_start
        api_end_server = self.server_cpu()
        for p in self.procs:
            if p.wait(timeout=120) != 0:
                raise SystemExit("a node process failed")
        records = sum(r["ingest"]["records"] for r in results)
        requests = sum(r["api"]["requests"] for r in results)
        ingest_cpu = sum(r["ingest"]["cpu"] for r in results) + ingest_end_server - ingest_server
        api_cpu = sum(r["api"]["cpu"] for r in results) + api_end_server - api_server
        return {"processes": self.n, "records": records, "ingest_seconds": ingest_wall,
                "records_per_s": records / ingest_wall, "ingest_cpu_seconds": ingest_cpu,
                "records_per_cpu_s": records / ingest_cpu, "requests": requests, "api_seconds": api_wall,
                "requests_per_s": requests / api_wall, "api_cpu_seconds": api_cpu,
                "requests_per_cpu_s": requests / api_cpu,
                "server_cpu_seconds": (ingest_end_server - ingest_server) + (api_end_server - api_server)}


def _postgres_cpu(postmaster_pid: int):
    """CPU-seconds used so far by the server: the postmaster, its reaped backends, and the live ones."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(pid: int) -> list[str]:
        text = Path(f"/proc/{pid}/stat").read_text()
        return text[text.rindex(")") + 2:].split()

    def cpu() -> float:
        fields = stat(postmaster_pid)
        total = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    f = stat(int(entry.name))
                except (OSError, ValueError):
                    continue
                if int(f[1]) == postmaster_pid:
                    total += int(f[11]) + int(f[12])
        return total / tick

    return cpu


def _home(root: Path, database_url: str):
    from eth_account import Account

    from ledgerlm.config import Home
    from ledgerlm.datanets import DatanetSpec
    from ledgerlm.identity import sign_action
    from ledgerlm.node import Node

    home = Home(root)
    node = Node.init(home, database_url=database_url)
    owner = Account.from_key(OWNER_KEY)
    spec = DatanetSpec(name="bench", schema=SCHEMA, tags=["bench"])
    node.datanets.create(spec, sign_action(owner, "CreateDatanet", {"name": "bench", "specHash": spec.spec_hash()},
                                           domain=node.domain))
    node.close()
    return home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=3, help="uploads per node process")
    parser.add_argument("--records", type=int, default=1500, help="records per upload")
    parser.add_argument("--requests", type=int, default=240, help="API requests per node process")
    parser.add_argument("--processes", default="1,2,4", help="node process counts on PostgreSQL")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.index, args.uploads, args.records, args.requests)
        return
    os.environ.setdefault("LEDGERLM_KDF_ITERATIONS", "1024")
    os.environ.setdefault("LEDGERLM_NODE_PASSPHRASE", "benchmark-node-passphrase")
    os.environ.setdefault("LEDGERLM_ADMIN_PASSPHRASE", "benchmark-admin-passphrase")
    from tests.postgres import start_local_postgres

    counts = [int(c) for c in args.processes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="scaleout-db-") as tmp:
        tmp = Path(tmp)
        print("baseline: one node process on SQLite", flush=True)
        rows.append({"database": "sqlite", **Run(_home(tmp / "sqlite", ""), 1, args, lambda: 0.0).measure()})
        server = start_local_postgres()
        try:
            postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
            for n in counts:
                print(f"{n} node process(es) on PostgreSQL", flush=True)
                url = server.create_database(f"scaleout_{n}")
                home = _home(tmp / f"pg-{n}", url)
                rows.append({"database": "postgresql", **Run(home, n, args, _postgres_cpu(postmaster)).measure()})
        finally:
            server.stop()

    base = rows[0]
    table = ResultTable("scale-out on one database", [
        "database", "node processes", "records/s", "records per CPU-s", "ingest vs SQLite", "requests/s",
        "requests per CPU-s", "API vs SQLite", "DB server CPU-s"])
    for r in rows:
        table.add_row(r["database"], str(r["processes"]), f"{r['records_per_s']:,.0f}", f"{r['records_per_cpu_s']:,.0f}",
                      f"{r['records_per_s'] / base['records_per_s']:.2f}x", f"{r['requests_per_s']:,.0f}",
                      f"{r['requests_per_cpu_s']:,.0f}", f"{r['requests_per_s'] / base['requests_per_s']:.2f}x",
                      f"{r['server_cpu_seconds']:.1f}")
    table.print()
    write_result("scaleout_db", {"runs": rows, "settings": vars(args) | {"worker": None}}, [table], notes=[
        f"each node process: {args.uploads} signed uploads of {args.records} JSONL records, then {args.requests} API "
        f"requests (1 in {REVIEW_SHARE} a signed review, the rest reads), through the HTTP app in-process",
        "baseline: one node process on SQLite (WAL), the embedded default, same work, same run",
        "CPU-s: the node processes' own CPU plus the PostgreSQL server's (postmaster and every backend)",
        f"usable cores: {len(os.sched_getaffinity(0))}; processes beyond that share them, so per-CPU-second "
        "figures are the ones that carry to a larger machine",
    ])


if __name__ == "__main__":
    main()
