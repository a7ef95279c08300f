"""The OpenAPI document says what the service answers when it refuses a request: 400 with an
RFC 9457 problem where a route takes parameters or a body (never FastAPI's 422, which the
service does not answer for them), checked by sending each such route a bad request."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from service.api.schemas.common import Problem
from tests.problems import PROBLEM

# Parameters the document types as free text that the route reads itself (a format, a time,
# a box): a value each refuses. Others are refused by their schema (_bad_value).
BAD_TEXT = {"f": "xml", "start": "soon", "end": "soon", "since": "soon", "datetime": "soon",
            "bbox": "1,2,3"}  # fmt: skip
FREE_TEXT_PATH = {"collection_id": "segments", "feature_id": None, "segment_id": None}


Request = tuple[str, dict[str, Any]]  # a URL and the request's other arguments
ANY_UUID = "00000000-0000-4000-8000-000000000001"


def _bad_requests(path: str, op: dict[str, Any], segment: str) -> list[Request]:
    """Each bad request the document lets one write for ``op``: a typed path parameter that is
    not of its type, a query parameter of BAD_QUERY, a body that is not JSON."""
    good: dict[str, str] = {}
    typed: list[str] = []
    for p in op.get("parameters", []):
        if p["in"] == "path" and p["schema"].get("format") == "uuid":
            good[p["name"]] = ANY_UUID
            typed.append(p["name"])
        elif p["in"] == "path" and p["schema"].get("type") == "integer":
            good[p["name"]] = "1"
            typed.append(p["name"])
        elif p["in"] == "path":
            good[p["name"]] = FREE_TEXT_PATH.get(p["name"]) or segment
    out: list[Request] = [(path.format(**(good | {name: "not-valid"})), {}) for name in typed]
    for p in op.get("parameters", []):
        value = _bad_value(p["name"], p["schema"]) if p["in"] == "query" else None
        if value is not None:
            out.append((path.format(**good), {"params": {p["name"]: value}}))
    if "requestBody" in op:
        body = {"content": b"{", "headers": {"Content-Type": "application/json"}}
        out.append((path.format(**good), body))
    return out


def _bad_value(name: str, schema: dict[str, Any]) -> str | None:
    """A value the schema (or, for free text, BAD_TEXT) refuses; None: any text will do."""
    options: list[dict[str, Any]] = schema.get("anyOf", [schema])
    for option in options:
        if option.get("type") in ("integer", "number"):
            return "many"
        if "enum" in option or "$ref" in option:
            return "none-of-these"
        if "maxLength" in option:
            return "X" * (int(option["maxLength"]) + 1)
    return BAD_TEXT.get(name)


async def test_every_documented_validation_refusal_is_what_the_route_answers(
    client: httpx.AsyncClient,
) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert "Problem" in doc["components"]["schemas"]
    segment = (await client.get("/v1/segments")).json()["features"][0]["id"]
    checked = 0
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            responses = op["responses"]
            assert "422" not in responses, f"{method} {path} documents FastAPI's 422"
            problem = responses["default"]["content"]["application/problem+json"]["schema"]
            assert problem == {"$ref": "#/components/schemas/Problem"}
            bad = _bad_requests(path, op, segment)
            # A route that takes no value it could refuse documents no 400, and the others do.
            assert ("400" in responses) == bool(bad), f"{method} {path}: 400 and {bad}"
            refused = 0
            for url, arguments in bad:
                response = await client.request(method.upper(), url, **arguments)
                if response.status_code < 300:  # free text taken as it is (style.json passes
                    continue  # start on to tiles.json, which checks it)
                assert response.status_code == 400, f"{method} {url} {arguments}: {response.text}"
                assert response.headers["content-type"] == PROBLEM
                assert Problem.model_validate(response.json()).status == 400
                refused += 1
            assert refused or not bad, f"{method} {path}: no bad request was refused"
            checked += refused
    assert checked >= 40


# Routes that take other parameters on purpose: the map style passes the tiles' filters on to
# the TileJSON URL (which checks them) and ignores the rest.
TAKES_ANY_PARAMETER = {"/v1/tiles/style.json"}


async def test_every_route_with_query_parameters_refuses_one_it_does_not_take(
    client: httpx.AsyncClient,
) -> None:
    """A typo in a parameter's name (``segmnet=``) is a 400 naming the parameters the route
    takes, never a 200 that silently ignored the filter the caller meant."""
    doc = (await client.get("/openapi.json")).json()
    segment = (await client.get("/v1/segments")).json()["features"][0]["id"]
    checked = []
    for path, operations in doc["paths"].items():
        op = operations.get("get")
        if op is None or path in TAKES_ANY_PARAMETER:
            continue
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        if not declared:
            continue
        good = {
            p["name"]: ANY_UUID
            if p["schema"].get("format") == "uuid"
            else "1"
            if p["schema"].get("type") == "integer"
            else FREE_TEXT_PATH.get(p["name"]) or segment
            for p in op.get("parameters", [])
            if p["in"] == "path"
        }
        response = await client.get(path.format(**good), params={"segmnet": "x"})
        assert response.status_code == 400, f"GET {path}: {response.status_code}"
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert "segmnet" in orjson.dumps(problem).decode(), f"GET {path}: {problem}"
        checked.append(path)
    for listing in (
        "/v1/alerts",
        "/v1/links",
        "/v1/audit",
        "/v1/webhooks/{webhook_id}/deliveries",
        "/v1/reports",
        "/v1/segments",
        "/ogc",
        "/ogc/collections",
    ):
        assert listing in checked  # fmt: skip
