"""Integer money math shared by every room: one largest-remainder splitter, so every split conserves its total."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

BPS = 10_000  # basis points in a whole


class SplitError(ValueError):
    """An amount or a set of weights that cannot be split."""

    def __init__(self, message: str, field: str = "weights"):
        super().__init__(message)
        self.field = field


def _tie_key(key: Hashable) -> tuple:
    # Addresses compare case-insensitively so a checksummed and a lower-case address break ties alike.
    if isinstance(key, str):
        return (key.lower(), key)
    if isinstance(key, tuple):
        return tuple(_tie_key(k) for k in key)
    return (key,)


def split_by_weight(total: int, weights: Mapping[Hashable, int]) -> dict:
    """Split an integer total in proportion to non-negative integer weights, summing exactly to the total.

    Hamilton's largest-remainder method: each key gets floor(total * w / W); the units left over go
    one each to the largest remainders, ties to the smaller key (strings compared lower-cased).
    Zero-weight keys get nothing and are left out. Raises SplitError when every weight is zero.
    """
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise SplitError("the amount to split must be a non-negative integer", field="total")
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 0 for w in weights.values()):
        raise SplitError("weights must be non-negative integers")
    whole = sum(weights.values())
    if whole == 0:
        raise SplitError("nobody has a positive weight to share the amount")
    shares = {k: total * w // whole for k, w in weights.items() if w > 0}
    left = total - sum(shares.values())
    by_remainder = sorted(shares, key=lambda k: (-(total * weights[k] % whole), _tie_key(k)))
    for k in by_remainder[:left]:
        shares[k] += 1
    return shares
