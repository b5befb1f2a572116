"""Gateway overhead per request: the same calls straight to a serving node and through `ledgerlm gateway`.

One node (`ledgerlm serve`, a tiny random Llama as its free base model) and one gateway in front of
it, each in its own process on loopback; this process sends the calls over keep-alive connections,
interleaving direct and gateway calls so that both see the same machine load. The baseline is the
node called directly; a third row calls the node directly with an `Idempotency-Key` (which the
gateway always sends), to show which part of the overhead is the claim the key costs the node.
Also: streamed calls (time to the first byte and to the end), the same calls from concurrent
clients (requests/s), and the gateway process's CPU time per request.

    .venv/bin/python benchmarks/gateway.py [--requests 150] [--concurrency 8] [--max-tokens 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from report import ResultTable, write_result  # noqa: E402  (benchmarks/ is the script's directory)

PROMPT = [{"role": "user", "content": "What colour is the reef?"}]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_home(root: Path):
    """A node home serving a tiny random Llama for free (no key, no chain traffic per call)."""
    os.environ.setdefault("LEDGERLM_NODE_PASSPHRASE", "benchmark-node")
    os.environ.setdefault("LEDGERLM_ADMIN_PASSPHRASE", "benchmark-admin")
    os.environ.setdefault("LEDGERLM_KDF_ITERATIONS", "1024")
    from ledgerlm.config import Home
    from ledgerlm.factory import tiny_random_model
    from ledgerlm.factory.basemodels import register_local
    from ledgerlm.node import Node

    home = Home(root / "home")
    Node.init(home).close()
    config = home.load_config()
    config.torch_threads = 1
    config.serving_attribution = False
    home.save_config(config)
    register_local(home.models, "tiny", tiny_random_model(root / "tiny", ["the reef is copper"]))
    return home


def start(args: list[str], probe: str) -> subprocess.Popen:
    import httpx

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "ledgerlm", *args], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(probe, timeout=5).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{' '.join(args)} did not come up")
        time.sleep(0.25)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def call(client, url: str, max_tokens: int, *, key: bool, stream: bool = False) -> tuple[float, float]:
    """(seconds to the first byte of the answer, seconds to its end) for one call."""
    headers = {"Idempotency-Key": uuid.uuid4().hex} if key else {}
    body = {"model": "tiny", "messages": PROMPT, "max_tokens": max_tokens, "temperature": 0, "stream": stream}
    started = time.perf_counter()
    with client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as response:
        first = None
        for _ in response.iter_raw():
            first = first or time.perf_counter()
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}: {response.read()[:300]!r}")
    return first - started, time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=150, help="calls per route in the sequential runs")
    parser.add_argument("--concurrency", type=int, default=8, help="clients at once in the concurrent run")
    parser.add_argument("--max-tokens", type=int, default=4)
    args = parser.parse_args()

    import httpx

    routes = {}  # name -> (url, idempotency key sent)
    with tempfile.TemporaryDirectory(prefix="ledgerlm-gateway-bench-") as tmp:
        home = make_home(Path(tmp))
        node_url, gateway_url = f"http://127.0.0.1:{free_port()}", None
        node = start(["--home", str(home.root), "serve", "--port", node_url.rsplit(":", 1)[1]],
                     f"{node_url}/serving/status")
        gateway_port = free_port()
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        gateway = start(["gateway", "--node", node_url, "--port", str(gateway_port)], f"{gateway_url}/gateway/status")
        routes = {"direct (baseline)": (node_url, False), "direct + Idempotency-Key": (node_url, True),
                  "via gateway": (gateway_url, False)}
        try:
            with httpx.Client(timeout=120) as client:
                for url, key in routes.values():  # load the model, open the connections
                    for _ in range(5):
                        call(client, url, args.max_tokens, key=key)
                whole = {name: [] for name in routes}
                streamed = {name: [] for name in routes}
                gateway_cpu = 0.0
                for _ in range(args.requests):  # interleaved: every route sees the same load
                    for name, (url, key) in routes.items():
                        before = cpu_seconds(gateway.pid) if url == gateway_url else 0.0
                        whole[name].append(call(client, url, args.max_tokens, key=key)[1])
                        streamed[name].append(call(client, url, args.max_tokens, key=key, stream=True))
                        if url == gateway_url:
                            gateway_cpu += cpu_seconds(gateway.pid) - before
            concurrent = {}
            for name, (url, key) in routes.items():
                done, lock = [0], threading.Lock()

                def client_loop(url=url, key=key, done=done, lock=lock, deadline=None):
                    with httpx.Client(timeout=120) as c:
                        while time.perf_counter() < deadline:
                            call(c, url, args.max_tokens, key=key)
                            with lock:
                                done[0] += 1

                started = time.perf_counter()
                threads = [threading.Thread(target=client_loop, kwargs={"deadline": started + 10})
                           for _ in range(args.concurrency)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                concurrent[name] = done[0] / (time.perf_counter() - started)
        finally:
            for process in (gateway, node):
                process.terminate()
                process.wait(timeout=30)

    base = "direct (baseline)"
    latency = ResultTable(f"Whole answers, one at a time ({args.requests} calls per route, max_tokens "
                          f"{args.max_tokens}, tiny random Llama)",
                          ["route", "p50 ms", "p99 ms", "mean ms", "p50 overhead ms", "mean overhead ms"])
    stream_table = ResultTable("Streamed answers, one at a time",
                               ["route", "first byte p50 ms", "first byte p99 ms", "end p50 ms",
                                "first byte p50 overhead ms"])
    load_table = ResultTable(f"{args.concurrency} clients at once for 10 s", ["route", "requests/s", "vs direct"])
    payload = {"requests": args.requests, "concurrency": args.concurrency, "max_tokens": args.max_tokens,
               "routes": {}}
    for name in routes:
        w, s = whole[name], streamed[name]
        firsts, ends = [f for f, _ in s], [e for _, e in s]
        row = {"whole_p50_ms": 1000 * statistics.median(w), "whole_p99_ms": 1000 * pct(w, 0.99),
               "whole_mean_ms": 1000 * statistics.fmean(w),
               "stream_first_byte_p50_ms": 1000 * statistics.median(firsts),
               "stream_first_byte_p99_ms": 1000 * pct(firsts, 0.99), "stream_end_p50_ms": 1000 * statistics.median(ends),
               "concurrent_requests_per_s": concurrent[name]}
        payload["routes"][name] = row
    for name, row in payload["routes"].items():
        b = payload["routes"][base]
        latency.add_row(name, f"{row['whole_p50_ms']:.1f}", f"{row['whole_p99_ms']:.1f}", f"{row['whole_mean_ms']:.1f}",
                        f"{row['whole_p50_ms'] - b['whole_p50_ms']:+.1f}",
                        f"{row['whole_mean_ms'] - b['whole_mean_ms']:+.1f}")
        stream_table.add_row(name, f"{row['stream_first_byte_p50_ms']:.1f}", f"{row['stream_first_byte_p99_ms']:.1f}",
                             f"{row['stream_end_p50_ms']:.1f}",
                             f"{row['stream_first_byte_p50_ms'] - b['stream_first_byte_p50_ms']:+.1f}")
        load_table.add_row(name, f"{row['concurrent_requests_per_s']:.1f}",
                           f"{row['concurrent_requests_per_s'] / b['concurrent_requests_per_s']:.2f}x")
    per_request_ms = 1000 * gateway_cpu / (2 * args.requests)
    payload["gateway_cpu_ms_per_request"] = per_request_ms
    cpu_table = ResultTable("Gateway process CPU time", ["what", "value"])
    cpu_table.add_row("CPU ms per forwarded request (whole and streamed calls alike)", f"{per_request_ms:.2f}")
    tables = [latency, stream_table, load_table, cpu_table]
    for table in tables:
        table.print()
    write_result("gateway", payload, tables, notes=[
        "node and gateway each in their own process on loopback, one torch thread; calls from this process over "
        "keep-alive connections, routes interleaved call by call so that each sees the same machine load",
        "the gateway always sends an Idempotency-Key; the middle row isolates what that claim costs the node",
    ])


if __name__ == "__main__":
    main()
