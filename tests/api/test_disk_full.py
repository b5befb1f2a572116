"""A full disk is an answer that says so (507, nothing stored), not a bare 500."""

from __future__ import annotations

import errno

import pytest
from sqlalchemy.exc import OperationalError


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    OperationalError("INSERT ...", {}, Exception("database or disk is full")),
])
def test_a_full_disk_is_named(client, monkeypatch, failure):
    node = client.http.app.state.node

    def full(*_args, **_kwargs):
        raise failure

    monkeypatch.setattr(node.datanets, "page", full)  # what the listing route reads through
    monkeypatch.setattr(node.datanets, "listed_names", full)  # and the dashboard's list page
    answer = client.http.get("/datanets")
    assert answer.status_code == 507
    assert "disk is full" in answer.json()["error"]["message"]
    page = client.http.get("/web/datanets")
    assert page.status_code == 507 and "disk is full" in page.text
