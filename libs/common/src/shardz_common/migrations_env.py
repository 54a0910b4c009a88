"""Shared body of every service's Alembic env.py (online mode, sync psycopg)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import MetaData, engine_from_config, pool


def run(target_metadata: MetaData) -> None:
    config = context.config
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            # Serialise concurrent migrators (several replicas starting at once).
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7412001)")
            context.run_migrations()
