"""Storage through the gateway vs the same SeaweedFS straight from a client, in one run:
upload and download MB/s of 256 MiB objects (floor: boto3's managed transfers), 4 KiB PUT
ops/s (floor: the same httpx client on presigned URLs, so both sides pay the same client
cost), and the storage API process's peak RSS during a 1 GiB upload and download.

Downloads are measured two ways, each against a floor that uses the same client the same way:
boto3's strategy (8 MiB ranged GETs, 10 threads, urllib3) through the gateway against boto3's
`download_fileobj` straight from SeaweedFS, and one httpx stream through the gateway against
one httpx stream of a presigned SeaweedFS URL. A single httpx stream is bound by the client
(its Python reads), not by the platform, so it says little against 10 threads."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import statistics
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any

import boto3
import httpx
import urllib3
from botocore.config import Config
from common import Row, print_table

MIB = 1024 * 1024
BIG = 256 * MIB
HUGE = 1024 * MIB
SMALL = 4096
REPS = 3
OPS_SECONDS = 8
CONCURRENCY = 16
BUCKET = "bench-floor"
# boto3's TransferConfig defaults, which download_fileobj uses
PART = 8 * MIB
THREADS = 10


def bench_config():  # type: ignore[no-untyped-def]
    from auth_bench import bench_stack_config

    return dataclasses.replace(
        bench_stack_config(slot=7, name="bench-storage"), services=("identity", "storage")
    )


class Sink(io.RawIOBase):
    def __init__(self) -> None:
        self.n = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        n = len(b)
        self.n += n
        return n


class Chunks:
    """A body of `size` bytes sent in 1 MiB chunks without holding it whole."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.block = os.urandom(MIB)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        while sent < self.size:
            n = min(MIB, self.size - sent)
            sent += n
            yield self.block[:n]


def mbps(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def s3_client(env: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=env["STORAGE_S3_ENDPOINT"],
        aws_access_key_id=env["STORAGE_S3_ACCESS_KEY"],
        aws_secret_access_key=env["STORAGE_S3_SECRET_KEY"],
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def floor_transfer(client: Any, data: bytes, i: int) -> dict[str, float]:
    """One round of the floors: boto3 up and down, then one httpx stream down."""
    key = f"floor/{i}"
    t = time.perf_counter()
    client.upload_fileobj(io.BytesIO(data), BUCKET, key)
    up = mbps(len(data), time.perf_counter() - t)
    sink = Sink()
    t = time.perf_counter()
    client.download_fileobj(BUCKET, key, sink)
    down = mbps(sink.n, time.perf_counter() - t)
    assert sink.n == len(data)
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=600
    )
    single = _one_stream_mbps(url, len(data))
    client.delete_object(Bucket=BUCKET, Key=key)
    return {"floor_up": up, "floor_down": down, "floor_down_single": single}


def _one_stream_mbps(url: str, size: int) -> float:
    t = time.perf_counter()
    n = asyncio.run(one_stream(url, {}))
    assert n == size
    return mbps(n, time.perf_counter() - t)


async def one_stream(url: str, headers: dict[str, str]) -> int:
    """One httpx stream, read as it comes."""
    n = 0
    async with (
        httpx.AsyncClient(timeout=600) as client,
        client.stream("GET", url, headers=headers) as got,
    ):
        assert got.status_code == 200, got.status_code
        async for chunk in got.aiter_raw():
            n += len(chunk)
    return n


def ranged_download(url: str, headers: dict[str, str], size: int) -> int:
    """boto3's download strategy through the gateway: 8 MiB ranges, 10 threads, urllib3."""
    pool = urllib3.PoolManager(maxsize=THREADS)

    def part(start: int) -> int:
        end = min(start + PART, size) - 1
        got = pool.request(
            "GET",
            url,
            headers={**headers, "Range": f"bytes={start}-{end}"},
            preload_content=False,
            timeout=600,
        )
        assert got.status == 206, got.status
        n = sum(len(chunk) for chunk in got.stream(256 * 1024))
        got.release_conn()
        return n

    with ThreadPoolExecutor(THREADS) as workers:
        return sum(workers.map(part, range(0, size, PART)))


async def our_transfer(
    client: httpx.AsyncClient, headers: dict[str, str], data: bytes, i: int
) -> dict[str, float]:
    """One round through the gateway: up, down boto3's way, down as one httpx stream."""
    full = {**headers, "Host": client.headers["Host"]}
    path = f"/v1/storage/objects/bench/big-{i}"
    t = time.perf_counter()
    resp = await client.put(path, content=data, headers=headers)
    up = mbps(len(data), time.perf_counter() - t)
    assert resp.status_code == 201, resp.text
    t = time.perf_counter()
    n = await asyncio.to_thread(ranged_download, f"{client.base_url}{path}", full, len(data))
    down = mbps(n, time.perf_counter() - t)
    assert n == len(data)
    t = time.perf_counter()
    n = await one_stream(f"{client.base_url}{path}", full)
    single = mbps(n, time.perf_counter() - t)
    assert n == len(data)
    assert (await client.delete(path, headers=headers)).status_code == 204
    return {"up": up, "down": down, "down_single": single}


async def transfers(
    stack: Any, client: httpx.AsyncClient, headers: dict[str, str], data: bytes
) -> dict[str, float]:
    """Floor and platform rounds alternate, so a change of the machine's load between them
    weighs on both sides alike; the first round of each warms up and is not counted."""
    s3 = s3_client(stack.env)
    with suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET)
    rounds: list[dict[str, float]] = []
    for i in range(REPS + 1):
        got = await asyncio.to_thread(floor_transfer, s3, data, i)
        got.update(await our_transfer(client, headers, data, i))
        rounds.append(got)
    return {name: statistics.median(r[name] for r in rounds[1:]) for name in rounds[0]}


