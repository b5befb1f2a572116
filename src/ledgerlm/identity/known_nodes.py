"""Known nodes: the key and signing domain each node URL reported when first read from, like SSH's known_hosts."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ledgerlm.errors import AuthError, LedgerError

# one machine's node answers on each of these; a node bound to every address answers on loopback too
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"}


@dataclass(frozen=True)
class KnownNode:
    """What the node at `url` reported when this home pinned it."""

    url: str
    node_address: str
    signing_domain: dict
    pinned_at: float


def node_url_key(url: str) -> str:
    """The URL a pin is kept under: scheme, host and port spelled one way, so `localhost` and `127.0.0.1:80/` agree."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:
        raise LedgerError(f"node URL {url!r} has no valid port: {exc}", field="node") from None
    host = (parts.hostname or "").lower()
    host = "localhost" if host in _LOOPBACK else host
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{host}:{port}{parts.path.rstrip('/')}"


class KnownNodes:
    """The pins of one home, in a JSON file: a read request is signed for a node URL only while it reports the key
    and domain it reported first, and never for a key this home knows at another URL (a hostile node claiming a
    known node's key to collect read requests it could replay there)."""

    def __init__(self, path: Path, *, own_urls: tuple[str, ...] | list[str] = ()):
        self.path = Path(path)
        # nodes this home serves itself: re-created at will (`init` again), so their pin follows what they report
        self.own = {node_url_key(u) for u in own_urls}

    def nodes(self) -> list[KnownNode]:
        return [KnownNode(url, **entry) for url, entry in sorted(self._load().items())]

    def check(self, url: str, node_address: str, signing_domain: dict) -> None:
        """Refuse (AuthError, field `node`) a node whose report disagrees with the pins; pin it on first use."""
        key = node_url_key(url)
        pins = self._load()
        pinned = pins.get(key)
        if key in self.own:
            if pinned is None or not _agrees(pinned, node_address, signing_domain):
                self.trust(url, node_address, signing_domain)
            return
        if pinned is not None:
            if not _agrees(pinned, node_address, signing_domain):
                raise AuthError(
                    f"the node at {key} now reports key {node_address} ({_describe(signing_domain)}), but reported"
                    f" {pinned['node_address']} ({_describe(pinned['signing_domain'])}) when this home first read"
                    f" from it; no read request was signed. If its key or deployment really changed: "
                    f"`ledgerlm node forget {key}` (or remove it from {self.path}) and try again",
                    field="node",
                )
            return
        elsewhere = [u for u, p in pins.items() if p["node_address"].lower() == node_address.lower()]
        if elsewhere:
            raise AuthError(
                f"the node at {key} reports key {node_address}, which is the node this home knows at {elsewhere[0]};"
                f" no read request was signed: a node claiming another's key may be collecting read requests to"
                f" replay there. If {key} really is that node (another name for it, or a node sharing its key and"
                f" database): `ledgerlm node trust {key}`; `ledgerlm node forget {elsewhere[0]}` drops the old pin",
                field="node",
            )
        self.trust(url, node_address, signing_domain)

    def trust(self, url: str, node_address: str, signing_domain: dict) -> KnownNode:
        """Pin `url` to this key and domain, replacing its earlier pin (another URL may know the same key)."""
        pins = self._load()
        node = KnownNode(node_url_key(url), node_address, dict(signing_domain), time.time())
        pins[node.url] = {k: v for k, v in asdict(node).items() if k != "url"}
        self._save(pins)
        return node

    def forget(self, url: str) -> KnownNode | None:
        """Drop the pin of `url`; the next read request to it pins what it reports then. None: it had none."""
        pins = self._load()
        entry = pins.pop(node_url_key(url), None)
        if entry is None:
            return None
        self._save(pins)
        return KnownNode(node_url_key(url), **entry)

    def _load(self) -> dict[str, dict]:
        try:
            found = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise LedgerError(f"cannot read the known nodes in {self.path}: {exc}; fix or remove the file",
                              field="node") from None
        if not isinstance(found, dict) or not all(
            isinstance(e, dict) and {"node_address", "signing_domain", "pinned_at"} <= set(e) for e in found.values()
        ):
            raise LedgerError(f"{self.path} is not a known-nodes file (URL -> node_address, signing_domain,"
                              " pinned_at); fix or remove it", field="node")
        return found

    def _save(self, pins: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(f".{os.getpid()}.partial")  # a reader never sees half a file
        partial.write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n")
        os.replace(partial, self.path)


def _agrees(pinned: dict, node_address: str, signing_domain: dict) -> bool:
    return pinned["node_address"].lower() == node_address.lower() and pinned["signing_domain"] == signing_domain


def _describe(domain: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(domain.items())) if isinstance(domain, dict) else repr(domain)
