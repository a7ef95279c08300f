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

The model links are scored with: m from the confirmed links (defaults until enough), u and each
segment's crowding from the store's latest estimate (``domain.link_model``: a day-shifted sample
drawn here, ``sample_unrelated``) while it was made under the current border, ``DEFAULT_U`` and
no crowding otherwise. A new estimate rescores the proposed links from their stored levels
(``rescore_some``); reviewed links keep the weights they were scored with.

Reports themselves are never changed. Groups do not depend on the order reports arrive in
(``link_groups``), so a late report, a batch and a relink of everything give the same groups.
"""

from __future__ import annotations

import bisect
import json
import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol
from uuid import UUID

import numpy as np

from service.domain.link_groups import Edge, assign_groups, group_facts
from service.domain.link_model import (
    EstimatedModel,
    SampledReport,
    UnrelatedSample,
    draw_shift,
    model_from_json,
    shifted,
)
from service.domain.linking import (
    DEFAULT_M,
    DEFAULT_U,
    Levels,
    LevelShares,
    Link,
    LinkRecord,
    LinkWindows,
    MatchModel,
    MatchWeight,
    candidates,
    match_weight,
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


class ScoredPair(NamedTuple):
    """A stored proposed link as rescoring reads it: the pair, its levels and its segments."""

    a: UUID
    b: UUID
    levels: Levels
    segment_a: str | None
    segment_b: str | None


# The stored estimates kept (the latest is used; the older ones say how it moved).
KEPT_MODELS = 10

# The same statements on both stores: what tells a linker whether its cached model is still the
# store's (LinkTx.model_marks), and the latest stored estimate.
MODEL_MARKS = (
    "SELECT (SELECT count(*) FROM report_links WHERE state = 'confirmed'),"
    " (SELECT coalesce(max(version), 0) FROM link_models)"
)
LATEST_MODEL = (
    "SELECT version, estimated_at, border_version, reports, pairs, u, crowding"
    " FROM link_models ORDER BY version DESC LIMIT 1"
)


def model_of_row(row: Sequence[Any], estimated_at: datetime) -> EstimatedModel:
    """A row of LATEST_MODEL (u and crowding as JSON text), its time read by the store."""
    version, _, border, reports, pairs, u, crowding = row
    return model_from_json(
        version=version, estimated_at=estimated_at, border_version=border, reports=reports,
        pairs=pairs, u=json.loads(u), crowding=json.loads(crowding),
    )  # fmt: skip


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

    def add_links(self, links: Sequence[Link], *, at: datetime, model_version: int) -> None:
        """Store each link as proposed, scored with the stored model ``model_version`` (0: the
        defaults), unless its pair is stored already (in any state)."""
        ...

    def edges_touching(self, ids: Collection[UUID]) -> list[Edge[UUID]]:
        """Every link that is not rejected with an end among ``ids``; a confirmed one with
        priority 1."""
        ...

    def set_groups(self, ids: Collection[UUID], rows: Sequence[GroupRow]) -> None:
        """Replace the group rows of ``ids`` with ``rows``."""
        ...

    def model_marks(self) -> tuple[int, int]:
        """(how many links are confirmed, the latest stored model's version or 0), in one
        statement: what tells whether the cached model is still the store's."""
        ...

    def confirmed_levels(self) -> list[Levels]:
        """The levels of every confirmed link."""
        ...

    def latest_model(self) -> EstimatedModel | None:
        """The latest stored estimate of u and the crowding."""
        ...

    def save_model(self, model: EstimatedModel) -> int:
        """Store ``model`` as the next version (a few latest versions are kept): its version."""
        ...

    def random_records(self, size: int, *, seed: int) -> list[LinkRecord]:
        """Up to ``size`` snapped reports drawn at random, without reading the whole table."""
        ...

    def proposed_behind(self, version: int, limit: int) -> list[ScoredPair]:
        """Up to ``limit`` proposed links scored with a model older than ``version``."""
        ...

    def rescore(
        self,
        kept: Sequence[tuple[UUID, UUID, MatchWeight]],
        dropped: Sequence[tuple[UUID, UUID]],
        *,
        model_version: int,
    ) -> None:
        """Give the ``kept`` proposed links their new weights and ``model_version``; delete the
        ``dropped`` ones (proposed links whose new weight is below the threshold)."""
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
        # (confirmed links, latest stored version, border version) -> (model, version used)
        self._model: tuple[tuple[int, int, int], MatchModel, int] | None = None
        self._confirmed: tuple[int, LevelShares] | None = None
        self._stored: EstimatedModel | None = None

    def link(
        self,
        tx: LinkTx,
        ids: Collection[UUID],
        *,
        at: datetime,
        records: Sequence[LinkRecord] | None = None,
    ) -> int:
        """Link the stored reports ``ids`` (new, or to be linked again) to their candidates, and
        regroup around the links made: how many links were stored or met again. ``records``:
        those reports' records when the caller holds them (ingest: what it stored just now, as
        ``LinkRecord.from_report``), read from the store otherwise."""
        held = tx.records(ids) if records is None else records
        new = [r for r in held if r.segment_id is not None]
        if not new:
            return 0
        border = tx.border_version()
        neighbours = self.neighbours(tx, border)
        model, version = self.model(tx, border)
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
            tx.add_links(links, at=at, model_version=version)
            self.regroup(tx, {x for link in links for x in (link.a, link.b)}, known=pool.by_id)
        return len(found)

    def regroup(
        self, tx: LinkTx, seeds: Iterable[UUID], *, known: Mapping[UUID, LinkRecord] | None = None
    ) -> None:
        """Group again every report reachable from ``seeds`` through links, and write their rows.
        ``known``: stored reports read in this transaction already (only the others are read)."""
        component, edges = _component(tx, seeds)
        if not component:
            return
        known = known or {}
        records = {k: known[k] for k in component if k in known}
        missing = component - records.keys()
        if missing:
            records.update((r.id, r) for r in tx.records(missing))
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

    def neighbours(self, tx: LinkTx, version: int) -> dict[str, frozenset[str]]:
        """The adjacency of the border at ``version``, made again when its version changes."""
        cached = self._neighbours
        if cached is None or cached[0] != version:
            cached = (version, segment_neighbours(tx.segments()))
            self._neighbours = cached
        return cached[1]

    def model(self, tx: LinkTx, border: int) -> tuple[MatchModel, int]:
        """The model links are scored with now, and the stored model's version it uses (0: none).

        m from the confirmed links' levels once there are ``min_reviews`` of them (defaults until
        then); u and the crowding from the latest stored estimate when it was made under this
        border (``DEFAULT_U`` and no crowding otherwise). One small statement per call
        (``model_marks``); the levels and the estimate are read again only when they changed."""
        marks = (*tx.model_marks(), border)
        cached = self._model
        if cached is not None and cached[0] == marks:
            return cached[1], cached[2]
        confirmed, stored_version, _ = marks
        # Locals first, the cache after: threads of one store (ingest, the background jobs)
        # share this linker, and each call must score with one consistent model.
        known = self._confirmed
        if known is None or known[0] != confirmed:
            levels = tx.confirmed_levels()
            m = DEFAULT_M
            if len(levels) >= self.config.min_reviews:
                m = shares_of(np.array(levels, dtype=np.int64))
            known = self._confirmed = (len(levels), m)
        stored = self._stored
        if stored_version == 0:
            stored = None
        elif stored is None or stored.version != stored_version:
            stored = self._stored = tx.latest_model()
        threshold = self.config.threshold_bits
        if stored is not None and stored.border_version == border:
            model = MatchModel(known[1], stored.u, threshold, stored.crowding)
            version = stored.version
        else:
            model, version = MatchModel(known[1], DEFAULT_U, threshold), 0
        self._model = (marks, model, version)
        return model, version

    def sample_unrelated(self, tx: LinkTx, size: int, *, seed: int) -> UnrelatedSample:
        """A day-shifted sample of up to ``size`` random snapped reports (``domain.link_model``):
        each looked for among the stored reports as if observed whole days earlier or later,
        through the same index ranges linking reads (``records_near``), in chunks of
        ``LINK_BATCH`` reports; one of its candidates drawn at random (in id order, so that a
        seed gives one sample)."""
        rng = random.Random(seed)
        border = tx.border_version()
        neighbours = self.neighbours(tx, border)
        windows = self.config.windows
        drawn = [r for r in tx.random_records(size, seed=seed) if r.segment_id is not None]
        out: list[SampledReport] = []
        for start in range(0, len(drawn), LINK_BATCH):
            chunk = drawn[start : start + LINK_BATCH]
            days = [draw_shift(rng, windows.max_hours) for _ in chunk]
            moved = [shifted(r, d) for r, d in zip(chunk, days, strict=True)]
            pool = _Pool(tx.records_near(_spans(moved, neighbours, windows)))
            for record, shift, m in zip(chunk, days, moved, strict=True):
                found = candidates(
                    m, pool.near(m, neighbours, windows), windows=windows, neighbours=neighbours
                )
                found.sort(key=lambda pair: pair[0].id)
                chosen = found[rng.randrange(len(found))] if found else None
                assert record.segment_id is not None
                out.append(
                    SampledReport(
                        report_id=record.id,
                        segment_id=record.segment_id,
                        days=shift,
                        candidates=len(found),
                        chosen=None if chosen is None else chosen[0].id,
                        levels=None if chosen is None else chosen[1],
                    )
                )
        return UnrelatedSample(tuple(out), border)

    def rescore_some(self, tx: LinkTx, limit: int) -> int:
        """Rescore up to ``limit`` proposed links scored with an older model than the current
        one, from their stored levels and segments: a link whose new weight is below the
        threshold is deleted, the others keep their new weights; their components are grouped
        again. How many were rescored (0: every proposed link is current)."""
        model, version = self.model(tx, tx.border_version())
        if version == 0:
            return 0
        rows = tx.proposed_behind(version, limit)
        if not rows:
            return 0
        kept: list[tuple[UUID, UUID, MatchWeight]] = []
        dropped: list[tuple[UUID, UUID]] = []
        for row in rows:
            weight = match_weight(row.levels, model, segments=(row.segment_a, row.segment_b))
            if weight.total >= model.threshold:
                kept.append((row.a, row.b, weight))
            else:
                dropped.append((row.a, row.b))
        tx.rescore(kept, dropped, model_version=version)
        self.regroup(tx, {x for row in rows for x in (row.a, row.b)})
        return len(rows)


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
        self.by_id = {r.id: r for r in records}
        by_segment: dict[str, list[LinkRecord]] = {}
        for r in self.by_id.values():
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
