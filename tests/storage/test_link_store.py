"""Linking in the stores (issue #20, docs/linking.md), on both, through their ingest: which
pairs are linked (symmetric, never within one monitor, inside the windows, exactly the domain's
rule), groups identical whatever the arrival order, reviews, and deletion and border changes
keeping links and groups consistent."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alembic import command
from service.domain.access import AuditEntry, Role
from service.domain.link_groups import Edge, assign_groups
from service.domain.linking import (
    LinkRecord,
    LinkWindows,
    MatchModel,
    is_candidate,
    same_source,
    score_candidates,
    segment_neighbours,
)
from service.domain.links import LinkQuery, LinkState, StoredLink
from service.domain.reports import Report
from service.settings import Settings
from service.storage import open_store
from service.storage.base import Store
from service.storage.postgis.migrations import alembic_config, upgrade
from tests.conftest import (
    STORES,
    fresh_postgis_database,
    libpq_url,
    module_store_url,
    wipe_reports,
)
from tests.factories import T0, make_report, make_segment, snapped_to

SEGMENTS = (
    make_segment("s-1", coords=((26.0, 41.0), (26.1, 41.2))),
    make_segment("s-2", coords=((26.1, 41.2), (26.2, 41.4))),  # adjacent to s-1
    make_segment("s-3", coords=((27.0, 41.0), (27.1, 41.2))),  # adjacent to neither
)
NEIGHBOURS = segment_neighbours(SEGMENTS)


@contextmanager
def store_of_segments(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[tuple[str, Store]]:
    """(url, open store) of the store ``request.param`` names, holding SEGMENTS."""
    with module_store_url(request, tmp_path_factory, name) as url:
        store = open_store(Settings(database_url=url))
        store.replace_segments(SEGMENTS)
        try:
            yield url, store
        finally:
            store.close()


@pytest.fixture(scope="module", params=STORES)
def opened(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Store]]:
    with store_of_segments(request, tmp_path_factory, "links") as opened:
        yield opened


@pytest.fixture
def linked(opened: tuple[str, Store]) -> tuple[str, Store]:
    url, store = opened
    wipe_reports(url)
    return url, store


def at(lon: float = 26.05, lat: float = 41.1, **overrides: Any) -> Report:
    return make_report(lon=lon, lat=lat, **overrides)


def ingest(store: Store, arrivals: Sequence[tuple[Report, str | None]]) -> None:
    """Store each (report, key) in turn, consecutive reports of one key as one batch; then link
    what the store left pending (PostGIS: what its folder thread does within 100 ms)."""
    batch: list[Report] = []
    key: str | None = None
    for report, k in arrivals:
        if batch and k != key:
            store.add_reports(batch, posted_by=key)
            batch = []
        batch.append(report)
        key = k
    if batch:
        store.add_reports(batch, posted_by=key)
    store.settle_links()


def every_link(store: Store, **filters: Any) -> list[StoredLink]:
    out: list[StoredLink] = []
    query = LinkQuery(limit=7, **filters)
    while True:
        page = store.list_links(query)
        out += page.links
        if page.next_key is None:
            return out
        query = LinkQuery(limit=7, after=page.next_key, **filters)


def groups_of(store: Store, ids: Sequence[UUID]) -> dict[UUID, UUID]:
    found = store.group_ids(list(ids))
    return {i: found.get(i, i) for i in ids}


def test_two_monitors_reporting_one_group_are_linked_and_grouped(
    linked: tuple[str, Store],
) -> None:
    _, store = linked
    a, b = at(), at(lon=26.051, observed_at=T0 + timedelta(minutes=20))
    ingest(store, [(a, "key-a"), (b, "key-b")])
    (link,) = every_link(store)
    assert (link.a, link.b) == tuple(sorted((a.id, b.id)))
    assert link.state is LinkState.PROPOSED
    assert link.segment_a == link.segment_b == "s-1"
    assert set(link.per_field) == {"distance", "time", "people", "direction", "kind", "crowding"}
    assert link.weight == pytest.approx(sum(link.per_field.values()))
    assert groups_of(store, [a.id, b.id]) == {a.id: min(a.id, b.id), b.id: min(a.id, b.id)}


def test_one_monitor_is_never_linked_to_itself(linked: tuple[str, Store]) -> None:
    _, store = linked
    a, b = at(), at()  # one key, one device
    c, d = at(device_id="phone-1"), at(device_id="phone-2")  # one organisation key, two devices
    ingest(store, [(a, "key-a"), (b, "key-a"), (c, "org"), (d, "org")])
    pairs = {(k.a, k.b) for k in every_link(store)}
    assert tuple(sorted((a.id, b.id))) not in pairs
    assert tuple(sorted((c.id, d.id))) in pairs


@pytest.mark.parametrize(
    ("other", "is_linked"),
    [
        ({"observed_at": T0 + timedelta(hours=5, minutes=59)}, True),
        ({"observed_at": T0 + timedelta(hours=6, minutes=1)}, False),
        ({"lon": 26.05 + 0.07}, False),  # ~5.9 km east
        ({"snap": snapped_to("s-2")}, True),  # adjacent segment
        ({"snap": snapped_to("s-3")}, False),  # a segment not adjacent
    ],
)
def test_links_stay_inside_the_windows(
    linked: tuple[str, Store], other: dict[str, Any], is_linked: bool
) -> None:
    _, store = linked
    # Equal on every field but the one tested, so that the weight is far above the threshold.
    ingest(store, [(at(), "key-a"), (at(**other), "key-b")])
    assert len(every_link(store)) == (1 if is_linked else 0)


# --- properties over generated reports ---------------------------------------------------------

KEYS = ("key-a", "key-b", "key-c", None)


@st.composite
def arrivals(draw: st.DrawFn) -> list[tuple[Report, str | None]]:
    n = draw(st.integers(2, 7))
    out = []
    for _ in range(n):
        segment = draw(st.sampled_from(("s-1", "s-1", "s-2", "s-3")))
        report = at(
            lon=26.05 + draw(st.floats(-0.03, 0.03)),
            lat=41.1 + draw(st.floats(-0.02, 0.02)),
            observed_at=T0 + timedelta(minutes=draw(st.integers(0, 480))),
            people_count=draw(st.integers(1, 6)),
            direction=draw(st.sampled_from(("US", "CA", None))),
            kind=draw(st.sampled_from(("crossing", "crossing", "attempt"))),
            device_id=draw(st.sampled_from((None, "phone-1", "phone-2"))),
            snap=snapped_to(segment),
        )
        out.append((report, draw(st.sampled_from(KEYS))))
    return out


def brute_force(
    reports: Sequence[tuple[Report, str | None]], *, model: MatchModel | None = None
) -> tuple[set[tuple[UUID, UUID]], dict[UUID, UUID]]:
    """The links and groups the domain's rule gives, scoring every pair (``model``: defaults,
    no reviews, no estimate)."""
    records = [LinkRecord.from_report(r, key_id=k) for r, k in reports]
    model, windows = model or MatchModel(threshold=1.0), LinkWindows()
    links = {}
    for i, record in enumerate(records):
        for link in score_candidates(
            record, records[:i], model=model, windows=windows, neighbours=NEIGHBOURS
        ):
            if link.is_match:
                links[(link.a, link.b)] = link.weight.total
    edges = [Edge(a, b, w) for (a, b), w in links.items()]
    return set(links), assign_groups([r.id for r in records], edges)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(reports=arrivals(), seed=st.integers(0, 2**32 - 1))
def test_links_and_groups_are_the_domain_rule_whatever_the_arrival_order(
    opened: tuple[str, Store], reports: list[tuple[Report, str | None]], seed: int
) -> None:
    url, store = opened
    expected_links, expected_groups = brute_force(reports)
    ids = [r.id for r, _ in reports]
    by_id = {r.id: LinkRecord.from_report(r, key_id=k) for r, k in reports}
    shuffled = list(reports)
    random.Random(seed).shuffle(shuffled)  # late reports included: arrival is not observed order
    for order in (reports, shuffled):
        wipe_reports(url)
        ingest(store, order)
        stored = every_link(store)
        assert {(k.a, k.b) for k in stored} == expected_links
        for k in stored:
            assert k.a < k.b
            a, b = by_id[k.a], by_id[k.b]
            assert not same_source(a, b) and not same_source(b, a)
            assert is_candidate(a, b, windows=LinkWindows(), neighbours=NEIGHBOURS)
        assert groups_of(store, ids) == expected_groups


def stored_state(url: str, store: Store, ids: Sequence[UUID]) -> tuple[Any, ...]:
    """Everything linking writes: the links (pair, levels, fields' terms, weight, state), each
    report's group, and the group count tables' rows."""
    links = sorted(
        (k.a, k.b, k.levels, sorted(k.per_field.items()), k.weight, k.state)
        for k in every_link(store)
    )
    tables = []
    for table in ("group_days", "group_months"):
        query = f"SELECT * FROM {table}"
        if url.startswith("sqlite"):
            with sqlite3.connect(url.removeprefix("sqlite:///")) as lite:
                rows = lite.execute(query).fetchall()
            lite.close()
        else:
            with psycopg.connect(libpq_url(url)) as conn:
                rows = conn.execute(query).fetchall()
        tables.append(sorted(rows, key=repr))
    return links, groups_of(store, ids), tables


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(reports=arrivals())
def test_links_groups_and_counts_are_the_same_in_batches_and_one_by_one(
    opened: tuple[str, Store], reports: list[tuple[Report, str | None]]
) -> None:
    url, store = opened
    ids = [r.id for r, _ in reports]
    # Each key's reports in one call (the largest batches ingest takes: one key a call).
    wipe_reports(url)
    for name in sorted({k or "" for _, k in reports}):
        ingest(store, [(r, k) for r, k in reports if (k or "") == name])
    batched = stored_state(url, store, ids)
    # Every report alone, in generation order.
    wipe_reports(url)
    for report, k in reports:
        ingest(store, [(report, k)])
    assert stored_state(url, store, ids) == batched


# --- reviews, deletion, border changes ---------------------------------------------------------


def clique(store: Store) -> tuple[Report, Report, Report]:
    """Three monitors' reports of one group: every two linked, one group."""
    a = at()
    b = at(lon=26.051, observed_at=T0 + timedelta(minutes=10))
    c = at(lon=26.052, observed_at=T0 + timedelta(minutes=20))
    ingest(store, [(a, "key-a"), (b, "key-b"), (c, "key-c")])
    assert len(every_link(store)) == 3
    assert len(set(groups_of(store, [a.id, b.id, c.id]).values())) == 1
    return a, b, c


def link_between(store: Store, x: Report, y: Report) -> StoredLink:
    (found,) = [k for k in every_link(store) if {k.a, k.b} == {x.id, y.id}]
    return found


def review(store: Store, link: StoredLink, state: LinkState) -> StoredLink:
    entry = AuditEntry(datetime.now(UTC), "analyst-1", Role.ANALYST, f"link.{state}", {})
    reviewed = store.review_link(
        link.id, state=state, reviewed_by="analyst-1", at=datetime.now(UTC), audit=entry
    )
    assert reviewed is not None
    return reviewed


def test_a_rejected_link_breaks_the_group_and_is_audited(linked: tuple[str, Store]) -> None:
    _, store = linked
    a, b, c = clique(store)
    since = datetime.now(UTC) - timedelta(seconds=1)
    reviewed = review(store, link_between(store, a, b), LinkState.REJECTED)
    assert reviewed.state is LinkState.REJECTED
    assert reviewed.reviewed_by == "analyst-1" and reviewed.reviewed_at is not None
    groups = groups_of(store, [a.id, b.id, c.id])
    assert groups[a.id] != groups[b.id]  # a and b are never one group again
    assert len(set(groups.values())) == 2  # c stays with one of them
    assert [e.action for e in store.list_audit(since)][-1:] == ["link.rejected"]
    assert [k.id for k in every_link(store, state=LinkState.REJECTED)] == [reviewed.id]


def test_an_unknown_link_is_not_reviewed(linked: tuple[str, Store]) -> None:
    _, store = linked
    since = datetime.now(UTC) - timedelta(seconds=1)
    entry = AuditEntry(datetime.now(UTC), "analyst-1", Role.ANALYST, "link.of-nothing", {})
    found = store.review_link(
        UUID(int=7), state=LinkState.CONFIRMED, reviewed_by="x", at=datetime.now(UTC), audit=entry
    )
    assert found is None
    assert "link.of-nothing" not in [e.action for e in store.list_audit(since)]


def test_a_rejected_pair_is_never_proposed_again(linked: tuple[str, Store]) -> None:
    _, store = linked
    a, b = at(), at(lon=26.051)
    ingest(store, [(a, "key-a"), (b, "key-b")])
    rejected = review(store, every_link(store)[0], LinkState.REJECTED)
    confirmed_pair = at(lon=26.3), at(lon=26.301)
    ingest(store, [(confirmed_pair[0], "key-a"), (confirmed_pair[1], "key-b")])
    confirmed = review(store, link_between(store, *confirmed_pair), LinkState.CONFIRMED)
    # A border change links every report again: reviews stay, the rejected pair stays apart.
    store.replace_border(SEGMENTS, lambda lons, lats: [snapped_to("s-1") for _ in lons])
    store.settle_links()
    states = {k.id: k.state for k in every_link(store)}
    assert states == {rejected.id: LinkState.REJECTED, confirmed.id: LinkState.CONFIRMED}
    assert groups_of(store, [a.id, b.id]) == {a.id: a.id, b.id: b.id}
    pair = groups_of(store, [r.id for r in confirmed_pair])
    assert len(set(pair.values())) == 1


def test_filters_of_the_link_list(linked: tuple[str, Store]) -> None:
    _, store = linked
    a, b = at(), at(lon=26.051)
    c, d = at(snap=snapped_to("s-3")), at(lon=26.051, snap=snapped_to("s-3"))
    ingest(store, [(a, "key-a"), (b, "key-b"), (c, "key-a"), (d, "key-b")])
    assert len(every_link(store)) == 2
    (on_s3,) = every_link(store, segment_id="s-3")
    assert {on_s3.a, on_s3.b} == {c.id, d.id}
    review(store, on_s3, LinkState.CONFIRMED)
    assert [k.id for k in every_link(store, state=LinkState.CONFIRMED)] == [on_s3.id]
    assert len(every_link(store, state=LinkState.PROPOSED)) == 1
    assert every_link(store, since=datetime.now(UTC) + timedelta(hours=1)) == []


def test_deleting_a_report_takes_its_links_and_regroups_the_rest(
    linked: tuple[str, Store],
) -> None:
    _, store = linked
    a, b, c = clique(store)
    assert store.delete_report(b.id)
    assert {(k.a, k.b) for k in every_link(store)} == {tuple(sorted((a.id, c.id)))}
    assert groups_of(store, [a.id, c.id]) == {a.id: min(a.id, c.id), c.id: min(a.id, c.id)}
    assert store.group_ids([b.id]) == {}
    assert store.delete_report(a.id)
    assert every_link(store) == []
    assert store.group_ids([a.id, c.id]) == {}


def test_a_late_report_joins_the_group_it_belongs_to(linked: tuple[str, Store]) -> None:
    _, store = linked
    a, b, c = at(), at(lon=26.051), at(lon=26.052)
    ingest(store, [(b, "key-b"), (c, "key-c")])
    ingest(store, [(a, "key-a")])  # arrives last, observed with the others
    assert len(set(groups_of(store, [a.id, b.id, c.id]).values())) == 1
    assert groups_of(store, [a.id])[a.id] == min(a.id, b.id, c.id)


@pytest.mark.postgis
def test_an_upgraded_postgis_database_links_the_reports_it_held() -> None:
    """Migration 0015 queues the reports already stored; the linker links them; its downgrade
    leaves the database at 0014, where reports are stored as before."""
    with fresh_postgis_database("0014") as url:
        a, b = at(), at(lon=26.051)
        store = open_store(Settings(database_url=url, rollup_fold_interval_ms=0))
        try:
            store.replace_segments(SEGMENTS)
            store.add_reports([a], posted_by="key-a")
            store.add_reports([b], posted_by="key-b")
        finally:
            store.close()
        upgrade(url, "head")
        store = open_store(Settings(database_url=url, rollup_fold_interval_ms=0))
        try:
            assert store.settle_links() == 2
            assert len(every_link(store)) == 1
        finally:
            store.close()
        command.downgrade(alembic_config(url), "0014")
        with psycopg.connect(libpq_url(url)) as conn:
            tables = {t for (t,) in conn.execute("SELECT tablename FROM pg_tables")}
        assert not tables & {"report_links", "report_groups", "link_pending"}


def _linked_world(store: Store) -> None:
    """Three crossings seen by two or three monitors across two days, and a release cut."""
    arrivals = []
    for n in range(12):
        crossing, monitor = divmod(n, 3)
        report = at(
            lon=26.05 + 0.0005 * monitor,
            observed_at=T0 + timedelta(hours=20 * crossing, minutes=10 * monitor),
            people_count=2 + monitor % 2,
            device_id=f"phone-{monitor}",
        )
        arrivals.append((report, f"key-{monitor}"))
    ingest(store, arrivals)
    store.cut_release(T0.date() + timedelta(days=2), T0 + timedelta(days=3))


_GROUP_TABLES = {
    "group_days": "SELECT * FROM group_days ORDER BY 1, 2, 3, 4, 5",
    "group_months": "SELECT * FROM group_months ORDER BY 1, 2, 3, 4, 5",
    "release_cells": "SELECT day, segment_id, kind, direction, side, reports, people, groups,"
    " people_est FROM release_cells ORDER BY 1, 2, 3, 4, 5",
}


@pytest.mark.postgis
def test_migration_0017_counts_what_the_store_keeps() -> None:
    """0017 fills group_days, group_months and the release's new columns from the groups a
    database held: the same rows the store keeps as it links (downgraded to 0016, upgraded
    again)."""
    with fresh_postgis_database() as url:
        store = open_store(Settings(database_url=url, rollup_fold_interval_ms=0))
        try:
            store.replace_segments(SEGMENTS)
            _linked_world(store)
        finally:
            store.close()
        with psycopg.connect(libpq_url(url)) as conn:
            kept = {t: conn.execute(q).fetchall() for t, q in _GROUP_TABLES.items()}
        assert kept["group_days"] and kept["group_months"]
        assert any(row[-2] < row[-4] for row in kept["release_cells"])  # groups < reports
        command.downgrade(alembic_config(url), "0016")
        upgrade(url, "head")
        with psycopg.connect(libpq_url(url)) as conn:
            again = {t: conn.execute(q).fetchall() for t, q in _GROUP_TABLES.items()}
        assert again == kept


def test_sqlite_group_counts_step_counts_what_the_store_keeps(tmp_path: Any) -> None:
    """The SQLite step fills group_days, group_months and the release's new columns from the
    groups a file held: the same rows the store keeps as it links."""
    import sqlite3

    from service.storage.sqlite.schema import _V11_GROUP_COUNTS, MIGRATIONS, migrate

    step = MIGRATIONS.index(_V11_GROUP_COUNTS) + 1

    path = tmp_path / "step12.db"
    store = open_store(Settings(database_url=f"sqlite:///{path}"))
    try:
        store.replace_segments(SEGMENTS)
        _linked_world(store)
    finally:
        store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        kept = {t: conn.execute(q).fetchall() for t, q in _GROUP_TABLES.items()}
        assert kept["group_days"] and kept["group_months"]
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DROP TABLE group_days")
        conn.execute("DROP TABLE group_months")
        conn.execute("ALTER TABLE release_cells DROP COLUMN groups")
        conn.execute("ALTER TABLE release_cells DROP COLUMN people_est")
        conn.execute(f"PRAGMA user_version = {step - 1}")
        assert migrate(conn, steps=MIGRATIONS[:step]) == step
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
        conn.execute("COMMIT")
        assert {t: conn.execute(q).fetchall() for t, q in _GROUP_TABLES.items()} == kept
    finally:
        conn.close()
