"""Helpers of the storage tests: the space, the bucket behind it, raw requests."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import boto3
import httpx
import psycopg
from botocore.config import Config

from shardz_devstack import seaweed
from shardz_devstack.config import repo_root
from tests.integration.helpers import bearer, service_process

MIB = 1024 * 1024


async def space(gateway: httpx.AsyncClient, token: str) -> dict[str, Any]:
    resp = await gateway.get("/v1/storage", headers=bearer(token))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def put(
    gateway: httpx.AsyncClient, token: str, key: str, data: bytes, **headers: str
) -> httpx.Response:
    return await gateway.put(
        f"/v1/storage/objects/{key}", content=data, headers={**bearer(token), **headers}
    )


def s3(stack: Any) -> Any:
    env = stack.env
    return boto3.client(
        "s3",
        endpoint_url=env["STORAGE_S3_ENDPOINT"],
        aws_access_key_id=env["STORAGE_S3_ACCESS_KEY"],
        aws_secret_access_key=env["STORAGE_S3_SECRET_KEY"],
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


BUCKET = "shardz-objects"


def backend_leftovers(stack: Any, user_id: str) -> list[str]:
    """What the bucket still holds under the user's prefix: objects and multipart uploads."""
    client = s3(stack)
    objects = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{user_id}/").get("Contents", [])
    uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=f"{user_id}/").get("Uploads", [])
    return [o["Key"] for o in objects] + [f"upload:{u['Key']}" for u in uploads]


async def db(stack: Any) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(
        stack.config.database_dsn("storage"), autocommit=True
    )


async def set_quota(stack: Any, user_id: str, quota: int) -> None:
    async with await db(stack) as conn:
        await conn.execute(
            "UPDATE spaces SET quota_bytes = %s WHERE user_id = %s", (quota, user_id)
        )


async def invariant(stack: Any, user_id: str) -> dict[str, int]:
    """used_bytes equals the index's sum and stays within the quota; nothing stays reserved."""
    async with await db(stack) as conn:
        row = await (
            await conn.execute(
                "SELECT s.used_bytes, s.reserved_bytes, s.quota_bytes, s.object_count,"
                " (SELECT coalesce(sum(size), 0) FROM objects o WHERE o.user_id = s.user_id),"
                " (SELECT count(*) FROM objects o WHERE o.user_id = s.user_id)"
                " FROM spaces s WHERE s.user_id = %s",
                (user_id,),
            )
        ).fetchone()
    used, reserved, quota, count, total, rows = row
    assert used == total and count == rows, (used, total, count, rows)
    assert used + reserved <= quota
    return {"used": used, "reserved": reserved, "quota": quota, "count": count}


class RandomBody:
    """A streamed body of `size` random bytes whose SHA-256 is known once sent."""

    def __init__(self, size: int, chunk: int = MIB, pause_after: int | None = None) -> None:
        self.size = size
        self.chunk = chunk
        self.sha = hashlib.sha256()
        self.sent = 0
        self.pause_after = pause_after
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        block = os.urandom(self.chunk)
        while self.sent < self.size:
            if self.pause_after is not None and self.sent >= self.pause_after:
                self.paused.set()
                await self.resume.wait()
                self.pause_after = None
            n = min(self.chunk, self.size - self.sent)
            # vary each chunk so parts differ, cheaply
            piece = self.sent.to_bytes(8, "big") + block[8:n] if n > 8 else block[:n]
            self.sha.update(piece)
            self.sent += n
            yield piece

    def hexdigest(self) -> str:
        return self.sha.hexdigest()


async def raw_request(
    stack: Any, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, bytes]:
    """Send a request line exactly as written (httpx would normalise `..` and `//`)."""
    host, port = stack.config.gateway_host, stack.config.gateway_port
    reader, writer = await asyncio.open_connection(host, port)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {stack.host('api')}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body)
    await writer.drain()
    response = await reader.read()
    writer.close()
    status = int(response.split(b" ", 2)[1])
    return status, response.split(b"\r\n\r\n", 1)[1]


@contextlib.contextmanager
def storage_process(stack: Any, command: str, name: str, **env: str) -> Iterator[Any]:
    """An extra storage process (api or worker) on the test stack, with env overrides; its
    log is `extra-storage-<name>.log`."""
    with service_process(stack, "storage", command, log_name=name, **env) as proc:
        yield proc


def stop_store(stack: Any) -> None:
    proc = stack.processes["s3"]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_store(stack: Any) -> None:
    """Run the stack's SeaweedFS again, on the same data and ports."""
    argv = seaweed.weed_command(stack.config, stack.prepared.secrets)
    with open(stack.log_dir / "s3.log", "ab") as log:
        stack.processes["s3"] = subprocess.Popen(
            argv,
            env=stack.prepared.process_env(),
            cwd=repo_root(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # Ready means writes work: its S3 front end answers before its filer does.
    client = s3(stack)
    deadline = time.monotonic() + 90
    successes = 0
    while successes < 3:
        try:
            client.put_object(Bucket=BUCKET, Key="probe/ready", Body=b"x" * 100_000)
            client.delete_object(Bucket=BUCKET, Key="probe/ready")
            successes += 1
        except Exception:
            successes = 0
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)
