"""Revenue shares: one ERC-20 per Datanet or model, issued once with a Merkle allocation, whose holders at an
epoch's closing block are paid that asset's revenue (a model's developer share, a Datanet's data pool and
access fees)."""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass

from eth_utils import keccak, to_checksum_address
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from ledgerlm.chain.errors import ChainError
from ledgerlm.chain.shares import share_events
from ledgerlm.economy.errors import EconomyError
from ledgerlm.economy.payouts import Ledger, payout_tree
from ledgerlm.economy.pools import valuation_weights
from ledgerlm.errors import AuthError, ConflictError, NotFoundError
from ledgerlm.identity import SignedAction, SigningDomain, recover_signer, verify_action
from ledgerlm.money import BPS, split_by_weight
from ledgerlm.store import Database
from ledgerlm.store.actions import record_action
from ledgerlm.store.schema import datanets, epochs, models, share_assets, versions

KINDS = ("datanet", "model")
# One million whole shares (18 decimals) unless the issuer asks for another supply.
DEFAULT_SUPPLY = 10**6 * 10**18
# RevenueShare keeps balances as uint208 checkpoints.
MAX_SUPPLY = 2**208 - 1
UNIT = 10**18  # earnings per share are quoted per whole share (10^18 base units)
_SYMBOL_CHARS = re.compile(r"[^A-Z0-9]")


@dataclass(frozen=True)
class ShareAsset:
    """An asset's issued shares: its token, fixed supply and the allocation every leaf can be claimed from."""

    kind: str
    asset: str
    asset_id: str
    version: int | None
    token: str | None
    name: str
    symbol: str
    supply: int
    owner: str
    owner_bps: int
    allocation_root: str
    allocation: list[dict]  # {"account", "amount", "proof"}, amounts as decimal strings
    tx: str | None
    block: int | None
    created_at: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.asset)

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.asset}"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["supply"] = str(self.supply)
        out["ref"] = self.ref
        return out


@dataclass(frozen=True)
class AllocationPreview:
    """What an asset's owner checks and signs before its shares exist: the allocation the node computes for the
    terms, its Merkle root, and the factory's EIP-712 domain the on-chain ShareIssue is signed in."""

    kind: str
    asset: str
    asset_id: str
    version: int | None
    supply: int
    owner: str
    owner_bps: int
    allocation_root: str
    allocation: list[dict]  # {"account", "amount", "proof"}, amounts as decimal strings
    share_issue_domain: dict
    name: str = ""  # the token's name and symbol, which the owner's ShareIssue signs too
    symbol: str = ""

    def to_dict(self) -> dict:
        out = asdict(self)
        out["supply"] = str(self.supply)
        return out


def asset_chain_id(kind: str, asset: str) -> str:
    """The asset's Registry id: keccak256 of the Datanet's name or of the model's id."""
    return "0x" + keccak(text=asset).hex()


def allocation(conn: Connection, kind: str, asset: str, version: int | None, owner: str, supply: int,
               owner_bps: int) -> dict[str, int]:
    """Who gets the supply at issue: a model's developer all of it; a Datanet's owner `owner_bps` of it and
    the contributors of the version the rest, by the data valuation of their contributions."""
    if kind == "model":
        return {owner: supply}
    owner_part = supply * owner_bps // BPS
    weights = valuation_weights(conn, asset, version)
    split = split_by_weight(supply - owner_part, weights) if supply > owner_part else {}
    if owner_part:
        split[owner] = split.get(owner, 0) + owner_part
    given: dict[str, int] = {}
    for account, amount in split.items():  # one holder spelt in two cases is one holder, not a dropped part
        if amount > 0:
            given[to_checksum_address(account)] = given.get(to_checksum_address(account), 0) + amount
    # a supply so small that rounding gives someone the policy or their data entitles nothing would hand their
    # part to the largest holders (a supply of 1 went whole to the largest contributor)
    due = ({to_checksum_address(a) for a, w in weights.items() if w > 0} if owner_part < supply else set()) | \
        ({to_checksum_address(owner)} if owner_bps else set())
    left_out = sorted(due - set(given))
    if left_out:
        raise EconomyError(f"a supply of {supply} base units is too small to give each of the {len(due)} holders "
                           f"its part ({left_out[0]} would get none): issue more", field="supply")
    return given


