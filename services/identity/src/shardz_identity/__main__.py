"""`python -m shardz_identity migrate|api|worker|rotate-signing-key [--revoke-old]`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

SERVICE_ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    from shardz_common.cli import run_cli
    from shardz_identity.config import IdentitySettings

    run_cli(
        sys.argv[1:],
        settings=IdentitySettings(),
        service_root=SERVICE_ROOT,
        app_factory="shardz_identity.main:create_app",
        worker_spec="shardz_identity.worker:spec",
        extra={"rotate-signing-key": _rotate},
    )


def _rotate() -> None:
    from cryptography.fernet import Fernet
    from sqlalchemy import select

    from shardz_common.db import make_engine, make_sessionmaker
    from shardz_identity.config import IdentitySettings
    from shardz_identity.db.tables import SigningKey
    from shardz_identity.services.keyring import revoke, rotate

    settings = IdentitySettings()
    # --revoke-old: an emergency (a leaked key); every older key stops verifying everywhere
    revoke_old = "--revoke-old" in sys.argv[2:]

    async def go() -> None:
        fernet = Fernet(settings.fernet_key())
        engine = make_engine(settings.database_url)
        async with make_sessionmaker(engine)() as s, s.begin():
            kid = await rotate(s, fernet)
            if revoke_old:
                old = select(SigningKey.kid).where(
                    SigningKey.kid != kid, SigningKey.revoked_at.is_(None)
                )
                for other in (await s.execute(old)).scalars().all():
                    await revoke(s, fernet, other)
        await engine.dispose()
        print(kid)

    asyncio.run(go())


if __name__ == "__main__":
    main()
