"""Linking reports of one crossing (issue #20): precision, recall and cost per report.

Run from the repository root: ``python -m bench.links [--reports N] [--seed S]``. Prints one
JSON object, then the figures as a table.

Data: ``bench.synthetic.report_columns`` (the benchmark's realistic reports: Canada-US border, 40%
within 2 km of five hot spots, over a year), each its own group, snapped as the service snaps.
Added to them:

* **duplicates**: for ``--dup-rate`` of the groups a second monitor's report (a quarter of those
  also a third's): moved 50-500 m (uniform, any bearing), observed 0-3 h earlier or later,
  people off by 0 (40%), 1 (40%) or 2 (20%) either way (at least 1), direction missing 30% of
  the time (else the group's), kind the group's 90% of the time, a different device and key;
* **hard negatives**: for ``--hard-rate`` of the groups a *different* group at the same place
  within the hour: 0-500 m away, 0-60 min apart, its own count, direction and kind (drawn as
  the benchmark draws them), another monitor.

Every report then arrives in ``received_at`` order (the observation plus a delay, exponential,
mean 5 min; duplicates a further 0-3 h late, as a second monitor's batch may be) into an
in-memory index of (segment, UTC hour) buckets. For each arrival the bench finds its candidates
(own and adjacent segments, the hours within the window), scores them with
``service.domain.linking`` and regroups with ``service.domain.link_groups.GroupBook``: the time
of that per arrival is the cost per report. u is estimated first, from one random candidate of
each of 20,000 random reports of the full data, looked for 1-7 whole days away (a pair that
cannot be one group, with the local density of unrelated reports), the days taken out.

Pairwise figures: *links* are candidate pairs whose weight reaches the threshold; *groups* count
every two reports put in one group. True pairs are two reports of one group. Both models are
scored: m = the configured defaults, and m from ``--reviews`` confirmed pairs (a random sample of
true candidate pairs, as if analysts had reviewed them).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import numpy as np

from bench.dataset import MAX_SNAP_DISTANCE_M, segment_index
from bench.synthetic import (
    DIRECTION_WEIGHTS,
    DIRECTIONS,
    KIND_WEIGHTS,
    KINDS,
    Border,
    report_columns,
)
from service.domain.geodesy import GEOD
from service.domain.link_groups import Edge, GroupBook, assign_groups
from service.domain.linking import (
    DEFAULT_M,
    LevelShares,
    LinkRecord,
    LinkWindows,
    MatchModel,
    compare_arrays,
    crowding_bits,
    estimate_crowding,
    score_candidates,
    segment_neighbours,
    shares_of,
)
from service.domain.snapping import snap_arrays

KEYS = 40  # organisation keys; devices are the benchmark's 5,000
U_SAMPLE = 20_000
THRESHOLDS = (-1.0, 0.0, 2.0, 3.0, 4.0, 6.0, 8.0)
GROUP_THRESHOLDS = (-1.0, 0.0, 1.0, 2.0, 3.0)
FIELDS_ALL = ("lon", "lat", "t", "people", "kind", "direction", "key", "device", "truth")


@dataclass
class Reports:
    """All reports as columns; ``truth`` is the group each belongs to, ``seg`` its segment number
    (-1: beyond reach), ``received`` when it reached the server (s)."""

    lon: np.ndarray
    lat: np.ndarray
    t: np.ndarray
    people: np.ndarray
    kind: np.ndarray
    direction: np.ndarray  # -1: missing
    key: np.ndarray
    device: np.ndarray  # -1: missing
    truth: np.ndarray
    seg: np.ndarray
    received: np.ndarray
    base: int
    dups: int
    hard: int

    def __len__(self) -> int:
        return len(self.lon)


def make_reports(n: int, *, seed: int, dup_rate: float, hard_rate: float) -> Reports:
    """The benchmark's reports plus duplicates and hard negatives, as the module says."""
    c = report_columns(n, seed=seed, border=Border.load())
    rng = np.random.default_rng(seed + 20)
    t = -c.age_s
    direction = np.where(c.direction == len(DIRECTIONS) - 1, -1, c.direction)
    key = np.where(c.device >= 0, c.device % KEYS, rng.integers(0, KEYS, n))
    cols: dict[str, list[np.ndarray]] = {
        "lon": [c.lon], "lat": [c.lat], "t": [t], "people": [c.people_count], "kind": [c.kind],
        "direction": [direction], "key": [key], "device": [c.device], "truth": [np.arange(n)],
    }  # fmt: skip
    delay = [rng.exponential(300.0, n)]
    # Duplicates: a second monitor's report; a quarter of the duplicated groups get a third.
    groups = rng.choice(n, round(n * dup_rate), replace=False)
    groups = np.concatenate([groups, groups[: len(groups) // 4]])
    m = len(groups)
    az, dist = rng.uniform(0, 360, m), rng.uniform(50, 500, m)
    lon, lat, _ = GEOD.fwd(c.lon[groups], c.lat[groups], az, dist)
    offset = rng.uniform(0, 3 * 3600, m) * rng.choice([-1, 1], m)
    people = c.people_count[groups] + rng.choice([0, 1, 2], m, p=[0.4, 0.4, 0.2]) * rng.choice(
        [-1, 1], m
    )
    kind = np.where(rng.uniform(size=m) < 0.9, c.kind[groups], rng.integers(0, len(KINDS), m))
    dup_dir = np.where(rng.uniform(size=m) < 0.3, -1, direction[groups])
    device = (c.device[groups].clip(0) + rng.integers(1, 5000, m)) % 5000
    _append(cols, np.round(lon, 6), np.round(lat, 6), t[groups] + offset, np.maximum(people, 1),
            kind, dup_dir, (key[groups] + rng.integers(1, KEYS, m)) % KEYS, device, groups)  # fmt: skip
    delay.append(rng.exponential(300.0, m) + rng.uniform(0, 3 * 3600, m))
    # Hard negatives: another group at the same place within the hour.
    near = rng.choice(n, round(n * hard_rate), replace=False)
    h = len(near)
    lon, lat, _ = GEOD.fwd(c.lon[near], c.lat[near], rng.uniform(0, 360, h), rng.uniform(0, 500, h))
    hard_dir = rng.choice(len(DIRECTIONS), h, p=DIRECTION_WEIGHTS)
    _append(cols, np.round(lon, 6), np.round(lat, 6),
            t[near] + rng.uniform(-3600, 3600, h), np.minimum(rng.geometric(0.35, h), 12),
            rng.choice(len(KINDS), h, p=KIND_WEIGHTS),
            np.where(hard_dir == len(DIRECTIONS) - 1, -1, hard_dir), rng.integers(0, KEYS, h),
            rng.integers(0, 5000, h), n + np.arange(h))  # fmt: skip
    delay.append(rng.exponential(300.0, h))
    joined = {k: np.concatenate(v) for k, v in cols.items()}
    index = segment_index()
    snap = snap_arrays(joined["lon"], joined["lat"], index, max_distance_m=MAX_SNAP_DISTANCE_M)
    seg = np.where(snap.edge >= 0, snap.segment, -1)
    received = joined["t"] + np.concatenate(delay)
    return Reports(**joined, seg=seg, received=received, base=n, dups=m, hard=h)


def _append(cols: dict[str, list[np.ndarray]], *values: np.ndarray) -> None:
    for name, value in zip(FIELDS_ALL, values, strict=True):
        cols[name].append(np.asarray(value))


class BucketIndex:
    """Reports by (segment, UTC hour), and the scoring of one arrival against its candidates."""

    def __init__(self, r: Reports, neighbours: list[np.ndarray], windows: LinkWindows) -> None:
        self.r, self.neighbours, self.windows = r, neighbours, windows
        self.buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        self.reach_h = int(np.ceil(windows.max_hours))
        self.hour = np.floor(r.t / 3600).astype(np.int64)

    def add(self, i: int) -> None:
        if self.r.seg[i] >= 0:
            self.buckets[(int(self.r.seg[i]), int(self.hour[i]))].append(i)

    def candidates(
        self, i: int, *, shift_s: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indexes, distances in m, (n, 5) levels) of the candidates of report ``i`` (as if it
        had been observed ``shift_s`` later)."""
        r, seg = self.r, int(self.r.seg[i])
        if seg < 0:
            return _NONE
        t_i = r.t[i] + shift_s
        h = int(np.floor(t_i / 3600))
        get = self.buckets.get
        lists = [
            get((int(s), hh), [])
            for s in self.neighbours[seg]
            for hh in range(h - self.reach_h, h + self.reach_h + 1)
        ]
        j = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64)
        if not len(j):
            return _NONE
        dt = r.t[j] - t_i
        same = (r.key[j] == r.key[i]) & (
            (r.device[j] < 0) | (r.device[i] < 0) | (r.device[j] == r.device[i])
        )
        j, dt = (
            j[~same & (np.abs(dt) <= self.windows.max_hours * 3600)],
            dt[~same & (np.abs(dt) <= self.windows.max_hours * 3600)],
        )
        flip = j < i  # measure from the smaller index: exactly symmetric
        x0, y0 = np.where(flip, r.lon[j], r.lon[i]), np.where(flip, r.lat[j], r.lat[i])
        x1, y1 = np.where(flip, r.lon[i], r.lon[j]), np.where(flip, r.lat[i], r.lat[j])
        _, _, metres = GEOD.inv(x0, y0, x1, y1)
        near = np.asarray(metres) <= self.windows.max_km * 1000
        j, dt, metres = j[near], dt[near], np.asarray(metres)[near]
        levels = compare_arrays(
            distance_m=metres,
            dt_s=dt,
            people_a=np.full(len(j), r.people[i]),
            people_b=r.people[j],
            same_direction=r.direction[j] == r.direction[i],
            direction_missing=(r.direction[j] < 0) | (r.direction[i] < 0),
            same_kind=r.kind[j] == r.kind[i],
        )
        return j, metres, levels


_NONE = (np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros((0, 5), dtype=np.int64))


def full_index(r: Reports, neighbours: list[np.ndarray], windows: LinkWindows) -> BucketIndex:
    index = BucketIndex(r, neighbours, windows)
    for i in range(len(r)):
        index.add(i)
    return index


def estimate_u_sample(
    index: BucketIndex, ids: np.ndarray, *, rng: np.random.Generator
) -> tuple[LevelShares, dict[str, float], int]:
    """u from one random candidate of each of U_SAMPLE random reports, each looked for 1-7 days
    away (so never its own group's), the shift taken out of the time difference; and each
    segment's crowding from how many such candidates its sampled reports had."""
    rows, found = [], []
    for i in rng.choice(len(index.r), min(U_SAMPLE, len(index.r)), replace=False).tolist():
        days = int(rng.integers(1, 8)) * int(rng.choice([-1, 1]))
        j, _, levels = index.candidates(i, shift_s=days * 86_400.0)
        if index.r.seg[i] >= 0:
            found.append((str(ids[index.r.seg[i]]), len(j)))
        if len(j):
            rows.append(levels[rng.integers(len(j))])
    return shares_of(np.array(rows)), estimate_crowding(found), len(rows)


def pair_weights(
    model: MatchModel, levels: np.ndarray, seg_i: np.ndarray, seg_j: np.ndarray, crowd: np.ndarray
) -> np.ndarray:
    """Total weights of pairs: the fields' terms and the crowding term of their segments."""
    fields = model.weights(levels.astype(np.int64)).sum(axis=1)
    total: np.ndarray = fields + crowding_bits(crowd[seg_i], crowd[seg_j])
    return total


@dataclass
class Arrivals:
    """Every candidate pair scored on arrival (``i`` arrived after ``j``), the groups the live
    book ended with, and where the time went (s)."""

    i: np.ndarray
    j: np.ndarray
    levels: np.ndarray
    group_of: dict[int, int]
    seconds: dict[str, float]


def arrive(
    r: Reports,
    neighbours: list[np.ndarray],
    windows: LinkWindows,
    model: MatchModel,
    crowd: np.ndarray,
) -> Arrivals:
    """Every report in received order: find its candidates, score them, regroup."""
    index = BucketIndex(r, neighbours, windows)
    book: GroupBook[int] = GroupBook()
    seen_i: list[np.ndarray] = []
    seen_j: list[np.ndarray] = []
    seen_levels: list[np.ndarray] = []
    spent = {"search_and_compare": 0.0, "weigh": 0.0, "group": 0.0, "index": 0.0}
    clock = time.perf_counter
    cpu_started = time.process_time()
    for i in np.argsort(r.received, kind="stable").tolist():
        t0 = clock()
        j, _, levels = index.candidates(i)
        t1 = clock()
        weight = pair_weights(model, levels, r.seg[j], np.full(len(j), r.seg[i]), crowd)
        hit = weight >= model.threshold
        t2 = clock()
        book.add(
            i, [Edge(i, b, w) for b, w in zip(j[hit].tolist(), weight[hit].tolist(), strict=True)]
        )
        t3 = clock()
        index.add(i)
        t4 = clock()
        spent["search_and_compare"] += t1 - t0
        spent["weigh"] += t2 - t1
        spent["group"] += t3 - t2
        spent["index"] += t4 - t3
        if len(j):
            seen_i.append(np.full(len(j), i))
            seen_j.append(j)
            seen_levels.append(levels.astype(np.int8))
    spent["cpu"] = time.process_time() - cpu_started  # the whole loop, bookkeeping included
    return Arrivals(
        i=np.concatenate(seen_i) if seen_i else np.zeros(0, dtype=np.int64),
        j=np.concatenate(seen_j) if seen_j else np.zeros(0, dtype=np.int64),
        levels=np.concatenate(seen_levels) if seen_levels else np.zeros((0, 5), dtype=np.int8),
        group_of=dict(book.group_of),
        seconds=spent,
    )


def pair_figures(tp: int, predicted: int, true: int) -> dict[str, float]:
    precision = tp / predicted if predicted else 1.0
    recall = tp / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "predicted_pairs": predicted, "true_positive_pairs": tp}  # fmt: skip


def group_pairs(group_of: dict[int, int], truth: np.ndarray) -> tuple[int, int]:
    """(true positive pairs, predicted pairs) of a grouping: every two reports in one group."""
    members: dict[int, list[int]] = defaultdict(list)
    for k, g in group_of.items():
        members[g].append(k)
    tp = predicted = 0
    for ks in members.values():
        if len(ks) < 2:
            continue
        predicted += len(ks) * (len(ks) - 1) // 2
        _, counts = np.unique(truth[ks], return_counts=True)
        tp += int((counts * (counts - 1) // 2).sum())
    return tp, predicted


def figures_of(group_of: dict[int, int], r: Reports, true_people: np.ndarray) -> dict[str, Any]:
    """Groups and people as the service would count them, against the truth."""
    by_group: dict[int, int] = {}
    for k, g in group_of.items():
        by_group[g] = max(by_group.get(g, 0), int(r.people[k]))
    truth_groups = len(np.unique(r.truth))
    return {
        "reports": len(r),
        "groups": len(by_group),
        "true_groups": truth_groups,
        "people": int(r.people.sum()),
        "people_est": sum(by_group.values()),
        "true_people": int(true_people.sum()),
    }


def evaluate(
    r: Reports,
    arrivals: Arrivals,
    model: MatchModel,
    crowd: np.ndarray,
    *,
    grouping: dict[int, int] | None,
) -> dict[str, Any]:
    """Pairwise figures of links and groups at the model's threshold, and links at others."""
    truth = r.truth
    same = truth[arrivals.i] == truth[arrivals.j]
    _, counts = np.unique(truth, return_counts=True)
    true_pairs = int((counts * (counts - 1) // 2).sum())
    weight = pair_weights(model, arrivals.levels, r.seg[arrivals.i], r.seg[arrivals.j], crowd)
    sweep = {}
    for threshold in (*THRESHOLDS, model.threshold):
        hit = weight >= threshold
        sweep[f"{threshold:g}"] = pair_figures(int((hit & same).sum()), int(hit.sum()), true_pairs)
    hit = weight >= model.threshold
    if grouping is None:  # offline: the batch rule over every link (equal to the live book's)
        edges = [
            Edge(int(a), int(b), float(w))
            for a, b, w in zip(arrivals.i[hit], arrivals.j[hit], weight[hit], strict=True)
        ]
        grouping = assign_groups(range(len(r)), edges)
    tp, predicted = group_pairs(grouping, truth)
    groups_sweep = {}
    for threshold in GROUP_THRESHOLDS:  # offline, the batch rule (equal to live: see the tests)
        hit_t = weight >= threshold
        edges = [
            Edge(int(a), int(b), float(w))
            for a, b, w in zip(arrivals.i[hit_t], arrivals.j[hit_t], weight[hit_t], strict=True)
        ]
        g_tp, g_predicted = group_pairs(assign_groups(range(len(r)), edges), truth)
        groups_sweep[f"{threshold:g}"] = pair_figures(g_tp, g_predicted, true_pairs)
    hard = (arrivals.i >= r.base + r.dups) | (arrivals.j >= r.base + r.dups)
    return {
        "false_links_with_a_hard_negative": int((hit & ~same & hard).sum()),
        "false_links_background": int((hit & ~same & ~hard).sum()),
        "threshold": model.threshold,
        "true_pairs": true_pairs,
        "candidate_pairs": len(weight),
        "true_pairs_among_candidates": int(same.sum()),
        "links": sweep[f"{model.threshold:g}"],
        "groups": pair_figures(tp, predicted, true_pairs),
        "links_by_threshold": sweep,
        "groups_by_threshold": groups_sweep,
        "grouping": grouping,
    }


def oracle_bound(
    r: Reports, arrivals: Arrivals, crowd: np.ndarray, *, recall: float = 0.9
) -> dict[str, float]:
    """The best precision *any* rule on the five comparison levels (and the crowding, in whole
    bits) reaches at ``recall``, on these very pairs: the level combinations taken purest first,
    their true and false pairs counted from the truth. An in-sample upper bound."""
    same = r.truth[arrivals.i] == r.truth[arrivals.j]
    busy = np.round(-crowding_bits(crowd[r.seg[arrivals.i]], crowd[r.seg[arrivals.j]]))
    cell = np.ravel_multi_index(
        (*arrivals.levels.astype(np.int64).T, busy.astype(np.int64)), (6, 4, 4, 3, 2, 64)
    )
    true_in = np.bincount(cell, weights=same, minlength=6 * 4 * 4 * 3 * 2 * 64)
    all_in = np.bincount(cell, minlength=len(true_in))
    order = np.argsort(-(true_in / np.maximum(all_in, 1)), kind="stable")
    _, counts = np.unique(r.truth, return_counts=True)
    true_pairs = int((counts * (counts - 1) // 2).sum())
    tp, taken = np.cumsum(true_in[order]), np.cumsum(all_in[order])
    k = int(np.searchsorted(tp, recall * true_pairs))
    if k >= len(tp):
        return {"recall": float(tp[-1] / true_pairs), "precision": float(tp[-1] / taken[-1])}
    return {
        "recall": round(float(tp[k] / true_pairs), 4),
        "precision": round(float(tp[k] / taken[k]), 4),
    }


def record_of(r: Reports, i: int, index_segments: np.ndarray) -> LinkRecord:
    seg = int(r.seg[i])
    return LinkRecord(
        id=UUID(int=i),
        observed_at=EPOCH + timedelta(seconds=float(r.t[i])),
        lon=float(r.lon[i]),
        lat=float(r.lat[i]),
        segment_id=str(index_segments[seg]) if seg >= 0 else None,
        people_count=int(r.people[i]),
        kind=KINDS[r.kind[i]],
        direction=None if r.direction[i] < 0 else DIRECTIONS[r.direction[i]],
        key_id=f"key-{r.key[i]}",
        device_id=None if r.device[i] < 0 else f"dev-{r.device[i]:05d}",
    )


EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def check_against_domain(
    index: BucketIndex, model: MatchModel, neighbours_by_id: dict[str, frozenset[str]],
    ids: np.ndarray, crowd: np.ndarray, *, rng: np.random.Generator, n: int = 300,
) -> int:  # fmt: skip
    """How many of ``n`` random reports get other candidates or levels from the bench's vectorised
    search than from ``linking.score_candidates`` over every report of their buckets (0 expected)."""
    r, bad = index.r, 0
    for i in rng.choice(len(r), n, replace=False).tolist():
        j, _, levels = index.candidates(i)
        if r.seg[i] < 0:
            continue
        seg, h = int(r.seg[i]), int(index.hour[i])
        pool = [
            record_of(r, k, ids)
            for s in index.neighbours[seg]
            for hh in range(h - index.reach_h, h + index.reach_h + 1)
            for k in index.buckets.get((int(s), hh), [])
        ]
        links = score_candidates(record_of(r, i, ids), pool, model=model,
                                 windows=index.windows, neighbours=neighbours_by_id)  # fmt: skip
        mine = {int(k): tuple(int(v) for v in row) for k, row in zip(j, levels, strict=True)}
        theirs = {(lk.b.int if lk.a.int == i else lk.a.int): lk.weight.levels for lk in links}
        bad += mine != theirs
    return bad


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    r = make_reports(args.reports, seed=args.seed, dup_rate=args.dup_rate, hard_rate=args.hard_rate)
    made_s = time.perf_counter() - started
    seg_index = segment_index()
    by_id = segment_neighbours(seg_index.segments)
    number = {s: k for k, s in enumerate(seg_index.ids.tolist())}
    neighbours = [
        np.array([k, *sorted(number[x] for x in by_id[s])]) for k, s in enumerate(seg_index.ids)
    ]
    windows = LinkWindows(max_hours=args.max_hours, max_km=args.max_km)
    rng = np.random.default_rng(args.seed + 30)
    index = full_index(r, neighbours, windows)
    stored: dict[str, Any] | None = None
    if args.store_model:  # u and crowding as a store estimates and keeps them
        from bench.link_cost import store_model

        model, stored = store_model(
            r, sample=args.store_sample, seed=args.seed, kind=args.store_model
        )
        assert model is not None, "too few unrelated pairs for the store to estimate u"
        u, crowding, u_pairs = model.u, dict(model.crowding), model.pairs
    else:
        u, crowding, u_pairs = estimate_u_sample(index, seg_index.ids, rng=rng)
    if args.no_crowding:
        crowding = {}
    crowd = np.array([crowding.get(s, 0.0) for s in seg_index.ids.tolist()] + [0.0])  # [-1]: none
    default_model = MatchModel(m=DEFAULT_M, u=u, threshold=args.threshold, crowding=crowding)
    mismatches = check_against_domain(index, default_model, by_id, seg_index.ids, crowd, rng=rng)
    del index

    arrivals = arrive(r, neighbours, windows, default_model, crowd)
    live = evaluate(r, arrivals, default_model, crowd, grouping=arrivals.group_of)
    batch = assign_groups(range(len(r)), [
        Edge(int(a), int(b), float(w)) for a, b, w, h in _hits(r, arrivals, default_model, crowd)
    ])  # fmt: skip
    # m from reviews: a random sample of true candidate pairs, as analysts would confirm them.
    same = np.flatnonzero(r.truth[arrivals.i] == r.truth[arrivals.j])
    reviewed = rng.choice(same, min(args.reviews, len(same)), replace=False)
    m_reviewed = shares_of(arrivals.levels[reviewed].astype(np.int64))
    reviewed_model = MatchModel(m=m_reviewed, u=u, threshold=args.threshold, crowding=crowding)
    offline = evaluate(r, arrivals, reviewed_model, crowd, grouping=None)

    true_people = np.zeros(r.truth.max() + 1, dtype=np.int64)
    originals = np.r_[0 : r.base, r.base + r.dups : len(r)]
    true_people[r.truth[originals]] = r.people[originals]
    n = len(r)
    return {
        "bench": "links",
        "base_reports": r.base,
        "duplicates": r.dups,
        "hard_negatives": r.hard,
        "reports": n,
        "snapped": int((r.seg >= 0).sum()),
        "seed": args.seed,
        "windows": {"max_hours": windows.max_hours, "max_km": windows.max_km},
        "u_from": "store" if stored is not None else "bench",
        "store_model": stored,
        "u_pairs": u_pairs,
        "u": {
            f: [round(x, 4) for x in u.of(f)]
            for f in ("distance", "time", "people", "direction", "kind")
        },
        "m_reviewed": {
            f: [round(x, 4) for x in m_reviewed.of(f)]
            for f in ("distance", "time", "people", "direction", "kind")
        },
        "crowding": {
            "segments": len(crowding),
            "quantiles_p50_p90_p99_max": [
                round(float(q), 2)
                for q in np.quantile(list(crowding.values()) or [0.0], [0.5, 0.9, 0.99, 1.0])
            ],
        },
        "domain_mismatches": mismatches,
        "live_equals_batch": batch == arrivals.group_of,
        "default_m": {k: v for k, v in live.items() if k != "grouping"},
        "reviewed_m": {k: v for k, v in offline.items() if k != "grouping"},
        "oracle_bound_at_recall_0.9": oracle_bound(r, arrivals, crowd),
        "figures_default_m": figures_of(arrivals.group_of, r, true_people),
        "figures_reviewed_m": figures_of(offline["grouping"], r, true_people),
        "cost_us_per_report": {k: round(v / n * 1e6, 2) for k, v in arrivals.seconds.items()}
        | {"wall": round(sum(v for k, v in arrivals.seconds.items() if k != "cpu") / n * 1e6, 2)},
        "load_average_1m": os.getloadavg()[0],
        "candidates_per_report": round(len(arrivals.i) * 2 / n, 2),
        "generate_s": round(made_s, 1),
    }


def _hits(r: Reports, arrivals: Arrivals, model: MatchModel, crowd: np.ndarray) -> Any:
    weight = pair_weights(model, arrivals.levels, r.seg[arrivals.i], r.seg[arrivals.j], crowd)
    hit = weight >= model.threshold
    return zip(arrivals.i[hit], arrivals.j[hit], weight[hit], hit[hit], strict=True)


def table(result: dict[str, Any]) -> str:
    lines = [
        f"reports {result['reports']:,} ({result['base_reports']:,} base, "
        f"{result['duplicates']:,} duplicates, {result['hard_negatives']:,} hard negatives); "
        f"candidates/report {result['candidates_per_report']}",
        f"{'model':<12} {'what':<7} {'precision':>9} {'recall':>7} {'F1':>6}",
    ]
    for name in ("default_m", "reviewed_m"):
        for what in ("links", "groups"):
            f = result[name][what]
            lines.append(
                f"{name:<12} {what:<7} {f['precision']:>9.4f} {f['recall']:>7.4f} {f['f1']:>6.4f}"
            )
    for name in ("default_m", "reviewed_m"):
        for what in ("links", "groups"):
            lines.append(f"{what} by threshold ({name}): " + ", ".join(
                f"{t}: P {f['precision']:.3f} R {f['recall']:.3f}"
                for t, f in sorted(result[name][f"{what}_by_threshold"].items(), key=lambda x: float(x[0]))
            ))  # fmt: skip
        lines.append(f"false links ({name}): {result[name]['false_links_with_a_hard_negative']:,}"
                     f" with a hard negative, {result[name]['false_links_background']:,} background")  # fmt: skip
    for name in ("figures_default_m", "figures_reviewed_m"):
        f = result[name]
        lines.append(
            f"{name}: groups {f['groups']:,} (true {f['true_groups']:,}), people_est "
            f"{f['people_est']:,} (true {f['true_people']:,}; raw sum {f['people']:,})"
        )
    if result.get("store_model"):
        s = result["store_model"]
        lines.append(
            f"store's estimate: {s['sampled_reports']:,} reports, {s['pairs']:,} pairs in "
            f"{s['estimate_s']} s; {s['rescored_links']:,} links rescored in {s['rescore_s']} s"
        )
        for name in ("store_links_before_estimate", "store_links_after_rescoring"):
            f = s[name]
            lines.append(f"{name}: P {f['precision']:.4f} R {f['recall']:.4f} F1 {f['f1']:.4f}")
    o = result["oracle_bound_at_recall_0.9"]
    lines.append(
        f"best any rule on these comparisons can do: P {o['precision']:.3f} at R {o['recall']:.3f}"
    )
    cost = result["cost_us_per_report"]
    lines.append("cost per report (us): " + ", ".join(f"{k} {v}" for k, v in cost.items()))
    return "\n".join(lines)


def main() -> None:
    from service.settings import Settings

    defaults = Settings.model_fields
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--dup-rate", type=float, default=0.2)
    parser.add_argument("--hard-rate", type=float, default=0.1)
    parser.add_argument("--reviews", type=int, default=500)
    parser.add_argument("--threshold", type=float, default=defaults["link_threshold_bits"].default)
    parser.add_argument("--max-hours", type=float, default=defaults["link_max_hours"].default)
    parser.add_argument("--max-km", type=float, default=defaults["link_max_km"].default)
    parser.add_argument(
        "--no-crowding", action="store_true", help="weights without the crowding term"
    )
    parser.add_argument(
        "--store-model",
        choices=("sqlite", "postgis"),
        help="u and the crowding from a store's estimate (the reports ingested into a fresh"
        " store, then `crossings links estimate`'s work), and the store's links before and"
        " after rescoring",
    )
    parser.add_argument(
        "--store-sample", type=int, default=U_SAMPLE, help="reports the store's estimate draws"
    )
    args = parser.parse_args()
    # One core: the cost per report is per-core work, and the machine is shared.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    result = run(args)
    print(json.dumps(result))
    print(table(result))


if __name__ == "__main__":
    main()
