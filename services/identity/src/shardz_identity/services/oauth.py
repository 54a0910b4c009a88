"""Sign-in with GitHub (OAuth 2.0) and Google (OpenID Connect), CONTRACT section 4.

The browser leaves with a random `state` that we keep with a PKCE verifier (and, for OIDC, a
nonce); the callback spends that state once, exchanges the code through Authlib, learns a
verified e-mail and a stable subject, and signs the person in: an existing link, else a new
account. A live account that already has that e-mail is never taken over: its owner signs in
to it and links the provider (`POST /v1/auth/oauth/{provider}/link`).

The state is also bound to the browser that started the flow: a random value in an HttpOnly,
SameSite=Lax cookie, whose SHA-256 the state row keeps. A callback URL presented by another
browser (login CSRF, a leaked or logged URL) is refused."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shardz_common.errors import Conflict, NotFound, Unauthenticated, Unavailable
from shardz_identity.config import IdentitySettings
from shardz_identity.db.tables import OAuthLink, OAuthState, User
from shardz_identity.domain.models import SignupOut, UserOut
from shardz_identity.services.accounts import create_user, find_live_user
from shardz_identity.services.tokens import TokenService

STATE_TTL = timedelta(minutes=10)
TIMEOUT = httpx.Timeout(10.0)
METADATA_TTL_SECONDS = 3600.0
JWKS_MIN_REFETCH_SECONDS = 30.0
ID_TOKEN_ALGORITHMS = ["RS256"]
# Google's ID tokens carry either spelling of its issuer ("Validating an ID token").
GOOGLE_ISSUERS = {
    "https://accounts.google.com": ["https://accounts.google.com", "accounts.google.com"]
}
_ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class OAuthRejected(Unauthenticated):
    # The state is spent even though the answer is 401, so commit the request's work.
    commit = True


class AccountExists(Conflict):
    commit = True  # the state is spent all the same


@dataclass(frozen=True)
class SpentState:
    code_verifier: str
    nonce: str | None
    link_user_id: uuid.UUID | None


def binding_hash(binding: str) -> str:
    return hashlib.sha256(binding.encode()).hexdigest()


@dataclass(frozen=True)
class Provider:
    name: str
    client_id: str
    client_secret: str | None
    scope: str
    oidc: bool


@dataclass(frozen=True)
class ExternalIdentity:
    subject: str
    email: str


def provider_for(settings: IdentitySettings, name: str) -> Provider:
    if name == "github" and settings.github_client_id:
        return Provider(
            name,
            settings.github_client_id,
            settings.github_client_secret,
            "read:user user:email",
            oidc=False,
        )
    if name == "google" and settings.google_client_id:
        return Provider(
            name,
            settings.google_client_id,
            settings.google_client_secret,
            "openid email",
            oidc=True,
        )
    raise NotFound(f"unknown sign-in provider: {name}")


def _client_auth_method(provider: Provider) -> str:
    if not provider.client_secret:
        return "none"  # a public client: PKCE alone binds the code to us
    # GitHub reads the client credentials from the form; Google prefers HTTP Basic.
    return "client_secret_basic" if provider.oidc else "client_secret_post"


@asynccontextmanager
async def _talking_to(provider: str) -> AsyncIterator[None]:
    """Map what can go wrong at the provider: down is 503, a refusal is 401."""
    try:
        yield
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        if status >= 500 or status == 429:
            raise Unavailable(f"{provider} is unavailable, try again later") from exc
        raise OAuthRejected(f"{provider} refused the sign-in") from exc
    except httpx.TransportError as exc:
        raise Unavailable(f"{provider} is unreachable, try again later") from exc
    except OAuthError as exc:
        raise OAuthRejected(f"{provider} refused the sign-in ({exc.error})") from exc
    except (ValueError, KeyError) as exc:  # not JSON, or not the expected shape
        raise OAuthRejected(f"{provider} answered something unexpected") from exc


def _json(resp: httpx.Response) -> Any:
    resp.raise_for_status()
    return resp.json()


async def _public_json(client: AsyncOAuth2Client, url: str) -> dict[str, Any]:
    """GET a document that needs no access token (discovery, JWKS)."""
    doc = _json(await client.request("GET", url, withhold_token=True))
    if not isinstance(doc, dict):
        raise ValueError(f"{url} is not a JSON object")
    return doc


class _OidcMetadata:
    """The discovery document and JWKS of one issuer, cached; an unknown `kid` refetches."""

    def __init__(self, discovery_url: str) -> None:
        self.discovery_url = discovery_url
        self._doc: dict[str, Any] | None = None
        self._doc_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0

    async def document(self, client: AsyncOAuth2Client) -> dict[str, Any]:
        if self._doc is None or time.monotonic() - self._doc_at > METADATA_TTL_SECONDS:
            doc = await _public_json(client, self.discovery_url)
            for field in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(doc.get(field), str):
                    raise ValueError(f"discovery document lacks {field}")
            self._doc, self._doc_at = doc, time.monotonic()
        return self._doc

    async def keys(self, client: AsyncOAuth2Client, *, refresh: bool = False) -> KeySet:
        stale = time.monotonic() - self._keys_at > JWKS_MIN_REFETCH_SECONDS
        if self._keys is None or (refresh and stale):
            doc = await self.document(client)
            jwks = await _public_json(client, doc["jwks_uri"])
            keys = KeySet.import_key_set({"keys": jwks["keys"]})
            self._keys, self._keys_at = keys, time.monotonic()
        return self._keys


class OAuthService:
    def __init__(self, settings: IdentitySettings, tokens: TokenService) -> None:
        self.settings = settings
        self.tokens = tokens
        self.google = _OidcMetadata(settings.google_discovery_url)

    def _client(self, provider: Provider) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            scope=provider.scope,
            redirect_uri=f"{self.settings.public_url}/v1/auth/oauth/{provider.name}/callback",
            code_challenge_method="S256",
            token_endpoint_auth_method=_client_auth_method(provider),
            timeout=TIMEOUT,
        )

    async def authorize_url(
        self,
        session: AsyncSession,
        name: str,
        binding: str,
        link_user_id: uuid.UUID | None = None,
    ) -> str:
        """Where to send the browser; `binding` is the value of its cookie, `link_user_id` the
        signed-in account the provider's identity is to be linked to."""
        provider = provider_for(self.settings, name)
        state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
        nonce = secrets.token_urlsafe(32) if provider.oidc else None
        try:
            async with self._client(provider) as client, _talking_to(name):
                if provider.oidc:
                    endpoint = (await self.google.document(client))["authorization_endpoint"]
                else:
                    endpoint = self.settings.github_authorize_url
                extra = {"nonce": nonce} if nonce else {}
                url, _ = client.create_authorization_url(
                    endpoint, state=state, code_verifier=verifier, **extra
                )
        except OAuthRejected as exc:  # e.g. a discovery document we cannot use
            raise Unavailable(f"{name} sign-in is unavailable right now") from exc
        session.add(
            OAuthState(
                state=state,
                provider=name,
                code_verifier=verifier,
                nonce=nonce,
                browser_hash=binding_hash(binding),
                link_user_id=link_user_id,
            )
        )
        await session.flush()
        return str(url)

    async def sign_in(
        self,
        session: AsyncSession,
        name: str,
        *,
        code: str | None,
        state: str | None,
        error: str | None,
        binding: str | None,
    ) -> SignupOut:
        provider = provider_for(self.settings, name)
        spent = await _spend_state(session, name, state, binding)
        verifier, nonce = spent.code_verifier, spent.nonce
        if error is not None:
            shown = error if _ERROR_CODE.match(error) else "error"
            raise OAuthRejected(f"{name} did not authorize the sign-in ({shown})")
        if not code:
            raise OAuthRejected("the callback carries no authorization code")
        async with self._client(provider) as client, _talking_to(name):
            if provider.oidc:
                identity = await self._google(client, code, verifier, nonce)
            else:
                identity = await self._github(client, code, verifier)
        if spent.link_user_id is not None:
            user = await _link_to(session, name, identity, spent.link_user_id)
        else:
            user = await _user_for(session, name, identity)
        pair = await self.tokens.issue(session, user)
        return SignupOut(
            user=UserOut(id=user.id, email=user.email, created_at=user.created_at),
            **pair.model_dump(),
        )

    async def _github(
        self, client: AsyncOAuth2Client, code: str, verifier: str
    ) -> ExternalIdentity:
        await client.fetch_token(self.settings.github_token_url, code=code, code_verifier=verifier)
        api = self.settings.github_api_url.rstrip("/")
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        profile = _json(await client.get(f"{api}/user", headers=headers))
        emails = _json(await client.get(f"{api}/user/emails", headers=headers))
        if not isinstance(profile, dict) or not isinstance(emails, list):
            raise ValueError("unexpected GitHub user document")
        chosen = next(
            (
                e["email"]
                for e in emails
                if isinstance(e, dict)
                and e.get("primary") is True
                and e.get("verified") is True
                and isinstance(e.get("email"), str)
            ),
            None,
        )
        if chosen is None:
            raise OAuthRejected("the GitHub account has no verified primary e-mail")
        if not isinstance(profile.get("id"), int):
            raise ValueError("the GitHub user has no numeric id")
        return ExternalIdentity(subject=str(profile["id"]), email=chosen)

    async def _google(
        self, client: AsyncOAuth2Client, code: str, verifier: str, nonce: str | None
    ) -> ExternalIdentity:
        if nonce is None:
            raise OAuthRejected("the sign-in state carries no nonce")
        doc = await self.google.document(client)
        token = await client.fetch_token(doc["token_endpoint"], code=code, code_verifier=verifier)
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise OAuthRejected("google returned no ID token")
        claims = await self._verify_id_token(client, doc, id_token, nonce)
        email = claims.get("email")
        verified = claims.get("email_verified") in (True, "true")
        if not verified or not isinstance(email, str) or "@" not in email:
            raise OAuthRejected("the Google account has no verified e-mail")
        return ExternalIdentity(subject=claims["sub"], email=email)

    async def _verify_id_token(
        self, client: AsyncOAuth2Client, doc: dict[str, Any], id_token: str, nonce: str
    ) -> dict[str, Any]:
        client_id = self.settings.google_client_id
        try:
            try:
                token = jwt.decode(id_token, await self.google.keys(client), ID_TOKEN_ALGORITHMS)
            except InvalidKeyIdError:  # the provider rotated its keys since we cached them
                keys = await self.google.keys(client, refresh=True)
                token = jwt.decode(id_token, keys, ID_TOKEN_ALGORITHMS)
            issuers = GOOGLE_ISSUERS.get(doc["issuer"], [doc["issuer"]])
            jwt.JWTClaimsRegistry(
                leeway=60,
                exp={"essential": True},
                iat={"essential": True},
                sub={"essential": True},
                iss={"essential": True, "values": list(issuers)},
                aud={"essential": True, "value": str(client_id)},
                nonce={"essential": True, "value": nonce},
            ).validate(token.claims)
        except JoseError as exc:
            raise OAuthRejected("the ID token is not valid") from exc
        claims = token.claims
        aud = claims["aud"]
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != client_id:
            raise OAuthRejected("the ID token was issued to another client")
        return claims


