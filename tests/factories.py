"""Small builders with sensible defaults: override only what a test is about."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from service.domain.reports import Report, ReportDraft, SnapResult, SnapStatus
from service.domain.segments import BorderSegment
from service.settings import Settings
from service.storage import open_store
from service.usecases.segments import ensure_segments
from service.usecases.submit_reports import submit_batch
from service.usecases.transfer import export_reports

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


def make_segment(segment_id: str = "s-1", **overrides: Any) -> BorderSegment:
    """A short GR-TR segment on the Evros (where make_report's reports lie); any BorderSegment
    field may be overridden."""
    fields: dict[str, Any] = {
        "segment_id": segment_id,
        "border": "GR-TR",
        "start_km": 0.0,
        "end_km": 1.5,
        "left_country": "GRC",
        "right_country": "TUR",
        "coords": ((26.0, 41.0), (26.1, 41.2)),
    }
    return BorderSegment(**(fields | overrides))


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


def fill_along_border(
    url: str,
    count: int,
    *,
    seed: int,
    observed_at: Callable[[int, np.random.Generator], datetime],
    accuracy_m: Callable[[int, np.random.Generator], float | None] = lambda i, rng: None,
) -> list[Report]:
    """``count`` reports of every kind scattered about the CA-US border's vertices (1-11 people,
    directions CA, US and none in turn), posted to the store at ``url`` 1,000 at a time; every
    report as stored. ``observed_at`` and ``accuracy_m`` give report ``i``'s."""
    rng = np.random.default_rng(seed)
    settings = Settings(database_url=url)
    store = open_store(settings.store_options)
    try:
        index = ensure_segments(store, None)
        ca_us = [s for s in index.segments if s.border == "CA-US"]
        drafts = []
        for i in range(count):
            segment = ca_us[int(rng.integers(len(ca_us)))]
            lon, lat = segment.coords[int(rng.integers(len(segment.coords)))]
            drafts.append(
                ReportDraft(
                    id=uuid.UUID(int=int(rng.integers(2**62)) << 64 | i, version=4),
                    observed_at=observed_at(i, rng),
                    lon=round(lon + float(rng.normal(0, 0.02)), 6),
                    lat=round(lat + float(rng.normal(0, 0.02)), 6),
                    people_count=int(rng.integers(1, 12)),
                    kind=["crossing", "attempt", "evidence", "assistance"][i % 4],
                    direction=["CA", "US", None][i % 3],
                    accuracy_m=accuracy_m(i, rng),
                )
            )
        for start in range(0, count, 1_000):
            submit_batch(store, index, drafts[start : start + 1_000], settings=settings)
        return list(export_reports(store))
    finally:
        store.close()


KINDS = ("crossing", "attempt", "evidence", "assistance")


def scattered_drafts(
    n: int,
    seed: int,
    *,
    places: Sequence[tuple[float, float]],
    observed_at: Callable[[random.Random], datetime],
    spread: tuple[float, float],
) -> list[ReportDraft]:
    """``n`` reports about ``places`` (lon/lat spread by normal ``spread`` degrees), of random
    kind, direction and 1-9 people, seeded; ``observed_at`` draws each one's time."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lon, lat = rng.choice(places)
        out.append(
            ReportDraft(
                id=uuid.UUID(int=rng.getrandbits(128), version=4),
                observed_at=observed_at(rng),
                lon=round(lon + rng.gauss(0, spread[0]), 6),
                lat=round(lat + rng.gauss(0, spread[1]), 6),
                people_count=rng.randint(1, 9),
                kind=rng.choice(KINDS),
                direction=rng.choice(["CA", "US", None]),
                accuracy_m=None,
            )
        )
    return out


def drafts_of_rows(
    rows: Sequence[tuple[Any, ...]], *, start: datetime, step: timedelta, shift_every: int
) -> list[ReportDraft]:
    """Reports from rows (number, steps, (lon, lat), kind, people, direction) as property tests
    draw them: id ``number + 1``, observed ``steps`` steps and ``number`` seconds after ``start``,
    nudged east 0.01 degrees per ``number % shift_every``."""
    return [
        ReportDraft(
            id=uuid.UUID(int=number + 1),
            observed_at=start + steps * step + timedelta(seconds=number),
            lon=lon + (number % shift_every) * 0.01,
            lat=lat,
            people_count=people,
            kind=kind,
            direction=direction,
        )
        for number, steps, (lon, lat), kind, people, direction in rows
    ]
