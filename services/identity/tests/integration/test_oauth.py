"""OAuth sign-in (CONTRACT section 4) against a local provider that speaks the real protocol.

The identity app runs in-process on a fresh, migrated database; the browser's part (follow the
authorize redirect, let the provider approve, come back to the callback) is done by hand."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shardz_common.db import make_engine
from shardz_common.errors import NotFound
from shardz_common.migrate import upgrade
from shardz_common.testing.db import fresh_database
from shardz_identity.config import IdentitySettings
from shardz_identity.main import create_app
from shardz_identity.services.oauth import provider_for

SERVICE_ROOT = Path(__file__).resolve().parents[2]
PUBLIC_URL = "http://api.test"


def _load_provider_module() -> ModuleType:
    # tests/ is not a package (pytest runs with --import-mode=importlib): load it by path.
    path = SERVICE_ROOT / "tests" / "oauth_provider.py"
    spec = importlib.util.spec_from_file_location("identity_test_oauth_provider", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


op = _load_provider_module()


@dataclass
class Stack:
    app: FastAPI
    api: httpx.AsyncClient
    settings: IdentitySettings
    db: AsyncEngine


@pytest.fixture(scope="module")
def provider() -> Iterator[op.OAuthProvider]:
    p = op.OAuthProvider()
    p.start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
async def stack(provider: op.OAuthProvider) -> AsyncIterator[Stack]:
    async with fresh_database("shardz_t_identity_oauth") as url:
        await asyncio.to_thread(upgrade, SERVICE_ROOT, url)
        base = provider.base_url
        settings = IdentitySettings(
            database_url=url,
            secret_key=Fernet.generate_key().decode(),
            public_url=PUBLIC_URL,
            github_client_id=provider.github_client[0],
            github_client_secret=provider.github_client[1],
            github_authorize_url=f"{base}/login/oauth/authorize",
            github_token_url=f"{base}/login/oauth/access_token",
            github_api_url=base,
            google_client_id=provider.oidc_client[0],
            google_client_secret=provider.oidc_client[1],
            google_discovery_url=f"{base}/.well-known/openid-configuration",
        )
        app = create_app(settings)
        db = make_engine(url, pool_size=2, max_overflow=0)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as api,
        ):
            yield Stack(app, api, settings, db)
        await db.dispose()


@pytest.fixture(autouse=True)
def fresh_provider_behaviour(provider: op.OAuthProvider) -> Iterator[None]:
    provider.tamper, provider.deny, provider.failing = None, False, False
    yield
    provider.tamper, provider.deny, provider.failing = None, False, False


def new_account(domain: str = "example.com") -> op.Account:
    tag = uuid.uuid4().int % 10**9
    return op.Account(subject=str(tag), email=f"user{tag}@{domain}")


async def to_callback(api: httpx.AsyncClient, provider_name: str) -> httpx.URL:
    """Be the browser: start at identity, let the provider approve, return where it sends us."""
    start = await api.get(f"/v1/auth/oauth/{provider_name}/authorize")
    assert start.status_code == 302, start.text
    async with httpx.AsyncClient(trust_env=False) as browser:
        approved = await browser.get(start.headers["location"])
    assert approved.status_code == 302, approved.text
    back = httpx.URL(approved.headers["location"])
    assert f"{back.scheme}://{back.host}" == PUBLIC_URL
    assert back.path == f"/v1/auth/oauth/{provider_name}/callback"
    return back


async def sign_in(api: httpx.AsyncClient, provider_name: str) -> httpx.Response:
    back = await to_callback(api, provider_name)
    return await api.get(back.path, params=back.params)


def assert_problem(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == code


async def count(db: AsyncEngine, sql: str, **params: object) -> int:
    async with db.connect() as conn:
        return int((await conn.execute(text(sql), params)).scalar_one())


async def test_github_first_sign_in_creates_the_account(
    stack: Stack, provider: op.OAuthProvider
) -> None:
    provider.github_account = account = new_account()
    account.other_emails = [  # not primary, or not verified: never chosen
        {"email": "old@example.com", "primary": False, "verified": True},
        {"email": "spoof@example.com", "primary": False, "verified": False},
    ]
    start = await stack.api.get("/v1/auth/oauth/github/authorize")
    assert start.status_code == 302
    query = httpx.URL(start.headers["location"]).params
    assert query["client_id"] == "gh-client"
    assert query["redirect_uri"] == f"{PUBLIC_URL}/v1/auth/oauth/github/callback"
    assert query["code_challenge_method"] == "S256" and query["code_challenge"]
    assert (
        await count(
            stack.db, "SELECT count(*) FROM oauth_states WHERE state = :s", s=query["state"]
        )
        == 1
    )

    resp = await sign_in(stack.api, "github")
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()
    assert body["user"]["email"] == account.email
    assert set(body["user"]) == {"id", "email", "created_at"}
    assert body["token_type"] == "bearer" and body["expires_in"] > 0

    me = await stack.api.get(
        "/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200 and me.json()["email"] == account.email
    refreshed = await stack.api.post(
        "/v1/auth/refresh", json={"refresh_token": body["refresh_token"]}
    )
    assert refreshed.status_code == 200
    assert (
        await count(
            stack.db,
            "SELECT count(*) FROM oauth_links WHERE provider = 'github' AND subject = :s "
            "AND user_id = :u",
            s=account.subject,
            u=uuid.UUID(body["user"]["id"]),
        )
        == 1
    )
    assert (
        await count(
            stack.db,
            "SELECT count(*) FROM outbox WHERE type = 'user.created' AND body LIKE :u",
            u=f"%{body['user']['id']}%",
        )
        == 1
    )
    # The client secret went in the form, with the PKCE verifier.
    sent = provider.token_requests[-1]
    assert sent["client_secret"] == "gh-secret" and sent["code_verifier"]


async def test_second_sign_in_reuses_the_user(stack: Stack, provider: op.OAuthProvider) -> None:
    provider.github_account = new_account()
    first = await sign_in(stack.api, "github")
    second = await sign_in(stack.api, "github")
    assert first.status_code == second.status_code == 200
    assert first.json()["user"]["id"] == second.json()["user"]["id"]
    assert first.json()["refresh_token"] != second.json()["refresh_token"]


async def test_an_existing_account_is_never_taken_over_by_a_social_sign_in(
    stack: Stack, provider: op.OAuthProvider
) -> None:
    # Whoever controls a provider account with this e-mail must not get into (or lock the
    # owner out of) the account that already has it: 409, and nothing of it changes.
    provider.github_account = account = new_account()
    signup = await stack.api.post(
        "/v1/auth/signup", json={"email": account.email, "password": "correct horse battery"}
    )
    assert signup.status_code == 201
    resp = await sign_in(stack.api, "github")
    assert_problem(resp, 409, "conflict")
    assert "/v1/auth/oauth/github/link" in resp.json()["detail"]
    login = await stack.api.post(
        "/v1/auth/login", json={"email": account.email, "password": "correct horse battery"}
    )
    assert login.status_code == 200
    still = await stack.api.post(
        "/v1/auth/refresh", json={"refresh_token": signup.json()["refresh_token"]}
    )
    assert still.status_code == 200
    assert await count(stack.db, "SELECT count(*) FROM oauth_links WHERE subject = :s",
                       s=account.subject) == 0  # fmt: skip


async def test_the_signed_in_owner_links_a_provider(
    stack: Stack, provider: op.OAuthProvider
) -> None:
    provider.github_account = account = new_account()
    signup = await stack.api.post(
        "/v1/auth/signup", json={"email": account.email, "password": "correct horse battery"}
    )
    token = signup.json()["access_token"]
    unauthenticated = await stack.api.post("/v1/auth/oauth/github/link")
    assert_problem(unauthenticated, 401, "unauthenticated")
    started = await stack.api.post(
        "/v1/auth/oauth/github/link", headers={"Authorization": f"Bearer {token}"}
    )
    assert started.status_code == 200, started.text
    async with httpx.AsyncClient(trust_env=False) as browser:
        approved = await browser.get(started.json()["authorization_url"])
    back = httpx.URL(approved.headers["location"])
    linked = await stack.api.get(back.path, params=back.params)
    assert linked.status_code == 200, linked.text
    assert linked.json()["user"]["id"] == signup.json()["user"]["id"]
    # from now on GitHub signs the owner in, and the password keeps working
    again = await sign_in(stack.api, "github")
    assert again.json()["user"]["id"] == signup.json()["user"]["id"]
    login = await stack.api.post(
        "/v1/auth/login", json={"email": account.email, "password": "correct horse battery"}
    )
    assert login.status_code == 200


async def test_an_identity_linked_to_one_account_cannot_be_linked_to_another(
    stack: Stack, provider: op.OAuthProvider
) -> None:
    provider.github_account = new_account()
    first = await sign_in(stack.api, "github")
    assert first.status_code == 200
    other = await stack.api.post(
        "/v1/auth/signup",
        json={"email": f"other{uuid.uuid4().hex[:8]}@example.com", "password": "0123456789"},
    )
    started = await stack.api.post(
        "/v1/auth/oauth/github/link",
        headers={"Authorization": f"Bearer {other.json()['access_token']}"},
    )
    async with httpx.AsyncClient(trust_env=False) as browser:
        approved = await browser.get(started.json()["authorization_url"])
    back = httpx.URL(approved.headers["location"])
    assert_problem(await stack.api.get(back.path, params=back.params), 409, "conflict")
    again = await sign_in(stack.api, "github")
    assert again.json()["user"]["id"] == first.json()["user"]["id"]


async def test_a_callback_from_another_browser_is_refused(
    stack: Stack, provider: op.OAuthProvider
) -> None:
    # Login CSRF: the attacker starts a sign-in with their own account and makes the victim's
    # browser open the callback URL. A leaked callback URL is the same attack in reverse.
    provider.github_account = new_account()
    back = await to_callback(stack.api, "github")  # the attacker's browser has the cookie
    transport = httpx.ASGITransport(app=stack.app)
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as victim:
        no_cookie = await victim.get(back.path, params=back.params)
        assert_problem(no_cookie, 401, "unauthenticated")
        assert "access_token" not in no_cookie.text
    back = await to_callback(stack.api, "github")
    async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as victim:
        own = await victim.get("/v1/auth/oauth/github/authorize")  # its own, other cookie
        assert own.status_code == 302 and victim.cookies.get("shz_oauth")
        attributes = own.headers["set-cookie"].lower()
        assert "httponly" in attributes and "samesite=lax" in attributes
        assert "path=/v1/auth/oauth" in attributes
        other_cookie = await victim.get(back.path, params=back.params)
        assert_problem(other_cookie, 401, "unauthenticated")
    cookie = stack.api.cookies.get("shz_oauth")
    assert cookie and len(cookie) >= 32


async def test_github_account_without_verified_primary_email_is_refused(
    stack: Stack, provider: op.OAuthProvider
) -> None:
    provider.github_account = account = new_account()
    account.email_verified = False
    assert_problem(await sign_in(stack.api, "github"), 401, "unauthenticated")
    assert (
        await count(stack.db, "SELECT count(*) FROM users WHERE email = :e", e=account.email) == 0
    )


async def test_google_oidc_flow_with_nonce_and_pkce(
    stack: Stack, provider: op.OAuthProvider
) -> None:
    provider.oidc_account = account = new_account("gmail.test")
    start = await stack.api.get("/v1/auth/oauth/google/authorize")
    assert start.status_code == 302
    location = httpx.URL(start.headers["location"])
    assert str(location).startswith(f"{provider.base_url}/authorize?")
    q = location.params
    assert q["response_type"] == "code" and "openid" in q["scope"].split()
    assert q["nonce"] and q["code_challenge"] and q["code_challenge_method"] == "S256"
    assert (
        await count(
            stack.db,
            "SELECT count(*) FROM oauth_states WHERE state = :s AND nonce = :n",
            s=q["state"],
            n=q["nonce"],
        )
        == 1
    )

    resp = await sign_in(stack.api, "google")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["user"]["email"] == account.email
    me = await stack.api.get(
        "/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200 and me.json()["email"] == account.email
    assert provider.token_requests[-1]["code_verifier"]  # the provider checked it against S256

    again = await sign_in(stack.api, "google")
    assert again.status_code == 200 and again.json()["user"]["id"] == body["user"]["id"]


@pytest.mark.parametrize("tamper", ["signature", "audience", "nonce", "expired"])
async def test_a_tampered_id_token_is_refused(
    stack: Stack, provider: op.OAuthProvider, tamper: str
) -> None:
    provider.oidc_account = account = new_account("gmail.test")
    provider.tamper = tamper
    assert_problem(await sign_in(stack.api, "google"), 401, "unauthenticated")
    assert (
        await count(stack.db, "SELECT count(*) FROM users WHERE email = :e", e=account.email) == 0
    )


async def test_google_email_must_be_verified(stack: Stack, provider: op.OAuthProvider) -> None:
    provider.oidc_account = account = new_account("gmail.test")
    account.email_verified = False
    assert_problem(await sign_in(stack.api, "google"), 401, "unauthenticated")


async def test_a_forged_state_is_refused(stack: Stack) -> None:
    resp = await stack.api.get(
        "/v1/auth/oauth/github/callback", params={"code": "x", "state": "forged"}
    )
    assert_problem(resp, 401, "unauthenticated")
    no_state = await stack.api.get("/v1/auth/oauth/github/callback", params={"code": "x"})
    assert_problem(no_state, 401, "unauthenticated")


async def test_a_state_works_once(stack: Stack, provider: op.OAuthProvider) -> None:
    provider.github_account = new_account()
    back = await to_callback(stack.api, "github")
    first = await stack.api.get(back.path, params=back.params)
    assert first.status_code == 200
    replay = await stack.api.get(back.path, params=back.params)
    assert_problem(replay, 401, "unauthenticated")


async def test_a_state_belongs_to_its_provider(stack: Stack, provider: op.OAuthProvider) -> None:
    provider.github_account = new_account()
    back = await to_callback(stack.api, "github")
    other = await stack.api.get("/v1/auth/oauth/google/callback", params=back.params)
    assert_problem(other, 401, "unauthenticated")


async def test_a_state_expires_after_ten_minutes(stack: Stack, provider: op.OAuthProvider) -> None:
    provider.github_account = new_account()
    back = await to_callback(stack.api, "github")
    async with stack.db.begin() as conn:
        await conn.execute(
            text(
                "UPDATE oauth_states SET created_at = now() - interval '11 minutes' "
                "WHERE state = :s"
            ),
            {"s": back.params["state"]},
        )
    assert_problem(await stack.api.get(back.path, params=back.params), 401, "unauthenticated")
    # Refused, and spent all the same.
    assert (
        await count(
            stack.db, "SELECT count(*) FROM oauth_states WHERE state = :s", s=back.params["state"]
        )
        == 0
    )


async def test_provider_error_and_bad_code_are_refused(
    stack: Stack, provider: op.OAuthProvider
) -> None:
    provider.deny = True
    back = await to_callback(stack.api, "github")
    assert back.params["error"] == "access_denied"
    assert_problem(await stack.api.get(back.path, params=back.params), 401, "unauthenticated")

    provider.deny = False
    back = await to_callback(stack.api, "google")
    params = dict(back.params)
    params["code"] = "not-a-code-the-provider-issued"
    assert_problem(await stack.api.get(back.path, params=params), 401, "unauthenticated")


async def test_a_failing_provider_is_503(stack: Stack, provider: op.OAuthProvider) -> None:
    provider.github_account = new_account()
    provider.failing = True
    back = await to_callback(stack.api, "github")
    assert_problem(await stack.api.get(back.path, params=back.params), 503, "unavailable")


async def test_an_unreachable_provider_is_503_and_nothing_is_spent(
    stack: Stack, provider: op.OAuthProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider.github_account = account = new_account()
    back = await to_callback(stack.api, "github")
    monkeypatch.setattr(stack.settings, "github_token_url", "http://127.0.0.1:9/token")
    assert_problem(await stack.api.get(back.path, params=back.params), 503, "unavailable")
    monkeypatch.undo()
    # The state was not spent, so the browser can simply come back once the provider is up.
    retry = await stack.api.get(back.path, params=back.params)
    assert retry.status_code == 200 and retry.json()["user"]["email"] == account.email


async def test_unknown_provider_is_404(stack: Stack) -> None:
    for path in ("/v1/auth/oauth/myspace/authorize", "/v1/auth/oauth/myspace/callback"):
        assert_problem(await stack.api.get(path), 404, "not_found")


def test_a_provider_without_a_client_id_does_not_exist() -> None:
    settings = IdentitySettings(github_client_id=None, google_client_id=None)
    for name in ("github", "google"):
        with pytest.raises(NotFound):
            provider_for(settings, name)
