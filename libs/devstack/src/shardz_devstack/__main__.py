"""CLI: `python -m shardz_devstack COMMAND` (`--help` lists them)."""

from __future__ import annotations

import argparse
import os
import sys

from shardz_devstack import apidocs, control, gateway
from shardz_devstack.config import StackConfig, state_root
from shardz_devstack.dev import main_dev, status, stop_tenant
from shardz_devstack.stack import prepare


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shardz_devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="prepare and run the whole dev stack in the foreground")
    sub.add_parser("status", help="show whether the dev stack runs and what answers")
    sub.add_parser("migrate", help="create databases, start the tenant cluster, migrate")
    sub.add_parser("env", help="print the services' environment (contains secrets)")
    gw = sub.add_parser("gateway-config", help="render the nginx config and print its path")
    gw.add_argument(
        "--compose",
        action="store_true",
        help="rewrite the committed compose and Kubernetes gateway configs instead",
    )
    sub.add_parser("api-docs", help="rewrite docs/api/openapi.json, the merged public API")
    sub.add_parser("stop-tenant", help="stop the dev tenant Postgres cluster")
    sub.add_parser("control-role", help="create the control-plane PostgreSQL role if needed")
    args = parser.parse_args(argv)

    config = StackConfig.dev()
    if args.command == "up":
        return main_dev(config)
    if args.command == "status":
        return status(config)
    if args.command in ("migrate", "env"):
        stack = prepare(config, overrides=os.environ, check_ports=False)
        if args.command == "env":
            for key, value in sorted(stack.env.items()):
                print(f"{key}={value}")
        else:
            print(f"migrated: {', '.join(config.services) or '(no services installed)'}")
        return 0
    if args.command == "gateway-config":
        if args.compose:
            for path in gateway.write_generated():
                print(path)
        else:
            print(gateway.write_config(config))
        return 0
    if args.command == "api-docs":
        apidocs.write()
        print(apidocs.DOCUMENT)
        return 0
    if args.command == "control-role":
        if config.control_dsn:
            print("control plane: DEVSTACK_CONTROL_DSN is set; nothing to create")
            return 0
        path = control.credentials_file(state_root())
        try:
            control.ensure_role(path)
        except RuntimeError as exc:
            print(f"cannot set up the control plane: {exc}", file=sys.stderr)
            return 1
        print(f"control plane: role {control.ROLE!r} on 127.0.0.1:5432, credentials in {path}")
        return 0
    if args.command == "stop-tenant":
        stop_tenant(config)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
