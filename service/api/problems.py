"""The one place errors meet HTTP: exception class -> status, type and title, as RFC 9457."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request, params
from fastapi.dependencies.utils import get_flat_params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from service.api.state import app_state
from service.domain import errors as e

log = logging.getLogger("crossings")
PROBLEM_JSON = "application/problem+json"

# (status, type slug, title); lookup walks the MRO, so subclasses inherit their parent's entry.
PROBLEMS: dict[type[Exception], tuple[int, str, str]] = {
    e.MalformedBody: (400, "malformed-body", "The request body could not be read"),
    e.InvalidParameter: (400, "invalid-parameter", "A parameter is not valid"),
    e.InvalidInput: (422, "invalid-input", "The input breaks a rule"),
    e.Unauthenticated: (401, "unauthenticated", "A valid API key is needed"),
    e.Forbidden: (403, "forbidden", "Not allowed for this role"),
    e.NotFound: (404, "not-found", "Not found"),
    e.TooManyRequests: (429, "too-many-requests", "Too many requests; retry later"),
    e.ReportConflict: (409, "report-conflict", "Report id reused with different content"),
    e.BodyTooLarge: (413, "too-large", "The request is too large"),
    e.UnsupportedMediaType: (415, "unsupported-media-type", "Unsupported media type"),
    e.StoreUnavailable: (503, "store-unavailable", "The store is unavailable; retry later"),
    # 504, not 503: the database is up but the work took too long; no Retry-After (the same
    # request would time out again). Not a 4xx either: the request was within every bound the
    # service checks before work (the batch cost cap refuses predictably costly ones with 413).
    e.StatementTimeout: (504, "statement-timeout", "The database did not finish in time"),
    e.ShuttingDown: (503, "shutting-down", "This server is shutting down"),
    e.InvalidSegmentFile: (422, "invalid-segment-file", "The segment file was refused"),
    e.TooCostly: (400, "too-costly", "The request asks for more work than this service does"),
    e.ClientGone: (499, "client-gone", "The client went away before the answer was ready"),
    e.ServiceError: (400, "bad-request", "Bad request"),
}


# What the OpenAPI document says of refusals (DocumentedRoute): every error is a problem
# (components/schemas/Problem, api/openapi.py), and validation answers 400, never FastAPI's 422.
def _documented(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Problem"}
    return {"description": description, "content": {PROBLEM_JSON: {"schema": schema}}}


INVALID_REQUEST = _documented("A parameter or the body is not valid")
ANY_OTHER_PROBLEM = _documented("Any other refusal or failure (`type` says which)")


class DocumentedRoute(APIRoute):
    """A route whose OpenAPI operation says what it answers when it refuses: 400 where it takes
    parameters or a body (the validation_error handler below answers 400, never FastAPI's 422),
    and a problem for anything else (``default``, which also keeps FastAPI from adding 422)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        refusals: dict[int | str, dict[str, Any]] = {"default": ANY_OTHER_PROBLEM}
        if _takes_input(self):  # the status validation_error (below) answers with
            refusals[lookup(e.InvalidParameter)[0]] = INVALID_REQUEST
        self.responses = {**refusals, **self.responses}


def _takes_input(route: APIRoute) -> bool:
    """Whether a request can name a value the route refuses: a query, header or cookie
    parameter, a path parameter other than free text, or a body (declared or read by hand,
    then documented by ``openapi_extra``)."""
    if route.body_field is not None or "requestBody" in (route.openapi_extra or {}):
        return True
    return any(
        not isinstance(p.field_info, params.Path) or p.field_info.annotation is not str
        for p in get_flat_params(route.dependant)
    )


def lookup(kind: type[Exception]) -> tuple[int, str, str]:
    for cls in kind.__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    return 500, "internal-error", "Internal server error"


def problem_body(
    kind: type[Exception],
    detail: str,
    *,
    errors: list[e.FieldError] | None = None,
    instance: str | None = None,
) -> dict[str, Any]:
    status, slug, title = lookup(kind)
    body: dict[str, Any] = {"type": f"/problems/{slug}", "title": title, "status": status}
    body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    if errors:
        body["errors"] = [{"field": fe.field, "reason": fe.reason} for fe in errors]
    return body


def problem_response(
    request: Request,
    kind: type[Exception],
    detail: str,
    *,
    errors: list[e.FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = problem_body(kind, detail, errors=errors, instance=request.url.path)
    body["request_id"] = getattr(request.state, "request_id", None)
    headers = dict(headers or {})
    if body["status"] == 503:
        headers.setdefault("Retry-After", str(app_state(request.app).settings.retry_after_s))
    return Response(
        orjson.dumps(body), status_code=body["status"], media_type=PROBLEM_JSON, headers=headers
    )


def _reason(cause: BaseException | None) -> str:
    """The first line of the driver's message (SQLAlchemy appends the SQL after it)."""
    if cause is None:
        return "-"
    orig = getattr(cause, "orig", None) or cause
    lines = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {lines[0] if lines else ''}"


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("query", "path", "header", "body", "cookie"):
        parts = parts[1:]
    return ".".join(parts) or "request"


def _validation_reason(request: Request, err: Any) -> str:
    """FastAPI's message, except for a parameter the route does not take (a query model with
    ``extra="forbid"``): then the parameters it does take, as its OpenAPI operation lists them."""
    if err["type"] != "extra_forbidden" or err["loc"][0] != "query":
        return str(err["msg"])
    known = ", ".join(sorted(_query_parameters(request)))
    return f"is not a parameter of this resource (known: {known})"


def _query_parameters(request: Request) -> list[str]:
    path = getattr(request.scope.get("route"), "path_format", None)
    operation = request.app.openapi()["paths"].get(path, {}).get(request.method.lower(), {})
    return [p["name"] for p in operation.get("parameters", ()) if p["in"] == "query"]


def install(app: FastAPI) -> None:
    @app.exception_handler(e.ServiceError)
    async def service_error(request: Request, exc: e.ServiceError) -> Response:
        if isinstance(exc, e.StoreUnavailable | e.StatementTimeout):
            # The store call's name and the driver's first line: never the statement's text or
            # its parameters (a report's position and notes).
            log.warning(
                "%s in %s: %s", type(exc).__name__, exc.operation or "?", _reason(exc.__cause__)
            )
            app_state(request.app).metrics.db_error(exc)
        headers: dict[str, str] = {}
        if isinstance(exc, e.TooManyRequests):
            headers["Retry-After"] = str(exc.retry_after_s)
        if isinstance(exc, e.Unauthenticated):
            # Basic too, so that clients that send credentials only when challenged (QGIS's
            # Basic authentication, GDAL's GDAL_HTTP_USERPWD) send the key as the password.
            headers["WWW-Authenticate"] = 'Bearer realm="crossings", Basic realm="crossings"'
        return problem_response(request, type(exc), exc.detail, errors=exc.errors, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            e.FieldError(_field(tuple(err["loc"])), _validation_reason(request, err))
            for err in exc.errors()
        ]
        if all(err["loc"][0] in ("query", "path") for err in exc.errors()) and errors:
            # The route's declared parameters (query models, path): the same answer as a value
            # the route's own parsing refuses.
            detail = f"{errors[0].field} {errors[0].reason}"
            return problem_response(request, e.InvalidParameter, detail, errors=errors)
        return problem_response(request, e.ServiceError, "a parameter is not valid", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        body = {
            "type": "about:blank",
            "title": str(exc.detail),
            "status": exc.status_code,
            "detail": str(exc.detail),
            "instance": request.url.path,
        }
        return Response(
            orjson.dumps(body),
            status_code=exc.status_code,
            media_type=PROBLEM_JSON,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        route = getattr(request.scope.get("route"), "path", "unmatched")  # never the path: a tile
        log.exception("unhandled error on %s %s", request.method, route)  # address is a place
        return problem_response(request, Exception, "an unexpected error occurred")
