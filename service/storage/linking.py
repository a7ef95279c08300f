"""Linking as reports arrive, the same procedure on every backend (docs/linking.md).

Each backend supplies the connection-level reads and writes (``LinkTx``: storage/sqlite/links.py,
storage/postgis/links.py) inside one of its transactions; this module decides what to read and
write, with the domain's rules (``domain.linking`` scores, ``domain.link_groups`` groups):

1. the new reports' candidates come from the (segment_id, observed_at) index: the stored reports
   on each new report's segment and the adjacent ones, within the time window;
2. the pairs whose weight reaches the threshold are stored as proposed links, unless the pair is
   stored already (a rejected pair stays rejected, a confirmed one confirmed);
3. the connected component of the link graph around the new links is grouped again, and its
   reports' rows of ``report_groups`` replaced (a report without a row is a group of its own).

Reports themselves are never changed. Groups do not depend on the order reports arrive in
(``link_groups``), so a late report, a batch and a relink of everything give the same groups.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol
from uuid import UUID

import numpy as np

from service.domain.link_groups import Edge, assign_groups, group_facts
from service.domain.linking import (
    DEFAULT_M,
    DEFAULT_U,
    Levels,
    Link,
    LinkRecord,
    LinkWindows,
    MatchModel,
    matches_of_many,
    segment_neighbours,
    shares_of,
)
from service.domain.segments import BorderSegment

# The reports one transaction of the background linker takes (PostGIS; SQLite links in ingest).
LINK_BATCH = 1_000


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """The windows, the threshold (bits) and the confirmed pairs m needs before it is estimated
    from reviews (settings: CROSSINGS_LINK_*)."""

    windows: LinkWindows = field(default_factory=LinkWindows)
    threshold_bits: float = 1.0
    min_reviews: int = 200


class GroupRow(NamedTuple):
    """A report's group (only reports in a group of two or more have one): its id, whether the
    report is where the group counts (its anchor), and the group's people_est on the anchor
    (0 elsewhere)."""

    report_id: UUID
    group_id: UUID
    is_anchor: bool
    group_people: int


class LinkTx(Protocol):
    """What linking reads and writes, inside the backend's current transaction."""

    def border_version(self) -> int: ...

    def segments(self) -> list[BorderSegment]: ...

    def records(self, ids: Collection[UUID]) -> list[LinkRecord]:
        """The stored reports among ``ids``."""
        ...

    def records_near(self, spans: Sequence[tuple[str, datetime, datetime]]) -> list[LinkRecord]:
        """The stored reports on each span's segment observed within its [start, end]."""
        ...

    def add_links(self, links: Sequence[Link], *, at: datetime) -> None:
        """Store each link as proposed, unless its pair is stored already (in any state)."""
        ...

    def edges_touching(self, ids: Collection[UUID]) -> list[Edge[UUID]]:
        """Every link that is not rejected with an end among ``ids``; a confirmed one with
        priority 1."""
        ...

    def set_groups(self, ids: Collection[UUID], rows: Sequence[GroupRow]) -> None:
        """Replace the group rows of ``ids`` with ``rows``."""
        ...

    def confirmed_levels(self, known: int) -> list[Levels] | None:
        """The levels of every confirmed link, or None when there are ``known`` of them."""
        ...

    def linked_between(self, start: datetime, end: datetime) -> list[UUID]:
        """The reports observed in [start, end) with a link that is not rejected."""
        ...


class Linker:
    """Links new reports (``link``), regroups around changed links (``regroup``); keeps the
    border's adjacency and the match model between calls (one per store)."""

    def __init__(self, config: LinkConfig) -> None:
        self.config = config
        self._neighbours: tuple[int, dict[str, frozenset[str]]] | None = None
        self._model: tuple[int, MatchModel] | None = None

    def link(self, tx: LinkTx, ids: Collection[UUID], *, at: datetime) -> int:
        """Link the stored reports ``ids`` (new, or to be linked again) to their candidates, and
        regroup around the links made: how many links were stored or met again."""
        new = [r for r in tx.records(ids) if r.segment_id is not None]
        if not new:
            return 0
        neighbours = self.neighbours(tx)
        model = self.model(tx)
        windows = self.config.windows
        pool = _Pool(tx.records_near(_spans(new, neighbours, windows)))
        found: dict[tuple[UUID, UUID], Link] = {}
        # All the new reports' candidates scored at once (score_candidates' matches, in order).
        for link in matches_of_many(
            [(record, pool.near(record, neighbours, windows)) for record in new],
            model=model,
            windows=windows,
            neighbours=neighbours,
        ):
            found.setdefault((link.a, link.b), link)
        if found:
            links = [found[k] for k in sorted(found)]
            tx.add_links(links, at=at)
            self.regroup(tx, {x for link in links for x in (link.a, link.b)})
        return len(found)

    def regroup(self, tx: LinkTx, seeds: Iterable[UUID]) -> None:
        """Group again every report reachable from ``seeds`` through links, and write their rows."""
        component, edges = _component(tx, seeds)
        if not component:
            return
        records = {r.id: r for r in tx.records(component)}
        rows = _group_rows(records, edges, singles=False)
        tx.set_groups(component, rows)

    def groups_before(self, tx: LinkTx, before: datetime) -> list[GroupRow]:
        """The groups the reports observed before ``before`` make among themselves, where they
        differ from the stored ones: for every such report in a component of the link graph
        that reaches a report observed at or after ``before``, its row (a group of its own
        included, as its own anchor with its own count).

        The public release counts these (storage/*/release.py): its groups are then a function
        of the reports it holds alone, as every other figure of it is. Linking to a report
        younger than the cut (a group's people_est taking its count, or a new link changing
        which merges happen) would otherwise show in released days. A link joins reports at
        most ``max_hours`` apart, so each such component holds a report observed in
        [before, before + max_hours) with a link."""
        reach = timedelta(hours=self.config.windows.max_hours)
        component, edges = _component(tx, tx.linked_between(before, before + reach))
        records = {r.id: r for r in tx.records(component) if r.observed_at < before}
        return _group_rows(records, edges, singles=True)

    def neighbours(self, tx: LinkTx) -> dict[str, frozenset[str]]:
        """The border's adjacency, made again when its version changes."""
        version = tx.border_version()
        cached = self._neighbours
        if cached is None or cached[0] != version:
            cached = (version, segment_neighbours(tx.segments()))
            self._neighbours = cached
        return cached[1]

    def model(self, tx: LinkTx) -> MatchModel:
        """m from the confirmed links' levels once there are ``min_reviews`` of them (defaults
        until then); u the configured defaults (see docs/linking.md: not yet estimated from the
        store); made again when the number of confirmed links changes."""
        known = -1 if self._model is None else self._model[0]
        levels = tx.confirmed_levels(known)
        if levels is None and self._model is not None:
            return self._model[1]
        levels = levels or []
        m = DEFAULT_M
        if len(levels) >= self.config.min_reviews:
            m = shares_of(np.array(levels, dtype=np.int64))
        model = MatchModel(m=m, u=DEFAULT_U, threshold=self.config.threshold_bits)
        self._model = (len(levels), model)
        return model


