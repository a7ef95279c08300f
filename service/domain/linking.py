"""Linking reports of one crossing made by different monitors (issue #20): which pairs are
candidates, and how strongly each candidate pair looks like one group seen twice.

The score is a Fellegi-Sunter match weight: every pair is compared on five fields, each
comparison falls in one *level* (e.g. "100-250 m apart"), and the weight is the sum over fields of
log2(m / u), where m is how often true duplicates fall in that level and u how often unrelated
candidate pairs do. Each field's term is kept, so a link says why it was made.

Only candidate pairs are ever scored (different monitors, same or adjacent segment, within the
time and distance windows), so u is the share among *candidate* pairs, not among all pairs of the
store: conditioned on the blocking, as the weights are used. The groups that links form are in
``link_groups``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from uuid import UUID

import numpy as np
import numpy.typing as npt

from service.domain.geodesy import GEOD
from service.domain.reports import Report
from service.domain.segments import BorderSegment

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

FIELDS = ("distance", "time", "people", "direction", "kind")
# Upper edges of the levels (the last level runs to the window's edge).
DISTANCE_EDGES_M = (100.0, 250.0, 500.0, 1_000.0, 2_500.0)
TIME_EDGES_S = (900.0, 3_600.0, 3 * 3_600.0)
PEOPLE_RATIOS = (1.0, 1.25, 2.0)  # larger / smaller count: equal, <= 1.25, <= 2, else
LEVEL_NAMES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "distance": ("<=100 m", "<=250 m", "<=500 m", "<=1 km", "<=2.5 km", "farther"),
        "time": ("<=15 min", "<=1 h", "<=3 h", "longer"),
        "people": ("equal", "ratio<=1.25", "ratio<=2", "other"),
        "direction": ("equal", "missing", "different"),
        "kind": ("equal", "different"),
    }
)
# Probabilities are kept inside [FLOOR, 1 - FLOOR]: a level never seen in a sample must not
# make a weight infinite (reclin2's mprob_max / uprob_min do the same).
FLOOR = 1e-4

Levels = tuple[int, int, int, int, int]  # one level per field, in FIELDS order


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """What linking reads of a stored report. ``key_id`` is the API key that posted it (None:
    anonymous), ``segment_id`` its snapped segment (None: beyond reach, never linked)."""

    id: UUID
    observed_at: datetime
    lon: float
    lat: float
    segment_id: str | None
    people_count: int
    kind: str
    direction: str | None
    key_id: str | None
    device_id: str | None

    @classmethod
    def from_report(cls, report: Report, *, key_id: str | None) -> LinkRecord:
        """The record of a stored report posted with ``key_id`` (None: anonymous)."""
        d = report.draft
        return cls(
            id=d.id,
            observed_at=d.observed_at,
            lon=d.lon,
            lat=d.lat,
            segment_id=report.snap.segment_id,
            people_count=d.people_count,
            kind=d.kind,
            direction=d.direction,
            key_id=key_id,
            device_id=d.device_id,
        )


@dataclass(frozen=True, slots=True)
class LinkWindows:
    """A pair farther apart than either window is never a candidate."""

    max_hours: float = 6.0
    max_km: float = 5.0


@dataclass(frozen=True, slots=True)
class LevelShares:
    """For each field, the probability of each of its levels (each tuple sums to 1)."""

    distance: tuple[float, ...]
    time: tuple[float, ...]
    people: tuple[float, ...]
    direction: tuple[float, ...]
    kind: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in FIELDS:
            shares = getattr(self, name)
            if len(shares) != len(LEVEL_NAMES[name]):
                raise ValueError(f"{name}: {len(LEVEL_NAMES[name])} levels, not {len(shares)}")
            if any(s < 0 for s in shares) or not np.isclose(sum(shares), 1.0, atol=1e-6):
                raise ValueError(f"{name}: shares must be >= 0 and sum to 1")

    def of(self, name: str) -> tuple[float, ...]:
        shares: tuple[float, ...] = getattr(self, name)
        return shares


# m until enough reviews: judged, not fitted. A second monitor's report of the same group is
# mostly within a few hundred metres and a few hours, with about the same count and direction.
DEFAULT_M = LevelShares(
    distance=(0.20, 0.30, 0.30, 0.12, 0.06, 0.02),
    time=(0.30, 0.30, 0.30, 0.10),
    people=(0.45, 0.10, 0.35, 0.10),
    direction=(0.70, 0.25, 0.05),
    kind=(0.85, 0.15),
)
# u until the store holds data: unrelated candidates spread evenly over the 5 km disc and the
# +-6 h window (P(d <= r) = (r / 5 km)^2), counts and directions as the field apps send them.
DEFAULT_U = LevelShares(
    distance=(0.0004, 0.0021, 0.0075, 0.03, 0.21, 0.75),
    time=(0.0417, 0.125, 0.3333, 0.5),
    people=(0.20, 0.05, 0.40, 0.35),
    direction=(0.35, 0.30, 0.35),
    kind=(0.40, 0.60),
)


@dataclass(frozen=True, slots=True)
class MatchModel:
    """m, u, the crowding of each segment and the threshold a pair's total weight must reach to
    be linked (bits).

    ``crowding[segment_id]`` is how many unrelated candidates a report on that segment has, on
    average (``estimate_crowding``). Where many unrelated groups cross, any one candidate is less
    likely to be the same group: the prior odds of a pair fall as 1 / crowding, so a pair's
    weight gets -log2(crowding) of the busier of its two segments (nothing below 1).
    """

    m: LevelShares = DEFAULT_M
    u: LevelShares = DEFAULT_U
    threshold: float = 1.0
    crowding: Mapping[str, float] = field(default_factory=dict)
    tables: tuple[FloatArray, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tables = []
        for name in FIELDS:
            m = np.clip(np.array(self.m.of(name)), FLOOR, 1 - FLOOR)
            u = np.clip(np.array(self.u.of(name)), FLOOR, 1 - FLOOR)
            tables.append(np.log2(m / u))
        object.__setattr__(self, "tables", tuple(tables))

    def crowding_bits(self, a: str | None, b: str | None) -> float:
        """The crowding term of a pair on segments a and b (<= 0)."""
        busiest = max(self.crowding.get(a or "", 0.0), self.crowding.get(b or "", 0.0))
        return -float(np.log2(max(1.0, busiest)))

    def weights(self, levels: IntArray) -> FloatArray:
        """(n, 5) levels -> (n, 5) weights in bits; a row's sum is its match weight."""
        out = np.empty(levels.shape, dtype=np.float64)
        for column, table in enumerate(self.tables):
            out[:, column] = table[levels[:, column]]
        return out


