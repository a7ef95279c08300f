"""A slow geodesic reference for snapping, sharing no code with the service.

Each edge is the curve drawn straight in lon/lat between two vertices. The reference samples every
edge that could hold the nearest point densely (2,049 samples), then refines the best samples by
golden-section search on the edge parameter, every distance measured with pyproj ``Geod.inv``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pyproj import Geod

from service.domain.segments import BorderSegment

GEOD = Geod(ellps="WGS84")
SAMPLES = 2049
GOLDEN_STEPS = 70  # 0.618**70 ~ 2e-15 of a sample interval: float precision


@dataclass(frozen=True, slots=True)
class Edges:
    """Every edge of every segment, numbered as the segments list them, one after another."""

    segment: np.ndarray
    ax: np.ndarray
    ay: np.ndarray
    bx: np.ndarray
    by: np.ndarray
    path_m: np.ndarray  # length of the lon/lat-straight curve, not of the geodesic chord

    @classmethod
    def of(cls, segments: Sequence[BorderSegment]) -> Edges:
        seg, ax, ay, bx, by = [], [], [], [], []
        for number, segment in enumerate(segments):
            for (x0, y0), (x1, y1) in zip(segment.coords[:-1], segment.coords[1:], strict=True):
                seg.append(number)
                ax.append(x0)
                ay.append(y0)
                bx.append(x1)
                by.append(y1)
        a_lon, a_lat, b_lon, b_lat = (np.array(v, dtype=float) for v in (ax, ay, bx, by))
        t = np.linspace(0.0, 1.0, 65)
        lon = a_lon[:, None] + t * (b_lon - a_lon)[:, None]
        lat = a_lat[:, None] + t * (b_lat - a_lat)[:, None]
        _, _, pieces = GEOD.inv(lon[:, :-1], lat[:, :-1], lon[:, 1:], lat[:, 1:])
        path_m = np.asarray(pieces).sum(axis=1)
        return cls(np.array(seg), a_lon, a_lat, b_lon, b_lat, path_m)

    def at(self, edge: np.ndarray | int, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        return (
            self.ax[edge] + t * (self.bx[edge] - self.ax[edge]),
            self.ay[edge] + t * (self.by[edge] - self.ay[edge]),
        )


@dataclass(frozen=True, slots=True)
class Nearest:
    edge: int
    t: float
    distance_m: float


def _distance(
    edges: Edges, point: tuple[float, float], *, edge: np.ndarray, t: np.ndarray
) -> np.ndarray:
    x, y = edges.at(edge, t)
    _, _, d = GEOD.inv(np.full(x.shape, point[0]), np.full(x.shape, point[1]), x, y)
    return np.asarray(d)


def nearby_edges(edges: Edges, point: tuple[float, float], *, window_m: float) -> np.ndarray:
    """Edges whose lon/lat box meets a generous box around the point (1 degree >= 100 km)."""
    lon, lat = point
    dlat = window_m / 100_000
    dlon = dlat / math.cos(math.radians(min(abs(lat) + dlat, 89.0)))
    hit = (
        (np.minimum(edges.ax, edges.bx) <= lon + dlon)
        & (np.maximum(edges.ax, edges.bx) >= lon - dlon)
        & (np.minimum(edges.ay, edges.by) <= lat + dlat)
        & (np.maximum(edges.ay, edges.by) >= lat - dlat)
    )
    return np.flatnonzero(hit)


def nearest_on_border(edges: Edges, point: tuple[float, float], *, window_m: float) -> Nearest:
    """The geodesically nearest point of the border to (lon, lat), by dense search."""
    near = nearby_edges(edges, point, window_m=window_m)
    assert len(near), "no edge in the window"
    da = _distance(edges, point, edge=near, t=np.zeros(len(near)))
    db = _distance(edges, point, edge=near, t=np.ones(len(near)))
    upper = float(np.minimum(da, db).min())
    assert upper < window_m, "the window is too small for this point"
    # Every point of an edge is within half its curve length of an endpoint.
    near = near[np.minimum(da, db) - 0.5 * edges.path_m[near] - 1.0 <= upper]

    t = np.linspace(0.0, 1.0, SAMPLES)
    d = _distance(edges, point, edge=np.repeat(near, SAMPLES), t=np.tile(t, len(near)))
    d = d.reshape(len(near), SAMPLES)
    best = d.argmin(axis=1)
    sampled = d[np.arange(len(near)), best]
    # A sample lies within half a spacing of the true foot, so it overstates by at most that.
    slack = float(edges.path_m[near].max()) / (SAMPLES - 1) / 2 + 0.01
    keep = sampled <= sampled.min() + slack
    near, best = near[keep], best[keep]

    step = 1.0 / (SAMPLES - 1)
    lo = np.clip(t[best] - step, 0.0, 1.0)
    hi = np.clip(t[best] + step, 0.0, 1.0)
    ratio = (math.sqrt(5) - 1) / 2
    x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    f1 = _distance(edges, point, edge=near, t=x1)
    f2 = _distance(edges, point, edge=near, t=x2)
    for _ in range(GOLDEN_STEPS):
        left = f1 < f2  # the minimum lies in [lo, x2]: drop (x2, hi], else drop [lo, x1)
        lo, hi = np.where(left, lo, x1), np.where(left, x2, hi)
        fresh = np.where(left, hi - ratio * (hi - lo), lo + ratio * (hi - lo))
        f_fresh = _distance(edges, point, edge=near, t=fresh)
        x1, x2, f1, f2 = (
            np.where(left, fresh, x2),
            np.where(left, x1, fresh),
            np.where(left, f_fresh, f2),
            np.where(left, f1, f_fresh),
        )
    tt = np.concatenate([x1, x2, lo, hi])
    ee = np.tile(near, 4)
    dd = _distance(edges, point, edge=ee, t=tt)
    i = int(dd.argmin())
    return Nearest(edge=int(ee[i]), t=float(tt[i]), distance_m=float(dd[i]))