async def ops(send: Callable[[int], Any]) -> float:
    """PUTs per second with CONCURRENCY requests in flight for OPS_SECONDS."""
    done = 0
    stop = time.perf_counter() + OPS_SECONDS
    counter = iter(range(10**9))

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            resp = await send(next(counter))
            assert resp.status_code in (200, 201), resp.text
            done += 1

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - t)


@contextmanager
def peak_rss(pids: list[int]) -> Iterator[dict[str, int]]:
    """Sample the resident memory of `pids` every 20 ms; yields {"peak": bytes}."""
    result = {"peak": 0}
    stop = threading.Event()

    def rss(pid: int) -> int:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def sample() -> None:
        while not stop.is_set():
            result["peak"] = max(result["peak"], *(rss(p) for p in pids))
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()


async def measure(stack: Any) -> dict[str, float]:
    host = stack.host("api")
    data = os.urandom(BIG)
    figures: dict[str, float] = {}
    async with httpx.AsyncClient(
        base_url=stack.gateway_url,
        headers={"Host": host},
        timeout=600,
        limits=httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY),
    ) as client:
        resp = await client.post(
            "/v1/auth/signup",
            json={
                "email": f"bench-{uuid.uuid4().hex[:10]}@example.com",
                "password": "correct horse battery",
            },
        )
        token = resp.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        plan = await client.patch("/v1/storage", json={"plan": "storage-plus"}, headers=headers)
        assert plan.status_code == 200, plan.text

        figures.update(await transfers(stack, client, headers, data))
        del data

        small = os.urandom(SMALL)
        figures["ops"] = await ops(
            lambda i: client.put(
                f"/v1/storage/objects/ops/{i % 2000}", content=small, headers=headers
            )
        )
        s3 = s3_client(stack.env)
        urls = [
            s3.generate_presigned_url(
                "put_object", Params={"Bucket": BUCKET, "Key": f"ops/{i}"}, ExpiresIn=3600
            )
            for i in range(2000)
        ]
        async with httpx.AsyncClient(
            timeout=60,
            limits=httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY),
        ) as direct:
            figures["floor_ops"] = await ops(lambda i: direct.put(urls[i % 2000], content=small))

        pids = [stack.processes[name].pid for name in ("storage-api", "storage-api-2")]
        with peak_rss(pids) as up_rss:
            resp = await client.put(
                "/v1/storage/objects/bench/huge", content=Chunks(HUGE), headers=headers
            )
            assert resp.status_code == 201, resp.text
        with peak_rss(pids) as down_rss:
            async with client.stream(
                "GET", "/v1/storage/objects/bench/huge", headers=headers
            ) as got:
                async for _ in got.aiter_raw():
                    pass
        figures["rss_up"] = up_rss["peak"] / MIB
        figures["rss_down"] = down_rss["peak"] / MIB
    return figures


