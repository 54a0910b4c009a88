"""The event catalogue and token verification, without I/O."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shardz_common.auth import TokenVerifier
from shardz_common.errors import Unauthenticated
from shardz_common.events import REGISTRY, CloudEvent, UserCreated, envelope

CONTRACT_TYPES = {
    "user.created",
    "user.deleted",
    "signing_key.revoked",
    "apikey.created",
    "apikey.revoked",
    "db.provisioned",
    "db.deleted",
    "db.suspended",
    "db.resumed",
    "db.usage.reported",
    "storage.usage.reported",
    "subscription.created",
    "subscription.cancelled",
    "invoice.due",
    "invoice.paid",
    "account.suspended",
    "account.reactivated",
}


def test_catalogue_covers_the_contract() -> None:
    # services may add events (CONTRACT: "may add fields, routes and events"), never drop one
    assert set(REGISTRY) >= CONTRACT_TYPES
    assert {"db.plan_changed", "storage.plan_changed"} <= set(REGISTRY)


def test_envelope_is_a_structured_cloudevent() -> None:
    uid = uuid.uuid4()
    raw = envelope(
        UserCreated(user_id=uid, email="a@b.io"),
        event_id="e1",
        source="identity",
        subject=str(uid),
        time=datetime.now(UTC),
        traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    )
    body = json.loads(raw)
    assert body["specversion"] == "1.0" and body["type"] == "user.created"
    assert body["datacontenttype"] == "application/json" and body["traceparent"].startswith("00-")
    parsed = CloudEvent.model_validate_json(raw)
    assert UserCreated.model_validate(parsed.data).user_id == uid


def test_payloads_accept_fields_added_by_newer_producers() -> None:
    ev = UserCreated.model_validate({"user_id": str(uuid.uuid4()), "email": "x@y.z", "new": 1})
    assert ev.email == "x@y.z"


class StaticKeys:
    def __init__(self, keys: dict[str, object]) -> None:
        self.keys = keys

    async def key_for(self, kid: str) -> object:
        return self.keys.get(kid)


KEY = Ed25519PrivateKey.generate()
VERIFIER = TokenVerifier(StaticKeys({"k1": KEY.public_key()}), "iss", "aud")


def token(**over: object) -> str:
    now = int(time.time())
    claims = {
        "iss": "iss",
        "aud": "aud",
        "sub": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 60,
        "jti": "j",
    }
    claims.update(over)
    return jwt.encode(claims, KEY, algorithm="EdDSA", headers={"kid": "k1"})


async def test_valid_token_yields_principal() -> None:
    sub = str(uuid.uuid4())
    principal = await VERIFIER.verify(token(sub=sub, role="admin"))
    assert str(principal.id) == sub and principal.is_admin


@pytest.mark.parametrize(
    "bad",
    [
        {"exp": int(time.time()) - 60},
        {"aud": "other"},
        {"iss": "other"},
        {"sub": "not-a-uuid"},
    ],
)
async def test_bad_claims_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(Unauthenticated):
        await VERIFIER.verify(token(**bad))


async def test_unknown_kid_and_other_algorithms_are_refused() -> None:
    other = Ed25519PrivateKey.generate()
    forged = jwt.encode({"sub": "x"}, other, algorithm="EdDSA", headers={"kid": "k2"})
    with pytest.raises(Unauthenticated):
        await VERIFIER.verify(forged)
    hs = jwt.encode({"sub": "x"}, "secret", algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(Unauthenticated):
        await VERIFIER.verify(hs)