@dataclass(frozen=True, slots=True)
class MatchWeight:
    """One pair's levels, the weight each field adds (bits; and ``crowding``, see MatchModel) and
    their sum."""

    levels: Levels
    per_field: Mapping[str, float]
    total: float

    def explain(self) -> dict[str, dict[str, str | float]]:
        """For each field: the level it fell in and the bits it added; then the crowding term."""
        out: dict[str, dict[str, str | float]] = {
            name: {"level": LEVEL_NAMES[name][level], "weight": round(self.per_field[name], 3)}
            for name, level in zip(FIELDS, self.levels, strict=True)
        }
        out["crowding"] = {"level": "", "weight": round(self.per_field["crowding"], 3)}
        return out


@dataclass(frozen=True, slots=True)
class Link:
    """A scored candidate pair, ``a < b``; ``is_match`` when its total reaches the threshold."""

    a: UUID
    b: UUID
    weight: MatchWeight
    is_match: bool


# --- the candidate rule -----------------------------------------------------------------------


def same_source(a: LinkRecord, b: LinkRecord) -> bool:
    """Whether one monitor may have sent both: the same key, and the same device or a device
    unknown on either side (a shared organisation key tells its monitors apart by device)."""
    if a.key_id != b.key_id:
        return False
    return a.device_id is None or b.device_id is None or a.device_id == b.device_id


