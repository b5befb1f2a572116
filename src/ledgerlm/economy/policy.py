"""Fee policy changes: a developer's signed new split for a published model, in force from the next epoch."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import and_, delete, insert, select
from sqlalchemy.engine import Connection

from ledgerlm.economy.epochs import current_epoch, open_epoch
from ledgerlm.economy.errors import EconomyError
from ledgerlm.economy.fees import FeeShares
from ledgerlm.errors import AuthError
from ledgerlm.identity import SignedAction, SigningDomain, verify_action
from ledgerlm.store import Database
from ledgerlm.store.actions import record_action
from ledgerlm.store.schema import fee_policy_changes


def fee_shares_in_force(conn: Connection, model_id: str, epoch: int, published: FeeShares) -> FeeShares:
    """The split that prices a call to `model_id` in `epoch`: the latest change from that epoch or before,
    else the one the model was published with."""
    policy = conn.execute(select(fee_policy_changes.c.policy).where(and_(
        fee_policy_changes.c.model_id == model_id, fee_policy_changes.c.from_epoch <= epoch))
        .order_by(fee_policy_changes.c.from_epoch.desc()).limit(1)).scalar()
    return published if policy is None else FeeShares.from_dict(policy)


def fee_policy_views(db: Database, published: dict[str, FeeShares | None]) -> dict[str, dict]:
    """What a listing shows per model (`published`: model id -> the split it was published with, None if it
    is not published): `fee_policy`, the split pricing calls in the open epoch, and apart from it
    `fee_policy_announced`, a change that prices calls only from a later epoch ({"fee_policy", "from_epoch"};
    None when there is none)."""
    views = {}
    with db.connect() as conn:
        epoch = current_epoch(conn)
        for model_id, shares in published.items():
            if shares is None:
                views[model_id] = {"fee_policy": None, "fee_policy_announced": None}
                continue
            announced = conn.execute(select(fee_policy_changes.c.policy, fee_policy_changes.c.from_epoch).where(
                and_(fee_policy_changes.c.model_id == model_id, fee_policy_changes.c.from_epoch > epoch))
                .order_by(fee_policy_changes.c.from_epoch.desc()).limit(1)).first()
            views[model_id] = {
                "fee_policy": fee_shares_in_force(conn, model_id, epoch, shares).to_dict(),
                "fee_policy_announced": None if announced is None else {
                    "fee_policy": FeeShares.from_dict(announced.policy).to_dict(),
                    "from_epoch": int(announced.from_epoch)},
            }
    return views


def change_fee_policy(db: Database, model, signed: SignedAction, *, domain: SigningDomain,
                      announce: Callable[[FeeShares, int], None] | None = None) -> dict:
    """Schedule the developer's signed SetFeePolicy for `model` (a factory ModelRecord) from the epoch after
    the open one; `announce(shares, from_epoch)` then posts it to the chain's registry. Returns the change:
    model, policy and the first epoch it prices.

    The change is committed before it is announced: a chain write that fails takes it back out, and a node
    that stopped between the two announces it when it starts again (`pending_announcements`). Announced inside
    the open transaction instead, a node that stopped after the chain took it had the chain pricing the new
    split and its own database the old one."""
    developer = verify_action(signed, expected="SetFeePolicy", domain=domain)
    m = signed.message
    if m["modelId"] != model.id:
        raise AuthError("the signature is for another model", field="modelId")
    if developer != model.developer:
        raise AuthError(f"only its developer may change the fee policy of {model.id}", field="developer",
                        status=403)
    if not model.chain_tx:
        raise EconomyError(f"{model.id} is not published: its first fee policy is set by publishing it",
                           field="model", status=409)
    shares = FeeShares(m["nodeBps"], m["developerBps"], m["contributorsBps"], m["validatorsBps"])
    with db.begin() as conn:
        action_id = record_action(conn, signed, developer, chain_id=domain.chain_id)
        from_epoch = open_epoch(conn) + 1
        same_epoch = and_(fee_policy_changes.c.model_id == model.id, fee_policy_changes.c.from_epoch == from_epoch)
        replaced = conn.execute(select(fee_policy_changes).where(same_epoch)).mappings().first()
        # a second change in the same epoch replaces the first: both would start at the same epoch
        conn.execute(delete(fee_policy_changes).where(same_epoch))
        conn.execute(insert(fee_policy_changes).values(model_id=model.id, from_epoch=from_epoch,
                                                       policy=shares.to_dict(), action_id=action_id,
                                                       created_at=int(time.time())))
    if announce is not None:
        try:
            announce(shares, from_epoch)
        except Exception:
            with db.begin() as conn:  # the chain refused it: the change of this epoch before it stands again
                conn.execute(delete(fee_policy_changes).where(same_epoch))
                if replaced is not None:
                    conn.execute(insert(fee_policy_changes).values(**dict(replaced)))
            raise
    return {"model": model.id, "fee_policy": shares.to_dict(), "from_epoch": from_epoch}


def pending_announcements(conn: Connection) -> list[tuple[str, int, FeeShares]]:
    """Changes that price a later epoch than the open one: (model, from_epoch, split), which the chain's registry
    must announce as well."""
    epoch = current_epoch(conn)
    return [(r.model_id, int(r.from_epoch), FeeShares.from_dict(r.policy)) for r in conn.execute(
        select(fee_policy_changes.c.model_id, fee_policy_changes.c.from_epoch, fee_policy_changes.c.policy)
        .where(fee_policy_changes.c.from_epoch > epoch).order_by(fee_policy_changes.c.model_id,
                                                                   fee_policy_changes.c.from_epoch))]
