"""`crossings export` / `crossings import`: reports move between stores exactly once by id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from service.api.schemas.reports import parse_report
from service.domain.reports import Report, ReportDraft
from service.settings import Settings
from service.storage import open_store
from service.usecases.segments import ensure_segments
from service.usecases.submit_reports import submit_batch
from service.usecases.transfer import export_reports
from tests.conftest import fresh_postgis_database
from tests.factories import report_body
from tests.live import run_cli


def _store_reports(url: str, count: int) -> list[Report]:
    settings = Settings(database_url=url)
    store = open_store(settings)
    try:
        index = ensure_segments(store, None)
        drafts = [parse_report(report_body(lon=-73.5172 + i * 1e-4)) for i in range(count)]
        assert all(isinstance(d, ReportDraft) for d in drafts)
        submit_batch(store, index, drafts, settings=settings)
        return list(export_reports(store))
    finally:
        store.close()


def _all(url: str) -> list[Report]:
    store = open_store(Settings(database_url=url))
    try:
        return list(export_reports(store))
    finally:
        store.close()


@pytest.fixture
def other_url(store_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty store of the other kind: reports travel SQLite -> PostGIS and back."""
    if store_url.startswith("sqlite"):
        with fresh_postgis_database() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'other.db'}"


def test_reports_move_to_the_other_store_exactly_once(
    fresh_url: str, other_url: str, tmp_path: Path
) -> None:
    source = _store_reports(fresh_url, 2_500)  # more than one export page and import batch
    dump = tmp_path / "reports.ndjson"
    assert run_cli(fresh_url, "export", "-o", str(dump)).returncode == 0
    assert len(dump.read_text().splitlines()) == 2_500
    first = run_cli(other_url, "import", str(dump))
    assert first.returncode == 0, first.stderr.decode()
    assert b"2500 created, 0 duplicate, 0 conflict, 0 invalid" in first.stdout
    again = run_cli(other_url, "import", str(dump))
    assert b"0 created, 2500 duplicate" in again.stdout
    assert _all(other_url) == source  # same drafts, received_at and (same border) snaps


def test_import_counts_conflicts_and_refused_lines_and_keeps_the_rest(
    fresh_url: str, other_url: str
) -> None:
    (kept,) = _store_reports(other_url, 1)
    exported = run_cli(fresh_url, "export")
    assert exported.stdout == b""  # an empty store exports nothing
    changed = json.loads(run_cli(other_url, "export").stdout)
    changed["properties"]["people_count"] += 1
    good = report_body()
    good_feature = {"type": "Feature", "geometry": good.pop("location"), "properties": good}
    lines = [json.dumps(changed), "{not json", json.dumps({"type": "Feature", "properties": {}}),
             json.dumps(good_feature)]  # fmt: skip
    result = run_cli(other_url, "import", "-", stdin="\n".join(lines).encode())
    assert result.returncode == 1
    assert b"1 created, 0 duplicate, 1 conflict, 2 invalid" in result.stdout
    assert b"line 2: not JSON" in result.stderr
    stored = {r.id: r for r in _all(other_url)}
    assert stored[kept.id] == kept
    assert UUID(good["id"]) in stored


def test_received_at_survives_the_move(fresh_url: str, other_url: str, tmp_path: Path) -> None:
    (original,) = _store_reports(fresh_url, 1)
    dump = tmp_path / "one.ndjson"
    run_cli(fresh_url, "export", "-o", str(dump))
    run_cli(other_url, "import", str(dump))
    (moved,) = _all(other_url)
    assert moved.received_at == original.received_at < datetime.now(UTC)
