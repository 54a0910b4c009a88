"""Cookie mode for the web dashboard: the refresh token lives in an HttpOnly cookie that
script cannot read, so an XSS in the dashboard cannot steal a lasting session.

The dashboard opts in with `X-Shardz-Session: cookie` on same-origin calls to
`dashboard.<base>/v1/auth/*` (the gateway routes them to identity). A page on another site can
send neither that header nor the dashboard's `Origin` without a CORS preflight, which fails,
so requiring both stops cross-site request forgery; SameSite=Strict is a second fence."""

from __future__ import annotations

from fastapi import Request, Response

from shardz_common.errors import Forbidden
from shardz_identity.config import IdentitySettings

SESSION_HEADER = "x-shardz-session"
REFRESH_COOKIE = "shz_refresh"
COOKIE_PATH = "/v1/auth"  # the only routes that read it: refresh and logout


def cookie_mode(request: Request) -> bool:
    """Whether this call asked for cookie mode; refuses one that is not from the dashboard."""
    if request.headers.get(SESSION_HEADER) != "cookie":
        if REFRESH_COOKIE in request.cookies and _reads_cookie(request):
            raise Forbidden(f"a cookie session needs the {SESSION_HEADER} header")
        return False
    expected = _settings(request).platform.dashboard_url()
    origin = (request.headers.get("origin") or "").rstrip("/")
    if origin != expected:
        raise Forbidden("cookie sessions are only accepted from the dashboard's origin")
    return True


def _reads_cookie(request: Request) -> bool:
    # refresh and logout without a body would otherwise act on the cookie alone
    return request.url.path.rstrip("/").endswith(("/refresh", "/logout"))


def _settings(request: Request) -> IdentitySettings:
    settings: IdentitySettings = request.app.state.settings
    return settings


def presented(request: Request) -> str | None:
    value = request.cookies.get(REFRESH_COOKIE)
    return value if value and len(value) <= 512 else None


def set_refresh(request: Request, response: Response, refresh_token: str) -> None:
    settings = _settings(request)
    response.set_cookie(
        REFRESH_COOKIE,
        refresh_token,
        max_age=settings.refresh_token_days * 86400,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=settings.platform.dashboard_url().startswith("https://"),
    )
    response.headers["Cache-Control"] = "no-store"


def clear_refresh(request: Request, response: Response) -> None:
    response.delete_cookie(
        REFRESH_COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_settings(request).platform.dashboard_url().startswith("https://"),
    )
