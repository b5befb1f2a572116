"""The SQLAlchemy schema and the Alembic migrations describe the same database."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ledgerlm.store import Database
from ledgerlm.store.schema import metadata


def test_migrations_build_exactly_the_schema(tmp_path, database_url):
    db = Database(database_url) if database_url else Database.at(tmp_path / "ledger.db")
    db.upgrade()
    try:
        with db.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        db.close()