def _check_terms(kind: str, supply: int, version: int) -> None:
    if kind not in KINDS:
        raise EconomyError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}", field="kind")
    if not 0 < supply <= MAX_SUPPLY:
        raise EconomyError(f"supply must be a positive integer below 2^208, not {supply}", field="supply")
    if not 0 <= version < 2**63:
        raise EconomyError(f"version must be 0 (the latest) or a version number, not {version}", field="version")


def _allocation_tree(conn: Connection, kind: str, asset: str, version: int | None, owner: str, supply: int,
                     owner_bps: int) -> tuple[str, list[dict]]:
    """The allocation's Merkle root and its leaves, each with its proof."""
    tree = payout_tree(sorted(allocation(conn, kind, asset, version, owner, supply, owner_bps).items()))
    return tree.root, [{"account": v[0], "amount": str(v[1]), "proof": tree.proof(i)} for i, v in enumerate(tree.values)]


def _begun(conn: Connection, kind: str, asset: str, supply: int, version: int | None, owner_bps: int):
    """The asset's share record not yet on chain (None when there is none), once these terms are the ones it was
    begun with; an asset whose shares exist is refused."""
    existing = conn.execute(select(share_assets).where(
        (share_assets.c.kind == kind) & (share_assets.c.asset == asset))).mappings().first()
    if existing is None:
        return None
    if existing["token"] is not None:
        raise ConflictError(f"{kind} {asset!r} already has shares; they are issued once", field="asset")
    for field, first, now in (("supply", existing["supply"], str(supply)), ("version", existing["version"], version),
                              ("ownerBps", existing["owner_bps"], owner_bps)):
        if first != now:
            raise ConflictError(f"{kind} {asset!r}'s issue was begun with {field} {first}: sign the same terms to "
                                f"finish it, not {now}", field=field)
    return existing


def shares_issued(db: Database, kind: str, asset: str) -> bool:
    """Whether the asset's shares were issued (or their issue begun): their allocation is fixed from then."""
    with db.connect() as conn:
        return conn.execute(select(share_assets.c.id).where(
            (share_assets.c.kind == kind) & (share_assets.c.asset == asset))).first() is not None


def holdings_at(token, asset: ShareAsset, block: int, events=None) -> dict[str, int]:
    """What each account holds at the end of `block`: its checkpointed balance plus its allocation while that
    is still unclaimed (unclaimed shares belong to their leaf's account, not to the token contract). Holders
    are every recipient in the token's Transfer logs.

    The token contract itself holds the unclaimed allocations, and anything sent to it beyond them: no function
    moves those out again, so they are burned, owned by nobody and left out (the holdings then sum to less than
    the supply). Anyone can send the token to itself, so such units must never stop a close; the holdings and
    the contract's own balance must still make up the supply, or the chain is not what the node reads it as."""
    if asset.block is None or block < asset.block:
        return {}
    events = events or token.events(asset.block, block)
    recipients = {t.to for t in events.transfers if t.block <= block} - {token.address, "0x" + "00" * 20}
    balances = token.balances_at([*sorted(recipients), token.address], block)
    own = balances.pop(token.address)
    held = {a: v for a, v in balances.items() if v}
    claimed = {a for a, at in events.claims.items() if at <= block}
    unclaimed = 0
    for leaf in asset.allocation:
        if leaf["account"] not in claimed:
            held[leaf["account"]] = held.get(leaf["account"], 0) + int(leaf["amount"])
            unclaimed += int(leaf["amount"])
    burned = own - unclaimed
    if burned < 0 or sum(held.values()) + burned != asset.supply:
        raise EconomyError(f"holders of {asset.ref} at block {block} hold {sum(held.values())} and its token "
                           f"{own} against unclaimed allocations of {unclaimed}: they do not make up the supply "
                           f"{asset.supply}", field="shares", status=500)
    return held


def revenue_weights(held: dict[str, int], issuer: str) -> dict[str, int]:
    """Whom an asset's revenue is split among, by weight: its holders, burned shares left out so their part
    falls to the others by the largest-remainder split. With every share burned nobody is left to weigh; the
    revenue goes back to the asset's issuer (its `owner`), who earned it before there were shares, as a Datanet
    with no accepted data pays its owner, rather than stopping the close."""
    return held or {issuer: 1}


