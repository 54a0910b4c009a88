"""The platform's dumps bucket: exports and uploaded import bodies (ADR 0011). Blocking
boto3 calls: the worker runs them in a thread; the API wraps them with asyncio.to_thread.
boto3 and botocore are imported on first use: they cost over a second of a process's start."""

from __future__ import annotations

import threading
from typing import IO, Any

from shardz_common.errors import Unavailable
from shardz_provisioner.config import ProvisionerSettings

PART_BYTES = 16 * 1024 * 1024


class StoreUnavailable(Unavailable):
    pass


class DumpStore:
    def __init__(self, settings: ProvisionerSettings) -> None:
        self.settings = settings
        self.bucket = settings.dumps_bucket
        self._client: Any = None
        self._ready = False
        self._lock = threading.Lock()
        self._ready_lock = threading.Lock()

    @property
    def client(self) -> Any:
        """Made on first use: a boto3 client costs a second of CPU, which every worker and
        API process would otherwise pay at start whether or not it ever sees a dump."""
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                s = self.settings
                self._client = boto3.client(
                    "s3",
                    endpoint_url=s.s3_endpoint,
                    aws_access_key_id=s.s3_access_key,
                    aws_secret_access_key=s.s3_secret_key,
                    region_name=s.s3_region,
                    config=Config(
                        signature_version="s3v4",
                        s3={"addressing_style": "path"},
                        connect_timeout=3,
                        read_timeout=120,
                        retries={"max_attempts": 3, "mode": "standard"},
                    ),
                )
            return self._client

    def ensure_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError:
                try:
                    self.client.create_bucket(Bucket=self.bucket)
                except ClientError as exc:
                    code = exc.response.get("Error", {}).get("Code")
                    if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise StoreUnavailable("the dump store is unavailable") from exc
            except BotoCoreError as exc:
                raise StoreUnavailable("the dump store is unavailable") from exc
            self._ready = True

    def upload(self, key: str, stream: IO[bytes]) -> None:
        """Stream `stream` to `key` in parts (multipart, aborted on failure)."""
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        self.ensure_bucket()
        config = TransferConfig(
            multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=2
        )
        try:
            self.client.upload_fileobj(stream, self.bucket, key, Config=config)
        except (BotoCoreError, ClientError) as exc:
            raise StoreUnavailable("the dump store is unavailable") from exc

    def download(self, key: str, into: IO[bytes]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self.ensure_bucket()
        try:
            self.client.download_fileobj(self.bucket, key, into)
        except (BotoCoreError, ClientError) as exc:
            raise StoreUnavailable("the dump store is unavailable") from exc

    def url(self, key: str, seconds: int = 300) -> str:
        """A short-lived S3 URL for the service itself to stream from (never handed out)."""
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=seconds
        )
        return url

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self.ensure_bucket()
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise StoreUnavailable("the dump store is unavailable") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable("the dump store is unavailable") from exc
