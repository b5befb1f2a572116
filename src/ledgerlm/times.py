"""Times as people read them: ISO 8601 in UTC with the time left or gone, never bare Unix seconds."""

from __future__ import annotations

import datetime as dt
import time

_UNITS = (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1))


def iso(ts: float) -> str:
    """A Unix time as ISO 8601 UTC to the second, e.g. 2026-12-01T22:30:20Z."""
    return dt.datetime.fromtimestamp(int(ts), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float) -> str:
    """A span in its two largest units: 44 s, 3 min 5 s, 2 h 5 min, 7 d."""
    left = int(round(abs(seconds)))
    parts = []
    for unit, size in _UNITS:
        if left >= size or (unit == "s" and not parts):
            count, left = divmod(left, size)
            parts.append(f"{count} {unit}")
        elif parts:
            parts.append(None)  # a skipped unit still counts as one of the two shown
        if len(parts) == 2:
            break
    return " ".join(p for p in parts if p)


def format_time(ts: float, now: float | None = None) -> str:
    """ISO 8601 with how far it is from now: "2026-12-01T22:30:20Z (in 44 s)" or "(3 min ago)"."""
    delta = int(ts) - int(time.time() if now is None else now)
    if delta == 0:
        return f"{iso(ts)} (now)"
    return f"{iso(ts)} (in {duration(delta)})" if delta > 0 else f"{iso(ts)} ({duration(delta)} ago)"
