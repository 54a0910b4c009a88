"""A service's OpenAPI document names every problem+json answer it gives (CONTRACT section 3),
and an undeclared method is answered 405 naming every method of the path."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from fastapi import FastAPI, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel

from shardz_common.auth import AdminUser, CurrentUser
from shardz_common.errors import install_error_handlers
from shardz_common.openapi import install_openapi, problems


class Body(BaseModel):
    name: str


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/v1/things/{thing_id}")
    async def get_thing(thing_id: UUID, user: CurrentUser) -> dict[str, str]:
        return {}

    @app.put("/v1/things/{thing_id}", responses=problems(409))
    async def put_thing(thing_id: UUID, body: Body, user: CurrentUser) -> dict[str, str]:
        return {}

    @app.delete("/v1/things/{thing_id}", status_code=202)
    async def delete_thing(thing_id: UUID, user: AdminUser) -> Response:
        return Response(status_code=202)

    @app.get("/v1/public")
    async def public() -> dict[str, str]:
        return {}

    @app.post("/v1/nul")
    async def nul(body: Body) -> None:
        raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")

    install_openapi(app)
    return app


app = make_app()
client = TestClient(app, raise_server_exceptions=False)
document: dict[str, Any] = client.get("/openapi.json").json()
things = document["paths"]["/v1/things/{thing_id}"]


def test_a_credentialed_route_documents_the_bearer_scheme_and_401_403() -> None:
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for method in ("get", "put", "delete"):  # AdminUser depends on CurrentUser
        assert things[method]["security"] == [{"bearer": []}]
        assert {"401", "403", "404", "422", "503"} <= things[method]["responses"].keys()
    public = document["paths"]["/v1/public"]["get"]
    assert "security" not in public and set(public["responses"]) == {"200", "503"}


def test_every_error_answer_is_the_one_problem_component() -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    put = things["put"]["responses"]
    assert {"400", "409", "413", "414"} <= put.keys()
    for status, response in put.items():
        if int(status) >= 400:
            schema = response["content"]["application/problem+json"]["schema"]
            expected = "ValidationProblem" if status == "422" else "Problem"
            assert schema == {"$ref": f"#/components/schemas/{expected}"}
    assert "Retry-After" in things["get"]["responses"]["503"]["headers"]


def test_a_bodiless_answer_is_documented_without_content() -> None:
    assert "content" not in things["delete"]["responses"]["202"]


def test_a_405_names_every_method_of_the_path_not_just_the_first_route() -> None:
    resp = client.patch("/v1/things/00000000-0000-0000-0000-000000000000")
    assert resp.status_code == 405
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.headers["allow"] == "GET, PUT, DELETE"


def test_a_nul_the_database_refuses_is_bad_input_not_a_server_error() -> None:
    resp = client.post("/v1/nul", json={"name": "a\u0000b"})
    assert resp.status_code == 422 and resp.json()["code"] == "validation_error"
