"""Reads as the data grows: OGC pages, tiles and aggregates at 1,000,000 and at 10,000,000 reports.

Runs the read benchmarks (``bench.features``, ``bench.tiles``, ``bench.aggregates``) against two
databases loaded by bench/dataset.py with the same generator (the larger ten times denser over the
same time span), alternating small and large for each benchmark, and pairs every phase of the two
results (same case, same server) into a ratio large / small of its p50 latency and its server and
PostgreSQL CPU per request. The database's own queries (the raw SQL each benchmark runs beside the
service) are paired too: their growth is what the data itself costs.

    python -m bench.growth --small-db NAME --large-db NAME     # databases kept by --keep-db runs

The aim (issue #17): the service's costs at 10M within 1.5x of its costs at 1M.

Each benchmark's own JSON is written to bench/results/growth-<benchmark>-<small|large>.json; this
one's to bench/results/growth.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from bench.figures import RESULTS_DIR, write_results
from bench.harness import ADMIN_URL

AIM = 1.5
# Each benchmark with its own options: the service and the raw SQL, no peer (the peer is not what
# grows here), fewer requests than a standalone run (two sizes, three benchmarks, one sitting).
BENCHMARKS: dict[str, list[str]] = {
    "features": ["--targets", "crossings", "--no-floor", "--small-requests", "60",
                 "--big-requests", "12", "--rounds", "2"],
    "tiles": ["--targets", "crossings", "bare_sql", "--requests", "60", "--rounds", "2",
              "--bare-low-zoom-requests", "12"],
    # Analysts' aggregates: the public's read the release, whose size does not grow with reports.
    "aggregates": ["--targets", "api_analyst", "raw_sql", "--requests", "40",
                   "--raw-requests", "12", "--rounds", "2"],
}  # fmt: skip
SIZES = ("small", "large")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__)
    parser.add_argument("--small-db", required=True, help="the 1M-report database (--keep-db)")
    parser.add_argument("--large-db", required=True, help="the 10M-report database")
    parser.add_argument("--benchmarks", nargs="+", choices=sorted(BENCHMARKS), default=BENCHMARKS)
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument(
        "--reuse-results", action="store_true",
        help="take a benchmark's results from an earlier run's JSON where both sizes have one",
    )  # fmt: skip
    args = parser.parse_args(argv)
    databases = {"small": args.small_db, "large": args.large_db}
    results: dict[str, dict[str, Any]] = {}
    for number, name in enumerate(args.benchmarks):
        # Alternate which size goes first, so that drift of the machine does not favour one.
        order = SIZES if number % 2 == 0 else SIZES[::-1]
        results[name] = {size: _run(name, size, databases[size], args) for size in order}
    result = {
        "benchmark": "growth",
        "databases": databases,
        "rows": {size: _rows(results, size) for size in SIZES},
        "aim_large_over_small": AIM,
        "phases": {name: pair_phases(r["small"], r["large"]) for name, r in results.items()},
    }
    write_results("growth", result)
    table(result)
    return 0


def _run(name: str, size: str, database: str, args: argparse.Namespace) -> dict[str, Any]:
    output = f"growth-{name}-{size}"
    earlier = RESULTS_DIR / f"{output}.json"
    if args.reuse_results and earlier.exists():
        print(f"{name} on {size}: {earlier.name} of an earlier run", file=sys.stderr)
        reused: dict[str, Any] = orjson.loads(earlier.read_bytes())
        return reused
    command = [sys.executable, "-m", f"bench.{name}", "--db", database,
               "--admin-url", args.admin_url, "--output", output, *BENCHMARKS[name]]  # fmt: skip
    if args.no_pin:
        command.append("--no-pin")
    print(f"{name} on {size} ({database}) ...", file=sys.stderr)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    loaded: dict[str, Any] = orjson.loads((RESULTS_DIR / f"{output}.json").read_bytes())
    return loaded


def _rows(results: dict[str, dict[str, Any]], size: str) -> int | None:
    for pair in results.values():
        data = pair[size].get("data", {})
        rows = data.get("rows_now", data.get("reports"))
        if rows is not None:
            return int(rows)
    return None


def phases(result: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every phase summary in a benchmark's result (a dict with a latency and a CPU per request
    or tile), with the path of keys that leads to it."""
    if isinstance(result, dict):
        if "latency_ms" in result and any(k.startswith("cpu_us_per_") for k in result):
            yield "/".join(path), result
            return
        for key, value in result.items():
            yield from phases(value, (*path, str(key)))


def pair_phases(small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    """For each phase found in both results: p50 latency and CPU per request, small and large,
    and their ratios large / small."""
    at_large = dict(phases(large))
    paired: dict[str, Any] = {}
    for path, s in phases(small):
        if (l_ := at_large.get(path)) is None:
            continue
        cpu_key = next(k for k in s if k.startswith("cpu_us_per_"))
        row: dict[str, Any] = {"p50_ms": [_p50(s), _p50(l_)]}
        for who in ("server", "postgres"):
            row[f"{who}_cpu_us"] = [s[cpu_key].get(who), l_[cpu_key].get(who)]
        paired[path] = row | {
            f"{name}_ratio": _ratio(*values) for name, values in list(row.items())
        }
    return paired


def _p50(summary: dict[str, Any]) -> float | None:
    latency = summary["latency_ms"]
    value = latency.get("p50") if isinstance(latency, dict) else None
    return None if value is None else float(value)


def _ratio(small: float | None, large: float | None) -> float | None:
    if small is None or large is None or small <= 0:
        return None
    return round(large / small, 2)


def table(result: dict[str, Any]) -> None:
    rows = result["rows"]
    print(f"\nreads at {rows['large'] or '?':,} reports over {rows['small'] or '?':,}"
          f" (aim: within {AIM}x)")  # fmt: skip
    print(f"{'phase':<72} {'p50 ms small/large':>20} {'x':>6} {'server CPU x':>13} {'PG CPU x':>9}")
    for name, paired in result["phases"].items():
        for path, row in paired.items():
            small, large = row["p50_ms"]
            label = f"{name}/{path}"[:72]
            print(
                f"{label:<72} {_fmt(small):>9} / {_fmt(large):<9} {_fmt(row['p50_ms_ratio']):>6}"
                f" {_fmt(row['server_cpu_us_ratio']):>13} {_fmt(row['postgres_cpu_us_ratio']):>9}"
            )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


if __name__ == "__main__":
    raise SystemExit(main())
