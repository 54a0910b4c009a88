"""A local OAuth 2.0 (GitHub-style) and OpenID Connect (Google-style) provider for tests.

It speaks the real protocol over HTTP on 127.0.0.1: authorization codes bound to the client,
the redirect URI and the PKCE challenge, good once; bearer access tokens; RS256 ID tokens
signed with joserfc and published as a JWKS. Authorization approves the configured account
without asking, as a signed-in user who already consented would see it."""

from __future__ import annotations

import base64
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

import uvicorn
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route


@dataclass
class Account:
    subject: str
    email: str
    email_verified: bool = True
    login: str = "octocat"
    # GitHub only: more rows for /user/emails besides the primary one.
    other_emails: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Grant:
    kind: str  # "github" or "oidc"
    client_id: str
    redirect_uri: str | None
    account: Account
    challenge: str | None
    nonce: str | None
    scope: str
    issued: float = field(default_factory=time.monotonic)


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value if scheme.lower() == "bearer" and value else None


def _basic(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    user, _, password = base64.b64decode(value).decode().partition(":")
    return unquote(user), unquote(password)  # RFC 6749 2.3.1: form-encoded before Basic


class OAuthProvider:
    """Both providers in one ASGI app. Tests steer it through the public attributes."""

    def __init__(
        self,
        github_client: tuple[str, str] = ("gh-client", "gh-secret"),
        oidc_client: tuple[str, str] = ("google-client", "google-secret"),
    ) -> None:
        self.github_client = github_client
        self.oidc_client = oidc_client
        self.github_account = Account(subject="1001", email="octo@example.com")
        self.oidc_account = Account(subject="g-2002", email="gina@example.com")
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "use": "sig"})
        # None, or how to spoil the next ID tokens: "signature", "audience", "nonce", "expired".
        self.tamper: str | None = None
        self.deny = False  # authorization answers error=access_denied
        self.failing = False  # the token endpoints answer 503
        self.token_requests: list[dict[str, str]] = []
        self._grants: dict[str, _Grant] = {}
        self._tokens: dict[str, Account] = {}
        self.base_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/login/oauth/authorize", self.github_authorize),
                Route("/login/oauth/access_token", self.github_token, methods=["POST"]),
                Route("/user", self.github_user),
                Route("/user/emails", self.github_emails),
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.oidc_authorize),
                Route("/token", self.oidc_token, methods=["POST"]),
                Route("/jwks", self.jwks),
            ]
        )

    # -- running -------------------------------------------------------------------------

    def start(self) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test OAuth provider did not start")
            time.sleep(0.02)
        return self.base_url

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    # -- shared pieces -------------------------------------------------------------------

    def _redirect(self, redirect_uri: str, **params: str) -> RedirectResponse:
        sep = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(f"{redirect_uri}{sep}{urlencode(params)}", status_code=302)

    def _new_code(self, grant: _Grant) -> str:
        code = secrets.token_urlsafe(24)
        self._grants[code] = grant
        return code

    def _redeem(self, kind: str, form: dict[str, str], client_id: str) -> tuple[_Grant | None, str]:
        """Spend a code; return the grant, or None and the OAuth error name."""
        grant = self._grants.pop(form.get("code", ""), None)
        if grant is None or grant.kind != kind or time.monotonic() - grant.issued > 600:
            return None, "invalid_grant"
        if grant.client_id != client_id or grant.redirect_uri != form.get("redirect_uri"):
            return None, "invalid_grant"
        if grant.challenge is not None:
            verifier = form.get("code_verifier", "")
            if not verifier or create_s256_code_challenge(verifier) != grant.challenge:
                return None, "invalid_grant"
        return grant, ""

    def _issue_access_token(self, account: Account) -> str:
        token = secrets.token_urlsafe(24)
        self._tokens[token] = account
        return token

    async def _form(self, request: Request) -> dict[str, str]:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        self.token_requests.append(form)
        return form

    # -- GitHub --------------------------------------------------------------------------

    async def github_authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != self.github_client[0]:
            return PlainTextResponse("unknown client", status_code=400)
        redirect_uri = q.get("redirect_uri")
        if not redirect_uri:
            return PlainTextResponse("no redirect_uri", status_code=400)
        if self.deny:
            return self._redirect(redirect_uri, error="access_denied", state=q.get("state", ""))
        if q.get("code_challenge") and q.get("code_challenge_method") != "S256":
            return self._redirect(redirect_uri, error="invalid_request", state=q.get("state", ""))
        code = self._new_code(
            _Grant(
                "github",
                self.github_client[0],
                redirect_uri,
                self.github_account,
                q.get("code_challenge"),
                None,
                q.get("scope", ""),
            )
        )
        return self._redirect(redirect_uri, code=code, state=q.get("state", ""))

    async def github_token(self, request: Request) -> Response:
        if self.failing:
            return PlainTextResponse("unicorn", status_code=503)
        form = await self._form(request)
        if (form.get("client_id"), form.get("client_secret")) != self.github_client:
            body: dict[str, Any] = {"error": "incorrect_client_credentials"}
        else:
            grant, _ = self._redeem("github", form, self.github_client[0])
            body = (
                {"error": "bad_verification_code"}
                if grant is None
                else {
                    "access_token": self._issue_access_token(grant.account),
                    "token_type": "bearer",
                    "scope": grant.scope,
                }
            )
        # GitHub answers 200 even for errors, as JSON only when asked to.
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(body)
        return PlainTextResponse(urlencode(body), media_type="application/x-www-form-urlencoded")

    def _github_account(self, request: Request) -> Account | None:
        token = _bearer(request)
        return self._tokens.get(token) if token else None

    async def github_user(self, request: Request) -> Response:
        account = self._github_account(request)
        if account is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return JSONResponse({"id": int(account.subject), "login": account.login, "email": None})

    async def github_emails(self, request: Request) -> Response:
        account = self._github_account(request)
        if account is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        primary = {
            "email": account.email,
            "primary": True,
            "verified": account.email_verified,
            "visibility": "private",
        }
        return JSONResponse([*account.other_emails, primary])

    # -- OpenID Connect ------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        base = self.base_url
        return JSONResponse(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "jwks_uri": f"{base}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "code_challenge_methods_supported": ["S256"],
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "nonce",
                    "email",
                    "email_verified",
                ],
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False, alg="RS256")]})

    async def oidc_authorize(self, request: Request) -> Response:
        q = request.query_params
        redirect_uri = q.get("redirect_uri")
        if q.get("client_id") != self.oidc_client[0] or not redirect_uri:
            return PlainTextResponse("unknown client or redirect_uri", status_code=400)
        state = q.get("state", "")
        if self.deny:
            return self._redirect(redirect_uri, error="access_denied", state=state)
        scopes = q.get("scope", "").split()
        if (
            q.get("response_type") != "code"
            or "openid" not in scopes
            or q.get("code_challenge_method") != "S256"
            or not q.get("code_challenge")
        ):
            return self._redirect(redirect_uri, error="invalid_request", state=state)
        code = self._new_code(
            _Grant(
                "oidc",
                self.oidc_client[0],
                redirect_uri,
                self.oidc_account,
                q["code_challenge"],
                q.get("nonce"),
                " ".join(scopes),
            )
        )
        return self._redirect(redirect_uri, code=code, state=state)

    async def oidc_token(self, request: Request) -> Response:
        if self.failing:
            return JSONResponse({"error": "temporarily_unavailable"}, status_code=503)
        form = await self._form(request)
        client = _basic(request) or (form.get("client_id", ""), form.get("client_secret", ""))
        if client != self.oidc_client:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") != "authorization_code":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        grant, error = self._redeem("oidc", form, self.oidc_client[0])
        if grant is None:
            return JSONResponse({"error": error}, status_code=400)
        return JSONResponse(
            {
                "access_token": self._issue_access_token(grant.account),
                "token_type": "Bearer",
                "expires_in": 3599,
                "scope": grant.scope,
                "id_token": self.id_token(grant.account, grant.nonce),
            },
            headers={"Cache-Control": "no-store"},
        )

    def id_token(self, account: Account, nonce: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.base_url,
            "aud": self.oidc_client[0],
            "azp": self.oidc_client[0],
            "sub": account.subject,
            "iat": now,
            "exp": now + 3600,
            "email": account.email,
            "email_verified": account.email_verified,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        key = self.key
        if self.tamper == "signature":  # same kid, another key: the signature cannot verify
            key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1"})
        elif self.tamper == "audience":
            claims["aud"] = claims["azp"] = "someone-elses-client"
        elif self.tamper == "nonce":
            claims["nonce"] = "not-the-nonce-you-sent"
        elif self.tamper == "expired":
            claims["iat"], claims["exp"] = now - 7200, now - 3600
        return jwt.encode({"alg": "RS256", "kid": "test-key-1"}, claims, key)
