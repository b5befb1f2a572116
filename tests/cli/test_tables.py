"""CLI tables in a narrow terminal fold long values onto more lines rather than cutting them short."""

from __future__ import annotations

import io
import re

from ledgerlm.cli.session import Output, Table

ADDRESS = "0x" + "ab12" * 10


def test_a_narrow_terminal_folds_an_address_instead_of_cutting_it():
    out = io.StringIO()
    terminal = Output(file=out, force_terminal=True, width=60, color_system=None)
    table = Table("account", "shares", "unclaimed allocation", "share")
    table.add_row(ADDRESS, "1,000,000.5", "250,000.25", "12.50%")
    terminal.print(table)

    drawn = out.getvalue()
    assert "…" not in drawn
    # the account column's pieces, read top to bottom, are the whole address
    first_cells = [re.split(r"[│┃]", line)[1].strip() for line in drawn.splitlines() if line.startswith("│")]
    assert "".join(first_cells) == ADDRESS, drawn
