"""Named secp256k1 keys kept as encrypted keystore (v3) files in the node home."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledgerlm.errors import ConflictError, LedgerError, NotFoundError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
DEFAULT_KDF_ITERATIONS = 2**18  # scrypt n: about a second per unlock, as geth uses
MIN_KDF_ITERATIONS = 2**10  # the least LEDGERLM_KDF_ITERATIONS may set (fast test suites use it)


def kdf_iterations() -> int:
    """scrypt's cost for new keystores: the default, or LEDGERLM_KDF_ITERATIONS (a power of two, at least
    MIN_KDF_ITERATIONS: lower makes a stolen keystore's passphrase cheap to guess; test suites use the minimum)."""
    raw = os.environ.get("LEDGERLM_KDF_ITERATIONS", "").strip()
    if not raw:
        return DEFAULT_KDF_ITERATIONS
    if not (raw.isascii() and raw.isdigit()) or int(raw) < MIN_KDF_ITERATIONS or int(raw) & (int(raw) - 1):
        raise KeyringError(f"LEDGERLM_KDF_ITERATIONS must be a power of two of at least {MIN_KDF_ITERATIONS} "
                           f"(default {DEFAULT_KDF_ITERATIONS}), not {raw[:40]!r}", field="LEDGERLM_KDF_ITERATIONS")
    return int(raw)


def create_keystore(path: Path, passphrase: str, *, private_key: bytes | None = None) -> str:
    """Write a new (or the given) key as an encrypted keystore with mode 0600; return its address."""
    if not passphrase:  # an empty one encrypts nothing: anyone who reads the file holds the key
        raise KeyringError("a key's passphrase may not be empty (LEDGERLM_PASSPHRASE is set but empty?)",
                           field="passphrase")
    account = Account.from_key(private_key) if private_key else Account.create()
    iterations = kdf_iterations()
    keystore = Account.encrypt(account.key, passphrase, kdf="scrypt", iterations=iterations)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(keystore, out)
    os.replace(tmp, path)
    return account.address


class KeyringError(LedgerError):
    pass


@dataclass(frozen=True)
class KeyInfo:
    name: str
    address: str
    path: str


def passphrase_from_env() -> str | None:
    return os.environ.get("LEDGERLM_PASSPHRASE")


class Keyring:
    """The keys of one home; every file is a standard keystore any Ethereum wallet can import."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _path(self, name: str) -> Path:
        if not NAME.match(name or ""):
            raise KeyringError(
                f"key name {name!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-'",
                field="name",
            )
        return self.directory / f"{name}.json"

    def new(self, name: str, passphrase: str, *, private_key: bytes | None = None) -> KeyInfo:
        path = self._path(name)
        if path.exists():
            raise ConflictError(f"a key named {name!r} already exists at {path}", field="name")
        return KeyInfo(name, create_keystore(path, passphrase, private_key=private_key), str(path))

    def list(self) -> list[KeyInfo]:
        if not self.directory.exists():
            return []
        return [self._info(p.stem) for p in sorted(self.directory.glob("*.json"))]

    def _info(self, name: str) -> KeyInfo:
        path = self._path(name)
        if not path.exists():
            raise NotFoundError(f"no key named {name!r} in {self.directory}", field="name")
        keystore = json.loads(path.read_text())
        return KeyInfo(name, _checksum(keystore["address"]), str(path))

    def show(self, name: str) -> KeyInfo:
        return self._info(name)

    def unlock(self, name: str, passphrase: str | None) -> LocalAccount:
        path = self._path(name)
        if not path.exists():
            raise NotFoundError(f"no key named {name!r} in {self.directory}", field="key")
        if passphrase is None:
            raise KeyringError(f"key {name!r} needs its passphrase (set LEDGERLM_PASSPHRASE)", field="passphrase")
        try:
            return Account.from_key(Account.decrypt(json.loads(path.read_text()), passphrase))
        except ValueError as exc:
            raise KeyringError(f"wrong passphrase for key {name!r}", field="passphrase", status=401) from exc


def _checksum(address: str) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(address if address.startswith("0x") else "0x" + address)
