"""Linking reports of one crossing (issue #20): the candidate rule, the match weight, the groups.

Reports are drawn around Roxham Road within ~8 km and ~10 h, on a chain of five made-up
segments, so that every rule is met and broken often.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.geodesy import GEOD
from service.domain.link_groups import Edge, GroupBook, assign_groups, group_facts, members_of
from service.domain.linking import (
    DEFAULT_M,
    DEFAULT_U,
    FIELDS,
    LevelShares,
    Link,
    LinkRecord,
    LinkWindows,
    MatchModel,
    compare,
    estimate_crowding,
    estimate_m,
    estimate_u,
    is_candidate,
    match_weight,
    matches_of_many,
    same_source,
    score_candidates,
    segment_neighbours,
)
from service.domain.reports import Report, ReportDraft, SnapResult, SnapStatus
from service.domain.segments import SegmentIndex

T0 = datetime(2026, 11, 28, 12, tzinfo=UTC)
WINDOWS = LinkWindows(max_hours=6.0, max_km=5.0)
SEGMENTS = ("S0", "S1", "S2", "S3", "S4")
NEIGHBOURS = {
    s: frozenset(SEGMENTS[k] for k in (i - 1, i + 1) if 0 <= k < len(SEGMENTS))
    for i, s in enumerate(SEGMENTS)
}
# S2 is busy: its pairs lose log2(4) = 2 bits (the crowding term is exercised everywhere).
MODEL = MatchModel(threshold=2.0, crowding={"S2": 4.0, "S3": 0.5})


@st.composite
def records(draw: st.DrawFn, n_max: int = 10) -> list[LinkRecord]:
    n = draw(st.integers(0, n_max))
    ids = draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))
    out = []
    for i in ids:
        # A few places so that pairs are often within reach, sometimes just beyond it.
        lon = -73.5172 + draw(st.sampled_from([0.0, 0.002, 0.006, 0.03, 0.07]))
        lat = 45.0071 + draw(st.sampled_from([0.0, 0.001, 0.004, 0.02]))
        out.append(
            LinkRecord(
                id=UUID(int=i),
                observed_at=T0 + timedelta(minutes=draw(st.sampled_from([0, 10, 50, 200, 360, 361, 600]))),
                lon=lon,
                lat=lat,
                segment_id=draw(st.sampled_from([*SEGMENTS, None])),
                people_count=draw(st.integers(1, 6)),
                kind=draw(st.sampled_from(["crossing", "attempt"])),
                direction=draw(st.sampled_from(["CA", "US", None])),
                key_id=draw(st.sampled_from(["k1", "k2", None])),
                device_id=draw(st.sampled_from(["d1", "d2", None])),
            )
        )  # fmt: skip
    return out


def pairs(rs: Sequence[LinkRecord]) -> list[tuple[LinkRecord, LinkRecord]]:
    return [(a, b) for i, a in enumerate(rs) for b in rs[i + 1 :]]


def links_of(rs: Sequence[LinkRecord], model: MatchModel = MODEL) -> list[Link]:
    """Every scored candidate pair, each once (scored when its later record arrives)."""
    out: list[Link] = []
    for i, r in enumerate(rs):
        out += score_candidates(r, rs[:i], model=model, windows=WINDOWS, neighbours=NEIGHBOURS)
    return out


def edges_of(links: Sequence[Link]) -> list[Edge[UUID]]:
    return [Edge(lk.a, lk.b, lk.weight.total) for lk in links if lk.is_match]


# --- the candidate rule and the weight ----------------------------------------------------------


@given(records(n_max=6))
def test_candidate_rule_and_weight_are_symmetric(rs: list[LinkRecord]) -> None:
    for a, b in pairs(rs):
        assert is_candidate(a, b, windows=WINDOWS, neighbours=NEIGHBOURS) == is_candidate(
            b, a, windows=WINDOWS, neighbours=NEIGHBOURS
        )
        assert compare(a, b) == compare(b, a)
        segs = (a.segment_id, b.segment_id)
        assert match_weight(compare(a, b), MODEL, segments=segs) == match_weight(
            compare(b, a), MODEL, segments=segs[::-1]
        )
        ab = score_candidates(a, [b], model=MODEL, windows=WINDOWS, neighbours=NEIGHBOURS)
        ba = score_candidates(b, [a], model=MODEL, windows=WINDOWS, neighbours=NEIGHBOURS)
        assert ab == ba


@given(records(n_max=12), st.sampled_from([-3.0, 0.0, 2.0, 5.0]))
def test_matches_scored_at_once_are_those_scored_one_report_at_a_time(
    rs: list[LinkRecord], threshold: float
) -> None:
    """What the linker scores for a thousand new reports in one pass (matches_of_many) is what
    score_candidates finds report by report: the same matches, weights and order. Each pool holds
    the new report itself, as the linker's pools do."""
    model = MatchModel(threshold=threshold, crowding=MODEL.crowding)
    pools = [(r, rs) for r in rs]
    one_by_one = [
        link
        for r, pool in pools
        for link in score_candidates(r, pool, model=model, windows=WINDOWS, neighbours=NEIGHBOURS)
        if link.is_match
    ]
    at_once = matches_of_many(pools, model=model, windows=WINDOWS, neighbours=NEIGHBOURS)
    assert at_once == one_by_one
    assert all(link.is_match for link in at_once)


