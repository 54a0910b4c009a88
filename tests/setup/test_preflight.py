"""What `make dev` says before it starts anything: a port someone holds, a folder the postgres
user cannot enter, which PostgreSQL it runs."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from shardz_devstack.config import StackConfig, repo_root, state_root
from shardz_devstack.postgres import find_bindir
from shardz_devstack.stack import preflight


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_make_dev_names_a_taken_port_and_its_holder_and_starts_nothing(tmp_path: Path) -> None:
    data = tmp_path / "state"
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = {
            **os.environ,
            "DEVSTACK_DATA_DIR": str(data),
            "PLATFORM_GATEWAY_PORT": str(port),
        }
        done = subprocess.run(
            [sys.executable, "-m", "shardz_devstack", "up"],
            cwd=repo_root(),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"gateway :{port} held by pid {os.getpid()}" in done.stderr
    # nothing of the stack was started or initialised
    assert not (data / "dev" / "tenant-pg-1").exists()
    assert not (data / "dev" / "nginx").exists()
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(data) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the postgres user is only switched to as root")
def test_a_folder_the_postgres_user_cannot_enter_is_named() -> None:
    # pytest's own tmp_path sits in a 0700 folder already: start from one postgres can enter
    base = Path(tempfile.mkdtemp(dir=state_root()))
    try:
        base.chmod(0o755)
        home = base / "home"
        home.mkdir(mode=0o700)
        config = dataclasses.replace(
            StackConfig.dev(), data_dir=home / "smallshardz" / ".data", tenant_pg_port=_free_port()
        )
        with pytest.raises(RuntimeError) as refused:
            preflight(config, {"DEVSTACK_TENANT_PG_PASSWORD": "x"}, check_ports=False)
    finally:
        shutil.rmtree(base)
    message = str(refused.value)
    assert f"the 'postgres' user cannot enter {home} (mode 0700)" in message
    assert "DEVSTACK_DATA_DIR" in message


def test_the_newest_postgresql_of_at_least_15_is_used(tmp_path: Path) -> None:
    for major, binaries in (("14", True), ("15", True), ("17", True), ("18", False)):
        bindir = tmp_path / major / "bin"
        bindir.mkdir(parents=True)
        if binaries:
            for name in ("initdb", "pg_ctl"):
                (bindir / name).touch(mode=0o755)
    assert find_bindir(tmp_path) == tmp_path / "17" / "bin"
    for name in ("initdb", "pg_ctl"):
        (tmp_path / "17" / "bin" / name).unlink()
    assert find_bindir(tmp_path) == tmp_path / "15" / "bin"
