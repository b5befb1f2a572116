"""Where a home keeps its agents: one JSON record per agent beside its append-only audit log."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from pydantic import BaseModel

from ledgerlm.agents.errors import AgentError
from ledgerlm.agents.policy import AgentPolicy
from ledgerlm.errors import ConflictError, NotFoundError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,57}$")


class AgentRecord(BaseModel):
    """An agent: its own address (its key lives in the keyring), who owns it, its policy and its API key."""

    name: str
    address: str
    owner: str
    key_name: str
    policy: AgentPolicy
    api_key: str  # an sk-lgr- key bound to the cap the agent signed; the file is readable by its user only
    key_epoch: int
    created_at: int


class AgentRegistry:
    """Reads and writes agent records; every write replaces the file atomically."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _path(self, name: str) -> Path:
        if not NAME.match(name or ""):
            raise AgentError(f"agent name {name!r} is not allowed: use 1-58 letters, digits, '_', '.' or '-'",
                             field="name")
        return self.directory / f"{name}.json"

    def audit_path(self, name: str) -> Path:
        return self._path(name).with_suffix(".audit.jsonl")

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def add(self, record: AgentRecord) -> AgentRecord:
        if self.exists(record.name):
            raise ConflictError(f"an agent named {record.name!r} already exists", field="name")
        self.save(record)
        return record

    def save(self, record: AgentRecord) -> None:
        path = self._path(record.name)
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(record.model_dump_json(indent=2))
        os.replace(tmp, path)

    def get(self, name: str) -> AgentRecord:
        path = self._path(name)
        if not path.exists():
            raise NotFoundError(f"no agent named {name!r}; create one with `ledgerlm agent create`", field="name")
        return AgentRecord.model_validate(json.loads(path.read_text()))

    def list(self) -> list[AgentRecord]:
        if not self.directory.exists():
            return []
        return [self.get(p.stem) for p in sorted(self.directory.glob("*.json"))]

    def set_paused(self, name: str, paused: bool) -> AgentRecord:
        record = self.get(name)
        record.policy.paused = paused
        self.save(record)
        return record
