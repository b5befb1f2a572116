"""What an epoch's payout file and an account's earnings show to a reader who may not read some private Datanets."""

from __future__ import annotations

from collections.abc import Callable


def datanets_named(payout_file: dict) -> set[str]:
    """Every Datanet the payout file (or an epoch's record) names in a pool, a payout's sources or a paid access."""
    named = {p["datanet"] for p in payout_file.get("pools", []) if p.get("datanet")}
    for payout in payout_file.get("payouts", []):
        named.update((payout.get("sources") or {}).get("datanets", []))
    named.update(p["datanet"] for p in payout_file.get("access_payments", []) if p.get("datanet"))
    return named


def epoch_record_for(record: dict, may_read: Callable[[str], bool]) -> dict:
    """An epoch's record (or payout file) with the paid accesses to private Datanets the reader may not read
    (`may_read`: `Access.may_read` for that reader) by Datanet and amount only."""
    return access_payments_for(record, hidden_from(datanets_named(record), may_read))


def access_payments_for(record: dict, hidden: set[str]) -> dict:
    """An epoch's record or payout file with each paid access to a Datanet in `hidden` shown by its Datanet and
    amount only: who paid, for which version and to train or export, is the members' business. The amount and
    the Datanet stay, as its (withheld) data pool shows them, so the totals still check."""
    payments = record.get("access_payments")
    if not payments or not hidden:
        return record
    kept = ("datanet", "amount")
    return {**record, "access_payments": [
        {**{k: p[k] for k in kept if k in p}, "withheld": True} if p.get("datanet") in hidden else p
        for p in payments]}


def hidden_from(names: set[str], may_read: Callable[[str], bool]) -> set[str]:
    """Those of `names` the reader may not read (`may_read`: `Access.may_read` for that reader)."""
    return {name for name in names if not may_read(name)}


def payout_file_for(payout_file: dict, hidden: set[str]) -> dict:
    """The payout file with each pool of a Datanet in `hidden` shown by its amount only (`withheld`): its data,
    validator and shares pools without their split, which names the Datanet's members, holders and how their data
    was valued, and a contributor's share redirected to its data pool without the contributor. That Datanet is
    left out of every payout's sources, and its paid accesses name no payer (`access_payments_for`). Every leaf and amount stays, so the root and the totals still check
    (`verify_epoch` checks what is withheld by its sum)."""
    if not hidden:
        return payout_file
    pools = [_withheld(p) if p.get("datanet") in hidden else p for p in payout_file.get("pools", [])]
    payouts = [{**p, "sources": _sources_for(p.get("sources"), hidden)} for p in payout_file.get("payouts", [])]
    return access_payments_for({**payout_file, "pools": pools, "payouts": payouts}, hidden)


def earnings_for(owed: dict, hidden: set[str]) -> dict:
    """An account's earnings (`economy.earnings.earnings`) without the Datanets in `hidden` in their sources."""
    if not hidden:
        return owed
    return {**owed, "epochs": [{**e, "sources": _sources_for(e.get("sources"), hidden)} for e in owed["epochs"]]}


def earnings_datanets(owed: dict) -> set[str]:
    return {d for e in owed["epochs"] for d in (e.get("sources") or {}).get("datanets", [])}


def _withheld(pool: dict) -> dict:
    if pool["kind"] == "redirected":
        return {k: v for k, v in pool.items() if k not in ("account", "receipt")} | {"withheld": True}
    return {**pool, "split": {}, "withheld": True}


def _sources_for(sources: dict | None, hidden: set[str]) -> dict | None:
    if not sources or not hidden.intersection(sources.get("datanets", [])):
        return sources
    return {**sources, "datanets": [d for d in sources["datanets"] if d not in hidden]}
