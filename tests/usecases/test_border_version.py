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

from service.domain.errors import BorderChanged, StoreUnavailable
from service.domain.reports import Report, ReportDraft, SnapStatus
from service.domain.segments import SegmentIndex
from service.domain.snapping import snap
from service.settings import Settings
from service.storage import open_store
from service.storage.base import Store
from service.usecases.segments import stored_border
from service.usecases.submit_reports import BORDER_RETRIES, submit_batch
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

    def reload(stale: SegmentIndex) -> SegmentIndex:
        assert stale is old
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


def test_a_border_that_keeps_changing_refuses_the_batch_as_unavailable(
    replaced: tuple[Store, SegmentIndex], fresh_url: str
) -> None:
    """Each reload finds the border replaced again (here: it hands back the replaced one): after
    BORDER_RETRIES attempts the batch is refused with a 503's error, and nothing is stored."""
    store, old = replaced
    calls: list[SegmentIndex] = []

    def reload(stale: SegmentIndex) -> SegmentIndex:
        calls.append(stale)
        return old

    draft = _draft()
    with pytest.raises(StoreUnavailable):
        submit_batch(
            store, old, [draft], settings=Settings(database_url=fresh_url), reload_border=reload
        )
    assert len(calls) == BORDER_RETRIES - 1
    assert store.get_report(draft.id) is None


def test_a_running_server_takes_up_a_border_loaded_by_another_process(
    fresh_url: str, tmp_path: Path
) -> None:
    _load(fresh_url, BUNDLED)
    token = live_key(fresh_url, "admin")
    with (
        running_server(fresh_url, CROSSINGS_BORDER_CHECK_S="0.2") as base,
        httpx.Client(base_url=base, headers=auth(token), timeout=30) as client,
    ):
        body = report_body(lon=ROXHAM[0], lat=ROXHAM[1], direction="US")
        response = client.post("/v1/reports", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["properties"]["snap_status"] == "snapped"
        _load(fresh_url, _mexico_only(tmp_path))
        # Nothing is posted now: only the server's own check can take the new border up.
        deadline = time.monotonic() + 10
        while True:
            borders = {
                f["properties"]["border"] for f in client.get("/v1/segments").json()["features"]
            }
            if borders == {"MX-US"}:
                break
            assert time.monotonic() < deadline, f"the server still serves {sorted(borders)}"
            time.sleep(0.2)
        # The report stored before the load was re-snapped by it: beyond reach of Mexico.
        stored = client.get(f"/v1/reports/{body['id']}")
        assert stored.status_code == 200, stored.text
        assert stored.json()["properties"]["snap_status"] == "beyond_max_distance"
