"""What bench/tiles.py found: figures per zoom and target, how much of each tile's data every
target's tile stands for, the checks, the aims, and the tables printed after the JSON."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.figures import latency_summary, ms_of_us, print_table, spread
from bench.harness import RunContext
from bench.load import Phase, Sent, ratios
from bench.pyspy import Profiler
from bench.tile_cases import LayerFacts, Tile, Truth, read_tile

MVT = "application/vnd.mapbox-vector-tile"
LAYER = {"crossings": "reports", "tipg": "default", "bare_sql": "reports"}
LABEL = {"crossings": "crossings", "tipg": "TiPG", "bare_sql": "bare SQL"}
MODES = ("uncached", "revalidation")
# The aims: uncached z8/z12 at least 1.5x TiPG's rate and within 1.5x of the bare query's
# time; low-zoom tiles exact and under 500 KB.
AIM_OVER_TIPG = 1.5
AIM_OVER_BARE_TIME = 1.5
AIM_MAX_BYTES = 500_000
SPEED_AIMS_FROM_ZOOM = 8
PER_TILE_UP_TO = 20  # list every tile of a zoom with at most this many distinct tiles
# Tiles holding more reports than this are "heavy": crossings' default tile_max_points, above which
# it draws clusters instead of points.
HEAVY_TILE_REPORTS = 4_000


# --- results ---------------------------------------------------------------------------------


@dataclass
class Seen:
    """Every answer one target gave for one tile, and what the first full one held."""

    statuses: Counter[int] = field(default_factory=Counter)
    sizes: set[int] = field(default_factory=set)
    etags: list[str] = field(default_factory=list)  # distinct, in the order seen
    content_types: set[str] = field(default_factory=set)
    layers: dict[str, LayerFacts] | None = None  # by layer name
    seconds: list[float] = field(default_factory=list)  # measured uncached requests only

    def add(self, sent: Sent, headers: httpx.Headers | None) -> None:
        self.statuses[sent.status] += 1
        if sent.status not in (200, 204):
            return
        self.sizes.add(len(sent.body))
        if headers is not None:
            self.content_types.add(headers.get("content-type", ""))
            etag = headers.get("etag")
            if etag and etag not in self.etags:
                self.etags.append(etag)
        if self.layers is None:
            self.layers = read_tile(sent.body)


@dataclass
class Measured:
    """One target, zoom and mode: its rounds and the size of every answer."""

    phase: Phase
    sizes: list[int] = field(default_factory=list)


@dataclass
class Context(RunContext):
    tiles: dict[int, list[Tile]]
    profiler: Profiler
    truths: dict[Tile, Truth] = field(default_factory=dict)
    measured: dict[tuple[str, int, str], Measured] = field(default_factory=dict)
    seen: dict[tuple[str, Tile], Seen] = field(default_factory=dict)
    pinned_backends: list[int] = field(default_factory=list)

    def of(self, target: str, z: int, mode: str) -> Measured:
        key = (target, z, mode)
        if key not in self.measured:
            self.measured[key] = Measured(Phase(f"{target} z{z} {mode}"))
        return self.measured[key]

    def seen_of(self, target: str, tile: Tile) -> Seen:
        return self.seen.setdefault((target, tile), Seen())

    def requests(self, target: str, z: int) -> int:
        if target == "bare_sql" and z < 8:
            return min(int(self.args.requests), int(self.args.bare_low_zoom_requests))
        return int(self.args.requests)

    def round_tiles(self, target: str, z: int, round_no: int) -> list[Tile]:
        """This round's share of the requests, continuing through the list where the last round
        left it."""
        tiles = self.tiles[z]
        per_round = max(1, round(self.requests(target, z) / self.args.rounds))
        first = round_no * per_round
        return [tiles[(first + i) % len(tiles)] for i in range(per_round)]

    def pin(self) -> None:
        self.pinned_backends.append(self.postgres.pin_backends(self.server_cores))


def tile_results(ctx: Context, *, targets: tuple[str, ...]) -> dict[str, Any]:
    zooms = {f"z{z}": zoom_result(ctx, z, targets) for z in ctx.args.zooms}
    return {
        "zooms": zooms,
        "checks": [p for zoom in zooms.values() for p in zoom["checks"]],
        "aims": {name: zoom["aims"] for name, zoom in zooms.items()},
    }


def zoom_result(ctx: Context, z: int, targets: tuple[str, ...]) -> dict[str, Any]:
    drawn = ctx.tiles[z]
    distinct = sorted(set(drawn))
    out: dict[str, Any] = {
        "tiles": {
            "drawn": len(drawn),
            "distinct": len(distinct),
            "true_reports_per_drawn_tile": spread([ctx.truths[t].reports for t in drawn], 0),
            "true_reports_in_distinct_tiles": sum(ctx.truths[t].reports for t in distinct),
        }
    }
    checks: list[str] = []
    for target in targets:
        modes = {}
        for mode in MODES:
            m = ctx.measured.get((target, z, mode))
            if m is not None:
                modes[mode] = m.phase.summary(unit="requests", per="request") | {
                    "bytes": _bytes(m.sizes)
                }
        if not modes:
            continue
        out[target] = modes | {
            "content": content(ctx, target, distinct),
            "latency_by_tile_weight": by_weight(ctx, target, distinct),
        }
        checks += [f"z{z} {target}: {p}" for p in target_checks(ctx, target, z, distinct)]
    phases = {
        target: m.phase
        for target in targets
        if (m := ctx.measured.get((target, z, "uncached"))) is not None
    }
    if "crossings" in phases and "tipg" in phases:
        out["ratio_crossings_to_tipg"] = ratios(phases["crossings"], phases["tipg"])
    if "crossings" in phases and "bare_sql" in phases:
        # Time per tile of crossings over the bare query's: the bare query's rate over crossings'.
        out["ratio_crossings_time_to_bare_sql"] = ratios(phases["bare_sql"], phases["crossings"])
    if len(distinct) <= PER_TILE_UP_TO:
        out["per_tile"] = {t.path: per_tile(ctx, t, targets) for t in distinct}
    out["checks"] = checks
    out["aims"] = aims(out, z)
    return out


def _bytes(sizes: list[int]) -> dict[str, float] | None:
    if not sizes:
        return None
    return {
        "mean": round(statistics.fmean(sizes)),
        "median": statistics.median(sizes),
        "max": max(sizes),
    }


def content(ctx: Context, target: str, tiles: list[Tile]) -> dict[str, Any]:
    """How many reports the target's tiles stand for (a cluster for its ``count``, a point for
    one) inside the tile proper, against the truth; over the distinct tiles it answered."""
    held = truth = features = clusters = exact = short = clustered = segments = 0
    max_features = 0
    answered = 0
    for tile in tiles:
        seen = ctx.seen.get((target, tile))
        if seen is None or seen.layers is None:
            continue
        answered += 1
        layer = seen.layers.get(LAYER[target])
        true = ctx.truths[tile].reports
        truth += true
        if "segments" in seen.layers:
            segments += seen.layers["segments"].features
        if layer is None:
            short += true > 0
            continue
        held += layer.represented_in_tile
        features += layer.features
        max_features = max(max_features, layer.features)
        clusters += layer.clusters
        clustered += layer.clusters > 0
        exact += layer.represented_in_tile == true
        short += layer.represented_in_tile < true
    return {
        "tiles": answered,
        "true_reports": truth,
        "reports_held_in_tile": held,
        "held_share": round(held / truth, 4) if truth else None,
        "tiles_exact": exact,
        "tiles_short": short,
        "tiles_with_clusters": clustered,
        "features": features,
        "clusters": clusters,
        "max_features_per_tile": max_features,
        "segment_features": segments,
    }


def by_weight(ctx: Context, target: str, tiles: list[Tile]) -> dict[str, Any]:
    """Uncached latencies on heavy tiles (over HEAVY_TILE_REPORTS reports) and light ones: where
    the time goes when a few busy tiles are drawn often."""
    groups: dict[str, list[float]] = {"heavy": [], "light": []}
    for tile in tiles:
        seen = ctx.seen.get((target, tile))
        if seen is not None:
            heavy = ctx.truths[tile].reports > HEAVY_TILE_REPORTS
            groups["heavy" if heavy else "light"] += seen.seconds
    return {
        name: {"requests": len(seconds)} | (latency_summary(seconds) if seconds else {})
        for name, seconds in groups.items()
    } | {"heavy_means_over_reports": HEAVY_TILE_REPORTS}


def per_tile(ctx: Context, tile: Tile, targets: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"true_reports": ctx.truths[tile].reports}
    for target in targets:
        seen = ctx.seen.get((target, tile))
        if seen is None or seen.layers is None:
            continue
        layer = seen.layers.get(LAYER[target])
        out[target] = {
            "bytes": max(seen.sizes, default=0),
            "features": layer.features if layer else 0,
            "reports_held_in_tile": layer.represented_in_tile if layer else 0,
        }
    return out


def target_checks(ctx: Context, target: str, z: int, tiles: list[Tile]) -> list[str]:
    """Problems with the target's answers: statuses, changing answers, ETags, content type; for
    crossings, cluster tiles whose counts do not add up to the reports in the tile."""
    problems = []
    for tile in tiles:
        seen = ctx.seen.get((target, tile))
        if seen is None:
            continue
        where = tile.path
        if bad := {s: n for s, n in seen.statuses.items() if s not in (200, 204)}:
            problems.append(f"{where}: statuses {bad}")
        if len(seen.sizes) > 1:
            problems.append(f"{where}: answers of different sizes {sorted(seen.sizes)}")
        if target != "crossings":
            continue
        problems += _crossings_tile_checks(ctx, tile, seen)
    revalidation = ctx.measured.get((target, z, "revalidation"))
    if revalidation is not None:
        statuses = {s.status for s in revalidation.phase.sent} - {304}
        if statuses:
            problems.append(f"revalidation answered {sorted(statuses)}, not only 304")
    return problems


def _crossings_tile_checks(ctx: Context, tile: Tile, seen: Any) -> list[str]:
    where = tile.path
    problems = []
    if 200 in seen.statuses:
        if not seen.etags:
            problems.append(f"{where}: no ETag")
        elif any(tag.startswith("W/") for tag in seen.etags):
            problems.append(f"{where}: weak ETag {seen.etags[0]}")
        if len(seen.etags) > 1:
            problems.append(f"{where}: ETag changed {seen.etags}")
        if types := seen.content_types - {MVT}:
            problems.append(f"{where}: content types {sorted(types)}")
    layer = (seen.layers or {}).get("reports")
    true = ctx.truths[tile]
    if layer is None or layer.clusters == 0:
        return problems
    if layer.represented_in_tile != true.reports:
        problems.append(
            f"{where}: cluster counts add up to {layer.represented_in_tile:,}, the tile holds "
            f"{true.reports:,} reports"
        )
    if layer.people_in_tile is not None and layer.people_in_tile != true.people:
        problems.append(
            f"{where}: cluster people add up to {layer.people_in_tile:,}, not {true.people:,}"
        )
    if layer.clusters != layer.points:
        problems.append(f"{where}: {layer.points - layer.clusters} points beside the clusters")
    if layer.non_integer:
        problems.append(f"{where}: {layer.non_integer} count/people values are not integers")
    return problems


def aims(zoom: dict[str, Any], z: int) -> dict[str, Any]:
    """The issue's aims for this zoom, each with its figure and whether it is met (None if a
    target it needs was not measured)."""
    crossings = zoom.get("crossings")
    if z >= SPEED_AIMS_FROM_ZOOM:
        vs_tipg = zoom.get("ratio_crossings_to_tipg")
        vs_bare = zoom.get("ratio_crossings_time_to_bare_sql")
        return {
            "crossings_over_tipg": {
                "aim": f">= {AIM_OVER_TIPG}x TiPG req/s",
                "value": vs_tipg and vs_tipg["overall"],
                "met": None if vs_tipg is None else vs_tipg["overall"] >= AIM_OVER_TIPG,
            },
            "crossings_time_over_bare_sql": {
                "aim": f"<= {AIM_OVER_BARE_TIME}x bare time",
                "value": vs_bare and vs_bare["overall"],
                "met": None if vs_bare is None else vs_bare["overall"] <= AIM_OVER_BARE_TIME,
            },
        }
    if crossings is None:
        return {"exact": {"met": None}, "max_bytes": {"met": None}}
    held = crossings["content"]
    max_bytes = crossings["uncached"]["bytes"]["max"] if crossings["uncached"]["bytes"] else None
    return {
        "exact": {
            "aim": "exact (cluster counts add up in every tile)",
            "value": f"{held['tiles_exact']} of {held['tiles']} tiles",
            "met": held["tiles"] > 0 and held["tiles_exact"] == held["tiles"],
        },
        "max_bytes": {
            "aim": f"< {AIM_MAX_BYTES // 1000} KB",
            "value": max_bytes,
            "met": None if max_bytes is None else max_bytes < AIM_MAX_BYTES,
        },
    }


# --- tables ----------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> None:
    zooms = result["zooms"]
    print()
    print_table(
        [
            "zoom", "target", "mode", "req/s", "round range", "p50 ms", "p99 ms", "mean KB",
            "max KB", "srv ms/req", "pg ms/req", "client ms/req", "heavy/light ms", "statuses",
        ],
        [row for name, zoom in zooms.items() for row in _detail_rows(name, zoom)],
    )  # fmt: skip
    print()
    print_table(
        [
            "zoom", "tiles", "true/tile med", "true/tile max", "crossings held", "exact tiles",
            "clustered", "TiPG held", "TiPG max feat", "bare held",
        ],
        [_content_row(name, zoom) for name, zoom in zooms.items()],
    )  # fmt: skip
    print()
    print_table(
        [
            "zoom", "crossings/s", "TiPG/s", "x TiPG", "x TiPG by round", "bare/s",
            "time / bare", "max KB c/t/b", "aims", "met",
        ],
        [_aim_row(name, zoom) for name, zoom in zooms.items()],
    )  # fmt: skip
    for phase, profile in result.get("profiles", {}).items():
        print(
            f"\ncrossings {phase}, py-spy: {profile['sampled_us_per_item']:,.0f} us/req sampled, "
            f"{profile['measured_us_per_item'] or 0:,.0f} us/req measured (server process)"
        )
        print_table(
            ["category", "share", "us/req"],
            [[c["category"], c["share"], c["us_per_item"]] for c in profile["categories"]],
        )
    if result["checks"]:
        print("\nCHECKS FAILED:")
        for problem in result["checks"][:40]:
            print(f"  {problem}")
        if len(result["checks"]) > 40:
            print(f"  ... {len(result['checks']) - 40} more in the JSON")
    else:
        print("\nchecks: every answer as expected (statuses, ETags, cluster counts add up)")
    for note in result["notes"]:
        print(f"note: {note}")


def _kb(n: float | None) -> float | None:
    return None if n is None else round(n / 1000.0, 1)


def _detail_rows(name: str, zoom: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for target, label in LABEL.items():
        for mode in MODES:
            s = zoom.get(target, {}).get(mode)
            if s is None:
                continue
            rounds, latency = s["round_requests_per_s"], s["latency_ms"]
            cpu, size = s["cpu_us_per_request"], s["bytes"] or {}
            statuses = " ".join(f"{k}:{v}" for k, v in s.get("statuses", {}).items())
            rows.append(
                [
                    name, label, mode, s["requests_per_s"],
                    f"{rounds['min']:,.1f}-{rounds['max']:,.1f}", latency["p50"], latency["p99"],
                    _kb(size.get("mean")), _kb(size.get("max")), ms_of_us(cpu["server"]),
                    ms_of_us(cpu["postgres"]), ms_of_us(cpu["client"]),
                    _heavy_light(zoom[target]) if mode == "uncached" else None, statuses,
                ]
            )  # fmt: skip
    return rows


def _heavy_light(target: dict[str, Any]) -> str:
    """Mean ms on heavy and on light tiles, with their request counts."""
    groups = target["latency_by_tile_weight"]
    return " / ".join(
        f"{g['mean']:,.0f} ({g['requests']})" if g["requests"] else "-"
        for g in (groups["heavy"], groups["light"])
    )


def _held(zoom: dict[str, Any], target: str) -> str | None:
    c = zoom.get(target, {}).get("content")
    if c is None:
        return None
    return f"{c['reports_held_in_tile']:,}/{c['true_reports']:,}"


def _content_row(name: str, zoom: dict[str, Any]) -> list[Any]:
    tiles = zoom["tiles"]
    c = zoom.get("crossings", {}).get("content")
    t = zoom.get("tipg", {}).get("content")
    per_tile = tiles["true_reports_per_drawn_tile"]
    return [
        name,
        f"{tiles['drawn']} ({tiles['distinct']} distinct)",
        int(per_tile["median"]),
        int(per_tile["max"]),
        _held(zoom, "crossings"),
        c and f"{c['tiles_exact']}/{c['tiles']}",
        c and f"{c['tiles_with_clusters']}/{c['tiles']}",
        _held(zoom, "tipg"),
        t and t["max_features_per_tile"],
        _held(zoom, "bare_sql"),
    ]


def _aim_row(name: str, zoom: dict[str, Any]) -> list[Any]:
    def rate(target: str) -> float | None:
        s = zoom.get(target, {}).get("uncached")
        return None if s is None else float(s["requests_per_s"])

    def max_kb(target: str) -> str:
        s = zoom.get(target, {}).get("uncached")
        return "-" if not s or not s["bytes"] else f"{s['bytes']['max'] / 1000:,.0f}"

    vs_tipg = zoom.get("ratio_crossings_to_tipg")
    vs_bare = zoom.get("ratio_crossings_time_to_bare_sql")
    rounds = vs_tipg["rounds"] if vs_tipg else None
    met = [a["met"] for a in zoom["aims"].values()]
    return [
        name,
        rate("crossings"),
        rate("tipg"),
        vs_tipg and vs_tipg["overall"],
        rounds and f"{rounds['median']:.2f} ({rounds['min']:.2f}-{rounds['max']:.2f})",
        rate("bare_sql"),
        vs_bare and vs_bare["overall"],
        "/".join(max_kb(t) for t in LABEL),
        "; ".join(a.get("aim", k) for k, a in zoom["aims"].items()),
        "?" if None in met else ("yes" if all(met) else "NO"),
    ]
