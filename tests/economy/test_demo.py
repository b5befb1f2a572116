"""`ledgerlm demo --quick`: the whole loop on a tiny model ends with tokens in equal to tokens out."""

import json

import pytest
from typer.testing import CliRunner

from ledgerlm.cli import app


def test_the_quick_demo_runs_the_whole_loop_and_balances(tmp_path, monkeypatch):
    pytest.importorskip("openai")
    pytest.importorskip("torch")
    monkeypatch.delenv("LEDGERLM_NODE", raising=False)
    result = CliRunner().invoke(app, ["--json", "demo", "--quick", "--dir", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)

    assert done["balanced"] and done["verified"] and done["receipts"] == 3
    by_name = {done["names"][a]: r for a, r in done["roles"].items()}
    assert set(by_name) >= {"node", "developer", "contributor", "validator-1", "validator-2"}
    assert "developer" in by_name["developer"] and "data_pool" in by_name["contributor"]
    paid = sum(int(v) for v in done["claimed"].values())
    assert paid == int(done["charged"]) + int(done["slashed"])