@given(records())
def test_no_link_within_one_monitor(rs: list[LinkRecord]) -> None:
    for link in links_of(rs):
        a = next(r for r in rs if r.id == link.a)
        b = next(r for r in rs if r.id == link.b)
        assert not same_source(a, b)
        assert a.key_id != b.key_id or (a.device_id and b.device_id and a.device_id != b.device_id)


@given(records())
def test_scored_pairs_are_exactly_the_pairs_within_the_windows(rs: list[LinkRecord]) -> None:
    scored = {(lk.a, lk.b) for lk in links_of(rs)}
    for a, b in pairs(rs):
        key = (min(a.id, b.id), max(a.id, b.id))
        _, _, metres = GEOD.inv(a.lon, a.lat, b.lon, b.lat)
        within = (
            abs((a.observed_at - b.observed_at).total_seconds()) <= 6 * 3600
            and metres <= 5_000 + 1e-6
            and a.segment_id is not None
            and b.segment_id is not None
            and (a.segment_id == b.segment_id or b.segment_id in NEIGHBOURS[a.segment_id])
            and not same_source(a, b)
        )
        assert (key in scored) == within


def test_the_weight_is_the_sum_of_log2_m_over_u_per_field() -> None:
    a = LinkRecord(UUID(int=1), T0, -73.5172, 45.0071, "S0", 4, "crossing", "CA", "k1", None)
    b = LinkRecord(UUID(int=2), T0 + timedelta(minutes=40), -73.5160, 45.0071, "S1", 5,
                   "crossing", None, "k2", None)  # fmt: skip
    levels = compare(a, b)
    assert levels == (0, 1, 1, 1, 0)  # ~95 m, 40 min, 4 vs 5, one direction missing, same kind
    weight = match_weight(levels, MODEL)
    for name, level in zip(FIELDS, levels, strict=True):
        expected = math.log2(DEFAULT_M.of(name)[level] / DEFAULT_U.of(name)[level])
        assert weight.per_field[name] == pytest.approx(expected)
    assert weight.per_field["crowding"] == 0.0  # no crowding given for S0, S1
    assert weight.total == pytest.approx(sum(weight.per_field.values()))
    assert weight.explain()["people"]["level"] == "ratio<=1.25"


def test_crowding_takes_the_busier_segment_and_never_adds() -> None:
    assert MODEL.crowding_bits("S2", "S1") == MODEL.crowding_bits("S1", "S2") == -2.0
    assert MODEL.crowding_bits("S3", "S4") == 0.0  # fewer than one unrelated candidate: nothing
    assert MODEL.crowding_bits(None, None) == 0.0
    assert estimate_crowding([("S2", 3), ("S2", 5), ("S0", 0)]) == {"S0": 0.0, "S2": 4.0}


def test_level_edges_fall_in_the_nearer_level() -> None:
    a = LinkRecord(UUID(int=1), T0, -73.5172, 45.0071, "S0", 4, "crossing", "CA", "k1", None)
    lon, lat, _ = GEOD.fwd(a.lon, a.lat, 90.0, 100.0)
    b = LinkRecord(UUID(int=2), T0 + timedelta(minutes=15), float(lon), float(lat), "S0", 8,
                   "attempt", "US", "k2", None)  # fmt: skip
    assert compare(a, b) == (0, 0, 2, 2, 1)


