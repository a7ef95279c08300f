"""Snap points without storing anything: what an app shows before a report is sent."""

from __future__ import annotations

from collections.abc import Sequence

from service.domain.reports import SnapResult
from service.domain.segments import SegmentIndex
from service.domain.snapping import snap


def snap_points(
    index: SegmentIndex, points: Sequence[tuple[float, float]], *, max_distance_m: float
) -> list[SnapResult]:
    return snap(
        [p[0] for p in points], [p[1] for p in points], index, max_distance_m=max_distance_m
    )
