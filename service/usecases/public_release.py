"""What a caller without an analyst key reads: figures of the public release, and nothing else.

This module takes a ``ReleaseReader`` (the release's cells), never the report store: no public
answer can be computed from the reports by accident (a layer contract checks the import).

A cut is loaded once per process into arrays (``ReleaseView``) and answers are sums over them:
the cost of a public request depends on the size of the release (cells of a day, segment, kind,
direction and side), not on the number of reports, and answers are kept per cut.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from service.domain.aggregation import SEGMENT_KEYS, Bucket
from service.domain.errors import FieldError, InvalidParameter, StoreUnavailable
from service.domain.release import (
    PublicRule,
    PublicWindow,
    ReleaseInfo,
    ReleaseRow,
    day_start,
    periods,
    public_since,
    public_window,
    publish_many,
)
from service.domain.segments import SegmentIndex
from service.domain.suppression import Figure
from service.domain.tiles import (
    SegmentCount,
    TileAddress,
    TileContent,
    TileFilter,
    TileReports,
    TileSegment,
    segment_boxes,
    segments_in_tile,
)
from service.storage.base import ReleaseReader
from service.usecases.aggregates import Aggregate, AggregateRequest, AggregateRow

IntArray = npt.NDArray[np.int64]
Group = tuple[str | None, ...]
_KEPT_ANSWERS = 512  # per cut: dashboards and map tiles ask the same few things again


@dataclass(eq=False)
class ReleaseView:
    """One cut of the release as arrays: a row per cell, codes into each key's vocabulary."""

    info: ReleaseInfo
    days: IntArray  # date.toordinal()
    codes: dict[str, IntArray]  # segment_id, kind, direction, side -> code per cell
    vocab: dict[str, list[str | None]]
    reports: IntArray
    people: IntArray
    answers: OrderedDict[Hashable, Any] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, info: ReleaseInfo, rows: Sequence[ReleaseRow]) -> ReleaseView:
        codes: dict[str, IntArray] = {}
        vocab: dict[str, list[str | None]] = {}
        columns: dict[str, list[str | None]] = {
            "segment_id": [r.segment_id for r in rows],
            "kind": [r.kind for r in rows],
            "direction": [r.direction for r in rows],
            "side": [r.side for r in rows],
        }
        for name, values in columns.items():
            known = sorted(set(values), key=_none_last)
            at = {v: i for i, v in enumerate(known)}
            codes[name] = np.fromiter((at[v] for v in values), dtype=np.int64, count=len(rows))
            vocab[name] = known
        return cls(
            info=info,
            days=np.fromiter((r.day.toordinal() for r in rows), dtype=np.int64, count=len(rows)),
            codes=codes,
            vocab=vocab,
            reports=np.fromiter((r.reports for r in rows), dtype=np.int64, count=len(rows)),
            people=np.fromiter((r.people for r in rows), dtype=np.int64, count=len(rows)),
        )

    def kept(self, key: Hashable, make: Any) -> Any:
        """The answer for ``key``, made once per cut (the cut never changes)."""
        with self.lock:
            if key in self.answers:
                self.answers.move_to_end(key)
                return self.answers[key]
        answer = make()
        with self.lock:
            self.answers[key] = answer
            while len(self.answers) > _KEPT_ANSWERS:
                self.answers.popitem(last=False)
        return answer


class CurrentRelease:
    """The cut this process answers from: looked up at most every ``check_s`` seconds, loaded
    again only when another cut was stored."""

    def __init__(self, reader: ReleaseReader, *, check_s: float) -> None:
        self._reader = reader
        self._check_s = check_s
        self._view: ReleaseView | None = None
        self._checked = -float("inf")
        self._lock = threading.Lock()

    def view(self) -> ReleaseView:
        """The current cut; StoreUnavailable before the first cut is stored."""
        now = time.monotonic()
        with self._lock:
            if self._view is None or now - self._checked >= self._check_s:
                self._refresh()
                self._checked = now
            if self._view is None:
                raise StoreUnavailable("the public release has not been cut yet")
            return self._view

    def _refresh(self) -> None:
        info = self._reader.release_info()
        if info is None or (self._view is not None and self._view.info == info):
            return
        cut = self._reader.read_release()
        if cut is not None:
            self._view = ReleaseView.of(*cut)


@dataclass(frozen=True, slots=True)
class PublicAnswer:
    aggregate: Aggregate
    release: ReleaseInfo
    window: PublicWindow
    selected_segments: tuple[str, ...] | None  # what a bbox selected: whole segments


def _none_last(value: str | None) -> tuple[bool, str]:
    return (value is None, value or "")


def check_public(request: AggregateRequest) -> None:
    """Refuse what the release cannot answer: calendars other than UTC's."""
    if str(request.zone) != "UTC":
        reason = (
            "must be UTC without an analyst key: public figures are counted per UTC day, week, "
            "month, quarter and year"
        )
        raise InvalidParameter(f"tz {reason}", errors=[FieldError("tz", reason)])


