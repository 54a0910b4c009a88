"""Presigned download links: an HMAC over user, key, object version and expiry."""

from __future__ import annotations

import hashlib
import hmac
from uuid import UUID


def signature(secret: bytes, user_id: UUID, key: str, version: UUID, expires: int) -> str:
    message = "\n".join([str(user_id), str(version), str(expires), key]).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def is_valid(
    secret: bytes, user_id: UUID, key: str, version: UUID, expires: int, presented: str
) -> bool:
    expected = signature(secret, user_id, key, version, expires)
    return hmac.compare_digest(expected.encode(), presented.encode())
