"""Per-key request rate (a token bucket) and concurrency cap, enforced before a call is queued."""

from __future__ import annotations

import math
import threading

from ledgerlm.buckets import TokenBuckets
from ledgerlm.serving.errors import RateLimitError


class KeyLimits:
    """Per key: requests_per_minute at once, refilled over a minute (keyless calls are keyed by client
    address, which buckets.TokenBuckets forgets once refilled), and at most max_concurrent running."""

    def __init__(self, *, requests_per_minute: int, max_concurrent: int):
        self.rate = TokenBuckets(burst=requests_per_minute, per_second=requests_per_minute / 60.0)
        self.burst = int(self.rate.burst)
        self.max_concurrent = max_concurrent
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, who: str = "this key") -> None:
        """Admit one call on `key` (`who` names it in the refusal), or raise 429 naming the limit it hit."""
        with self._lock:
            if self._running.get(key, 0) >= self.max_concurrent:
                # an OpenAI client retries after Retry-After: a call ends soon enough
                raise RateLimitError(f"{who} already has {self.max_concurrent} calls running, the most allowed "
                                     "at once; wait for one to finish", field="authorization", retry_after=1)
            wait = self.rate.take(key)
            if wait > 0:
                raise RateLimitError(f"rate limit of {self.burst} requests per minute reached; retry in "
                                     f"{wait:.1f}s" + ("" if who == "this key" else f" ({who})"),
                                     field="authorization",
                                     retry_after=max(1, math.ceil(wait)))  # whole seconds, as the header takes them
            self._running[key] = self._running.get(key, 0) + 1

    def release(self, key: str) -> None:
        with self._lock:
            self._running[key] -= 1
            if not self._running[key]:
                del self._running[key]

    def __len__(self) -> int:
        """Keys whose bucket is kept."""
        return len(self.rate)
