"""The whole dashboard journey in a real browser (issue 11): sign up, create a database and
copy its password, run SQL in the terminal and cancel a long statement, upload and download
a file, pay an invoice at the Paystack stand-in, create and revoke an API key, log out; the
refresh cookie is dead afterwards. Each page is screenshotted at desktop and phone width
(tests/e2e/artifacts/) and scanned with axe-core; no page may trip the CSP."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from shardz_devstack.testing import RunningStack
from tests.e2e.browser import CHROMIUM, capture, dashboard_page
from tests.integration.billing_helpers import run_billing, today, wait_subscription
from tests.integration.helpers import PASSWORD, can_login, new_email

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="scripts/bootstrap.sh installs it"),
]


def origin(stack: RunningStack) -> str:
    return f"http://dashboard.{stack.base_domain}:{stack.env['PLATFORM_GATEWAY_PORT']}"


async def run_sql(page: Page, sql: str) -> None:
    editor = page.locator(".cm-content")
    await editor.click()
    await page.keyboard.type(sql)
    await page.keyboard.press("Enter")


async def test_the_dashboard_journey(gateway: httpx.AsyncClient, stack: RunningStack) -> None:
    findings: list[dict[str, Any]] = []
    email = new_email()
    async with dashboard_page(origin(stack)) as (page, csp_violations):
        # ---- sign up ------------------------------------------------------------------
        await page.goto("/")
        await expect(page).to_have_url(re.compile(r"/login$"))
        findings += await capture(page, "login")
        await page.get_by_role("link", name="Create an account").click()
        await page.get_by_label("E-mail").fill(email)
        await page.get_by_label("Password").fill(PASSWORD)
        findings += await capture(page, "signup")
        await page.get_by_role("button", name="Sign up").click()
        await expect(page.get_by_role("heading", name="Databases", exact=True)).to_be_visible()
        await expect(page.get_by_text("No databases yet")).to_be_visible()
        findings += await capture(page, "databases-empty")

        # ---- a database on a paid plan; its password is shown once and copied ----------
        await page.get_by_label("Label").fill("shop")
        await page.get_by_label("Plan").select_option("db-starter")
        await page.get_by_role("button", name="Create database").click()
        await expect(page.get_by_text("you will not see this again")).to_be_visible()
        findings += await capture(page, "database-created")
        await page.get_by_role("button", name="Copy password").click()
        await expect(page.get_by_text("Copied the password.")).to_be_visible()
        copied = await page.evaluate("navigator.clipboard.readText()")
        assert copied == await page.get_by_label("Password", exact=True).input_value()
        uri = await page.get_by_label("Connection string").input_value()
        assert copied in uri and await can_login(uri)
        await page.get_by_role("button", name="I have saved it").click()
        await expect(page.get_by_text("you will not see this again")).to_have_count(0)
        await page.get_by_role("link", name="shop", exact=True).click()
        await expect(page.get_by_role("heading", name="shop", exact=True)).to_be_visible()
        await expect(page.get_by_text("Last 30 days")).to_be_visible()
        findings += await capture(page, "database-detail")

        # ---- the SQL terminal ------------------------------------------------------------
        await page.get_by_role("link", name="Open SQL terminal").click()
        await expect(page.get_by_text(re.compile("^Connected to"))).to_be_visible()
        log = page.get_by_role("log")
        await run_sql(page, "create table notes (id int primary key, body text);")
        await expect(log.locator("pre.result", has_text="CREATE TABLE")).to_be_visible()
        await run_sql(page, "insert into notes values (1, 'hello'), (2, 'world');")
        await run_sql(page, "select * from notes order by id;")
        await expect(log.locator("pre.result", has_text="(2 rows)")).to_be_visible()
        result = await log.locator("pre.result").last.inner_text()
        assert re.search(r"id \|\s+body", result) and "world" in result, result
        await run_sql(page, "selec 1;")
        error = log.locator("pre.error").last
        await expect(error).to_contain_text("syntax error")
        await expect(error).to_contain_text("^")  # where PostgreSQL found it
        # ↑ in the empty editor brings back the last statement
        await page.keyboard.press("ArrowUp")
        await expect(page.locator(".cm-content")).to_have_text("selec 1;")
        await page.keyboard.press("Control+a")
        await page.keyboard.press("Delete")
        # a long statement is cancelled by Ctrl+C in the editor, then by the Cancel button
        for cancel_by in ("ctrl-c", "button"):
            await run_sql(page, "select pg_sleep(60);")
            await expect(log.get_by_text("Running…")).to_be_visible()
            if cancel_by == "ctrl-c":
                await page.keyboard.press("Control+c")
            else:
                await page.get_by_role("button", name=re.compile("^Cancel")).click()
            await expect(log.locator("pre.error").last).to_contain_text(
                "canceling statement due to user request", timeout=15_000
            )
            await expect(log.get_by_text("Running…")).to_have_count(0)
        findings += await capture(page, "terminal")
        toggle = page.get_by_role("button", name="Switch light or dark theme")
        await toggle.click()  # the dark theme must pass the same contrast checks
        await expect(page.locator("html[data-theme=dark]")).to_have_count(1)
        findings += await capture(page, "terminal-dark")
        await toggle.click()

        # ---- storage: upload with progress, download the same bytes --------------------
        await page.get_by_role("link", name="Storage").click()
        await expect(page.get_by_text("No files here yet")).to_be_visible()
        payload = os.urandom(3 * 1024 * 1024)
        await page.locator("#file-input").set_input_files(
            {"name": "report.bin", "mimeType": "application/octet-stream", "buffer": payload}
        )
        bar = page.get_by_role("progressbar", name="Upload of report.bin")
        await expect(bar).to_be_visible()
        await expect(page.locator(".upload").get_by_text("done")).to_be_visible(timeout=30_000)
        assert await bar.get_attribute("value") == await bar.get_attribute("max")
        await expect(page.get_by_role("cell", name="report.bin", exact=True)).to_be_visible()
        findings += await capture(page, "storage")
        async with page.expect_download() as download_info:
            await page.get_by_role("button", name="Download report.bin").click()
        download = await download_info.value
        assert (await download.path()).read_bytes() == payload

        # ---- billing: the month's invoice, paid at the Paystack stand-in -----------------
        me = await page.evaluate("fetch('/v1/auth/refresh', {method: 'HEAD'}).then(r => r.status)")
        assert me == 405  # the auth routes answer on the dashboard's own origin
        login = await gateway.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        token = login.json()["access_token"]
        dbs = await gateway.get("/v1/databases", headers={"Authorization": f"Bearer {token}"})
        [db] = dbs.json()["items"]
        await wait_subscription(gateway, token, db["id"], status="active")
        assert await run_billing(gateway, stack.env, today() + timedelta(days=32)) >= 1
        await page.get_by_role("link", name="Billing").click()
        await expect(page.get_by_text("open", exact=True)).to_be_visible()
        findings += await capture(page, "billing")
        await page.get_by_role("button", name="Pay", exact=True).click()
        await expect(page.get_by_role("heading", name=re.compile("^Pay NGN"))).to_be_visible()
        await page.get_by_role("button", name="Pay", exact=True).click()
        await expect(page).to_have_url(re.compile(r"/billing/result\?reference="))
        await expect(page.get_by_text("Payment received")).to_be_visible(timeout=20_000)
        findings += await capture(page, "payment-result")
        await page.get_by_role("link", name="Back to billing").click()
        await expect(page.get_by_text("paid", exact=True)).to_be_visible()

        # ---- API keys: shown once, then revoked -----------------------------------------
        await page.get_by_role("link", name="API keys").click()
        await expect(page.get_by_text("No API keys")).to_be_visible()
        await page.get_by_label("Key name").fill("ci-deploy")
        await page.get_by_role("button", name="Create key").click()
        key = await page.get_by_role("textbox", name="New API key").input_value()
        assert key.startswith("shz_")
        findings += await capture(page, "api-keys")
        authed = await gateway.get("/v1/users/me", headers={"Authorization": f"Bearer {key}"})
        assert authed.status_code == 200
        page.once("dialog", lambda dialog: dialog.accept())
        await page.get_by_role("button", name="Revoke ci-deploy").click()
        await expect(page.get_by_text("No API keys")).to_be_visible()

        # ---- log out: the refresh cookie no longer works ---------------------------------
        [cookie] = [c for c in await page.context.cookies() if c["name"] == "shz_refresh"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        await page.get_by_role("button", name="Log out").click()
        await expect(page).to_have_url(re.compile(r"/login$"))
        assert not [c for c in await page.context.cookies() if c["name"] == "shz_refresh"]
        replay = await gateway.post(
            "/v1/auth/refresh",
            headers={
                "Host": stack.host("dashboard"),
                "Origin": origin(stack),
                "X-Shardz-Session": "cookie",
                "Cookie": f"shz_refresh={cookie['value']}",
            },
        )
        assert replay.status_code == 401
        await page.reload()
        await expect(page.get_by_role("heading", name="Log in to SmallShardz")).to_be_visible()

        assert csp_violations == [], csp_violations
    assert findings == [], findings