def public_aggregate(
    view: ReleaseView,
    index: SegmentIndex,
    request: AggregateRequest,
    *,
    rule: PublicRule,
    max_cells: int,
) -> PublicAnswer:
    """Reports and people by group and whole period, from the release, every figure through the
    rule. Rows are listed where their figure is shown (or all with ``fill``): which rows are
    listed says no more than the figures do."""
    check_public(request)
    key = ("aggregate", index.version, request, rule, max_cells)
    answer: PublicAnswer = view.kept(
        key, lambda: _aggregate(view, index, request, rule=rule, max_cells=max_cells)
    )
    return answer


def _aggregate(
    view: ReleaseView,
    index: SegmentIndex,
    request: AggregateRequest,
    *,
    rule: PublicRule,
    max_cells: int,
) -> PublicAnswer:
    unit = request.bucket or "day"
    window = public_window(unit, request.start, request.end, view.info)
    starts = [] if window.is_empty else periods(unit, window) if request.bucket else [window.start]
    ends = [*starts[1:], window.end][: len(starts)]
    buckets = [
        Bucket(day_start(s) if request.bucket else None, day_start(s), day_start(e))
        for s, e in zip(starts, ends, strict=True)
    ]
    selected = None if request.bbox is None else _segments_in_box(index, request.bbox)
    wanted = request.segment_ids
    if selected is not None:
        wanted = frozenset(selected) if wanted is None else wanted & frozenset(selected)
    mask = (view.days >= window.start.toordinal()) & (view.days < window.end.toordinal())
    if request.kind is not None:
        mask &= _code_is(view, "kind", {request.kind})
    if wanted is not None:
        mask &= _code_is(view, "segment_id", wanted)
    at = np.flatnonzero(mask)
    group_codes, values = _group_codes(view, index, request.group_by, at)
    found, inverse = np.unique(group_codes, return_inverse=True)
    groups: list[Group] = [_decode(int(code), values) for code in found]
    n_buckets = max(len(buckets), 1)
    bucket_of = (
        np.searchsorted(
            np.asarray([s.toordinal() for s in starts], dtype=np.int64), view.days[at], side="right"
        )
        - 1
    )
    reports = np.zeros((len(groups), n_buckets), dtype=np.int64)
    people = np.zeros_like(reports)
    np.add.at(reports, (inverse.reshape(-1), bucket_of), view.reports[at])
    np.add.at(people, (inverse.reshape(-1), bucket_of), view.people[at])
    # Margins from the exact counts, then through the same rule as every cell.
    totals = _figures(reports.sum(axis=1), people.sum(axis=1), rule)
    group_totals = dict(zip(groups, totals, strict=True))
    if request.all_segments and request.group_by == ("segment",):
        listed: list[Group] = [
            (s.segment_id,) for s in index.segments if wanted is None or s.segment_id in wanted
        ]
    else:
        # Only groups with a shown total: a group listed for a hidden one would tell that it
        # holds a report.
        listed = sorted(
            (g for g, f in group_totals.items() if not f.suppressed),
            key=lambda g: tuple(_none_last(v) for v in g),
        )
    if request.fill and len(listed) * len(buckets) > max_cells:
        reason = (
            f"would list {len(listed) * len(buckets):,} rows, more than {max_cells:,}: "
            "narrow the window, take a longer bucket or fewer group keys"
        )
        raise InvalidParameter(f"fill {reason}", errors=[FieldError("fill", reason)])
    slot = {g: i for i, g in enumerate(groups)}
    taken = np.asarray([slot.get(g, -1) for g in listed], dtype=np.intp)
    cell_r = np.zeros((len(listed), n_buckets), dtype=np.int64)
    cell_p = np.zeros_like(cell_r)
    cell_r[taken >= 0] = reports[taken[taken >= 0]]
    cell_p[taken >= 0] = people[taken[taken >= 0]]
    cells = _figures(cell_r, cell_p, rule)
    rows: list[AggregateRow] = []
    for i, g in enumerate(listed):
        every = request.fill or request.all_segments
        rows.extend(
            AggregateRow(g, j, cells[i][j])
            for j in range(len(buckets))
            if every or not cells[i][j].suppressed
        )
    by_bucket = _figures(reports.sum(axis=0), people.sum(axis=0), rule)[: len(buckets)]
    total = _figures(np.asarray([reports.sum()]), np.asarray([people.sum()]), rule)[0]
    aggregate = Aggregate(
        request=replace(request, start=day_start(window.start), end=day_start(window.end)),
        buckets=buckets,
        rows=rows,
        by_group={g: group_totals.get(g, _hidden()) for g in listed} if len(buckets) > 1 else {},
        by_bucket=dict(enumerate(by_bucket)) if request.group_by else {},
        total=total,
        suppress_below=rule.min_count,
    )
    return PublicAnswer(aggregate, view.info, window, selected)


