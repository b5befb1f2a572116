"""Per-key request rate (a token bucket) and concurrency cap, enforced before a call is queued."""

from __future__ import annotations

import threading
import time

from ledgerlm.serving.errors import RateLimitError

# Buckets kept before idle ones are swept: keyless calls are limited per client address, and an
# address seen once must not hold memory for good (an IPv6 client has addresses to spare).
SWEEP_AT = 4096


class KeyLimits:
    def __init__(self, *, requests_per_minute: int, max_concurrent: int):
        self.rate = requests_per_minute / 60.0
        self.burst = max(1, requests_per_minute)
        self.max_concurrent = max_concurrent
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, last refill time)
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()
        self._sweep_at = SWEEP_AT

    def acquire(self, key: str, who: str = "this key") -> None:
        """Admit one call on `key` (`who` names it in the refusal), or raise 429 naming the limit it hit."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if self._running.get(key, 0) >= self.max_concurrent:
                raise RateLimitError(f"{who} already has {self.max_concurrent} calls running, the most allowed "
                                     "at once; wait for one to finish", field="authorization")
            if tokens < 1.0:
                wait = (1.0 - tokens) / self.rate
                raise RateLimitError(f"rate limit of {self.burst} requests per minute reached; retry in "
                                     f"{wait:.1f}s" + ("" if who == "this key" else f" ({who})"), field="authorization")
            self._buckets[key] = (tokens - 1.0, now)
            self._running[key] = self._running.get(key, 0) + 1
            if len(self._buckets) >= self._sweep_at:
                self._sweep(now)

    def release(self, key: str) -> None:
        with self._lock:
            self._running[key] -= 1
            if not self._running[key]:
                del self._running[key]

    def __len__(self) -> int:
        """Keys whose bucket is kept."""
        return len(self._buckets)

    def _sweep(self, now: float) -> None:
        """Forget the buckets that have refilled with no call running: a full bucket is what an unseen key gets.
        The next sweep waits until the kept buckets double, so sweeping costs O(1) per call."""
        refill = self.burst / self.rate
        for key in [k for k, (_, last) in self._buckets.items() if now - last >= refill and k not in self._running]:
            del self._buckets[key]
        self._sweep_at = max(SWEEP_AT, 2 * len(self._buckets))
