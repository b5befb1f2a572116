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
# two addresses, a Datanet name (at most 64 characters), an expiry and a signature fit with room to spare
MAX_READ_HEADER_CHARS = 512


@dataclass(frozen=True)
class ReadGrant:
    """A verified read request: who is reading, and which Datanet it is for ("*": any)."""

    reader: str
    datanet: str
    expiry: int

    def covers(self, datanet: str) -> bool:
        return self.datanet in (ANY_DATANET, datanet)


def sign_read_request(
    account: LocalAccount, domain: SigningDomain, *, node: str, datanet: str = ANY_DATANET,
    ttl: int = DEFAULT_READ_TTL,
) -> str:
    """The header value for a ReadRequest to the node whose key is `node`: `reader:node:datanet:expiry:signature`."""
    typed, prefix = read_request(account.address, domain, node=node, datanet=datanet, ttl=ttl)
    signature = account.sign_message(encode_typed_data(full_message=typed))
    return f"{prefix}:0x{signature.signature.hex().removeprefix('0x')}"


def read_request(
    reader: str, domain: SigningDomain, *, node: str, datanet: str = ANY_DATANET, ttl: int = DEFAULT_READ_TTL,
) -> tuple[dict, str]:
    """What a reader signs (the ReadRequest typed data) and the header value before its signature."""
    message = {"reader": to_checksum_address(reader), "node": to_checksum_address(node), "datanet": datanet,
               "expiry": int(time.time()) + ttl}
    prefix = f"{message['reader']}:{message['node']}:{datanet}:{message['expiry']}"
    return typed_data("ReadRequest", message, domain), prefix


def verify_read_request(value: str, domain: SigningDomain, *, node: str, now: int | None = None) -> ReadGrant:
    """Check a read request header sent to the node whose key is `node`: shape, that it names this node, expiry
    (not past, at most 5 minutes ahead), signature."""
    field = READ_HEADER.lower()
    if len(value) > MAX_READ_HEADER_CHARS:
        raise AuthError(f"{READ_HEADER} is {len(value)} characters; a read request has at most {MAX_READ_HEADER_CHARS}",
                        field=field)
    parts = value.strip().split(":")
    if len(parts) != 5:
        raise AuthError(f"{READ_HEADER} must be reader:node:datanet:expiry:signature", field=field)
    reader, named_node, datanet, expiry_text, signature = parts
    if not is_address(reader):
        raise AuthError(f"{READ_HEADER}: reader {reader!r} is not an address", field=field)
    if not is_address(named_node):
        raise AuthError(f"{READ_HEADER}: node {named_node!r} is not an address", field=field)
    # a grant is good at the one node it names: another node it was sent to (or leaked from) cannot replay it here
    if to_checksum_address(named_node) != to_checksum_address(node):
        raise AuthError(
            f"{READ_HEADER} was signed for node {to_checksum_address(named_node)}, not this node"
            f" {to_checksum_address(node)}; sign it for the node you send it to",
            field=field,
        )
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
    message = {"reader": to_checksum_address(reader), "node": to_checksum_address(node), "datanet": datanet,
               "expiry": expiry}
    signer = recover_signer(typed_data("ReadRequest", message, domain), signature, what=READ_HEADER, field=field)
    if signer != message["reader"]:
        raise AuthError(
            f"{READ_HEADER} signature does not match reader {message['reader']} for this node"
            f" ({domain.describe()})",
            field=field,
        )
    return ReadGrant(signer, datanet, expiry)
