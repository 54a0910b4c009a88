"""Apply a SQL dump to a tenant database as its owner, statement by statement.

A custom-format archive is first rendered to SQL by the matching `pg_restore --no-owner
--no-privileges -f -`; plain dumps are read as they are. Every statement is screened
(domain/screening.py), then run inside its own savepoint of ONE transaction: a statement the
screen or the server refuses is rolled back to its savepoint and reported, the rest lands,
and a crash or a damaged dump leaves the database exactly as it was (the job can run again).
psql meta-commands (lines starting with a backslash) are never run; COPY ... FROM stdin data
is passed to the server through the COPY protocol, never interpreted."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from shardz_provisioner.domain.screening import SKIP, command, copy_is_from_stdin, screen
from shardz_provisioner.domain.sqlsplit import Splitter, Statement, StatementTooLong

MAX_REPORTED = 200  # refusals listed in full; the count covers the rest
COPY_CHUNK = 1024 * 1024
_HEADER = re.compile(r"^-- (?:Data for )?Name: (.*?); Type: (.*?); Schema: (.*?);")
_SILENT_META = re.compile(r"^\\(restrict|unrestrict)\b")  # pg_dump's own psql guard lines


class DumpUnreadable(Exception):
    """The dump cannot be read to the end: nothing of it is kept."""


@dataclass
class Report:
    applied: int = 0
    refused: list[dict[str, str]] = field(default_factory=list)
    refused_count: int = 0

    def refuse(self, obj: str, reason: str) -> None:
        self.refused_count += 1
        if len(self.refused) < MAX_REPORTED:
            self.refused.append({"object": obj[:300], "reason": reason[:500]})


class Restore:
    def __init__(
        self,
        conn: psycopg.Connection,
        role: str,
        extensions: frozenset[str],
        check: Callable[[], None] = lambda: None,
        complete: Callable[[], None] | None = None,
    ) -> None:
        """`check` raises to stop between statements; `complete` raises to roll everything
        back when the input turns out to be incomplete (run just before the commit)."""
        self.conn = conn
        self.check = check
        self.complete = complete
        self.role = role
        self.extensions = extensions
        self.report = Report()
        self._object: str | None = None  # the pg_dump entry being read, from its header
        self._line = 0

    def cancel(self) -> None:
        """From another thread: stop the statement running now (the job is out of time)."""
        self.conn.cancel()

    def run(self, lines: Iterator[bytes]) -> None:
        """Apply everything and commit; raise (nothing kept) if the dump cannot be read."""
        self.conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(self.role)))
        with self.conn.transaction():
            try:
                self._apply(lines)
            except StatementTooLong as exc:
                raise DumpUnreadable(str(exc)) from exc
            if self.complete is not None:
                self.complete()

    def _apply(self, lines: Iterator[bytes]) -> None:
        splitter = Splitter()
        for raw in lines:
            self._line += 1
            try:
                line = raw.decode()
            except UnicodeDecodeError as exc:
                raise DumpUnreadable(
                    f"line {self._line} is neither a custom-format archive nor UTF-8 SQL"
                ) from exc
            if splitter.idle:
                header = _HEADER.match(line)
                if header:
                    name, kind, schema = header.groups()
                    self._object = f"{kind} {name}" if schema == "-" else f"{kind} {schema}.{name}"
            if splitter.outside_quotes and line.lstrip().startswith("\\"):
                splitter.skip_line()
                if not _SILENT_META.match(line.lstrip()):
                    word = line.lstrip().split(maxsplit=1)[0][:40]
                    self.report.refuse(
                        f"{word} (line {self._line})", "psql meta-commands are not run"
                    )
                continue
            for statement in splitter.feed(line):
                self._statement(statement, lines)
        last = splitter.finish()
        if last is not None:
            self._statement(last, lines)

    def _name(self, statement: Statement) -> str:
        what = self._object or command(statement.code)
        return f"{what} (line {self._line})"

    def _statement(self, statement: Statement, lines: Iterator[bytes]) -> None:
        self.check()
        verdict = screen(statement.code, self.extensions)
        is_copy = copy_is_from_stdin(statement.code)
        if verdict.action == SKIP:
            return
        if verdict.action == "refuse":
            self.report.refuse(self._name(statement), verdict.reason)
            if is_copy:
                for _ in _copy_data(lines, self):
                    pass
            return
        name = self._name(statement)
        data = _copy_data(lines, self) if is_copy else None
        try:
            with self.conn.transaction():
                if data is None:
                    # binary: the extended protocol, which refuses a second command
                    self.conn.execute(statement.text, binary=True)
                else:
                    with self.conn.cursor().copy(statement.text) as copy:
                        for chunk in data:
                            copy.write(chunk)
        except psycopg.Error as exc:
            if self.conn.broken or isinstance(exc, psycopg.errors.QueryCanceled):
                raise
            self.report.refuse(name, exc.diag.message_primary or type(exc).__name__)
            if data is not None:
                for _ in data:  # the rest of the refused table's rows
                    pass
            return
        self.report.applied += 1


def _copy_data(lines: Iterator[bytes], restore: Restore) -> Iterator[bytes]:
    """The rows after a COPY ... FROM stdin, up to its `\\.` line, in chunks: passed on as
    bytes (the server checks their encoding), never decoded here."""
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        restore._line += 1
        if line.rstrip(b"\r\n") == b"\\.":
            break
        chunk.append(line)
        size += len(line)
        if size >= COPY_CHUNK:
            yield b"".join(chunk)
            chunk, size = [], 0
    if chunk:
        yield b"".join(chunk)
