"""Throughput of ``snap_arrays`` on one core, for a realistic million points.

Run from the repository root: ``python -m bench.snapping [--points N] [--seed S] [--repeat R]``.
Prints one JSON object, then the same figures as a small table.

``--side-by-side`` measures two border files in one sitting: by default the bundled file and the
bundled file before issue #15 (its Mexico-US line from Natural Earth, rebuilt from
``tests/data``); ``--files A B`` names others. The process is pinned to one core, and the snaps
run in ``--repeat`` short rounds, each snapping every file once, the order alternating from round
to round (AB, BA, AB, ...) after an untimed round that warms both up. Each round gives a *paired*
ratio, the first file's time over the other's: a change of the machine's load between two
rounds, or between the halves of a sitting, moves both of a pair alike and so cannot decide the
ratio, and which file goes first in a pair does not favour either. The figure is the median of
the paired ratios, reported with their spread (quartiles, least, most); the ratio of the best
runs is reported too. It prints one JSON object, then a table. ``--startup R`` also measures
start-up as a server does it, R rounds (see ``startup_cpu_s``).

Realistic means: positions spread uniformly by *length* along the border (dense river sections have
100 m edges, so spreading by edge index would crowd them), pushed off the line roughly
perpendicularly by an exponential distance (mean 1.5 km), with 40% of the points instead
within 2 km of five busy crossings.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.domain.geodesy import GEOD
from service.domain.segments import SegmentIndex, parse_segment_collection
from service.domain.snapping import SnapArrays, snap_arrays
from service.storage.sqlite import SqliteStore
from service.usecases.segments import load_segments, stored_border

REPO = Path(__file__).resolve().parents[1]
SEGMENTS_PATH = REPO / "data" / "border_segments.geojson"
# The Mexico-US features of the bundled border before issue #15 (Natural Earth 1:10m): with today's
# Canada-US features, which did not change, they are that border again.
OLD_MX_US_PATH = REPO / "tests" / "data" / "old_mx_us_segments.geojson"
MAX_DISTANCE_M = 25_000.0  # the service default (Settings.max_snap_distance_m)
MEAN_OFFSET_M = 1_500.0
HOT_FRACTION = 0.4
HOT_RADIUS_M = 2_000.0
# (lon, lat) of five busy crossings: San Ysidro, Paso del Norte, Ambassador Bridge, Peace Arch,
# Champlain-Lacolle.
HOT_SPOTS = (
    (-117.02972, 32.54333),
    (-106.48698, 31.74765),
    (-83.074, 42.312),
    (-122.754389, 49.000111),
    (-73.452358, 45.008825),
)


def realistic_points(index: SegmentIndex, *, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) of ``n`` points drawn as the module docstring describes, in shuffled order."""
    rng = np.random.default_rng(seed)
    n_hot = int(n * HOT_FRACTION)
    n_line = n - n_hot

    cumulative = np.cumsum(index.length_m)
    along = rng.uniform(0.0, cumulative[-1], n_line)
    edge = np.minimum(np.searchsorted(cumulative, along, side="right"), len(cumulative) - 1)
    t = 1.0 - (cumulative[edge] - along) / index.length_m[edge]
    lon0 = index.ax[edge] + t * (index.bx[edge] - index.ax[edge])
    lat0 = index.ay[edge] + t * (index.by[edge] - index.ay[edge])
    heading, _, _ = GEOD.inv(index.ax[edge], index.ay[edge], index.bx[edge], index.by[edge])
    side = rng.choice([-90.0, 90.0], n_line)
    azimuth = np.asarray(heading) + side + rng.normal(0.0, 20.0, n_line)
    offset = rng.exponential(MEAN_OFFSET_M, n_line)
    line_lon, line_lat, _ = GEOD.fwd(lon0, lat0, azimuth, offset)

    spot = rng.integers(0, len(HOT_SPOTS), n_hot)
    spots = np.array(HOT_SPOTS)
    radius = HOT_RADIUS_M * np.sqrt(rng.uniform(0.0, 1.0, n_hot))  # uniform over the disc
    hot_lon, hot_lat, _ = GEOD.fwd(
        spots[spot, 0], spots[spot, 1], rng.uniform(0.0, 360.0, n_hot), radius
    )

    lon = np.concatenate([np.asarray(line_lon), np.asarray(hot_lon)])
    lat = np.concatenate([np.asarray(line_lat), np.asarray(hot_lat)])
    order = rng.permutation(n)
    return lon[order], lat[order]


