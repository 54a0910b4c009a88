"""Crash points inside the provisioning saga, for the crash tests.

Inert in a deployment: no setting or environment variable arms them. Only code running in
the same process can, by calling `arm()` before the service starts; the test suite's launcher
(`tests/integration/faulty_provisioner.py`, not part of the service package) does that."""

from __future__ import annotations

import os

import structlog

log = structlog.get_logger(__name__)
_armed: str | None = None


def arm(step: str) -> None:
    global _armed
    _armed = step


def hit(step: str) -> None:
    """Die like a killed process when the armed step is reached."""
    if _armed == step:
        log.warning("fault injection: exiting", step=step)
        os._exit(137)
