"""The dashboard's session (issue 11): the refresh token lives in an HttpOnly, SameSite=Strict
cookie on dashboard.<base>/v1/auth that script cannot read (XSS cannot steal it), cookie
calls are refused unless they come from the dashboard (CSRF), and the APIs admit CORS from
the dashboard's origin only."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from shardz_devstack.testing import RunningStack
from tests.integration.helpers import PASSWORD, assert_problem, bearer, new_email

COOKIE = "shz_refresh"


def origin(stack: RunningStack) -> str:
    return f"http://dashboard.{stack.base_domain}:{stack.env['PLATFORM_GATEWAY_PORT']}"


def dash(stack: RunningStack, **extra: str) -> dict[str, str]:
    """Headers of the dashboard's own same-origin auth calls."""
    return {
        "Host": stack.host("dashboard"),
        "Origin": origin(stack),
        "X-Shardz-Session": "cookie",
        **extra,
    }


def refresh_cookie(resp: httpx.Response) -> tuple[str, str]:
    """(value, the Set-Cookie line) of the refresh cookie the answer sets."""
    for line in resp.headers.get_list("set-cookie"):
        if line.startswith(f"{COOKIE}="):
            return line.split(";", 1)[0].split("=", 1)[1], line
    raise AssertionError(f"no {COOKIE} cookie in {resp.headers.get_list('set-cookie')}")


async def cookie_signup(
    gateway: httpx.AsyncClient, stack: RunningStack
) -> tuple[dict[str, Any], str]:
    resp = await gateway.post(
        "/v1/auth/signup",
        json={"email": new_email(), "password": PASSWORD},
        headers=dash(stack),
    )
    assert resp.status_code == 201, resp.text
    value, _ = refresh_cookie(resp)
    return resp.json(), value


async def refresh(
    gateway: httpx.AsyncClient, stack: RunningStack, cookie: str, **headers: str
) -> httpx.Response:
    return await gateway.post(
        "/v1/auth/refresh", headers={**dash(stack), "Cookie": f"{COOKIE}={cookie}", **headers}
    )


