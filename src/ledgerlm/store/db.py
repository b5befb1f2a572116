"""The node's database: engine setup (SQLite WAL by default, PostgreSQL through psycopg 3 when several
nodes share one) and the Alembic migrations both share."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from ledgerlm.errors import LedgerError

MIGRATIONS = Path(__file__).parent / "migrations"


class DatabaseError(LedgerError):
    pass


def database_url(url: str) -> str:
    """The SQLAlchemy URL for a `--db` value: sqlite:///PATH, or postgresql://... (driven by psycopg 3)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(f"{url!r} is not a database URL: use sqlite:///PATH or "
                            "postgresql://USER@HOST:PORT/NAME", field="database_url") from exc
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if parsed.drivername == "sqlite":
        return url
    raise DatabaseError(f"database {parsed.drivername!r} is not supported: use sqlite:///PATH or "
                        "postgresql://USER@HOST:PORT/NAME", field="database_url")


class Database:
    """One engine plus the migrations that bring its schema to head."""

    def __init__(self, url: str):
        self.url = database_url(url)
        self.postgres = self.url.startswith("postgresql")
        if self.postgres:
            # READ COMMITTED plus explicit row locks where a write depends on what was read (see `lock`
            # and the rooms' `with_for_update`): writers on different rows never wait for each other.
            self.engine: Engine = create_engine(self.url, pool_pre_ping=True, pool_size=10, max_overflow=20,
                                                isolation_level="READ COMMITTED")
        else:
            self.engine = create_engine(self.url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)

    @classmethod
    def at(cls, path: Path) -> Database:
        return cls(f"sqlite:///{path}")

    @property
    def display_url(self) -> str:
        """The URL with any password masked, for output people see."""
        return make_url(self.url).render_as_string(hide_password=True)

    def _alembic(self, connection: Connection) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        return config

    def upgrade(self) -> str:
        """Apply pending migrations; returns the schema revision now in force."""
        try:
            with self.engine.begin() as connection:
                if self.postgres:
                    # Nodes starting together on one fresh database would otherwise race to create tables.
                    connection.execute(select(func.pg_advisory_xact_lock(_lock_key("ledgerlm:migrations"))))
                command.upgrade(self._alembic(connection), "head")
        except OperationalError as exc:
            raise DatabaseError(f"cannot reach the database at {self.display_url}: {exc.orig}",
                                field="database_url") from exc
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

    def lock(self, conn: Connection, key: str) -> None:
        """Hold `key` until `conn`'s transaction ends (see `lock_key`)."""
        lock_key(conn, key)

    def exclusive(self, key: str) -> AbstractContextManager[None]:
        """Run a long, multi-transaction job (an epoch close) on one node at a time. On SQLite the node's
        own lock already does; on PostgreSQL a session lock makes other nodes wait for it."""
        return self._session_lock(key, shared=False)

    def shared(self, key: str) -> AbstractContextManager[None]:
        """Run alongside others holding `key` shared, never alongside one holding it `exclusive` (a payment in
        flight and an epoch close). On SQLite the node's own lock already does."""
        return self._session_lock(key, shared=True)

    @contextmanager
    def _session_lock(self, key: str, *, shared: bool) -> Iterator[None]:
        if not self.postgres:
            yield
            return
        take, give = ((func.pg_advisory_lock_shared, func.pg_advisory_unlock_shared) if shared
                      else (func.pg_advisory_lock, func.pg_advisory_unlock))
        with self.engine.connect() as holder:
            holder.execute(select(take(_lock_key(key))))
            holder.commit()
            try:
                yield
            finally:
                holder.execute(select(give(_lock_key(key))))
                holder.commit()

    def close(self) -> None:
        self.engine.dispose()


def lock_key(conn: Connection, key: str) -> None:
    """Hold `key` until `conn`'s transaction ends, for a write that depends on rows that may not exist yet (a
    next number, a total across rows). On SQLite a write transaction already holds the whole database; on
    PostgreSQL other nodes wait here for the same key only."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_lock_key(key))))


def _lock_key(key: str) -> int:
    """A stable signed 64-bit advisory lock id for a name, the same in every node process."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


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
    # A withdrawn record's payload is set to NULL (the right to be forgotten); without this the freed
    # bytes stay in the file until SQLite happens to reuse them. Some builds default it on, some off.
    cursor.execute("PRAGMA secure_delete=ON")
    # Content hashes arrive in random order, so index inserts touch random pages: keep them cached.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # A write transaction takes the write lock up front: a deferred one that read first could not
    # upgrade once another writer committed, and would fail instead of waiting its turn.
    immediate = connection.get_execution_options().get("write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
