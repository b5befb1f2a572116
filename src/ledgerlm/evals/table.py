"""A titled table of formatted cells that benchmarks and evaluations print with rich and write as Markdown."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ResultTable:
    """A titled table of already-formatted cells, printed with rich and written as Markdown."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add_row(self, *cells: object) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"table {self.title!r}: row has {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(["" if c is None else str(c) for c in cells])

    def rich(self):
        from rich.table import Table

        table = Table(title=self.title)
        for i, col in enumerate(self.columns):
            table.add_column(col, justify="left" if i == 0 else "right")
        for row in self.rows:
            table.add_row(*row)
        return table

    def print(self) -> None:
        from rich.console import Console

        Console().print(self.rich())

    def markdown(self) -> str:
        def cell(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")

        lines = [f"### {self.title}", "", "| " + " | ".join(cell(c) for c in self.columns) + " |",
                 "| " + " | ".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + " |"]
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines)
