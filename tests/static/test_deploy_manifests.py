"""Static checks of the deployment artifacts: the service image recipe, docker-compose.yml,
the compose gateway and the kustomize tree. No network, no container engine, no cluster.

The service list is the workspace itself (`services/<name>/pyproject.toml`): a new service
fails these tests until it has its compose block, its gateway line and its k8s file.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from shardz_common.settings import InternalSecrets, PlatformSettings, ServiceSettings
from shardz_devstack.config import KNOWN_SERVICES

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "service.Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
GATEWAY_TEMPLATE = ROOT / "deploy" / "gateway" / "nginx.conf.template"
GATEWAY_COMPOSE = ROOT / "deploy" / "gateway" / "nginx.compose.conf"
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")

SERVICES: dict[str, int] = {
    p.parent.name: KNOWN_SERVICES[p.parent.name]
    for p in sorted((ROOT / "services").glob("*/pyproject.toml"))
}
# Settings a deployment must set even though they have a default (the default is for a
# laptop), beyond the generic ones of `required_env`.
EXTRA_REQUIRED = {
    "identity": {"BOOTSTRAP_ADMIN_EMAIL", "BOOTSTRAP_ADMIN_PASSWORD"},
    "provisioner": {"TENANT_CLUSTERS"},
}
INTERNAL_SECRETS = {f.upper() for f in InternalSecrets.model_fields}
# CONTRACT.md section 1: (host label, path, service). "dashboard" is the web app.
CONTRACT_ROUTES = {
    ("api", "/v1/auth", "identity"),
    ("api", "/v1/users", "identity"),
    ("api", "/v1/api-keys", "identity"),
    ("api", "/.well-known/jwks.json", "identity"),
    ("api", "/v1/databases", "provisioner"),
    ("api", "/v1/storage", "storage"),
    ("api", "/v1/billing", "billing"),
    ("terminal", "/v1/terminal/", "terminal"),
    ("dashboard", "/", "dashboard"),
}
NEVER_ROUTED = ("/internal", "/healthz", "/readyz", "/metrics", "/openapi.json")


# ---- service settings -------------------------------------------------------------------


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"shardz_{service}.config")
    found = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, ServiceSettings) and v is not ServiceSettings
    ]
    assert len(found) == 1, f"shardz_{service}.config should define one ServiceSettings"
    return found[0]


def prefix(service: str) -> str:
    return str(settings_class(service).model_config.get("env_prefix", ""))


def known_env() -> set[str]:
    """Every variable some service's settings read."""
    names = {f"PLATFORM_{f.upper()}" for f in PlatformSettings.model_fields}
    names |= {f.upper() for f in InternalSecrets.model_fields}
    for service in SERVICES:
        cls = settings_class(service)
        names |= {prefix(service) + f.upper() for f in cls.model_fields}
    return names


def required_env(service: str) -> set[str]:
    p = prefix(service)
    names = {f"{p}DATABASE_URL", f"{p}HOST", f"{p}PORT", "PLATFORM_AMQP_URL"}
    names |= INTERNAL_SECRETS
    names |= {
        f"PLATFORM_{f.upper()}"
        for f in PlatformSettings.model_fields
        if f.endswith("_url") and f.removesuffix("_url") in SERVICES
    }
    for field, info in settings_class(service).model_fields.items():
        secretish = any(w in field for w in ("secret", "password", "key"))
        if secretish and isinstance(info.default, str) and info.default:
            names.add(p + field.upper())  # a built-in dev value must never reach a deployment
        if field == "secret_key":
            names.add(p + field.upper())  # the Fernet key of data at rest: no default works
    names |= {p + name for name in EXTRA_REQUIRED.get(service, set())}
    return names


def check_settings(service: str, env: Mapping[str, str], mp: pytest.MonkeyPatch) -> None:
    """The environment parses into the service's settings, listening where it should."""
    unknown = {k for k in env if k not in known_env()}
    assert not unknown, f"{service}: variables no settings read (typos?): {sorted(unknown)}"
    missing = required_env(service) - set(env)
    assert not missing, f"{service}: variables its settings need: {sorted(missing)}"
    with mp.context() as m:
        for key, value in env.items():
            m.setenv(key, value)
        settings = settings_class(service)()
    assert settings.host == "0.0.0.0"
    assert settings.port == SERVICES[service]
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.platform.amqp_url.startswith("amqp://")


@pytest.mark.parametrize("service", SERVICES)
def test_settings_port_matches_the_platform_port(service: str) -> None:
    assert settings_class(service).model_fields["port"].default == SERVICES[service]