def _component(
    tx: LinkTx, seeds: Iterable[UUID]
) -> tuple[set[UUID], dict[tuple[UUID, UUID], Edge[UUID]]]:
    """Every report reachable from ``seeds`` through links that are not rejected, and those
    links."""
    component: set[UUID] = set()
    frontier = set(seeds)
    edges: dict[tuple[UUID, UUID], Edge[UUID]] = {}
    while frontier:
        component |= frontier
        touching = tx.edges_touching(frontier)
        for edge in touching:
            edges[edge.key()] = edge
        frontier = {x for e in touching for x in (e.a, e.b)} - component
    return component, edges


def _group_rows(
    records: Mapping[UUID, LinkRecord],
    edges: Mapping[tuple[UUID, UUID], Edge[UUID]],
    *,
    singles: bool,
) -> list[GroupRow]:
    """The groups of ``records`` by the links among them, as rows (with ``singles``, a row for
    each report that is a group of its own too), sorted."""
    alive = [e for e in edges.values() if e.a in records and e.b in records]
    group_of = assign_groups(records, alive)
    facts = group_facts(
        group_of,
        people={k: r.people_count for k, r in records.items()},
        observed_at={k: r.observed_at for k, r in records.items()},
    )
    members: dict[UUID, list[UUID]] = {}
    for k, g in group_of.items():
        members.setdefault(g, []).append(k)
    rows = []
    for f in facts:
        if f.size < 2 and not singles:
            continue
        for k in members[f.group_id]:
            is_anchor = k == f.anchor
            rows.append(GroupRow(k, f.group_id, is_anchor, f.people_est if is_anchor else 0))
    return sorted(rows)


def _spans(
    new: Sequence[LinkRecord], neighbours: Mapping[str, frozenset[str]], windows: LinkWindows
) -> list[tuple[str, datetime, datetime]]:
    """The (segment, start, end) spans the new reports' candidates lie in, overlapping spans of a
    segment merged (one index range each)."""
    reach = timedelta(hours=windows.max_hours)
    by_segment: dict[str, list[tuple[datetime, datetime]]] = {}
    for r in new:
        assert r.segment_id is not None
        for segment in {r.segment_id} | neighbours.get(r.segment_id, frozenset()):
            by_segment.setdefault(segment, []).append(
                (r.observed_at - reach, r.observed_at + reach)
            )
    out = []
    for segment, spans in sorted(by_segment.items()):
        spans.sort()
        start, end = spans[0]
        for s, e in spans[1:]:
            if s > end:
                out.append((segment, start, end))
                start = s
            end = max(end, e)
        out.append((segment, start, end))
    return out


class _Pool:
    """Stored reports by segment, in observed_at order: each new report's candidates by bisection."""

    def __init__(self, records: Iterable[LinkRecord]) -> None:
        by_segment: dict[str, list[LinkRecord]] = {}
        for r in {r.id: r for r in records}.values():
            if r.segment_id is not None:
                by_segment.setdefault(r.segment_id, []).append(r)
        self._records = {
            s: sorted(rs, key=lambda r: (r.observed_at, r.id)) for s, rs in by_segment.items()
        }
        self._times = {s: [r.observed_at for r in rs] for s, rs in self._records.items()}

    def near(
        self, record: LinkRecord, neighbours: Mapping[str, frozenset[str]], windows: LinkWindows
    ) -> list[LinkRecord]:
        reach = timedelta(hours=windows.max_hours)
        assert record.segment_id is not None
        out: list[LinkRecord] = []
        for segment in {record.segment_id} | neighbours.get(record.segment_id, frozenset()):
            times = self._times.get(segment)
            if times is None:
                continue
            lo = bisect.bisect_left(times, record.observed_at - reach)
            hi = bisect.bisect_right(times, record.observed_at + reach)
            out += self._records[segment][lo:hi]
        return out
