"""Realistic reports for benchmarks: the bundled border, busy places on it, and report columns and
request bodies drawn from seeded random numbers (the same seed, the same reports)."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pyproj import Geod

REPO = Path(__file__).resolve().parents[1]
SEGMENTS_PATH = REPO / "data" / "border_segments.geojson"

GEOD = Geod(ellps="WGS84")

# (lon, lat) of five busy places on the Canada-US border.
HOT_SPOTS = {
    "roxham_road": (-73.5172, 45.0071),
    "peace_arch": (-122.754389, 49.000111),
    "pembina": (-97.237634, 49.000477),
    "ambassador_bridge": (-83.074, 42.312),
    "alcan": (-141.001443, 62.61531),
}
HOT_FRACTION = 0.4
HOT_RADIUS_M = 2_000.0
MEAN_OFFSET_M = 1_500.0  # exponential distance from the line, to a random side
KINDS = ("crossing", "attempt", "evidence", "assistance")
KIND_WEIGHTS = (0.55, 0.2, 0.15, 0.1)
DIRECTIONS = ("CA", "US", None)
DIRECTION_WEIGHTS = (0.45, 0.35, 0.2)
NOTES = ("family with children", "on foot", "vehicle left on the road", "taxi drop-off", "in snow")


# --- realistic data --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Border:
    """The edges of one border, with their geodesic lengths and azimuths, for sampling by length."""

    ax: np.ndarray
    ay: np.ndarray
    bx: np.ndarray
    by: np.ndarray
    length_m: np.ndarray
    azimuth: np.ndarray

    @classmethod
    def load(cls, border: str = "CA-US", path: Path = SEGMENTS_PATH) -> Border:
        doc = orjson.loads(path.read_bytes())
        ax: list[float] = []
        ay: list[float] = []
        bx: list[float] = []
        by: list[float] = []
        for feature in doc["features"]:
            if feature["properties"].get("border") != border:
                continue
            coords = feature["geometry"]["coordinates"]
            for (x0, y0), (x1, y1) in itertools.pairwise(coords):
                ax.append(x0)
                ay.append(y0)
                bx.append(x1)
                by.append(y1)
        if not ax:
            raise ValueError(f"no {border} LineStrings in {path}")
        a_lon, a_lat, b_lon, b_lat = (np.array(v) for v in (ax, ay, bx, by))
        azimuth, _, length = GEOD.inv(a_lon, a_lat, b_lon, b_lat)
        return cls(
            ax=a_lon,
            ay=a_lat,
            bx=b_lon,
            by=b_lat,
            length_m=np.asarray(length),
            azimuth=np.asarray(azimuth),
        )

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(lon, lat) of ``n`` points: spread uniformly by *length* along the line (dense river
        sections have short edges, so spreading by edge would crowd them), then pushed off it
        roughly perpendicularly, to a random side, by an exponential distance."""
        cumulative = np.cumsum(self.length_m)
        along = rng.uniform(0.0, cumulative[-1], n)
        edge = np.minimum(np.searchsorted(cumulative, along, side="right"), len(cumulative) - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.nan_to_num(1.0 - (cumulative[edge] - along) / self.length_m[edge])
        lon0 = self.ax[edge] + t * (self.bx[edge] - self.ax[edge])
        lat0 = self.ay[edge] + t * (self.by[edge] - self.ay[edge])
        side = rng.choice([-90.0, 90.0], n)
        azimuth = self.azimuth[edge] + side + rng.normal(0.0, 20.0, n)
        lon, lat, _ = GEOD.fwd(lon0, lat0, azimuth, rng.exponential(MEAN_OFFSET_M, n))
        return np.asarray(lon), np.asarray(lat)


def hot_spot_points(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) of ``n`` points uniform over discs of HOT_RADIUS_M around the hot spots."""
    spots = np.array(list(HOT_SPOTS.values()))
    which = rng.integers(0, len(spots), n)
    radius = HOT_RADIUS_M * np.sqrt(rng.uniform(0.0, 1.0, n))
    lon, lat, _ = GEOD.fwd(spots[which, 0], spots[which, 1], rng.uniform(0.0, 360.0, n), radius)
    return np.asarray(lon), np.asarray(lat)


@dataclass(frozen=True, slots=True)
class ReportColumns:
    """``n`` realistic reports as columns (numpy arrays), before any per-report Python object is
    made: a million of them take a second. ``report_bodies`` turns them into JSON bodies; a bulk
    loader can write them to a table directly. Optional fields are -1 (indexes) or NaN where
    absent; coordinates are rounded to 6 decimals, as a client sends them."""

    lon: np.ndarray
    lat: np.ndarray
    age_s: np.ndarray  # how long before ``now`` each was observed
    people_count: np.ndarray
    kind: np.ndarray  # index into KINDS
    direction: np.ndarray  # index into DIRECTIONS (its last entry is None)
    accuracy_m: np.ndarray  # NaN where absent
    device: np.ndarray  # -1 where absent
    note: np.ndarray  # index into NOTES, -1 where absent
    id_bytes: bytes  # 16 per report

    def __len__(self) -> int:
        return len(self.lon)

    def report_id(self, i: int) -> uuid.UUID:
        return uuid.UUID(bytes=self.id_bytes[16 * i : 16 * i + 16], version=4)

    def observed_at(self, i: int, now: datetime) -> datetime:
        """When report ``i`` was observed, to the millisecond (as its body says)."""
        observed = now - timedelta(seconds=float(self.age_s[i]))
        return observed.replace(microsecond=observed.microsecond // 1000 * 1000)


def report_columns(n: int, *, seed: int, border: Border | None = None) -> ReportColumns:
    """``n`` reports, reproducible from ``seed``: near the Canada-US border, 40% around the hot
    spots, observed over the past year (relative to a ``now`` given when reading them)."""
    rng = np.random.default_rng(seed)
    border = border or Border.load()
    n_hot = round(n * HOT_FRACTION)
    line_lon, line_lat = border.sample(rng, n - n_hot)
    hot_lon, hot_lat = hot_spot_points(rng, n_hot)
    order = rng.permutation(n)
    lon = np.concatenate([line_lon, hot_lon])[order]
    lat = np.concatenate([line_lat, hot_lat])[order]
    # At least a minute old, so that no report is "in the future" whatever the server's clock.
    age_s = rng.uniform(60.0, 365 * 86_400.0, n)
    people = np.minimum(rng.geometric(0.35, n), 12)  # mostly 1-3, at most 12
    kinds = rng.choice(len(KINDS), n, p=KIND_WEIGHTS)
    directions = rng.choice(len(DIRECTIONS), n, p=DIRECTION_WEIGHTS)
    accuracy = np.round(rng.lognormal(np.log(15.0), 1.0, n), 1)
    has_accuracy = rng.uniform(size=n) < 0.9
    devices = rng.integers(0, 5_000, n)
    has_device = rng.uniform(size=n) < 0.7
    note = rng.integers(0, len(NOTES), n)
    has_note = rng.uniform(size=n) < 0.05
    return ReportColumns(
        lon=np.round(lon, 6),
        lat=np.round(lat, 6),
        age_s=age_s,
        people_count=people,
        kind=kinds,
        direction=directions,
        accuracy_m=np.where(has_accuracy, accuracy, np.nan),
        device=np.where(has_device, devices, -1),
        note=np.where(has_note, note, -1),
        id_bytes=rng.bytes(16 * n),
    )


def report_bodies(
    n: int, *, seed: int, now: datetime | None = None, border: Border | None = None
) -> list[dict[str, Any]]:
    """``n`` valid plain-JSON reports (the shape of tests/factories.report_body), reproducible from
    ``seed``: near the Canada-US border, 40% around the hot spots, observed over the past year."""
    now = now or datetime.now(UTC)
    c = report_columns(n, seed=seed, border=border)
    lon, lat, accuracy = c.lon.tolist(), c.lat.tolist(), c.accuracy_m.tolist()
    bodies = []
    for i in range(n):
        observed = c.observed_at(i, now)
        bodies.append(
            {
                "id": str(c.report_id(i)),
                "observed_at": observed.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "location": {"type": "Point", "coordinates": [lon[i], lat[i]]},
                "people_count": int(c.people_count[i]),
                "direction": DIRECTIONS[c.direction[i]],
                "kind": KINDS[c.kind[i]],
                "accuracy_m": None if np.isnan(accuracy[i]) else accuracy[i],
                "notes": NOTES[c.note[i]] if c.note[i] >= 0 else None,
                "device_id": f"dev-{c.device[i]:05d}" if c.device[i] >= 0 else None,
            }
        )
    return bodies