# ---- image --------------------------------------------------------------------------------


def test_dockerfile_builds_one_service_with_uv_as_non_root() -> None:
    text = DOCKERFILE.read_text()
    assert "FROM ghcr.io/astral-sh/uv:" in text
    assert re.search(r'uv sync --frozen --no-dev[^\n]*--package "shardz-\$\{SERVICE\}"', text)
    runtime = text[text.rindex("\nFROM ") :]
    users = re.findall(r"^USER\s+(\S+)", runtime, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK .*\n?.*shardz-healthcheck", runtime, re.M)
    assert "/healthz" in runtime
    assert re.search(r'^CMD \["api"\]$', runtime, re.M)
    assert 'python -m "shardz_${SHARDZ_SERVICE}"' in runtime
    ignore = DOCKERFILE.with_name(DOCKERFILE.name + ".dockerignore").read_text().split()
    assert {".data", ".git", "**/.venv"} <= set(ignore)


# ---- docker compose ---------------------------------------------------------------------

_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_]\w*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_]\w*))")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: $$, $V, ${V}, ${V:-d}, ${V-d}, ${V:?err}, ${V?err}."""

    def one(m: re.Match[str]) -> str:
        if m[1]:
            return "$"
        name = m[2] or m[5]
        op, arg = m[3], m[4] or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in ("-", ":-") and unset:
            return arg
        if op in ("?", ":?") and unset:
            raise KeyError(f"{name}: {arg}")
        return value or ""

    return _VAR.sub(one, value)


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(v, env) for v in node]
    if isinstance(node, dict):
        return {k: resolve(v, env) for k, v in node.items()}
    return node


def compose_vars() -> dict[str, str | None]:
    """Each variable the file interpolates, with its operator (None when bare)."""
    return {m[2] or m[5]: m[3] for m in _VAR.finditer(COMPOSE.read_text()) if not m[1]}


def compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    if env is None:
        env = {
            k: f"x{k.lower().replace('_', '')}1"
            for k, op in compose_vars().items()
            if op in (":?", "?")
        }
    loaded: dict[str, Any] = resolve(yaml.safe_load(COMPOSE.read_text()), env)
    return loaded


def test_compose_requires_every_secret_and_defaults_nothing_secret() -> None:
    variables = compose_vars()
    secretish = {k: op for k, op in variables.items() if re.search(r"PASSWORD|SECRET|_KEY", k)}
    assert secretish, "no secrets found in docker-compose.yml"
    defaulted = {k for k, op in secretish.items() if op != ":?"}
    assert not defaulted, f"secrets must use ${{VAR:?}}: {sorted(defaulted)}"
    env = {k: "v" for k, op in variables.items() if op}
    compose(env)
    for name in secretish:
        with pytest.raises(KeyError, match=name):
            compose({k: v for k, v in env.items() if k != name})


