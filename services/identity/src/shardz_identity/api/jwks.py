from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

router = APIRouter(tags=["keys"])


class Jwks(BaseModel):
    """RFC 7517: the public signing keys (Ed25519 `OKP` keys, each with its `kid`)."""

    keys: list[dict[str, str]]


@router.get("/.well-known/jwks.json", response_model=Jwks)
async def jwks(request: Request) -> JSONResponse:
    # At most a second old: a rotation shows at once, and a flood of requests for this public
    # document costs one database read a second.
    keys: dict[str, Any] = (await request.app.state.keyring.keys(max_age=1.0)).jwks
    return JSONResponse(keys, headers={"Cache-Control": "public, max-age=60"})
