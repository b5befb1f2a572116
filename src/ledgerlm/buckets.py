"""Token buckets per key: a burst at once, then a steady rate, with keys forgotten once their bucket is full again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Buckets kept before full ones are swept: a key seen once (a client address, a fresh consumer) must
# not hold memory for good, and the sweep waits until the kept buckets double, so it costs O(1) a take.
SWEEP_AT = 4096


class TokenBuckets:
    def __init__(self, *, burst: int, per_second: float):
        self.burst = float(max(1, burst))
        self.per_second = per_second
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)
        self._lock = threading.Lock()
        self._sweep_at = SWEEP_AT

    def take(self, key: str) -> float:
        """Take one token of `key`'s bucket and return 0.0, or take nothing and return the seconds until
        one is there."""
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.per_second)
            if tokens < 1.0:
                return (1.0 - tokens) / self.per_second
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) >= self._sweep_at:
                refill = self.burst / self.per_second  # a full bucket is what an unseen key gets
                for k in [k for k, (_, t) in self._buckets.items() if now - t >= refill]:
                    del self._buckets[k]
                self._sweep_at = max(SWEEP_AT, 2 * len(self._buckets))
            return 0.0

    def give_back(self, key: str) -> None:
        """Return a token taken for an action that then did not happen."""
        with self._lock:
            if key in self._buckets:
                tokens, then = self._buckets[key]
                self._buckets[key] = (min(self.burst, tokens + 1.0), then)

    def __len__(self) -> int:
        """Keys whose bucket is kept."""
        return len(self._buckets)


def hourly(per_hour: int) -> TokenBuckets:
    """Buckets of `per_hour` tokens, refilled over an hour."""
    return TokenBuckets(burst=per_hour, per_second=per_hour / 3600)


class KeyedLimit:
    """One bucket per key and one for every key together: what the node does for others and pays for (gas), so
    fresh keys, which cost nothing, cannot make it pay without end."""

    ALL = "*"

    def __init__(self, each: TokenBuckets, together: TokenBuckets):
        self.each, self.together = each, together

    def take(self, key: str) -> tuple[str, float] | None:
        """Take a token for `key` from both: None, or (which is spent, "each" or "together", and the seconds until
        it is not) with nothing taken."""
        wait = self.each.take(key)
        if wait > 0:
            return "each", wait
        wait = self.together.take(self.ALL)
        if wait > 0:
            self.each.give_back(key)  # the hour spent is everyone's, not this key's
            return "together", wait
        return None

    def take_or_refuse(self, key: str, refusal: Callable[[str, int, int], Exception]) -> None:
        """Take a token for `key`, or raise `refusal(spent, burst, seconds)` with nothing taken: which is spent
        ("each" or "together"), that bucket's size, and the whole seconds until it is not."""
        refused = self.take(key)
        if refused is None:
            return
        spent, wait = refused
        raise refusal(spent, int((self.each if spent == "each" else self.together).burst), int(wait) + 1)

    def give_back(self, key: str) -> None:
        """Return both tokens of an action that then did not happen."""
        self.each.give_back(key)
        self.together.give_back(self.ALL)
