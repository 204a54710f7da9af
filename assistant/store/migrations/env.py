"""Alembic environment for the store. ``assistant.store.db.open_store`` runs it programmatically with its
own connection in ``config.attributes["connection"]`` (so the connect-time PRAGMAs apply); there is no
alembic.ini. For development, ``sqlalchemy.url`` alone also works (e.g. to autogenerate a revision)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from assistant.store.models import Base

config = context.config
target_metadata = Base.metadata

# render_as_batch: SQLite has no ALTER COLUMN / ADD CONSTRAINT; batch mode rebuilds the table instead.
# transactional_ddl: SQLite DDL is transactional, so one failed migration leaves the schema as it was.
_OPTIONS = dict(target_metadata=target_metadata, render_as_batch=True, transactional_ddl=True,
                compare_type=True)


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **_OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, **_OPTIONS)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
