"""Times as people read them: ISO 8601 UTC with the time left or gone."""

from datetime import datetime

from ledgerlm.times import duration, format_time, iso

T = 1_796_163_020  # 2026-12-01T22:10:20Z


def test_iso_8601_utc_parses_back_to_the_same_second():
    assert iso(T) == "2026-12-01T22:10:20Z"
    assert datetime.fromisoformat(iso(T)).timestamp() == T


def test_time_left_and_time_gone():
    assert format_time(T, now=T - 44) == "2026-12-01T22:10:20Z (in 44 s)"
    assert format_time(T, now=T + 185) == "2026-12-01T22:10:20Z (3 min 5 s ago)"
    assert format_time(T, now=T) == "2026-12-01T22:10:20Z (now)"


def test_durations_show_their_two_largest_units():
    assert [duration(s) for s in (0, 59, 60, 3_660, 7 * 86_400, 7 * 86_400 + 3_600, 86_460)] == [
        "0 s", "59 s", "1 min", "1 h 1 min", "7 d", "7 d 1 h", "1 d"]
