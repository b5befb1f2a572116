"""Where a home keeps its agents: one JSON record per agent beside its append-only audit log."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from pydantic import BaseModel, Field

from ledgerlm.agents.errors import AgentError
from ledgerlm.agents.policy import AgentPolicy
from ledgerlm.errors import ConflictError, NotFoundError
from ledgerlm.identity.keys import create_keystore
from ledgerlm.serving.keys import KEY_PREFIX

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,57}\Z")


class AgentRecord(BaseModel):
    """An agent: its own address (its key lives in the keyring), who owns it, its policy, and how far its
    creation got. Its API key is kept apart, encrypted (`AgentRegistry.api_key`)."""

    name: str
    address: str
    owner: str
    key_name: str
    policy: AgentPolicy
    state: str = "ready"  # funding: `agent create` stopped part-way and a rerun finishes it | ready
    plan: dict[str, str] = Field(default_factory=dict)  # the funding asked for (budget, stake, gas_wei)
    api_key: str | None = None  # only in records written before keys were encrypted; sealed on next use
    key_epoch: int = 0
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

    def api_key_path(self, name: str) -> Path:
        return self._path(name).with_suffix(".apikey.json")

    def seal_api_key(self, name: str, key: str, agent: LocalAccount) -> None:
        """Keep the agent's API key as an encrypted keystore, unlocked by the agent's own (encrypted) key."""
        create_keystore(self.api_key_path(name), _sealing_passphrase(agent), private_key=_key_bytes(key))

    def api_key(self, name: str, agent: LocalAccount) -> str | None:
        """The agent's API key, decrypted with its key; None when none is stored."""
        path = self.api_key_path(name)
        if not path.exists():
            return None
        try:
            raw = Account.decrypt(json.loads(path.read_text()), _sealing_passphrase(agent))
        except ValueError as exc:
            raise AgentError(f"agent {name!r}'s API key does not open with this key", field="key") from exc
        return KEY_PREFIX + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()

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
        return [self.get(p.stem) for p in sorted(self.directory.glob("*.json")) if not p.stem.endswith(".apikey")]


def new_api_key() -> str:
    """An `sk-lgr-` key whose 32 random bytes a keystore can hold (a valid secp256k1 scalar)."""
    return KEY_PREFIX + base64.urlsafe_b64encode(Account.create().key).rstrip(b"=").decode()


def _key_bytes(key: str) -> bytes:
    body = key.removeprefix(KEY_PREFIX)
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def _sealing_passphrase(agent: LocalAccount) -> str:
    # derived from the agent's private key: whoever can unlock the agent's keystore can open its API key,
    # and nobody else; the key itself is never written in the clear
    return keccak(b"ledgerlm agent api key" + bytes(agent.key)).hex()
