"""Recording signed actions: the one place a replayed nonce is turned away."""

from __future__ import annotations

import time

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from ledgerlm.errors import AuthError
from ledgerlm.identity import SignedAction
from ledgerlm.store.schema import signed_actions


def refuse_used_nonce(conn, signed: SignedAction, signer: str) -> None:
    """Refuse an action whose nonce `signer` already used, before any work on it (a replayed upload is
    turned away before its files are read); `record_action` still decides, in the effect's transaction."""
    used = conn.execute(select(signed_actions.c.id).where(
        signed_actions.c.signer == signer, signed_actions.c.nonce == str(signed.message["nonce"]))).first()
    if used is not None:
        raise _replayed(signed, signer)


def _replayed(signed: SignedAction, signer: str) -> AuthError:
    return AuthError(f"nonce {signed.message['nonce']} was already used by {signer}: replayed {signed.action} rejected",
                     field="nonce")


def record_action(conn, signed: SignedAction, signer: str, *, chain_id: int, now: int | None = None) -> int:
    """Store a verified action with its signature, in the caller's transaction; returns its id.

    (signer, nonce) is unique, so a replay fails here, in the same transaction as its effect,
    which then never happens.
    """
    try:
        with conn.begin_nested():
            return conn.execute(
                insert(signed_actions).values(
                    action=signed.action,
                    signer=signer,
                    nonce=str(signed.message["nonce"]),
                    deadline=int(signed.message["deadline"]),
                    chain_id=chain_id,
                    message=signed.message,
                    signature=signed.signature,
                    created_at=int(time.time()) if now is None else now,
                )
            ).inserted_primary_key[0]
    except IntegrityError as exc:
        raise _replayed(signed, signer) from exc