def old_bundled_border() -> dict[str, Any]:
    """The bundled border before issue #15: today's Canada-US features, the old Mexico-US ones."""
    doc: dict[str, Any] = json.loads(SEGMENTS_PATH.read_text())
    old_mx_us = json.loads(OLD_MX_US_PATH.read_text())["features"]
    doc["features"] = [
        f for f in doc["features"] if f["properties"]["border"] != "MX-US"
    ] + old_mx_us
    return doc


@dataclass
class Run:
    """One border file under test: its index, its points, and the timings of its runs."""

    name: str
    index: SegmentIndex
    build_s: float
    build_cpu_s: float
    lon: np.ndarray
    lat: np.ndarray
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    result: SnapArrays | None = None

    @classmethod
    def of(cls, name: str, doc: object, *, points: int, seed: int) -> Run:
        segments = parse_segment_collection(doc)
        build_start, cpu_start = time.perf_counter(), time.process_time()
        index = SegmentIndex(segments)
        build_s = time.perf_counter() - build_start
        build_cpu_s = time.process_time() - cpu_start
        lon, lat = realistic_points(index, n=points, seed=seed)
        return cls(name, index, build_s, build_cpu_s, lon, lat)

    def once(self, *, timed: bool = True) -> None:
        start, cpu_start = time.perf_counter(), time.process_time()
        self.result = snap_arrays(self.lon, self.lat, self.index, max_distance_m=MAX_DISTANCE_M)
        if timed:
            self.seconds.append(time.perf_counter() - start)
            self.cpu_seconds.append(time.process_time() - cpu_start)

    def figures(self, *, seed: int) -> dict[str, Any]:
        assert self.result is not None
        # Best of the runs: on a shared machine the others only add other people's load. CPU
        # time is reported too, as it is less disturbed by that load.
        points = len(self.lon)
        best = min(self.seconds)
        snapped = self.result.edge >= 0
        grid = self.index.grid
        leaf = grid.child < 0
        return {
            "file": self.name,
            "points": points,
            "seed": seed,
            "max_distance_m": MAX_DISTANCE_M,
            "vertices": len(self.index.ax) + len(self.index.segments),
            "chains": len(self.index.chains),
            "index_build_s": round(self.build_s, 3),
            "index_build_cpu_s": round(self.build_cpu_s, 3),
            "grid_leaves_listing_edges": int((leaf & (grid.stop > grid.start)).sum()),
            "grid_leaves_listing_chains": int((leaf & (grid.chain_stop > grid.chain_start)).sum()),
            "grid_edges_listed": len(grid.edges),
            "grid_chains_listed": len(grid.chains),
            "runs_s": [round(s, 3) for s in self.seconds],
            "points_per_s": round(points / best),
            "us_per_point": round(best / points * 1e6, 3),
            "cpu_points_per_s": round(points / min(self.cpu_seconds)),
            "median_distance_m": round(float(np.median(self.result.distance_m[snapped])), 1),
            "p90_distance_m": round(float(np.percentile(self.result.distance_m[snapped], 90)), 1),
            "snapped_fraction": round(float(snapped.mean()), 5),
        }


def interleaved(runs: list[Run], *, rounds: int, warmup: int = 1) -> None:
    """Snap with every run once a round, ``rounds`` timed rounds after ``warmup`` untimed ones,
    the order reversed every other round (AB, BA, AB, ...), so that neither file is always the
    one that follows the other."""
    for r in range(warmup + rounds):
        order = runs if r % 2 == 0 else runs[::-1]
        for run in order:
            run.once(timed=r >= warmup)


def paired_ratios(first: list[float], other: list[float]) -> list[float]:
    """Each round's rate of the other file over the first's: the first's time over the other's."""
    return [round(a / b, 4) for a, b in zip(first, other, strict=True)]


def spread(ratios: list[float]) -> dict[str, float]:
    """The median of the paired ratios and their spread."""
    q1, median, q3 = np.percentile(ratios, [25, 50, 75])
    return {
        "median": round(float(median), 3),
        "q1": round(float(q1), 3),
        "q3": round(float(q3), 3),
        "min": round(min(ratios), 3),
        "max": round(max(ratios), 3),
        "rounds": len(ratios),
    }


