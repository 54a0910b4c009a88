"""PQgetlength, which psycopg does not expose: the size of a value without copying it, so a
huge value past the result's byte cap is never copied into Python."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg.pq.abc import PGresult

Length = Callable[[PGresult, int, int], int]


def _library() -> ctypes.CDLL | None:
    # psycopg[binary] ships its own libpq; loading the same file again returns the copy the
    # extension already uses.
    libs = Path(psycopg.__file__).resolve().parent.parent / "psycopg_binary.libs"
    candidates = sorted(libs.glob("libpq*.so*")) if libs.is_dir() else []
    name = str(candidates[0]) if candidates else ctypes.util.find_library("pq")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.PQgetlength.restype = ctypes.c_int
        lib.PQgetlength.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return lib


_lib = _library()


def value_length(res: PGresult, row: int, col: int) -> int:
    if _lib is not None:
        ptr = res.pgresult_ptr  # type: ignore[attr-defined]
        return int(_lib.PQgetlength(ptr, row, col))
    value = res.get_value(row, col)
    return 0 if value is None else len(value)
