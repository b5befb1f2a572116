"""`ledgerlm attribute`: its argument errors and `--verify RECEIPT` on a receipt it cannot use."""

import json

import pytest
from typer.testing import CliRunner

from ledgerlm.cli import app


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("LEDGERLM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LEDGERLM_NODE", raising=False)
    runner = CliRunner()
    assert runner.invoke(app, ["init"], catch_exceptions=False).exit_code == 0
    return lambda *args: runner.invoke(app, list(args), catch_exceptions=False)


def test_attribute_needs_a_model_and_a_prompt_or_a_receipt(cli):
    result = cli("attribute", "--prompt", "hi")
    assert result.exit_code == 1 and "--model" in result.output


def test_verify_names_what_the_receipt_lacks(cli, tmp_path):
    missing = cli("attribute", "--verify", str(tmp_path / "nope.json"))
    assert missing.exit_code == 1 and "cannot read receipt" in missing.output
    receipt = tmp_path / "r.json"
    receipt.write_text(json.dumps({"model": "m", "answer": "a", "evidence_bps": 0,
                                   "contributions": []}))
    result = cli("--json", "attribute", "--verify", str(receipt))
    assert result.exit_code == 1 and "prompt" in result.output
