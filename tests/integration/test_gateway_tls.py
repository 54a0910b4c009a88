"""The optional TLS server: given a certificate (DEVSTACK_TLS_CERT/KEY for make dev), the
gateway answers HTTPS on its TLS port with HSTS, and plain HTTP as before without it."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import ipaddress
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shardz_devstack import gateway
from shardz_devstack.testing import RunningStack
from tests.integration.helpers import free_port, wait_for


def _self_signed(folder: Path, base: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"api.{base}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            # the client dials 127.0.0.1 and names the host in the Host header
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(f"*.{base}"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "tls.crt", folder / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def tls_gateway(stack: RunningStack) -> AsyncIterator[tuple[str, str, Path]]:
    data = stack.config.data_dir / "tls-gateway"
    cert, key = _self_signed(data / "certs", stack.config.base_domain)
    config = dataclasses.replace(
        stack.config,
        gateway_port=free_port(),
        tls_port=free_port(),
        tls_cert=str(cert),
        tls_key=str(key),
        data_dir=data,
    )
    proc = subprocess.Popen(gateway.nginx_command(config))
    plain = config.gateway_url
    secure = f"https://{config.gateway_host}:{config.tls_port}"
    try:

        async def up() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                async with httpx.AsyncClient(verify=False) as c:
                    r = await c.get(f"{secure}/", headers={"Host": stack.host("api")})
                    return r.status_code == 404
            return False

        await wait_for(up, timeout=20)
        yield plain, secure, cert
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_https_answers_with_hsts_and_http_without(
    tls_gateway: tuple[str, str, Path], stack: RunningStack
) -> None:
    plain, secure, cert = tls_gateway
    trusted = ssl.create_default_context(cafile=str(cert))
    host = {"Host": stack.host("api")}
    async with httpx.AsyncClient(verify=trusted) as client:
        jwks = await client.get(f"{secure}/.well-known/jwks.json", headers=host)
        assert jwks.status_code == 200 and jwks.json()["keys"]
        assert jwks.headers["strict-transport-security"].startswith("max-age=")
        # the same refusals over TLS: private paths and unknown hosts
        hidden = await client.get(f"{secure}/internal/health", headers=host)
        assert hidden.status_code == 404
        assert hidden.headers["content-type"].startswith("application/problem+json")
        stranger = await client.get(f"{secure}/", headers={"Host": "evil.example.com"})
        assert stranger.status_code == 404
    async with httpx.AsyncClient() as client:
        jwks = await client.get(f"{plain}/.well-known/jwks.json", headers=host)
        assert jwks.status_code == 200
        assert "strict-transport-security" not in jwks.headers
