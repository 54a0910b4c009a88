"""Every error is RFC 9457 problem+json with a stable code; request ids are echoed."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from shardz_common.errors import Conflict, RateLimited, install_error_handlers
from shardz_common.middleware import MetricsMiddleware, RequestIdMiddleware


class Body(BaseModel):
    password: str = Field(min_length=10)


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)

    @app.post("/things")
    async def create(body: Body) -> dict[str, str]:
        raise Conflict("name already used")

    @app.get("/slow-down")
    async def slow() -> None:
        raise RateLimited("too many", retry_after=7)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("SELECT secret FROM vault -- internal detail")

    return app


client = TestClient(make_app(), raise_server_exceptions=False)


def test_domain_error_renders_problem_with_code_and_request_id() -> None:
    resp = client.post(
        "/things", json={"password": "long enough!"}, headers={"X-Request-ID": "r-1"}
    )
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["x-request-id"] == "r-1"
    assert resp.json() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "name already used",
        "code": "conflict",
        "request_id": "r-1",
    }


def test_validation_error_lists_fields_without_echoing_input() -> None:
    resp = client.post("/things", json={"password": "hunter2"})
    body = resp.json()
    assert resp.status_code == 422 and body["code"] == "validation_error"
    assert body["errors"][0]["loc"] == ["body", "password"]
    assert "hunter2" not in resp.text


def test_unexpected_error_leaks_nothing() -> None:
    resp = client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert resp.status_code == 500 and resp.json()["code"] == "internal_error"
    assert resp.json()["request_id"] == "boom-1" == resp.headers["x-request-id"]
    assert "SELECT" not in resp.text and "Traceback" not in resp.text


def test_rate_limit_carries_retry_after_and_unknown_routes_are_problems() -> None:
    resp = client.get("/slow-down")
    assert resp.status_code == 429 and resp.headers["retry-after"] == "7"
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    wrong_method = client.delete("/things")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == "application/problem+json"


def test_request_id_is_minted_and_hostile_ids_are_replaced() -> None:
    minted = client.get("/nope").headers["x-request-id"]
    assert len(minted) == 32
    hostile = client.get("/nope", headers={"X-Request-ID": "a b\tc" * 50})
    assert hostile.headers["x-request-id"] != "a b\tc" * 50
