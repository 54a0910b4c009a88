from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.events import Event
from shardz_common.outbox import add_event
from shardz_storage.db.tables import outbox


def emit(session: AsyncSession, event: Event, subject: uuid.UUID | str | None = None) -> None:
    add_event(session, outbox, event, source="storage", subject=str(subject) if subject else None)
