"""Who may use a Datanet: anyone for a public one; the owner and the members they add for a private one, who
pay the owner's price (if any) to train on or export a version."""

from __future__ import annotations

import time
from collections.abc import Callable

from eth_utils import to_checksum_address
from sqlalchemy import and_, delete, insert, select, update

from ledgerlm.datanets.schemas import AccessDenied, DatanetError, UnknownDatanet
from ledgerlm.errors import AuthError, ConflictError
from ledgerlm.identity import READ_HEADER, SignedAction
from ledgerlm.money import BPS
from ledgerlm.store.schema import access_prices, contributions, datanet_members, datanets

PRIVATE = "private"


class Access:
    """Membership by signed AddMember/RemoveMember, and the single check every use goes through."""

    def _may_use(self, conn, row, address: str | None) -> bool:
        if row["visibility"] != PRIVATE:
            return True
        if address is None:
            return False
        if address == row["owner"]:
            return True
        return conn.execute(
            select(datanet_members.c.member).where(
                and_(datanet_members.c.datanet_id == row["id"], datanet_members.c.member == address)
            )
        ).first() is not None

    def _require(self, conn, row, address: str | None, what: str, named: bool = True) -> None:
        """Raise unless `address` may `what` ("read", "export", "train on", "contribute to") the Datanet.

        `named`: whether the caller named the Datanet; one who asked for something in it by id (a
        contribution, a job) is not told its name."""
        if self._may_use(conn, row, address):
            return
        which = f"Datanet {row['name']!r} is private" if named else "it belongs to a private Datanet"
        if address is None:
            raise AuthError(
                f"{which}: sign a read request ({READ_HEADER}, or --as KEY in the CLI) as its owner or a member",
                field=READ_HEADER.lower(),
            )
        raise AccessDenied(
            f"{which}: {address} is neither its owner nor a member, so may not"
            f" {what} it; the owner adds members with `ledgerlm datanet add-member`",
            field="datanet",
        )

    def may_read(self, name: str, address: str | None) -> bool:
        """Whether `address` (None: an unsigned reader) may read the Datanet; the check without an error.

        A name no Datanet has (any more: a job or model may outlive the rows it came from) holds
        nothing to keep private."""
        with self.db.connect() as conn:
            try:
                row = self._row(conn, name)
            except UnknownDatanet:
                return True
            return self._may_use(conn, row, address)

    def require_reader(self, name: str, address: str | None) -> None:
        """Refuse, without naming the Datanet, one who asked by id for something of a Datanet they may not read."""
        if not self.may_read(name, address):
            self.require_access(name, address, named=False)

    def require_access(self, name: str, address: str | None, what: str = "read", *, named: bool = True) -> None:
        """The check the API and the other rooms use before handing out a Datanet's data (`named`: `_require`)."""
        with self.db.connect() as conn:
            self._require(conn, self._row(conn, name), address, what, named)

    def require_contribution_access(self, contribution_id: int, address: str | None) -> None:
        with self.db.connect() as conn:
            target = self.contribution_owner(conn, contribution_id)
            self._require(conn, self._row(conn, target["datanet"]), address, "read", named=False)

    def members(self, name: str, reader: str | None) -> list[str]:
        with self.db.connect() as conn:
            row = self._row(conn, name)
            self._require(conn, row, reader, "read")
            return list(
                conn.execute(
                    select(datanet_members.c.member)
                    .where(datanet_members.c.datanet_id == row["id"])
                    .order_by(datanet_members.c.created_at, datanet_members.c.member)
                ).scalars()
            )

    def _signed_for(self, name: str, signed: SignedAction, action: str) -> str:
        """Verify an owner's signed action about Datanet `name`; returns the signer."""
        signer = self._verify(signed, action)
        if signed.message["datanet"] != name:
            raise AuthError(f"the signature is for Datanet {signed.message['datanet']!r}, not {name!r}", field="datanet")
        return signer

    def _owned_row(self, conn, name: str, signer: str, may: str):
        """The Datanet's row, refused unless `signer` owns it (`may`: what only the owner may do)."""
        row = self._row(conn, name, lock=True)  # called in write transactions that depend on the row
        if row["owner"] != signer:
            raise AccessDenied(f"only the owner of {name!r} ({row['owner']}) may {may}", field="owner")
        return row

    def change_member(self, name: str, signed: SignedAction) -> list[str]:
        """Apply the owner's signed AddMember or RemoveMember; returns the members afterwards."""
        if signed.action not in ("AddMember", "RemoveMember"):
            raise AuthError(f"expected a signed AddMember or RemoveMember, got {signed.action!r}", field="action")
        owner = self._signed_for(name, signed, signed.action)
        member = to_checksum_address(signed.message["member"])
        now = int(time.time())
        with self.db.begin() as conn:
            row = self._owned_row(conn, name, owner, "change its members")
            if row["visibility"] != PRIVATE:
                raise DatanetError(f"Datanet {name!r} is public: everyone may use it, so it has no members",
                                   field="datanet")
            if member == owner:
                raise DatanetError("the owner is always a member", field="member")
            present = self._may_use(conn, row, member)
            if signed.action == "AddMember" and present:
                raise ConflictError(f"{member} is already a member of {name!r}", field="member")
            if signed.action == "RemoveMember" and not present:
                raise ConflictError(f"{member} is not a member of {name!r}", field="member")
            action_id = self._record_action(conn, signed, owner, now)
            if signed.action == "AddMember":
                conn.execute(insert(datanet_members).values(
                    datanet_id=row["id"], member=member, action_id=action_id, created_at=now))
            else:
                conn.execute(delete(datanet_members).where(
                    and_(datanet_members.c.datanet_id == row["id"], datanet_members.c.member == member)))
        return self.members(name, owner)

    def set_access_price(self, name: str, signed: SignedAction) -> dict:
        """Apply the owner's signed SetAccessPrice: what a member pays to train on, or export, a version (0: every
        version without a price of its own); a price of 0 makes it free again."""
        owner = self._signed_for(name, signed, "SetAccessPrice")
        m = signed.message
        version, price = int(m["version"]), int(m["price"])
        if version >= 2**63:
            raise DatanetError(f"version must be 0 (every version) or a version number, not {version}",
                               field="version")
        now = int(time.time())
        with self.db.begin() as conn:
            row = self._owned_row(conn, name, owner, "price it")
            if version:
                # looked up only for the owner: to anyone else, which versions exist is none of their business
                self.version(name, version)  # an unknown version is refused, not priced
            if row["visibility"] != PRIVATE:
                raise DatanetError(f"Datanet {name!r} is public: anyone may train on it, so it has no price",
                                   field="datanet")
            action_id = self._record_action(conn, signed, owner, now)
            conn.execute(delete(access_prices).where(and_(access_prices.c.datanet_id == row["id"],
                                                          access_prices.c.version == version)))
            conn.execute(insert(access_prices).values(datanet_id=row["id"], version=version, price=str(price),
                                                      action_id=action_id, created_at=now))
        return self.access_prices(name, owner)

    def set_owner_share(self, name: str, signed: SignedAction) -> int:
        """Apply the owner's signed SetOwnerShare: the basis points of the Datanet's revenue shares the owner
        keeps when they are issued (the rest go to contributors by data valuation); returns it."""
        owner = self._signed_for(name, signed, "SetOwnerShare")
        bps = int(signed.message["ownerBps"])
        if not 0 <= bps <= BPS:
            raise DatanetError(f"ownerBps must be in [0, {BPS}] basis points, not {bps}", field="ownerBps")
        now = int(time.time())
        with self.db.begin() as conn:
            row = self._owned_row(conn, name, owner, "set its owner share")
            current = row["owner_share_bps"] or 0
            # Others contributed under the share the policy named then: the owner may lower it, never raise it.
            if bps > current and conn.execute(select(contributions.c.id).where(and_(
                    contributions.c.datanet_id == row["id"], contributions.c.contributor != owner)).limit(1)).first():
                raise ConflictError(f"others have contributed to {name!r} under an owner share of {current} bps: "
                                    f"it may be lowered, not raised to {bps}", field="ownerBps")
            self._record_action(conn, signed, owner, now)
            conn.execute(update(datanets).where(datanets.c.id == row["id"]).values(owner_share_bps=bps))
        return bps

    def access_prices(self, name: str, reader: str | None) -> dict:
        """The Datanet's prices to train on: the default (version 0) and per version, in base units."""
        with self.db.connect() as conn:
            row = self._row(conn, name)
            self._require(conn, row, reader, "read")
            rows = conn.execute(select(access_prices.c.version, access_prices.c.price)
                                .where(access_prices.c.datanet_id == row["id"]).order_by(access_prices.c.version))
            prices = {int(v): p for v, p in rows}
        return {"datanet": name, "default": prices.pop(0, "0"), "versions": {str(k): v for k, v in prices.items()}}

    def access_price(self, name: str, version: int, address: str | None) -> int:
        """What `address` must pay to train on the version: 0 for its owner and for public Datanets."""
        with self.db.connect() as conn:
            row = self._row(conn, name)
            if row["visibility"] != PRIVATE or address == row["owner"]:
                return 0
            prices = dict(conn.execute(select(access_prices.c.version, access_prices.c.price).where(and_(
                access_prices.c.datanet_id == row["id"], access_prices.c.version.in_((0, version))))).all())
        return int(prices.get(version, prices.get(0, "0")))

    def readable_names(self, conn, address: str | None,
                       shows_private: Callable[[str], bool] | None = None, *, query: str = "") -> list[str]:
        """Names of the Datanets `address` may see (of the private ones, only those `shows_private`
        says yes to, when given), in creation order; with `query`, only those whose name, description, tags or
        licence hold every one of its words."""
        words = query.lower().split()
        # the columns these checks read, not each Datanet's schema (up to 64 KiB) for every listing
        columns = [datanets.c.id, datanets.c.name, datanets.c.owner, datanets.c.visibility]
        if words:
            columns += [datanets.c.description, datanets.c.tags, datanets.c.licence]
        names = []
        for row in conn.execute(select(*columns).order_by(datanets.c.id)).mappings():
            if words:
                text = " ".join([row["name"], row["description"] or "", " ".join(row["tags"] or []),
                                 row["licence"] or ""]).lower()
                if not all(w in text for w in words):
                    continue
            if (self._may_use(conn, row, address) and (shows_private is None or row["visibility"] != "private"
                                                        or shows_private(row["name"]))):
                names.append(row["name"])
        return names
