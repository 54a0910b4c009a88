"""The floor of the auth benchmark: a bare FastAPI route doing one asyncpg query.

Served by `uvicorn floor_app:create_app --factory` (app dir `bench/`) with the same flags as
the services: one worker, httptools, uvloop, no access log. BENCH_FLOOR_DSN is a libpq URL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import asyncpg
from fastapi import FastAPI, HTTPException, Request


def create_app() -> FastAPI:
    dsn = os.environ["BENCH_FLOOR_DSN"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/users/{user_id}")
    async def get_user(user_id: UUID, request: Request) -> dict[str, str]:
        row = await request.app.state.pool.fetchrow(
            "SELECT id, email FROM users WHERE id = $1", user_id
        )
        if row is None:
            raise HTTPException(404)
        return {"id": str(row["id"]), "email": row["email"]}

    return app
