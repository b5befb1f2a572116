"""A compute provider's training report, checkpoints inline, has a larger body limit than other routes."""

from __future__ import annotations

import json


def test_a_report_of_several_mebibytes_is_read_and_one_past_its_limit_is_not(client):
    checkpoints = "A" * (6 * 1024 * 1024)  # past the 4 MiB every other JSON route reads
    body = json.dumps({"action": {}, "result": {}, "files": {"x": checkpoints}})
    answer = client.http.post("/providers/jobs/999/report", content=body,
                              headers={"content-type": "application/json"})
    assert answer.status_code != 413, answer.text  # read, then refused for what it says
    other = client.http.post("/economy/caps", content=body, headers={"content-type": "application/json"})
    assert other.status_code == 413
    huge = client.http.post("/providers/jobs/999/report", content=b"{}",
                            headers={"content-type": "application/json", "content-length": str(65 * 1024 * 1024)})
    assert huge.status_code == 413 and str(64 * 1024 * 1024) in huge.text
