"""Token amounts: integers in base units (18 decimals) in, exact decimal strings out."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from ledgerlm.errors import LedgerError

DECIMALS = 18
UNIT = 10**DECIMALS


def parse_amount(text: str, *, field: str = "amount", decimals: int = DECIMALS) -> int:
    """"1.5" -> 1500000000000000000; refuses negatives, NaN and more than `decimals` places."""
    try:
        value = Decimal(str(text).strip().replace("_", ""))
    except InvalidOperation:
        raise LedgerError(f"{field} {text!r} is not a number", field=field) from None
    if not value.is_finite() or value < 0:
        raise LedgerError(f"{field} must be a non-negative number, got {text!r}", field=field)
    scaled = value.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise LedgerError(f"{field} {text!r} has more than {decimals} decimal places", field=field)
    return int(scaled)


def format_amount(base_units: int, *, decimals: int = DECIMALS) -> str:
    sign = "-" if base_units < 0 else ""
    whole, frac = divmod(abs(int(base_units)), 10**decimals)
    text = f"{whole:,}"
    if frac:
        text += "." + f"{frac:0{decimals}d}".rstrip("0")
    return sign + text
