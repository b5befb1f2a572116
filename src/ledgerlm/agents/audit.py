"""The audit trail: one line per tool call an agent attempted, with its cost, receipt and chain transactions."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pydantic import BaseModel, Field


class AuditEntry(BaseModel):
    """One attempted tool call; a refusal is recorded too, with the rule that refused it."""

    at: int = Field(default_factory=lambda: int(time.time()))
    agent: str
    tool: str
    args: dict
    ok: bool
    cost: int = 0  # base units charged (the receipt's fee); 0 for free tools and refusals
    receipt_id: str | None = None
    tx_hashes: list[str] = Field(default_factory=list)
    error: str | None = None
    field: str | None = None
    result: dict = Field(default_factory=dict)


class AuditLog:
    """Append-only JSON lines; a line is written whole, so a crash never leaves half an entry behind."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, entry: AuditEntry) -> AuditEntry:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # readable by the owner only: it keeps prompts, answers and validation tasks (a private Datanet's data)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a") as out:
            out.write(entry.model_dump_json() + "\n")
        return entry

    def entries(self) -> list[AuditEntry]:
        if not self.path.exists():
            return []
        return [AuditEntry.model_validate(json.loads(line)) for line in self.path.read_text().splitlines() if line]
