"""Figures of a benchmark run: percentiles and spreads, facts about the machine, and the results
written as JSON (bench/results/) and printed as a table."""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.synthetic import REPO

RESULTS_DIR = REPO / "bench" / "results"


# --- figures ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank: a value that was actually observed."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(np.ceil(q / 100.0 * len(ordered)))))
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p99, mean and max of request latencies, in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "p50": round(percentile(ms, 50), 3),
        "p99": round(percentile(ms, 99), 3),
        "mean": round(statistics.fmean(ms), 3) if ms else float("nan"),
        "max": round(max(ms), 3) if ms else float("nan"),
    }


def spread(values: Sequence[float], digits: int = 1) -> dict[str, float]:
    """Median and range of per-round figures."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def ms_of_us(us: float | None) -> float | None:
    """Microseconds (as the summaries give CPU) in milliseconds, for a table."""
    return None if us is None else round(us / 1000.0, 2)


def per_item_us(seconds: float | None, items: int) -> float | None:
    return None if seconds is None or items == 0 else round(seconds / items * 1e6, 1)


def machine_facts(
    *,
    client_cores: set[int] | None,
    server_cores: set[int] | None,
    pinned_backends: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The machine and the pinning; ``pinned_backends``: how many PostgreSQL backends were
    pinned to the server cores before each measured round (see pin_for_database)."""
    postgresql = None
    if server_cores and pinned_backends is not None:
        postgresql = {
            "cores": sorted(server_cores),
            "what": "backends on the benchmark database, before each measured round",
            "backends_pinned_per_round": spread(list(pinned_backends) or [0], digits=0),
        }
    return {
        "cpus": os.cpu_count(),
        "pinning": {
            "load_generator": sorted(client_cores) if client_cores else None,
            "server": sorted(server_cores) if server_cores else None,
            "postgresql": postgresql,
        },
        "loadavg_at_start": os.getloadavg(),
        "python": sys.version.split()[0],
    }


def write_results(name: str, result: dict[str, Any]) -> Path:
    """Print the result as one JSON object and write it to bench/results/<name>.json."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    text = json.dumps(result, indent=2, default=str)
    path.write_text(text + "\n")
    print(text)
    return path


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table: numbers right-aligned, text left-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [all(_is_number(row[i]) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    print(line(headers))
    print(line(["-" * w for w in widths]))
    for row in cells:
        print(line(row))


def print_checks_and_notes(result: dict[str, Any]) -> None:
    """The end of a read benchmark's table: the problems its checks found, then its notes."""
    for problem in result["checks"] or ["checks: no problem found"]:
        print(problem)
    for note in result["notes"]:
        print(f"note: {note}")


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
