"""A filter (OGC API - Features Part 3, as the domain's tree) selects in each store exactly the
reports its Python evaluation selects, page after page, with and without a box, in either order.

The reports and filters are random (a small grammar over every filter node and property), their
values drawn from small pools so that comparisons hit, miss and meet nulls. Positions and
geometries lie on a grid of 1/64 degree: binary fractions, so a point on a polygon's edge is on
it exactly for GEOS (Python), PostGIS and Shapely alike.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.domain import filters as f
from service.domain.queries import ReportQuery
from service.domain.reports import Report, ReportDraft, SnapResult, SnapStatus
from tests.conftest import wipe_reports

T0 = datetime(2026, 1, 1, tzinfo=UTC)
IDS = [UUID(int=(k * 0x9E3779B97F4A7C15 % 2**64) << 64 | k) for k in range(48)]
TIMES = [T0 + timedelta(minutes=m, microseconds=u) for m in range(0, 50, 5) for u in (0, 1)]
POOLS: dict[str, list[Any]] = {
    "id": IDS,
    "observed_at": TIMES,
    "received_at": [T0 + timedelta(hours=h) for h in range(4)],
    "people_count": [1, 2, 3, 5, 8],
    "direction": ["CA", "US", None],
    "kind": ["crossing", "attempt", "evidence"],
    "accuracy_m": [None, 5.0, 12.5, 100.0],
    "notes": [None, "", "a", "ab", "a%b", "a_b", "x\\y", "it's", "Ab", "été"],
    "device_id": [None, "d1", "d2"],
    "snap_status": [s.value for s in SnapStatus],
    "segment_id": ["CA-US-0207", "CA-US-0208", None],
    "snap_distance_m": [0.0, 3.5, 250.0, None],
    "chainage_km": [5178.5, 10.0, None],
    "side": ["CA", "US", None],
}
EXTRA_VALUES: dict[str, list[Any]] = {  # values no report has, between and beyond theirs
    "people_count": [0, 4, 2.5, 9],
    "accuracy_m": [0.0, 12, 50.5],
    "kind": ["assistance", "a", "d"],
    "notes": ["b", "A"],
    "observed_at": [T0 - timedelta(days=1), T0 + timedelta(minutes=12)],
    "id": [UUID(int=0), UUID(int=2**128 - 1)],
}
STRINGS = [p for p, kind in f.FILTER_PROPERTIES.items() if kind == "string"]
PATTERNS = ["%", "a%", "%b", "a_b", "a\\%b", "a\\_b", "_", "x\\\\y", "it%", "A%", "%_%", "é%", ""]
GRID = 1 / 64
LON0, LAT0 = -73.5, 45.0


def _coordinate() -> st.SearchStrategy[tuple[float, float]]:
    steps = st.integers(0, 16)
    return st.tuples(steps.map(lambda k: LON0 + k * GRID), steps.map(lambda k: LAT0 + k * GRID))


@st.composite
def _report(draw: st.DrawFn, report_id: UUID) -> Report:
    lon, lat = draw(_coordinate())

    def pick(prop: str) -> Any:
        return draw(st.sampled_from(POOLS[prop]))

    draft = ReportDraft(
        id=report_id,
        observed_at=pick("observed_at"),
        lon=lon,
        lat=lat,
        people_count=pick("people_count"),
        kind=pick("kind"),
        direction=pick("direction"),
        accuracy_m=pick("accuracy_m"),
        notes=pick("notes"),
        device_id=pick("device_id"),
    )
    if draw(st.booleans()):
        snap = SnapResult(
            SnapStatus.SNAPPED, segment_id=pick("segment_id") or "CA-US-0208",
            distance_m=pick("snap_distance_m") or 1.0, snapped_lon=lon, snapped_lat=lat,
            chainage_km=pick("chainage_km"), side=pick("side"),
        )  # fmt: skip
    else:
        snap = SnapResult(SnapStatus.BEYOND_MAX_DISTANCE)
    return Report(draft=draft, received_at=pick("received_at"), snap=snap)


@st.composite
def _reports(draw: st.DrawFn) -> list[Report]:
    ids = draw(st.lists(st.sampled_from(IDS), unique=True, max_size=30))
    return [draw(_report(i)) for i in ids]


def _value(prop: str) -> st.SearchStrategy[Any]:
    return st.sampled_from([v for v in POOLS[prop] + EXTRA_VALUES.get(prop, []) if v is not None])


@st.composite
def _leaf(draw: st.DrawFn) -> f.Filter:
    props = list(f.FILTER_PROPERTIES)
    kind = draw(st.sampled_from(["compare", "in", "null", "like", "box", "polygon", "lines"]))
    if kind == "compare":
        prop = draw(st.sampled_from(props))
        return f.Compare(prop, draw(st.sampled_from(list(f.Op))), draw(_value(prop)))
    if kind == "in":
        prop = draw(st.sampled_from(props))
        return f.InList(prop, tuple(draw(st.lists(_value(prop), min_size=1, max_size=3))))
    if kind == "null":
        return f.IsNull(draw(st.sampled_from(props)))
    if kind == "like":
        return f.Like(draw(st.sampled_from(STRINGS)), draw(st.sampled_from(PATTERNS)))
    (x0, y0), (x1, y1) = draw(_coordinate()), draw(_coordinate())
    if kind == "box":
        return f.InBox(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    if kind == "lines":  # a line, some points, or both: intersected exactly on the grid
        line = shapely.LineString([(x0, y0), (x1, y1 + GRID)])
        points = shapely.MultiPoint(draw(st.lists(_coordinate(), min_size=1, max_size=3)))
        return f.Intersects(draw(st.sampled_from([line, points, line.union(points)])))
    polygon = shapely.Polygon([(x0, y0), (x1, y1), draw(_coordinate())])
    if not polygon.is_valid or polygon.area == 0:
        polygon = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1) + GRID, max(y0, y1) + GRID)
    return f.Intersects(polygon)


FILTERS = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda items: f.And(tuple(items))),
        st.lists(inner, min_size=1, max_size=3).map(lambda items: f.Or(tuple(items))),
        inner.map(f.Not),
    ),
    max_leaves=6,
)


def _box(corners: tuple[tuple[float, float], tuple[float, float]]) -> tuple[float, ...]:
    (x0, y0), (x1, y1) = corners
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


BOXES = st.one_of(st.none(), st.tuples(_coordinate(), _coordinate()).map(_box))


def _all_pages(store: Any, query: ReportQuery) -> list[UUID]:
    seen, after = [], None
    for _ in range(100):
        page = store.query_reports(ReportQuery(**{**_fields(query), "after": after}))
        seen += [r.id for r in page.reports]
        if page.next_key is None:
            return seen
        after = page.next_key
    raise AssertionError("more pages than reports")


def _fields(query: ReportQuery) -> dict[str, Any]:
    return {name: getattr(query, name) for name in query.__slots__}


def _in_box(report: Report, box: tuple[float, float, float, float] | None) -> bool:
    if box is None:
        return True
    return box[0] <= report.draft.lon <= box[2] and box[1] <= report.draft.lat <= box[3]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reports=_reports(),
    filters=st.lists(FILTERS, min_size=4, max_size=10),
    box=BOXES,
    limit=st.integers(1, 12),
    descending=st.booleans(),
)
def test_each_store_selects_what_the_python_evaluation_selects(
    store_with_border: tuple[str, Any, Any],
    reports: list[Report],
    filters: list[f.Filter],
    box: tuple[float, float, float, float] | None,
    limit: int,
    descending: bool,
) -> None:
    url, store, _ = store_with_border
    wipe_reports(url)
    store.add_reports(reports)
    ordered = sorted(reports, key=lambda r: (r.draft.observed_at, r.id), reverse=descending)
    for flt in filters:
        expected = [r.id for r in ordered if f.matches(flt, r) and _in_box(r, box)]
        query = ReportQuery(filter=flt, bbox=box, limit=limit, descending=descending)
        assert _all_pages(store, query) == expected, flt


def test_three_valued_logic_leaves_out_unknowns_as_sql_does() -> None:
    """The reference itself: NOT of a comparison with a null is not true."""
    report = Report(
        draft=ReportDraft(id=IDS[0], observed_at=T0, lon=LON0, lat=LAT0, people_count=1,
                          kind="crossing", direction=None),
        received_at=T0,
        snap=SnapResult(SnapStatus.BEYOND_MAX_DISTANCE),
    )  # fmt: skip
    is_ca = f.Compare("direction", f.Op.EQ, "CA")
    assert f.evaluate(is_ca, report) is None
    assert not f.matches(f.Not(is_ca), report)
    assert f.matches(f.Or((is_ca, f.IsNull("direction"))), report)
    assert f.evaluate(f.And((is_ca, f.IsNull("kind"))), report) is False
