"""What an epoch's published receipts prove on their own: each cut receipt's payouts against the split it was
signed with, each receipt against the node's signature, each arrear against what its cutting epoch left owed, and
each receipt against the earlier epochs that may have settled it already."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from eth_utils import to_checksum_address

from ledgerlm.economy.shortfall import cut_payouts
from ledgerlm.errors import LedgerError
from ledgerlm.money import SplitError

Payee = tuple[str, str | None, str | None]  # a payout line's role, account and Datanet
# How many earlier epochs' receipts files `epoch verify` reads to find a receipt some of them settled already: a
# receipt is settled in the epoch it was signed in but for one still attributing at its close, so the window is
# nearly always empty; past it receipts are named unchecked, not failed.
MAX_EPOCHS_LOOKED_BACK = 64


@dataclass
class ReceiptAudit:
    """What the receipts file's own evidence refutes (`problems`) and what it could not be checked against."""

    problems: list[str] = field(default_factory=list)
    unsigned: list[str] = field(default_factory=list)  # receipt ids published without the node's signature
    # arrears (receipt ids) whose cutting epoch's receipts file was not given, by that epoch
    arrears_unchecked: dict[int, list[str]] = field(default_factory=dict)
    # receipt ids not checked against every earlier epoch that may have settled them, and those epochs
    settlement_unchecked: list[str] = field(default_factory=list)
    epochs_not_given: set[int] = field(default_factory=set)
    signer_unbound: bool = False  # no node address in the payout file: signatures checked against each body's node


def _by_payee(lines) -> dict[Payee, int]:
    out: dict[Payee, int] = {}
    for p in lines or []:
        key = (p["role"], p.get("account"), p.get("datanet"))
        out[key] = out.get(key, 0) + int(p["amount"])
    return {k: v for k, v in out.items() if v}


def _named(payee: Payee) -> str:
    role, account, datanet = payee
    return f"{role} {account}" if account else f"{role} pool of {datanet}"


def _differences(got: Mapping[Payee, int], want: Mapping[Payee, int]) -> list[tuple[str, int, int]]:
    keys = sorted(set(got) | set(want), key=lambda k: tuple("" if v is None else v for v in k))
    return [(_named(k), got.get(k, 0), want.get(k, 0)) for k in keys if got.get(k, 0) != want.get(k, 0)]


def epoch_node(payout_file: Mapping) -> str | None:
    """The node whose epoch this is, from its distributor id (node address << 64 | number), which the chain binds to
    that node; None for closes that predate ids carrying their node."""
    chain_epoch = int(payout_file.get("chain_epoch") or 0)
    return to_checksum_address("0x" + format(chain_epoch >> 64, "040x")) if chain_epoch >> 64 else None


def cut_problems(r: Mapping) -> list[str]:
    """A receipt the close cut (it has `charged`): its payouts must be `charged` split over its `signed_payouts` by
    the close's own splitter, and its `owed_payouts` its signed lines less what it pays, payee by payee."""
    rid = r["id"]
    if "signed_payouts" not in r or "owed_payouts" not in r:
        return [f"receipt {rid}: cut to {r['charged']} but lists no signed_payouts and owed_payouts to check "
                "its payouts against"]
    problems = []
    signed = r["signed_payouts"] or []
    if (total := sum(int(p["amount"]) for p in signed)) != int(r["fee"]):
        problems.append(f"receipt {rid}: signed_payouts sum to {total}, not its fee {r['fee']}")
    try:
        due, _ = cut_payouts(signed, int(r["charged"]))
    except SplitError as exc:
        return [*problems, f"receipt {rid}: its signed_payouts cannot be split: {exc}"]
    paid = _by_payee(due)
    for payee, got, want in _differences(_by_payee(r["payouts"]), paid):
        problems.append(f"receipt {rid}: pays {payee} {got}, but its charged {r['charged']} split over its "
                        f"signed_payouts gives {want}")
    # measured against what it should pay, so a forged owed_payouts is reported even beside forged payouts
    left = {k: v - paid.get(k, 0) for k, v in _by_payee(signed).items()}
    for payee, got, want in _differences(_by_payee(r["owed_payouts"]), {k: v for k, v in left.items() if v}):
        problems.append(f"receipt {rid}: owes {payee} {got}, but its signed_payouts less what its charged "
                        f"{r['charged']} pays leave {want}")
    return problems


def signature_problems(r: Mapping, node: str | None, domain, epoch: int | None) -> list[str]:
    """A signed receipt: the node's key signed its body, and the body names this receipt, its consumer, model and
    fee, and the payout lines it was written with (`signed_payouts` when cut, else `payouts`). An arrear's lines
    are what an earlier cut left owed, so its body is held only to its identity and a fee no smaller than it owes."""
    from ledgerlm.identity import recover_signer, typed_data
    from ledgerlm.serving.receipts import ZERO_ADDRESS, json_hash

    rid, body = r["id"], r["body"]
    try:
        signer = recover_signer(typed_data("InferenceReceipt", body, domain), r["signature"], what="the receipt's")
    except LedgerError:  # a mangled signature or body verifies as nobody
        signer = None
    expected_signer = node or body.get("node")
    if signer is None or signer != expected_signer:
        return [f"receipt {rid}: its signature is {signer or 'nobody'}'s, not the node's ({expected_signer})"]
    expected = {"node": expected_signer, "receiptId": rid, "consumer": r["consumer"] or ZERO_ADDRESS,
                "modelId": r["model_id"], "state": "final"}
    if "created_at" in r:
        expected["createdAt"] = r["created_at"]
    if "withheld" not in (r.get("attribution") or {}):  # a private Datanet's is published in part only
        expected["attributionHash"] = json_hash(r.get("attribution"))
    arrear = "arrears_from" in r
    if not arrear:
        expected["fee"] = int(r["fee"])
    problems = [f"receipt {rid}: the node signed {name} {body.get(name)!r}, the receipt says {value!r}"
                for name, value in expected.items() if body.get(name) != value]
    lines = r.get("signed_payouts") if "charged" in r else r["payouts"]
    if not arrear and body.get("payoutsHash") != json_hash(lines):
        problems.append(f"receipt {rid}: its {'signed_payouts' if 'charged' in r else 'payouts'} are not the "
                        "payout lines the node signed")
    if arrear and int(body.get("fee", 0)) < int(r["fee"]):
        problems.append(f"receipt {rid}: charges {r['fee']} as arrears, more than its signed fee {body.get('fee')}")
    if epoch is not None and int(body.get("epoch", 0)) > epoch:
        problems.append(f"receipt {rid}: signed in epoch {body.get('epoch')}, after epoch {epoch} that settles it")
    return problems


