"""Small builders with sensible defaults: override only what a test is about."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

ROXHAM_ROAD = (-73.5172, 45.0071)  # informal crossing, Champlain NY / Saint-Bernard-de-Lacolle QC


def report_body(**overrides: Any) -> dict[str, Any]:
    """A valid plain-JSON report; ``lon``/``lat`` overrides move it."""
    lon = overrides.pop("lon", ROXHAM_ROAD[0])
    lat = overrides.pop("lat", ROXHAM_ROAD[1])
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "observed_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
        "location": {"type": "Point", "coordinates": [lon, lat]},
        "people_count": 3,
        "direction": "CA",
        "kind": "crossing",
        "accuracy_m": 15.0,
        "notes": None,
        "device_id": None,
    }
    body.update(overrides)
    return body


def report_feature_body(**overrides: Any) -> dict[str, Any]:
    """The same report as a GeoJSON Feature."""
    plain = report_body(**overrides)
    location = plain.pop("location")
    return {"type": "Feature", "geometry": location, "properties": plain}
