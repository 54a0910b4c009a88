"""HTTP load with wrk (a Lua script sets the headers and prints a JSON summary), or an
httpx loop when wrk is missing and cannot be installed."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

LUA = """
wrk.method = "GET"
%(headers)s
done = function(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"status_errors":%%d,"connect":%%d,' ..
    '"read":%%d,"write":%%d,"timeout":%%d,"p50":%%d,"p90":%%d,"p99":%%d,"mean":%%f}\\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


@dataclass(frozen=True)
class Load:
    threads: int = 1
    connections: int = 32
    seconds: int = 10
    warmup_seconds: int = 3


@dataclass(frozen=True)
class HttpResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    tool: str


def ensure_wrk() -> str | None:
    """The wrk binary; installs the Debian package when running as root and it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found: apt-get install -y wrk", flush=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"],
            check=False,
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    return shutil.which("wrk")


def _lua(headers: dict[str, str]) -> str:
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    return LUA % {"headers": lines}


def run_wrk(wrk: str, url: str, headers: dict[str, str], load: Load) -> HttpResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_lua(headers))
        script = f.name
    try:
        base = [wrk, f"-t{load.threads}", f"-c{load.connections}", "-s", script, "--latency"]
        if load.warmup_seconds:
            warm = [*base, f"-d{load.warmup_seconds}s", url]
            subprocess.run(warm, capture_output=True, check=True)
        out = subprocess.run(
            [*base, f"-d{load.seconds}s", url], capture_output=True, text=True, check=True
        ).stdout
    finally:
        os.unlink(script)
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    data = json.loads(line.removeprefix("WRKJSON "))
    errors = sum(data[k] for k in ("status_errors", "connect", "read", "write", "timeout"))
    return HttpResult(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50"] / 1000,
        p99_ms=data["p99"] / 1000,
        requests=data["requests"],
        errors=errors,
        tool="wrk",
    )


async def _httpx_load(url: str, headers: dict[str, str], load: Load) -> HttpResult:
    import httpx
    from common import percentile

    latencies: list[float] = []
    errors = 0

    async def worker(client: httpx.AsyncClient, until: float, record: bool) -> None:
        nonlocal errors
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            resp = await client.get(url, headers=headers)
            if record:
                latencies.append((time.perf_counter() - t0) * 1000)
                errors += resp.status_code >= 400

    limits = httpx.Limits(max_connections=load.connections)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        warm = time.perf_counter() + load.warmup_seconds
        await asyncio.gather(*(worker(client, warm, False) for _ in range(load.connections)))
        start = time.perf_counter()
        end = start + load.seconds
        await asyncio.gather(*(worker(client, end, True) for _ in range(load.connections)))
        elapsed = time.perf_counter() - start
    return HttpResult(
        rps=len(latencies) / elapsed,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        requests=len(latencies),
        errors=errors,
        tool="httpx",
    )


def run_load(wrk: str | None, url: str, headers: dict[str, str], load: Load) -> HttpResult:
    if wrk:
        return run_wrk(wrk, url, headers, load)
    return asyncio.run(_httpx_load(url, headers, load))
