"""Token amounts: integers in base units (18 decimals) in, exact decimal strings out."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from ledgerlm.errors import LedgerError

DECIMALS = 18
UNIT = 10**DECIMALS
# every amount ends up in a uint256 on chain
MAX_BASE_UNITS = 2**256 - 1


def parse_amount(text: str, *, field: str = "amount", decimals: int = DECIMALS) -> int:
    """"1.5" -> 1500000000000000000; refuses negatives, NaN, more than `decimals` places and more than a uint256.

    Exact for any number of digits: Decimal arithmetic would round to its context's 28 significant digits, and
    ten billion tokens with 18 decimals already have 29.
    """
    try:
        value = Decimal(str(text).strip().replace("_", ""))
    except InvalidOperation:
        raise LedgerError(f"{field} {text!r} is not a number", field=field) from None
    if not value.is_finite() or value < 0:
        raise LedgerError(f"{field} must be a non-negative number, got {text!r}", field=field)
    shown = repr(text) if len(str(text)) <= 40 else repr(str(text)[:40]) + "..."
    _, digits, exponent = value.as_tuple()
    digits, exponent = list(digits), int(exponent)
    while digits and digits[-1] == 0:  # "1.000...0": trailing zeros say nothing, however many there are
        digits.pop()
        exponent += 1
    while digits and digits[0] == 0:
        digits.pop(0)
    if not digits:
        return 0
    shift = exponent + decimals
    if len(digits) > len(str(MAX_BASE_UNITS)) + decimals:  # more digits than any amount holds: too large or too fine
        raise LedgerError(f"{field} {shown} has more digits than any amount on chain", field=field)
    number = int("".join(map(str, digits)))
    if len(str(number)) + shift > len(str(MAX_BASE_UNITS)):  # checked before any power of ten is made
        raise LedgerError(f"{field} {shown} is too large: an amount on chain is at most 2**256 - 1 base units",
                          field=field)
    if shift < 0:
        if -shift > len(str(number)) or number % 10**-shift:
            raise LedgerError(f"{field} {shown} has more than {decimals} decimal places", field=field)
        base_units = number // 10**-shift
    else:
        base_units = number * 10**shift
    if base_units > MAX_BASE_UNITS:
        raise LedgerError(f"{field} {shown} is too large: an amount on chain is at most 2**256 - 1 base units",
                          field=field)
    return base_units


def parse_positive_amount(text: str, *, field: str = "amount", decimals: int = DECIMALS) -> int:
    """`parse_amount`, refusing zero: staking, depositing or sending nothing only spends gas."""
    base_units = parse_amount(text, field=field, decimals=decimals)
    if base_units == 0:
        raise LedgerError(f"{field} must be more than 0", field=field)
    return base_units


def format_amount(base_units: int, *, decimals: int = DECIMALS) -> str:
    sign = "-" if base_units < 0 else ""
    whole, frac = divmod(abs(int(base_units)), 10**decimals)
    text = f"{whole:,}"
    if frac:
        text += "." + f"{frac:0{decimals}d}".rstrip("0")
    return sign + text
