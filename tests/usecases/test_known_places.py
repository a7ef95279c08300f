"""The published crossing places of data/known_places.geojson, posted as reports to a store holding
the bundled border and read back: each is stored snapped to its listed segment, at its listed
distance (within 1 m) and on its listed side. Both stores: the border the store gives back is the
one snapped to."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from service.domain.reports import ReportDraft, SnapStatus
from service.settings import Settings
from service.usecases.submit_reports import submit_batch

PLACES: list[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[2] / "data" / "known_places.geojson").read_text()
)["features"]
ALPHA2 = {"CAN": "CA", "USA": "US", "MEX": "MX"}


def test_the_places_cover_both_borders() -> None:
    borders = [p["properties"]["nearest_segment_id"][:5] for p in PLACES]
    assert len(PLACES) == 15
    assert borders.count("MX-US") == 7 and borders.count("CA-US") == 8


@pytest.mark.parametrize("place", PLACES, ids=[p["properties"]["name"] for p in PLACES])
def test_a_known_place_is_stored_snapped_as_listed(
    store_with_border: tuple[str, Any, Any], place: dict[str, Any]
) -> None:
    url, store, index = store_with_border
    lon, lat = place["geometry"]["coordinates"]
    listed = place["properties"]
    now = datetime.now(UTC)
    draft = ReportDraft(uuid.uuid4(), now - timedelta(hours=1), lon, lat, 1, "crossing")

    [outcome] = submit_batch(store, index, [draft], settings=Settings(database_url=url), now=now)
    stored = store.get_report(draft.id)

    assert outcome.problem is None and stored is not None
    assert stored.snap.status is SnapStatus.SNAPPED
    assert stored.snap.segment_id == listed["nearest_segment_id"]
    assert stored.snap.distance_m == pytest.approx(listed["distance_to_segment_line_m"], abs=1.0)
    assert stored.snap.side == ALPHA2[listed["side_of_segment_line"]]
    assert stored.snap.chainage_km == pytest.approx(listed["chainage_km"], abs=0.002)
