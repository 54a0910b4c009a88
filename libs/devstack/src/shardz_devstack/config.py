"""What a local stack looks like: ports, names, paths. Dev and test stacks differ only here."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

# Every service the platform knows, in start order, with its dev port.
KNOWN_SERVICES: dict[str, int] = {
    "identity": 8101,
    "provisioner": 8102,
    "storage": 8103,
    "billing": 8104,
    "terminal": 8105,
}
# Services that run a second API process, on their port plus this offset, behind the same
# gateway upstream: the storage quota must hold across processes, not just inside one.
SECOND_API_PORT_OFFSET: dict[str, int] = {"storage": 50, "terminal": 50}


def repo_root() -> Path:
    """The workspace root: the nearest parent holding a `uv.lock`."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "uv.lock").exists():
            return parent
    return Path.cwd()


def state_root() -> Path:
    """Where every local stack keeps what the platform owns: `DEVSTACK_DATA_DIR`, otherwise
    `/var/lib/shardz` as root (the `postgres` user and nginx's workers must reach it, which a
    checkout in a 0700 home does not allow) and `<checkout>/.data` for anyone else (then they
    run as that user)."""
    configured = os.environ.get("DEVSTACK_DATA_DIR")
    if configured:
        return Path(configured).absolute()
    if os.geteuid() == 0:
        return Path("/var/lib/shardz")
    return repo_root() / ".data"


def installed_services() -> tuple[str, ...]:
    """Services whose package can be run with `python -m shardz_<svc>`."""
    found = []
    for name in KNOWN_SERVICES:
        try:
            if importlib.util.find_spec(f"shardz_{name}.__main__") is not None:
                found.append(name)
        except ImportError:
            continue
    return tuple(found)


@dataclass(frozen=True)
class SeaweedPorts:
    s3: int = 8333
    master: int = 9333
    volume: int = 9340
    filer: int = 8888
    admin: int = 23646
    grpc_offset: int = 20000  # each component's gRPC port is its HTTP port plus this


