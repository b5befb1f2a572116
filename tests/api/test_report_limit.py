"""A compute provider's training report, checkpoints inline, may be larger than other bodies, but only for a job
that waits for its report: anyone can send a body before its signature is read."""

from __future__ import annotations

import json


def test_a_report_for_no_open_job_gets_the_general_limit(client):
    body = json.dumps({"action": {}, "result": {}, "files": {"x": "A" * (6 * 1024 * 1024)}})
    answer = client.http.post("/providers/jobs/999/report", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 413 and str(4 * 1024 * 1024) in answer.text


def _report_scope(job: int) -> dict:
    from types import SimpleNamespace

    open_job = SimpleNamespace(state="accepted", payment_state="paid")
    node = SimpleNamespace(providers=SimpleNamespace(job=lambda _id: open_job))
    return {"type": "http", "method": "POST", "path": f"/providers/jobs/{job}/report",
            "headers": [(b"content-type", b"application/json")],
            "app": SimpleNamespace(state=SimpleNamespace(node=node))}


async def _read_all(scope, receive, send):
    """A route that reads its whole body, then answers."""
    while (await receive()).get("more_body", False):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _body(chunks: list[bytes], pause: float = 0.0):
    """A client sending `chunks`, `pause` seconds apart, then waiting without end."""
    import asyncio

    sent = iter(chunks)

    async def receive():
        chunk = next(sent, None)
        if chunk is None:
            await asyncio.sleep(3600)
        await asyncio.sleep(pause)
        return {"type": "http.request", "body": chunk, "more_body": True}

    return receive


async def _ignore(message):
    pass


def test_a_report_that_trickles_in_past_the_general_limit_loses_its_reading_slot(monkeypatch):
    """Anyone may send a body before its signature is read: one that passes the general limit and then trickles
    would hold the job's reading slot (and with it the provider's report) for the whole body timeout."""
    import asyncio

    import pytest

    from ledgerlm.api import limits
    from ledgerlm.api.limits import BodyLimit, BodyTooSlow

    monkeypatch.setattr(limits, "REPORT_RATE_GRACE_SECONDS", 0.05)
    limit = BodyLimit(_read_all, max_bytes=10, body_seconds=60, report_rate=1000)

    async def run():
        started = asyncio.get_running_loop().time()
        with pytest.raises(BodyTooSlow, match="slower than"):
            await limit(_report_scope(7), _body([b"x" * 11, b"x"]), _ignore)
        return asyncio.get_running_loop().time() - started

    assert asyncio.run(run()) < 5  # cut off at the rate, not at the 60 s body timeout
    assert limit._reading == set()  # and the slot is free again


def test_a_job_s_report_past_the_general_limit_is_read_one_at_a_time_without_holding_other_jobs(monkeypatch):
    import asyncio

    import pytest

    from ledgerlm.api import limits
    from ledgerlm.api.limits import BodyLimit, ReportBusy

    monkeypatch.setattr(limits, "REPORT_READERS", 2)
    limit = BodyLimit(_read_all, max_bytes=10, body_seconds=60, report_rate=10**9)

    async def run():
        holder = asyncio.create_task(limit(_report_scope(7), _body([b"x" * 11]), _ignore))
        await asyncio.sleep(0.05)  # job 7's slot is taken, and held while the body waits
        assert limit._reading == {7}
        with pytest.raises(ReportBusy, match="job 7"):  # a second large body for the same job waits its turn
            await limit(_report_scope(7), _body([b"x" * 11]), _ignore)
        async def ends():  # a small body for job 7 takes no slot, so the first one does not hold it up
            return {"type": "http.request", "body": b"{}", "more_body": False}

        await limit(_report_scope(7), ends, _ignore)
        other = asyncio.create_task(limit(_report_scope(8), _body([b"x" * 11]), _ignore))
        await asyncio.sleep(0.05)
        assert limit._reading == {7, 8}  # another job's report is read beside it
        with pytest.raises(ReportBusy, match="2 large reports"):  # up to the memory they may hold
            await limit(_report_scope(9), _body([b"x" * 11]), _ignore)
        for task in (holder, other):
            task.cancel()
        await asyncio.gather(holder, other, return_exceptions=True)
        assert limit._reading == set()

    asyncio.run(run())
