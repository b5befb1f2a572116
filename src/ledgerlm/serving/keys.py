"""Consumer API keys: bearer tokens bound to an account and to the standing escrow spending cap it signed.

The consumer makes the key (`sk-lgr-` + 32 random bytes) on their own machine and signs two
messages: the PaymentEscrow `SpendingCap(consumer, settler, cap, nonce, deadline)` that lets this
node charge them up to `cap` per cap period until they lower or revoke it, and a `CreateApiKey`
action binding the key's sha256 to that cap. The node relays the cap to the escrow and stores only
the key's hash, so the key itself never crosses the wire until it is used.
"""

from __future__ import annotations

import hashlib
import time

from eth_utils import is_address, to_checksum_address
from pydantic import BaseModel
from sqlalchemy import insert, select, update

from ledgerlm.economy import open_epoch
from ledgerlm.economy.earnings import record_spending_cap
from ledgerlm.identity import SignedAction, SigningDomain, recover_signer, verify_action
from ledgerlm.serving.errors import ApiKeyError, ServingError
from ledgerlm.store import Database
from ledgerlm.store.actions import record_action
from ledgerlm.store.schema import api_keys

KEY_PREFIX = "sk-lgr-"


def new_api_key() -> str:
    import secrets

    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, the scheme in any case (RFC 9110); None
    without one. Consumer keys and the operator's token are read alike."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class ApiKey(BaseModel):
    """A stored key: never the secret, only its hash prefix and the cap it spends under."""

    id: int
    prefix: str
    consumer: str
    settler: str
    epoch: int  # open when the key was made
    cap: str
    nonce: int
    deadline: int
    signature: str
    created_at: int
    revoked_at: int | None = None


class ApiKeys:
    """Creates, authenticates, lists and revokes consumer keys."""

    def __init__(self, db: Database, *, domain: SigningDomain, settler: str, escrow=None, relayer=None, relays=None):
        self.db = db
        self.relays = relays  # economy.earnings.CapRelays: how many caps the node still relays per consumer
        self.domain = domain
        self.settler = to_checksum_address(settler)
        self.relayer = relayer  # the node's account: sends consumers' signed caps to the escrow
        self.escrow = escrow  # None when the node has no escrow contract (no chain): keys cannot be created

    def terms(self) -> dict:
        """What a consumer needs to sign a cap and a key for this node: settler, open epoch, escrow domain, and how
        long the period is that a cap bounds."""
        with self.db.begin() as conn:
            epoch = open_epoch(conn)
        typed = self._cap_typed_data(self.settler, self.settler, 0, 0, 0)
        return {"settler": self.settler, "epoch": epoch, "chain_id": self.domain.chain_id, "key_prefix": KEY_PREFIX,
                "spending_cap_domain": typed["domain"], "spending_cap_types": typed["types"],
                "cap_period_seconds": self.escrow.cap_period_seconds()}

    def create(self, signed: SignedAction, cap_signature: str) -> ApiKey:
        consumer = verify_action(signed, expected="CreateApiKey", domain=self.domain)
        m = signed.message
        cap, cap_nonce, cap_deadline = int(m["cap"]), int(m["capNonce"]), int(m["capDeadline"])
        if cap <= 0:
            raise ServingError("cap must be a positive amount in base units", field="cap")
        if cap_deadline <= int(time.time()):
            raise ServingError(f"the spending cap's deadline {cap_deadline} has passed", field="capDeadline")
        typed = self._cap_typed_data(consumer, self.settler, cap, cap_nonce, cap_deadline)
        signer = recover_signer(typed, cap_signature, what="the spending cap", field="cap_signature", error=ApiKeyError)
        if signer != consumer:
            raise ApiKeyError(f"the spending cap is not signed by {consumer} for settler {self.settler}, "
                              f"cap {cap}, nonce {cap_nonce}, deadline {cap_deadline}", field="cap_signature")
        # The cap lands on chain first; a crash before the key is stored leaves only a valid cap behind.
        record_spending_cap(self.db, self.escrow, self.relayer, consumer=consumer, settler=self.settler, cap=cap,
                            nonce=cap_nonce, deadline=cap_deadline, signature=cap_signature, relays=self.relays)
        now = int(time.time())
        with self.db.begin() as conn:
            epoch = open_epoch(conn)
            action_id = record_action(conn, signed, consumer, chain_id=self.domain.chain_id)
            digest = m["keyHash"].removeprefix("0x").lower()
            if conn.execute(select(api_keys.c.id).where(api_keys.c.key_sha256 == digest)).first():
                raise ServingError("this key is already registered; make a new one", field="keyHash", status=409)
            key_id = conn.execute(insert(api_keys).values(
                key_sha256=digest, prefix=digest[:12], consumer=consumer, settler=self.settler, epoch=epoch,
                cap=str(cap), nonce=cap_nonce, deadline=cap_deadline, signature=cap_signature, action_id=action_id,
                created_at=now, revoked_at=None,
            )).inserted_primary_key[0]
        return self.get(key_id)

    def revoke(self, signed: SignedAction) -> ApiKey:
        consumer = verify_action(signed, expected="RevokeApiKey", domain=self.domain)
        key = self.get(int(signed.message["keyId"]))
        if key.consumer != consumer:
            raise ApiKeyError(f"key {key.id} belongs to {key.consumer}, not {consumer}", field="keyId", status=403)
        with self.db.begin() as conn:
            record_action(conn, signed, consumer, chain_id=self.domain.chain_id)
            conn.execute(update(api_keys).where(api_keys.c.id == key.id).values(revoked_at=int(time.time())))
        return self.get(key.id)

    def authenticate(self, authorization: str | None) -> ApiKey | None:
        """The key behind an `Authorization: Bearer sk-lgr-...` header; None when no consumer key is given."""
        token = bearer(authorization)
        if token is None or not token.startswith(KEY_PREFIX):
            return None
        with self.db.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_sha256 == key_sha256(token))).mappings().first()
        if row is None:
            raise ApiKeyError("unknown API key; create one with `ledgerlm apikey create --as KEY`",
                              field="authorization")
        if row["revoked_at"] is not None:
            raise ApiKeyError(f"API key {row['prefix']}… was revoked", field="authorization")
        return ApiKey(**{k: row[k] for k in ApiKey.model_fields})

    def get(self, key_id: int) -> ApiKey:
        with self.db.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        if row is None:
            raise ServingError(f"no API key {key_id}", field="keyId", status=404)
        return ApiKey(**{k: row[k] for k in ApiKey.model_fields})

    def list(self, consumer: str | None = None) -> list[ApiKey]:
        query = select(api_keys).order_by(api_keys.c.id)
        if consumer:
            if not is_address(consumer):
                raise ServingError(f"consumer must be an address, got {consumer!r}", field="consumer")
            query = query.where(api_keys.c.consumer == to_checksum_address(consumer))
        with self.db.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [ApiKey(**{k: r[k] for k in ApiKey.model_fields}) for r in rows]

    def _cap_typed_data(self, consumer: str, settler: str, cap: int, nonce: int, deadline: int) -> dict:
        if self.escrow is None:
            raise ServingError("this node has no escrow contract: deploy the contracts first", field="chain",
                               status=409)
        return self.escrow.spending_cap_typed_data(consumer, settler, cap, nonce, deadline)