def load_assets(conn: Connection, *, issued_by: int | None = None) -> dict[tuple[str, str], ShareAsset]:
    """Every asset with shares on chain (created at or before block `issued_by`, when given)."""
    rows = conn.execute(select(share_assets).where(share_assets.c.token.is_not(None))
                        .order_by(share_assets.c.id)).mappings().all()
    found = {}
    for r in rows:
        if issued_by is not None and r["block"] > issued_by:
            continue
        asset = _asset(r)
        found[asset.key] = asset
    return found


def _asset(row) -> ShareAsset:
    return ShareAsset(row["kind"], row["asset"], row["asset_id"], row["version"], row["token"], row["name"],
                      row["symbol"], int(row["supply"]), row["owner"], row["owner_bps"], row["allocation_root"],
                      row["allocation"], row["tx"], row["block"], row["created_at"])


def pay_holders(ledger: Ledger, contracts, assets: dict[tuple[str, str], ShareAsset],
                revenue: dict[tuple[str, str], dict[str, int]], block: int) -> list[dict]:
    """Credit each asset's epoch revenue to its holders at `block` by balance; returns the published pools."""
    paid = []
    paying = [assets[key] for key in revenue]
    events = share_events(contracts.chain, [a.token for a in paying], min((a.block for a in paying), default=0),
                          block) if paying else {}
    for key, sources in sorted(revenue.items()):
        asset = assets[key]
        amount = sum(sources.values())
        held = holdings_at(contracts.share_token(asset.token), asset, block, events[asset.token])
        source = {"datanet": asset.asset} if asset.kind == "datanet" else {"model": asset.asset}
        split = ledger.credit_split(amount, revenue_weights(held, asset.owner), "shares", **source)
        paid.append({"kind": "shares", "datanet": asset.asset if asset.kind == "datanet" else None,
                     "model": asset.asset if asset.kind == "model" else None, "asset": asset.ref,
                     "token": asset.token, "block": block, "supply": str(asset.supply), "amount": str(amount),
                     "sources": {k: str(v) for k, v in sorted(sources.items())}, "rounds": [],
                     "split": {a: str(v) for a, v in sorted(split.items())}})
    return paid