async def _spend_state(
    session: AsyncSession, provider: str, state: str | None, binding: str | None
) -> SpentState:
    """Delete the state in this transaction: a replay finds nothing (or waits on our lock)."""
    if not state or len(state) > 128:
        raise OAuthRejected("missing or unknown sign-in state")
    fresh = (OAuthState.created_at > func.now() - STATE_TTL).label("fresh")
    stmt = delete(OAuthState).where(OAuthState.state == state, OAuthState.provider == provider)
    returning = stmt.returning(
        OAuthState.code_verifier,
        OAuthState.nonce,
        OAuthState.browser_hash,
        OAuthState.link_user_id,
        fresh,
    )
    row = (await session.execute(returning)).one_or_none()
    if row is None:
        raise OAuthRejected("missing or unknown sign-in state")
    if not row.fresh:
        raise OAuthRejected("the sign-in took too long; start again")
    if (
        binding is None
        or row.browser_hash is None
        or not hmac.compare_digest(row.browser_hash, binding_hash(binding))
    ):
        raise OAuthRejected("this sign-in was started in another browser; start again here")
    return SpentState(row.code_verifier, row.nonce, row.link_user_id)


async def prune_states(session: AsyncSession, settings: IdentitySettings) -> None:
    """States nobody came back for (the callback refuses them after STATE_TTL anyway)."""
    await session.execute(delete(OAuthState).where(OAuthState.created_at < func.now() - STATE_TTL))


