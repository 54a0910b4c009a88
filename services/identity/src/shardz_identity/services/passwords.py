"""argon2id password hashing, off the event loop."""

from __future__ import annotations

import os

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Each hash takes 64 MiB and a core for tens of milliseconds: a burst of sign-ups or logins
# queues here instead of exhausting memory.
_limiter = anyio.CapacityLimiter(2 * (os.cpu_count() or 1))
# Compared against when the account does not exist, so timing does not reveal accounts.
_DUMMY = _hasher.hash("not-a-real-password-0000")


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hasher.hash, password, limiter=_limiter)


async def verify_password(stored: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(stored or _DUMMY, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(check, limiter=_limiter)
