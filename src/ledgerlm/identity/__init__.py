"""Keys, EIP-712 typed data for every signed action, and verification.

Each name loads its module on first use, so a command that signs nothing never imports eth-account.
"""

from ledgerlm.lazy import lazy_names

_LAZY = {
    "ACTIONS": "actions", "SignedAction": "actions", "action_message": "actions", "check_field": "actions",
    "new_nonce": "actions", "recover_signer": "actions", "sign_action": "actions", "typed_data": "actions",
    "verify_action": "actions",
    "SigningDomain": "domain",
    "KeyInfo": "keys", "Keyring": "keys", "KeyringError": "keys", "passphrase_from_env": "keys",
    "ANY_DATANET": "reads", "READ_HEADER": "reads", "ReadGrant": "reads", "read_request": "reads",
    "sign_read_request": "reads", "verify_read_request": "reads",
}

__all__ = sorted(_LAZY)  # noqa: PLE0605 - the names resolve through __getattr__

__getattr__ = lazy_names(__name__, _LAZY)
