"""What the brute-force recounts of the exactness tests share: a report's values of an
aggregate's grouping keys, read from the report and its segment as a person would."""

from __future__ import annotations

from typing import Any

from service.domain.reports import Report
from service.domain.segments import SegmentIndex


def group_of(report: Report, group_by: tuple[str, ...], index: SegmentIndex) -> tuple[Any, ...]:
    segment = index.by_id.get(report.snap.segment_id or "")
    values: list[Any] = []
    for key in group_by:
        if key == "segment":
            values.append(report.snap.segment_id)
        elif key in ("section", "border", "region"):
            values.append(None if segment is None else segment.value_of(key))
        elif key == "side":
            values.append(report.snap.side)
        elif key == "kind":
            values.append(report.draft.kind)
        else:
            values.append(report.draft.direction)
    return tuple(values)
