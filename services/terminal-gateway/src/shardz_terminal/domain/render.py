"""Values as JSON (CONTRACT section 8) and psql-style text, from PostgreSQL's text format.
Pure functions: no I/O."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from psycopg import pq

JsonValue = Any
# A cell wider than this is cut in the text rendering only (the JSON row keeps it whole):
# one long value would otherwise pad every line of an aligned table to its width.
TEXT_CELL_MAX = 1000

INTS = {20, 21, 23, 26, 28, 29}  # int8, int2, int4, oid, xid, cid
FLOATS = {700, 701}
NUMERIC = 1700
BOOL = 16
BYTEA = 17
DATETIMES = {1082, 1083, 1114, 1184, 1266}
RIGHT_ALIGNED = INTS | FLOATS | {NUMERIC, 790}

_escaping = pq.Escaping()


def bytea_hex(raw: bytes) -> str:
    """`\\x` hex whatever `bytea_output` the session chose."""
    if raw.startswith(b"\\x"):
        return raw.decode("ascii")
    return "\\x" + _escaping.unescape_bytea(raw).hex()


def to_json(
    oid: int, raw: bytes | None, load_datetime: Callable[[int, bytes], Any] | None = None
) -> JsonValue:
    if raw is None:
        return None
    if oid in INTS:
        return int(raw)
    if oid == BOOL:
        return raw == b"t"
    if oid in FLOATS:
        value = float(raw)
        return value if math.isfinite(value) else raw.decode()
    if oid == BYTEA:
        return bytea_hex(raw)
    if oid in DATETIMES and load_datetime is not None:
        try:
            return load_datetime(oid, raw).isoformat()
        except Exception:  # infinity, a DateStyle the loader does not read: keep the text
            return raw.decode(errors="replace")
    # numeric stays a string (exact), and so does everything else
    return raw.decode(errors="replace")


def _cell(value: JsonValue) -> str:
    if value is None:
        return ""
    if value is True:
        return "t"
    if value is False:
        return "f"
    text = str(value).replace("\r", "").replace("\n", "↵")
    if len(text) > TEXT_CELL_MAX:
        text = text[:TEXT_CELL_MAX] + "…"
    return text


def _footer(count: int) -> str:
    return "(1 row)" if count == 1 else f"({count} rows)"


def aligned(
    columns: Sequence[str],
    oids: Sequence[int],
    rows: Sequence[Sequence[JsonValue]],
    row_count: int,
    budget: int,
) -> tuple[str, bool]:
    """psql's aligned format; (text, cut) where cut means the budget stopped it early."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        for i, c in enumerate(row):
            if len(c) > widths[i]:
                widths[i] = len(c)
    header = "|".join(f" {name.center(widths[i])} " for i, name in enumerate(columns))
    rule = "+".join("-" * (w + 2) for w in widths)
    lines = [header.rstrip(), rule]
    size = len(header) + len(rule)
    cut = False
    for row in cells:
        parts = []
        for i, c in enumerate(row):
            if oids[i] in RIGHT_ALIGNED:
                parts.append(f" {c.rjust(widths[i])} ")
            else:
                parts.append(f" {c.ljust(widths[i])} ")
        line = "|".join(parts).rstrip()
        size += len(line) + 1
        if size > budget:
            cut = True
            lines.append("(output cut)")
            break
        lines.append(line)
    lines.append(_footer(row_count))
    return "\n".join(lines), cut


def expanded(
    columns: Sequence[str], rows: Sequence[Sequence[JsonValue]], row_count: int, budget: int
) -> tuple[str, bool]:
    """psql's `\\x` format: one block per record."""
    width = max((len(c) for c in columns), default=0)
    lines: list[str] = []
    size = 0
    cut = False
    for n, row in enumerate(rows, 1):
        block = [f"-[ RECORD {n} ]" + "-" * max(0, width - 10)]
        block += [
            f"{name.ljust(width)} | {_cell(v)}".rstrip()
            for name, v in zip(columns, row, strict=False)
        ]
        size += sum(len(b) + 1 for b in block)
        if size > budget:
            cut = True
            lines.append("(output cut)")
            break
        lines += block
    if not rows:
        lines.append("(0 rows)")
    elif row_count != len(rows):
        lines.append(_footer(row_count))
    return "\n".join(lines), cut