def test_u_and_m_estimates() -> None:
    rs = [
        LinkRecord(UUID(int=i), T0 + timedelta(hours=i), -73.5172, 45.0071, "S0", 2,
                   "crossing", "CA", f"k{i}", None)
        for i in range(4)
    ]  # fmt: skip
    sample = pairs(rs)
    assert estimate_u([]) == DEFAULT_U
    assert estimate_m(sample, min_reviews=len(sample) + 1) == DEFAULT_M
    m = estimate_m(sample, min_reviews=len(sample))
    u = estimate_u(sample)
    assert m == u  # the same pairs give the same shares
    assert m.distance[0] > 0.5 and all(x > 0 for x in m.distance)  # smoothed, never zero
    assert isinstance(m, LevelShares)


def test_adjacent_segments_of_the_bundled_border(index: SegmentIndex) -> None:
    neighbours = segment_neighbours(index.segments)
    assert neighbours["CA-US-0208"] == {"CA-US-0207", "CA-US-0209"}
    assert all(s in neighbours[t] for s, ts in neighbours.items() for t in ts)


# --- groups -------------------------------------------------------------------------------------


@settings(max_examples=60)
@given(records(n_max=9), st.randoms(use_true_random=False))
def test_groups_do_not_depend_on_arrival_order(rs: list[LinkRecord], rnd: object) -> None:
    batch = assign_groups([r.id for r in rs], edges_of(links_of(rs)))
    for _ in range(3):
        order = list(rs)
        rnd.shuffle(order)  # type: ignore[attr-defined]
        book: GroupBook[UUID] = GroupBook()
        for i, r in enumerate(order):
            links = score_candidates(r, order[:i], model=MODEL, windows=WINDOWS,
                                     neighbours=NEIGHBOURS)  # fmt: skip
            book.add(r.id, edges_of(links))
        assert book.group_of == batch


@settings(max_examples=60)
@given(records(n_max=9), st.randoms(use_true_random=False))
def test_a_group_never_holds_two_reports_of_one_monitor(rs: list[LinkRecord], rnd: object) -> None:
    """One-to-one per monitor: a monitor does not report one group twice, and no group holds two
    reports one monitor may have sent (``same_source``), in any arrival order. A group is a
    clique of links and a pair of one monitor is never a candidate, so of two such reports
    linked to one third, only the stronger link's pair is grouped with it."""
    by_id = {r.id: r for r in rs}
    order = list(rs)
    rnd.shuffle(order)  # type: ignore[attr-defined]
    book: GroupBook[UUID] = GroupBook()
    for i, r in enumerate(order):
        links = score_candidates(r, order[:i], model=MODEL, windows=WINDOWS, neighbours=NEIGHBOURS)
        book.add(r.id, edges_of(links))
    for ks in members_of(book.group_of).values():
        assert not any(
            same_source(by_id[x], by_id[y]) for i, x in enumerate(ks) for y in ks[i + 1 :]
        )


def test_of_two_reports_of_one_monitor_the_stronger_link_groups() -> None:
    """A report linked to two reports of one other monitor (two groups it saw within the
    windows) is grouped with the nearer one only, whichever arrives first."""

    def at(i: int, minutes: int, lon: float, key: str) -> LinkRecord:
        return LinkRecord(UUID(int=i), T0 + timedelta(minutes=minutes), lon, 45.0071, "S0", 4,
                          "crossing", "CA", key, "d1")  # fmt: skip

    new = at(1, 0, -73.5172, "k1")
    near, far = at(2, 5, -73.5170, "k2"), at(3, 20, -73.5150, "k2")
    model = MatchModel(threshold=0.0)
    for order in ([new, near, far], [far, new, near], [near, far, new]):
        book: GroupBook[UUID] = GroupBook()
        for i, r in enumerate(order):
            links = score_candidates(r, order[:i], model=model, windows=WINDOWS,
                                     neighbours=NEIGHBOURS)  # fmt: skip
            book.add(r.id, edges_of(links))
        linked = {lk.b for lk in links_of([new, near, far], model) if lk.is_match}
        assert linked == {near.id, far.id}  # both pairs are links ...
        assert book.group_of == {new.id: new.id, near.id: new.id, far.id: far.id}  # ... one groups


