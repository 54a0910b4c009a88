"""The control plane on a PostgreSQL that trusts nobody: Debian's default pg_hba.conf (peer on
the socket, scram-sha-256 on 127.0.0.1). The set-up must create its password role through the
`postgres` user and every service must migrate and answer on it."""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from shardz_devstack import control
from shardz_devstack.config import state_root
from shardz_devstack.postgres import chown_postgres, pg_bindir, run_as_postgres
from shardz_devstack.testing import start_test_stack

# Debian's /etc/postgresql/<v>/main/pg_hba.conf as the postgresql-common package writes it.
DEBIAN_HBA = """\
local   all             postgres                                peer
local   all             all                                     peer
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
local   replication     all                                     peer
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
"""


@dataclass
class DebianCluster:
    data_dir: Path
    port: int

    @property
    def socket_dir(self) -> str:
        return str(self.data_dir)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def debian_cluster() -> Iterator[DebianCluster]:
    """A throwaway cluster initialised as Debian's postgresql-common does, not trusting anyone."""
    data_dir = state_root() / f"hba-check-{uuid.uuid4().hex[:8]}"
    data_dir.mkdir(parents=True, mode=0o700)
    chown_postgres(data_dir)
    cluster = DebianCluster(data_dir, _free_port())
    pg_ctl = str(pg_bindir() / "pg_ctl")
    try:
        init = run_as_postgres(
            [str(pg_bindir() / "initdb"), "-D", str(data_dir), "-U", "postgres",
             "--auth-local=peer", "--auth-host=scram-sha-256", "--no-instructions"]
        )  # fmt: skip
        assert init.returncode == 0, init.stderr
        (data_dir / "pg_hba.conf").write_text(DEBIAN_HBA)
        with (data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {cluster.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{data_dir}'\n"
            )
        start = run_as_postgres(
            [pg_ctl, "-D", str(data_dir), "-l", str(data_dir / "log"), "-w", "start"]
        )
        assert start.returncode == 0, start.stderr
        yield cluster
    finally:
        run_as_postgres([pg_ctl, "-D", str(data_dir), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(data_dir, ignore_errors=True)


def test_the_cluster_refuses_passwordless_tcp_logins(debian_cluster: DebianCluster) -> None:
    # Without this the tests below would prove nothing: a trusting server admits anyone.
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{debian_cluster.port}/postgres")


def test_role_is_created_through_peer_auth_and_reused(
    debian_cluster: DebianCluster, tmp_path: Path
) -> None:
    creds = tmp_path / "control.env"
    dsn = control.ensure_role(creds, port=debian_cluster.port, socket_dir=debian_cluster.socket_dir)
    assert creds.stat().st_mode & 0o777 == 0o600
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT current_user, rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert row == (control.ROLE, False, True)
    # A second set-up keeps the stored password (other checkouts may be using it).
    assert control.ensure_role(creds, port=debian_cluster.port) == dsn


def test_a_stale_password_is_replaced(debian_cluster: DebianCluster, tmp_path: Path) -> None:
    creds = tmp_path / "control.env"
    stale = f"postgresql://{control.ROLE}:stale@127.0.0.1:{debian_cluster.port}/postgres"
    creds.write_text(f"{control.DSN_KEY}={stale}\n")
    fresh = control.ensure_role(
        creds, port=debian_cluster.port, socket_dir=debian_cluster.socket_dir
    )
    assert fresh != stale
    psycopg.connect(fresh).close()
    assert fresh in creds.read_text()


def test_a_full_server_is_waited_for_and_the_password_kept(
    debian_cluster: DebianCluster, tmp_path: Path
) -> None:
    """Failure: the shared server has no connection slot left for the role. The stored
    password is still right; replacing it would lock out every stack that uses it."""
    creds = tmp_path / "control.env"
    dsn = control.ensure_role(creds, port=debian_cluster.port, socket_dir=debian_cluster.socket_dir)
    psql = [str(pg_bindir() / "psql"), "-X", "-q", "-h", debian_cluster.socket_dir]
    psql += ["-p", str(debian_cluster.port), "-d", "postgres", "-c"]
    full = run_as_postgres([*psql, f"ALTER ROLE {control.ROLE} CONNECTION LIMIT 0"])
    assert full.returncode == 0, full.stderr
    try:
        with pytest.raises(RuntimeError, match="refuses connections"):
            control.ensure_role(creds, port=debian_cluster.port, wait_seconds=2)
    finally:
        run_as_postgres([*psql, f"ALTER ROLE {control.ROLE} CONNECTION LIMIT -1"])
    assert dsn in creds.read_text()
    psycopg.connect(dsn).close()


def test_every_service_migrates_and_answers(debian_cluster: DebianCluster, tmp_path: Path) -> None:
    dsn = control.ensure_role(
        tmp_path / "control.env", port=debian_cluster.port, socket_dir=debian_cluster.socket_dir
    )
    running = start_test_stack(control_dsn=dsn)
    try:
        services = running.config.services
        assert {"identity", "provisioner"} <= set(services)
        with httpx.Client(timeout=10) as client:
            for name, url in running.internal_urls.items():
                assert client.get(f"{url}/readyz").status_code == 200, name
            signup = client.post(
                f"{running.gateway_url}/v1/auth/signup",
                headers={"Host": running.host("api")},
                json={"email": f"hba-{uuid.uuid4().hex[:8]}@example.com", "password": "0123456789"},
            )
            assert signup.status_code == 201, signup.text
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(
                "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname LIKE %s",
                (f"{running.config.db_prefix}%",),
            ).fetchall()
        assert {name for name, _ in rows} == {running.config.database_name(s) for s in services}
        assert {owner for _, owner in rows} == {control.ROLE}
    finally:
        running.stop()
