"""One terminal session: a WebSocket, one connection as the tenant, queries in order.

The reader takes messages while a query runs (so `cancel` gets through); the runner executes
queries one at a time on the session's connection, so a transaction spans messages."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from psycopg import AsyncConnection
from starlette.websockets import WebSocket, WebSocketState

from shardz_terminal.config import TerminalSettings
from shardz_terminal.domain import protocol
from shardz_terminal.domain.protocol import BadMessage, Incoming
from shardz_terminal.domain.render import aligned, expanded
from shardz_terminal.services.credentials import Credential
from shardz_terminal.services.executor import Canceller, Executor, Limits, Outcome
from shardz_terminal.services.history import Entry, HistoryWriter
from shardz_terminal.services.metacommands import MetaCommands

log = structlog.get_logger(__name__)
QUEUE_DEPTH = 16
DDL_PREFIXES = ("CREATE", "ALTER", "DROP", "\\")
# libpq never shrinks its input buffer: after a value this large the connection is renewed
# (outside a transaction), so the memory goes back.
RENEW_AFTER_VALUE_BYTES = 8 * 1024 * 1024


async def connect(cred: Credential) -> AsyncConnection[Any]:
    """A connection as the platform's login role, acting as the tenant's role: objects are
    created as the tenant, and the tenant changing its own password breaks nothing."""
    conn = await psycopg.AsyncConnection.connect(
        host=cred.host,
        port=cred.port,
        dbname=cred.database,
        user=cred.username,
        password=cred.password,
        autocommit=True,
        connect_timeout=5,
        application_name="shardz-terminal",
    )
    if cred.role != cred.username:
        try:
            await conn.execute(
                psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(cred.role))
            )
        except BaseException:
            await conn.close()
            raise
    return conn


class TerminalSession:
    def __init__(
        self,
        ws: WebSocket,
        conn: AsyncConnection[Any],
        cred: Credential,
        *,
        session_id: uuid.UUID,
        user_id: uuid.UUID,
        database_id: uuid.UUID,
        settings: TerminalSettings,
        history: HistoryWriter,
    ) -> None:
        self.ws = ws
        self.conn = conn
        self.cred = cred
        self.id = session_id
        self.user_id = user_id
        self.database_id = database_id
        self.settings = settings
        self.history = history
        self.limits = Limits(
            max_rows=settings.max_rows,
            max_bytes=settings.max_result_bytes,
            timeout_seconds=settings.statement_timeout_seconds,
            batch_rows=settings.fetch_batch_rows,
        )
        self.canceller = Canceller(conn)
        self.executor = Executor(conn, self.limits, self.canceller)
        self.meta = MetaCommands(conn, self.canceller, settings.statement_timeout_seconds)
        self.queue: asyncio.Queue[Incoming] = asyncio.Queue(QUEUE_DEPTH)
        self.current: Any = None
        self.running = False
        self.user_types: dict[int, str] = {}
        self._send_lock = asyncio.Lock()
        self._closing: tuple[int, str] | None = None
        self._main: asyncio.Task[Any] | None = None

    # -- lifecycle --------------------------------------------------------------------

    async def close(self, code: int, reason: str) -> None:
        """Called from elsewhere (an event, the idle timer): end the session with `code`."""
        if self._closing is None:
            self._closing = (code, reason)
        if self._main is not None and self._main is not asyncio.current_task():
            self._main.cancel()

    async def run(self) -> None:
        self._main = asyncio.current_task()
        runner = asyncio.create_task(self._runner(), name=f"terminal-runner-{self.id}")
        try:
            await self._load_user_types()
            await self._send(
                {
                    "type": "ready",
                    "database": self.cred.database,
                    "database_id": str(self.database_id),
                    "server_version": self.conn.info.parameter_status("server_version") or "",
                    "session_id": str(self.id),
                }
            )
            await self._reader(runner)
        except asyncio.CancelledError:
            if self._closing is None:
                raise
        finally:
            await self._teardown(runner)

    async def _teardown(self, runner: asyncio.Task[None]) -> None:
        # Stop what runs on the server first (a closed socket alone does not stop a running
        # statement), then drop the connection: the backend exits and rolls back.
        if self.canceller.busy:
            with contextlib.suppress(Exception):
                await self.conn.cancel_safe(timeout=3)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.conn.close()
        if self.ws.application_state != WebSocketState.DISCONNECTED:
            code, reason = self._closing or (1000, "")
            with contextlib.suppress(Exception):
                await self.ws.close(code, reason[:120])

    # -- reading ----------------------------------------------------------------------

    async def _reader(self, runner: asyncio.Task[None]) -> None:
        idle = self.settings.idle_timeout_seconds
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=idle)
            except TimeoutError:
                if self.running or not self.queue.empty():
                    continue
                self._closing = (protocol.CLOSE_IDLE, "idle timeout")
                return
            if runner.done():
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode(errors="replace")
            if len(text) > self.settings.max_message_bytes:
                await self._error(None, "message too large (at most 1 MiB)")
                continue
            try:
                incoming = protocol.parse(text)
            except BadMessage as exc:
                await self._error(None, str(exc))
                continue
            await self._dispatch(incoming)

    async def _dispatch(self, msg: Incoming) -> None:
        if msg.type == "query":
            try:
                self.queue.put_nowait(msg)
            except asyncio.QueueFull:
                await self._error(msg.id, "too many queries waiting; wait for done")
        elif msg.type == "cancel":
            if self.running and (msg.id is None or msg.id == self.current):
                self.canceller.request("user")
        elif msg.type == "ping":
            await self._send({"type": "pong", "id": msg.id})
        else:
            await self._error(msg.id, "already authenticated")

    # -- running ----------------------------------------------------------------------

    async def _runner(self) -> None:
        while True:
            msg = await self.queue.get()
            assert msg.sql is not None
            self.current, self.running = msg.id, True
            started_at = datetime.now(UTC)
            t0 = time.perf_counter()
            last: Outcome | None = None
            first_error: str | None = None
            saw_ddl = False
            try:
                async for out in self._outcomes(msg.sql):
                    last = out
                    if out.error is not None and first_error is None:
                        first_error = out.sqlstate or "XX000"
                    saw_ddl = saw_ddl or out.command.upper().startswith(DDL_PREFIXES)
                    await self._send_outcome(msg.id, out)
            except psycopg.OperationalError as exc:
                await self._error(msg.id, f"the database connection was lost: {exc}")
                await self._send({"type": "done", "id": msg.id})
                await self.close(protocol.CLOSE_INTERNAL, "database connection lost")
                return
            except Exception as exc:
                # the connection's state is unknown after this: end the session cleanly
                log.exception("query failed in the terminal", error=repr(exc))
                await self._error(msg.id, "the terminal failed to run this; reconnect")
                await self._send({"type": "done", "id": msg.id})
                await self.close(protocol.CLOSE_INTERNAL, "internal error")
                return
            finally:
                self.running = False
            if self.executor.largest_value > RENEW_AFTER_VALUE_BYTES:
                await self._renew(msg.id)
            await self._send({"type": "done", "id": msg.id})
            self.history.add(
                Entry(
                    user_id=self.user_id,
                    database_id=self.database_id,
                    sql=msg.sql,
                    started_at=started_at,
                    elapsed_ms=round((time.perf_counter() - t0) * 1000, 3),
                    row_count=last.row_count if last is not None else None,
                    sqlstate=first_error,
                )
            )
            self.current = None
            if saw_ddl:
                await self._load_user_types()

    async def _renew(self, msg_id: Any) -> None:
        if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            return  # never lose the tenant's transaction; try again after a later message
        try:
            fresh = await connect(self.cred)
        except psycopg.Error:
            return
        old, self.conn = self.conn, fresh
        self.canceller.conn = fresh
        self.meta.conn = fresh
        self.executor = Executor(fresh, self.limits, self.canceller)
        with contextlib.suppress(Exception):
            await old.close()
        await self._send(
            {
                "type": "notice",
                "id": msg_id,
                "message": "the connection was renewed to release the memory of a large value;"
                " session settings, temporary tables and prepared statements were reset",
            }
        )

    async def _outcomes(self, sql: str) -> Any:
        if sql.lstrip().startswith("\\"):
            for out in await self.meta.run(sql.strip(), self._conninfo()):
                yield out
            return
        async for out in self.executor.run(sql):
            yield out

    def _conninfo(self) -> str:
        return (
            f'You are connected to database "{self.cred.database}" as user '
            f'"{self.cred.role}" on host "{self.cred.host}" at port "{self.cred.port}".'
        )

    def _type_name(self, oid: int) -> str:
        info = self.conn.adapters.types.get(oid)
        if info is not None:
            return str(info.name)
        return self.user_types.get(oid, str(oid))

    async def _load_user_types(self) -> None:
        """Names of the database's own types (builtins come from psycopg's registry)."""
        if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            return  # never add a statement to the tenant's open transaction
        with contextlib.suppress(psycopg.Error):
            cur = await self.conn.execute(
                "SELECT t.oid, pg_catalog.format_type(t.oid, NULL) FROM pg_catalog.pg_type t"
                " WHERE t.oid OPERATOR(pg_catalog.>=) 16384"
                " AND t.typtype OPERATOR(pg_catalog.<>) 'c'"
            )
            self.user_types = {int(oid): str(name) for oid, name in await cur.fetchall()}

    # -- sending ----------------------------------------------------------------------

    async def _send(self, message: dict[str, Any]) -> None:
        await self._send_text(protocol.dumps(message))

    async def _send_text(self, text: str) -> None:
        async with self._send_lock:
            await self.ws.send_text(text)

    async def _error(self, msg_id: Any, message: str, sqlstate: str | None = None) -> None:
        await self._send({"type": "error", "id": msg_id, "message": message, "sqlstate": sqlstate})

    async def _send_outcome(self, msg_id: Any, out: Outcome) -> None:
        if out.error is not None:
            body: dict[str, Any] = {
                "type": "error",
                "id": msg_id,
                "message": out.error,
                "sqlstate": out.sqlstate,
            }
            for key in ("position", "detail", "hint"):
                value = getattr(out, key)
                if value is not None:
                    body[key] = value
            await self._send(body)
            return
        await self._send_text(protocol.fit(self._result(msg_id, out)))

    def _result(self, msg_id: Any, out: Outcome) -> dict[str, Any]:
        return {
            "type": "result",
            "id": msg_id,
            "columns": out.columns,
            "types": [self._type_name(oid) for oid in out.type_oids],
            "rows": out.rows,
            "row_count": out.row_count,
            "command": out.command,
            "text": self._text(out),
            "truncated": out.truncated,
            "elapsed_ms": out.elapsed_ms,
        }

    def _text(self, out: Outcome) -> str:
        budget = self.limits.max_bytes
        parts: list[str] = []
        if out.columns:
            render = self._render(out.columns, out.type_oids, out.rows, out.row_count, budget)
            parts.append(render)
            if out.truncated:
                parts.append(
                    f"(truncated: {len(out.rows)} of {out.row_count} rows shown"
                    + ("; the statement was stopped)" if out.stopped else ")")
                )
        if out.note:
            parts.append(out.note)
        if not parts and out.command:
            parts.append(out.command)
        if self.meta.timing and not out.command.startswith("\\"):
            parts.append(f"Time: {out.elapsed_ms:.3f} ms")
        return "\n".join(parts)

    def _render(
        self,
        columns: list[str],
        oids: list[int],
        rows: Sequence[Sequence[Any]],
        count: int,
        budget: int,
    ) -> str:
        if self.meta.expanded:
            return expanded(columns, rows, count, budget)[0]
        return aligned(columns, oids, rows, count, budget)[0]
