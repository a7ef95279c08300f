"""Fast JSON responses (orjson) and the media types the API speaks."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

GEOJSON = "application/geo+json"


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class GeoJSONResponse(JSONResponse):
    media_type = GEOJSON
