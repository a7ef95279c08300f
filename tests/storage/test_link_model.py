"""The stores' u and crowding (issue #20, docs/linking.md "Model in the stores"), on both stores:
the day-shifted sample and the estimate are what a brute-force search over every stored report
gives; links are scored with the stored estimate; a new estimate rescores the proposed links
(reviewed ones keep their weights) and unlinks a busy place's unrelated reports."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.domain.link_groups import Edge, assign_groups
from service.domain.link_model import EstimatedModel, shift_days, shifted
from service.domain.linking import (
    DEFAULT_U,
    LevelShares,
    LinkRecord,
    LinkWindows,
    MatchModel,
    compare,
    estimate_crowding,
    estimate_u,
    is_candidate,
    match_weight,
)
from service.domain.links import LinkState
from service.domain.reports import Report
from service.settings import Settings
from service.storage import open_store
from service.storage.base import Store
from service.usecases.link_model import estimate_link_model, link_model_is_due, rescore_links
from tests.conftest import STORES, wipe_reports
from tests.factories import T0, snapped_to
from tests.storage.test_link_store import (
    NEIGHBOURS,
    SEGMENTS,
    arrivals,
    at,
    brute_force,
    every_link,
    groups_of,
    ingest,
    review,
    store_of_segments,
)


@pytest.fixture(scope="module", params=STORES)
def opened(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Store]]:
    with store_of_segments(request, tmp_path_factory, "linkmodel") as opened:
        yield opened


@pytest.fixture
def linked(opened: tuple[str, Store]) -> tuple[str, Store]:
    url, store = opened
    wipe_reports(url)  # the stored estimates too
    return url, store


NOW = datetime(2026, 12, 7, tzinfo=UTC)


# --- the sample and the estimate against brute force ----------------------------------------


@st.composite
def days_of_reports(draw: st.DrawFn) -> list[tuple[Report, str | None]]:
    """Reports over nine days on the three segments, from three keys (devices on one), so that
    day-shifted searches find some and miss some."""
    n = draw(st.integers(5, 40))
    out: list[tuple[Report, str | None]] = []
    for _ in range(n):
        out.append(
            (
                at(
                    lon=26.05 + draw(st.floats(-0.03, 0.03)),
                    lat=41.1 + draw(st.floats(-0.02, 0.02)),
                    observed_at=T0 + timedelta(minutes=draw(st.integers(0, 9 * 24 * 60))),
                    people_count=draw(st.integers(1, 6)),
                    direction=draw(st.sampled_from(("US", "CA", None))),
                    kind=draw(st.sampled_from(("crossing", "attempt"))),
                    device_id=draw(st.sampled_from((None, "phone-1", "phone-2"))),
                    snap=snapped_to(draw(st.sampled_from(("s-1", "s-2", "s-3")))),
                ),
                draw(st.sampled_from(("key-a", "key-b", "org"))),
            )
        )
    return out


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(reports=days_of_reports(), size_share=st.floats(0.05, 1.0), seed=st.integers(0, 2**40))
def test_the_estimate_is_the_brute_force_one_over_the_same_sample(
    opened: tuple[str, Store],
    reports: list[tuple[Report, str | None]],
    size_share: float,
    seed: int,
) -> None:
    url, store = opened
    wipe_reports(url)
    ingest(store, reports)
    records = {r.id: LinkRecord.from_report(r, key_id=k) for r, k in reports}
    size = max(1, round(size_share * len(reports)))
    sample = store.sample_unrelated(size, seed=seed)
    drawn = [s.report_id for s in sample.reports]
    assert len(drawn) == len(set(drawn)) <= size
    if url.startswith("sqlite"):  # PostGIS draws whole pages: fewer when the pages are few
        assert len(drawn) == min(size, len(records))
    first, last = shift_days(LinkWindows().max_hours)
    pairs, counts = [], []
    for s in sample.reports:
        assert first <= abs(s.days) <= last
        moved = shifted(records[s.report_id], s.days)
        found = {
            o.id
            for o in records.values()
            if is_candidate(moved, o, windows=LinkWindows(), neighbours=NEIGHBOURS)
        }
        assert s.candidates == len(found)
        assert s.segment_id == records[s.report_id].segment_id
        counts.append((s.segment_id, len(found)))
        if s.chosen is None:
            assert not found
            continue
        assert s.chosen in found
        assert s.levels == compare(moved, records[s.chosen])
        pairs.append((moved, records[s.chosen]))
    assert sample.pairs == len(pairs)
    found_model = estimate_link_model(
        store, sample_size=size, now=NOW, seed=seed, min_pairs=1
    ).model
    if not pairs:
        assert found_model is None and store.link_model() is None
        return
    assert found_model is not None
    stored = store.link_model()
    assert stored is not None and stored.version == found_model.version
    assert (stored.reports, stored.pairs) == (len(sample.reports), len(pairs))
    expected_u = estimate_u(pairs)
    for name in ("distance", "time", "people", "direction", "kind"):
        assert stored.u.of(name) == pytest.approx(expected_u.of(name))
    assert dict(stored.crowding) == pytest.approx(estimate_crowding(counts))


def test_too_few_unrelated_pairs_keep_the_defaults(linked: tuple[str, Store]) -> None:
    _, store = linked
    ingest(store, [(at(), "key-a"), (at(lon=26.051), "key-b")])
    found = estimate_link_model(store, sample_size=100, now=NOW, seed=1)
    assert found.model is None and store.link_model() is None
    (link,) = every_link(store)
    assert link.per_field["crowding"] == 0.0


def test_an_estimate_no_longer_wanted_after_sampling_is_not_stored(
    linked: tuple[str, Store],
) -> None:
    """Another server stored an estimate while this one sampled: this one stores none."""
    _, store = linked
    ingest(store, busy_place(T0, 3 * 24))  # three days: a day-shifted report finds others
    found = estimate_link_model(
        store, sample_size=100, now=NOW, seed=3, min_pairs=1, still_wanted=lambda: False
    )
    assert found.superseded and found.model is None and store.link_model() is None
    found = estimate_link_model(
        store, sample_size=100, now=NOW, seed=3, min_pairs=1, still_wanted=lambda: True
    )
    assert not found.superseded and found.model is not None
    assert store.link_model() is not None


# --- links scored with the stored estimate ---------------------------------------------------

# An estimate as a busy store would give: unrelated reports within 250 m are common, and s-1's
# reports have 16 unrelated candidates on average.
BUSY = EstimatedModel(
    version=0,
    estimated_at=NOW,
    border_version=0,
    reports=5_000,
    pairs=4_000,
    u=LevelShares(
        distance=(0.05, 0.15, 0.2, 0.2, 0.2, 0.2),
        time=DEFAULT_U.time,
        people=DEFAULT_U.people,
        direction=DEFAULT_U.direction,
        kind=DEFAULT_U.kind,
    ),
    crowding=MappingProxyType({"s-1": 16.0, "s-2": 2.0}),
)


def save(store: Store, model: EstimatedModel) -> EstimatedModel:
    from dataclasses import replace

    current = replace(model, border_version=store.border_version())
    return replace(current, version=store.save_link_model(current))


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(reports=arrivals(), seed=st.integers(0, 2**32 - 1))
def test_links_are_the_domain_rule_under_the_stored_estimate(
    opened: tuple[str, Store], reports: list[tuple[Report, str | None]], seed: int
) -> None:
    url, store = opened
    model = MatchModel(u=BUSY.u, crowding=BUSY.crowding)
    expected_links, expected_groups = brute_force(reports, model=model)
    ids = [r.id for r, _ in reports]
    shuffled = list(reports)
    random.Random(seed).shuffle(shuffled)
    for order in (reports, shuffled):
        wipe_reports(url)
        version = save(store, BUSY).version
        ingest(store, order)
        stored = every_link(store)
        assert {(k.a, k.b) for k in stored} == expected_links
        for k in stored:
            assert k.model_version == version
            assert k.per_field["crowding"] == model.crowding_bits(k.segment_a, k.segment_b)
        assert groups_of(store, ids) == expected_groups


def test_an_estimate_is_due_when_none_is_stored_or_the_latest_is_old(
    linked: tuple[str, Store],
) -> None:
    _, store = linked
    day = 86_400.0
    assert link_model_is_due(store, now=NOW, every_s=day)
    save(store, BUSY)  # estimated at NOW
    assert not link_model_is_due(store, now=NOW + timedelta(hours=23), every_s=day)
    assert link_model_is_due(store, now=NOW + timedelta(hours=24), every_s=day)


def test_an_estimate_under_another_border_is_not_used(linked: tuple[str, Store]) -> None:
    _, store = linked
    save(store, BUSY)
    store.replace_border(SEGMENTS, lambda lons, lats: [snapped_to("s-1") for _ in lons])
    assert link_model_is_due(store, now=NOW, every_s=86_400)
    a, b = at(), at(lon=26.051, observed_at=T0 + timedelta(minutes=20))
    ingest(store, [(a, "key-a"), (b, "key-b")])
    (link,) = every_link(store)
    assert link.model_version == 0 and link.per_field["crowding"] == 0.0


# --- a busy place ----------------------------------------------------------------------------


def busy_place(start: datetime, hours: int) -> list[tuple[Report, str | None]]:
    """A different group every 30 minutes at one place on s-1, each seen by one monitor (an
    organisation key's devices): no two of these reports are one group. The same reports, ids
    included, every run: the estimate drawn from them with a seed is then the same too."""
    rng = random.Random(start.toordinal())
    return [
        (
            at(
                id=uuid.UUID(int=start.toordinal() * 10_000 + n),
                lon=26.05 + rng.uniform(-0.006, 0.006),
                lat=41.1 + rng.uniform(-0.004, 0.004),
                observed_at=start + timedelta(minutes=30 * n),
                people_count=rng.randint(2, 3),
                direction="CA",
                device_id=f"phone-{n}",
            ),
            "org",
        )
        for n in range(2 * hours)
    ]


def quiet_pair() -> tuple[Report, Report]:
    """One group reported by two monitors where nothing else crosses (s-3)."""
    return (
        at(lon=27.05, snap=snapped_to("s-3")),
        at(lon=27.051, snap=snapped_to("s-3"), observed_at=T0 + timedelta(minutes=20)),
    )


def test_an_estimate_unlinks_a_busy_places_unrelated_reports(
    linked: tuple[str, Store],
) -> None:
    _, store = linked
    busy = busy_place(T0, 8 * 24)
    quiet = quiet_pair()
    ingest(store, [*busy, (quiet[0], "key-a"), (quiet[1], "key-b")])
    before = every_link(store)
    busy_ids = {r.id for r, _ in busy}
    unrelated = [k for k in before if k.a in busy_ids]
    assert len(unrelated) > 100  # DEFAULT_U and no crowding: the busy place links to itself
    reviewed = review(store, unrelated[0], LinkState.CONFIRMED)

    found = estimate_link_model(store, sample_size=10_000, now=NOW, seed=7, min_pairs=50)
    assert found.model is not None and found.model.crowding["s-1"] > 5
    assert rescore_links(store) == len(before) - 1  # every proposed link, none reviewed
    assert rescore_links(store) == 0

    after = {(k.a, k.b): k for k in every_link(store)}
    # Only the reviewed link is left at the busy place, its weights as they were.
    assert [k for k in after.values() if k.a in busy_ids] == [reviewed]
    quiet_link = after[min(quiet[0].id, quiet[1].id), max(quiet[0].id, quiet[1].id)]
    assert quiet_link.model_version == found.model.version
    assert quiet_link.state is LinkState.PROPOSED
    # Groups are again the rule over the stored links.
    ids = [*busy_ids, quiet[0].id, quiet[1].id]
    edges = [Edge(k.a, k.b, k.weight, int(k.state is LinkState.CONFIRMED)) for k in after.values()]
    assert groups_of(store, ids) == assign_groups(ids, edges)

    # A new day at the busy place: nothing links, under the estimate.
    ingest(store, busy_place(T0 + timedelta(days=9), 24))
    assert {(k.a, k.b) for k in every_link(store)} == set(after)


def test_rescored_weights_are_the_stored_levels_under_the_estimate(
    linked: tuple[str, Store],
) -> None:
    _, store = linked
    a, b = quiet_pair()
    c, d = at(), at(lon=26.0505, observed_at=T0 + timedelta(minutes=5), people_count=3)
    ingest(store, [(a, "key-a"), (b, "key-b"), (c, "key-a"), (d, "key-b")])
    model = save(store, BUSY)
    assert rescore_links(store) == 2
    matcher = MatchModel(u=BUSY.u, crowding=BUSY.crowding)
    for link in every_link(store):
        expected = match_weight(link.levels, matcher, segments=(link.segment_a, link.segment_b))
        assert link.model_version == model.version
        assert link.weight == pytest.approx(expected.total)
        assert link.per_field == pytest.approx(dict(expected.per_field))


def test_the_command_line_estimate_says_when_the_defaults_stay(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    store = open_store(Settings(database_url=url))
    try:
        store.replace_segments(SEGMENTS)
        ingest(store, busy_place(T0, 24))
    finally:
        store.close()
    monkeypatch.setenv("CROSSINGS_DATABASE_URL", url)
    assert main(["links", "estimate", "--sample", "500", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "sampled 48 reports" in out
    assert "fewer than 1,000 pairs: u and the crowding stay the defaults" in out
    for wrong in ("99", "200001", "many"):  # the setting's bounds: the draw's work is bounded
        with pytest.raises(SystemExit) as refused:
            main(["links", "estimate", "--sample", wrong])
        assert refused.value.code == 2 and "--sample" in capsys.readouterr().err


@pytest.mark.postgis
def test_migration_0020_adds_the_estimates_and_downgrades_cleanly() -> None:
    """0020 adds link_models and report_links.model_version; its downgrade leaves 0019's schema,
    and an upgrade brings them back."""
    import psycopg

    from alembic import command
    from service.storage.postgis.migrations import alembic_config, upgrade
    from tests.conftest import ADMIN_URL, _postgis_unavailable, fresh_postgis_database

    try:
        psycopg.connect(ADMIN_URL, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        _postgis_unavailable(str(error).strip())

    def schema(url: str) -> tuple[bool, bool]:
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
            tables = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'link_models'")
            columns = conn.execute(
                "SELECT count(*) FROM information_schema.columns"
                " WHERE table_name = 'report_links' AND column_name = 'model_version'"
            )
            return tables.fetchone() == (1,), columns.fetchone() == (1,)

    with fresh_postgis_database() as url:
        assert schema(url) == (True, True)
        command.downgrade(alembic_config(url), "0019")
        assert schema(url) == (False, False)
        upgrade(url, "head")
        assert schema(url) == (True, True)
