"""Contract errors a person meets, in words: which field of their request it concerns and why, with amounts in
LGR, times in ISO 8601 with the time left and epochs by number (the revert itself stays in the message)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def _lgr(value: Any) -> str:
    from ledgerlm.units import format_amount

    return f"{format_amount(int(value))} LGR"


def _when(value: Any) -> str:
    from ledgerlm.times import format_time

    return format_time(int(value))


def _epoch(value: Any) -> str:
    number = int(value)
    return f"epoch {number & (2**64 - 1)}" if number >> 64 else f"epoch {number}"  # node << 64 | number


# error name -> (field, words from its arguments)
_EXPLAINED: dict[str, tuple[str, Callable[[Mapping[str, Any]], str]]] = {
    "CooldownNotElapsed": ("role", lambda a: f"the stake is still cooling down: it may be withdrawn from "
                                             f"{_when(a['releaseAt'])}"),
    "ERC20InsufficientBalance": ("amount", lambda a: f"{a['sender']} holds {_lgr(a['balance'])}, less than the "
                                                     f"{_lgr(a['needed'])} asked for"),
    "ERC20InsufficientAllowance": ("amount", lambda a: f"the allowance given to {a['spender']} is "
                                                       f"{_lgr(a['allowance'])}, less than the {_lgr(a['needed'])} "
                                                       "asked for (approve it first)"),
    "ClaimWindowOpen": ("epoch", lambda a: f"{_epoch(a['epoch'])}'s claim window is still open: it may be swept "
                                           f"from {_when(a['sweepableAt'])}"),
    "UnknownSlash": ("slash", lambda a: f"no held slash {a['slashId']} (`ledgerlm balance ADDRESS` lists the "
                                        "slashes of a bond still held)"),
    "AccessControlUnauthorizedAccount": ("key", lambda a: f"{a['account']} does not hold the role this needs "
                                                          f"({a['neededRole']})"),
}


def explain(name: str | None, args: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(field, words) for a known contract error, or None."""
    known = _EXPLAINED.get(name or "")
    if known is None:
        return None
    field, words = known
    try:
        return field, words(args or {})
    except (KeyError, TypeError, ValueError):  # arguments of another shape: the revert speaks for itself
        return None
