"""`epoch verify`: check an epoch's published receipts against the node's signatures, recompute its payouts and
root from them and its payout file, and check those against the chain — anyone can run it."""

from __future__ import annotations

from dataclasses import dataclass

from ledgerlm.economy.payouts import payout_tree
from ledgerlm.economy.receipt_audit import MAX_EPOCHS_LOOKED_BACK, audit_receipts
from ledgerlm.money import split_by_weight


def chain_holdings(chain, payout_file: dict, assets: dict[str, dict]) -> dict[str, dict[str, int]]:
    """Each shares pool's holders at its closing block, read from the share token on `chain` (not from the
    payout file): balances from the token's checkpoints plus allocations unclaimed by then, weighed as the close
    weighs them (burned shares left out). `assets` are the published assets (`GET /shares/{ref}`) by ref; their
    allocation must hash to the token's own root."""
    from ledgerlm.chain.shares import ShareTokenClient
    from ledgerlm.economy.errors import EconomyError
    from ledgerlm.economy.shares import ShareAsset, holdings_at, revenue_weights

    found = {}
    for pool in payout_file["pools"]:
        if pool["kind"] != "shares" or pool["asset"] not in assets:
            continue
        published = assets[pool["asset"]]
        token = ShareTokenClient(chain, pool["token"])
        leaves = [(leaf["account"], int(leaf["amount"])) for leaf in published["allocation"]]
        if token.allocation_root() != payout_tree(leaves).root:
            raise EconomyError(f"the published allocation of {pool['asset']} is not the one its token at "
                               f"{pool['token']} carries", field="allocation_root")
        fields = {k: published[k] for k in ShareAsset.__dataclass_fields__}
        asset = ShareAsset(**{**fields, "supply": int(published["supply"]), "token": pool["token"],
                              "block": token.issued_block()})
        found[pool["asset"]] = revenue_weights(holdings_at(token, asset, int(pool["block"])), asset.owner)
    return found


def node_holdings(client, pools: list[dict]) -> dict[str, dict[str, int]]:
    """`chain_holdings` as the node reads them for a verifier without a JSON-RPC endpoint: each shares pool's
    holders at its closing block (`GET /shares/{ref}/holders?block=N`, from the chain, not the payout file),
    weighed as the close weighs them."""
    from ledgerlm.economy.shares import revenue_weights

    found = {}
    for pool in pools:
        held = client.shares.holders(pool["asset"], block=int(pool["block"]))["holders"]
        found[pool["asset"]] = revenue_weights({h["account"]: int(h["balance"]) for h in held},
                                               client.shares.show(pool["asset"])["owner"])
    return found


@dataclass(frozen=True)
class EpochAudit:
    """What `epoch verify` found: `problems` (empty: the epoch checks out) and, in words, what the published files
    gave no way to check (older files carry no receipt signatures), which is not a failure."""

    problems: list[str]
    unchecked: list[str]


def verify_epoch(payout_file: dict, receipt_file: dict, funding=None,
                 holders: dict[str, dict[str, int]] | None = None,
                 earlier: dict[int, dict] | None = None) -> list[str]:
    """Every disagreement `audit_epoch` finds (empty: the epoch checks out)."""
    return audit_epoch(payout_file, receipt_file, funding, holders, earlier).problems


def audit_epoch(payout_file: dict, receipt_file: dict, funding=None,
                holders: dict[str, dict[str, int]] | None = None,
                earlier: dict[int, dict] | None = None) -> EpochAudit:
    """Check an epoch's published files against each other, the receipts' signatures and the chain. `funding` is
    the distributor's record; `holders` (`chain_holdings`) the share holders read from the chain, to check the split
    of each shares pool they name; `earlier` the receipts files of the epochs this one's arrears were cut in, by
    number, to check each arrear against what its cut left owed."""
    receipts = audit_receipts(payout_file, receipt_file, earlier)
    problems = list(receipts.problems)
    unchecked = []
    if receipts.unsigned:
        shown = ", ".join(receipts.unsigned[:5]) + (", ..." if len(receipts.unsigned) > 5 else "")
        unchecked.append(f"{len(receipts.unsigned)} receipt(s) unsigned, not checked against the node's signature "
                         f"(the file carries no signature or signing domain for them): {shown}")
    if receipts.signer_unbound:
        unchecked.append("the payout file's chain_epoch names no node (a close that predates node ids): each "
                         "receipt's signature is checked against the node its body names")
    if receipts.settlement_unchecked:
        ids = receipts.settlement_unchecked
        gone = sorted(receipts.epochs_not_given)
        epochs = (f"epochs {', '.join(map(str, gone[:5]))}{', ...' if len(gone) > 5 else ''}: their receipts files "
                  "were not given" if gone else f"epochs more than {MAX_EPOCHS_LOOKED_BACK} back")
        unchecked.append(f"{len(ids)} receipt(s) not checked against every earlier epoch that may have settled "
                         f"them already ({epochs}): {', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}")
    for since, ids in sorted(receipts.arrears_unchecked.items()):
        unchecked.append(f"{len(ids)} arrear(s) of epoch {since} not checked against what that epoch left owed: "
                         f"its receipts file was not given")
    problems.extend(_ledger_problems(payout_file, receipt_file, funding, holders))
    return EpochAudit(problems, unchecked)


