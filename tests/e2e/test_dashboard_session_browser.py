"""The dashboard's session in a real browser: no token is reachable from script (what an XSS
would steal), a reload signs the person back in through the HttpOnly cookie, and the access
token is renewed by itself before it expires."""

from __future__ import annotations

import os

import pytest
from playwright.async_api import expect

from shardz_devstack.testing import RunningStack
from tests.e2e.browser import CHROMIUM, dashboard_page
from tests.integration.helpers import PASSWORD, new_email

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="scripts/bootstrap.sh installs it"),
]


async def test_no_token_is_reachable_from_script_and_refresh_is_silent(
    stack: RunningStack,
) -> None:
    origin = f"http://dashboard.{stack.base_domain}:{stack.env['PLATFORM_GATEWAY_PORT']}"
    async with dashboard_page(origin) as (page, csp_violations):
        await page.clock.install()
        await page.goto("/signup")
        await page.get_by_label("E-mail").fill(new_email())
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign up").click()
        await expect(page.get_by_text("No databases yet")).to_be_visible()

        # what an injected script could read: cookies, both storages
        readable = await page.evaluate(
            "JSON.stringify([document.cookie, {...localStorage}, {...sessionStorage}])"
        )
        assert "shz_refresh" not in readable and "eyJ" not in readable, readable

        # the access token lives 15 minutes: the page renews it a minute early, unasked
        async with page.expect_response(
            lambda r: r.url.endswith("/v1/auth/refresh") and r.request.method == "POST"
        ) as renewed:
            await page.clock.run_for("14:30")
        assert (await renewed.value).status == 200
        await page.get_by_role("link", name="Storage").click()
        await expect(page.get_by_text("No files here yet")).to_be_visible()

        # a reload forgets the in-memory token; the cookie signs the person back in
        await page.reload()
        await expect(page.get_by_role("heading", name="Storage")).to_be_visible()
        await expect(page.get_by_role("button", name="Log out")).to_be_visible()
        assert csp_violations == [], csp_violations
