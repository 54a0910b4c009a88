"""The OpenAPI documents are true: what each service publishes is what it answers.

Schemathesis (`--checks all`; examples, coverage, fuzzing and stateful phases) runs over every
service's public `/openapi.json`, sent through the gateway as a real client would, with a real
bearer token of a user of its own. Its connections come from 127.0.0.31, so the thousands of
refused logins and sign-ups it makes count against that address and never lock out the other
tests, which sign in from 127.0.0.1; it creates and deletes only its own user's resources, and
admin tokens are used for reads only (no cluster registration, key rotation or billing run, which
would change the platform under the other tests).

`SHARDZ_FUZZ_SECONDS` is each service's time budget: short in `make test`, long in `make fuzz`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.helpers import PASSWORD, new_email

HERE = Path(__file__).parent
FUZZ_ADDRESS = "127.0.0.31"
SECONDS = int(os.environ.get("SHARDZ_FUZZ_SECONDS", "12"))
SERVICES = ["identity", "provisioner", "storage", "billing", "terminal"]
PROBLEM_JSON = "application/problem+json"


def _client(stack: Any, address: str | None = None) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address) if address else None
    return httpx.Client(
        base_url=stack.gateway_url,
        headers={"Host": stack.host("api")},
        transport=transport,
        timeout=60,
    )


def _signup(stack: Any) -> str:
    with _client(stack, FUZZ_ADDRESS) as client:
        resp = client.post("/v1/auth/signup", json={"email": new_email(), "password": PASSWORD})
        assert resp.status_code == 201, resp.text
        token: str = resp.json()["access_token"]
        return token


@pytest.fixture(scope="module")
def fuzz_token(stack: Any) -> Iterator[str]:
    """A user of the run's own; its databases, keys and objects go with it afterwards."""
    token = _signup(stack)
    yield token
    with _client(stack, FUZZ_ADDRESS) as client:
        client.delete("/v1/users/me", headers={"Authorization": f"Bearer {token}"})


def _schemathesis(
    stack: Any, service: str, token: str, tmp_path: Path, *extra: str, seconds: int = SECONDS
) -> str:
    document = f"{stack.internal_urls[service]}/openapi.json"
    argv = [
        sys.executable,
        str(HERE / "fuzz_from.py"),
        FUZZ_ADDRESS,
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        document,
        "--url",
        stack.gateway_url,
        "--header",
        f"Host: {stack.host('api')}",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--max-time",
        str(seconds),
        "--workers",
        "1",
        *extra,
    ]
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run(
        argv,
        cwd=tmp_path,  # hypothesis keeps its example database there
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds * 4 + 180,
    )
    report = done.stdout + done.stderr
    failures = report[report.find("= FAILURES =") :] if "= FAILURES =" in report else report
    assert done.returncode == 0, failures[:30000]
    assert "Tested:" in report, report[-4000:]
    return report


@pytest.mark.parametrize("service", SERVICES)
def test_every_public_operation_answers_as_documented(
    stack: Any, fuzz_token: str, service: str, tmp_path: Path
) -> None:
    """No 5xx, no undocumented status, content type, schema or header; bad input refused with
    4xx and good input accepted; undeclared methods 405 with `Allow`; a deleted resource stays
    gone; a route that needs a credential refuses one without it."""
    # deleting the account would end the run's user half-way: its own test below
    skip = (
        ["--exclude-operation-id", "delete_me_v1_users_me_delete"] if service == "identity" else []
    )
    _schemathesis(stack, service, fuzz_token, tmp_path, *skip)


def test_deleting_ones_own_account_answers_as_documented(stack: Any, tmp_path: Path) -> None:
    token = _signup(stack)
    _schemathesis(
        stack,
        "identity",
        token,
        tmp_path,
        "--include-operation-id",
        "delete_me_v1_users_me_delete",
        seconds=5,
    )


def test_administrators_reads_answer_as_documented(stack: Any, tmp_path: Path) -> None:
    """Admin-only reads with an admin token (writes would change the platform under the other
    tests; with the user's token they are fuzzed as 403s above)."""
    with _client(stack) as client:
        resp = client.post(
            "/v1/auth/login",
            json={
                "email": stack.env["IDENTITY_BOOTSTRAP_ADMIN_EMAIL"],
                "password": stack.env["IDENTITY_BOOTSTRAP_ADMIN_PASSWORD"],
            },
        )
        assert resp.status_code == 200, resp.text
        token = resp.json()["access_token"]
    report = _schemathesis(
        stack,
        "provisioner",
        token,
        tmp_path,
        # named one by one: several --include-* options select their union, not their overlap
        "--include-operation-id",
        "list_clusters_v1_clusters_get",
        "--include-operation-id",
        "orphans_v1_clusters_orphans_get",
        seconds=5,
    )
    assert "Selected: 2/" in report  # never a cluster write with an admin token


@pytest.mark.parametrize("service", SERVICES)
def test_the_public_document_names_every_problem_and_nothing_internal(
    stack: Any, service: str
) -> None:
    document = httpx.get(f"{stack.internal_urls[service]}/openapi.json").json()
    paths = document["paths"]
    assert not [
        p for p in paths if p.startswith("/internal") or p in ("/healthz", "/readyz", "/metrics")
    ]
    assert document["components"]["schemas"]["Problem"]["required"] == [
        "type",
        "title",
        "status",
        "detail",
        "code",
    ]
    for path, item in paths.items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "503" in responses, (method, path)
            if operation.get("security"):
                assert {"401", "403"} <= responses.keys(), (method, path)
            for status, response in responses.items():
                if int(status) >= 400:
                    assert list(response["content"]) == [PROBLEM_JSON], (method, path, status)


def test_a_bodiless_answer_is_documented_without_a_body(stack: Any) -> None:
    document = httpx.get(f"{stack.internal_urls['provisioner']}/openapi.json").json()
    deleted = document["paths"]["/v1/databases/{database_id}"]["delete"]["responses"]["202"]
    assert "content" not in deleted


def test_an_undeclared_method_is_405_problem_naming_every_allowed_method(stack: Any) -> None:
    """Starlette named only the first route of a path in `Allow` (PUT for an object key that
    GET, HEAD, PUT and DELETE serve) and a client could not learn the others."""
    for url, method, allowed in [
        (
            f"{stack.internal_urls['storage']}/v1/storage/objects/a.txt",
            "PATCH",
            "GET, HEAD, PUT, DELETE",
        ),
        (
            f"{stack.internal_urls['provisioner']}/v1/databases/00000000-0000-0000-0000-000000000000",
            "TRACE",
            "GET, PATCH, DELETE",
        ),
        (f"{stack.internal_urls['identity']}/v1/auth/login", "GET", "POST"),
    ]:
        resp = httpx.request(method, url)
        assert resp.status_code == 405, resp.text
        assert resp.headers["content-type"].startswith(PROBLEM_JSON)
        assert resp.json()["code"] == "method_not_allowed"
        assert resp.headers["allow"] == allowed


def test_trace_through_the_gateway_is_405_problem(stack: Any) -> None:
    """nginx refuses TRACE itself, before routing; problems.conf makes it problem+json. (It
    sends no `Allow`: nginx cannot know a path's methods; see the README.)"""
    with _client(stack) as client:
        resp = client.request("TRACE", "/v1/databases")
    assert resp.status_code == 405
    assert resp.headers["content-type"].startswith(PROBLEM_JSON)
    assert resp.json()["code"] == "method_not_allowed"
