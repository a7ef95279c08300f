"""What a caller without an analyst key reads: figures of the public release, and nothing else.

This module takes a ``ReleaseReader`` (the release's cells), never the report store: no public
answer can be computed from the reports by accident (a layer contract checks the import).

A cut is loaded once per process into arrays (``ReleaseView``) and answers are sums over them:
the cost of a public request depends on the size of the release (cells of a day, segment, kind,
direction and side), not on the number of reports, and answers are kept per cut.
"""

from __future__ import annotations

import functools
import gc
import logging
import math
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

from service.domain.aggregation import SEGMENT_KEYS, Bucket, Unit
from service.domain.countries import ALPHA3_TO_ALPHA2
from service.domain.errors import FieldError, InvalidParameter, StoreUnavailable
from service.domain.figures import Figure
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

log = logging.getLogger("crossings")
IntArray = npt.NDArray[np.int64]
Group = tuple[str | None, ...]
_KEPT_ANSWERS = 128  # per cut: dashboards and map tiles ask the same few things again
_KEPT_ROWS = 5_000  # larger answers are not kept: memory, and they are rarely asked again


@dataclass(eq=False)
class ReleaseView:
    """One cut of the release as arrays: a row per cell, codes into each key's vocabulary."""

    info: ReleaseInfo
    days: IntArray  # date.toordinal()
    codes: dict[str, IntArray]  # segment_id, kind, direction, side -> code per cell
    vocab: dict[str, list[str | None]]
    reports: IntArray
    people: IntArray
    groups: IntArray
    people_est: IntArray
    answers: OrderedDict[Hashable, Any] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, info: ReleaseInfo, rows: Sequence[ReleaseRow]) -> ReleaseView:
        """Column by column (a cut at 1,000,000 reports holds ~550,000 cells), sorted by day so
        that a window is a slice."""
        days = np.fromiter((r.day.toordinal() for r in rows), dtype=np.int64, count=len(rows))
        order = np.argsort(days, kind="stable")
        codes: dict[str, IntArray] = {}
        vocab: dict[str, list[str | None]] = {}
        for name, at in (("segment_id", 1), ("kind", 2), ("direction", 3), ("side", 4)):
            # "" stands in for None while sorting: no value of these columns is empty.
            column = np.asarray([r[at] or "" for r in rows], dtype=object)
            known, inverse = np.unique(column, return_inverse=True)
            vocab[name] = [v or None for v in known.tolist()]
            codes[name] = inverse.reshape(-1).astype(np.int64)[order]
        return cls(
            info=info,
            days=days[order],
            codes=codes,
            vocab=vocab,
            reports=np.fromiter((r.reports for r in rows), np.int64, len(rows))[order],
            people=np.fromiter((r.people for r in rows), np.int64, len(rows))[order],
            groups=np.fromiter((r.groups for r in rows), np.int64, len(rows))[order],
            people_est=np.fromiter((r.people_est for r in rows), np.int64, len(rows))[order],
        )

    def kept(self, key: Hashable, make: Any) -> Any:
        """The answer for ``key``, made once per cut (the cut never changes); a large answer is
        made each time instead."""
        with self.lock:
            if key in self.answers:
                self.answers.move_to_end(key)
                return self.answers[key]
        answer = make()
        if len(getattr(getattr(answer, "aggregate", None), "rows", ())) > _KEPT_ROWS:
            return answer
        with self.lock:
            self.answers[key] = answer
            while len(self.answers) > _KEPT_ANSWERS:
                self.answers.popitem(last=False)
        return answer


class CurrentRelease:
    """The cut this process answers from. It looks for a newer cut at most every ``check_s``
    seconds and loads it in the background, answering from the one it has meanwhile (loading a
    cut of 1,000,000 reports takes seconds); only the very first load is waited for."""

    def __init__(self, reader: ReleaseReader, *, check_s: float) -> None:
        self._reader = reader
        self._check_s = check_s
        self._view: ReleaseView | None = None
        self._checked = -float("inf")
        self._lock = threading.Lock()
        self._loading: threading.Thread | None = None

    def view(self) -> ReleaseView:
        """The current cut; StoreUnavailable before the first cut is stored."""
        now = time.monotonic()
        with self._lock:
            current = self._view
            due = now - self._checked >= self._check_s
            if due:
                self._checked = now
        if current is None:
            with self._lock:  # the first load: every caller waits for it
                if self._view is None:
                    self._refresh()
                if self._view is None:
                    raise StoreUnavailable("the public release has not been cut yet")
                return self._view
        if due and self._reader.release_info() != current.info:
            self._load_in_background()
        return current

    def _load_in_background(self) -> None:
        with self._lock:
            if self._loading is not None and self._loading.is_alive():
                return
            self._loading = threading.Thread(target=self._refresh_quietly, daemon=True)
            self._loading.start()

    def _refresh_quietly(self) -> None:
        try:
            self._refresh()
        except Exception:  # the next look tries again; meanwhile the current cut answers
            log.exception("could not load the public release")

    def _refresh(self) -> None:
        cut = self._reader.read_release()
        if cut is not None and (self._view is None or self._view.info != cut[0]):
            self._view = ReleaseView.of(*cut)
            del cut  # its ~550,000 row tuples (at 1M reports) go before the collection below
            _settle_heap()

    def refresh_now(self) -> ReleaseView:
        """Load the stored cut now, waiting for it (after a cut this process made itself)."""
        with self._lock:
            self._refresh()
            self._checked = time.monotonic()
            if self._view is None:
                raise StoreUnavailable("the public release has not been cut yet")
            return self._view


