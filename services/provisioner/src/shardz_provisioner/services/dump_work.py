"""The blocking part of a dump job, run in a worker thread: pg_dump into the dumps bucket,
or a dump fetched to a private temporary file and applied by services/restore.py."""

from __future__ import annotations

import io
import os
import re
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import IO
from urllib.parse import quote

import httpx
import psycopg

from shardz_provisioner import faults
from shardz_provisioner.config import ProvisionerSettings
from shardz_provisioner.services import pgtools
from shardz_provisioner.services.dumpstore import DumpStore
from shardz_provisioner.services.restore import DumpUnreadable, Report, Restore

READ_CHUNK = 1024 * 1024
MAX_LINE_BYTES = 64 * 1024 * 1024
_TOOL_ERROR = re.compile(r"^(pg_dump|pg_restore): error: (.*)$")


class Failed(Exception):
    """The job cannot succeed (its message is shown to the user); no retry."""


class Retry(Exception):
    """Something the job needs is unavailable for now: the job goes back in the queue."""


class Work:
    """One job's running state, shared with the event loop that renews its lease."""

    def __init__(self, settings: ProvisionerSettings, store: DumpStore) -> None:
        self.settings = settings
        self.store = store
        self.stopped: str | None = None
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._restore: Restore | None = None

    def progress(self) -> int | None:
        restore = self._restore
        return restore.report.applied if restore is not None else None

    def stop(self, reason: str) -> None:
        """From the event loop: end the program or the statement running now."""
        with self._lock:
            self.stopped = reason
            if self._process is not None and self._process.poll() is None:
                self._process.kill()
            if self._restore is not None:
                self._restore.cancel()

    def check(self) -> None:
        if self.stopped:
            raise Failed(self.stopped)

    def spawn(
        self, argv: list[str], login: pgtools.Login, stderr: IO[bytes]
    ) -> subprocess.Popen[bytes]:
        with self._lock:
            self.check()
            # argv only, never a shell; the password is in the environment it is given
            process = subprocess.Popen(  # noqa: S603
                argv,
                env=login.environment(),
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
            self._process = process
            return process


class _Counting(io.RawIOBase):
    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        self.size += len(data)
        return data


def _tool_error(stderr: IO[bytes], tool: str) -> str:
    """The tool's own error lines, without the queries it may quote."""
    stderr.seek(0)
    lines = stderr.read().decode(errors="replace").splitlines()
    errors = [m.group(2) for m in map(_TOOL_ERROR.match, lines) if m]
    return f"{tool} failed: " + ("; ".join(errors)[:500] or "see the worker's log")


def run_export(work: Work, login: pgtools.Login, key: str) -> int:
    """pg_dump -Fc as the tenant's role, streamed into the dumps bucket; its size."""
    try:
        pg_dump = pgtools.program(work.settings.pg_bin_root, login.major, "pg_dump")
    except pgtools.ToolMissing as exc:
        raise Failed(str(exc)) from exc
    argv = [pg_dump, "--format=custom", "--no-password", f"--role={login.role}"]
    with tempfile.TemporaryFile() as stderr:
        process = work.spawn(argv, login, stderr)
        assert process.stdout is not None
        counted = _Counting(process.stdout)
        try:
            work.store.upload(key, counted)  # type: ignore[arg-type]
        finally:
            process.stdout.close()
            code = process.wait()
        faults.hit("export_after_upload")
        if code != 0 or work.stopped:
            work.store.delete(key)
            work.check()
            raise Failed(_tool_error(stderr, "pg_dump"))
    return counted.size


def _fetch_from_storage(work: Work, user_id: uuid.UUID, key: str, into: IO[bytes]) -> None:
    """The user's own object, through storage's internal route (the gateway never routes it)."""
    settings = work.settings
    secret = settings.secrets.storage_internal_secret or ""
    url = f"{settings.platform.storage_url}/internal/objects/{user_id}/{quote(key, safe='/')}"
    size = 0
    try:
        with httpx.stream(
            "GET", url, headers={"Authorization": f"Bearer {secret}"}, timeout=60.0
        ) as resp:
            if resp.status_code in (404, 422):
                raise Failed("the object is no longer in your storage")
            if resp.status_code != 200:
                raise Retry("the storage service is unavailable")
            for chunk in resp.iter_bytes(READ_CHUNK):
                size += len(chunk)
                if size > settings.import_max_bytes:
                    raise Failed(f"the dump is larger than {settings.import_max_bytes} bytes")
                into.write(chunk)
                work.check()
    except httpx.HTTPError as exc:
        raise Retry("the storage service is unavailable") from exc


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    """The dump's lines, each at most MAX_LINE_BYTES long (a row of COPY data is one line)."""
    while line := stream.readline(MAX_LINE_BYTES + 1):
        if len(line) > MAX_LINE_BYTES:
            raise DumpUnreadable(f"a line of the dump is longer than {MAX_LINE_BYTES} bytes")
        yield line


def run_import(
    work: Work,
    login: pgtools.Login,
    user_id: uuid.UUID,
    store_key: str | None,
    source_key: str | None,
) -> tuple[Report, str]:
    """Fetch the dump, apply it as the tenant's role; (the report, the dump's format)."""
    with tempfile.TemporaryDirectory(prefix="shardz-import-") as folder:
        path = os.path.join(folder, "dump")
        with open(path, "wb") as out:
            if store_key is not None:
                work.store.download(store_key, out)
            else:
                assert source_key is not None
                _fetch_from_storage(work, user_id, source_key, out)
        with open(path, "rb") as f:
            custom = f.read(5) == b"PGDMP"
        try:
            if custom:
                return _apply_custom(work, login, path), "custom"
            with open(path, "rb") as f:
                return _apply(work, login, _lines(f)), "plain"
        except DumpUnreadable as exc:
            raise Failed(f"{exc}; nothing was imported") from exc


def _apply_custom(work: Work, login: pgtools.Login, path: str) -> Report:
    try:
        pg_restore = pgtools.program(work.settings.pg_bin_root, login.major, "pg_restore")
    except pgtools.ToolMissing as exc:
        raise Failed(str(exc)) from exc
    # renders the archive as SQL (no connection): ownership and privileges left out
    argv = [pg_restore, "--no-owner", "--no-privileges", "--file=-", path]
    with tempfile.TemporaryFile() as stderr:
        process = work.spawn(argv, login, stderr)
        assert process.stdout is not None

        def complete() -> None:
            if process.wait() != 0:
                raise DumpUnreadable(_tool_error(stderr, "pg_restore"))

        try:
            return _apply(work, login, _lines(process.stdout), complete)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


def _apply(
    work: Work,
    login: pgtools.Login,
    lines: Iterator[bytes],
    complete: Callable[[], None] | None = None,
) -> Report:
    extensions = frozenset(
        e.strip() for e in work.settings.import_extensions.split(",") if e.strip()
    )
    try:
        conn = psycopg.connect(
            host=login.host,
            port=login.port,
            dbname=login.database,
            user=login.user,
            password=login.password,
            application_name="shardz-import",
            connect_timeout=10,
        )
    except psycopg.OperationalError as exc:
        raise Retry("the database server is unavailable") from exc

    def before_commit() -> None:
        if complete is not None:
            complete()
        faults.hit("import_before_commit")

    with conn:
        restore = Restore(conn, login.role, extensions, work.check, before_commit)
        with work._lock:
            work.check()
            work._restore = restore
        try:
            restore.run(lines)
        except psycopg.errors.QueryCanceled as exc:
            work.check()
            raise Failed("a statement was cancelled; nothing was imported") from exc
        except psycopg.OperationalError as exc:
            work.check()
            raise Retry("the database connection was lost") from exc
    return restore.report
