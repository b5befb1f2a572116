"""A call that fails for any reason, a database error among them, gives its key's running-call slot back: a busy
database answers 503 for a while, never a key locked out until the node restarts."""

from __future__ import annotations

import sqlite3

import sqlalchemy.exc

from .conftest import ASK, ask, homes_sharing_one_database, served


def test_a_database_error_while_reserving_does_not_leave_the_key_locked_out(world, tmp_path, monkeypatch):
    from ledgerlm.api import create_app
    from ledgerlm.node import Node

    (home,) = homes_sharing_one_database(world, tmp_path, ("busy",))
    opened = []
    app = create_app(lambda: opened.append(Node.open(home)) or opened[-1])
    with served(home, app) as url:
        assert ask(url, world.key, "facts-a").status_code == 200
        serving = opened[0].serving
        limit = opened[0].config.serving_max_concurrent
        reserve = serving.budget.reserve

        def locked(*_args, **_kwargs):
            raise sqlalchemy.exc.OperationalError("INSERT INTO spend_holds", {},
                                                  sqlite3.OperationalError("database is locked"))

        monkeypatch.setattr(serving.budget, "reserve", locked)
        for _ in range(limit + 1):
            busy = ask(url, world.key, "facts-a")
            assert busy.status_code == 503, busy.text
        monkeypatch.setattr(serving.budget, "reserve", reserve)
        answered = ask(url, world.key, "facts-a")
        assert answered.status_code == 200, answered.text
        assert serving.in_flight == 0 and ASK["max_tokens"] >= answered.json()["usage"]["completion_tokens"]
