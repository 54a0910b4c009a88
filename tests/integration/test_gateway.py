"""The gateway routes only the public surface (CONTRACT.md section 1)."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from shardz_devstack import apidocs
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


def _raw(stack: RunningStack, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (httpx would refuse or fix them) and read one answer."""
    with socket.create_connection(("127.0.0.1", stack.config.gateway_port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        while len(body) < int(headers.get("content-length", "0")):
            body += s.recv(65536)
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    ("label", "request_bytes", "status", "code"),
    [
        ("malformed", b"GET / HTTP/1.1\r\nHost: api.localhost\r\nContent-Length: x\r\n\r\n",
         400, "bad_request"),
        ("no host", b"GET /v1/users/me HTTP/1.1\r\n\r\n", 400, "bad_request"),
        ("trace", b"TRACE /v1/users/me HTTP/1.1\r\nHost: api.localhost\r\n\r\n",
         405, "method_not_allowed"),
        ("long uri", b"GET /v1/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: api.localhost\r\n\r\n",
         414, "uri_too_long"),
        ("huge header", b"GET /v1/users/me HTTP/1.1\r\nHost: api.localhost\r\nCookie: "
         + b"c" * 20000 + b"\r\n\r\n", 431, "headers_too_large"),
        ("encoded nul", b"GET /v1/storage/objects/a%00b HTTP/1.1\r\nHost: api.localhost\r\n\r\n",
         400, "bad_request"),
        ("garbage", b"GARBAGE\r\n\r\n", 400, "bad_request"),
        ("terminal trace", b"TRACE /v1/terminal/x HTTP/1.1\r\nHost: terminal.localhost\r\n\r\n",
         405, "method_not_allowed"),
    ],
)  # fmt: skip
async def test_the_gateways_own_errors_are_problem_json(
    stack: RunningStack, label: str, request_bytes: bytes, status: int, code: str
) -> None:
    request_bytes = request_bytes.replace(b".localhost", f".{stack.base_domain}".encode())
    got, headers, body = _raw(stack, request_bytes + b"")
    assert got == status, (label, got, body[:200])
    assert headers["content-type"].startswith("application/problem+json"), label
    problem = json.loads(body)
    assert problem["status"] == status and problem["code"] == code, label
    assert problem["request_id"] and headers["x-request-id"] == problem["request_id"]


async def test_a_body_too_large_for_a_route_is_problem_json(gateway: httpx.AsyncClient) -> None:
    resp = await gateway.post(
        "/v1/auth/signup",
        content=b"x" * (11 * 1024 * 1024),
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 413
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == "payload_too_large"


async def test_the_api_reference_is_served_from_the_gateway(gateway: httpx.AsyncClient) -> None:
    """A developer scripting the platform finds one OpenAPI document of every public
    operation at api.<base>/openapi.json and Swagger UI over it at /docs, nothing from a CDN."""
    doc = await gateway.get("/openapi.json")
    assert doc.status_code == 200
    assert doc.headers["content-type"].startswith("application/json")
    assert doc.json() == json.loads(apidocs.DOCUMENT.read_text())
    assert "/v1/databases" in doc.json()["paths"]
    assert not any(p.startswith("/internal") for p in doc.json()["paths"])

    assert (await gateway.get("/docs")).status_code == 301
    page = await gateway.get("/docs/")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "http" not in page.text.split("<body>", 1)[1], "every asset is served locally"
    for asset in ("swagger-ui-bundle.js", "init.js", "swagger-ui.css"):
        assert (await gateway.get(f"/docs/{asset}")).status_code == 200, asset


@pytest.mark.parametrize("path", ["/v1/users/me", "/nowhere", "/.well-known/jwks.json"])
async def test_every_answer_carries_the_security_headers_once(
    gateway: httpx.AsyncClient, path: str
) -> None:
    response = await gateway.get(path)
    assert response.headers.get_list("x-content-type-options") == ["nosniff"], path
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-request-id"]