def segment_neighbours(segments: Sequence[BorderSegment]) -> dict[str, frozenset[str]]:
    """Each segment's adjacent segments: those of its border whose line starts or ends where it
    starts or ends (consecutive segments share an end coordinate exactly)."""
    at: dict[tuple[str, tuple[float, float]], set[str]] = {}
    for s in segments:
        for end in (s.coords[0], s.coords[-1]):
            at.setdefault((s.border, end), set()).add(s.segment_id)
    out: dict[str, frozenset[str]] = {}
    for s in segments:
        near = at[(s.border, s.coords[0])] | at[(s.border, s.coords[-1])]
        out[s.segment_id] = frozenset(near - {s.segment_id})
    return out


def near_segments(a: str | None, b: str | None, neighbours: Mapping[str, frozenset[str]]) -> bool:
    """Same or adjacent segment; an unsnapped report is near nothing."""
    if a is None or b is None:
        return False
    return a == b or b in neighbours.get(a, frozenset())


def distance_m(a: LinkRecord, b: LinkRecord) -> float:
    """Geodesic (WGS84) distance, measured from the smaller id so that it is exactly symmetric."""
    first, second = (a, b) if a.id <= b.id else (b, a)
    _, _, metres = GEOD.inv(first.lon, first.lat, second.lon, second.lat)
    return float(metres)


def is_candidate(
    a: LinkRecord,
    b: LinkRecord,
    *,
    windows: LinkWindows,
    neighbours: Mapping[str, frozenset[str]],
) -> bool:
    """Whether a and b may be scored at all: different monitors, same or adjacent segment, within
    both windows."""
    if a.id == b.id or same_source(a, b):
        return False
    if not near_segments(a.segment_id, b.segment_id, neighbours):
        return False
    if abs((a.observed_at - b.observed_at).total_seconds()) > windows.max_hours * 3600:
        return False
    return distance_m(a, b) <= windows.max_km * 1000


# --- comparing ----------------------------------------------------------------------------------


def compare_arrays(
    *,
    distance_m: FloatArray,
    dt_s: FloatArray,
    people_a: IntArray,
    people_b: IntArray,
    same_direction: npt.NDArray[np.bool_],
    direction_missing: npt.NDArray[np.bool_],
    same_kind: npt.NDArray[np.bool_],
) -> IntArray:
    """(n, 5) comparison levels of n pairs, in FIELDS order."""
    n = len(distance_m)
    levels = np.empty((n, 5), dtype=np.int64)
    levels[:, 0] = np.searchsorted(DISTANCE_EDGES_M, distance_m, side="left")
    levels[:, 1] = np.searchsorted(TIME_EDGES_S, np.abs(dt_s), side="left")
    big = np.maximum(people_a, people_b).astype(np.float64)
    small = np.maximum(np.minimum(people_a, people_b), 1e-9)
    ratio = np.where(people_a == people_b, 1.0, big / small)
    levels[:, 2] = np.searchsorted(PEOPLE_RATIOS, ratio, side="left")
    levels[:, 3] = np.where(direction_missing, 1, np.where(same_direction, 0, 2))
    levels[:, 4] = np.where(same_kind, 0, 1)
    return levels


def compare_many(new: LinkRecord, others: Sequence[LinkRecord]) -> tuple[FloatArray, IntArray]:
    """Geodesic distance (m) from ``new`` to each of ``others`` and the (len(others), 5) levels
    of each pair."""
    return compare_pairs([new] * len(others), others)


