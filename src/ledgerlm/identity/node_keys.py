"""The node's own keys (hot key, admin key, development faucet key) as encrypted keystore files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledgerlm.errors import LedgerError
from ledgerlm.identity.keys import _checksum

# Which environment variable unlocks which node key; each can also be typed at a prompt.
NODE_PASSPHRASE_ENV = "LEDGERLM_NODE_PASSPHRASE"
ADMIN_PASSPHRASE_ENV = "LEDGERLM_ADMIN_PASSPHRASE"


class NodeKeyError(LedgerError):
    """A node key that cannot be created or unlocked as asked."""


def node_passphrase(env: str, label: str, *, new: bool = False) -> str:
    """The passphrase for a node key: from `env`, else a prompt on a terminal, else an error.

    `new` is for a key about to be created, so the error asks for a passphrase to choose rather than one to recall.
    """
    value = os.environ.get(env)
    if value:
        return value
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"Passphrase for the {'new ' if new else ''}{label} key: ")
    if new:
        raise NodeKeyError(f"the {label} key is created encrypted: set {env} to the passphrase it should have "
                           "(or run in a terminal to be asked)", field="passphrase", status=401)
    raise NodeKeyError(f"the {label} key is encrypted: set {env} to its passphrase", field="passphrase",
                       status=401)


def keystore_address(path: Path) -> str:
    """The address of a keystore file, read without decrypting it."""
    return _checksum(json.loads(Path(path).read_text())["address"])


def unlock_keystore(path: Path, passphrase: str, label: str) -> LocalAccount:
    try:
        return Account.from_key(Account.decrypt(json.loads(Path(path).read_text()), passphrase))
    except FileNotFoundError:
        raise NodeKeyError(f"no {label} key at {path}", field="key", status=404) from None
    except ValueError as exc:
        raise NodeKeyError(f"wrong passphrase for the {label} key ({path})", field="passphrase",
                           status=401) from exc