async def test_the_refresh_token_is_only_in_an_httponly_strict_cookie(
    gateway: httpx.AsyncClient, stack: RunningStack
) -> None:
    """An XSS in the dashboard can read response bodies, never HttpOnly cookies: the refresh
    token must not appear in the body, and the cookie must be HttpOnly and SameSite=Strict."""
    body, value = await cookie_signup(gateway, stack)
    _, line = refresh_cookie(
        await gateway.post(
            "/v1/auth/login",
            json={"email": body["user"]["email"], "password": PASSWORD},
            headers=dash(stack),
        )
    )
    flags = {part.strip().lower() for part in line.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/v1/auth"} <= flags
    assert "secure" not in flags  # the local dashboard is http://; https origins get Secure
    assert body["refresh_token"] == "" and value and value not in str(body)
    me = await gateway.get("/v1/users/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200

    again = await refresh(gateway, stack, value)
    assert again.status_code == 200, again.text
    assert again.json()["refresh_token"] == ""
    rotated, _ = refresh_cookie(again)
    assert rotated != value
    # the spent cookie is a replay: refused (and the family revoked, as with body tokens)
    assert_problem(await refresh(gateway, stack, value), 401, "unauthenticated")


@pytest.mark.parametrize(
    "forgery",
    [
        {"Origin": "http://evil.example"},
        {"Origin": ""},
        {"X-Shardz-Session": ""},
    ],
    ids=["foreign-origin", "no-origin", "no-session-header"],
)
async def test_cross_site_refresh_with_the_cookie_is_refused(
    gateway: httpx.AsyncClient, stack: RunningStack, forgery: dict[str, str]
) -> None:
    """CSRF: another site can make the browser send the cookie (if SameSite ever failed) but
    not the dashboard's Origin or the custom header; such a call is 403 and spends nothing."""
    _, value = await cookie_signup(gateway, stack)
    headers = {k: v for k, v in dash(stack).items() if k not in forgery or forgery[k]}
    headers["Cookie"] = f"{COOKIE}={value}"
    if forgery.get("Origin"):
        headers["Origin"] = forgery["Origin"]
    resp = await gateway.post("/v1/auth/refresh", headers=headers)
    assert_problem(resp, 403, "forbidden")
    assert COOKIE not in resp.headers.get("set-cookie", "")
    # nothing changed: the refresh token was not spent and still works from the dashboard
    assert (await refresh(gateway, stack, value)).status_code == 200


async def test_cookie_login_from_another_origin_sets_no_cookie(
    gateway: httpx.AsyncClient, stack: RunningStack
) -> None:
    body, _ = await cookie_signup(gateway, stack)
    resp = await gateway.post(
        "/v1/auth/login",
        json={"email": body["user"]["email"], "password": PASSWORD},
        headers=dash(stack, Origin="http://evil.example"),
    )
    assert_problem(resp, 403, "forbidden")
    assert "set-cookie" not in resp.headers


async def test_the_refresh_cookie_is_dead_after_logout(
    gateway: httpx.AsyncClient, stack: RunningStack
) -> None:
    """A stolen copy of the cookie must not outlive the sign-out."""
    _, value = await cookie_signup(gateway, stack)
    out = await gateway.post(
        "/v1/auth/logout", headers={**dash(stack), "Cookie": f"{COOKIE}={value}"}
    )
    assert out.status_code == 204
    _, cleared = refresh_cookie(out)
    assert "max-age=0" in cleared.lower() or "expires=thu, 01 jan 1970" in cleared.lower()
    assert_problem(await refresh(gateway, stack, value), 401, "unauthenticated")


async def test_body_tokens_work_as_before_without_cookie_mode(gateway: httpx.AsyncClient) -> None:
    """CONTRACT section 4 is unchanged for programs: tokens in the body, no cookie."""
    resp = await gateway.post("/v1/auth/signup", json={"email": new_email(), "password": PASSWORD})
    assert resp.status_code == 201 and resp.json()["refresh_token"]
    assert "set-cookie" not in resp.headers
    again = await gateway.post(
        "/v1/auth/refresh", json={"refresh_token": resp.json()["refresh_token"]}
    )
    assert again.status_code == 200 and again.json()["refresh_token"]
    # no body and no cookie: no session at all (the body is optional in the document)
    assert_problem(await gateway.post("/v1/auth/refresh"), 401, "unauthenticated")
    assert_problem(await gateway.post("/v1/auth/refresh", json={}), 422, "validation_error")


@pytest.mark.parametrize("path", ["/v1/databases", "/v1/storage/objects/a.txt", "/v1/api-keys"])
async def test_cors_preflight_admits_the_dashboard_origin_only(
    gateway: httpx.AsyncClient, stack: RunningStack, path: str
) -> None:
    """A page on another origin must not be able to call the APIs from a visitor's browser."""
    asked = {
        "Access-Control-Request-Method": "PUT" if "storage" in path else "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    ok = await gateway.options(path, headers={"Origin": origin(stack), **asked})
    assert ok.status_code == 200, ok.text
    assert ok.headers["access-control-allow-origin"] == origin(stack)
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in ok.headers  # bearer only, no cookies

    evil = await gateway.options(path, headers={"Origin": "http://evil.example", **asked})
    assert_problem(evil, 403, "forbidden")
    assert "access-control-allow-origin" not in evil.headers
    plain = await gateway.get("/v1/billing/plans", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in plain.headers


async def test_dashboard_is_served_under_a_strict_csp(
    gateway: httpx.AsyncClient, stack: RunningStack
) -> None:
    """No inline script may run (XSS), nobody may frame the dashboard (clickjacking), and hashed
    assets are cached for good while index.html is revalidated."""
    port = stack.env["PLATFORM_GATEWAY_PORT"]
    host = {"Host": f"{stack.host('dashboard')}:{port}"}  # as a browser writes it
    page = await gateway.get("/databases", headers=host)
    assert page.status_code == 200 and '<div id="app">' in page.text
    csp = {d.split()[0]: d.split()[1:] for d in page.headers["content-security-policy"].split("; ")}
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
    assert f"ws://terminal.{stack.base_domain}:{port}" in csp["connect-src"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-cache"
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text), "inline script"
    asset = re.search(r'src="(/assets/[^"]+\.js)"', page.text)
    assert asset
    js = await gateway.get(asset[1], headers={**host, "Accept-Encoding": "gzip"})
    assert js.status_code == 200
    assert "immutable" in js.headers["cache-control"]
    assert js.headers.get("content-encoding") == "gzip"
    assert "frame-ancestors 'none'" in js.headers["content-security-policy"]
    licences = await gateway.get("/THIRD_PARTY_LICENSES.txt", headers=host)
    assert licences.status_code == 200 and "Name: svelte" in licences.text
