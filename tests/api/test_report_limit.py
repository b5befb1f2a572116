"""A compute provider's training report, checkpoints inline, may be larger than other bodies, but only for a job
that waits for its report: anyone can send a body before its signature is read."""

from __future__ import annotations

import json


def test_a_report_for_no_open_job_gets_the_general_limit(client):
    body = json.dumps({"action": {}, "result": {}, "files": {"x": "A" * (6 * 1024 * 1024)}})
    answer = client.http.post("/providers/jobs/999/report", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 413 and str(4 * 1024 * 1024) in answer.text
