"""Which statements of an imported dump are refused before they reach the server.

The tenant's own privileges are the real boundary (the import runs as its role, which cannot
become superuser, run programs or read server files); this screen adds what the role could
do but an import must not: touch roles, other databases or the server's configuration, hand
out ownership or privileges (as `pg_restore --no-owner --no-privileges` would drop them),
create extensions off the allow-list, or break out of the import's single transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass

SKIP = "skip"  # run nothing, report nothing: the import is one transaction already


@dataclass(frozen=True)
class Verdict:
    action: str  # "run", "refuse" or SKIP
    reason: str = ""


RUN = Verdict("run")
UNTRUSTED_LANGUAGES = {
    "c",
    "internal",
    "plpythonu",
    "plpython2u",
    "plpython3u",
    "plperlu",
    "pltclu",
}

_RULES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"^(ROLLBACK|ABORT|SAVEPOINT|RELEASE|PREPARE TRANSACTION|COMMIT PREPARED)\b"),
        "transaction control: an import runs as one transaction",
    ),
    (re.compile(r"^(CREATE|ALTER|DROP) (ROLE|USER|GROUP)\b"), "roles are outside the database"),
    (re.compile(r"^ALTER SYSTEM\b"), "server configuration is outside the database"),
    (re.compile(r"^(CREATE|ALTER|DROP) DATABASE\b"), "databases are created by the platform"),
    (re.compile(r"^(CREATE|ALTER|DROP) TABLESPACE\b"), "tablespaces are outside the database"),
    (
        re.compile(r"^(SET|RESET)( SESSION| LOCAL)? (ROLE|SESSION AUTHORIZATION|ALL)\b"),
        "an import runs as the database's owner only",
    ),
    (re.compile(r"^SET SESSION AUTHORIZATION\b"), "an import runs as the database's owner only"),
    (re.compile(r"\bOWNER TO\b"), "ownership changes are not imported"),
    (
        re.compile(r"^(GRANT|REVOKE|ALTER DEFAULT PRIVILEGES|SECURITY LABEL)\b"),
        "privilege changes are not imported",
    ),
    (
        re.compile(r"^CREATE( OR REPLACE)?( TRUSTED)?( PROCEDURAL)? LANGUAGE\b"),
        "languages are installed by the platform",
    ),
    (
        re.compile(
            r"^(CREATE|ALTER|DROP) (SUBSCRIPTION|PUBLICATION|EVENT TRIGGER|SERVER|USER MAPPING"
            r"|FOREIGN DATA WRAPPER)\b"
        ),
        "connections outside the database are not imported",
    ),
    (re.compile(r"^(LOAD|CHECKPOINT)\b"), "server-level commands are not imported"),
]
_TRANSACTION = re.compile(r"^(BEGIN|START TRANSACTION|COMMIT|END)\b( (WORK|TRANSACTION))?$")
_COPY_IN = re.compile(r"^COPY [^;]* FROM STDIN\b")
_EXTENSION = re.compile(r'^CREATE EXTENSION (IF NOT EXISTS )?(?:"([^"]+)"|([A-Za-z0-9_-]+))', re.I)
_FUNCTION = re.compile(r"^(CREATE( OR REPLACE)? (FUNCTION|PROCEDURE)|DO)\b")
_LANGUAGE = re.compile(r'\bLANGUAGE "?([A-Za-z0-9_]+)"?', re.I)


def command(code: str) -> str:
    """The statement's leading keywords, e.g. `ALTER ROLE`, for naming what was refused."""
    words = re.findall(r"[A-Za-z]+", code[:80])
    return " ".join(words[:2]).upper() or "statement"


def screen(code: str, extensions: frozenset[str]) -> Verdict:
    """`code` is a statement without comments or quoted text (sqlsplit.Statement.code)."""
    upper = code.upper()
    if _TRANSACTION.match(upper):
        return Verdict(SKIP)
    for pattern, reason in _RULES:
        if pattern.search(upper):
            return Verdict("refuse", reason)
    if upper.startswith("COPY "):
        if not _COPY_IN.match(upper) or re.search(r"\bPROGRAM\b", upper):
            return Verdict("refuse", "COPY to or from a program or a server file")
        return RUN
    m = _EXTENSION.match(code)
    if m:
        name = (m.group(2) or m.group(3) or "").lower()
        if name not in extensions:
            return Verdict("refuse", f"extension {name} is not on the allow-list")
        return RUN
    if _FUNCTION.match(upper):
        lang = _LANGUAGE.search(code)
        if lang and lang.group(1).lower() in UNTRUSTED_LANGUAGES:
            return Verdict("refuse", f"untrusted language {lang.group(1).lower()}")
    return RUN


def copy_is_from_stdin(code: str) -> bool:
    return bool(_COPY_IN.match(code.upper()))
