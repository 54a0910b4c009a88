"""The S3-compatible object store. boto3 signs every request and runs the control calls
(multipart bookkeeping, deletes, listings) in a thread; the bytes themselves move through
httpx on presigned URLs, so uploads and downloads stream on the event loop without a thread
per chunk or a copy of the body."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import boto3
import httpx
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shardz_common.errors import Unavailable
from shardz_storage.config import StorageSettings

log = structlog.get_logger(__name__)
T = TypeVar("T")
PRESIGN_SECONDS = 3600


class StoreUnavailable(Unavailable):
    def __init__(self, detail: str = "the object store is unavailable") -> None:
        super().__init__(detail, headers={"Retry-After": "5"})


@dataclass
class Body:
    """Bytes on their way to the store, kept as the chunks they arrived in (no copy)."""

    chunks: deque[bytes] = field(default_factory=deque)
    size: int = 0

    def add(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)


@dataclass(frozen=True)
class Listed:
    key: str
    modified: datetime
    upload_id: str | None = None


class Backend:
    def __init__(self, settings: StorageSettings) -> None:
        self.bucket = settings.bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint,
            aws_access_key_id=settings.s3_access_key,
            aws_secret_access_key=settings.s3_secret_key,
            region_name=settings.s3_region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                connect_timeout=3,
                read_timeout=settings.s3_timeout_seconds,
                retries={"max_attempts": 2, "mode": "standard"},
                max_pool_connections=20,
            ),
        )
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.s3_timeout_seconds, connect=3.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        self._bucket_ready = False
        self._bucket_lock = asyncio.Lock()

    async def close(self) -> None:
        await self.http.aclose()

    async def _call(self, fn: Callable[..., T], **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
            if status >= 500:
                raise StoreUnavailable() from exc
            raise
        except BotoCoreError as exc:
            raise StoreUnavailable() from exc

    async def ensure_bucket(self) -> None:
        """Create the bucket on first use (the store may start after this process)."""
        if self._bucket_ready:
            return
        async with self._bucket_lock:
            if self._bucket_ready:
                return
            try:
                await self._call(self.client.head_bucket, Bucket=self.bucket)
            except ClientError:
                try:
                    await self._call(self.client.create_bucket, Bucket=self.bucket)
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code")
                    if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise StoreUnavailable("the bucket cannot be created") from exc
            self._bucket_ready = True

    def _url(self, operation: str, **params: Any) -> str:
        url: str = self.client.generate_presigned_url(
            operation, Params={"Bucket": self.bucket, **params}, ExpiresIn=PRESIGN_SECONDS
        )
        return url

    async def _send(self, request: httpx.Request, stream: bool = False) -> httpx.Response:
        try:
            resp = await self.http.send(request, stream=stream)
        except httpx.HTTPError as exc:
            raise StoreUnavailable() from exc
        if resp.status_code >= 300 and not (stream and resp.status_code in (200, 206)):
            if stream:
                await resp.aread()
                await resp.aclose()
            log.warning("object store refused", status=resp.status_code, body=resp.text[:300])
            raise StoreUnavailable()
        return resp

    async def put(self, backend_key: str, body: Body) -> str:
        await self.ensure_bucket()
        url = self._url("put_object", Key=backend_key)
        resp = await self._send(self._put_request(url, body))
        etag: str = resp.headers.get("etag", "")
        return etag.strip('"')

    def _put_request(self, url: str, body: Body) -> httpx.Request:
        """A PUT whose body is sent chunk by chunk, each released once written."""

        async def drain() -> AsyncIterator[bytes]:
            while body.chunks:
                yield body.chunks.popleft()

        return self.http.build_request(
            "PUT", url, content=drain(), headers={"Content-Length": str(body.size)}
        )

    async def create_multipart(self, backend_key: str) -> str:
        await self.ensure_bucket()
        out = await self._call(
            self.client.create_multipart_upload, Bucket=self.bucket, Key=backend_key
        )
        upload_id: str = out["UploadId"]
        return upload_id

    async def upload_part(self, backend_key: str, upload_id: str, number: int, body: Body) -> str:
        url = self._url("upload_part", Key=backend_key, UploadId=upload_id, PartNumber=number)
        resp = await self._send(self._put_request(url, body))
        etag: str = resp.headers["etag"]
        return etag

    async def complete_multipart(self, backend_key: str, upload_id: str, etags: list[str]) -> str:
        parts = [{"PartNumber": i + 1, "ETag": etag} for i, etag in enumerate(etags)]
        out = await self._call(
            self.client.complete_multipart_upload,
            Bucket=self.bucket,
            Key=backend_key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
        etag: str = out.get("ETag", "").strip('"')
        return etag

    async def abort_multipart(self, backend_key: str, upload_id: str) -> None:
        try:
            await self._call(
                self.client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=backend_key,
                UploadId=upload_id,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise

    async def delete(self, backend_keys: list[str]) -> None:
        """Delete objects; a key already gone counts as deleted."""
        if not backend_keys:
            return
        await self.ensure_bucket()
        out = await self._call(
            self.client.delete_objects,
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": k} for k in backend_keys], "Quiet": True},
        )
        failed = [e for e in out.get("Errors", []) if e.get("Code") != "NoSuchKey"]
        if failed:
            raise StoreUnavailable(f"{len(failed)} deletions failed")

    async def open(self, backend_key: str, byte_range: str | None) -> httpx.Response:
        """A streaming GET; the caller closes the response."""
        headers = {"Range": byte_range} if byte_range else {}
        request = self.http.build_request(
            "GET", self._url("get_object", Key=backend_key), headers=headers
        )
        return await self._send(request, stream=True)

    async def list_objects(self) -> AsyncIterator[list[Listed]]:
        await self.ensure_bucket()
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            page = await self._call(self.client.list_objects_v2, **kwargs)
            yield [Listed(o["Key"], o["LastModified"]) for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    async def list_multipart_uploads(self) -> AsyncIterator[list[Listed]]:
        await self.ensure_bucket()
        markers: dict[str, str] = {}
        while True:
            page = await self._call(
                self.client.list_multipart_uploads, Bucket=self.bucket, **markers
            )
            yield [Listed(u["Key"], u["Initiated"], u["UploadId"]) for u in page.get("Uploads", [])]
            if not page.get("IsTruncated"):
                return
            markers = {
                "KeyMarker": page.get("NextKeyMarker", ""),
                "UploadIdMarker": page.get("NextUploadIdMarker", ""),
            }
