"""Groups of linked reports, and what a group counts (issue #20).

**The rule.** A group is a set of reports every two of which are linked (a clique of the link
graph), so a group never chains beyond the windows: A-B and B-C put A, B and C in one group only
if A-C is a link too. Groups are made by complete-linkage agglomeration in one fixed order:

1. every report starts as a group of its own;
2. the links are taken strongest first, by (``priority`` descending, weight descending, then the
   two ids ascending) -- a total order that depends on the links alone;
3. a link whose two reports are in different groups merges those groups if every report of the
   one is linked to every report of the other; otherwise it is skipped.

A group's id is its smallest report id. The result is a function of the *set* of reports and
links, never of the order they arrived in, so offline batches give the groups that live ingest
gives. Merges happen only along links, so a connected component of the link graph is grouped
the same alone as inside the whole: after a new report, regrouping its component is enough
(``GroupBook``). No two final groups could merge (the link between them, when taken, saw
subsets of both, which were then a clique too), so the groups are maximal in that sense.

**Counting.** A group counts once, at its *anchor*: the member observed first (then the
smallest id). ``people_est`` is the largest count any member reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID

K = TypeVar("K", UUID, int, str)


@dataclass(frozen=True, slots=True)
class Edge(Generic[K]):
    """A link as grouping sees it: two report ids, its weight, and a priority (e.g. 1 for a
    link an analyst confirmed, 0 otherwise)."""

    a: K
    b: K
    weight: float
    priority: int = 0

    def key(self) -> tuple[K, K]:
        return (self.a, self.b) if self.a < self.b else (self.b, self.a)


def assign_groups(ids: Iterable[K], edges: Iterable[Edge[K]]) -> dict[K, K]:
    """Each report's group id (its group's smallest report id), by the rule above. ``edges``
    may name reports outside ``ids``; they are added."""
    group: dict[K, K] = {k: k for k in ids}
    ordered: dict[tuple[K, K], Edge[K]] = {}
    for e in edges:
        if e.a == e.b:
            continue
        key = e.key()
        group.setdefault(key[0], key[0])
        group.setdefault(key[1], key[1])
        old = ordered.get(key)
        if old is None or (e.priority, e.weight) > (old.priority, old.weight):
            ordered[key] = e
    linked = set(ordered)
    members: dict[K, list[K]] = {k: [k] for k in group}
    for key in sorted(ordered, key=lambda k: (-ordered[k].priority, -ordered[k].weight, k)):
        ga, gb = group[key[0]], group[key[1]]
        if ga == gb:
            continue
        left, right = members[ga], members[gb]
        if all(((x, y) if x < y else (y, x)) in linked for x in left for y in right):
            keep, gone = (ga, gb) if ga < gb else (gb, ga)
            for k in members[gone]:
                group[k] = keep
            members[keep] = members[keep] + members.pop(gone)
    return group


def members_of(group_of: Mapping[K, K]) -> dict[K, list[K]]:
    """Group id -> its reports, each list sorted."""
    out: dict[K, list[K]] = {}
    for k in sorted(group_of):
        out.setdefault(group_of[k], []).append(k)
    return out


@dataclass(frozen=True, slots=True)
class GroupFacts(Generic[K]):
    """One group: its id, its anchor (where it counts) and its estimate of people."""

    group_id: K
    anchor: K
    people_est: int
    size: int


def group_facts(
    group_of: Mapping[K, K], *, people: Mapping[K, int], observed_at: Mapping[K, datetime]
) -> list[GroupFacts[K]]:
    """Facts of every group: anchor = first observed member (then smallest id); people_est = the
    largest count any member reported."""
    out = []
    for gid, ks in members_of(group_of).items():
        anchor = min(ks, key=lambda k: (observed_at[k], k))
        out.append(GroupFacts(gid, anchor, max(people[k] for k in ks), len(ks)))
    return out


class GroupBook(Generic[K]):
    """Groups kept as reports arrive: the in-memory reference of what a store does on ingest.

    ``add`` records a report and its links, regroups the connected component it joined and
    returns the reports whose group changed; the result after any arrival order equals
    ``assign_groups`` over everything.
    """

    def __init__(self) -> None:
        self.adjacent: dict[K, dict[K, Edge[K]]] = {}
        self.group_of: dict[K, K] = {}

    def add(self, report: K, edges: Iterable[Edge[K]]) -> dict[K, K]:
        self.adjacent.setdefault(report, {})
        self.group_of.setdefault(report, report)
        for e in edges:
            for x, y in ((e.a, e.b), (e.b, e.a)):
                self.adjacent.setdefault(x, {})[y] = e
                self.group_of.setdefault(x, x)
        component = self.component(report)
        inside = {e.key(): e for k in component for e in self.adjacent[k].values()}
        regrouped = assign_groups(component, inside.values())
        changed = {k: g for k, g in regrouped.items() if self.group_of.get(k) != g}
        self.group_of.update(changed)
        return changed

    def component(self, start: K) -> set[K]:
        """The reports reachable from ``start`` through links."""
        seen, todo = {start}, [start]
        while todo:
            for nxt in self.adjacent.get(todo.pop(), {}):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen
