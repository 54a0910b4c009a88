"""The object index: listing, lookup, deletion."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.errors import NotFound, ValidationFailed
from shardz_storage.config import StorageSettings
from shardz_storage.services import spaces

MAX_LIMIT = 1000


async def queue_deletion(
    s: AsyncSession, backend_key: str, upload_id: str | None, grace: float
) -> None:
    """Intent to remove a store object, applied by the sweeper (after `grace` seconds, so a
    download already streaming it can finish)."""
    await s.execute(
        text(
            "INSERT INTO deletions (backend_key, upload_id, not_before)"
            " VALUES (:bk, :up, now() + make_interval(secs => :grace))"
        ),
        {"bk": backend_key, "up": upload_id, "grace": grace},
    )


async def get_owned(s: AsyncSession, user_id: uuid.UUID, key: str) -> dict[str, Any]:
    row = (
        (
            await s.execute(
                text(
                    "SELECT key, size, etag, content_type, updated_at, version, backend_key"
                    " FROM objects WHERE user_id = :u AND key = :key"
                ),
                {"u": user_id, "key": key},
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound("no such object")
    return dict(row)


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("invalid cursor", field="cursor") from exc


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def list_page(
    s: AsyncSession, user_id: uuid.UUID, prefix: str, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Keyset pagination in byte order of the keys (the column's collation is C)."""
    after = decode_cursor(cursor) if cursor else ""
    rows = (
        (
            await s.execute(
                text(
                    "SELECT key, size, etag, content_type, updated_at FROM objects"
                    " WHERE user_id = :u AND key > :after"
                    " AND key LIKE :prefix ORDER BY key LIMIT :n"
                ),
                {"u": user_id, "after": after, "prefix": _like_prefix(prefix), "n": limit + 1},
            )
        )
        .mappings()
        .all()
    )
    items = [dict(r) for r in rows[:limit]]
    next_cursor = encode_cursor(items[-1]["key"]) if len(rows) > limit else None
    return items, next_cursor


async def delete(s: AsyncSession, settings: StorageSettings, user_id: uuid.UUID, key: str) -> None:
    await spaces.get(s, settings, user_id)  # a deleted account is refused
    await s.execute(text("SELECT 1 FROM spaces WHERE user_id = :u FOR UPDATE"), {"u": user_id})
    gone = (
        await s.execute(
            text(
                "DELETE FROM objects WHERE user_id = :u AND key = :key RETURNING size, backend_key"
            ),
            {"u": user_id, "key": key},
        )
    ).first()
    if gone is None:
        raise NotFound("no such object")
    await s.execute(
        text(
            "UPDATE spaces SET used_bytes = used_bytes - :size, object_count = object_count - 1,"
            " updated_at = now(), usage_changed_at = coalesce(usage_changed_at, now())"
            " WHERE user_id = :u"
        ),
        {"u": user_id, "size": gone[0]},
    )
    await queue_deletion(s, gone[1], None, settings.delete_grace_seconds)
