"""Report wire formats: what a field app sends, and the GeoJSON Feature it gets back."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

import orjson
from pydantic import Field, RootModel, StrictInt, StrictStr, ValidationError, field_validator

from service.api.problems import problem_body
from service.api.schemas.common import (
    Instant,
    PointIn,
    Strict,
    Text,
    format_instant,
    parse_instant,
    position_errors,
)
from service.domain.countries import ALPHA2_CODES
from service.domain.errors import FieldError, InvalidInput, Problem
from service.domain.reports import BEYOND, Report, ReportDraft, SnapResult
from service.usecases.submit_reports import ItemOutcome

MAX_PEOPLE = 10_000
MAX_ACCURACY_M = 1_000_000.0


class ReportProperties(Strict):
    """The report's fields (all but its location)."""

    id: UUID | None = Field(
        default=None, description="Client-generated UUID; a replay with the same id is stored once"
    )
    observed_at: Instant = Field(description="RFC 3339 with offset, when the crossing was seen")
    people_count: StrictInt = Field(ge=1, le=MAX_PEOPLE)
    direction: StrictStr | None = Field(
        default=None,
        description="ISO 3166-1 alpha-2 code of the country being entered, or null",
    )
    kind: StrictStr = Field(
        description="One of the configured kinds (default crossing, attempt, evidence, assistance)"
    )
    accuracy_m: (
        Annotated[float, Field(ge=0, le=MAX_ACCURACY_M, allow_inf_nan=False, strict=True)] | None
    ) = None
    notes: Annotated[Text, Field(max_length=2000)] | None = None
    device_id: (
        Annotated[Text, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")] | None
    ) = Field(
        default=None,
        description="Pseudonymous device tag (printable ASCII, no spaces); never a phone number or name",
    )

    @field_validator("direction")
    @classmethod
    def _alpha2(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in ALPHA2_CODES:
            raise ValueError("must be an ISO 3166-1 alpha-2 country code, e.g. CA or US")
        return None if value is None else value.upper()


class ReportIn(ReportProperties):
    """A report as a plain JSON object."""

    location: PointIn


class ReportFeatureIn(Strict):
    """A report as a GeoJSON Feature: the Point as geometry, the fields as properties."""

    type: Literal["Feature"]
    id: UUID | None = None
    geometry: PointIn
    properties: ReportProperties
    bbox: list[float] | None = None


def parse_report(obj: object, *, path: str = "") -> ReportDraft | Problem:
    """A draft from a plain report or a GeoJSON Feature, or the problem naming each bad field."""
    is_feature = isinstance(obj, dict) and obj.get("type") == "Feature"
    where = f"{path}{'geometry' if is_feature else 'location'}"
    position_errors = _position_errors(obj, is_feature=is_feature, prefix=where)
    try:
        if is_feature:
            feature = ReportFeatureIn.model_validate(obj)
            props, point = feature.properties, feature.geometry
            if feature.id and props.id and feature.id != props.id:
                return _problem([FieldError(f"{path}id", "differs from properties.id")])
            report_id = feature.id or props.id
        else:
            plain = ReportIn.model_validate(obj)
            props, point, report_id = plain, plain.location, plain.id
    except ValidationError as error:
        errors = [_field_error(err, path) for err in error.errors()]
        known = {e.field for e in errors}
        return _problem(errors + [e for e in position_errors if e.field not in known])
    if position_errors:
        return _problem(position_errors)
    return ReportDraft(
        id=report_id or uuid4(),
        observed_at=props.observed_at,  # type: ignore[arg-type]  # the validator made it a datetime
        lon=float(point.coordinates[0]),
        lat=float(point.coordinates[1]),
        people_count=props.people_count,
        kind=props.kind,
        direction=props.direction,
        accuracy_m=None if props.accuracy_m is None else float(props.accuracy_m),
        notes=props.notes,
        device_id=props.device_id,
    )


def rule_field(field: str, *, is_feature: bool) -> str:
    """Where a domain field sits in the client's document."""
    if not is_feature:
        return field
    return "geometry" if field == "location" else f"properties.{field}"


def _position_errors(obj: object, *, is_feature: bool, prefix: str) -> list[FieldError]:
    """Range and type errors of [lon, lat(, alt)], checked on the raw document so they are reported
    alongside every other error, not only once the rest is valid."""
    point = obj.get("geometry" if is_feature else "location") if isinstance(obj, dict) else None
    coords = point.get("coordinates") if isinstance(point, dict) else None
    if not isinstance(coords, list) or not 2 <= len(coords) <= 3:
        return []  # the schema reports a missing or misshapen Point
    return position_errors(coords, f"{prefix}.coordinates")


def _field_error(err: Any, path: str) -> FieldError:
    loc = ".".join(str(p) for p in err["loc"])
    reason = err["msg"]
    if reason.startswith("Value error, "):
        reason = reason[len("Value error, ") :]
    return FieldError(f"{path}{loc}" if loc else (path.rstrip(".") or "body"), reason)


def _problem(errors: list[FieldError]) -> Problem:
    return Problem(InvalidInput, "the report is not valid", errors)


def report_feature(report: Report, *, group_id: UUID | None = None) -> dict[str, Any]:
    """A stored report as a GeoJSON Feature with flat properties (GIS tools map them to columns);
    with ``group_id`` (analysts only: usecases/links.py), the group of reports it belongs to."""
    d, s = report.draft, report.snap
    report_id = str(d.id)
    feature: dict[str, Any] = {
        "type": "Feature",
        "id": report_id,
        "geometry": {"type": "Point", "coordinates": [d.lon, d.lat]},
        "properties": {
            "id": report_id,
            "observed_at": format_instant(d.observed_at),
            "received_at": format_instant(report.received_at),
            "people_count": d.people_count,
            "direction": d.direction,
            "kind": d.kind,
            "accuracy_m": d.accuracy_m,
            "notes": d.notes,
            "device_id": d.device_id,
            **snap_properties(s),
        },
    }
    if group_id is not None:
        feature["properties"]["group_id"] = str(group_id)
    return feature


def snap_properties(s: SnapResult) -> dict[str, Any]:
    return {
        "snap_status": s.status.value,
        "segment_id": s.segment_id,
        "snap_distance_m": s.distance_m,
        "chainage_km": s.chainage_km,
        "side": s.side,
        "snapped_lon": s.snapped_lon,
        "snapped_lat": s.snapped_lat,
    }


def _wire_errors(problem: Problem, *, is_feature: bool) -> list[FieldError]:
    # Wire-schema errors already carry wire paths; domain-rule errors carry the report's own field
    # names, placed here where the client sent them.
    domain_fields = {"observed_at", "kind", "direction", "location"}
    return [
        FieldError(rule_field(fe.field, is_feature=is_feature), fe.reason)
        if fe.field in domain_fields
        else fe
        for fe in problem.errors
    ]


def raise_for_outcome(outcome: ItemOutcome, *, is_feature: bool) -> Report:
    """The stored report of a single submission, or its problem raised as a ServiceError."""
    if outcome.problem is not None:
        errors = _wire_errors(outcome.problem, is_feature=is_feature)
        raise outcome.problem.kind(outcome.problem.detail, errors=errors)
    assert outcome.result.report is not None
    return outcome.result.report


def batch_item(
    outcome: ItemOutcome, *, position: int, is_feature: bool, with_report: bool
) -> dict[str, Any]:
    """One entry of a batch response: index, status, id and snap, the problem if any, and the
    whole stored report only when asked (it more than doubles the response)."""
    item: dict[str, Any] = {"index": position, "status": outcome.result.outcome.value}
    report = outcome.result.report
    if report is not None:
        item["id"] = report.id  # orjson writes a UUID as its string, faster than str()
        item["snap_status"] = report.snap.status.value
        item["segment_id"] = report.snap.segment_id
    if outcome.problem is not None:
        errors = _wire_errors(outcome.problem, is_feature=is_feature)
        item["problem"] = problem_body(outcome.problem.kind, outcome.problem.detail, errors=errors)
    elif with_report and report is not None:
        item["report"] = report_feature(report)
    return item


class ReportBatchIn(RootModel[list[ReportIn | ReportFeatureIn]]):
    """A batch as a JSON array of reports (plain objects or Features)."""


class ReportFeatureCollectionIn(Strict):
    """A batch as a GeoJSON FeatureCollection of report Features."""

    type: Literal["FeatureCollection"]
    features: list[ReportFeatureIn]


SERVER_PROPERTIES = (
    "received_at",
    "snap_status",
    "segment_id",
    "snap_distance_m",
    "chainage_km",
    "side",
    "snapped_lon",
    "snapped_lat",
)


def report_from_feature(feature: object, *, received_at_fallback: datetime) -> Report | Problem:
    """A report from an exported Feature (``report_feature``'s output), or the problem with it.

    The client's fields pass the same validation as a submission; the stored snap is dropped (the
    importing store snaps again) and ``received_at`` is kept when present.
    """
    if not isinstance(feature, dict) or not isinstance(feature.get("properties"), dict):
        return _problem([FieldError("body", "is not a GeoJSON Feature with properties")])
    props = dict(feature["properties"])
    received = props.get("received_at")
    for name in SERVER_PROPERTIES:
        props.pop(name, None)
    draft = parse_report({**feature, "properties": props})
    if isinstance(draft, Problem):
        return draft
    try:
        received_at = parse_instant(received) if isinstance(received, str) else received_at_fallback
    except ValueError as error:
        return _problem([FieldError("properties.received_at", str(error))])
    return Report(draft=draft, received_at=received_at, snap=BEYOND)


def feature_line(report: Report) -> bytes:
    """One line of an export: the report as a GeoJSON Feature, newline-terminated."""
    return orjson.dumps(report_feature(report)) + b"\n"


def reports_from_lines(
    lines: Iterable[bytes], *, received_at_fallback: datetime, refused: list[str]
) -> Iterator[Report]:
    """The reports of an export (``feature_line``'s lines; blank lines skipped). A line that is
    no valid report is left out, and why goes to ``refused`` ("line N: reason")."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = report_from_feature(
                orjson.loads(line), received_at_fallback=received_at_fallback
            )
        except orjson.JSONDecodeError as error:
            refused.append(f"line {number}: not JSON ({error})")
            continue
        if isinstance(item, Problem):
            reasons = "; ".join(f"{e.field} {e.reason}" for e in item.errors)
            refused.append(f"line {number}: {reasons}")
            continue
        yield item