async def _find_link(session: AsyncSession, provider: str, subject: str) -> OAuthLink | None:
    stmt = select(OAuthLink).where(OAuthLink.provider == provider, OAuthLink.subject == subject)
    return (await session.execute(stmt.with_for_update())).scalar_one_or_none()


async def _live(session: AsyncSession, link: OAuthLink | None) -> User | None:
    user = await session.get(User, link.user_id) if link is not None else None
    return user if user is not None and user.status != "deleted" else None


async def _user_for(session: AsyncSession, provider: str, identity: ExternalIdentity) -> User:
    link = await _find_link(session, provider, identity.subject)
    user = await _live(session, link)
    if link is not None and user is not None:
        link.email = identity.email
        return user
    # No link yet, or it points to a deleted account: the person starts afresh, unless an
    # account already holds the e-mail. Taking that one over would let whoever controls the
    # provider's account in, or destroy the owner's credentials: its owner links instead.
    if await find_live_user(session, identity.email) is not None:
        raise AccountExists(
            f"an account with the e-mail {identity.email} already exists: sign in to it, then "
            f"link {provider} with POST /v1/auth/oauth/{provider}/link"
        )
    try:
        user = await create_user(session, identity.email, None)
    except Conflict:  # the same e-mail signed up at this very moment
        raise AccountExists(f"an account with the e-mail {identity.email} already exists") from None
    return await _save_link(session, provider, identity, user, link)


