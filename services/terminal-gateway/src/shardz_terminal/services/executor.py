"""Running a message's SQL on the tenant's connection, with caps the tenant cannot lift.

The text goes to the server as one simple-query message, so PostgreSQL splits the
statements (and runs them in one implicit transaction unless the text says otherwise, as
psql does). libpq hands rows over in chunks (chunked rows mode), so memory follows the
batch, not the result: once a result passes `max_rows` or `max_result_bytes`, the rest is
discarded, and if it keeps coming the statement is stopped with a protocol cancel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from psycopg import AsyncConnection, pq
from psycopg.adapt import Transformer
from psycopg.generators import WAIT_R, WAIT_W, fetch, send
from psycopg.pq.abc import PGresult

from shardz_terminal.domain.render import DATETIMES, JsonValue, to_json
from shardz_terminal.services.libpq import value_length

ES = pq.ExecStatus
QUERY_CANCELED = "57014"
# Once a result is over its cap, rows still arriving are discarded for this long before the
# statement is stopped: a result just over the cap ends by itself without a cancel (which
# would abort an explicit transaction).
DRAIN_GRACE_SECONDS = 0.2
COPY_IN_REFUSED = (
    "COPY FROM STDIN is not available in the terminal; load data with INSERT, or with psql "
    "and your database's own credentials"
)

CancelReason = Literal["user", "timeout", "truncated"]


@dataclass(frozen=True)
class Limits:
    max_rows: int
    max_bytes: int
    timeout_seconds: float
    batch_rows: int = 500


@dataclass
class Outcome:
    """One statement's result or error."""

    columns: list[str] = field(default_factory=list)
    type_oids: list[int] = field(default_factory=list)
    rows: list[list[JsonValue]] = field(default_factory=list)
    row_count: int = 0
    command: str = ""
    truncated: bool = False
    stopped: bool = False  # the terminal cancelled it to enforce a cap
    elapsed_ms: float = 0.0
    error: str | None = None
    sqlstate: str | None = None
    position: int | None = None
    detail: str | None = None
    hint: str | None = None
    # text shown instead of a table (a meta-command's message)
    note: str | None = None
    _bytes: int = 0


