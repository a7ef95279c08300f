"""numberMatched from the stores (store.count_matched): whenever a store gives a count, it is the
number of reports the query matches; with no filter it always gives one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.domain.queries import ReportQuery
from service.domain.reports import ReportDraft
from service.settings import Settings
from service.usecases.submit_reports import submit_batch

T0 = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def seeded(store_with_border: tuple[str, Any, Any]) -> tuple[Any, int]:
    """600 reports scattered along the border's first 60 segments (and a few far from it)."""
    url, store, index = store_with_border
    rng = np.random.default_rng(14)
    segments = index.segments[:60]
    drafts = []
    for i in range(600):
        lon, lat = segments[int(rng.integers(len(segments)))].coords[0]
        drafts.append(
            ReportDraft(
                id=uuid.UUID(int=i + 1, version=4),
                observed_at=T0 + timedelta(minutes=i),
                lon=round(float(lon + rng.normal(0, 0.3)), 6),
                lat=round(float(lat + rng.normal(0, 0.3)), 6),
                people_count=1,
                kind=("crossing", "attempt")[i % 2],
            )
        )
    submit_batch(store, index, drafts, settings=Settings(database_url=url))
    return store, len(drafts)


def _truth(store: Any, query: ReportQuery) -> int:
    return len(store.query_reports(query).reports)


def test_with_no_filter_the_count_is_every_report(seeded: tuple[Any, int]) -> None:
    store, total = seeded
    for query in (ReportQuery(limit=5), ReportQuery(limit=5, descending=True)):
        assert store.count_matched(query) == total
    assert store.count_matched(ReportQuery(kind="attempt")) is None
    assert store.count_matched(ReportQuery(posted_by="someone")) is None


_lon = st.floats(min_value=-130.0, max_value=-60.0, allow_nan=False)
_lat = st.floats(min_value=25.0, max_value=60.0, allow_nan=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lon0=_lon, lon1=_lon, lat0=_lat, lat1=_lat)
def test_a_box_count_when_given_is_exact(
    seeded: tuple[Any, int], lon0: float, lon1: float, lat0: float, lat1: float
) -> None:
    store, _ = seeded
    box = (min(lon0, lon1), min(lat0, lat1), max(lon0, lon1), max(lat0, lat1))
    query = ReportQuery(bbox=box, limit=10_000)
    counted = store.count_matched(query)
    if counted is not None:
        assert counted == _truth(store, query), box
    assert store.count_matched(ReportQuery(bbox=box, kind="crossing")) is None


def test_a_box_around_all_the_data_is_counted_on_postgis(
    seeded: tuple[Any, int], store_with_border: tuple[str, Any, Any]
) -> None:
    store, total = seeded
    counted = store.count_matched(ReportQuery(bbox=(-179.0, -80.0, 179.0, 80.0)))
    if store_with_border[0].startswith("postgresql"):
        assert counted == total
    else:
        assert counted is None  # SQLite counts only the unfiltered query