def compare_pairs(
    firsts: Sequence[LinkRecord], seconds: Sequence[LinkRecord]
) -> tuple[FloatArray, IntArray]:
    """Geodesic distance (m) and the (n, 5) levels of each pair (firsts[i], seconds[i])."""
    n = len(seconds)
    if n == 0:
        return np.zeros(0), np.zeros((0, 5), dtype=np.int64)
    pairs = list(zip(firsts, seconds, strict=True))
    flip = np.array([o.id < r.id for r, o in pairs])  # measure from the smaller id (symmetry)
    lon, lat = np.array([o.lon for o in seconds]), np.array([o.lat for o in seconds])
    lon0, lat0 = np.array([r.lon for r in firsts]), np.array([r.lat for r in firsts])
    _, _, metres = GEOD.inv(
        np.where(flip, lon, lon0), np.where(flip, lat, lat0),
        np.where(flip, lon0, lon), np.where(flip, lat0, lat),
    )  # fmt: skip
    distance = np.asarray(metres, dtype=np.float64)
    return distance, compare_arrays(
        distance_m=distance,
        dt_s=np.array([(o.observed_at - r.observed_at).total_seconds() for r, o in pairs]),
        people_a=np.array([r.people_count for r in firsts], dtype=np.int64),
        people_b=np.array([o.people_count for o in seconds], dtype=np.int64),
        same_direction=np.array([o.direction == r.direction for r, o in pairs]),
        direction_missing=np.array([o.direction is None or r.direction is None for r, o in pairs]),
        same_kind=np.array([o.kind == r.kind for r, o in pairs]),
    )


def compare(a: LinkRecord, b: LinkRecord) -> Levels:
    """The comparison levels of one pair (the same whichever is given first)."""
    row = compare_many(a, [b])[1][0]
    return (int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]))


def match_weight(
    levels: Levels, model: MatchModel, *, segments: tuple[str | None, str | None] = (None, None)
) -> MatchWeight:
    """The weight each field adds for these levels, the crowding term of the pair's two
    segments, and the total."""
    per_field = {
        name: float(table[level])
        for name, table, level in zip(FIELDS, model.tables, levels, strict=True)
    }
    per_field["crowding"] = model.crowding_bits(*segments)
    return MatchWeight(levels, MappingProxyType(per_field), float(sum(per_field.values())))


def _may_be_candidate(
    new: LinkRecord,
    other: LinkRecord,
    windows: LinkWindows,
    neighbours: Mapping[str, frozenset[str]],
) -> bool:
    """``is_candidate`` but for the distance, which the caller measures (for many pairs at once)."""
    return (
        other.id != new.id
        and not same_source(new, other)
        and near_segments(new.segment_id, other.segment_id, neighbours)
        and abs((other.observed_at - new.observed_at).total_seconds()) <= windows.max_hours * 3600
    )


def score_candidates(
    new: LinkRecord,
    pool: Iterable[LinkRecord],
    *,
    model: MatchModel,
    windows: LinkWindows,
    neighbours: Mapping[str, frozenset[str]],
) -> list[Link]:
    """Every candidate of ``new`` among ``pool`` (what an index found near it), scored; the
    caller keeps those with ``is_match`` as proposed links."""
    links = []
    for other, levels_of_pair in candidates(new, pool, windows=windows, neighbours=neighbours):
        weight = match_weight(levels_of_pair, model, segments=(new.segment_id, other.segment_id))
        a, b = sorted((new.id, other.id))
        links.append(Link(a, b, weight, weight.total >= model.threshold))
    return links


def candidates(
    new: LinkRecord,
    pool: Iterable[LinkRecord],
    *,
    windows: LinkWindows,
    neighbours: Mapping[str, frozenset[str]],
) -> list[tuple[LinkRecord, Levels]]:
    """The candidates of ``new`` among ``pool`` (``is_candidate``), each with the levels of the
    pair, in ``pool``'s order."""
    near = [o for o in pool if _may_be_candidate(new, o, windows, neighbours)]
    metres, levels = compare_many(new, near)
    return [
        (other, (int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4])))
        for other, row, far in zip(near, levels, metres > windows.max_km * 1000, strict=True)
        if not far
    ]


# A pair whose total, summed over arrays, comes this close to the threshold is scored again one
# at a time (match_weight), so that the decision is exactly score_candidates' whatever the
# rounding of the array sums.
_MARGIN_BITS = 1e-6


