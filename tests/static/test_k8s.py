"""Static checks of the kustomize tree (deploy/k8s): the base objects, the secret
templates, the Ingress against the gateway, and (when kubectl is installed) a client-side
`kubectl kustomize` of the base and each overlay. No cluster.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shardz_common import unroutable
from shardz_devstack import gateway
from tests.static.deploy_support import (
    CONTRACT_ROUTES,
    INTERNAL_SECRETS,
    K8S,
    NEVER_ROUTED,
    OVERLAYS,
    ROOT,
    SERVICES,
    check_settings,
    gateway_routes,
    nginx_check,
    prefix,
    route_table,
)

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


def test_the_route_table_holds_the_contracts_routes_and_nothing_private() -> None:
    table = {(r.host, r.path, r.service) for r in gateway.routes()}
    assert table | {("dashboard", "/", "dashboard")} >= CONTRACT_ROUTES, (
        "the gateway may add routes, never drop the contract's"
    )
    for _, path, _ in table:
        for hidden in NEVER_ROUTED:
            assert not hidden.startswith(path.rstrip("/") + "/"), path
            assert not path.startswith(hidden), path


def test_the_ingress_hands_every_public_host_to_the_gateway() -> None:
    """The Ingress routes nothing itself: the gateway (rendered from the route table) does,
    so Kubernetes refuses /internal and answers problem+json like make dev and compose."""
    assert ingress_routes() == {
        (host, "/", "Prefix", "gateway") for host in ("api", "terminal", "dashboard")
    }
    (ingress,) = objects("Ingress").values()
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"  # the gateway caps
    assert notes["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert "gateway" in objects("Service")


def test_the_k8s_gateway_config_is_rendered_from_the_route_table() -> None:
    conf = gateway.K8S_CONFIG.read_text()
    assert conf == gateway.render_k8s(), (
        "deploy/gateway/nginx.k8s.conf is stale: run "
        "`uv run python -m shardz_devstack gateway-config --compose`"
    )
    assert gateway_routes(conf) == route_table()
    services = objects("Service")
    for name, port in SERVICES.items():
        assert f"server {name}-api:{port};" in conf
        assert {"name": "http", "port": port, "targetPort": "http"} in services[f"{name}-api"][
            "spec"
        ]["ports"]
    dockerfile = (ROOT / "deploy" / "docker" / "gateway.Dockerfile").read_text()
    # the image carries the built dashboard, not its sources
    assert "COPY --from=dashboard /src/dist/ /usr/share/nginx/html/" in dockerfile
    assert "deploy/gateway/nginx.k8s.conf /etc/nginx/nginx.conf" in dockerfile
    (deployment,) = [d for name, d in objects("Deployment").items() if name == "gateway"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE"]["valueFrom"]["configMapKeyRef"]["key"]
    assert "PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE" in objects("ConfigMap")["shardz-platform"]["data"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/etc/nginx/conf.d"} <= mounts


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_k8s_gateway_config_passes_nginx_t(tmp_path: Path) -> None:
    check = nginx_check(gateway.K8S_CONFIG.read_text(), tmp_path)
    assert check.returncode == 0, check.stderr


def test_the_ingress_passes_paths_as_sent_and_streams() -> None:
    """CONTRACT section 6: `PUT /v1/storage/objects//abs` must reach the service as written and
    be refused there (422); nginx's default merge_slashes would store it as the key `abs`.
    Bodies stream both ways with no size cap of the Ingress's own (the quota is the cap)."""
    (ingress,) = objects("Ingress").values()
    notes = ingress["metadata"]["annotations"]
    snippet = [
        line.strip() for line in notes["nginx.ingress.kubernetes.io/server-snippet"].split("\n")
    ]
    assert "merge_slashes off;" in snippet
    assert notes["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"
    assert notes["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert "merge_slashes off;" in gateway.K8S_CONFIG.read_text()


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
    assert {i.rsplit(":", 1)[0].rsplit("/", 1)[1] for i in images} == {*SERVICES, "gateway"}
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


def test_prod_keeps_unroutable_events_by_the_platforms_policy() -> None:
    prod = K8S / "overlays" / "prod"
    assert "rabbitmq-policies.yaml" in kustomization(prod)["resources"]
    [policy] = load_docs(prod / "rabbitmq-policies.yaml")
    spec = policy["spec"]
    assert policy["kind"] == "Policy" and spec["name"] == unroutable.POLICY_NAME
    assert spec["pattern"] == unroutable.POLICY_PATTERN and spec["applyTo"] == "exchanges"
    assert spec["definition"] == unroutable.POLICY_DEFINITION
    clusters = {d["metadata"]["name"] for d in load_docs(prod / "rabbitmq-cluster.yaml")}
    assert spec["rabbitmqClusterReference"]["name"] in clusters
