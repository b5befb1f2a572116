"""Contract errors a person meets, in words: which field of their request it concerns and why, with amounts in
LGR, times in ISO 8601 with the time left and epochs by number (the revert itself stays in the message)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ledgerlm.times import format_time
from ledgerlm.units import format_amount


def _amount(value: Any, unit: str) -> str:
    return f"{format_amount(int(value))} {unit}"


def _when(value: Any) -> str:
    return format_time(int(value))


def _epoch(value: Any) -> str:
    number = int(value)
    return f"epoch {number & (2**64 - 1)}" if number >> 64 else f"epoch {number}"  # node << 64 | number


# error name -> (field, words from its arguments and the unit of the token that raised it)
_EXPLAINED: dict[str, tuple[str, Callable[[Mapping[str, Any], str], str]]] = {
    "CooldownNotElapsed": ("role", lambda a, u: f"the stake is still cooling down: it may be withdrawn from "
                                                f"{_when(a['releaseAt'])}"),
    "ERC20InsufficientBalance": ("amount", lambda a, u: f"{a['sender']} holds {_amount(a['balance'], u)}, less "
                                                        f"than the {_amount(a['needed'], u)} asked for"),
    "ERC20InsufficientAllowance": ("amount", lambda a, u: f"the allowance given to {a['spender']} is "
                                                          f"{_amount(a['allowance'], u)}, less than the "
                                                          f"{_amount(a['needed'], u)} asked for (approve it first)"),
    "ClaimWindowOpen": ("epoch", lambda a, u: f"{_epoch(a['epoch'])}'s claim window is still open: it may be "
                                              f"swept from {_when(a['sweepableAt'])}"),
    "UnknownSlash": ("slash", lambda a, u: f"no held slash {a['slashId']} (`ledgerlm balance ADDRESS` lists the "
                                           "slashes of a bond still held)"),
    "AccessControlUnauthorizedAccount": ("key", lambda a, u: f"{a['account']} does not hold the role this needs "
                                                             f"({a['neededRole']})"),
}


def explain(name: str | None, args: Mapping[str, Any] | None, target: str = "") -> tuple[str, str] | None:
    """(field, words) for a known contract error raised by `target` ("Contract.function"), or None."""
    known = _EXPLAINED.get(name or "")
    if known is None:
        return None
    field, words = known
    # ERC-20 errors come from LGR (directly, or through the contracts that move it) and from share tokens alike; a
    # contract the chain does not name (a share token made by the factory) gets plain base units
    unit = ("shares" if target.startswith("RevenueShare") else
            "base units" if target in ("", "transaction") else "LGR")
    try:
        return field, words(args or {}, unit)
    except (KeyError, TypeError, ValueError):  # arguments of another shape: the revert speaks for itself
        return None
