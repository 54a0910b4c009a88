from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["keys"])


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> JSONResponse:
    # Read fresh: a rotation must show here at once; verifiers cache this document.
    keys: dict[str, Any] = (await request.app.state.keyring.keys(force=True)).jwks
    return JSONResponse(keys, headers={"Cache-Control": "public, max-age=60"})