def arrear_problems(r: Mapping, cutting: Mapping) -> list[str]:
    """An arrear must charge exactly what its cutting epoch's receipts file (`cutting`) left owed, payee by payee."""
    rid, since = r["id"], r["arrears_from"]
    cut = next((c for c in cutting.get("receipts", []) if c["id"] == rid and "owed_payouts" in c), None)
    if cut is None:
        return [f"receipt {rid}: charged as arrears of epoch {since}, whose receipts file leaves nothing of it owed"]
    lines = r.get("signed_payouts") if "charged" in r else r["payouts"]
    return [f"receipt {rid}: charges {payee} {got} as arrears of epoch {since}, which left {want} owed"
            for payee, got, want in _differences(_by_payee(lines), _by_payee(cut["owed_payouts"]))]


def _first_unsettled(r: Mapping, epoch: int) -> int:
    """The first epoch that must not have settled receipt `r` already: the one it was signed in (an arrear: the one
    after the epoch that cut it, which settled it in part)."""
    if "arrears_from" in r:
        return int(r["arrears_from"]) + 1
    if r.get("body") and r.get("signature"):
        try:
            return int(r["body"].get("epoch", epoch))
        except (TypeError, ValueError):  # a mangled body: its signature check reports it
            return epoch
    return epoch  # an unsigned receipt of an older file names no epoch of its own


def _window(r: Mapping, epoch: int) -> range:
    return range(max(_first_unsettled(r, epoch), epoch - MAX_EPOCHS_LOOKED_BACK, 1), epoch)


def earlier_epochs(receipt_file: Mapping) -> list[int]:
    """The earlier epochs whose receipts files `audit_receipts` checks this one's against: each arrear's cutting
    epoch, and each that may have settled one of its receipts already (at most `MAX_EPOCHS_LOOKED_BACK` back)."""
    if receipt_file.get("epoch") is None:
        return []
    epoch = int(receipt_file["epoch"])
    wanted: set[int] = set()
    for r in receipt_file["receipts"]:
        if "arrears_from" in r:
            wanted.add(int(r["arrears_from"]))
        wanted.update(_window(r, epoch))
    return sorted(e for e in wanted if e < epoch)


def _settled_again(receipt_file: Mapping, earlier: Mapping[int, Mapping], audit: ReceiptAudit) -> None:
    """A receipt (an arrear: what one epoch's cut left owed) is settled once. Each epoch's file passes on its own
    with a receipt another epoch settled too, its consumer charged and its payees paid twice: only the files
    together show it."""
    epoch = int(receipt_file["epoch"])
    settled: dict[tuple[str, int | None], int] = {}
    for number, other in earlier.items():
        if int(number) < epoch:
            for r in other.get("receipts", []):
                since = r.get("arrears_from")
                settled.setdefault((r["id"], None if since is None else int(since)), int(number))
    for r in receipt_file["receipts"]:
        since = r.get("arrears_from")
        before = settled.get((r["id"], None if since is None else int(since)))
        if before is not None:
            what = f"its arrears of epoch {since} were" if since is not None else "it was"
            audit.problems.append(f"receipt {r['id']}: {what} already settled by epoch {before}")
        window = _window(r, epoch)
        missing = {e for e in window if e not in earlier}
        if missing or window.start > _first_unsettled(r, epoch):
            audit.settlement_unchecked.append(r["id"])
            audit.epochs_not_given |= missing


def audit_receipts(payout_file: Mapping, receipt_file: Mapping,
                   earlier: Mapping[int, Mapping] | None = None) -> ReceiptAudit:
    """Check every receipt of the file (`earlier`: the receipts files of the epochs its arrears were cut in, by
    epoch number, and those that may have settled its receipts already: `earlier_epochs`). Receipts without a
    signature, as files published before receipts carried theirs, are listed `unsigned` and not checked against
    one."""
    from ledgerlm.identity import SigningDomain

    audit = ReceiptAudit()
    node = epoch_node(payout_file)
    named = receipt_file.get("signing_domain")
    domain = SigningDomain(int(named["chain_id"]), named.get("verifying_contract")) if named else None
    epoch = receipt_file.get("epoch")
    for r in receipt_file["receipts"]:
        if "charged" in r:
            audit.problems.extend(cut_problems(r))
        if r.get("signature") and r.get("body") and domain is not None:
            audit.signer_unbound |= node is None
            audit.problems.extend(signature_problems(r, node, domain, epoch))
        else:
            audit.unsigned.append(r["id"])
        if "arrears_from" in r:
            since = int(r["arrears_from"])
            if earlier is not None and since in earlier:
                audit.problems.extend(arrear_problems(r, earlier[since]))
            else:
                audit.arrears_unchecked.setdefault(since, []).append(r["id"])
    if epoch is not None:
        _settled_again(receipt_file, earlier or {}, audit)
    return audit
