"""Wire format of aggregates: query parameters in, rows and totals out (JSON, CSV, GeoJSON)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas.common import FormatQuery
from service.api.schemas.pages import parse_bbox, parse_time
from service.domain.aggregation import GROUP_KEYS, UNITS, local_start_text
from service.domain.errors import FieldError, InvalidParameter
from service.domain.figures import Figure
from service.domain.segments import SegmentIndex
from service.settings import Settings
from service.usecases.aggregates import ROW_NAMES, Aggregate, AggregateRequest
from service.usecases.public_release import PublicAnswer


class WindowQuery(BaseModel):
    """The parameters every aggregate route takes, declared once: FastAPI documents and reads
    them and refuses any other; ``parse_request`` checks their values, naming the one that is
    wrong."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str | None = Field(default=None, description="observed_at >= start (RFC 3339)")
    end: str | None = Field(default=None, description="observed_at < end (RFC 3339)")
    kind: str | None = None


class ChoroplethQuery(WindowQuery):
    border: str | None = None


class TimeseriesQuery(WindowQuery, FormatQuery):
    bucket: str | None = Field(default=None, description="day, week, month, quarter or year")
    tz: str | None = None


class AggregatesQuery(ChoroplethQuery, FormatQuery):
    group_by: str | None = Field(
        default=None,
        description="Comma-separated: segment, section, border, region, side, kind, direction",
    )
    bucket: str | None = Field(
        default=None, description="day, week (ISO, from Monday), month, quarter, year or none"
    )
    tz: str | None = Field(default=None, description="IANA zone of the buckets (default UTC)")
    bbox: str | None = Field(default=None, description="min_lon,min_lat,max_lon,max_lat")
    segment_id: str | None = None
    fill: str | None = Field(
        default=None, description="true: every bucket of the range, zeros included"
    )


def _bad(field: str, reason: str) -> InvalidParameter:
    return InvalidParameter(f"{field} {reason}", errors=[FieldError(field, reason)])


