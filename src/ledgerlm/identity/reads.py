"""Signed read requests: how a reader proves who they are to read a private Datanet, without a login."""

from __future__ import annotations

import time
from dataclasses import dataclass

from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address

from ledgerlm.errors import AuthError
from ledgerlm.identity.actions import recover_signer, typed_data
from ledgerlm.identity.domain import SigningDomain

READ_HEADER = "X-Ledgerlm-Read"
ANY_DATANET = "*"
# Read requests carry no nonce (reads change nothing), so a short life is what bounds a leaked one.
MAX_READ_TTL = 300
DEFAULT_READ_TTL = 120
MAX_EXPIRY_DIGITS = 20  # a unix time in seconds has 10 digits for centuries yet


@dataclass(frozen=True)
class ReadGrant:
    """A verified read request: who is reading, and which Datanet it is for ("*": any)."""

    reader: str
    datanet: str
    expiry: int

    def covers(self, datanet: str) -> bool:
        return self.datanet in (ANY_DATANET, datanet)


def sign_read_request(
    account: LocalAccount, domain: SigningDomain, *, datanet: str = ANY_DATANET, ttl: int = DEFAULT_READ_TTL,
) -> str:
    """The header value for a ReadRequest: `reader:datanet:expiry:signature`."""
    typed, prefix = read_request(account.address, domain, datanet=datanet, ttl=ttl)
    signature = account.sign_message(encode_typed_data(full_message=typed))
    return f"{prefix}:0x{signature.signature.hex().removeprefix('0x')}"


def read_request(
    reader: str, domain: SigningDomain, *, datanet: str = ANY_DATANET, ttl: int = DEFAULT_READ_TTL,
) -> tuple[dict, str]:
    """What a reader signs (the ReadRequest typed data) and the header value before its signature."""
    message = {"reader": to_checksum_address(reader), "datanet": datanet, "expiry": int(time.time()) + ttl}
    return typed_data("ReadRequest", message, domain), f"{message['reader']}:{datanet}:{message['expiry']}"


def verify_read_request(value: str, domain: SigningDomain, *, now: int | None = None) -> ReadGrant:
    """Check a read request header: shape, expiry (not past, at most 5 minutes ahead), signature."""
    field = READ_HEADER.lower()
    parts = value.strip().split(":")
    if len(parts) != 4:
        raise AuthError(f"{READ_HEADER} must be reader:datanet:expiry:signature", field=field)
    reader, datanet, expiry_text, signature = parts
    if not is_address(reader):
        raise AuthError(f"{READ_HEADER}: reader {reader!r} is not an address", field=field)
    # ASCII digits of a plausible length: int() reads other Unicode digits, and refuses past 4,300 digits
    if not (expiry_text.isascii() and expiry_text.isdigit()) or len(expiry_text) > MAX_EXPIRY_DIGITS:
        raise AuthError(f"{READ_HEADER}: expiry {expiry_text[:40]!r} is not a unix time", field=field)
    expiry = int(expiry_text)
    now = int(time.time()) if now is None else now
    if expiry < now:
        raise AuthError(f"{READ_HEADER} expired {now - expiry} s ago; sign a fresh one", field=field)
    if expiry > now + MAX_READ_TTL:
        raise AuthError(
            f"{READ_HEADER} expires {expiry - now} s from now; read requests may live at most {MAX_READ_TTL} s",
            field=field,
        )
    message = {"reader": to_checksum_address(reader), "datanet": datanet, "expiry": expiry}
    signer = recover_signer(typed_data("ReadRequest", message, domain), signature, what=READ_HEADER, field=field)
    if signer != message["reader"]:
        raise AuthError(
            f"{READ_HEADER} signature does not match reader {message['reader']} for this node"
            f" ({domain.describe()})",
            field=field,
        )
    return ReadGrant(signer, datanet, expiry)
