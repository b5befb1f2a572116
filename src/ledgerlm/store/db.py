"""The node's database: engine setup (SQLite WAL by default) and Alembic migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"


class Database:
    """One engine plus the migrations that bring its schema to head."""

    def __init__(self, url: str):
        self.url = url
        kwargs = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)

    @classmethod
    def at(cls, path: Path) -> Database:
        return cls(f"sqlite:///{path}")

    def _alembic(self, connection: Connection) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        return config

    def upgrade(self) -> str:
        """Apply pending migrations; returns the schema revision now in force."""
        with self.engine.begin() as connection:
            command.upgrade(self._alembic(connection), "head")
        return self.revision()

    def revision(self) -> str | None:
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def head_revision(self) -> str:
        with self.engine.connect() as connection:
            return ScriptDirectory.from_config(self._alembic(connection)).get_current_head()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction: everything in it commits together or not at all."""
        with self.engine.connect() as connection:
            connection.execution_options(write=True)
            with connection.begin():
                yield connection

    def connect(self):
        return self.engine.connect()

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # The sqlite3 module's own transaction handling issues no BEGIN before a SAVEPOINT, so the
    # RELEASE of a nested transaction would commit the outer one's work early (a signed action
    # stored although its effect then failed). SQLAlchemy emits BEGIN itself instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers (the API) run while one writer commits; NORMAL sync is durable in WAL mode
    # against process crashes, which is the failure the node must survive.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Content hashes arrive in random order, so index inserts touch random pages: keep them cached.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # A write transaction takes the write lock up front: a deferred one that read first could not
    # upgrade once another writer committed, and would fail instead of waiting its turn.
    immediate = connection.get_execution_options().get("write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
