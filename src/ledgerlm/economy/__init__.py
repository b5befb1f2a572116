"""ledgerlm economy: fee policy, epochs, integer reward math and Merkle payout trees."""

from ledgerlm.economy.epochs import open_epoch
from ledgerlm.economy.errors import EconomyError
from ledgerlm.economy.fees import ROLES, FeeShares, Payout, price_fee, split_fee

__all__ = ["ROLES", "EconomyError", "FeeShares", "Payout", "open_epoch", "price_fee", "split_fee"]
