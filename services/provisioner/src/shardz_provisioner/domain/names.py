"""Generated server-side names and credentials; nothing here derives from user input."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from urllib.parse import quote

DB_PREFIX = "shz_d_"
ROLE_PREFIX = "shz_u_"
# The platform-owned login role of each database, used by the terminal gateway only.
TERMINAL_ROLE_PREFIX = "shz_t_"
# A move's publication, subscription, replication slot and apply role share one name.
MOVE_PREFIX = "shz_m_"
SCRAM_ITERATIONS = 4096


def db_name(database_id: uuid.UUID) -> str:
    return f"{DB_PREFIX}{database_id.hex}"


def role_name(database_id: uuid.UUID) -> str:
    return f"{ROLE_PREFIX}{database_id.hex}"


def terminal_role_name(database_id: uuid.UUID) -> str:
    return f"{TERMINAL_ROLE_PREFIX}{database_id.hex}"


def terminal_password(secret_key: bytes, database_id: uuid.UUID) -> str:
    """Derived, not stored: every provisioner process computes the same one, and nothing a
    tenant does (it cannot alter this role) changes it."""
    digest = hmac.new(secret_key, b"terminal-login:" + database_id.bytes, hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def move_name(move_id: uuid.UUID) -> str:
    return f"{MOVE_PREFIX}{move_id.hex}"


def new_password() -> str:
    return secrets.token_urlsafe(24)


def scram_verifier(password: str, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier Postgres stores (RFC 5802/7677): the server only ever sees
    this, so the plaintext never reaches its logs or pg_stat_activity."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


async def scram_verifier_async(password: str) -> str:
    """The PBKDF2 rounds take milliseconds of CPU: compute them off the event loop."""
    import anyio

    return await anyio.to_thread.run_sync(scram_verifier, password)


def uri(username: str, password: str | None, host: str, port: int, database: str) -> str:
    auth = quote(username, safe="")
    if password is not None:
        auth += ":" + quote(password, safe="")
    return f"postgresql://{auth}@{host}:{port}/{database}"
