"""`terminal.<base>/v1/terminal/{database_id}` (CONTRACT section 8): the handshake checks
(origin, credential, ownership, session cap) before a tenant connection is opened."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import psycopg
import structlog
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from shardz_common.auth import Authenticator, Principal
from shardz_common.errors import AccountSuspended, NotFound, Unauthenticated, Unavailable
from shardz_terminal.config import TerminalSettings
from shardz_terminal.domain import protocol
from shardz_terminal.services import credentials
from shardz_terminal.services.registry import Live, SessionRegistry
from shardz_terminal.services.session import TerminalSession, connect

log = structlog.get_logger(__name__)
router = APIRouter()


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await ws.close(code, reason)


async def _principal(ws: WebSocket, auth: Authenticator, timeout: float) -> Principal:
    """From the handshake's Authorization header, else from a first `auth` message."""
    header = ws.headers.get("authorization")
    if header:
        return await auth.authenticate(header)
    try:
        async with asyncio.timeout(timeout):
            text = await ws.receive_text()
    except TimeoutError as exc:
        raise Unauthenticated("no credentials in time") from exc
    try:
        msg = protocol.parse(text)
    except protocol.BadMessage as exc:
        raise Unauthenticated("the first message must be auth") from exc
    if msg.type != "auth" or not msg.token:
        raise Unauthenticated("the first message must be auth")
    return await auth.authenticate(f"Bearer {msg.token}")


@router.websocket("/v1/terminal/{database_id}")
async def terminal(ws: WebSocket, database_id: str) -> None:
    state: Any = ws.app.state
    settings: TerminalSettings = state.settings
    origin = ws.headers.get("origin")
    if origin is not None and origin.rstrip("/") not in state.origins:
        # a browser on another site: refuse the handshake itself (HTTP 403)
        await ws.close(1008, "origin not allowed")
        return
    await ws.accept()
    try:
        principal = await _principal(ws, state.authenticator, settings.auth_timeout_seconds)
    except Unauthenticated as exc:
        await _close(ws, protocol.CLOSE_UNAUTHENTICATED, exc.detail)
        return
    except Unavailable:
        await _close(ws, protocol.CLOSE_UNAVAILABLE, "cannot verify credentials right now")
        return
    except WebSocketDisconnect:
        return
    try:
        db_id = uuid.UUID(database_id)
    except ValueError:
        await _close(ws, protocol.CLOSE_NOT_FOUND, "no such database")
        return
    try:
        cred = await credentials.fetch(
            state.http,
            settings.platform.provisioner_url,
            settings.secrets.provisioner_internal_secret,
            principal.id,
            db_id,
        )
    except NotFound:
        await _close(ws, protocol.CLOSE_NOT_FOUND, "no such database")
        return
    except AccountSuspended as exc:
        await _close(ws, protocol.CLOSE_FORBIDDEN, exc.detail[:120])
        return
    except Unavailable:
        await _close(ws, protocol.CLOSE_UNAVAILABLE, "the database service is not reachable")
        return
    registry: SessionRegistry = state.registry
    try:
        session_id = await registry.claim(principal.id, db_id, principal.key_id)
    except psycopg.Error as exc:
        log.warning("session slot not claimed", error=type(exc).__name__)
        await _close(ws, protocol.CLOSE_UNAVAILABLE, "the terminal is busy; try again")
        return
    if session_id is None:
        await _close(
            ws,
            protocol.CLOSE_TOO_MANY,
            f"at most {settings.max_sessions_per_user} terminal sessions at once",
        )
        return
    try:
        try:
            conn = await connect(cred)
        except psycopg.Error as exc:
            log.warning("tenant connection failed", error=type(exc).__name__)
            await _close(ws, protocol.CLOSE_UNAVAILABLE, "the database is not reachable")
            return
        session = TerminalSession(
            ws,
            conn,
            cred,
            session_id=session_id,
            user_id=principal.id,
            database_id=db_id,
            settings=settings,
            history=state.history,
        )
        registry.attach(Live(session_id, principal.id, db_id, principal.key_id, session.close))
        await session.run()
    finally:
        await registry.release(session_id)
