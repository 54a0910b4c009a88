"""The messages of CONTRACT section 8: parsing what the client sends, shaping what we send.
No I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_SERVER_MESSAGE = 16 * 1024 * 1024

# close codes (CONTRACT section 8, and ours for the cases it leaves open)
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403  # database deleted or suspended, account suspended, key revoked
CLOSE_NOT_FOUND = 4404
CLOSE_IDLE = 4408
CLOSE_TOO_MANY = 4429
CLOSE_UNAVAILABLE = 1013  # try again later
CLOSE_INTERNAL = 1011


class BadMessage(ValueError):
    pass


@dataclass(frozen=True)
class Incoming:
    type: str
    id: Any = None
    sql: str | None = None
    token: str | None = None


def parse(text: str) -> Incoming:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BadMessage("a message is a JSON object") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise BadMessage('a message is a JSON object with a "type"')
    kind = data["type"]
    msg_id = data.get("id")
    if msg_id is not None and not isinstance(msg_id, str | int):
        raise BadMessage('"id" is a string or a number')
    if kind == "query":
        sql = data.get("sql")
        if not isinstance(sql, str):
            raise BadMessage('a query message has "sql", a string')
        return Incoming("query", msg_id, sql=sql)
    if kind == "cancel":
        return Incoming("cancel", msg_id)
    if kind == "auth":
        token = data.get("token")
        if not isinstance(token, str):
            raise BadMessage('an auth message has "token", a string')
        return Incoming("auth", msg_id, token=token)
    if kind == "ping":
        return Incoming("ping", msg_id)
    raise BadMessage(f"unknown message type {kind!r}")


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def fit(message: dict[str, Any], limit: int = MAX_SERVER_MESSAGE) -> str:
    """Serialise a result, cutting rows (and then text) until it is within `limit` bytes."""
    text = dumps(message)
    while len(text.encode()) > limit:
        rows = message.get("rows") or []
        message["truncated"] = True
        if len(message.get("text") or "") > 2048:
            message["text"] = message["text"][:1024] + "\n(output cut)"
        elif rows:
            message["rows"] = rows[: len(rows) // 2]
        else:
            message["text"] = "(output cut)"
            text = dumps(message)
            break
        text = dumps(message)
    return text
