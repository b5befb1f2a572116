"""Builds one Node from a home directory: the only place that wires the rooms together."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledgerlm import __version__
from ledgerlm.config import EMBEDDED, Home, NodeConfig
from ledgerlm.datanets import Datanets
from ledgerlm.store import BlobStore, Database


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


@dataclass
class Node:
    home: Home
    config: NodeConfig
    db: Database
    blobs: BlobStore
    account: LocalAccount
    datanets: Datanets
    closers: list = field(default_factory=list)

    @classmethod
    def init(cls, home: Home, *, chain: str = EMBEDDED, chain_id: int = 1337) -> "Node":
        """Create the home (config, database, blob store, node key); safe to run twice."""
        home.root.mkdir(parents=True, exist_ok=True)
        if not home.exists():
            home.save_config(NodeConfig(chain=chain, chain_id=chain_id))
        for directory in (home.blobs, home.keys, home.models):
            directory.mkdir(parents=True, exist_ok=True)
        if not home.node_key_path.exists():
            # The node signs receipts and relays chain writes; it must start unattended, so its
            # key is a 0600 file like other node daemons' keys, not a passphrase-locked keystore.
            _write_private(home.node_key_path, Account.create().key.hex() + "\n")
        db = Database.at(home.database_path)
        db.upgrade()
        db.close()
        return cls.open(home)

    @classmethod
    def open(cls, home: Home) -> "Node":
        config = home.load_config()
        db = Database(config.database_url) if config.database_url else Database.at(home.database_path)
        if db.revision() != db.head_revision():
            db.upgrade()
        blobs = BlobStore(home.blobs)
        blobs.clear_staging()
        account = Account.from_key(home.node_key_path.read_text().strip())
        datanets = Datanets(
            db, blobs, chain_id=config.chain_id, node_account=account,
            max_upload_bytes=config.max_upload_bytes,
        )
        return cls(home, config, db, blobs, account, datanets)

    def info(self) -> dict:
        return {
            "ledgerlm": __version__,
            "home": str(self.home.root),
            "chain": self.config.chain,
            "chain_id": self.config.chain_id,
            "node_address": self.account.address,
            "schema_revision": self.db.revision(),
            "max_upload_bytes": self.config.max_upload_bytes,
        }

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()
        self.db.close()
