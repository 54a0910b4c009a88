"""The provisioning bench's own platform (identity + provisioner) and its users."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass

import httpx

PAID_PLAN = "db-starter"  # paid: the free plan's limit of 3 databases does not apply
CAPACITY = 20_000  # the devstack registers its tenant cluster with room for 500 only


def prov_stack_config():  # type: ignore[no-untyped-def]
    """auth_bench's kind of stack, in the next slot, with the provisioner too."""
    from auth_bench import bench_stack_config

    return dataclasses.replace(
        bench_stack_config(slot=6, name="bench-prov"), services=("identity", "provisioner")
    )


@dataclass
class User:
    email: str
    token: str
    created: int = 0

    def headers(self, host: str) -> dict[str, str]:
        return {"Host": host, "Authorization": f"Bearer {self.token}"}

    def next_name(self, tag: str) -> str:
        self.created += 1
        return f"{tag}-{self.created}"


def signup(client: httpx.Client, host: str) -> User:
    email = f"prov-{uuid.uuid4().hex[:12]}@example.com"
    resp = client.post(
        "/v1/auth/signup",
        json={"email": email, "password": "correct horse battery"},
        headers={"Host": host},
    )
    assert resp.status_code == 201, resp.text
    return User(email, resp.json()["access_token"])


def raise_capacity(client: httpx.Client, stack, capacity: int = CAPACITY) -> None:  # type: ignore[no-untyped-def]
    """Re-register the tenant cluster through the admin API with room for the scale phase."""
    host = stack.host("api")
    env = stack.env
    resp = client.post(
        "/v1/auth/login",
        json={
            "email": env["IDENTITY_BOOTSTRAP_ADMIN_EMAIL"],
            "password": env["IDENTITY_BOOTSTRAP_ADMIN_PASSWORD"],
        },
        headers={"Host": host},
    )
    assert resp.status_code == 200, resp.text
    admin = {"Host": host, "Authorization": f"Bearer {resp.json()['access_token']}"}
    spec = {**stack.tenant_clusters[0].registration(), "capacity": capacity}
    resp = client.post("/v1/clusters", json=spec, headers=admin)
    assert resp.status_code == 201, resp.text
    assert resp.json()["capacity"] == capacity, resp.text
