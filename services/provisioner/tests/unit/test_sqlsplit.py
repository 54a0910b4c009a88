"""Statement splitting and screening of imported SQL (no I/O)."""

from __future__ import annotations

import pytest

from shardz_provisioner.domain.screening import SKIP, screen
from shardz_provisioner.domain.sqlsplit import Splitter

ALLOWED = frozenset({"pgcrypto", "uuid-ossp"})


def split(text: str) -> list[str]:
    s = Splitter()
    out = [st.code for line in text.splitlines(True) for st in s.feed(line)]
    last = s.finish()
    return out + ([last.code] if last else [])


def test_semicolons_inside_quotes_comments_and_parentheses_do_not_end_a_statement() -> None:
    sql = (
        "-- a; comment\n"
        "SELECT 'a;b', E'it\\'s;', $$ ; $$, $f$ $$ ; $f$ /* x; /* nested; */ ; */"
        ' FROM "we;ird";\n'
        "CREATE RULE r AS ON INSERT TO t DO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2));\n"
        "SELECT 'multi\nline;\n'; SELECT 2"
    )
    assert split(sql) == [
        "SELECT '', '', '', '' FROM \"we;ird\"",
        "CREATE RULE r AS ON INSERT TO t DO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))",
        "SELECT ''",
        "SELECT 2",
    ]


def test_a_quote_inside_an_identifier_or_dollar_body_cannot_hide_a_statement() -> None:
    # a lexer that ignored dollar quotes would see `ALTER ROLE` as its own statement, and
    # one that ignored them the other way would hide it; either way it reaches the screen
    sql = "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql; ALTER ROLE x SUPERUSER;"
    codes = split(sql)
    assert codes[1] == "ALTER ROLE x SUPERUSER"
    assert screen(codes[1], ALLOWED).action == "refuse"


@pytest.mark.parametrize(
    ("code", "action"),
    [
        ("ALTER ROLE CURRENT_USER SUPERUSER", "refuse"),
        ("alter user x password ''", "refuse"),
        ("CREATE ROLE evil", "refuse"),
        ("ALTER SYSTEM SET work_mem = ''", "refuse"),
        ("CREATE DATABASE other", "refuse"),
        ("SET ROLE postgres", "refuse"),
        ("RESET ROLE", "refuse"),
        ("SET SESSION AUTHORIZATION postgres", "refuse"),
        ("ALTER TABLE public.t OWNER TO postgres", "refuse"),
        ("GRANT ALL ON t TO PUBLIC", "refuse"),
        ("COPY t TO PROGRAM ''", "refuse"),
        ("COPY t FROM ''", "refuse"),
        ("COPY (SELECT 1) TO STDOUT", "refuse"),
        ("COPY public.t (a, b) FROM stdin", "run"),
        ("CREATE EXTENSION adminpack", "refuse"),
        ('CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA public', "run"),
        ("CREATE EXTENSION pgcrypto", "run"),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS ''", "refuse"),
        ("CREATE OR REPLACE FUNCTION f() RETURNS int AS '' LANGUAGE c", "refuse"),
        ("DO '' LANGUAGE plperlu", "refuse"),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS ''", "run"),
        ("CREATE LANGUAGE plpython3u", "refuse"),
        ("CREATE SUBSCRIPTION s CONNECTION '' PUBLICATION p", "refuse"),
        ("ROLLBACK", "refuse"),
        ("BEGIN", SKIP),
        ("COMMIT", SKIP),
        ("CREATE TABLE t (id int)", "run"),
        ("SELECT pg_catalog.set_config('', '', false)", "run"),
    ],
)
def test_screen(code: str, action: str) -> None:
    assert screen(code, ALLOWED).action == action
