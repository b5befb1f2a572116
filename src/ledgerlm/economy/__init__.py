"""ledgerlm economy: fee policy, epochs, integer reward math and Merkle payout trees.

The settlement names (closing an epoch, verification, the faucet) load on first use, so rooms that only
price and split fees do not import the chain clients. An account's earnings: `ledgerlm.economy.earnings.earnings`
(the module shares the function's name).
"""

from ledgerlm.economy.arrears import arrears_owed, owed_by
from ledgerlm.economy.consumers import lock_consumer
from ledgerlm.economy.epochs import current_epoch, list_epochs, open_epoch, show_epoch
from ledgerlm.economy.errors import EconomyError
from ledgerlm.economy.fees import ROLES, FeeShares, Payout, price_fee, split_fee
from ledgerlm.economy.spending import add_spent, held_by, paying_by, spent_by
from ledgerlm.lazy import lazy_names

_LAZY = {
    "AccessPayments": "access",
    "EpochCloser": "close", "published_files": "close",
    "record_spending_cap": "earnings",
    "Faucet": "faucet", "is_loopback": "faucet",
    "payout_tree": "payouts", "PAYOUT_TYPES": "payouts",
    "Shares": "shares", "ShareAsset": "shares",
    "verify_epoch": "verify",
    "change_fee_policy": "policy", "fee_policy_views": "policy", "fee_shares_in_force": "policy",
    "receipt_settlement": "settlements",
}

__all__ = [  # noqa: F822 - the settlement names resolve through __getattr__
    "PAYOUT_TYPES", "ROLES", "EconomyError", "EpochCloser", "Faucet", "FeeShares", "Payout",
    "add_spent", "arrears_owed", "change_fee_policy", "current_epoch", "fee_policy_views", "fee_shares_in_force",
    "held_by", "is_loopback",
    "list_epochs", "lock_consumer", "open_epoch", "owed_by", "paying_by", "payout_tree", "price_fee", "published_files",
    "receipt_settlement", "record_spending_cap", "show_epoch", "spent_by", "split_fee", "verify_epoch",
]

__getattr__ = lazy_names(__name__, _LAZY)