def _settle_heap() -> None:
    """Collect once, then move what is alive now (the app, the border, this view) out of the
    collector's sight: a full collection otherwise walks all of it, and public answers build
    thousands of objects each, which at 1M reports set off full collections of 0.1-0.3 s in the
    middle of requests (bench/costliest.py, docs/performance-public.md). Objects frozen so are
    still freed when nothing refers to them (an old view, by reference counting); what was frozen
    last time and has become cyclic garbage since is thawed and collected here. Once per cut
    loaded (hourly), in the loading thread."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


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
    kinds: Sequence[str],
) -> PublicAnswer:
    """Reports and people by group and whole period, from the release, every figure through the
    rule. Rows are listed where their figure is shown (or every period of each listed group with
    ``fill``), groups where their total is shown: which rows are listed says no more than the
    figures do. Refuses, before counting, an answer of more than ``max_cells`` periods times
    possible groups."""
    check_public(request)
    key = ("aggregate", index.version, request, rule, max_cells, tuple(kinds))
    answer: PublicAnswer = view.kept(
        key,
        lambda: _aggregate(view, index, request, rule=rule, max_cells=max_cells, kinds=kinds),
    )
    return answer


def _buckets(unit: Unit, bucketed: bool, window: PublicWindow) -> list[Bucket]:
    starts = [] if window.is_empty else periods(unit, window) if bucketed else [window.start]
    ends = [*starts[1:], window.end][: len(starts)]
    return [
        Bucket(day_start(s) if bucketed else None, day_start(s), day_start(e))
        for s, e in zip(starts, ends, strict=True)
    ]


def _aggregate(
    view: ReleaseView,
    index: SegmentIndex,
    request: AggregateRequest,
    *,
    rule: PublicRule,
    max_cells: int,
    kinds: Sequence[str],
) -> PublicAnswer:
    unit: Unit = request.bucket or "day"
    window = public_window(unit, request.start, request.end, view.info)
    buckets = _buckets(unit, request.bucket is not None, window)
    n_buckets = max(len(buckets), 1)
    keys = [
        view.kept(
            ("key", index.version, key, tuple(kinds)),
            lambda k=key: _key_values(view, index, k, kinds),
        )
        for key in request.group_by
    ]
    possible = n_buckets * math.prod(len(values) for _, values in keys)
    if possible > max_cells:
        reason = (
            f"would have {possible:,} cells (periods x possible groups), more than {max_cells:,}: "
            "narrow the window, take a longer bucket or fewer group keys"
        )
        raise InvalidParameter(f"group_by {reason}", errors=[FieldError("group_by", reason)])
    selected = None if request.bbox is None else _segments_in_box(index, request.bbox)
    wanted = request.segment_ids
    if selected is not None:
        wanted = frozenset(selected) if wanted is None else wanted & frozenset(selected)
    # The window's cells are one slice of the rows (sorted by day); then the filters.
    lo, hi = np.searchsorted(view.days, [window.start.toordinal(), window.end.toordinal()])
    keep: npt.NDArray[np.bool_] | None = None
    if request.kind is not None:
        keep = _code_in(view, "kind", {request.kind}, lo, hi)
    if wanted is not None:
        chosen = _code_in(view, "segment_id", wanted, lo, hi)
        keep = chosen if keep is None else keep & chosen

    def taken(column: IntArray) -> IntArray:
        part = column[lo:hi]
        return part if keep is None else part[keep]

    days = taken(view.days)
    group = np.zeros(len(days), dtype=np.int64)
    for codes, values in keys:  # one mixed-radix number per cell for its group
        group = group * len(values) + taken(codes)
    if request.bucket in (None, "day"):
        bucket = days - window.start.toordinal() if request.bucket else np.zeros_like(days)
    else:
        ordinals = np.asarray([b.start.date().toordinal() for b in buckets], dtype=np.int64)
        bucket = np.searchsorted(ordinals, days, side="right") - 1
    n_groups = math.prod(len(values) for _, values in keys)
    flat = group * n_buckets + bucket
    size = n_groups * n_buckets
    reports, people, n_linked, people_est = (
        np.bincount(flat, weights=taken(column), minlength=size)
        .astype(np.int64)
        .reshape(n_groups, n_buckets)
        for column in (view.reports, view.people, view.groups, view.people_est)
    )
    # Margins from the exact counts, then through the same rule as every cell. Groups and
    # people_est go through it as a pair of their own: hidden below min_count groups (so
    # whenever the reports are, as a cell never has more groups than reports), else rounded.
    totals_hidden, totals_r, totals_p = publish_many(reports.sum(1), people.sum(1), rule)
    totals_g = publish_many(n_linked.sum(1), people_est.sum(1), rule)
    if request.all_segments and request.group_by == ("segment",):
        position = {v: i for i, v in enumerate(keys[0][1])}
        listed = [
            position[s.segment_id]
            for s in index.segments
            if wanted is None or s.segment_id in wanted
        ]
    else:
        listed = _in_order(np.flatnonzero(~totals_hidden), keys).tolist()
    groups = _decode_all(np.asarray(listed, dtype=np.int64), keys)
    hidden, shown_r, shown_p = publish_many(reports, people, rule)
    g_hidden, shown_g, shown_e = publish_many(n_linked, people_est, rule)
    every = request.fill or request.all_segments
    rows: list[AggregateRow] = []
    # Python lists, not numpy scalars, in the loop over cells: it runs once per listed cell.
    n = len(buckets)
    for g, cell_hidden, cell_r, cell_p, cell_gh, cell_g, cell_e in zip(
        groups,
        hidden[listed, :n].tolist(),
        shown_r[listed, :n].tolist(),
        shown_p[listed, :n].tolist(),
        g_hidden[listed, :n].tolist(),
        shown_g[listed, :n].tolist(),
        shown_e[listed, :n].tolist(),
        strict=True,
    ):
        for j in range(n):
            if cell_hidden[j]:
                if every:
                    rows.append(AggregateRow(g, j, HIDDEN_FIGURE))
            elif cell_gh[j]:
                rows.append(AggregateRow(g, j, Figure(cell_r[j], cell_p[j], False)))
            else:
                figure = Figure(cell_r[j], cell_p[j], False, cell_g[j], cell_e[j])
                rows.append(AggregateRow(g, j, figure))
    by_group = (
        {
            g: _figure((h, r, p), (gh, gg, ge))
            for g, h, r, p, gh, gg, ge in zip(
                groups,
                totals_hidden[listed].tolist(),
                totals_r[listed].tolist(),
                totals_p[listed].tolist(),
                *(a[listed].tolist() for a in totals_g),
                strict=True,
            )
        }
        if len(buckets) > 1
        else {}
    )
    b_r = publish_many(reports.sum(0), people.sum(0), rule)
    b_g = publish_many(n_linked.sum(0), people_est.sum(0), rule)
    by_bucket = {
        j: _figure(tuple(a[j] for a in b_r), tuple(a[j] for a in b_g)) for j in range(len(buckets))
    }
    t_r = publish_many(np.asarray([reports.sum()]), np.asarray([people.sum()]), rule)
    t_g = publish_many(np.asarray([n_linked.sum()]), np.asarray([people_est.sum()]), rule)
    aggregate = Aggregate(
        request=replace(request, start=day_start(window.start), end=day_start(window.end)),
        buckets=buckets,
        rows=rows,
        by_group=by_group,
        by_bucket=by_bucket if request.group_by and request.bucket else {},
        total=_figure(tuple(a[0] for a in t_r), tuple(a[0] for a in t_g)),
        suppress_below=rule.min_count,
    )
    return PublicAnswer(aggregate, view.info, window, selected)


HIDDEN_FIGURE = Figure(None, None, True)


def _figure(counted: tuple[Any, ...], grouped: tuple[Any, ...]) -> Figure:
    """A published figure from (hidden, reports, people) and (hidden, groups, people_est), each
    as publish_many made them."""
    hidden, reports, people = counted
    if hidden:
        return HIDDEN_FIGURE
    g_hidden, groups, people_est = grouped
    if g_hidden:
        return Figure(int(reports), int(people), False)
    return Figure(int(reports), int(people), False, int(groups), int(people_est))


def _code_in(
    view: ReleaseView, name: str, allowed: frozenset[str] | set[str], lo: int, hi: int
) -> npt.NDArray[np.bool_]:
    """Which rows lo..hi have one of the ``allowed`` values of ``name``."""
    wanted = np.zeros(len(view.vocab[name]) + 1, dtype=np.bool_)
    wanted[[i for i, v in enumerate(view.vocab[name]) if v in allowed]] = True
    return wanted[view.codes[name][lo:hi]]


def _segment_value(key: str, segment_id: str | None, index: SegmentIndex) -> str | None:
    if key == "segment":
        return segment_id
    segment = index.by_id.get(segment_id) if segment_id else None
    return None if segment is None else segment.value_of(key)


Key = tuple[IntArray, list[str | None]]


def _key_values(view: ReleaseView, index: SegmentIndex, key: str, kinds: Sequence[str]) -> Key:
    """For one group key: the code of each release row's value (as ``remap[row]``) and the
    values, in code order. What a key can take comes from the border and the configuration, not
    from the data, so that the possible groups (and the cap on them) say nothing of it; a segment
    the current border lacks (a cut from before a border load) counts as beyond reach."""
    if key in SEGMENT_KEYS:
        values = sorted(
            {_segment_value(key, s.segment_id, index) for s in index.segments}, key=_none_last
        )
        values.append(None)
        position = {v: i for i, v in enumerate(values)}
        per_code = [
            position.get(
                _segment_value(key, sid, index) if sid in index.by_id else None, len(values) - 1
            )
            for sid in view.vocab["segment_id"]
        ]
        remap = np.asarray(per_code, dtype=np.int64)
        return remap[view.codes["segment_id"]], values
    if key == "kind":
        fixed: list[str | None] = list(kinds)
    else:  # direction, side: the border's countries, or none
        countries = {c for s in index.segments for c in (s.left_country, s.right_country)}
        fixed = [*sorted(ALPHA3_TO_ALPHA2[c] for c in countries), None]
    values = fixed + [v for v in view.vocab[key] if v not in fixed]  # (kinds no longer configured)
    position = {v: i for i, v in enumerate(values)}
    remap = np.asarray([position[v] for v in view.vocab[key]], dtype=np.int64)
    return remap[view.codes[key]], values


def _digits(codes: IntArray, keys: Sequence[Key]) -> list[IntArray]:
    """Each group code's position in each key's values (the mixed-radix digits), key by key."""
    out: list[IntArray] = []
    rest = codes
    for _, values in reversed(keys):
        rest, at = np.divmod(rest, len(values))
        out.append(at)
    return out[::-1]


def _decode_all(codes: IntArray, keys: Sequence[Key]) -> list[Group]:
    """The groups of ``codes``: a tuple of each key's value per code."""
    if not keys:
        return [()] * len(codes)
    columns = [
        [values[i] for i in digits.tolist()]
        for digits, (_, values) in zip(_digits(codes, keys), keys, strict=True)
    ]
    return list(zip(*columns, strict=True))