@given(records(n_max=9))
def test_groups_are_cliques_of_links_that_cannot_merge(rs: list[LinkRecord]) -> None:
    edges = edges_of(links_of(rs))
    linked = {e.key() for e in edges}
    groups = members_of(assign_groups([r.id for r in rs], edges))
    for ks in groups.values():
        assert all((x, y) in linked for i, x in enumerate(ks) for y in ks[i + 1 :])
    ids = sorted(groups)
    for i, g in enumerate(ids):
        for h in ids[i + 1 :]:
            union = sorted(groups[g] + groups[h])
            assert not all((x, y) in linked for j, x in enumerate(union) for y in union[j + 1 :])


def brute_force_groups(ids: list[int], edges: list[Edge[int]]) -> dict[int, int]:
    """The rule restated: again and again, merge the two groups joined by the first link (in the
    rule's order) whose union is a clique; stop when there is none."""
    linked = {e.key() for e in edges}
    order = sorted(edges, key=lambda e: (-e.priority, -e.weight, e.key()))
    groups = [{k} for k in ids]
    while True:
        for e in order:
            ga = next(g for g in groups if e.a in g)
            gb = next(g for g in groups if e.b in g)
            union = sorted(ga | gb)
            if ga is not gb and all(
                (x, y) in linked for j, x in enumerate(union) for y in union[j + 1 :]
            ):
                groups = [g for g in groups if g is not ga and g is not gb] + [ga | gb]
                break
        else:
            return {k: min(g) for g in groups for k in g}


@st.composite
def graphs(draw: st.DrawFn) -> tuple[list[int], list[Edge[int]], dict[int, int]]:
    n = draw(st.integers(1, 9))
    ids = list(range(n))
    edges = [
        Edge(a, b, draw(st.sampled_from([1.0, 2.5, 4.0, 7.0])), draw(st.sampled_from([0, 0, 1])))
        for a in ids
        for b in ids[a + 1 :]
        if draw(st.booleans())
    ]
    people = {k: draw(st.integers(1, 12)) for k in ids}
    return ids, edges, people


@given(graphs())
def test_groups_and_people_est_equal_a_brute_force_count(
    graph: tuple[list[int], list[Edge[int]], dict[int, int]],
) -> None:
    ids, edges, people = graph
    group_of = assign_groups(ids, edges)
    assert group_of == brute_force_groups(ids, edges)
    observed = {k: T0 + timedelta(minutes=(k * 7) % 5) for k in ids}
    facts = group_facts(group_of, people=people, observed_at=observed)
    expected_groups = len({group_of[k] for k in ids})
    expected_people = sum(
        max(people[k] for k in ids if group_of[k] == g) for g in {group_of[k] for k in ids}
    )
    assert len(facts) == expected_groups
    assert sum(f.people_est for f in facts) == expected_people
    for f in facts:  # the anchor is the first observed member, then the smallest id
        ks = [k for k in ids if group_of[k] == f.group_id]
        assert f.anchor == min(ks, key=lambda k: (observed[k], k))


def test_a_chain_is_not_one_group() -> None:
    """A-B and B-C linked, A-C not: two groups, the stronger link wins."""
    group_of = assign_groups([1, 2, 3], [Edge(1, 2, 5.0), Edge(2, 3, 6.0)])
    assert group_of == {1: 1, 2: 2, 3: 2}


def test_weights_come_from_the_tables() -> None:
    levels = np.array([[0, 0, 0, 0, 0]])
    assert MODEL.weights(levels).sum() == pytest.approx(
        sum(math.log2(DEFAULT_M.of(f)[0] / DEFAULT_U.of(f)[0]) for f in FIELDS)
    )


def test_a_record_from_a_stored_report() -> None:
    draft = ReportDraft(UUID(int=7), T0, -73.5172, 45.0071, 3, "crossing", "CA", device_id="d9")
    snap = SnapResult(SnapStatus.SNAPPED, segment_id="CA-US-0208", distance_m=4.2)
    record = LinkRecord.from_report(Report(draft, T0, snap), key_id="k1")
    assert record == LinkRecord(UUID(int=7), T0, -73.5172, 45.0071, "CA-US-0208", 3,
                                "crossing", "CA", "k1", "d9")  # fmt: skip
