"""The public API reference (docs/api/openapi.json, served at api.<base>/openapi.json and
rendered at /docs) is the services' own documents merged, and only their public part."""

from __future__ import annotations

import json

from shardz_devstack import apidocs, gateway
from tests.static.deploy_support import CONTRACT_ROUTES, NEVER_ROUTED


def test_the_committed_reference_is_what_the_services_describe_today() -> None:
    assert apidocs.DOCUMENT.read_text() == apidocs.render(), (
        "docs/api/openapi.json is stale: run `uv run python -m shardz_devstack api-docs`"
    )


def test_the_reference_holds_every_public_route_and_nothing_private() -> None:
    doc = json.loads(apidocs.DOCUMENT.read_text())
    paths = set(doc["paths"])
    for host, prefix, _ in CONTRACT_ROUTES:
        if host == "api" and prefix != "/.well-known/jwks.json":
            assert any(p == prefix or p.startswith(prefix.rstrip("/") + "/") for p in paths), prefix
    for path in paths:
        assert not path.startswith(NEVER_ROUTED), path
        assert any(
            (r.exact and path == r.path) or (not r.exact and path.startswith(r.path))
            for r in gateway.routes()
        ), f"{path} is documented but the gateway does not route it"
    assert set(doc["components"]["securitySchemes"]) == {"accessToken", "apiKey"}
    refs = set(json.dumps(doc).split('"$ref": "')[1:])
    for ref in refs:
        name = ref.split('"', 1)[0].rsplit("/", 1)[-1]
        assert name in doc["components"]["schemas"], f"dangling $ref {name}"


def test_authenticated_operations_declare_their_credentials() -> None:
    doc = json.loads(apidocs.DOCUMENT.read_text())
    me = doc["paths"]["/v1/users/me"]["get"]
    assert me["security"] == [{"accessToken": []}, {"apiKey": []}] or "401" not in me["responses"]
    plans = doc["paths"]["/v1/billing/plans"]["get"]
    assert plans["security"] == []
