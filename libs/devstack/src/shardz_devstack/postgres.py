"""Control-plane databases on the local Postgres, and tenant clusters the platform owns."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

MIN_PG_MAJOR = 15
TENANT_SUPERUSER = "shardz_admin"

# Tuned for bursts of CREATE DATABASE (each one ~15 MB of data + WAL), and for a few hundred
# mostly idle databases whose tenants cannot starve the platform: the admin pools (10 per
# provisioner process) log in as a superuser and so use the reserved slots.
TENANT_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "400",
    "superuser_reserved_connections": "40",
    "shared_buffers": "128MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "password_encryption": "'scram-sha-256'",
    # tenants cannot raise this (superuser-only): no session fills the disk with temp files
    "temp_file_limit": "2GB",
    # DROP DATABASE ... WITH (FORCE) cannot remove a database holding prepared transactions
    "max_prepared_transactions": "0",
}

TENANT_HBA = """\
# written by shardz_devstack: password (SCRAM) authentication only, never trust
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
host  all all ::1/128 scram-sha-256
"""


def _major(bindir: Path) -> int:
    try:
        return int(bindir.parent.name)
    except ValueError:
        return 0


@functools.cache
def pg_bindir() -> Path:
    """The PostgreSQL server binaries to run tenant clusters with: `DEVSTACK_PG_BIN`, else the
    newest `/usr/lib/postgresql/<major>/bin` with major >= 15, else `pg_config --bindir`."""
    configured = os.environ.get("DEVSTACK_PG_BIN")
    return Path(configured) if configured else find_bindir(Path("/usr/lib/postgresql"))


def find_bindir(debian_root: Path) -> Path:
    candidates = sorted(
        (p for p in debian_root.glob("*/bin") if _major(p) >= MIN_PG_MAJOR),
        key=_major,
        reverse=True,
    )
    pg_config = shutil.which("pg_config")
    if pg_config:  # other layouts (e.g. /usr/local/pgsql/bin); Debian's is in the list above
        done = subprocess.run(  # noqa: S603 (a fixed argv)
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if done.returncode == 0 and done.stdout.strip():
            candidates.append(Path(done.stdout.strip()))
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise FileNotFoundError(
        f"no PostgreSQL >= {MIN_PG_MAJOR} server binaries found (pg_config --bindir, "
        "/usr/lib/postgresql/*/bin): run scripts/bootstrap.sh, or set DEVSTACK_PG_BIN"
    )


def ensure_databases(control_dsn: str, names: list[str], *, fresh: bool = False) -> None:
    """Create each control-plane database that is missing; `fresh` drops them first."""
    with psycopg.connect(control_dsn, autocommit=True) as conn:
        for name in names:
            if fresh:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if row is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def run_as_postgres(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a server binary as the cluster's owner: `postgres` when we are root (initdb and
    postgres refuse root; the Debian package provides that user), otherwise ourselves."""
    argv = ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd
    # cwd "/": the postgres user may not be able to enter ours (a 0700 home)
    return subprocess.run(  # noqa: S603 (our own argv)
        argv, capture_output=True, text=True, check=False, cwd="/"
    )


def chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


@dataclass(frozen=True)
class TenantCluster:
    """A Postgres server that holds tenant databases, reached with a SCRAM superuser."""

    name: str
    data_dir: Path
    port: int
    password: str
    capacity: int = 500
    settings: dict[str, str] = field(default_factory=dict)  # over TENANT_SETTINGS

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://{TENANT_SUPERUSER}:{self.password}@127.0.0.1:{self.port}/postgres"

    def registration(self) -> dict[str, object]:
        """The entry the provisioner expects in PROVISIONER_TENANT_CLUSTERS."""
        return {
            "name": self.name,
            "admin_dsn": self.admin_dsn,
            "host": "127.0.0.1",
            "port": self.port,
            "capacity": self.capacity,
        }

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def is_initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialised():
            return False
        status = run_as_postgres([str(pg_bindir() / "pg_ctl"), "-D", str(self.data_dir), "status"])
        return status.returncode == 0

    def init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        chown_postgres(self.data_dir)
        with tempfile.NamedTemporaryFile("w", dir=self.data_dir.parent, delete=False) as fh:
            fh.write(self.password + "\n")
        pwfile = Path(fh.name)
        try:
            pwfile.chmod(0o600)
            chown_postgres(pwfile)
            result = run_as_postgres(
                [
                    str(pg_bindir() / "initdb"),
                    "-D", str(self.data_dir),
                    "-U", TENANT_SUPERUSER,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--no-instructions",
                ]
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed for {self.data_dir}:\n{result.stderr}")

    def write_config(self) -> None:
        settings = {**TENANT_SETTINGS, **self.settings, "port": str(self.port)}
        settings["unix_socket_directories"] = f"'{self.data_dir}'"
        (self.data_dir / "shardz.conf").write_text(
            "".join(f"{k} = {v}\n" for k, v in settings.items())
        )
        main_conf = self.data_dir / "postgresql.conf"
        text = main_conf.read_text()
        if "include_if_exists = 'shardz.conf'" not in text:
            main_conf.write_text(text + "\ninclude_if_exists = 'shardz.conf'\n")
        (self.data_dir / "pg_hba.conf").write_text(TENANT_HBA)
        for name in ("shardz.conf", "postgresql.conf", "pg_hba.conf"):
            chown_postgres(self.data_dir / name)

    def start(self) -> None:
        """Initialise if needed and start if stopped; safe to call on a running cluster."""
        if not self.is_initialised():
            self.init()
        self.write_config()
        if self.is_running():
            return
        result = run_as_postgres(
            [
                str(pg_bindir() / "pg_ctl"), "-D", str(self.data_dir),
                "-l", str(self.log_file), "-w", "-t", "60", "start",
            ]
        )  # fmt: skip
        if result.returncode != 0:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"tenant cluster {self.name} failed to start:\n{result.stderr}{tail}"
            )

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            run_as_postgres(
                [str(pg_bindir() / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"]
            )

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)


def clusters_json(clusters: list[TenantCluster]) -> str:
    return json.dumps([c.registration() for c in clusters])
