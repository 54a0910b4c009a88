"""Logged errors never carry the values of local variables (passwords, tokens, DSNs)."""

from __future__ import annotations

import json

import pytest
import structlog

from shardz_common.logging import configure_logging


def test_logged_exceptions_hold_no_local_values(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test")
    log = structlog.get_logger("t")

    def rotate(password: str, admin_dsn: str) -> None:
        raise RuntimeError("boom")

    try:
        rotate("s3cr3t-tenant-pw", "postgresql://admin:hunter2@db/postgres")
    except RuntimeError:
        log.exception("failed")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["msg"] == "failed" and "boom" in line and "rotate" in line
    assert "s3cr3t-tenant-pw" not in line and "hunter2" not in line