class Canceller:
    """Cancels the statement running on `conn` with a protocol cancel, and remembers why."""

    def __init__(self, conn: AsyncConnection[Any]) -> None:
        self.conn = conn
        self.reason: CancelReason | None = None
        self.busy = False
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self, reason: CancelReason) -> None:
        if not self.busy or self.reason is not None:
            return
        self.reason = reason
        task = asyncio.create_task(self._send())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self) -> None:
        try:
            await self.conn.cancel_safe(timeout=5.0)
        except Exception:  # the server may be gone; the session notices on its own
            return

    def arm(self, seconds: float) -> None:
        self.disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(seconds, self.request, "timeout")

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def settle(self) -> None:
        """Wait for cancel requests in flight (they open their own connection)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _fields(res: PGresult) -> tuple[list[str], list[int]]:
    names = []
    oids = []
    for i in range(res.nfields):
        name = res.fname(i)
        names.append(name.decode(errors="replace") if name else "?column?")
        oids.append(res.ftype(i))
    return names, oids


def _error(out: Outcome, res: PGresult) -> None:
    def field_(code: pq.DiagnosticField) -> str | None:
        value = res.error_field(code)
        return value.decode(errors="replace") if value else None

    primary = field_(pq.DiagnosticField.MESSAGE_PRIMARY)
    out.error = primary or res.get_error_message().strip() or "the statement failed"
    out.sqlstate = field_(pq.DiagnosticField.SQLSTATE)
    position = field_(pq.DiagnosticField.STATEMENT_POSITION)
    out.position = int(position) if position and position.isdigit() else None
    out.detail = field_(pq.DiagnosticField.MESSAGE_DETAIL)
    out.hint = field_(pq.DiagnosticField.MESSAGE_HINT)


def _command_count(tag: str) -> int | None:
    last = tag.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else None


class Executor:
    def __init__(
        self, conn: AsyncConnection[Any], limits: Limits, canceller: Canceller | None = None
    ) -> None:
        self.conn = conn
        self.limits = limits
        self.canceller = canceller or Canceller(conn)
        self._tx = Transformer(conn)
        self._loaders: dict[int, Callable[[bytes], Any]] = {}
        # the largest value libpq received: its input buffer keeps that size afterwards
        self.largest_value = 0

    def _load_datetime(self, oid: int, raw: bytes) -> Any:
        loader = self._loaders.get(oid)
        if loader is None:
            loader = self._tx.get_loader(oid, pq.Format.TEXT).load
            self._loaders[oid] = loader
        return loader(raw)

    async def run(self, sql: str) -> AsyncIterator[Outcome]:
        """Yield one Outcome per statement, in order. Holds the connection's lock."""
        pgconn = self.conn.pgconn
        canceller = self.canceller
        async with self.conn.lock:
            pgconn.send_query(sql.encode())
            await self.conn.wait(send(pgconn))
            pgconn.set_chunked_rows_mode(self.limits.batch_rows)
            canceller.reason = None
            canceller.busy = True
            # One allowance for the whole message: the server flushes the results of a
            # multi-statement text only at its end, so no statement's start is visible here.
            canceller.arm(self.limits.timeout_seconds)
            started = time.perf_counter()
            out = Outcome()
            over_since: float | None = None
            try:
                while True:
                    res = await self.conn.wait(fetch(pgconn))
                    if res is None:
                        break
                    status = res.status
                    if status == ES.TUPLES_CHUNK or status == ES.SINGLE_TUPLE:
                        if not out.columns and res.nfields:
                            out.columns, out.type_oids = _fields(res)
                        self._take_rows(out, res)
                        tag = res.command_status
                        if tag:
                            out.command = tag.decode()
                        if out.truncated:
                            now = time.perf_counter()
                            over_since = over_since or now
                            if now - over_since > DRAIN_GRACE_SECONDS:
                                canceller.request("truncated")
                        res.clear()
                        continue
                    if status == ES.COPY_OUT:
                        out.columns, out.type_oids = ["copy"], [25]
                        await self._copy_out(out)
                        continue
                    if status == ES.COPY_IN:
                        await self._copy_in_refuse()
                        continue
                    # a statement's last result
                    if status == ES.TUPLES_OK:
                        if not out.columns and res.nfields:
                            out.columns, out.type_oids = _fields(res)
                        if res.ntuples:
                            self._take_rows(out, res)
                    elif status == ES.FATAL_ERROR:
                        if (
                            canceller.reason == "truncated"
                            and out.truncated
                            and res.error_field(pq.DiagnosticField.SQLSTATE)
                            == QUERY_CANCELED.encode()
                        ):
                            out.stopped = True
                        else:
                            _error(out, res)
                            if canceller.reason == "timeout" and out.sqlstate == QUERY_CANCELED:
                                out.error = (
                                    "statement stopped: it ran longer than the terminal's "
                                    f"limit of {self.limits.timeout_seconds:g} s"
                                )
                    tag = res.command_status
                    if tag:
                        out.command = tag.decode()
                    count = _command_count(out.command) if out.command else None
                    if out.error is None and count is not None and not out.stopped:
                        out.row_count = count
                    elif out.error is None:
                        out.row_count = max(out.row_count, len(out.rows))
                    out.elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
                    res.clear()
                    if status != ES.EMPTY_QUERY:
                        yield out
                    out = Outcome()
                    over_since = None
                    started = time.perf_counter()
            finally:
                canceller.disarm()
                canceller.busy = False
                await canceller.settle()

    def _take_rows(self, out: Outcome, res: PGresult) -> None:
        ntuples = res.ntuples
        if out.truncated:
            out.row_count += ntuples
            return
        nfields = res.nfields
        oids = out.type_oids
        limits = self.limits
        load = self._load_datetime
        for r in range(ntuples):
            if len(out.rows) >= limits.max_rows:
                out.truncated = True
                out.row_count += ntuples - r
                return
            size = 2
            row: list[JsonValue] = []
            for c in range(nfields):
                length = value_length(res, r, c)
                if length > self.largest_value:
                    self.largest_value = length
                size += length + 3
                if out._bytes + size > limits.max_bytes:
                    # a value past the budget is never copied out of libpq's result
                    out.truncated = True
                    out.row_count += ntuples - r
                    return
                raw = res.get_value(r, c)
                row.append(to_json(oids[c], raw, load if oids[c] in DATETIMES else None))
            out._bytes += size
            out.rows.append(row)
            out.row_count += 1

    async def _copy_out(self, out: Outcome) -> None:
        """`COPY ... TO STDOUT`: each line becomes a row of one text column."""
        pgconn = self.conn.pgconn

        def gen() -> Any:
            while True:
                nbytes, data = pgconn.get_copy_data(1)
                if nbytes == 0:
                    while not (yield WAIT_R):
                        continue
                    pgconn.consume_input()
                    continue
                return data if nbytes > 0 else None

        while True:
            data = await self.conn.wait(gen())
            if data is None:
                return  # the COMMAND_OK with the COPY tag follows as a regular result
            line = bytes(data).rstrip(b"\n")
            full = len(out.rows) >= self.limits.max_rows
            if out.truncated or full or out._bytes + len(line) + 5 > self.limits.max_bytes:
                out.truncated = True
            else:
                out._bytes += len(line) + 5
                out.rows.append([line.decode(errors="replace")])
            if out.truncated:
                self.canceller.request("truncated")

    async def _copy_in_refuse(self) -> None:
        pgconn = self.conn.pgconn

        def gen() -> Any:
            while pgconn.put_copy_end(COPY_IN_REFUSED.encode()) == 0:
                while not (yield WAIT_W):
                    continue
            while True:
                while not (yield WAIT_W):
                    continue
                if pgconn.flush() == 0:
                    return None

        await self.conn.wait(gen())
