"""Per-key limits: a burst beyond the rate and calls beyond the concurrency cap get 429 naming the limit."""

import pytest

from ledgerlm.serving import RateLimitError
from ledgerlm.serving.limits import KeyLimits


def test_a_key_over_its_concurrency_cap_waits_for_a_running_call():
    limits = KeyLimits(requests_per_minute=100, max_concurrent=2)
    limits.acquire("k")
    limits.acquire("k")
    with pytest.raises(RateLimitError, match="2 calls running"):
        limits.acquire("k")
    limits.acquire("other")  # keys do not share limits
    limits.release("k")
    limits.acquire("k")


def test_a_key_over_its_rate_is_told_when_to_retry():
    limits = KeyLimits(requests_per_minute=3, max_concurrent=10)
    for _ in range(3):
        limits.acquire("k")
        limits.release("k")
    with pytest.raises(RateLimitError, match=r"3 requests per minute reached; retry in \d+\.\ds"):
        limits.acquire("k")


def test_keys_seen_once_are_forgotten_once_their_bucket_refills(monkeypatch):
    """Keyless calls are limited per client address: an address seen once holds no memory for good."""
    from ledgerlm import buckets as module

    clock = [1000.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: clock[0])
    limits = KeyLimits(requests_per_minute=60, max_concurrent=2)
    limits.acquire("busy")  # still running: kept
    for i in range(3 * module.SWEEP_AT):
        limits.acquire(f"client {i}")
        limits.release(f"client {i}")
        clock[0] += 0.1  # a minute refills a bucket: 600 calls later an address is forgotten
    assert len(limits) < module.SWEEP_AT
    limits.acquire("busy")  # its running call was kept through the sweeps: this is its second
    with pytest.raises(RateLimitError, match="2 calls running"):
        limits.acquire("busy")
