"""Runs many `ledgerlm` command lines in one process whose stdout and stderr the parent redirected.

Usage: python pipe_driver.py RUNS.json, where RUNS.json is a list of {"args": [...], "env": {...}}.
After each command a line `@@@ INDEX EXIT_CODE` goes to both streams so the parent can split them.
One process for all commands keeps the test fast: starting the CLI costs seconds on a small machine, and
the command tree typer builds from the functions (most of a command's own time) is built once, as the
`ledgerlm` script builds it once per process.
"""

import json
import os
import sys

import typer.main

from ledgerlm.cli import app


def main() -> None:
    with open(sys.argv[1]) as fh:
        runs = json.load(fh)
    command = typer.main.get_command(app)  # what app(...) builds anew on every call
    for i, run in enumerate(runs):
        saved = {k: os.environ.get(k) for k in run.get("env", {})}
        os.environ.update(run.get("env", {}))
        try:
            command(run["args"], prog_name="ledgerlm")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            stream.write(f"\n@@@ {i} {code}\n")
            stream.flush()


if __name__ == "__main__":
    main()
