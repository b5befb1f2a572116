"""Keys, EIP-712 typed data for every signed action, and verification."""

from ledgerlm.identity.actions import (
    ACTIONS,
    SignedAction,
    action_message,
    check_field,
    new_nonce,
    sign_action,
    typed_data,
    verify_action,
)
from ledgerlm.identity.domain import SigningDomain
from ledgerlm.identity.keys import KeyInfo, Keyring, KeyringError, passphrase_from_env
from ledgerlm.identity.reads import (
    ANY_DATANET,
    READ_HEADER,
    ReadGrant,
    read_request,
    sign_read_request,
    verify_read_request,
)

__all__ = [
    "ANY_DATANET",
    "READ_HEADER",
    "ReadGrant",
    "read_request",
    "sign_read_request",
    "verify_read_request",
    "ACTIONS",
    "KeyInfo",
    "Keyring",
    "KeyringError",
    "SignedAction",
    "action_message",
    "check_field",
    "SigningDomain",
    "new_nonce",
    "passphrase_from_env",
    "sign_action",
    "typed_data",
    "verify_action",
]
