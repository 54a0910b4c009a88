"""The public API reference: every service's OpenAPI document merged into one, holding only
the operations the gateway routes (deploy/gateway/routes.toml), served by the gateway at
`api.<base>/openapi.json` and rendered at `api.<base>/docs` (Swagger UI, served locally).

The merged document is committed (`docs/api/openapi.json`) so a change to the public surface
shows in review; `python -m shardz_devstack api-docs` rewrites it and tests/static fails when
it is stale."""

from __future__ import annotations

import copy
import importlib
import json
import re
import tomllib
import warnings
from typing import Any

from cryptography.fernet import Fernet

from shardz_common.settings import ServiceSettings
from shardz_devstack import gateway
from shardz_devstack.config import KNOWN_SERVICES, repo_root

DOCUMENT = repo_root() / "docs" / "api" / "openapi.json"
TITLE = "SmallShardz API"
DESCRIPTION = """Every public operation of the SmallShardz platform (CONTRACT.md), served at
`api.<base>`. Authenticate with `Authorization: Bearer <token>`, where the token is an access
token from `POST /v1/auth/login` (a JWT, 15 minutes) or an API key (`shz_…`, from
`POST /v1/api-keys`). Errors are RFC 9457 `application/problem+json` with a stable `code`.
The SQL terminal is a WebSocket at `terminal.<base>/v1/terminal/ws` (CONTRACT section 8)."""
SECURITY_SCHEMES = {
    "accessToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from /v1/auth/login, /v1/auth/signup or /v1/auth/refresh.",
    },
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "shz_…",
        "description": "An API key from POST /v1/api-keys, sent the same way.",
    },
}


def _service_document(service: str) -> dict[str, Any]:
    """The service's own OpenAPI document, built from its app without starting it."""
    config = importlib.import_module(f"shardz_{service}.config")
    main = importlib.import_module(f"shardz_{service}.main")
    settings_cls: type[ServiceSettings] = next(
        v
        for v in vars(config).values()
        if isinstance(v, type) and issubclass(v, ServiceSettings) and v is not ServiceSettings
    )
    fields = settings_cls.model_fields
    # apps that encrypt at rest refuse to build without a key; none is used to describe them
    extra = {"secret_key": Fernet.generate_key().decode()} if "secret_key" in fields else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app = main.create_app(settings_cls.model_validate(extra))
        return copy.deepcopy(app.openapi())


def _public(service: str, path: str) -> bool:
    for route in gateway.routes():
        if route.service != service or route.host != "api":
            continue
        if route.exact and path == route.path:
            return True
        prefix = route.path.rstrip("/")
        if not route.exact and (path == prefix or path.startswith(prefix + "/")):
            return True
    return False


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                name = value.rsplit("/", 1)[-1]
                value = f"#/components/schemas/{renames.get(name, name)}"
            out[key] = _rename_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rename_refs(v, renames) for v in node]
    return node


def merged() -> dict[str, Any]:
    """One OpenAPI 3.1 document of every service's public operations. Schemas that two services
    name alike but define differently get the service's name in front."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    tags: list[dict[str, str]] = []
    for service in KNOWN_SERVICES:
        doc = _service_document(service)
        own = doc.get("components", {}).get("schemas", {})
        renames = {
            name: f"{service.capitalize()}{name}"
            for name, schema in own.items()
            if name in schemas and schemas[name] != schema
        }
        doc = _rename_refs(doc, renames)
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            schemas[renames.get(name, name)] = schema
        for path, operations in doc["paths"].items():
            if not _public(service, path):
                continue
            for method, operation in operations.items():
                if isinstance(operation, dict) and "responses" in operation:
                    operation.setdefault("tags", [service])
                    _set_security(operation)
                    _own_operation_id(operation, method)
            paths[path] = dict(sorted(operations.items(), key=lambda kv: _METHODS.index(kv[0])))
        tags.append({"name": service, "description": f"served by the {service} service"})
    used = _referenced(paths, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": _version(), "description": DESCRIPTION},
        "servers": [{"url": "/", "description": "api.<base>"}],
        "tags": tags,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {name: schemas[name] for name in sorted(used)},
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


_METHODS = ["get", "head", "put", "post", "patch", "delete", "options", "trace", "parameters"]


def _own_operation_id(operation: dict[str, Any], method: str) -> None:
    """FastAPI names a route serving GET and HEAD after whichever method its set yields
    first: give each its own, the same on every run."""
    found = operation.get("operationId", "")
    stem, _, suffix = found.rpartition("_")
    if stem and suffix in _METHODS and suffix != method:
        operation["operationId"] = f"{stem}_{method}"


def _set_security(operation: dict[str, Any]) -> None:
    """An operation that can answer 401 takes either credential; one that cannot is public."""
    if "401" in operation["responses"]:
        operation["security"] = [{"accessToken": []}, {"apiKey": []}]
    else:
        operation["security"] = []


def _referenced(paths: dict[str, Any], schemas: dict[str, Any]) -> set[str]:
    """Names of the schemas the public paths need, followed through the schemas themselves."""
    pending = set(re.findall(r"#/components/schemas/([^\"]+)", json.dumps(paths)))
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        pending |= set(re.findall(r"#/components/schemas/([^\"]+)", json.dumps(schemas[name])))
    return seen


def _version() -> str:
    project = tomllib.loads((repo_root() / "pyproject.toml").read_text()).get("project", {})
    return str(project.get("version", "0.1.0"))


def render() -> str:
    return json.dumps(merged(), indent=1, sort_keys=False) + "\n"


def write() -> None:
    DOCUMENT.parent.mkdir(parents=True, exist_ok=True)
    DOCUMENT.write_text(render())
