"""The one way a benchmark records a run: `benchmarks/results/<name>.json` and `<name>.md`, with command, machine and date.

Usage from a benchmark script (run as `python benchmarks/<name>.py`, so this directory is on sys.path):

    from report import ResultTable, write_result

    table = ResultTable("ingest", ["run", "items/s", "vs baseline"])
    table.add_row("baseline json+sqlite3", "41,000", "1.00x")
    table.print()                                  # rich table in the terminal
    write_result("ingest", {"runs": rows}, [table], notes=["--quick: 10k records"])

The JSON holds the payload plus `command`, `machine` and `date`; the Markdown holds the same header
and every table. The machine is read when the benchmark runs, never written by hand.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

from ledgerlm.evals.table import ResultTable

__all__ = ["ResultTable", "command_line", "machine", "write_result"]

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parent.parent

# Throughput depends on what else the machine runs; the load when the benchmark started is part of
# the result. Benchmarks import this module first thing, so import time is start time.
_LOAD_AT_START = os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def command_line() -> str:
    """How this run was started, as a command to paste from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script_text = str(script.relative_to(REPO))
    except ValueError:
        script_text = str(script)
    return shlex.join(["python", script_text, *sys.argv[1:]])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine() -> dict:
    """The machine this process runs on, read now: CPU, usable cores, memory, GPU, OS, Python, load."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = None
    torch = sys.modules.get("torch")  # only a benchmark that already uses torch pays for the import
    if torch is not None and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    return {
        "cpu": _cpu_model(),
        "cores": usable,
        "memory_gib": _memory_gib(),
        "gpu": gpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": _LOAD_AT_START,
        "load_average_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def describe_machine(m: dict) -> str:
    parts = [m["cpu"], f"{m['cores']} cores"]
    if m.get("memory_gib"):
        parts.append(f"{m['memory_gib']:g} GiB")
    parts.append(m["gpu"] or "no GPU")
    parts += [m["os"], f"Python {m['python']}"]
    if m.get("load_average_at_start") is not None:
        parts.append(f"load average {m['load_average_at_start']:.2f} at start, "
                     f"{m['load_average_at_end']:.2f} at end")
    return ", ".join(parts)


def write_result(name: str, payload: dict, tables: list[ResultTable], *, notes: list[str] = (),
                 json_path: Path | None = None) -> tuple[Path, Path]:
    """Write `<name>.json` (payload + command, machine, date) and `<name>.md` beside it; return both paths."""
    json_path = Path(json_path) if json_path else RESULTS / f"{name}.json"
    md_path = json_path.with_suffix(".md")
    m = machine()
    date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    command = command_line()
    record = {"benchmark": name, "command": command, "machine": m, "date": date, **payload}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    lines = [f"## Benchmark: {name}", "", f"- command: `{command}`", f"- machine: {describe_machine(m)}",
             f"- date: {date}"]
    lines += [f"- {note}" for note in notes]
    for table in tables:
        lines += ["", table.markdown()]
    md_path.write_text("\n".join(lines) + "\n")
    print(f"wrote {_shown(json_path)} and {_shown(md_path)}")
    return json_path, md_path


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)