def startup_cpu_s(docs: list[tuple[str, object]], *, rounds: int) -> list[list[float]]:
    """CPU seconds of a server's start-up work per border (``stored_border``: the stored border
    read back from SQLite and indexed), each border in a fresh store, the borders alternating;
    best of three per round, one list per round."""
    with tempfile.TemporaryDirectory() as tmp:
        stores = []
        for i, (_, doc) in enumerate(docs):
            path = Path(tmp) / f"border{i}.geojson"
            path.write_text(json.dumps(doc))
            store = SqliteStore.open(f"sqlite:///{Path(tmp) / f'border{i}.db'}")
            load_segments(store, path)
            stores.append(store)
        figures = []
        for _ in range(rounds):
            best = [math.inf] * len(stores)
            for _ in range(3):
                for i, store in enumerate(stores):
                    start = time.process_time()
                    stored_border(store)
                    best[i] = min(best[i], time.process_time() - start)
            figures.append([round(b, 3) for b in best])
        for store in stores:
            store.close()
    return figures


def _table(rows: list[dict[str, Any]]) -> None:
    width = max(len(k) for k in rows[0])
    for key in rows[0]:
        cells = "  ".join(f"{row[key]!s:>24}" for row in rows)
        print(f"{key:<{width}}  {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument(
        "--repeat",
        type=int,
        default=4,
        metavar="ROUNDS",
        help="timed rounds, each snapping with every file once (after one untimed round); the "
        "order alternates from round to round, so an even number favours neither file",
    )
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="the bundled border and the one before issue #15, interleaved in one sitting",
    )
    parser.add_argument(
        "--files", nargs="+", type=Path, help="border files to measure side by side instead"
    )
    parser.add_argument(
        "--startup",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="also time start-up (the stored border read back from SQLite and indexed)",
    )
    args = parser.parse_args()

    # One core: the figure is per-core throughput, and a second core would only add noise.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if args.files:
        docs: list[tuple[str, object]] = [(str(p), json.loads(p.read_text())) for p in args.files]
    elif args.side_by_side:
        docs = [
            ("before #15 (MX-US: Natural Earth)", old_bundled_border()),
            ("bundled (MX-US: IBWC)", json.loads(SEGMENTS_PATH.read_text())),
        ]
    else:
        docs = [("bundled", json.loads(SEGMENTS_PATH.read_text()))]
    runs = [Run.of(name, doc, points=args.points, seed=args.seed) for name, doc in docs]
    interleaved(runs, rounds=args.repeat)
    rows = [run.figures(seed=args.seed) for run in runs]
    startup: dict[str, Any] = {}
    if args.startup:
        rounds = startup_cpu_s(docs, rounds=args.startup)
        startup = {
            "startup_cpu_s": rounds,
            "startup_cpu_s_vs_first": [[round(s - r[0], 3) for s in r] for r in rounds],
        }
    if len(rows) == 1:
        print(json.dumps({**rows[0], **startup}))
    else:
        first = rows[0]
        print(
            json.dumps(
                {
                    "files": rows,
                    "cpu_ratio_paired": [
                        spread(paired_ratios(runs[0].cpu_seconds, run.cpu_seconds)) for run in runs
                    ],
                    "wall_ratio_paired": [
                        spread(paired_ratios(runs[0].seconds, run.seconds)) for run in runs
                    ],
                    "cpu_ratio_rounds": [
                        paired_ratios(runs[0].cpu_seconds, run.cpu_seconds) for run in runs
                    ],
                    "rate_vs_first": [
                        round(r["points_per_s"] / first["points_per_s"], 3) for r in rows
                    ],
                    "cpu_rate_vs_first": [
                        round(r["cpu_points_per_s"] / first["cpu_points_per_s"], 3) for r in rows
                    ],
                    "build_s_vs_first": [
                        round(r["index_build_s"] - first["index_build_s"], 3) for r in rows
                    ],
                    "build_cpu_s_vs_first": [
                        round(r["index_build_cpu_s"] - first["index_build_cpu_s"], 3) for r in rows
                    ],
                    **startup,
                }
            )
        )
    _table(rows)
    for run in runs[1:]:
        paired = spread(paired_ratios(runs[0].cpu_seconds, run.cpu_seconds))
        print(
            f"CPU rate of {run.name} / {runs[0].name}, paired rounds: median {paired['median']}"
            f" (quartiles {paired['q1']}-{paired['q3']}, {paired['min']}-{paired['max']},"
            f" {paired['rounds']} rounds)"
        )


if __name__ == "__main__":
    main()
