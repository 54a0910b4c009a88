"""Exports and imports as the API sees them: record a job for the worker, show its state.
The work itself (pg_dump, restores) is the worker's: services/dump_runner.py."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlencode

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shardz_common.auth import Principal
from shardz_common.errors import (
    AccountSuspended,
    Conflict,
    NotFound,
    ProblemError,
    RateLimited,
    Unavailable,
    ValidationFailed,
)
from shardz_provisioner.api.schemas import ExportOut, ImportOut, JobStarted, RefusedObject
from shardz_provisioner.config import ProvisionerSettings
from shardz_provisioner.db.tables import Account, Database, DumpJob
from shardz_provisioner.domain import links
from shardz_provisioner.services.dumpstore import DumpStore
from shardz_provisioner.services.provisioning import get_owned

OPEN = ("receiving", "queued", "running")


class TooLarge(ProblemError):
    status, code, title = 413, "payload_too_large", "Payload Too Large"


def _shown(status: str) -> str:
    return "queued" if status == "receiving" else status


async def _startable(
    s: AsyncSession, user: Principal, database_id: uuid.UUID, kind: str
) -> Database:
    """The owner's database, locked (one start at a time per database), able to take a job."""
    db = await get_owned(s, user, database_id, for_update=True)
    account = await s.get(Account, user.id)
    if db.status == "suspended" or (account is not None and account.status == "suspended"):
        raise AccountSuspended("the account is suspended")
    if db.status in ("provisioning", "deleting"):
        raise Conflict(f"the database is {db.status}")
    if kind == "import" and db.size_state is not None:
        raise Conflict("the database is over its plan's size: it takes no writes")
    running = (
        await s.execute(
            select(func.count())
            .select_from(DumpJob)
            .where(DumpJob.database_id == db.id, DumpJob.kind == kind, DumpJob.status.in_(OPEN))
        )
    ).scalar_one()
    if running:
        raise Conflict(f"an {kind} of this database is already under way")
    return db


async def start_export(
    session: AsyncSession, settings: ProvisionerSettings, user: Principal, database_id: uuid.UUID
) -> JobStarted:
    db = await _startable(session, user, database_id, "export")
    today = (
        await session.execute(
            select(func.count())
            .select_from(DumpJob)
            .where(
                DumpJob.database_id == db.id,
                DumpJob.kind == "export",
                DumpJob.created_at > func.now() - timedelta(days=1),
            )
        )
    ).scalar_one()
    if today >= settings.exports_per_day:
        raise RateLimited(
            f"at most {settings.exports_per_day} exports of a database a day", retry_after=3600
        )
    job = DumpJob(
        id=uuid.uuid4(), kind="export", database_id=db.id, user_id=user.id, status="queued"
    )
    session.add(job)
    await session.flush()
    return JobStarted(id=job.id, status="queued")


async def _owned_job(
    session: AsyncSession, user: Principal, database_id: uuid.UUID, job_id: uuid.UUID, kind: str
) -> DumpJob:
    await get_owned(session, user, database_id)
    job = await session.get(DumpJob, job_id)
    if job is None or job.kind != kind or job.database_id != database_id:
        raise NotFound(f"no such {kind}")
    return job


def public_base(settings: ProvisionerSettings) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    p = settings.platform
    port = "" if p.gateway_port == 80 else f":{p.gateway_port}"
    return f"http://api.{p.base_domain}{port}"


def download_path(database_id: uuid.UUID, export_id: uuid.UUID) -> str:
    return f"/v1/databases/{database_id}/exports/{export_id}/download"


