"""Split SQL text into statements the way psql does, fed line by line.

psql's lexer (psqlscan.l) ends a statement at a `;` outside quotes, comments and parentheses;
this follows the same rules: '' strings (standard_conforming_strings on, as pg_dump sets it),
E'' strings with backslash escapes, "" identifiers, $tag$ dollar quotes, -- and nested /* */
comments. A statement the server would read differently than this lexer reaches it alone
over the extended protocol, which refuses a second command, so a mismatch is an error and
never a hidden statement."""

from __future__ import annotations

import re
from dataclasses import dataclass

_IDENT = r"A-Za-z_\u0080-\uffff"
# the next character that can change the lexer's state, in normal text
_NORMAL = re.compile(
    rf"[;'\"()]|--|/\*|(?<![{_IDENT}0-9$])[Ee]'|(?<![{_IDENT}0-9$])\$(?:[{_IDENT}][{_IDENT}0-9]*)?\$"
)
_BLOCK = re.compile(r"/\*|\*/")
_ESTRING = re.compile(r"\\.|'", re.DOTALL)


MAX_STATEMENT_CHARS = 64 * 1024 * 1024


class StatementTooLong(ValueError):
    pass


@dataclass(frozen=True)
class Statement:
    text: str  # as written, comments included, without the final `;`
    code: str  # the same with comments removed and every quoted text emptied (for screening)
    line: int  # where it starts (1-based)


class Splitter:
    def __init__(self) -> None:
        self._text: list[str] = []
        self._code: list[str] = []
        self._state = "normal"  # normal | quote | estring | ident | dollar | block | line
        self._tag = ""
        self._depth = 0  # parentheses, or nested block comments
        self._line = 0
        self._start: int | None = None
        self._size = 0

    @property
    def idle(self) -> bool:
        """Between statements: nothing but whitespace or comments seen since the last one."""
        return self._state in ("normal", "line") and not "".join(self._code).strip()

    @property
    def outside_quotes(self) -> bool:
        """Not inside a quoted text or a comment: where psql would see a meta-command."""
        return self._state == "normal"

    def skip_line(self) -> None:
        """A line taken out of the input (it still counts for line numbers)."""
        self._line += 1

    def feed(self, line: str) -> list[Statement]:
        """Take one line (with its newline) and return the statements it completed."""
        self._line += 1
        done: list[Statement] = []
        pos = 0
        while pos < len(line):
            pos = self._step(line, pos, done)
        return done

    def finish(self) -> Statement | None:
        """What is left at the end of the input (a last statement without `;`)."""
        text, code = "".join(self._text), "".join(self._code)
        self._text, self._code = [], []
        if not code.strip():
            return None
        return Statement(text.strip(), " ".join(code.split()), self._start or self._line)

    def _keep(self, text: str, code: str | None = None) -> None:
        if self._start is None and text.strip():
            self._start = self._line
        self._size += len(text)
        if self._size > MAX_STATEMENT_CHARS:
            raise StatementTooLong(f"a statement longer than {MAX_STATEMENT_CHARS} characters")
        self._text.append(text)
        if code is not None:
            self._code.append(code)

    def _step(self, line: str, pos: int, done: list[Statement]) -> int:
        state = self._state
        if state == "line":
            self._state = "normal"
            self._keep(line[pos:])
            return len(line)
        if state == "normal":
            m = _NORMAL.search(line, pos)
            if m is None:
                self._keep(line[pos:], line[pos:])
                return len(line)
            self._keep(line[pos : m.start()], line[pos : m.start()])
            tok = m.group()
            if tok == ";" and self._depth == 0:
                text, code = "".join(self._text), "".join(self._code)
                if code.strip():
                    done.append(Statement(text.strip(), " ".join(code.split()), self._start or 0))
                self._text, self._code, self._start, self._size = [], [], None, 0
                return m.end()
            if tok in ("(", ")"):
                self._depth = max(0, self._depth + (1 if tok == "(" else -1))
                self._keep(tok, tok)
            elif tok == ";":
                self._keep(tok, tok)
            elif tok == "--":
                self._state = "line"
                self._keep(tok)
            elif tok == "/*":
                self._state, self._depth_saved, self._depth = "block", self._depth, 1
                self._keep(tok)
            elif tok == "'":
                self._state = "quote"
                self._keep(tok, "''")
            elif tok == '"':
                self._state = "ident"  # a name, not data: kept in `code`
                self._keep(tok, tok)
            elif tok[0] in "Ee":
                self._state = "estring"
                self._keep(tok, "''")
            else:
                self._state, self._tag = "dollar", tok
                self._keep(tok, "''")
            return m.end()
        if state in ("quote", "ident"):
            ident = state == "ident"
            end = line.find('"' if ident else "'", pos)
            if end < 0:
                self._keep(line[pos:], line[pos:] if ident else None)
                return len(line)
            # a doubled quote ends the text and opens it again: the same in effect
            self._state = "normal"
            self._keep(line[pos : end + 1], line[pos : end + 1] if ident else None)
            return end + 1
        if state == "estring":
            m = _ESTRING.search(line, pos)
            while m is not None and m.group() != "'":
                m = _ESTRING.search(line, m.end())
            if m is None:
                self._keep(line[pos:])
                return len(line)
            self._state = "normal"
            self._keep(line[pos : m.end()])
            return m.end()
        if state == "dollar":
            end = line.find(self._tag, pos)
            if end < 0:
                self._keep(line[pos:])
                return len(line)
            self._state = "normal"
            self._keep(line[pos : end + len(self._tag)])
            return end + len(self._tag)
        # block comment, nested
        m = _BLOCK.search(line, pos)
        if m is None:
            self._keep(line[pos:])
            return len(line)
        self._keep(line[pos : m.end()])
        self._depth += 1 if m.group() == "/*" else -1
        if self._depth == 0:
            self._state, self._depth = "normal", self._depth_saved
            self._keep("", " ")
        return m.end()

    _depth_saved = 0
