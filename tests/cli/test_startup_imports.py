"""Commands that need no model, chain or database start without importing them: `import ledgerlm.cli`, `--help`
and a read through `--node URL` load none of torch, web3, eth-account, py_ecc, alembic or SQLAlchemy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ledgerlm

HEAVY = ("torch", "web3", "eth_account", "py_ecc", "alembic", "sqlalchemy", "transformers")
SRC = str(Path(ledgerlm.__file__).resolve().parents[1])


def _loaded(code: str) -> tuple[list[str], str]:
    probe = (f"import sys, atexit\n"
             f"atexit.register(lambda: print('LOADED', *[m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr))\n"
             f"{code}\n")
    done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": SRC},
                          capture_output=True, text=True, timeout=120)
    line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED"))
    return line.split()[1:], done.stdout


def test_importing_the_cli_loads_no_heavy_library():
    assert _loaded("import ledgerlm.cli")[0] == []


def test_help_and_a_read_through_a_node_load_no_heavy_library():
    run = ("import sys, runpy\nsys.argv = ['ledgerlm', *{args!r}]\n"
           "try:\n    runpy.run_module('ledgerlm', run_name='__main__')\nexcept SystemExit:\n    pass")
    loaded, out = _loaded(run.format(args=["--help"]))
    assert loaded == [] and "datanet" in out
    # nothing listens on port 9: the command gets as far as its request, after every import it needs
    loaded, out = _loaded(run.format(args=["--node", "http://127.0.0.1:9", "--json", "datanet", "list"]))
    assert loaded == [] and "cannot reach the node" in out
