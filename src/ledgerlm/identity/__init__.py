"""Keys, EIP-712 typed data for every signed action, and verification."""

from ledgerlm.identity.actions import (
    ACTIONS,
    SignedAction,
    new_nonce,
    sign_action,
    typed_data,
    verify_action,
)
from ledgerlm.identity.domain import SigningDomain
from ledgerlm.identity.keys import KeyInfo, Keyring, KeyringError, passphrase_from_env

__all__ = [
    "ACTIONS",
    "KeyInfo",
    "Keyring",
    "KeyringError",
    "SignedAction",
    "SigningDomain",
    "new_nonce",
    "passphrase_from_env",
    "sign_action",
    "typed_data",
    "verify_action",
]
