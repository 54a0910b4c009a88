"""The provisioning floor: the provisioner's DDL issued straight at the tenant cluster.

Same statements as shardz_provisioner.services.ddl (CREATE ROLE with a SCRAM verifier made
by domain.names.scram_verifier, CREATE DATABASE from template0, REVOKE ALL FROM PUBLIC),
then a first login as the new role, on one autocommit admin connection per worker."""

from __future__ import annotations

import time
import uuid

import psycopg
from psycopg import sql

from shardz_provisioner.domain.names import new_password, scram_verifier
from shardz_provisioner.services.clusters import ADMIN_OPTIONS
from shardz_provisioner.services.ddl import ROLE_FLAGS

PREFIX = "bench_floor_"
CONNECTION_LIMIT = 5  # the free plan's


def login(uri: str) -> None:
    """A first login with a tenant's credentials (both sides use this)."""
    psycopg.connect(uri, connect_timeout=10).close()


class FloorWorker:
    def __init__(self, admin_dsn: str, host: str, port: int) -> None:
        self.conn = psycopg.connect(admin_dsn, autocommit=True, options=ADMIN_OPTIONS)
        self.host = host
        self.port = port

    def create(self) -> float:
        """One database made ready to log in; returns the seconds it took."""
        ident = uuid.uuid4().hex
        role, db = f"{PREFIX}u_{ident}", f"{PREFIX}d_{ident}"
        password = new_password()
        t0 = time.perf_counter()
        self.conn.execute(
            sql.SQL(
                "CREATE ROLE {} WITH LOGIN " + ROLE_FLAGS + " CONNECTION LIMIT {} PASSWORD {}"
            ).format(
                sql.Identifier(role),
                sql.Literal(CONNECTION_LIMIT),
                sql.Literal(scram_verifier(password)),
            )
        )
        self.conn.execute(
            sql.SQL("CREATE DATABASE {} WITH OWNER {} TEMPLATE template0 ENCODING 'UTF8'").format(
                sql.Identifier(db), sql.Identifier(role)
            )
        )
        self.conn.execute(
            sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db))
        )
        login(f"postgresql://{role}:{password}@{self.host}:{self.port}/{db}")
        return time.perf_counter() - t0

    def close(self) -> None:
        self.conn.close()


def drop_all(admin_dsn: str) -> int:
    """Drop every floor database and role (each DROP DATABASE forces a checkpoint: run last)."""
    with psycopg.connect(admin_dsn, autocommit=True, options=ADMIN_OPTIONS) as conn:
        dbs = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (PREFIX + "%",)
        ).fetchall()
        for (db,) in dbs:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db))
            )
        roles = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (PREFIX + "%",)
        ).fetchall()
        for (role,) in roles:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    return len(dbs)
