"""Download links of exports: an HMAC over the export, its database and the expiry, under a
key derived from the provisioner's secret (so no other use of that secret can forge one)."""

from __future__ import annotations

import hashlib
import hmac
from uuid import UUID


def _key(secret: bytes) -> bytes:
    return hmac.new(secret, b"shardz export download links v1", hashlib.sha256).digest()


def signature(secret: bytes, database_id: UUID, export_id: UUID, expires: int) -> str:
    message = f"{database_id}\n{export_id}\n{expires}".encode()
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def is_valid(
    secret: bytes, database_id: UUID, export_id: UUID, expires: int, presented: str
) -> bool:
    expected = signature(secret, database_id, export_id, expires)
    return hmac.compare_digest(expected.encode(), presented.encode())
