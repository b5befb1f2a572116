"""The shared benchmark result writer: JSON and Markdown with the command, the machine read at run time and the date."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from report import ResultTable, write_result  # noqa: E402


def test_writes_json_and_markdown_with_command_machine_and_date(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["benchmarks/ingest.py", "--records", "1000"])
    table = ResultTable("ingest", ["run", "items/s", "vs baseline"])
    table.add_row("baseline json+sqlite3", "41,000", "1.00x")
    table.add_row("ledgerlm | signed", "30,000", "0.73x")
    json_path, md_path = write_result("ingest", {"runs": {"baseline": 41000}}, [table],
                                      notes=["quick run"], json_path=tmp_path / "ingest.json")

    record = json.loads(json_path.read_text())
    assert record["runs"] == {"baseline": 41000}
    assert record["command"] == "python benchmarks/ingest.py --records 1000"
    assert record["machine"]["cores"] >= 1 and record["machine"]["cpu"]
    assert record["date"].endswith("Z")

    md = md_path.read_text()
    assert md_path == tmp_path / "ingest.md"
    assert "`python benchmarks/ingest.py --records 1000`" in md
    assert f"{record['machine']['cores']} cores" in md
    assert record["date"] in md and "quick run" in md
    assert "| run | items/s | vs baseline |" in md
    assert "| ledgerlm \\| signed | 30,000 | 0.73x |" in md  # a pipe in a cell must not split the row


def test_a_row_with_the_wrong_width_is_refused():
    table = ResultTable("t", ["a", "b"])
    with pytest.raises(ValueError, match="1 cells for 2 columns"):
        table.add_row("only one")