async def _link_to(
    session: AsyncSession, provider: str, identity: ExternalIdentity, user_id: uuid.UUID
) -> User:
    """The signed-in owner connects this provider's identity to their account."""
    user = await session.get(User, user_id, with_for_update=True)
    if user is None or user.status == "deleted":
        raise OAuthRejected("the account to link no longer exists")
    link = await _find_link(session, provider, identity.subject)
    linked = await _live(session, link)
    if linked is not None and linked.id != user.id:
        raise AccountExists(f"this {provider} account is linked to another SmallShardz account")
    return await _save_link(session, provider, identity, user, link)


async def _save_link(
    session: AsyncSession,
    provider: str,
    identity: ExternalIdentity,
    user: User,
    link: OAuthLink | None,
) -> User:
    if link is not None:
        link.user_id, link.email = user.id, identity.email
        return user
    try:
        async with session.begin_nested():
            session.add(
                OAuthLink(
                    provider=provider,
                    subject=identity.subject,
                    user_id=user.id,
                    email=identity.email,
                )
            )
    except IntegrityError:
        # A parallel callback for the same identity committed its link first: use it.
        found = await _live(session, await _find_link(session, provider, identity.subject))
        if found is None:
            raise Unavailable("a sign-in for this account is in progress; try again") from None
        return found
    return user