def matches_of_many(
    pools: Sequence[tuple[LinkRecord, Sequence[LinkRecord]]],
    *,
    model: MatchModel,
    windows: LinkWindows,
    neighbours: Mapping[str, frozenset[str]],
) -> list[Link]:
    """The matches (``is_match``) ``score_candidates`` finds for each (new report, its pool), in
    the same order and equal to its links, with every candidate pair of every new report
    compared and weighed in one pass over arrays: the linker scores a thousand new reports at
    a time, each with tens of candidates, where numpy's cost per call outweighed the work of
    a call per report. Only the pairs that reach the threshold become Link objects."""
    news: list[LinkRecord] = []
    others: list[LinkRecord] = []
    for new, pool in pools:
        for o in pool:
            if _may_be_candidate(new, o, windows, neighbours):
                news.append(new)
                others.append(o)
    if not others:
        return []
    distance, levels = compare_pairs(news, others)
    pairs = list(zip(news, others, strict=True))
    crowding: dict[tuple[str | None, str | None], float] = {}
    for r, o in pairs:
        key = (r.segment_id, o.segment_id)
        if key not in crowding:
            crowding[key] = model.crowding_bits(*key)
    w = model.weights(levels)
    total = w[:, 0] + w[:, 1] + w[:, 2] + w[:, 3] + w[:, 4]
    total += np.array([crowding[(r.segment_id, o.segment_id)] for r, o in pairs])
    near = ~(distance > windows.max_km * 1000)  # as score_candidates' "far"
    links = []
    for i in np.flatnonzero(near & (total >= model.threshold - _MARGIN_BITS)).tolist():
        new, other = pairs[i]
        row = levels[i]
        levels_of_pair = (int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]))
        weight = match_weight(levels_of_pair, model, segments=(new.segment_id, other.segment_id))
        if weight.total >= model.threshold:
            a, b = sorted((new.id, other.id))
            links.append(Link(a, b, weight, True))
    return links


# --- estimating m and u -------------------------------------------------------------------------


def shares_of(levels: IntArray, *, smoothing: float = 0.5) -> LevelShares:
    """Level shares of a sample of (n, 5) levels, each count plus ``smoothing`` (Jeffreys: a
    level never seen in the sample keeps a small share)."""
    out = {}
    for column, name in enumerate(FIELDS):
        k = len(LEVEL_NAMES[name])
        counts = np.bincount(levels[:, column], minlength=k)[:k] + smoothing
        out[name] = tuple(float(c) for c in counts / counts.sum())
    return LevelShares(**out)


def estimate_u(pairs: Iterable[tuple[LinkRecord, LinkRecord]]) -> LevelShares:
    """u from random unrelated candidate pairs of the stored data. Draw them so that they cannot
    be one group yet keep the local density: a random report, and a random report that would be
    its candidate were it observed a whole number of days (1-7) earlier or later, with that
    shift taken off the second's ``observed_at``. (Candidate pairs drawn as they are hold the
    duplicates themselves: where reports are sparse, those are most of them.) An empty sample
    gives DEFAULT_U."""
    levels = [compare(a, b) for a, b in pairs]
    if not levels:
        return DEFAULT_U
    return shares_of(np.array(levels, dtype=np.int64))


def estimate_crowding(samples: Iterable[tuple[str, int]]) -> dict[str, float]:
    """Each segment's crowding: the mean number of unrelated candidates of its sampled reports,
    from (segment_id, candidates found) of the same day-shifted search that draws u's pairs."""
    found: dict[str, list[int]] = {}
    for segment_id, count in samples:
        found.setdefault(segment_id, []).append(count)
    return {s: float(np.mean(c)) for s, c in sorted(found.items())}


def crowding_bits(crowding_a: FloatArray, crowding_b: FloatArray) -> FloatArray:
    """The crowding term of many pairs from their two segments' crowding (see MatchModel)."""
    bits: FloatArray = -np.log2(np.maximum(1.0, np.maximum(crowding_a, crowding_b)))
    return bits


def estimate_m(
    confirmed: Iterable[tuple[LinkRecord, LinkRecord]],
    *,
    defaults: LevelShares = DEFAULT_M,
    min_reviews: int = 200,
) -> LevelShares:
    """m from pairs analysts confirmed as one group, once there are ``min_reviews`` of them;
    ``defaults`` until then."""
    levels = [compare(a, b) for a, b in confirmed]
    if len(levels) < min_reviews:
        return defaults
    return shares_of(np.array(levels, dtype=np.int64))
