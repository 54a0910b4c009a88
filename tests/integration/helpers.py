from __future__ import annotations

import uuid
from typing import Any

import httpx

PASSWORD = "correct horse battery"


def new_email() -> str:
    return f"u-{uuid.uuid4().hex[:12]}@example.com"


async def signup(gateway: httpx.AsyncClient, email: str | None = None) -> dict[str, Any]:
    resp = await gateway.post(
        "/v1/auth/signup", json={"email": email or new_email(), "password": PASSWORD}
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    assert body["status"] == status and body["code"] == code
    assert {"type", "title", "detail", "request_id"} <= body.keys()
    assert "Traceback" not in resp.text and "SELECT" not in resp.text
    return body
