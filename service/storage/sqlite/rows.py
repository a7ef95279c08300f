"""Between domain objects and SQLite rows: exact times, canonical ids, JSON for nested values."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

from service.domain.reports import Report, ReportDraft, SnapResult, SnapStatus
from service.domain.segments import BorderSegment
from service.storage.rows import segment_of

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch: an integer, so storing and sorting lose nothing."""
    if moment.utcoffset() is None:
        # A naive time has no instant; guessing a zone would store a wrong one silently.
        raise ValueError(f"a stored time must carry its UTC offset: {moment!r}")
    return (moment - EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    """The UTC instant ``micros`` microseconds after the epoch (integer arithmetic, exact)."""
    return EPOCH + timedelta(microseconds=micros)


class ReportRow(NamedTuple):
    """One row of ``reports`` (without row_no), in column order."""

    id: str
    observed_at: int
    received_at: int
    lon: float
    lat: float
    people_count: int
    kind: str
    direction: str | None
    accuracy_m: float | None
    notes: str | None
    device_id: str | None
    content_hash: bytes
    snap_status: str
    segment_id: str | None
    snap_distance_m: float | None
    snap_lon: float | None
    snap_lat: float | None
    chainage_km: float | None
    side: str | None


# Column names come from the constant field list above, never from input.
REPORT_COLUMNS = ", ".join(ReportRow._fields)


def report_row(report: Report, content_hash: bytes) -> ReportRow:
    draft, snap = report.draft, report.snap
    return ReportRow(
        id=str(draft.id),
        observed_at=to_micros(draft.observed_at),
        received_at=to_micros(report.received_at),
        lon=draft.lon,
        lat=draft.lat,
        people_count=draft.people_count,
        kind=draft.kind,
        direction=draft.direction,
        accuracy_m=draft.accuracy_m,
        notes=draft.notes,
        device_id=draft.device_id,
        content_hash=content_hash,
        snap_status=snap.status.value,
        segment_id=snap.segment_id,
        snap_distance_m=snap.distance_m,
        snap_lon=snap.snapped_lon,
        snap_lat=snap.snapped_lat,
        chainage_km=snap.chainage_km,
        side=snap.side,
    )


def report_from_row(values: tuple[Any, ...]) -> Report:
    """The Report a ``SELECT {REPORT_COLUMNS}`` row holds."""
    row = ReportRow._make(values)
    draft = ReportDraft(
        id=UUID(row.id),
        observed_at=from_micros(row.observed_at),
        lon=row.lon,
        lat=row.lat,
        people_count=row.people_count,
        kind=row.kind,
        direction=row.direction,
        accuracy_m=row.accuracy_m,
        notes=row.notes,
        device_id=row.device_id,
    )
    snap = SnapResult(
        status=SnapStatus(row.snap_status),
        segment_id=row.segment_id,
        distance_m=row.snap_distance_m,
        snapped_lon=row.snap_lon,
        snapped_lat=row.snap_lat,
        chainage_km=row.chainage_km,
        side=row.side,
    )
    return Report(draft=draft, received_at=from_micros(row.received_at), snap=snap)


class SegmentRow(NamedTuple):
    """One row of ``segments``, in column order; properties and coords are JSON text."""

    segment_id: str
    load_order: int
    border: str
    section: str
    start_km: float
    end_km: float
    left_country: str
    right_country: str
    properties: str
    coords: str


SEGMENT_COLUMNS = ", ".join(SegmentRow._fields)


def segment_row(segment: BorderSegment, *, load_order: int) -> SegmentRow:
    """The row for ``segment``; TypeError/ValueError if its properties are not JSON values.

    Python's json writes floats with repr, so they read back bit for bit.
    """
    return SegmentRow(
        segment_id=segment.segment_id,
        load_order=load_order,
        border=segment.border,
        section=segment.section,
        start_km=segment.start_km,
        end_km=segment.end_km,
        left_country=segment.left_country,
        right_country=segment.right_country,
        properties=json.dumps(dict(segment.properties), ensure_ascii=False),
        coords=json.dumps([list(c) for c in segment.coords]),
    )


def segment_from_row(values: tuple[Any, ...]) -> BorderSegment:
    row = SegmentRow._make(values)
    coords = tuple((float(lon), float(lat)) for lon, lat in json.loads(row.coords))
    return segment_of(row, coords, json.loads(row.properties))
