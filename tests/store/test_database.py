"""`ledgerlm init --db`: the same schema and migrations on PostgreSQL, and clear errors for a bad database URL."""

import json
import socket

import pytest
from sqlalchemy import inspect
from typer.testing import CliRunner

from ledgerlm.cli.main import app
from ledgerlm.config import Home
from ledgerlm.node import Node
from ledgerlm.store import Database, DatabaseError


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite is every other test's default
def test_init_with_db_puts_the_whole_schema_there_and_never_prints_the_password(tmp_path, database_url):
    with_password = database_url.replace("postgres@", "postgres:s3cret@")  # trust auth ignores it
    home = tmp_path / "pg-home"
    result = CliRunner().invoke(app, ["--home", str(home), "--json", "init", "--db", with_password])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert "s3cret" not in result.output and info["database_url"].startswith("postgresql+psycopg://postgres:***@")
    assert not (home / "ledger.db").exists()  # no SQLite file beside it
    assert Home(home).load_config().database_url == with_password
    db = Database(with_password)
    try:
        assert info["schema_revision"] == db.revision() == db.head_revision()
        assert {"contributions", "receipts", "spend_holds", "epochs"} <= set(inspect(db.engine).get_table_names())
    finally:
        db.close()
    node = Node.open(Home(home))  # and it opens again from its config
    try:
        assert node.info()["database"] == info["database"] == "postgresql"  # public info names only the kind
    finally:
        node.close()


@pytest.mark.parametrize("url, words", [
    ("mysql://root@localhost/ledger", "'mysql' is not supported"),
    ("not a url", "is not a database URL"),
])
def test_an_unsupported_database_url_is_refused_naming_the_field(url, words):
    with pytest.raises(DatabaseError, match=words) as raised:
        Database(url)
    assert raised.value.field == "database_url"


def test_an_unreachable_postgresql_fails_init_before_the_home_is_written(tmp_path):
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = Home(tmp_path / "home")
    with pytest.raises(DatabaseError, match="cannot reach the database") as raised:
        Node.init(home, database_url=f"postgresql://ledgerlm:pw@127.0.0.1:{port}/ledger")
    assert raised.value.field == "database_url" and "pw" not in str(raised.value)
    assert not home.exists()
