"""The gateway's per-address budget on /v1/auth/* (CONTRACT section 10,
PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE): a client hammering sign-in, sign-up or refresh is cut
off at the gateway with 429 problem+json and Retry-After, before it costs identity an argon2
hash; other routes keep answering.

The test platform's own gateway has a budget no test reaches (every test comes from
127.0.0.1), so this runs a second gateway, rendered from the same route table with a budget of
five, in front of the same services."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import subprocess
from collections.abc import AsyncIterator

import httpx
import pytest

from shardz_devstack import gateway
from shardz_devstack.testing import RunningStack
from tests.integration.helpers import free_port, wait_for

BUDGET = 5


@pytest.fixture
async def limited_gateway(stack: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    config = dataclasses.replace(
        stack.config,
        gateway_port=free_port(),
        data_dir=stack.config.data_dir / "limited-gateway",
        settings={**stack.config.settings, gateway.AUTH_RATE_SETTING: str(BUDGET)},
    )
    proc = subprocess.Popen(gateway.nginx_command(config))
    try:
        async with httpx.AsyncClient(
            base_url=config.gateway_url, headers={"Host": stack.host("api")}, timeout=10
        ) as client:

            async def up() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    return (await client.get("/.well-known/jwks.json")).status_code == 200
                return False

            await wait_for(up, timeout=20)
            yield client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_auth_routes_past_the_budget_get_429_with_retry_after(
    limited_gateway: httpx.AsyncClient,
) -> None:
    # refresh with a bogus token: identity answers 401 and keeps no limiter of its own for it,
    # so every 429 here is the gateway's
    body = {"refresh_token": "not-a-token"}
    answers = await asyncio.gather(
        *(limited_gateway.post("/v1/auth/refresh", json=body) for _ in range(BUDGET + 3))
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [401] * BUDGET + [429] * 3, statuses
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "rate_limited"
    assert refused.json()["status"] == 429
    assert int(refused.headers["retry-after"]) > 0
    assert refused.headers["x-request-id"]

    # the budget covers every /v1/auth route (sign-up, login), not only the one hammered
    login = await limited_gateway.post(
        "/v1/auth/login", json={"email": "nobody@example.com", "password": "0123456789"}
    )
    assert login.status_code == 429


async def test_other_routes_are_not_charged_to_the_auth_budget(
    limited_gateway: httpx.AsyncClient,
) -> None:
    for _ in range(BUDGET * 3):
        response = await limited_gateway.get("/v1/users/me")
        assert response.status_code == 401  # identity's answer: no token
    response = await limited_gateway.post("/v1/auth/refresh", json={"refresh_token": "x"})
    assert response.status_code == 401
