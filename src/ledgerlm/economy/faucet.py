"""The development faucet: ETH and LGR from the embedded chain's treasury account, within per-address limits."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from sqlalchemy import insert, select, update

from ledgerlm.economy.errors import EconomyError
from ledgerlm.store import Database
from ledgerlm.store.schema import faucet_grants


@dataclass(frozen=True)
class FaucetGrant:
    address: str
    eth_wei: int
    tokens: int
    eth_tx: str | None
    token_tx: str | None
    total_eth_wei: int  # given to this address so far, this grant included
    total_tokens: int


def is_loopback(host: str | None) -> bool:
    """Whether a client address is this machine's loopback interface."""
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def is_loopback_name(host_header: str | None) -> bool:
    """Whether a request's Host header names this machine's loopback (`localhost`, `127.0.0.1:8547`,
    `[::1]:8547`): a page a browser loaded from another name that now resolves to 127.0.0.1 (DNS
    rebinding) reaches a loopback socket too, but still sends its own name."""
    if not host_header:
        return False
    name = host_header.strip().lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    return is_loopback(name)


class Faucet:
    """Transfers from the treasury account (never a mint); refused anywhere but the embedded chain."""

    def __init__(self, db: Database, *, embedded: bool, chain, token, account: LocalAccount | None,
                 max_eth_wei: int, max_tokens: int):
        self.db = db
        self.embedded = embedded
        self.chain = chain
        self.token = token
        self.account = account
        self.max_eth_wei = max_eth_wei
        self.max_tokens = max_tokens

    def grant(self, address: str, *, eth_wei: int, tokens: int, client_host: str | None,
              host_header: str | None, relayed: bool = False) -> FaucetGrant:
        """`client_host` is the caller as the node knows it (through its trusted proxies); `relayed`: the request
        names a hop it came through (a reverse proxy on this machine makes every remote caller look local)."""
        if not self.embedded or self.account is None:
            raise EconomyError("the faucet exists only on the embedded development chain; on an RPC chain "
                               "fund accounts from the treasury with `ledgerlm transfer`", field="chain", status=403)
        if relayed:
            raise EconomyError("the faucet does not answer requests relayed by a proxy (X-Forwarded-For, "
                               "Forwarded or X-Real-IP): only a caller on this machine itself", field="client",
                               status=403)
        if not is_loopback(client_host):
            raise EconomyError(f"the faucet answers only on loopback, not to {client_host}", field="client",
                               status=403)
        if not is_loopback_name(host_header):
            raise EconomyError(f"the faucet answers only to requests addressed to localhost, 127.0.0.1 or [::1], "
                               f"not to Host {host_header!r}: a web page that made its own name point here must "
                               "not spend the treasury", field="host", status=403)
        address = to_checksum_address(address)
        with self.db.begin() as conn:
            self.db.lock(conn, f"faucet:{address}")  # the row may not exist yet: nothing to lock for update
            row = conn.execute(select(faucet_grants).where(faucet_grants.c.address == address)).mappings().first()
            given_eth = int(row["eth_wei"]) if row else 0
            given_tokens = int(row["tokens"]) if row else 0
            for name, already, asked, limit in (("eth_wei", given_eth, eth_wei, self.max_eth_wei),
                                                ("tokens", given_tokens, tokens, self.max_tokens)):
                if already + asked > limit:
                    raise EconomyError(f"{name}: the faucet gives one address at most {limit} base units; "
                                       f"{address} already had {already}", field=name, status=429)
            # Counted before the transfers: a crash in between can only under-pay, never exceed the limit.
            values = {"eth_wei": str(given_eth + eth_wei), "tokens": str(given_tokens + tokens),
                      "updated_at": int(time.time())}
            if row:
                conn.execute(update(faucet_grants).where(faucet_grants.c.address == address).values(**values))
            else:
                conn.execute(insert(faucet_grants).values(address=address, **values))
        eth_tx = self.chain.send_eth(self.account, address, eth_wei).tx_hash if eth_wei else None
        token_tx = self.token.transfer(self.account, address, tokens).tx_hash if tokens else None
        return FaucetGrant(address, eth_wei, tokens, eth_tx, token_tx, given_eth + eth_wei, given_tokens + tokens)
