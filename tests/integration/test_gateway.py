"""The gateway routes only the public surface (CONTRACT.md section 1)."""

from __future__ import annotations

import httpx
import pytest

from shardz_devstack.testing import RunningStack

PROBLEM = "application/problem+json"


async def test_unknown_host_is_refused(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/users/me", headers={"Host": "evil.example.com"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "path",
    [
        "/internal/health",
        "/internal/v1/databases",
        "/metrics",
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/docs",
        "/v1/auth/../../internal/x",
        "/v1/auth/%2e%2e/%2e%2e/metrics",
        "/nowhere",
    ],
)
async def test_private_and_unknown_paths_are_not_routed(
    gateway: httpx.AsyncClient, path: str
) -> None:
    # httpx would normalise dot segments in a URL, so send the raw target.
    request = gateway.build_request("GET", "/")
    request.url = request.url.copy_with(raw_path=path.encode())
    response = await gateway.send(request)
    assert response.status_code == 404, path
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("host", ["terminal", "dashboard"])
async def test_internal_not_routed_on_other_hosts(
    gateway: httpx.AsyncClient, stack: RunningStack, host: str
) -> None:
    response = await gateway.get("/internal/x", headers={"Host": stack.host(host)})
    assert response.status_code in (404, 200)
    if response.status_code == 200:  # the dashboard answers its index for any path
        assert response.headers["content-type"].startswith("text/html")


async def test_request_id_is_echoed(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/.well-known/jwks.json", headers={"X-Request-ID": "req-42.a"})
    assert response.headers.get_list("x-request-id") == ["req-42.a"]
    generated = await gateway.get("/nowhere")
    assert len(generated.headers["x-request-id"]) >= 16
    assert generated.json()["request_id"] == generated.headers["x-request-id"]


async def test_malformed_request_id_is_replaced(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/nowhere", headers={"X-Request-ID": 'x"}, "evil": "1'})
    assert response.headers["x-request-id"] != 'x"}, "evil": "1'
    assert response.json()["request_id"] == response.headers["x-request-id"]


async def test_jwks_is_routed_to_identity(gateway: httpx.AsyncClient, stack: RunningStack) -> None:
    response = await gateway.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert "keys" in response.json()
    async with httpx.AsyncClient() as direct:
        own = await direct.get(f"{stack.internal_urls['identity']}/.well-known/jwks.json")
    assert own.json() == response.json()


async def test_dashboard_is_served(gateway: httpx.AsyncClient, stack: RunningStack) -> None:
    response = await gateway.get("/", headers={"Host": stack.host("dashboard")})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