@dataclass(frozen=True)
class StackConfig:
    """One local platform. `dev()` and `test()` give the two stacks that may run side by side."""

    name: str = "dev"
    data_dir: Path = field(default_factory=lambda: state_root() / "dev")
    base_domain: str = "localhost"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    gateway_workers: int = 1
    # optional TLS: a certificate and key (PEM) make the gateway answer HTTPS on tls_port too
    tls_cert: str = ""
    tls_key: str = ""
    tls_port: int = 8443
    service_ports: dict[str, int] = field(default_factory=lambda: dict(KNOWN_SERVICES))
    services: tuple[str, ...] = field(default_factory=installed_services)
    db_prefix: str = "shardz_"
    # The control-plane PostgreSQL. Empty: `control.ensure_role` creates a password role on
    # 127.0.0.1:5432 (DEVSTACK_CONTROL_DSN names another server and role instead).
    control_dsn: str = field(default_factory=lambda: os.environ.get("DEVSTACK_CONTROL_DSN", ""))
    amqp_host: str = "127.0.0.1"
    amqp_port: int = 5672
    amqp_vhost: str = "/"
    tenant_pg_port: int = 5433
    # the local Paystack stand-in (started when BILLING_PAYSTACK_BASE_URL is unset)
    paystack_port: int = 8190
    seaweed: SeaweedPorts = field(default_factory=SeaweedPorts)
    # A test stack starts from empty databases and an empty tenant cluster every session.
    fresh: bool = False
    # Settings this stack gives its services (the caller's environment still wins in dev).
    settings: dict[str, str] = field(default_factory=dict)

    @classmethod
    def dev(cls) -> StackConfig:
        """The `make dev` stack; the contract's PLATFORM_* variables override the defaults."""
        env = os.environ
        services = env.get("DEVSTACK_SERVICES")
        return cls(
            data_dir=state_root() / "dev",
            base_domain=env.get("PLATFORM_BASE_DOMAIN", "localhost"),
            gateway_host=env.get("DEVSTACK_GATEWAY_HOST", "127.0.0.1"),
            gateway_port=int(env.get("PLATFORM_GATEWAY_PORT", "8080")),
            gateway_workers=int(env.get("DEVSTACK_GATEWAY_WORKERS", "1")),
            tls_cert=env.get("DEVSTACK_TLS_CERT", ""),
            tls_key=env.get("DEVSTACK_TLS_KEY", ""),
            tls_port=int(env.get("DEVSTACK_TLS_PORT", "8443")),
            services=tuple(services.split(",")) if services else installed_services(),
            service_ports={
                name: int(env.get(f"{name.upper()}_PORT", str(port)))
                for name, port in KNOWN_SERVICES.items()
            },
            settings={
                key: env[key] for key in ("PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE",) if key in env
            },
        )

    @classmethod
    def test(cls, slot: int = 0, vhost: str | None = None) -> StackConfig:
        """Ports, names and data that never collide with a running dev stack. Each `slot`
        (0-4) is a separate stack, so several pytest sessions can run at once."""
        shift = 1000 * slot
        suffix = "" if slot == 0 else str(slot)
        return cls(
            name=f"test{suffix}",
            data_dir=state_root() / f"test{suffix}",
            gateway_port=18080 + shift,
            service_ports={name: port + 10000 + shift for name, port in KNOWN_SERVICES.items()},
            db_prefix=f"shardz_test{suffix}_",
            amqp_vhost=vhost or f"shardz-test-{os.urandom(4).hex()}",
            tenant_pg_port=15433 + shift,
            paystack_port=18190 + shift,
            seaweed=SeaweedPorts(
                s3=18333 + shift,
                master=18334 + shift,
                volume=18335 + shift,
                filer=18336 + shift,
                admin=18337 + shift,
                grpc_offset=10,
            ),
            fresh=True,
            # every test signs its users up from 127.0.0.1; the limit's own test sets its own
            settings={
                "IDENTITY_SIGNUP_MAX_PER_ADDRESS_PER_HOUR": "1000000",
                # the gateway's auth budget too (test_gateway_limits runs its own gateway)
                "PLATFORM_AUTH_RATE_LIMIT_PER_MINUTE": "1000000",
                # a size limit a test can reach in seconds, checked often
                "PLATFORM_FREE_PLAN_DATABASE_SIZE_BYTES": str(48 * 1024 * 1024),
                "PROVISIONER_SIZE_CHECK_INTERVAL_SECONDS": "2",
                "PROVISIONER_IDLE_TRANSACTION_CEILING_SECONDS": "15",
                "PROVISIONER_STATEMENT_CEILING_SECONDS": "15",
                # several stacks (and their extra processes) share one PostgreSQL whose
                # max_connections is often Debian's 100: smaller pools per process
                **{f"{s.upper()}_DB_POOL_SIZE": "3" for s in KNOWN_SERVICES},
                **{f"{s.upper()}_DB_MAX_OVERFLOW": "7" for s in KNOWN_SERVICES},
            },
        )

    def listen_ports(self) -> dict[str, int]:
        """Every TCP port this stack's own processes will listen on, by label."""
        ports = {f"{s} api": self.port(s) for s in self.services}
        ports.update({f"{s} api 2": self.api_ports(s)[1] for s in self.second_api_services()})
        ports["gateway"] = self.gateway_port
        if self.tls_cert:
            ports["gateway tls"] = self.tls_port
        ports["s3"] = self.seaweed.s3
        ports["seaweed master"] = self.seaweed.master
        ports["seaweed volume"] = self.seaweed.volume
        ports["seaweed filer"] = self.seaweed.filer
        ports["seaweed admin"] = self.seaweed.admin
        if "billing" in self.services:
            ports["paystack stand-in"] = self.paystack_port
        return ports

    def port(self, service: str) -> int:
        return self.service_ports[service]

    def second_api_services(self) -> list[str]:
        return [s for s in self.services if s in SECOND_API_PORT_OFFSET]

    def api_ports(self, service: str) -> list[int]:
        """Every port an API process of `service` listens on (the gateway spreads over them)."""
        port = self.port(service)
        offset = SECOND_API_PORT_OFFSET.get(service)
        return [port, port + offset] if offset and service in self.services else [port]

    def internal_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port(service)}"

    def database_name(self, service: str) -> str:
        return f"{self.db_prefix}{service}"

    def database_dsn(self, service: str) -> str:
        """A libpq URL of `service`'s control-plane database (as the control-plane role)."""
        return f"{self.control_dsn.rsplit('/', 1)[0]}/{self.database_name(service)}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.gateway_host}:{self.gateway_port}"

    @property
    def paystack_standin_url(self) -> str:
        return f"http://127.0.0.1:{self.paystack_port}"

    @property
    def secrets_file(self) -> Path:
        return self.data_dir / "secrets.env"

    def tenant_dir(self, index: int = 1) -> Path:
        return self.data_dir / f"tenant-pg-{index}"
