"""CloudEvents 1.0 structured-mode envelope around versioned pydantic payloads."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

SPECVERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"


class Event(BaseModel):
    """An event payload (the CloudEvent `data`). Payloads only ever grow new fields."""

    model_config = ConfigDict(extra="allow", frozen=True)

    event_type: ClassVar[str]
    version: ClassVar[int] = 1


REGISTRY: dict[str, type[Event]] = {}


def register(cls: type[Event]) -> type[Event]:
    REGISTRY[cls.event_type] = cls
    return cls


def envelope(
    event: Event,
    *,
    event_id: str,
    source: str,
    subject: str | None,
    time: datetime,
    traceparent: str | None,
) -> str:
    body: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": event_id,
        "source": source,
        "type": event.event_type,
        "time": time.isoformat(),
        "datacontenttype": "application/json",
        "dataschema": f"urn:shardz:event:{event.event_type}:v{event.version}",
        "data": event.model_dump(mode="json"),
    }
    if subject:
        body["subject"] = subject
    if traceparent:
        body["traceparent"] = traceparent
    return json.dumps(body, separators=(",", ":"))


class CloudEvent(BaseModel):
    """A received CloudEvent; `data` is parsed into the consumer's model separately."""

    model_config = ConfigDict(extra="allow")

    specversion: str
    id: str
    source: str
    type: str
    time: datetime | None = None
    subject: str | None = None
    datacontenttype: str | None = None
    data: dict[str, Any] = {}
    traceparent: str | None = None
