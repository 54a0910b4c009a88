"""Checks made before a stack starts anything, so a failure names its cause and leaves nothing
half-started: ports someone else holds, folders a service user cannot enter."""

from __future__ import annotations

import grp
import os
import pwd
import socket
import stat
from pathlib import Path

import psutil


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def port_holder(port: int) -> str | None:
    """`pid 123 (nginx: master process ...)` for the process listening on `port`, when this
    user may see it (root sees all)."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return None
            try:
                proc = psutil.Process(conn.pid)
                command = " ".join(proc.cmdline()) or proc.name()
            except psutil.Error:
                command = "?"
            return f"pid {conn.pid} ({command[:80]})"
    return None


def busy_ports(ports: dict[str, int]) -> list[str]:
    """`label :port held by pid N (cmd)` for each port something already listens on."""
    busy = []
    for label, port in ports.items():
        if port_in_use(port):
            holder = port_holder(port)
            busy.append(f"{label} :{port}" + (f" held by {holder}" if holder else ""))
    return busy


def _can_enter(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def blocking_folder(path: Path, user: str) -> Path | None:
    """The first folder on the way to `path` that `user` cannot enter, or None."""
    entry = pwd.getpwnam(user)
    if entry.pw_uid == 0:
        return None
    gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    current = Path("/")
    for part in path.absolute().parts[1:]:
        current = current / part
        try:
            st = current.stat()
        except FileNotFoundError:
            return None  # created later, by us, with modes that let it in
        if stat.S_ISDIR(st.st_mode) and not _can_enter(st, entry.pw_uid, gids):
            return current
    return None


def require_reachable(path: Path, user: str, why: str) -> None:
    """Raise with the folder and the user when `user` cannot reach `path`."""
    try:
        blocked = blocking_folder(path, user)
    except KeyError:
        raise RuntimeError(f"the system user {user!r} ({why}) does not exist") from None
    if blocked is not None:
        mode = stat.S_IMODE(blocked.stat().st_mode)
        raise RuntimeError(
            f"the {user!r} user cannot enter {blocked} (mode {mode:04o}), so it cannot reach "
            f"{path} ({why}). Set DEVSTACK_DATA_DIR to a folder it can reach "
            "(the default as root is /var/lib/shardz)."
        )
