"""The Chain port over any EVM JSON-RPC node (anvil in tests, an OP Stack L2 in production)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import requests
from web3 import Web3
from web3.exceptions import Web3Exception

from ledgerlm.chain.endpoints import public_url, scrub_urls
from ledgerlm.chain.errors import ChainError
from ledgerlm.chain.port import Chain


def _scrubbed(text: str, url: str) -> str:
    """An error's text with every part of `url` that may hold a credential replaced."""
    try:
        parts = urlsplit(str(url))
        secrets = [str(url), parts.path, parts.query, parts.password or "", parts.username or ""]
    except ValueError:
        secrets = [str(url)]
    for secret in sorted((s for s in secrets if s and s != "/"), key=len, reverse=True):
        text = text.replace(secret, "***")
    return scrub_urls(text)


def open_rpc(
    url: str,
    *,
    expected_chain_id: int | None = None,
    request_timeout: float = 30.0,
    receipt_timeout: float = 120.0,
    confirmations: int = 1,
    bump_after: float = 30.0,
    max_fee_bumps: int = 5,
    nonce_dir: Path | None = None,
    poll_latency: float = 0.1,
) -> Chain:
    """Connect to the node at `url`, check it answers and, if given, that its chain id matches.

    Writes return once `confirmations` blocks hold them (1: the including block); unmined ones are
    re-priced every `bump_after` seconds up to `max_fee_bumps` times; with `nonce_dir`, processes on
    this machine that send with the same key share their nonces through lock files there.
    """
    session = requests.Session()
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": request_timeout},
                                session=session))
    try:
        chain_id = int(w3.eth.chain_id)
    except (Web3Exception, OSError, ValueError) as exc:
        session.close()
        raise ChainError(
            f"cannot reach an EVM node at {public_url(url)} ({type(exc).__name__}: {_scrubbed(str(exc), url)}); "
            "check that the node runs and the URL (scheme, host, port) is right",
            field="chain_url",
            status=503,
        ) from exc
    if expected_chain_id is not None and chain_id != expected_chain_id:
        session.close()
        raise ChainError(
            f"the node at {public_url(url)} serves chain id {chain_id}, but {expected_chain_id} was "
            "expected; point --chain-url at the right network or update the configured chain id",
            field="chain_id",
        )

    def advance_time(seconds: int) -> None:
        # anvil and hardhat both speak these; production nodes refuse them, which is right.
        try:
            w3.provider.make_request("evm_increaseTime", [seconds])
            response = w3.provider.make_request("evm_mine", [])
        except (Web3Exception, OSError) as exc:
            raise ChainError(f"the node at {public_url(url)} cannot move its clock: {_scrubbed(str(exc), url)}",
                             status=501) from exc
        if isinstance(response, dict) and response.get("error"):
            raise ChainError(
                f"the node at {public_url(url)} cannot move its clock: {response['error']}", status=501
            )

    try:
        return Chain(w3, kind="rpc", chain_id=chain_id, advance_time=advance_time,
                     receipt_timeout=receipt_timeout, on_close=session.close, confirmations=confirmations,
                     bump_after=bump_after, max_fee_bumps=max_fee_bumps, nonce_dir=nonce_dir,
                     poll_latency=poll_latency)
    except ChainError:
        session.close()
        raise
