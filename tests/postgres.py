"""A throwaway PostgreSQL server from Debian's `postgresql` package, for the tests and the scale-out benchmark.

`initdb` refuses to run as root, so as root the server runs as the `postgres` user (through `runuser`)
in a temporary directory it owns; trust authentication on a free loopback port, no durability (fsync
off): it lives only as long as the test session.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

BIN_GLOB = "/usr/lib/postgresql/*/bin"


class PostgresUnavailable(RuntimeError):
    """Why no local PostgreSQL could be started here (shown as the skip reason)."""


def _bin_dir() -> Path:
    found = sorted(glob.glob(BIN_GLOB), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    if not found or not Path(found[-1], "initdb").exists():
        raise PostgresUnavailable("Debian's postgresql package is not installed (no /usr/lib/postgresql/*/bin/initdb): "
                                  "`make test` installs it with apt where it may")
    return Path(found[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """One server: `start()`, then `create_database(name)` gives a URL; `stop()` removes everything."""

    def __init__(self):
        self.bin = _bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="ledgerlm-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user: str | None = None
        self._started = False

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise PostgresUnavailable(f"{args[0]} failed: {(result.stderr or result.stdout).strip()[-500:]}")
        return result

    def start(self) -> LocalPostgres:
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise PostgresUnavailable("running as root without `runuser`: initdb refuses root")
            try:
                import pwd

                account = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable("running as root and there is no `postgres` user to run initdb as") from exc
            self.user = "postgres"
            os.chown(self.root, account.pw_uid, account.pw_gid)
            os.chmod(self.root, 0o700)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync",
                  "--locale=C")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
                   "-c shared_buffers=64MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w",
                  "-t", "60", "start")
        self._started = True
        return self

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str, template: str | None = None) -> str:
        # FILE_COPY: copying a small template is a few files, far quicker than WAL-logging every page.
        source = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
        self.execute(f'CREATE DATABASE "{name}"{source}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self._started:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
            self._started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def start_local_postgres() -> LocalPostgres:
    """A started server, or PostgresUnavailable saying why not; a half-started one is cleaned up."""
    server = LocalPostgres()
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise


# ---------------------------------------------------------------------------------------------- pytest

# What runs on both databases: the tests of the database itself and a representative part of the Datanet, validation and
# economy suites (node ids or files). The whole suites take minutes on SQLite; each test here costs a node home
# (a chain deployment) again, so the list holds one test per kind of write rather than every test.
BOTH_DATABASES = (
    "tests/store/test_database.py",
    "tests/economy/test_schema.py",
    "tests/economy/test_spending.py::test_running_totals_equal_the_rows_through_receipts_payments_and_epochs",
    "tests/datanets/test_lifecycle.py::test_contribute_accept_publish_export",
    "tests/datanets/test_lifecycle.py::test_skip_duplicates_stores_only_new_records",
    "tests/datanets/test_review_batch.py::test_one_signature_accepts_a_batch_and_each_contribution_records_it",
    "tests/node/test_validation_rounds.py::test_gates_then_consensus_with_an_outlier",
    "tests/economy/test_epoch_close.py::test_close_settles_paid_receipts_once_and_everyone_claims_exactly_what_they_are_owed",
    "tests/economy/test_paid_access.py::test_one_standing_cap_bounds_calls_and_paid_access_together",
    "tests/economy/test_faucet.py::test_the_faucet_transfers_from_the_treasury_within_a_per_address_limit",
    "tests/api/test_database_refusals.py",
)
TEMPLATE = "ledgerlm_template"
_names = itertools.count()


@pytest.fixture(scope="session")
def postgres_server():
    """A local PostgreSQL for the session with a migrated template database; skipped, saying why, where none starts."""
    try:
        server = start_local_postgres()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL tier skipped: {exc}")
    try:
        from ledgerlm.store import Database

        db = Database(server.create_database(TEMPLATE))
        db.upgrade()
        db.close()
        yield server
    finally:
        server.stop()


@pytest.fixture
def database_url(request) -> str:
    """The node database under test: "" (the home's SQLite file) unless parametrized with "postgresql",
    which gives a fresh, migrated PostgreSQL database of its own."""
    if getattr(request, "param", "sqlite") != "postgresql":
        yield ""
        return
    server = request.getfixturevalue("postgres_server")
    name = f"ledgerlm_test_{os.getpid()}_{next(_names)}"
    url = server.create_database(name, template=TEMPLATE)
    yield url
    server.drop_database(name)


# `make test-postgres` (LEDGERLM_TEST_POSTGRES=suites) runs every test of these suites that builds its node home
# through the `home` fixture on both databases, not only the representative part above.
WHOLE_SUITES = ("tests/store/", "tests/datanets/", "tests/validation/", "tests/economy/")


def pytest_generate_tests(metafunc) -> None:
    if "database_url" not in metafunc.fixturenames or any(
            "database_url" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize")):
        return
    test = metafunc.definition.nodeid.split("[")[0]
    whole = os.environ.get("LEDGERLM_TEST_POSTGRES") == "suites" and test.startswith(WHOLE_SUITES)
    if whole or any(test == entry or test.startswith(f"{entry}::")
                    for entry in BOTH_DATABASES):
        metafunc.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