def _in_order(codes: IntArray, keys: Sequence[Key]) -> IntArray:
    """``codes`` sorted by their groups' values (None last), key by key."""
    if not keys or len(codes) == 0:
        return codes
    ranks = []
    for digits, (_, values) in zip(_digits(codes, keys), keys, strict=True):
        order = sorted(range(len(values)), key=lambda i, v=values: _none_last(v[i]))  # type: ignore[misc]
        rank = np.empty(len(values), dtype=np.int64)
        rank[order] = np.arange(len(values))
        ranks.append(rank[digits])
    return codes[np.lexsort(ranks[::-1])]


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
    answer = public_aggregate(
        view, index, req, rule=rule, max_cells=len(index.segments) + 1, kinds=()
    )
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
        figure = figures.get(segment.segment_id) or HIDDEN_FIGURE
        count = (
            None
            if figure.suppressed
            else SegmentCount(
                figure.reports or 0, figure.people or 0, figure.groups, figure.people_est
            )
        )
        segments.append(TileSegment(segment, i + 1, count, hidden=figure.suppressed))
    return TileContent(tile=tile, segments=tuple(segments), reports=TileReports())


def public_extent(view: ReleaseView) -> tuple[datetime | None, datetime | None]:
    """The days the release holds, from ``public_since``, as instants: nothing finer is public."""
    if view.info.first is None:
        return None, None
    return day_start(public_since(view.info)), day_start(view.info.through)
