"""Small builders with sensible defaults: override only what a test is about."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from service.domain.reports import Report, ReportDraft, SnapResult, SnapStatus

ROXHAM_ROAD = (-73.5172, 45.0071)  # informal crossing, Champlain NY / Saint-Bernard-de-Lacolle QC
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # make_report's default observed_at
_DRAFT_FIELDS = frozenset(ReportDraft.__dataclass_fields__)


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


def snapped_to(segment_id: str) -> SnapResult:
    return SnapResult(
        status=SnapStatus.SNAPPED,
        segment_id=segment_id,
        distance_m=120.5,
        snapped_lon=26.001,
        snapped_lat=41.0,
        chainage_km=12.25,
        side="GR",
    )


def make_report(**overrides: Any) -> Report:
    """A snapped report; any ReportDraft field, ``received_at`` or ``snap`` may be overridden."""
    draft: dict[str, Any] = {
        "id": uuid.uuid4(),
        "observed_at": T0,
        "lon": 26.0,
        "lat": 41.0,
        "people_count": 3,
        "kind": "crossing",
        "direction": "US",
        "accuracy_m": 10.0,
        "notes": None,
        "device_id": "device-1",
    }
    report: dict[str, Any] = {"received_at": T0 + timedelta(minutes=5), "snap": snapped_to("s-1")}
    for name, value in overrides.items():
        if name in _DRAFT_FIELDS:
            draft[name] = value
        elif name in report:
            report[name] = value
        else:
            raise TypeError(f"make_report() has no field {name!r}")
    return Report(draft=ReportDraft(**draft), **report)
