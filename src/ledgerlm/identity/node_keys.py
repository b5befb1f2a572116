"""The node's own keys (hot key, admin key, development faucet key) as encrypted keystore files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledgerlm.errors import LedgerError
from ledgerlm.identity.keys import DEFAULT_KDF_ITERATIONS, _checksum

# Which environment variable unlocks which node key; each can also be typed at a prompt.
NODE_PASSPHRASE_ENV = "LEDGERLM_NODE_PASSPHRASE"
ADMIN_PASSPHRASE_ENV = "LEDGERLM_ADMIN_PASSPHRASE"


class NodeKeyError(LedgerError):
    """A node key that cannot be created or unlocked as asked."""


def node_passphrase(env: str, label: str) -> str:
    """The passphrase for a node key: from `env`, else a prompt on a terminal, else an error."""
    value = os.environ.get(env)
    if value:
        return value
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"Passphrase for the {label} key: ")
    raise NodeKeyError(f"the {label} key is encrypted: set {env} to its passphrase", field="passphrase",
                       status=401)


def keystore_address(path: Path) -> str:
    """The address of a keystore file, read without decrypting it."""
    return _checksum(json.loads(Path(path).read_text())["address"])


def create_keystore(path: Path, passphrase: str, *, private_key: bytes | None = None) -> str:
    """Write a new (or the given) key as an encrypted keystore with mode 0600; return its address."""
    account = Account.from_key(private_key) if private_key else Account.create()
    iterations = int(os.environ.get("LEDGERLM_KDF_ITERATIONS", DEFAULT_KDF_ITERATIONS))
    keystore = Account.encrypt(account.key, passphrase, kdf="scrypt", iterations=iterations)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(keystore, out)
    os.replace(tmp, path)
    return account.address


def unlock_keystore(path: Path, passphrase: str, label: str) -> LocalAccount:
    try:
        return Account.from_key(Account.decrypt(json.loads(Path(path).read_text()), passphrase))
    except FileNotFoundError:
        raise NodeKeyError(f"no {label} key at {path}", field="key", status=404) from None
    except ValueError as exc:
        raise NodeKeyError(f"wrong passphrase for the {label} key ({path})", field="passphrase",
                           status=401) from exc