class Shares:
    """Issuing shares on an owner's signed request, and reading holders and earnings per share."""

    def __init__(self, db: Database, contracts, node_account, *, domain: SigningDomain):
        self.db = db
        self.contracts = contracts
        self.node_account = node_account
        self.domain = domain

    # ------------------------------------------------------------------ issue

    def preview(self, kind: str, asset: str, supply: int, version: int = 0) -> AllocationPreview:
        """The allocation an issue of `supply` shares makes and its Merkle root, which the owner checks and signs
        (`issue` refuses any other root). An issue a crash cut off shows the allocation it was begun with: only the
        same terms finish it."""
        _check_terms(kind, supply, version)
        self.contracts.share_factory.require_named_share_issue()
        asset_id = asset_chain_id(kind, asset)
        with self.db.connect() as conn:
            owner, version, owner_bps = self._check_asset(conn, kind, asset, version)
            existing = _begun(conn, kind, asset, supply, version, owner_bps)
            if existing is not None:
                root, leaves = existing["allocation_root"], existing["allocation"]
                name, symbol = existing["name"], existing["symbol"]
            else:
                self._refuse_foreign_token(kind, asset, asset_id)
                root, leaves = _allocation_tree(conn, kind, asset, version, owner, supply, owner_bps)
                name, symbol = _token_names(conn, kind, asset, asset_id)
        return AllocationPreview(kind, asset, asset_id, version, supply, owner, owner_bps, root, leaves,
                                 self.contracts.share_factory.eip712_domain, name, symbol)

    def issue(self, signed: SignedAction, share_issue_signature: str) -> ShareAsset:
        """Create the asset's share token on the allocation its owner (or developer) signed. The signed
        IssueShares names the allocation root, which must be the one the node computes for its terms; the
        ShareIssue signed beside it carries the same kind, asset, supply, root and deadline to the factory, which
        creates no token without it."""
        signer = verify_action(signed, expected="IssueShares", domain=self.domain)
        m = signed.message
        kind, asset, supply, owner_bps = m["kind"], m["asset"], int(m["supply"]), int(m["ownerBps"])
        signed_root, deadline = m["allocationRoot"].lower(), int(m["deadline"])
        _check_terms(kind, supply, int(m["version"]))
        asset_id = asset_chain_id(kind, asset)
        with self.db.begin() as conn:
            self.db.lock(conn, f"shares:{kind}:{asset}")  # two issues of one asset at once: the later one sees the first
            name, symbol = _token_names(conn, kind, asset, asset_id)
            owner, version, policy_bps = self._check_asset(conn, kind, asset, int(m["version"]))
            if signer != owner:
                role = "developer" if kind == "model" else "owner"
                raise AuthError(f"only the {role} of {asset} ({owner}) may issue its shares", field="owner", status=403)
            if owner_bps != policy_bps:  # the owner signs the allocation the policy gives them, nothing else
                raise EconomyError(
                    f"ownerBps must be {policy_bps}, the owner share the {kind}'s policy names, not {owner_bps}"
                    + (" (set it with `ledgerlm datanet owner-share`)" if kind == "datanet" else ""),
                    field="ownerBps")
            existing = _begun(conn, kind, asset, supply, version, owner_bps)
            if existing is not None:
                # a crash (or an expired signature) came between the record and the chain: the owner signs the
                # terms first signed again, and the fresh signatures finish it
                root, name, symbol = existing["allocation_root"], existing["name"], existing["symbol"]
            else:
                self._refuse_foreign_token(kind, asset, asset_id)
                root, leaves = _allocation_tree(conn, kind, asset, version, owner, supply, owner_bps)
            if signed_root != root:
                raise ConflictError(f"the signed allocation root {signed_root} is not the one the node computes for "
                                    f"these terms, {root}: preview the allocation again (its data or owner share "
                                    "may have changed) and sign that", field="allocationRoot")
            self._check_share_issue(owner, kind, asset_id, supply, root, deadline, share_issue_signature,
                                    name=name, symbol=symbol)
            action_id = record_action(conn, signed, owner, chain_id=self.domain.chain_id)
            signature = {"action_id": action_id, "issue_signature": share_issue_signature, "issue_deadline": deadline}
            if existing is not None:
                row_id = existing["id"]
                conn.execute(update(share_assets).where(share_assets.c.id == row_id).values(**signature))
            else:
                row_id = conn.execute(insert(share_assets).values(
                    kind=kind, asset=asset, asset_id=asset_id, version=version, token=None, name=name,
                    symbol=symbol, supply=str(supply), owner=owner, owner_bps=owner_bps, allocation_root=root,
                    allocation=leaves, tx=None, block=None, created_at=int(time.time()),
                    **signature)).inserted_primary_key[0]
        return self._anchor(row_id)

    def _check_share_issue(self, owner: str, kind: str, asset_id: str, supply: int, root: str, deadline: int,
                           signature: str, *, name: str, symbol: str) -> None:
        """Refuse, before anything is recorded, a ShareIssue the factory would refuse: one not signed by `owner`
        over exactly these terms (and the token name and symbol the preview showed), or an asset whose owner in the
        Registry is someone else."""
        factory = self.contracts.share_factory
        typed = factory.share_issue_typed_data(KINDS.index(kind), asset_id, supply, root, deadline, name=name,
                                               symbol=symbol)
        signer = recover_signer(typed, signature, what="ShareIssue", field="share_issue_signature")
        if signer != owner:
            raise AuthError(f"the ShareIssue signature is not {owner}'s over the kind, asset, token name "
                            f"({name!r}) and symbol ({symbol!r}), supply, allocation root and deadline of the "
                            "IssueShares it came with (preview the issue again)", field="share_issue_signature")
        on_chain = factory.asset_owner(KINDS.index(kind), asset_id)
        if on_chain != owner:
            raise ConflictError(f"the Registry names {on_chain} as the {kind}'s owner, not {owner}: the factory "
                                "creates its shares only on that account's signature", field="owner")

    def _refuse_foreign_token(self, kind: str, asset: str, asset_id: str) -> None:
        if self.contracts.share_factory.share_of(KINDS.index(kind), asset_id) is not None:
            # its owner signed an issue that another of the factory's issuers relayed: nothing of this node's
            raise ConflictError(f"{kind} {asset!r} already has a share token on chain that this node did not "
                                "issue; they are issued once", field="asset")

    def _check_asset(self, conn: Connection, kind: str, asset: str, version: int) -> tuple[str, int | None, int]:
        """Who issues the asset's shares (a Datanet's owner, a model's developer), the version the allocation
        values (None for a model) and the owner share the asset's policy names."""
        if kind == "model":
            row = conn.execute(select(models.c.developer, models.c.chain_tx).where(models.c.id == asset)).first()
            if row is None:
                raise NotFoundError(f"no fine-tuned model {asset!r}", field="asset")
            if not row.chain_tx:
                raise EconomyError(f"model {asset} is not published on chain yet: `ledgerlm model publish` first",
                                   field="asset", status=409)
            return row.developer, None, 0
        row = conn.execute(select(datanets.c.id, datanets.c.owner, datanets.c.chain_tx, datanets.c.owner_share_bps)
                           .where(datanets.c.name == asset)).first()
        if row is None:
            raise NotFoundError(f"no Datanet {asset!r}", field="asset")
        query = select(versions.c.number, versions.c.chain_tx).where(versions.c.datanet_id == row.id)
        found = conn.execute(query.order_by(versions.c.number.desc()).limit(1)).first()
        if found is None:
            raise EconomyError(f"Datanet {asset} has no version: publish one, so the allocation values its data",
                               field="version", status=409)
        if version and version != found.number:
            # an older version would leave out everyone who contributed since (and the owner share they were
            # promised a limit on): shares value the Datanet as it stands
            raise EconomyError(f"shares value the latest version of {asset}, {found.number}, not {version} "
                               "(0 names the latest)", field="version", status=409)
        if not row.chain_tx or not found.chain_tx:
            raise EconomyError(f"Datanet {asset} version {found.number} is not anchored on chain yet",
                               field="version", status=409)
        return row.owner, int(found.number), int(row.owner_share_bps)

    def _anchor(self, row_id: int) -> ShareAsset:
        """Create the token on chain with the owner's signature (or find the one a crash left behind) and record
        where it lives."""
        with self.db.connect() as conn:
            row = conn.execute(select(share_assets).where(share_assets.c.id == row_id)).mappings().one()
        asset = _asset(row)
        factory = self.contracts.share_factory
        kind = KINDS.index(asset.kind)
        tx = None
        token = factory.share_of(kind, asset.asset_id)
        if token is None:
            if row["issue_signature"] is None or row["issue_deadline"] < int(time.time()):
                raise EconomyError(f"{asset.ref}'s issue waits for its owner's signature (the one given has expired): "
                                   "sign `ledgerlm shares issue` again with the same terms to finish it",
                                   field="deadline", status=409)
            try:
                tx = factory.issue(self.node_account, kind, asset.asset_id, asset.name, asset.symbol, asset.supply,
                                   asset.allocation_root, row["issue_deadline"], row["issue_signature"]).tx_hash
            except ChainError as exc:
                if exc.error_name != "AlreadyIssued":
                    raise
                # the same issue sent at once (by this node or another on the database) landed first: it is adopted
                # below like one a crash left, if it is this allocation's
            token = factory.share_of(kind, asset.asset_id)
        client = self.contracts.share_token(token)
        if client.allocation_root() != asset.allocation_root:
            raise EconomyError(f"the token at {token} carries another allocation root", field="asset", status=409)
        if tx is None:  # issued before a crash lost the answer: the issue's transaction is read from its event
            tx = factory.chain.event_tx(factory.contract, "SharesIssued", client.issued_block(), token=token)
        with self.db.begin() as conn:
            conn.execute(update(share_assets).where(share_assets.c.id == row_id)
                         .values(token=token, tx=tx, block=client.issued_block()))
        return self.asset(asset.ref)

    def reconcile(self) -> int:
        """Anchor shares whose chain write a crash interrupted; returns how many. One that cannot be anchored does
        not keep the others waiting: the first such error is raised once every other one was tried."""
        with self.db.connect() as conn:
            ids = list(conn.execute(select(share_assets.c.id).where(share_assets.c.token.is_(None))).scalars())
        failed = None
        for row_id in ids:
            try:
                self._anchor(row_id)
            except EconomyError as exc:
                failed = failed or exc
        if failed is not None:
            raise failed
        return len(ids)

    # ------------------------------------------------------------------ reads

    def asset(self, ref: str) -> ShareAsset:
        """An asset by `datanet:NAME`, `model:ID`, a bare name or id (when only one kind has it) or its token."""
        with self.db.connect() as conn:
            rows = [_asset(r) for r in conn.execute(select(share_assets).order_by(share_assets.c.id)).mappings()]
        kind, _, name = ref.partition(":") if ":" in ref else ("", "", ref)
        found = [a for a in rows if (a.asset == name and kind in ("", a.kind))
                 or (a.token and a.token.lower() == ref.lower())]
        if not found:
            raise NotFoundError(f"no shares issued for {ref!r}; issue them with `ledgerlm shares issue`",
                                field="asset")
        if len(found) > 1:
            raise EconomyError(f"{ref!r} names both a Datanet and a model: say datanet:{name} or model:{name}",
                               field="asset")
        return found[0]

    def all(self) -> list[ShareAsset]:
        with self.db.connect() as conn:
            return [_asset(r) for r in conn.execute(select(share_assets).order_by(share_assets.c.id)).mappings()]

    def holders(self, ref: str, block: int | None = None) -> dict:
        """Holders at `block` (default: the chain head), largest first, with claimed and unclaimed parts."""
        asset = self.asset(ref)
        if asset.token is None:
            raise EconomyError(f"{asset.ref} is not on chain yet: sign `ledgerlm shares issue` again to finish it",
                               field="asset", status=409)
        head = self.contracts.chain.block_number()
        block = head if block is None else block
        if block > head:
            raise EconomyError(f"block {block} is after the chain head {head}", field="block")
        token = self.contracts.share_token(asset.token)
        events = token.events(asset.block, block) if block >= asset.block else None
        held = holdings_at(token, asset, block, events)
        unclaimed = {leaf["account"]: int(leaf["amount"]) for leaf in asset.allocation
                     if leaf["account"] not in events.claims} if held else {}
        rows = [{"account": a, "balance": str(v), "unclaimed_allocation": str(unclaimed.get(a, 0)),
                 "bps": v * BPS // asset.supply} for a, v in sorted(held.items(), key=lambda kv: (-kv[1], kv[0]))]
        # shares sent to the token contract itself are burned: they earn nothing, so they are shown apart
        burned = asset.supply - sum(held.values()) if block >= asset.block else 0
        return {"asset": asset.ref, "token": asset.token, "block": block, "supply": str(asset.supply),
                "burned": str(burned), "holders": rows}

    def earnings(self, ref: str) -> dict:
        """Per closed epoch: the asset's revenue by source, the closing block and earnings per whole share."""
        asset = self.asset(ref)
        with self.db.connect() as conn:
            rows = conn.execute(select(epochs.c.number, epochs.c.state, epochs.c.details)
                                .where(epochs.c.details.is_not(None)).order_by(epochs.c.number)).all()
        out = []
        for number, state, details in rows:
            for pool in (details or {}).get("pools", []):
                if pool.get("kind") == "shares" and pool.get("asset") == asset.ref:
                    amount = int(pool["amount"])
                    out.append({"epoch": number, "state": state, "block": pool["block"], "revenue": str(amount),
                                "sources": pool["sources"], "holders": len(pool["split"]),
                                "per_share": str(amount * UNIT // asset.supply)})
        return {"asset": asset.ref, "supply": str(asset.supply), "total": str(sum(int(e["revenue"]) for e in out)),
                "epochs": out}


def _token_names(conn: Connection, kind: str, asset: str, asset_id: str) -> tuple[str, str]:
    private = kind == "datanet" and conn.execute(
        select(datanets.c.visibility).where(datanets.c.name == asset)).scalar() == "private"
    return share_token_names(kind, asset, asset_id, private=private)


def share_token_names(kind: str, asset: str, asset_id: str, *, private: bool) -> tuple[str, str]:
    """The share token's name and symbol: the asset's name, or for a private Datanet (which appears on chain only
    as the hash of its name) the start of its chain id, so a public token does not publish the name. The owner's
    client recomputes them before it signs."""
    if kind == "datanet" and private:
        return f"ledgerlm datanet {asset_id[:10]}", "D-" + asset_id[2:10].upper()
    return _short(f"ledgerlm {kind} {asset}"), _symbol(kind, asset)


# The token's EIP-2612 domain keeps its name in one word, so the token refuses a name of 32 bytes or more.
TOKEN_NAME_BYTES = 31


def _short(name: str) -> str:
    """`name` cut to what a share token takes, marked "..." where cut."""
    if len(name.encode()) <= TOKEN_NAME_BYTES:
        return name
    cut = name.encode()[:TOKEN_NAME_BYTES - 3].decode(errors="ignore")
    return cut + "..."


def _symbol(kind: str, asset: str) -> str:
    return ("D" if kind == "datanet" else "M") + "-" + _SYMBOL_CHARS.sub("", asset.upper())[:10]
