"""CLI start-up cost: CPU seconds per `ledgerlm` command, this tree against a named baseline commit run from a
temporary git worktree in the same run, on the same node, with the outputs compared so that only speed differs.

Commands that talk to a node go to a real `ledgerlm serve` on a fresh embedded home started here. Run:
    .venv/bin/python benchmarks/cli_startup.py [--baseline cb52371] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import REPO, ResultTable, write_result

HEAVY = ("torch", "web3", "eth_account", "py_ecc", "alembic", "sqlalchemy", "transformers")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(src: Path, args: list[str], env: dict) -> tuple[float, float, str, int]:
    """One `python -m ledgerlm ARGS` from `src`: (CPU seconds, wall seconds, stdout, exit code)."""
    before, start = cpu_seconds(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ledgerlm", *args], env={**env, "PYTHONPATH": str(src)},
                          capture_output=True, text=True, timeout=300)
    return cpu_seconds() - before, time.perf_counter() - start, done.stdout, done.returncode


def heavy_modules(src: Path, env: dict) -> list[str]:
    """The heavy libraries `import ledgerlm.cli` loads from `src`."""
    probe = f"import sys, ledgerlm.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], env={**env, "PYTHONPATH": str(src)}, capture_output=True,
                          text=True, timeout=300, check=True)
    return done.stdout.split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(home: Path, env: dict) -> tuple[subprocess.Popen, str]:
    subprocess.run([sys.executable, "-m", "ledgerlm", "--home", str(home), "--json", "init"],
                   env={**env, "PYTHONPATH": str(REPO / "src")}, check=True, capture_output=True, timeout=600)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "ledgerlm", "--home", str(home), "serve", "--port", str(port)],
                              env={**env, "PYTHONPATH": str(REPO / "src")}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("the node did not start within 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="cb52371", help="commit to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ledgerlm-cli-startup-"))
    baseline_tree = work / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(baseline_tree), args.baseline],
                   check=True, capture_output=True)
    baseline_commit = subprocess.run(["git", "-C", str(baseline_tree), "rev-parse", "--short", "HEAD"], check=True,
                                     capture_output=True, text=True).stdout.strip()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LEDGERLM_KDF_ITERATIONS": "1024",
           "LEDGERLM_NODE_PASSPHRASE": "cli-startup-bench", "LEDGERLM_ADMIN_PASSPHRASE": "cli-startup-bench",
           "LEDGERLM_HOME": str(work / "home"), "COLUMNS": "120"}
    server = None
    try:
        server, url = start_node(work / "home", env)
        commands = {
            "--help": ["--help"],
            "datanet --help": ["datanet", "--help"],
            "--node URL datanet list": ["--node", url, "--json", "datanet", "list"],
            "--node URL info": ["--node", url, "--json", "info"],
            "--node URL receipts list": ["--node", url, "--json", "receipts", "list"],
        }
        trees = {f"baseline {baseline_commit}": baseline_tree / "src", "this tree": REPO / "src"}
        rows = []
        for name, command in commands.items():
            measured = {label: [] for label in trees}
            outputs = {}
            for _ in range(args.repeats):  # interleaved, so a change in load hits both alike
                for label, src in trees.items():
                    cpu, wall, out, code = run(src, command, env)
                    measured[label].append((cpu, wall))
                    outputs[label] = (code, out)
            same = len(set(outputs.values())) == 1
            base_label, this_label = list(trees)
            base_cpu = statistics.median(c for c, _ in measured[base_label])
            this_cpu = statistics.median(c for c, _ in measured[this_label])
            rows.append({"command": name, "same_output": same, "exit_code": outputs[this_label][0],
                         **{f"{label} cpu_s": statistics.median(c for c, _ in m) for label, m in measured.items()},
                         **{f"{label} wall_s": statistics.median(w for _, w in m) for label, m in measured.items()},
                         "speedup": base_cpu / this_cpu if this_cpu else None})
        heavy = {label: heavy_modules(src, env) for label, src in trees.items()}
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline_tree)],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    base_label, this_label = list(trees)
    table = ResultTable("cli_startup", ["command", f"CPU s, {base_label}", "CPU s, this tree", "CPU speed-up",
                                        f"wall s, {base_label}", "wall s, this tree", "same output"])
    for r in rows:
        table.add_row(r["command"], f"{r[f'{base_label} cpu_s']:.2f}", f"{r[f'{this_label} cpu_s']:.2f}",
                      f"{r['speedup']:.2f}x", f"{r[f'{base_label} wall_s']:.2f}", f"{r[f'{this_label} wall_s']:.2f}",
                      "yes" if r["same_output"] else "NO")
    modules = ResultTable("cli_startup_imports", ["tree", "heavy libraries `import ledgerlm.cli` loads"])
    for label, names in heavy.items():
        modules.add_row(label, ", ".join(names) or "none")
    table.print()
    modules.print()
    write_result("cli_startup", {"baseline": baseline_commit, "repeats": args.repeats, "rows": rows,
                                 "heavy_imports": heavy}, [table, modules],
                 notes=[f"median of {args.repeats} interleaved runs per command and tree; CPU = user + system "
                        "seconds of the command's process", "node commands go to a real `ledgerlm serve` of this "
                        "tree on a fresh embedded home"])


if __name__ == "__main__":
    main()
