"""psql meta-commands through pgspecial (pgcli's implementation), on the session's own
connection and as the tenant. Only catalog listings and display toggles run; anything that
would touch a file, the environment or a shell is refused before pgspecial sees it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pgspecial.dbcommands  # noqa: F401  (registers \d, \dt, \l ... with PGSpecial)
import structlog
from pgspecial.main import PGSpecial, parse_special_command
from psycopg import AsyncConnection, Error

from shardz_terminal.services.executor import Canceller, Outcome

log = structlog.get_logger(__name__)

# What runs: listings of the catalog and the display toggles of this session.
ALLOWED = {
    "\\d", "\\dt", "\\dv", "\\dm", "\\ds", "\\di", "\\dn", "\\df", "\\du", "\\dT", "\\dD",
    "\\dx", "\\dp", "\\z", "\\ddp", "\\db", "\\l", "\\list", "\\x", "\\timing", "\\?",
}  # fmt: skip
# Refused with the reason spelled out: each reads or writes a file, the environment or runs
# a program on the terminal's host.
ESCAPES = {
    "\\!", "\\copy", "\\i", "\\ir", "\\include", "\\include_relative", "\\o", "\\out", "\\w",
    "\\write", "\\g", "\\gx", "\\gset", "\\gexec", "\\e", "\\edit", "\\ef", "\\ev", "\\s",
    "\\cd", "\\setenv", "\\set", "\\unset", "\\lo_import", "\\lo_export", "\\lo_list",
    "\\lo_unlink", "\\pager", "\\pset", "\\n", "\\np", "\\ns", "\\nd", "\\watch", "\\c",
    "\\connect", "\\password", "\\prompt", "\\qecho", "\\echo", "\\warn", "\\getenv",
}  # fmt: skip
HELP_EXTRA = [("\\conninfo", "Show the current connection.")]


def command_of(text: str) -> str:
    word = text.strip().split(None, 1)[0] if text.strip() else ""
    # `\dt+`, `\dfS`: the modifiers do not change which command it is
    return word.rstrip("+").rstrip("S") if word.startswith("\\d") else word.rstrip("+")


def refusal(text: str) -> str | None:
    """None when the meta-command may run, otherwise the error to show."""
    command = command_of(text)
    if command == "\\conninfo" or command in ALLOWED:
        if "`" in text:
            return "backticks are refused: the terminal never runs programs"
        return None
    if command in ESCAPES or command.startswith("\\lo_"):
        return (
            f"{command} is refused: the terminal never reads or writes files, the environment "
            "or runs programs"
        )
    return f"unknown or unsupported meta-command {command}; \\? lists them"


class BridgeCursor:
    """The synchronous cursor pgspecial expects, run in a worker thread over the async
    connection on the event loop."""

    def __init__(self, conn: AsyncConnection[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.connection = conn  # pgspecial reads connection.info.server_version
        self.adapters = conn.adapters  # and composes queries with this cursor as context
        self._loop = loop
        self.description: Any = None
        self.rowcount = -1
        self.statusmessage: str | None = None
        self._rows: list[tuple[Any, ...]] = []
        self._pos = 0

    async def _execute(self, query: Any, params: Any) -> None:
        async with self.connection.cursor() as cur:
            await cur.execute(query, params)
            self.description = cur.description
            self.rowcount = cur.rowcount
            self.statusmessage = cur.statusmessage
            self._rows = await cur.fetchall() if cur.description else []
            self._pos = 0

    def execute(self, query: Any, params: Any = None) -> None:
        asyncio.run_coroutine_threadsafe(self._execute(query, params), self._loop).result()

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._pos >= len(self._rows):
            return None
        self._pos += 1
        return self._rows[self._pos - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rest = self._rows[self._pos :]
        self._pos = len(self._rows)
        return rest

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row


def _json(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class MetaCommands:
    def __init__(
        self, conn: AsyncConnection[Any], canceller: Canceller, timeout_seconds: float
    ) -> None:
        self.conn = conn
        self.canceller = canceller
        self.timeout = timeout_seconds
        self.special = PGSpecial()

    @property
    def expanded(self) -> bool:
        return bool(self.special.expanded_output)

    @property
    def timing(self) -> bool:
        return bool(self.special.timing_enabled)

    async def run(self, text: str, conninfo: str) -> list[Outcome]:
        started = time.perf_counter()
        refused = refusal(text)
        if refused is not None:
            return [Outcome(error=refused, sqlstate=None, command=command_of(text))]
        if command_of(text) == "\\conninfo":
            return [Outcome(command="\\conninfo", note=conninfo)]
        cursor = BridgeCursor(self.conn, asyncio.get_running_loop())
        self.canceller.busy = True
        self.canceller.reason = None
        self.canceller.arm(self.timeout)
        try:
            parts = await asyncio.to_thread(self._execute, cursor, text.strip())
        except Error as exc:
            diag = exc.diag
            return [
                Outcome(
                    error=diag.message_primary or str(exc),
                    sqlstate=diag.sqlstate,
                    command=command_of(text),
                )
            ]
        except Exception as exc:  # pgspecial's own failure (e.g. a pattern it cannot parse)
            log.warning("meta-command failed", command=command_of(text), error=repr(exc))
            return [Outcome(error=f"{command_of(text)} failed", command=command_of(text))]
        finally:
            self.canceller.disarm()
            self.canceller.busy = False
            await self.canceller.settle()
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        return [self._outcome(part, text, elapsed) for part in parts]

    def _execute(self, cursor: BridgeCursor, text: str) -> list[Any]:
        command = parse_special_command(text)[0]
        if command == "\\?":
            rows = [(c.syntax, c.description) for c in self._visible()] + HELP_EXTRA
            return [(None, sorted(rows), ["Command", "Description"], None)]
        return list(self.special.execute(cursor, text))

    def _visible(self) -> Sequence[Any]:
        return [
            c
            for name, c in self.special.commands.items()
            if name in ALLOWED and not c.hidden and name != "\\?"
        ] + [self.special.commands["\\?"]]

    @staticmethod
    def _outcome(part: Any, text: str, elapsed: float) -> Outcome:
        title, rows, headers, status = (list(part) + [None] * 4)[:4]
        out = Outcome(command=command_of(text), elapsed_ms=elapsed)
        if rows is not None and headers:
            out.columns = [str(h) for h in headers]
            out.type_oids = [25] * len(out.columns)
            out.rows = [[_json(v) for v in row] for row in rows]
            out.row_count = len(out.rows)
        if isinstance(status, str) and status.startswith("SELECT "):
            status = None  # psql shows no command tag under a listing
        message = "\n".join(str(x) for x in (title, status) if x)
        if message:
            out.note = message
        return out
