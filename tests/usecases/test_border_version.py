"""A border loaded by another process while a server runs (`crossings segments load`): no report
is stored snapped to the border it replaced, and the server takes the new one up without a
restart. Both stores."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from service.domain.reports import Report, ReportDraft, SnapStatus
from service.domain.segments import SegmentIndex
from service.domain.snapping import snap
from service.settings import Settings
from service.storage import open_store
from service.storage.base import BorderChanged, Store
from service.usecases.segments import stored_border
from service.usecases.submit_reports import submit_batch
from tests.factories import report_body
from tests.live import auth, live_key, run_cli, running_server

BUNDLED = Path(__file__).resolve().parents[2] / "data" / "border_segments.geojson"
ROXHAM = (-73.45, 45.01)  # on the Canada-US border, hundreds of km from Mexico


def _load(url: str, path: Path) -> None:
    result = run_cli(url, "segments", "load", str(path), text=True)
    assert result.returncode == 0, result.stderr


def _mexico_only(tmp_path: Path) -> Path:
    doc = json.loads(BUNDLED.read_text())
    doc["features"] = [f for f in doc["features"] if f["properties"]["border"] == "MX-US"]
    path = tmp_path / "mx.geojson"
    path.write_text(json.dumps(doc))
    return path


def _draft() -> ReportDraft:
    now = datetime.now(UTC)
    return ReportDraft(uuid.uuid4(), now - timedelta(hours=1), *ROXHAM, 3, "crossing", "US", None)


@pytest.fixture
def replaced(fresh_url: str, tmp_path: Path) -> Iterator[tuple[Store, SegmentIndex]]:
    """A store whose border was replaced by another process (the CLI), and the border it had."""
    _load(fresh_url, BUNDLED)
    store = open_store(Settings(database_url=fresh_url))
    try:
        old = stored_border(store)
        assert old.version == store.border_version()
        _load(fresh_url, _mexico_only(tmp_path))
        yield store, old
    finally:
        store.close()


def test_a_border_change_raises_the_version_and_stale_ingest_writes_nothing(
    replaced: tuple[Store, SegmentIndex],
) -> None:
    store, old = replaced
    assert store.border_version() > old.version  # type: ignore[operator]
    draft = _draft()
    (snapped,) = snap([draft.lon], [draft.lat], old, max_distance_m=25_000)
    assert snapped.status is SnapStatus.SNAPPED  # to the border that is gone
    with pytest.raises(BorderChanged):
        store.add_reports([Report(draft, datetime.now(UTC), snapped)], border_version=old.version)
    assert store.get_report(draft.id) is None


def test_ingest_with_a_replaced_border_snaps_again_to_the_stored_one(
    replaced: tuple[Store, SegmentIndex], fresh_url: str
) -> None:
    store, old = replaced
    taken_up: list[SegmentIndex] = []

    def reload() -> SegmentIndex:
        taken_up.append(stored_border(store))
        return taken_up[-1]

    draft = _draft()
    (outcome,) = submit_batch(
        store, old, [draft], settings=Settings(database_url=fresh_url), reload_border=reload
    )
    assert outcome.problem is None
    assert len(taken_up) == 1 and all(s.border == "MX-US" for s in taken_up[0].segments)
    stored = store.get_report(draft.id)
    assert stored is not None
    # Hundreds of km from the only border stored now: beyond reach, not on a Canadian segment.
    assert stored.snap.status is SnapStatus.BEYOND_MAX_DISTANCE
    assert stored.snap.segment_id is None


def test_a_running_server_takes_up_a_border_loaded_by_another_process(
    fresh_url: str, tmp_path: Path
) -> None:
    _load(fresh_url, BUNDLED)
    token = live_key(fresh_url, "admin")
    with (
        running_server(fresh_url, CROSSINGS_BORDER_CHECK_S="0.2") as base,
        httpx.Client(base_url=base, headers=auth(token), timeout=30) as client,
    ):

        def post() -> dict:
            response = client.post(
                "/v1/reports", json=report_body(lon=ROXHAM[0], lat=ROXHAM[1], direction="US")
            )
            assert response.status_code == 201, response.text
            return dict(response.json()["properties"])

        assert post()["snap_status"] == "snapped"
        _load(fresh_url, _mexico_only(tmp_path))
        # Ingest finds the change in its own transaction: at once, not at the next check.
        after = post()
        assert after["snap_status"] == "beyond_max_distance"
        assert after["segment_id"] is None
        # The read side takes it up within a few checks.
        deadline = time.monotonic() + 10
        while True:
            features = client.get("/v1/segments").json()["features"]
            if all(f["properties"]["border"] == "MX-US" for f in features):
                break
            assert time.monotonic() < deadline, "the server still serves the old border"
            time.sleep(0.2)
