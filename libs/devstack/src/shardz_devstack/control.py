"""The control-plane role: services reach the local PostgreSQL with a password, never `trust`.

The role is created once through the `postgres` operating-system user over the Unix socket
(peer authentication, Debian's default), so any `pg_hba.conf` Debian ships works: its
`scram-sha-256` line for 127.0.0.1 then admits the role. The DSN is kept in a 0600 file.
"""

from __future__ import annotations

import getpass
import os
import secrets
import subprocess
import time
from pathlib import Path

import psycopg

from shardz_devstack.postgres import pg_bindir
from shardz_devstack.secretsfile import read_env_file, write_env_file

ROLE = "shardz"
DSN_KEY = "DEVSTACK_CONTROL_DSN"

# Idempotent: creates or updates the role; hands it the platform's databases that an older
# set-up created as `postgres`, so a fresh test stack can drop and recreate them.
SETUP_SQL = """\
SELECT format('CREATE ROLE %I', '{role}')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') \\gexec
ALTER ROLE {role} WITH LOGIN CREATEDB NOSUPERUSER PASSWORD '{password}';
SELECT format('ALTER DATABASE %I OWNER TO %I', datname, '{role}') FROM pg_database
 WHERE datname LIKE 'shardz\\_%' AND pg_get_userbyid(datdba) = 'postgres' \\gexec
"""


def credentials_file(state_dir: Path) -> Path:
    return state_dir / "control.env"


def _as_postgres_user(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    if getpass.getuser() == "postgres":
        return argv
    return ["sudo", "-n", "-u", "postgres", "--", *argv]


def _can_login(dsn: str, wait_seconds: float = 0.0) -> bool:
    """Whether `dsn` logs in. Only a refused password or a missing role answer False: a
    server that is full (too many connections: it is shared by every test stack) or not up
    is waited for, then an error, never a reason to give the role a new password under
    everyone's feet."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError as exc:
            message = str(exc)
            if "password authentication failed" in message or "does not exist" in message:
                return False
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"the control-plane PostgreSQL refuses connections: {exc}"
                ) from exc
            time.sleep(1)


def create_role(password: str, port: int, socket_dir: str | None = None) -> None:
    """Create or update the role as the `postgres` superuser, over the socket (peer auth)."""
    argv = [str(pg_bindir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-p", str(port)]
    if socket_dir:
        argv += ["-h", socket_dir]
    argv += ["-d", "postgres"]
    # The password travels on stdin, never in argv where `ps` would show it.
    script = SETUP_SQL.format(role=ROLE, password=password)
    done = subprocess.run(  # noqa: S603 (our own argv)
        _as_postgres_user(argv), input=script, capture_output=True, text=True, check=False, cwd="/"
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"could not create the control-plane role {ROLE!r} as the postgres user over the "
            f"socket (peer authentication) on port {port}:\n{done.stderr.strip()}\n"
            f"Run as root or with passwordless sudo, or set {DSN_KEY} to a role that may "
            "create databases."
        )


def ensure_role(
    path: Path,
    host: str = "127.0.0.1",
    port: int = 5432,
    socket_dir: str | None = None,
    wait_seconds: float = 60.0,
) -> str:
    """The control-plane DSN: the stored one when it still logs in, otherwise (re)create the
    role with a new password and store that."""
    stored = read_env_file(path).get(DSN_KEY)
    if stored and _can_login(stored, wait_seconds):
        return stored
    password = secrets.token_urlsafe(24)
    create_role(password, port, socket_dir)
    dsn = f"postgresql://{ROLE}:{password}@{host}:{port}/postgres"
    # stored before it is tried: the server has this password now, whatever happens next
    write_env_file(path, {DSN_KEY: dsn}, header="control-plane PostgreSQL role")
    if not _can_login(dsn, wait_seconds):
        raise RuntimeError(
            f"the control-plane role {ROLE!r} was created but cannot log in over "
            f"{host}:{port}: pg_hba.conf must allow password (scram-sha-256 or md5) "
            "connections from there"
        )
    return dsn