async def show_export(
    session: AsyncSession,
    settings: ProvisionerSettings,
    user: Principal,
    database_id: uuid.UUID,
    export_id: uuid.UUID,
) -> ExportOut:
    job = await _owned_job(session, user, database_id, export_id, "export")
    url = link_expires = None
    now = time.time()
    if job.status == "done" and job.store_key and job.expires_at:
        removal = job.expires_at.timestamp()
        if removal > now:
            expires = int(min(removal, now + settings.export_link_seconds))
            secret = settings.fernet_key()
            signature = links.signature(secret, database_id, export_id, expires)
            query = urlencode({"expires": expires, "signature": signature})
            url = f"{public_base(settings)}{download_path(database_id, export_id)}?{query}"
            link_expires = datetime.fromtimestamp(expires, UTC)
    return ExportOut(
        id=job.id,
        status=_shown(job.status),
        size_bytes=job.size_bytes,
        download_url=url,
        expires_at=job.expires_at,
        download_url_expires_at=link_expires,
        error=job.error,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


async def show_import(
    session: AsyncSession, user: Principal, database_id: uuid.UUID, import_id: uuid.UUID
) -> ImportOut:
    job = await _owned_job(session, user, database_id, import_id, "import")
    return ImportOut(
        id=job.id,
        status=_shown(job.status),
        refused=[RefusedObject(**r) for r in job.refused],
        refused_count=job.refused_count,
        applied=job.applied,
        format=job.format,
        size_bytes=job.size_bytes,
        error=job.error,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


async def storage_object_size(
    settings: ProvisionerSettings, http: httpx.AsyncClient, user_id: uuid.UUID, key: str
) -> int:
    """The size of the user's own object `key`, asked of the storage service (internally)."""
    secret = settings.secrets.storage_internal_secret
    if not secret:
        raise Unavailable("imports from storage are not configured (STORAGE_INTERNAL_SECRET)")
    url = f"{settings.platform.storage_url}/internal/objects/{user_id}/{quote(key, safe='/')}"
    try:
        resp = await http.head(url, headers={"Authorization": f"Bearer {secret}"})
    except httpx.HTTPError as exc:
        raise Unavailable("the storage service is unavailable") from exc
    if resp.status_code == 404:
        raise NotFound("no such object in your storage")
    if resp.status_code == 422:
        raise ValidationFailed("invalid object key", field="object_key")
    if resp.status_code != 200:
        raise Unavailable("the storage service is unavailable")
    return int(resp.headers.get("content-length", "0"))


async def start_import_from_object(
    session: AsyncSession,
    settings: ProvisionerSettings,
    http: httpx.AsyncClient,
    user: Principal,
    database_id: uuid.UUID,
    key: str,
) -> JobStarted:
    db = await _startable(session, user, database_id, "import")
    size = await storage_object_size(settings, http, user.id, key)
    if size > settings.import_max_bytes:
        raise TooLarge(f"a dump of at most {settings.import_max_bytes} bytes can be imported")
    job = DumpJob(
        id=uuid.uuid4(),
        kind="import",
        database_id=db.id,
        user_id=user.id,
        status="queued",
        source_key=key,
        size_bytes=size,
    )
    session.add(job)
    await session.flush()
    return JobStarted(id=job.id, status="queued")


async def start_import_upload(
    sessions: async_sessionmaker[AsyncSession],
    settings: ProvisionerSettings,
    store: DumpStore,
    user: Principal,
    database_id: uuid.UUID,
    length: int | None,
    body: AsyncIterator[bytes],
) -> JobStarted:
    """The dump in the request body: recorded first (`receiving`), kept in the dumps bucket,
    then queued. A body cut short or too large leaves nothing behind; if this process dies
    mid-way, the sweeper removes the half-received upload."""
    if length is not None and length > settings.import_max_bytes:
        raise TooLarge(f"a dump of at most {settings.import_max_bytes} bytes can be imported")
    job_id = uuid.uuid4()
    key = f"imports/{database_id}/{job_id}"
    async with sessions() as s, s.begin():
        db = await _startable(s, user, database_id, "import")
        s.add(
            DumpJob(
                id=job_id,
                kind="import",
                database_id=db.id,
                user_id=user.id,
                status="receiving",
                store_key=key,
            )
        )
    try:
        size = await _spool_and_store(settings, store, key, body)
    except BaseException:
        async with sessions() as s, s.begin():
            job = await s.get(DumpJob, job_id)
            if job is not None:
                job.status, job.error = "failed", "the upload did not complete"
                job.finished_at = datetime.now(UTC)
        raise
    async with sessions() as s, s.begin():
        job = await s.get(DumpJob, job_id, with_for_update=True)
        assert job is not None
        job.status, job.size_bytes = "queued", size
    return JobStarted(id=job_id, status="queued")


async def _spool_and_store(
    settings: ProvisionerSettings, store: DumpStore, key: str, body: AsyncIterator[bytes]
) -> int:
    """Body -> a private temporary file (bounded) -> the dumps bucket."""
    fd, path = tempfile.mkstemp(prefix="shardz-import-")
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            async for chunk in body:
                size += len(chunk)
                if size > settings.import_max_bytes:
                    raise TooLarge(
                        f"a dump of at most {settings.import_max_bytes} bytes can be imported"
                    )
                out.write(chunk)  # page cache: no need for a thread
        if size == 0:
            raise ValidationFailed('the body is empty: send a dump, or {"object_key"}')

        def upload() -> None:
            with open(path, "rb") as src:
                store.upload(key, src)

        await asyncio.to_thread(upload)
        return size
    finally:
        os.unlink(path)
