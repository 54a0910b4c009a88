"""The command line every service shares: migrate, api, worker."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from shardz_common.settings import ServiceSettings


def _load(path: str) -> Callable[..., object]:
    module, _, attr = path.partition(":")
    fn: Callable[..., object] = getattr(importlib.import_module(module), attr)
    return fn


def run_cli(
    argv: list[str],
    *,
    settings: ServiceSettings,
    service_root: Path,
    app_factory: str,
    worker_spec: str,
    extra: dict[str, Callable[[], None]] | None = None,
    uvicorn_options: dict[str, object] | None = None,
) -> None:
    commands = ["migrate", "api", "worker", *(extra or {})]
    # extra commands may take options of their own (they read them from sys.argv)
    if not argv or argv[0] not in commands or (len(argv) > 1 and argv[0] not in (extra or {})):
        raise SystemExit(f"usage: {settings.service_name} {{{'|'.join(commands)}}}")
    cmd = argv[0]
    if cmd == "migrate":
        from shardz_common.migrate import upgrade

        upgrade(service_root, settings.database_url)
        from shardz_common.worker import WorkerSpec, declare_topology

        spec = _load(worker_spec)()
        assert isinstance(spec, WorkerSpec)
        # queues exist before any worker runs: events sent meanwhile wait in them
        asyncio.run(declare_topology(spec))
    elif cmd == "api":
        import uvicorn

        uvicorn.run(
            app_factory,
            factory=True,
            host=settings.host,
            port=settings.port,
            access_log=False,
            proxy_headers=True,
            forwarded_allow_ips=settings.platform.trusted_proxies,
            http="httptools",
            loop="uvloop",
            lifespan="on",
            log_config=None,
            **(uvicorn_options or {}),  # type: ignore[arg-type]
        )
    elif cmd == "worker":
        from shardz_common.worker import WorkerSpec, run_worker

        spec = _load(worker_spec)()
        assert isinstance(spec, WorkerSpec)
        loop = asyncio.new_event_loop()
        loop.run_until_complete(run_worker(spec))
        # Not asyncio.run(): its final wait for leftover library tasks (a reconnecting broker
        # client) can hang forever; run_worker has already closed what matters.
        sys.stderr.flush()
        os._exit(0)
    else:
        (extra or {})[cmd]()