def parse_request(
    query: WindowQuery,
    *,
    index: SegmentIndex,
    kinds: tuple[str, ...],
    segment_id: str | None = None,
) -> AggregateRequest:
    """The aggregate ``query`` asks for (the parameters its route declares; those it does not
    are absent); InvalidParameter naming the first value that is wrong."""
    params: dict[str, str] = query.model_dump(exclude_none=True)
    group_by: tuple[str, ...] = ()
    if params.get("group_by"):
        group_by = tuple(k.strip() for k in params["group_by"].split(","))
        wrong = [k for k in group_by if k not in GROUP_KEYS]
        if wrong:
            raise _bad("group_by", f"{wrong[0]!r} is not one of: {', '.join(GROUP_KEYS)}")
        if len(set(group_by)) != len(group_by):
            raise _bad("group_by", "names a key twice")
    bucket = params.get("bucket") or None
    if bucket == "none":
        bucket = None
    if bucket is not None and bucket not in UNITS:
        raise _bad("bucket", f"must be one of: {', '.join(UNITS)}, none")
    try:
        zone = ZoneInfo(params.get("tz") or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise _bad("tz", "is not an IANA time zone, e.g. America/St_Johns") from error
    start, end = parse_time("start", params.get("start")), parse_time("end", params.get("end"))
    if start is not None and end is not None and end < start:
        raise _bad("end", "is before start")
    kind = params.get("kind")
    if kind is not None and kind not in kinds:
        raise _bad("kind", f"must be one of: {', '.join(kinds)}")
    fill = params.get("fill", "false").lower()
    if fill not in ("true", "false"):
        raise _bad("fill", "must be true or false")
    segment_ids = _segments(params, index, segment_id)
    return AggregateRequest(
        group_by=group_by,
        bucket=bucket,
        zone=zone,
        start=start,
        end=end,
        bbox=None if params.get("bbox") is None else parse_bbox(params["bbox"]),
        segment_ids=segment_ids,
        kind=kind,
        fill=fill == "true",
    )


def _segments(
    params: dict[str, str], index: SegmentIndex, fixed: str | None
) -> frozenset[str] | None:
    chosen: frozenset[str] | None = None
    segment_id = fixed or params.get("segment_id")
    if segment_id is not None:
        if segment_id not in index.by_id:
            raise _bad("segment_id", "is not a segment of the loaded border")
        chosen = frozenset({segment_id})
    border = params.get("border")
    if border is not None:
        ids = index.segment_ids_by_border.get(border)
        if ids is None:
            raise _bad(
                "border", f"must be one of: {', '.join(sorted(index.segment_ids_by_border))}"
            )
        chosen = ids if chosen is None else chosen & ids
    return chosen


def figure_fields(figure: Figure) -> dict[str, Any]:
    return {
        "reports": figure.reports,
        "people": figure.people,
        "groups": figure.groups,
        "people_est": figure.people_est,
        "suppressed": figure.suppressed,
    }


def columns(result: Aggregate) -> list[str]:
    names = [ROW_NAMES[k] for k in result.request.group_by]
    if any(k in ("segment", "section", "border", "region") for k in result.request.group_by):
        names.append("snap_status")
    if result.request.bucket is not None:
        names.append("period_start")
    return [*names, "reports", "people", "groups", "people_est", "suppressed"]


def public_fields(answer: PublicAnswer, settings: Settings) -> dict[str, Any]:
    """What a public answer counts and how: the release it comes from, its whole periods, the
    segments a box selected, and the rule every figure went through."""
    info = answer.release
    fields: dict[str, Any] = {
        "release": {
            "release_id": info.release_id,
            "cut_at": info.cut_at.isoformat(),
            "through": info.through.isoformat(),
            "delay_h": settings.public_delay_h,
            "min_count": settings.public_min_count,
            "round_to": settings.public_round_to,
        },
        "window": {
            "start": answer.window.start.isoformat(),
            "end": answer.window.end.isoformat(),
            "widened": answer.window.widened,
        },
    }
    if answer.selected_segments is not None:
        fields["selected_segments"] = list(answer.selected_segments)
    return fields


def hidden_text(meta: dict[str, Any]) -> str | None:
    """How CSV writes a hidden public figure (``<5``); None for an exact answer."""
    release = meta.get("release")
    return None if release is None else f"<{release['min_count']}"


def rows(result: Aggregate, *, hidden_as: str | None = None) -> list[dict[str, Any]]:
    # A big table repeats each group and period many times: work their fields out once.
    group_fields: dict[tuple[str | None, ...], dict[str, Any]] = {}
    starts = [local_start_text(b) for b in result.buckets]
    bucketed = result.request.bucket is not None
    out = []
    for group, bucket, figure in result.rows:
        fields = group_fields.get(group)
        if fields is None:
            fields = group_fields[group] = result.row_fields(group)
        row = {**fields, "period_start": starts[bucket]} if bucketed else dict(fields)
        row.update(figure_fields(figure))
        if hidden_as is not None and figure.suppressed:
            row["reports"] = row["people"] = hidden_as
        if hidden_as is not None and figure.groups is None:
            row["groups"] = row["people_est"] = hidden_as
        out.append(row)
    return out


def document(result: Aggregate) -> dict[str, Any]:
    req = result.request
    totals: dict[str, Any] = {"all": figure_fields(result.total)}
    if result.by_group and req.group_by:
        totals["by_group"] = [
            result.row_fields(group) | figure_fields(figure)
            for group, figure in result.by_group.items()
        ]
    if result.by_bucket:
        totals["by_period"] = [
            {"period_start": local_start_text(result.buckets[number])} | figure_fields(figure)
            for number, figure in sorted(result.by_bucket.items())
        ]
    return {
        "group_by": [ROW_NAMES[k] for k in req.group_by],
        "bucket": req.bucket,
        "tz": str(req.zone),
        "start": None if not result.buckets else result.buckets[0].start.isoformat(),
        "end": None if not result.buckets else result.buckets[-1].end.isoformat(),
        "suppress_below": result.suppress_below,
        "rows": rows(result),
        "totals": totals,
    }