def run() -> list[Row]:
    from shardz_devstack.testing import start_test_stack

    t0 = time.monotonic()
    stack = start_test_stack(bench_config())
    print(f"bench stack up in {time.monotonic() - t0:.1f}s at {stack.gateway_url}", flush=True)
    try:
        f = asyncio.run(measure(stack))
    finally:
        stack.stop()
    print_table(
        f"storage: 256 MiB transfers (median of {REPS}), "
        f"4 KiB PUTs ({CONCURRENCY} in flight, {OPS_SECONDS}s)",
        ["", "platform (gateway)", "floor (direct to SeaweedFS)", "ratio", "goal"],
        [
            [
                "upload MB/s",
                f"{f['up']:.0f}",
                f"{f['floor_up']:.0f}",
                f"{f['up'] / f['floor_up']:.2f}",
                ">= 0.7",
            ],
            [
                "download MB/s (boto3's way)",
                f"{f['down']:.0f}",
                f"{f['floor_down']:.0f}",
                f"{f['down'] / f['floor_down']:.2f}",
                ">= 0.7",
            ],
            [
                "download MB/s (1 httpx stream)",
                f"{f['down_single']:.0f}",
                f"{f['floor_down_single']:.0f}",
                f"{f['down_single'] / f['floor_down_single']:.2f}",
                "",
            ],
            [
                "4 KiB PUT ops/s",
                f"{f['ops']:.0f}",
                f"{f['floor_ops']:.0f}",
                f"{f['ops'] / f['floor_ops']:.2f}",
                ">= 0.5",
            ],
        ],
    )
    print(
        f"storage API peak RSS: 1 GiB upload {f['rss_up']:.0f} MiB, "
        f"1 GiB download {f['rss_down']:.0f} MiB (goal < 150 MB)"
    )
    return [
        Row(
            "storage upload 256 MiB via gateway, MB/s",
            f["up"],
            f["floor_up"],
            "MB/s",
            ">= 0.7 x boto3 direct",
        ),
        Row(
            "storage download 256 MiB via gateway (8 MiB ranges, 10 threads), MB/s",
            f["down"],
            f["floor_down"],
            "MB/s",
            ">= 0.7 x boto3 direct",
        ),
        Row(
            "storage download 256 MiB via gateway (one httpx stream), MB/s",
            f["down_single"],
            f["floor_down_single"],
            "MB/s",
            "same client straight to SeaweedFS",
        ),
        Row(
            "storage 4 KiB PUT via gateway, ops/s",
            f["ops"],
            f["floor_ops"],
            "req/s",
            ">= 0.5 x direct PUT",
        ),
        Row(
            "storage API peak RSS, 1 GiB upload",
            f["rss_up"],
            150,
            "MiB",
            "< 150 MB",
            higher_is_better=False,
        ),
        Row(
            "storage API peak RSS, 1 GiB download",
            f["rss_down"],
            150,
            "MiB",
            "< 150 MB",
            higher_is_better=False,
        ),
    ]