def _hidden() -> Figure:
    return Figure(None, None, True)


def _figures(reports: IntArray, people: IntArray, rule: PublicRule) -> Any:
    """Figures of the same shape as the counts, every one through the rule."""
    hidden, shown_r, shown_p = publish_many(reports, people, rule)
    flat = [
        _hidden() if h else Figure(int(r), int(p), False)
        for h, r, p in zip(hidden.ravel(), shown_r.ravel(), shown_p.ravel(), strict=True)
    ]
    if reports.ndim == 1:
        return flat
    width = reports.shape[1]
    return [flat[i * width : (i + 1) * width] for i in range(reports.shape[0])]


def _code_is(view: ReleaseView, name: str, allowed: frozenset[str] | set[str]) -> Any:
    codes = [i for i, v in enumerate(view.vocab[name]) if v in allowed]
    return np.isin(view.codes[name], np.asarray(codes, dtype=np.int64))


def _segment_value(key: str, segment_id: str | None, index: SegmentIndex) -> str | None:
    if key == "segment":
        return segment_id
    segment = index.by_id.get(segment_id) if segment_id else None
    if segment is None:
        return None
    if key == "section":
        return segment.section
    if key == "border":
        return segment.border
    return str(segment.properties.get("region_pair") or segment.section)


def _group_codes(
    view: ReleaseView, index: SegmentIndex, group_by: Sequence[str], at: npt.NDArray[np.intp]
) -> tuple[IntArray, list[list[str | None]]]:
    """One integer per cell for its group (mixed-radix over the keys' values), and each key's
    values in code order."""
    combined = np.zeros(len(at), dtype=np.int64)
    values: list[list[str | None]] = []
    for key in group_by:
        if key in SEGMENT_KEYS:
            per_segment = [_segment_value(key, s, index) for s in view.vocab["segment_id"]]
            known = sorted(set(per_segment), key=_none_last)
            position = {v: i for i, v in enumerate(known)}
            remap = np.asarray([position[v] for v in per_segment], dtype=np.int64)
            codes = remap[view.codes["segment_id"][at]] if len(remap) else combined
        else:
            known = view.vocab[key]
            codes = view.codes[key][at]
        combined = combined * max(len(known), 1) + codes
        values.append(known)
    return combined, values


def _decode(code: int, values: list[list[str | None]]) -> Group:
    out: list[str | None] = []
    for known in reversed(values):
        code, at = divmod(code, max(len(known), 1))
        out.append(known[at])
    return tuple(reversed(out))


@functools.lru_cache(maxsize=4)
def _segment_lines(index: SegmentIndex) -> Any:
    return np.asarray([shapely.LineString(s.coords) for s in index.segments])


def _segments_in_box(
    index: SegmentIndex, bbox: tuple[float, float, float, float]
) -> tuple[str, ...]:
    """The segments a box touches, whole: a public box never cuts a segment's figures."""
    hit = shapely.intersects(_segment_lines(index), shapely.box(*bbox))
    return tuple(s.segment_id for s, h in zip(index.segments, hit, strict=True) if h)


def segment_figures(
    view: ReleaseView,
    index: SegmentIndex,
    request: AggregateRequest,
    *,
    rule: PublicRule,
) -> tuple[dict[str, Figure], PublicWindow]:
    """Every segment's figure over the request's window (whole days), for maps and the
    choropleth."""
    req = replace(request, group_by=("segment",), bucket=None, all_segments=True, bbox=None)
    answer = public_aggregate(view, index, req, rule=rule, max_cells=len(index.segments) + 1)
    figures = {str(row.group[0]): row.figure for row in answer.aggregate.rows}
    return figures, answer.window


def public_tile(
    view: ReleaseView,
    index: SegmentIndex,
    tile: TileAddress,
    flt: TileFilter,
    *,
    rule: PublicRule,
) -> TileContent:
    """A tile for the public: the segments it crosses with their release figures over the
    filter's window in whole days; no report layer (a cluster of a few km would place reports
    finer than the release's segments)."""
    request = AggregateRequest(start=flt.start, end=flt.end, kind=flt.kind)
    figures, _ = segment_figures(view, index, request, rule=rule)
    segments = []
    for i in segments_in_tile(segment_boxes(index), tile):
        segment = index.segments[i]
        figure = figures.get(segment.segment_id) or _hidden()
        count = None if figure.suppressed else SegmentCount(figure.reports or 0, figure.people or 0)
        segments.append(TileSegment(segment, i + 1, count, hidden=figure.suppressed))
    return TileContent(tile=tile, segments=tuple(segments), reports=TileReports())


def public_extent(view: ReleaseView) -> tuple[datetime | None, datetime | None]:
    """The days the release holds, from ``public_since``, as instants: nothing finer is public."""
    if view.info.first is None:
        return None, None
    return day_start(public_since(view.info)), day_start(view.info.through)