def test_compose_infrastructure() -> None:
    services = compose()["services"]
    for name in ("postgres", "tenant-postgres", "rabbitmq", "minio", "gateway"):
        assert name in services, name
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert "management" in services["rabbitmq"]["image"]
    tenant = services["tenant-postgres"]["environment"]
    assert tenant["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    assert "--auth-local=scram-sha-256" in tenant["POSTGRES_INITDB_ARGS"]
    for name, svc in services.items():
        env = svc.get("environment") or {}
        assert "trust" not in str(env.get("POSTGRES_HOST_AUTH_METHOD", "")), name
    gateway = services["gateway"]
    assert any(str(p).endswith(":8080") for p in gateway["ports"])
    assert any("nginx.compose.conf:/etc/nginx/nginx.conf" in v for v in gateway["volumes"])


def test_compose_dependencies_exist_and_can_become_healthy() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                target = services[dep]
                has_check = "test" in target.get("healthcheck", {}) or "build" in target
                assert has_check and not target.get("healthcheck", {}).get("disable"), (name, dep)


@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_block(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = compose()
    services = loaded["services"]
    port = SERVICES[service]
    for role in ("migrate", "api", "worker"):
        svc = services[f"{service}-{role}"]
        assert svc["command"] == [role]
        assert svc["build"]["dockerfile"] == "deploy/docker/service.Dockerfile"
        assert svc["build"]["args"] == {"SERVICE": service, "PORT": str(port)}
        assert svc["image"].rsplit(":", 1)[0] == f"smallshardz/{service}"
        assert svc["read_only"] is True and "ALL" in svc["cap_drop"]
        env = svc["environment"]
        check_settings(service, env, monkeypatch)
        url = env[f"{prefix(service)}DATABASE_URL"]
        assert url.endswith(f"@postgres:5432/shardz_{service}")
        assert f"://shardz_{service}:" in url
        if role == "migrate":
            assert svc["restart"] == "no"
            assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        else:
            migrate = svc["depends_on"][f"{service}-migrate"]["condition"]
            assert migrate == "service_completed_successfully"
            assert svc["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert svc.get("healthcheck", {}).get("disable", False) is (role != "api")
    env = services[f"{service}-api"]["environment"]
    for other, other_port in SERVICES.items():
        assert env[f"PLATFORM_{other.upper()}_URL"] == f"http://{other}-api:{other_port}"
    init = loaded["configs"]["control-databases"]["content"]
    assert f"CREATE DATABASE shardz_{service} OWNER shardz_{service};" in init


def test_compose_tenant_clusters_are_valid_json() -> None:
    env = compose()["services"]["provisioner-api"]["environment"]
    clusters = json.loads(env["PROVISIONER_TENANT_CLUSTERS"])
    assert clusters and all(
        set(c) == {"name", "admin_dsn", "host", "port", "capacity"} for c in clusters
    )
    assert clusters[0]["admin_dsn"].split("@")[1].startswith("tenant-postgres:5432/")
    assert isinstance(clusters[0]["port"], int)


# ---- gateway ------------------------------------------------------------------------------


def gateway_routes(text: str) -> set[tuple[str, str, str]]:
    """(host label, location, upstream) for every proxied location of an nginx config."""
    routes = set()
    label = ""
    for line in text.splitlines():
        line = line.strip()
        if m := re.match(r"server_name\s+(?:~\^)?(\w+)\\?\.", line):
            label = m[1]
        elif m := re.match(r"location\s+(.+?)\s*\{\s*proxy_pass\s+http://\$?(\w+);", line):
            routes.add((label, m[1], m[2]))
        elif m := re.match(r"location\s+(.+?)\s*\{$", line):
            pending = (label, m[1])
        elif m := re.match(r"proxy_pass\s+http://\$?(\w+);", line):
            routes.add((*pending, m[1]))
    return routes


def test_compose_gateway_routes_what_the_local_gateway_routes() -> None:
    compose_conf = GATEWAY_COMPOSE.read_text()
    routes = gateway_routes(compose_conf)
    assert routes == gateway_routes(GATEWAY_TEMPLATE.read_text())
    assert {label for label, _, _ in routes} == {"api", "terminal"}
    assert {svc for _, _, svc in routes} == set(KNOWN_SERVICES)
    for name, port in KNOWN_SERVICES.items():
        assert f"set ${name} {name}-api:{port};" in compose_conf
    assert "internal" not in "".join(loc for _, loc, _ in routes)
    assert "server_name ~^dashboard\\.;" in compose_conf
    assert "@@" not in compose_conf


def test_compose_gateway_points_at_compose_services() -> None:
    services = compose()["services"]
    for name in SERVICES:
        assert f"{name}-api" in services


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_compose_gateway_config_passes_nginx_t(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(GATEWAY_COMPOSE.read_text())
    check = subprocess.run(
        [
            *("nginx", "-t", "-q", "-p", str(tmp_path), "-c", str(conf)),
            *("-e", str(tmp_path / "logs" / "error.log"), "-g", f"pid {tmp_path}/nginx.pid;"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


# ---- kubernetes ---------------------------------------------------------------------------


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomization(directory: Path) -> dict[str, Any]:
    return load_docs(directory / "kustomization.yaml")[0]


def base_objects(directory: Path = K8S / "base") -> Iterator[dict[str, Any]]:
    for entry in kustomization(directory).get("resources", []):
        target = directory / entry
        if target.is_dir():
            yield from base_objects(target)
        else:
            yield from load_docs(target)


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in base_objects() if o["kind"] == kind}


def secret_templates() -> dict[str, dict[str, Any]]:
    found = {}
    for path in K8S.rglob("secret.template.yaml"):
        for doc in load_docs(path):
            found[doc["metadata"]["name"]] = doc
    return found


def test_every_k8s_yaml_parses_and_kustomizations_are_complete() -> None:
    files = sorted(K8S.rglob("*.yaml"))
    assert files
    for path in files:
        for doc in load_docs(path):
            assert "kind" in doc, path
    kustomizations = [p.parent for p in K8S.rglob("kustomization.yaml")]
    assert {p.name for p in kustomizations} >= {"base", *OVERLAYS}
    for directory in kustomizations:
        k = kustomization(directory)
        for entry in k.get("resources", []):
            target = directory / entry
            assert target.is_file() or (target / "kustomization.yaml").is_file(), target
            assert "secret.template" not in entry, "secret templates are never applied"
        for patch in k.get("patches", []):
            if "path" in patch:
                assert (directory / patch["path"]).is_file()


def test_secret_templates_hold_no_values() -> None:
    templates = secret_templates()
    assert templates
    for name, secret in templates.items():
        values = secret.get("stringData", {})
        real = {k for k, v in values.items() if v and k != "username"}
        assert not real and not secret.get("data"), f"{name} holds values: {sorted(real)}"


def pod_specs() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for kind in ("Deployment", "Job"):
        for name, obj in objects(kind).items():
            yield name, obj["spec"]["template"], obj


def test_every_pod_is_hardened_and_sized() -> None:
    seen = 0
    for name, template, _ in pod_specs():
        spec = template["spec"]
        assert template["metadata"]["labels"]["app.kubernetes.io/part-of"] == "smallshardz"
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        mounts_ok = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in spec["containers"]:
            seen += 1
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert "ALL" in sc["capabilities"]["drop"], name
            res = c["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]), name
            assert "memory" in res["limits"], name
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp and tmp[0]["name"] in mounts_ok, f"{name}: read-only root needs /tmp"
    assert seen >= 3 * len(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_service_resources(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    port = SERVICES[service]
    deployments, jobs = objects("Deployment"), objects("Job")
    config = objects("ConfigMap")
    templates = secret_templates()
    for name, role in ((f"{service}-api", "api"), (f"{service}-worker", "worker")):
        dep = deployments[name]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert labels["app.kubernetes.io/component"] == role
    job = jobs[f"{service}-migrate"]
    containers = {
        "api": deployments[f"{service}-api"]["spec"]["template"]["spec"]["containers"][0],
        "worker": deployments[f"{service}-worker"]["spec"]["template"]["spec"]["containers"][0],
        "migrate": job["spec"]["template"]["spec"]["containers"][0],
    }
    for role, c in containers.items():
        assert c["image"] == f"smallshardz/{service}", "the overlays set registry and tag"
        assert c["args"] == [role]
        env: dict[str, str] = {}
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                env |= config[source["configMapRef"]["name"]]["data"]
            else:
                env |= templates[source["secretRef"]["name"]]["stringData"]
        env |= {e["name"]: e.get("value", "") for e in c.get("env", [])}
        p = prefix(service)
        env |= {f"{p}HOST": "0.0.0.0", f"{p}PORT": str(port)} if role != "api" else {}
        env = {k: (v or _placeholder(k)) for k, v in env.items()}
        env = {
            k: v
            for k, v in env.items()
            if k in INTERNAL_SECRETS or not k.startswith(_foreign_prefixes(service))
        }
        check_settings(service, env, monkeypatch)

    api = containers["api"]
    assert {"name": "http", "containerPort": port} in api["ports"]
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {e["name"]: e["value"] for e in api["env"]}[f"{prefix(service)}PORT"] == str(port)

    svc = objects("Service")[f"{service}-api"]
    api_labels = deployments[f"{service}-api"]["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= api_labels.items()
    assert {"name": "http", "port": port, "targetPort": "http"} in svc["spec"]["ports"]
    hpa = objects("HorizontalPodAutoscaler")[f"{service}-api"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{service}-api"
    assert "replicas" not in deployments[f"{service}-api"]["spec"], "the HPA owns replicas"
    pdb = objects("PodDisruptionBudget")[f"{service}-api"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= api_labels.items()


def _placeholder(key: str) -> str:
    """A stand-in for a Secret value that the template leaves empty."""
    if key.endswith("DATABASE_URL"):
        return "postgresql+psycopg://u:p@db:5432/d"
    if key == "PLATFORM_AMQP_URL":
        return "amqp://u:p@rabbitmq:5672/"
    if key.endswith("TENANT_CLUSTERS"):
        return "[]"
    return "x"


def _foreign_prefixes(service: str) -> tuple[str, ...]:
    """Other services' own settings in the shared ConfigMap (ignored by this one)."""
    return tuple(prefix(s) for s in SERVICES if s != service) or ("\0",)


def ingress_routes() -> set[tuple[str, str, str, str]]:
    routes = set()
    for ing in objects("Ingress").values():
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                backend = p["backend"]["service"]["name"]
                routes.add((rule["host"].split(".")[0], p["path"], p["pathType"], backend))
    return routes


def template_prefixes() -> set[tuple[str, str, str]]:
    """The local gateway's routes as Ingress paths: `~ ^/v1/(a|b)(/|$)` is /v1/a and /v1/b."""
    found = set()
    for label, location, upstream in gateway_routes(GATEWAY_TEMPLATE.read_text()):
        if m := re.fullmatch(r"~ \^(.*?)(?:\((.+)\))?\(/\|\$\)", location):
            for alt in (m[2] or "").split("|"):
                found.add((label, m[1] + alt, upstream))
        else:
            found.add((label, location.removeprefix("= "), upstream))
    found.add(("dashboard", "/", "dashboard"))
    return found


def test_ingress_routes_what_the_gateway_routes() -> None:
    routes = ingress_routes()
    expected = template_prefixes()
    assert expected >= CONTRACT_ROUTES, "the gateway may add routes, never drop the contract's"
    expected = {
        (label, path, svc if svc == "dashboard" else f"{svc}-api") for label, path, svc in expected
    }
    assert {(label, path, backend) for label, path, _, backend in routes} == expected
    services = objects("Service")
    for label, path, kind, backend in routes:
        for hidden in NEVER_ROUTED:
            assert not hidden.startswith(path.rstrip("/") + "/") or label == "dashboard", path
            assert not path.startswith(hidden), path
        assert kind in ("Prefix", "Exact")
        name = backend.removesuffix("-api")
        if name in SERVICES:
            assert backend in services, f"the Ingress routes to a missing Service {backend}"
    assert not any("internal" in path for _, path, _, _ in routes)


def test_network_policies_keep_internal_between_platform_pods() -> None:
    policies = objects("NetworkPolicy")
    deny = [
        p
        for p in policies.values()
        if p["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "smallshardz"}
        and p["spec"]["policyTypes"] == ["Ingress"]
        and not p["spec"].get("ingress")
    ]
    assert deny, "platform pods need a default-deny ingress policy"
    for policy in policies.values():
        for rule in policy["spec"].get("ingress", []):
            for peer in rule["from"]:
                if "namespaceSelector" in peer:  # from outside the platform: public port only
                    assert rule.get("ports") == [{"protocol": "TCP", "port": "http"}]
                else:
                    assert peer["podSelector"]["matchLabels"] == {
                        "app.kubernetes.io/part-of": "smallshardz"
                    }


# ---- kustomize build (client side only) ---------------------------------------------------


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_kustomize_builds(overlay: str) -> None:
    directory = K8S / "base" if overlay == "base" else K8S / "overlays" / overlay
    built = kustomize_build(directory)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in built:
        by_kind.setdefault(obj["kind"], []).append(obj)
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "shardz", obj["metadata"]["name"]
    domain = by_kind["ConfigMap"][0]["data"]["PLATFORM_BASE_DOMAIN"]
    for ing in by_kind["Ingress"]:
        hosts = [r["host"] for r in ing["spec"]["rules"]]
        hosts += [h for t in ing["spec"].get("tls", []) for h in t["hosts"]]
        assert all(h.split(".", 1)[1] == domain for h in hosts), hosts
    images = {
        c["image"]
        for kind in ("Deployment", "Job")
        for o in by_kind[kind]
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert {i.rsplit(":", 1)[0].rsplit("/", 1)[1] for i in images} == set(SERVICES)
    assert all(":" in i for i in images), "every image is tagged"
    min_replicas = {h["spec"]["minReplicas"] for h in by_kind["HorizontalPodAutoscaler"]}
    if overlay == "prod":
        assert min(min_replicas) >= 2
        assert all(not i.endswith(":latest") for i in images)
        (cluster,) = by_kind["Cluster"]
        assert cluster["apiVersion"].startswith("postgresql.cnpg.io/")
        assert cluster["spec"]["instances"] >= 3
        (rabbit,) = by_kind["RabbitmqCluster"]
        assert rabbit["spec"]["replicas"] == 3
        databases = {d["spec"]["name"] for d in by_kind["Database"]}
        assert databases == {f"shardz_{s}" for s in SERVICES}
        workers = [d for d in by_kind["Deployment"] if d["metadata"]["name"].endswith("-worker")]
        assert all(w["spec"]["replicas"] >= 2 for w in workers)
        assert all(ing["spec"].get("tls") for ing in by_kind["Ingress"])
    if overlay == "dev":
        assert min_replicas == {1}