def _ledger_problems(payout_file: dict, receipt_file: dict, funding,
                     holders: dict[str, dict[str, int]] | None) -> list[str]:
    # The payouts and root recomputed from the receipts and pools, against the payout file and the chain.
    problems: list[str] = []
    expected: dict[str, int] = {}

    def credit(account: str, amount: int) -> None:
        expected[account] = expected.get(account, 0) + amount

    # Each receipt is settled once: a second copy would charge its consumer and pay its payees twice.
    seen: set[str] = set()
    for r in receipt_file["receipts"]:
        if r["id"] in seen:
            problems.append(f"receipt {r['id']}: listed more than once")
        seen.add(r["id"])
    # Each consumer is debited exactly what their receipts (and arrears) charge, and the debits make up `charged`.
    due_by: dict[str, int] = {}
    for r in receipt_file["receipts"]:
        if r.get("consumer"):
            consumer = r["consumer"].lower()
            due_by[consumer] = due_by.get(consumer, 0) + int(r.get("charged", r["fee"]))
    debited: dict[str, int] = {}
    for d in payout_file.get("debits", []):
        if d["state"] != "unpaid":  # what a consumer could not pay is owed, and its receipts are not listed
            debited[d["consumer"].lower()] = debited.get(d["consumer"].lower(), 0) + int(d["amount"])
    if "debits" in payout_file:
        for consumer in sorted(set(due_by) | set(debited)):
            if due_by.get(consumer, 0) != debited.get(consumer, 0):
                problems.append(f"{consumer}: debited {debited.get(consumer, 0)}, but the receipts charge "
                                f"{due_by.get(consumer, 0)}")
        if payout_file.get("charged") is not None and sum(debited.values()) != int(payout_file["charged"]):
            problems.append(f"the debits sum to {sum(debited.values())}, not charged {payout_file['charged']}")
    pool_in: dict[tuple[str, str], int] = {}
    # Assets with revenue shares: a model's developer share and a Datanet's data pool go to their holders.
    shared = {pool["asset"] for pool in payout_file["pools"] if pool["kind"] == "shares"}
    for r in receipt_file["receipts"]:
        paid = sum(int(p["amount"]) for p in r["payouts"])
        # a receipt whose consumer was debited less than owed pays out what was charged for it, never more
        due = int(r.get("charged", r["fee"]))
        if due > int(r["fee"]):
            problems.append(f"receipt {r['id']}: charged {due}, above its fee {r['fee']}")
        if paid != due:
            problems.append(f"receipt {r['id']}: payouts sum to {paid}, not what it was charged, {due}")
        for p in r["payouts"]:
            if p["role"] == "developer" and f"model:{r['model_id']}" in shared:
                key = ("shares", f"model:{r['model_id']}")
                pool_in[key] = pool_in.get(key, 0) + int(p["amount"])
            elif p["role"] in ("node", "developer", "contributor"):
                credit(p["account"], int(p["amount"]))
            else:
                key = ("validators" if p["role"] == "validators" else "data_pool", p["datanet"])
                pool_in[key] = pool_in.get(key, 0) + int(p["amount"])
    for payment in payout_file.get("access_payments", []):  # paid access is its Datanet's revenue
        key = ("data_pool", payment["datanet"])
        pool_in[key] = pool_in.get(key, 0) + int(payment["amount"])
    for job in payout_file.get("compute_jobs", []):  # a job pays its provider, or its requester back
        credit(job["account"], int(job["amount"]))
    pool_out: dict[tuple[str, str], int] = {}
    # what is shown by its amount only (a private Datanet's, to a reader who may not read it): pools paid to
    # accounts not named, and contributors' shares taken back from accounts not named
    withheld = unnamed_back = 0
    for pool in payout_file["pools"]:
        if pool["kind"] == "redirected":
            if pool.get("withheld"):
                unnamed_back += int(pool["amount"])
            else:
                credit(pool["account"], -int(pool["amount"]))
            pool_in[("data_pool", pool["datanet"])] = pool_in.get(("data_pool", pool["datanet"]), 0) + int(pool["amount"])
            continue
        if pool.get("withheld"):
            withheld += int(pool["amount"])
            key = ("shares", pool["asset"]) if pool["kind"] == "shares" else (pool["kind"], pool["datanet"])
            if pool["kind"] != "slashed_stake":
                pool_out[key] = pool_out.get(key, 0) + int(pool["amount"])
            continue
        split = {a: int(v) for a, v in pool["split"].items()}
        if sum(split.values()) != int(pool["amount"]):
            problems.append(f"{pool['kind']} pool of {pool['datanet']}: split sums to {sum(split.values())}, "
                            f"not {pool['amount']}")
        if pool["kind"] == "shares" and holders is not None and pool["asset"] in holders:
            owed = split_by_weight(int(pool["amount"]), holders[pool["asset"]]) if int(pool["amount"]) else {}
            owed = {a: v for a, v in owed.items() if v}
            if owed != {a: v for a, v in split.items() if v}:
                wrong = sorted(a for a in set(owed) | set(split) if owed.get(a, 0) != split.get(a, 0))
                problems.append(f"shares pool of {pool['asset']}: the chain's holders at block {pool['block']} are "
                                f"owed another split than the file pays ({', '.join(wrong[:5])}"
                                + (", ..." if len(wrong) > 5 else "") + ")")
        for account, amount in split.items():
            credit(account, amount)
        if pool["kind"] != "slashed_stake":
            key = ("shares", pool["asset"]) if pool["kind"] == "shares" else (pool["kind"], pool["datanet"])
            pool_out[key] = pool_out.get(key, 0) + int(pool["amount"])
    # A Datanet nobody validated pays its validators' share to its data pool.
    for (kind, datanet), amount in sorted(pool_in.items()):
        if kind == "validators" and pool_out.get(("validators", datanet)) is None:
            pool_in[("data_pool", datanet)] = pool_in.get(("data_pool", datanet), 0) + amount
    for datanet in [k[1] for k in pool_in if k[0] == "data_pool" and f"datanet:{k[1]}" in shared]:
        key = ("shares", f"datanet:{datanet}")
        pool_in[key] = pool_in.get(key, 0) + pool_in.pop(("data_pool", datanet))
    for key in sorted(set(pool_in) | set(pool_out)):
        if key[0] == "validators" and key not in pool_out:
            continue
        if pool_in.get(key, 0) != pool_out.get(key, 0):
            problems.append(f"{key[0]} pool of {key[1]}: receipts put in {pool_in.get(key, 0)}, the file pays out "
                            f"{pool_out.get(key, 0)}")
    listed = {p["account"]: int(p["amount"]) for p in payout_file["payouts"]}
    above = below = 0  # what leaves pay beyond (and short of) what the shown receipts and pools owe
    for account in sorted(set(expected) | set(listed)):
        beyond = listed.get(account, 0) - expected.get(account, 0)
        if beyond > 0 and withheld:
            above += beyond
        elif beyond < 0 and unnamed_back:
            below -= beyond
        elif beyond:
            problems.append(f"{account}: the receipts and pools owe {expected.get(account, 0)}, "
                            f"the payout file says {listed.get(account, 0)}")
    # one account may have a share taken back and a withheld pool's payment both: only the net is known
    if above - below != withheld - unnamed_back or below > unnamed_back:
        problems.append(f"the leaves pay {above} beyond and {below} short of what the shown receipts and pools "
                        f"owe, but the withheld pools hold {withheld} and {unnamed_back} went back to data pools")
    total = sum(listed.values())
    if str(total) != str(payout_file["total"]):
        problems.append(f"payout file total {payout_file['total']} but its leaves sum to {total}")
    access = int(payout_file.get("access") or 0)
    compute = int(payout_file.get("compute") or 0)
    if int(payout_file["charged"]) + int(payout_file["rewards"]) + access + compute != total:
        problems.append(f"charged {payout_file['charged']} + rewards {payout_file['rewards']} + access {access} "
                        f"+ compute {compute} != payouts {total}")
    try:
        root = payout_tree(listed.items()).root
    except Exception as exc:  # a damaged file: report, do not crash the verifier
        problems.append(f"payout tree cannot be built: {exc}")
        root = None
    if root and root != payout_file["root"]:
        problems.append(f"the leaves hash to root {root}, the payout file says {payout_file['root']}")
    if funding is None:
        problems.append("the distributor has no such epoch")
    else:
        if funding.root != root:
            problems.append(f"the chain's root is {funding.root}, the published payouts hash to {root}")
        if funding.total != total:
            problems.append(f"the chain funded {funding.total}, the payouts add up to {total}")
    return problems
