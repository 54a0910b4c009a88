"""`schemathesis` run whose connections come from another loopback address, so the gateway and
identity see a client of its own: its thousands of refused logins and sign-ups count against
that address's limits, never against 127.0.0.1, where the other tests sign in.

    python fuzz_from.py 127.0.0.31 run http://…/openapi.json --url … [schemathesis options]
"""

from __future__ import annotations

import sys
from typing import Any

from requests.adapters import HTTPAdapter


def main() -> None:
    address, args = sys.argv[1], sys.argv[2:]
    original = HTTPAdapter.init_poolmanager

    def init_poolmanager(self: HTTPAdapter, *a: Any, **kw: Any) -> None:
        kw["source_address"] = (address, 0)
        original(self, *a, **kw)

    HTTPAdapter.init_poolmanager = init_poolmanager  # type: ignore[method-assign]
    from schemathesis.cli import schemathesis

    schemathesis(args, prog_name="schemathesis")


if __name__ == "__main__":
    main()
