"""The interactive API documentation, /docs (Swagger UI) and /redoc (ReDoc), from copies of both
served under /static/vendor (service/static/vendor/SOURCE.md): no CDN, and the same Content
Security Policy as every other page (scripts from this server only, none inline)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

# Relative URLs: the pages work behind any proxy and whatever the Host.
_SWAGGER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>crossings - API documentation</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css">
</head><body>
<div id="swagger-ui" data-openapi-url="/openapi.json"></div>
<script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body></html>
"""
_REDOC = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>crossings - API reference</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
</head><body>
<redoc spec-url="/openapi.json"></redoc>
<script src="/static/vendor/redoc/redoc.standalone.js"></script>
</body></html>
"""


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    return HTMLResponse(_SWAGGER)


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    return HTMLResponse(_REDOC)
