"""The public release (issue #13): what it costs to cut, and what the costliest public requests
cost, against the raw GROUP BY over ``reports`` that their figures are rounded from.

Run from the repository root::

    .venv/bin/python -m bench.public_release                  # 1,000,000 reports
    .venv/bin/python -m bench.public_release --quick          # 100,000 reports, fewer requests
    .venv/bin/python -m bench.public_release --keep-db        # keep the loaded database, then:
    .venv/bin/python -m bench.public_release --db crossings_bench_1a2b3c4d

Data: as bench/aggregates.py (bench/dataset.py: ``--reports`` realistic, snapped reports written
by COPY into a fresh ``crossings_bench_<random>``, dropped at the end unless ``--keep-db``).

What is measured:

1. **The cut.** ``crossings release cut`` run ``--cuts`` times (each replaces the last whole): wall
   time, the CLI's own CPU, and the CPU of the PostgreSQL backends on the benchmark database
   (sampled from /proc every 20 ms while the CLI runs, as its backend exits with it) plus the
   cluster's shared helpers; and the release's row count.
2. **Public requests** over HTTP to one ``crossings serve`` worker, without a key (see
   ``build_cases``): the costliest shapes the public can ask for, each twice: ``cached`` (the same
   URL again and again: the server keeps answers per cut) and ``fresh`` (``start`` moved by a day,
   and then by a second, inside the window's first period every time: the same whole periods are
   counted, but the request differs, so every answer is computed afresh). The server does not cut
   during the run (``CROSSINGS_RELEASE_REFRESH_S`` = one day); the first request of each server
   loads the cut into arrays, and its latency is reported apart (``load_ms``).
3. **The raw limits** for the same questions, through psycopg from this process, never prepared,
   rows fetched into Python: ``raw_reports``, the exact GROUP BY over ``reports`` for the answer's
   window (what its figures are rounded from), and ``raw_release``, the same GROUP BY over the
   release table ``release_cells``.

Targets take turns going first in each round; fairness as in bench/aggregates.py
(harness.fairness_notes): load generator on one core, server, CLI and the PostgreSQL
backends of the database on the other, parallel query off, CPU per request from /proc.

Checks (outside the clock): each public answer carries ``release`` and ``window``; the window is
the one ``service.domain.release.public_window`` gives and ends by the release's ``through`` (whole
days that ended ``CROSSINGS_PUBLIC_DELAY_H`` before the cut); every public figure equals
``service.domain.release.publish`` applied to the raw GROUP BY over ``reports`` in that window (a
hidden figure where the rule hides it, and every cell the rule shows listed where its group's
total is shown); the GROUP BY over ``release_cells`` equals the one over ``reports``; the
``segment,kind`` week window is just under ``CROSSINGS_PUBLIC_MAX_CELLS`` (one more week is
refused). Prints one JSON object, writes bench/results/<--output>.json, then the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import mapbox_vector_tile
import orjson
import psycopg

from bench.dataset import (
    benchmark_database,
    parse_benchmark_args,
    segment_index,
    set_parallel_query,
)
from bench.figures import ms_of_us, print_checks_and_notes, print_table, spread
from bench.harness import (
    CROSSINGS,
    PostgresCpu,
    Run,
    RunContext,
    Server,
    add_request_arguments,
    benchmark_parser,
    children_of,
    cpu_seconds,
    free_port,
    libpq_url,
    pg_settings,
    pin_process,
    running_process,
    scratch_dir,
    server_env,
    service_facts,
)
from bench.load import Phase, Probes, Sender, Sent, ratios
from bench.synthetic import HOT_SPOTS
from service.domain.aggregation import Unit, period_floor
from service.domain.release import (
    PublicRule,
    PublicWindow,
    ReleaseInfo,
    public_window,
    publish,
)
from service.domain.segments import SegmentIndex
from service.domain.tiles import segment_boxes, segments_in_tile, tile_address
from service.settings import Settings

SEED = 20_261_207
HEADERS = {"accept": "application/json", "accept-encoding": "identity"}
TARGETS = ("api", "api_fresh", "raw_reports", "raw_release")
LABEL = {
    "api": "API, cached",
    "api_fresh": "API, fresh",
    "raw_reports": "GROUP BY reports",
    "raw_release": "GROUP BY release_cells",
}
AIM_MS = 50.0  # issue #13's aim: the costliest public request <= 50 ms at 1M reports
DEFAULTS = Settings.model_fields
MAX_CELLS = int(DEFAULTS["public_max_cells"].default)
DELAY_H = float(DEFAULTS["public_delay_h"].default)
RULE = PublicRule(
    min_count=int(DEFAULTS["public_min_count"].default),
    round_to=int(DEFAULTS["public_round_to"].default),
)
KINDS: tuple[str, ...] = tuple(DEFAULTS["report_kinds"].default)
WARMUP_API, WARMUP_RAW = 3, 1
TILE_Z, TILE_AT = 6, "roxham_road"
# No cut while measuring: the server would cut again every release_refresh_s (600 s by default).
SERVER_ENV = {"CROSSINGS_RELEASE_REFRESH_S": "86400"}
PG_SETTINGS = (
    "server_version", "shared_buffers", "work_mem", "effective_cache_size", "jit",
    "max_parallel_workers_per_gather",
)  # fmt: skip

# Group keys in SQL, over ``reports r LEFT JOIN segments s`` and over ``release_cells r``
# LEFT JOIN segments s``: the service's region is the segment's region_pair, else its section;
# a report beyond reach (no segment) is a group of its own (null).
_REGION = "CASE WHEN s.segment_id IS NULL THEN NULL ELSE coalesce(s.properties->>'region_pair', s.section) END"
SQL_KEY = {
    "segment": "r.segment_id",
    "region": _REGION,
    "kind": "r.kind",
    "direction": "r.direction::text",
    "side": "r.side::text",
}
API_FIELD = {"segment": "segment_id", "region": "region", "kind": "kind",
             "direction": "direction", "side": "side"}  # fmt: skip


def raw_sql(keys: tuple[str, ...], bucket: Unit | None, *, table: str, segments: bool) -> str:
    """The GROUP BY of a public question: ``keys``, then the period's first day (if ``bucket``),
    reports and people, over the window [%(start)s, %(end)s) (and %(ids)s, with ``segments``)."""
    join = " LEFT JOIN segments s ON s.segment_id = r.segment_id" if "region" in keys else ""
    if table == "reports":
        count, people = "count(*)", "sum(r.people_count)"
        period = f"date_trunc('{bucket}', r.observed_at, 'UTC')::date"
        where = "r.observed_at >= %(start)s AND r.observed_at < %(end)s"
    else:
        count, people = "sum(r.reports)", "sum(r.people)"
        period = f"date_trunc('{bucket}', r.day)::date"
        where = "r.day >= %(start)s::date AND r.day < %(end)s::date"
    columns = [SQL_KEY[k] for k in keys] + ([period] if bucket else [])
    if segments:
        where += " AND r.segment_id = ANY(%(ids)s)"
    group = ", ".join(str(i + 1) for i in range(len(columns)))
    select = ", ".join([*columns, f"{count}::bigint", f"{people}::bigint"])
    return f"SELECT {select} FROM {table} r{join} WHERE {where}" + (
        f" GROUP BY {group}" if group else ""
    )


Key = tuple[Any, ...]  # the group's values, then the period's first day (if bucketed)
Counts = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    description: str
    path: str  # path of the request
    params: dict[str, str]  # query of the cached request
    fresh: Callable[[int], dict[str, str]]  # query of the k-th fresh request
    keys: tuple[str, ...]
    bucket: Unit | None  # None: one figure per group over the window
    window: PublicWindow  # what the service should count
    answer: str = "aggregate"  # aggregate | geojson | tile
    segment_ids: tuple[str, ...] | None = None  # a tile's segments: the raw queries' filter

    def url(self, k: int | None = None) -> str:
        query = self.params if k is None else self.fresh(k)
        return self.path + ("?" + urlencode(query) if query else "")

    def raw_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "start": day_start(self.window.start),
            "end": day_start(self.window.end),
        }
        if self.segment_ids is not None:
            params["ids"] = list(self.segment_ids)
        return params

    def sql(self, table: str) -> str:
        return raw_sql(self.keys, self.bucket, table=table, segments=self.segment_ids is not None)


def day_start(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def stamp(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def moved(first: date, k: int, *, days: int) -> str:
    """The k-th fresh ``start``: ``first`` moved by k days within the first ``days`` of its
    period, then by k // days seconds, so that it floors to the same period every time."""
    return stamp(day_start(first) + timedelta(days=k % days, seconds=k // days))


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


def build_cases(info: ReleaseInfo, index: SegmentIndex) -> list[Case]:
    """The costliest public questions, given the release the server answers from."""
    groups_sk = (len(index.segments) + 1) * len(KINDS)
    weeks = MAX_CELLS // groups_sk  # the longest window of weeks under the cap
    week_end = period_floor("week", info.through)
    week_start = week_end - timedelta(weeks=weeks)
    since = period_floor("month", date(info.first.year, 1, 1) if info.first else info.through)
    # region x kind x direction x side by month: as many whole months as fit under the cap.
    regions = {s.properties.get("region_pair") or s.section for s in index.segments}
    countries = {c for s in index.segments for c in (s.left_country, s.right_country)}
    groups_r4 = (len(regions) + 1) * len(KINDS) * (len(countries) + 1) ** 2
    months = MAX_CELLS // groups_r4
    month_end = period_floor("month", info.through)
    month_start = month_end
    for _ in range(months):
        month_start = period_floor("month", month_start - timedelta(days=1))
    x, y = tile_of(*HOT_SPOTS[TILE_AT], TILE_Z)
    in_tile = tuple(
        index.segments[i].segment_id
        for i in segments_in_tile(segment_boxes(index), tile_address(TILE_Z, x, y))
    )

    def window(unit: Unit, start: date | None, end: date | None) -> PublicWindow:
        return public_window(
            unit, None if start is None else day_start(start),
            None if end is None else day_start(end), info,
        )  # fmt: skip

    return [
        Case(
            "segment_month", "group_by=segment&bucket=month, all time",
            "/v1/aggregates", {"group_by": "segment", "bucket": "month"},
            lambda k: {"group_by": "segment", "bucket": "month",
                       "start": moved(since, k, days=28)},
            ("segment",), "month", window("month", None, None),
        ),
        Case(
            "segment_kind_week", f"group_by=segment,kind&bucket=week, {weeks} weeks to "
            f"{week_end} ({weeks * groups_sk:,} possible cells, cap {MAX_CELLS:,})",
            "/v1/aggregates",
            {"group_by": "segment,kind", "bucket": "week", "start": stamp(day_start(week_start)),
             "end": stamp(day_start(week_end))},
            lambda k: {"group_by": "segment,kind", "bucket": "week",
                       "start": moved(week_start, k, days=7), "end": stamp(day_start(week_end))},
            ("segment", "kind"), "week", window("week", week_start, week_end),
        ),
        Case(
            "region4_month", f"group_by=region,kind,direction,side&bucket=month, {months} months "
            f"to {month_end} ({months * groups_r4:,} possible cells, cap {MAX_CELLS:,})",
            "/v1/aggregates",
            {"group_by": "region,kind,direction,side", "bucket": "month",
             "start": stamp(day_start(month_start))},
            lambda k: {"group_by": "region,kind,direction,side", "bucket": "month",
                       "start": moved(month_start, k, days=28)},
            ("region", "kind", "direction", "side"), "month", window("month", month_start, None),
        ),
        Case(
            "choropleth", "/v1/aggregates/segments.geojson, all time",
            "/v1/aggregates/segments.geojson", {},
            lambda k: {"start": moved(since, k, days=1)},
            ("segment",), None, window("day", None, None), answer="geojson",
        ),
        Case(
            "tile_z6", f"public tile {TILE_Z}/{x}/{y} (over {TILE_AT}, {len(in_tile)} segments), "
            "all time",
            f"/v1/tiles/{TILE_Z}/{x}/{y}.mvt", {},
            lambda k: {"start": moved(since, k, days=1)},
            ("segment",), None, window("day", None, None), answer="tile", segment_ids=in_tile,
        ),
    ]  # fmt: skip


# --- reading answers -------------------------------------------------------------------------

Figure = tuple[int | None, int | None]  # reports, people; None, None where hidden


def answer_figures(case: Case, body: bytes) -> tuple[dict[Key, Figure], dict[str, Any]]:
    """The figures of a public answer by group (and period), and its JSON fields besides."""
    if case.answer == "tile":
        layers = mapbox_vector_tile.decode(body)
        out: dict[Key, Figure] = {}
        for f in layers.get("segments", {}).get("features", []):
            p = f["properties"]
            hidden = p.get("suppressed", False)
            out[(p["segment_id"],)] = (None, None) if hidden else (p["reports"], p["people"])
        return out, {}
    doc = orjson.loads(body)
    if case.answer == "geojson":
        out = {}
        for f in doc["features"]:
            p = f["properties"]
            out[(p["segment_id"],)] = (p["reports"], p["people"])
        return out, doc
    out = {}
    for row in doc["rows"]:
        key = tuple(row[API_FIELD[k]] for k in case.keys)
        if case.bucket is not None:
            key += (datetime.fromisoformat(row["period_start"]).astimezone(UTC).date(),)
        out[key] = (row["reports"], row["people"])
    return out, doc


def as_key(row: tuple[Any, ...], n: int) -> Key:
    return tuple(v.date() if isinstance(v, datetime) else v for v in row[:n])


def check_case(
    case: Case,
    answer: bytes | None,
    truth: dict[Key, Counts] | None,
    from_release: dict[Key, Counts] | None,
    info: ReleaseInfo,
    checked: list[int],
) -> list[str]:
    """Every problem with the public answer to ``case`` (see the module's docstring); appends
    to ``checked`` how many published figures were compared with the rule."""
    problems: list[str] = []
    if truth is not None and from_release is not None and truth != from_release:
        diff = [
            k for k in truth.keys() | from_release.keys() if truth.get(k) != from_release.get(k)
        ]
        problems.append(f"release_cells' GROUP BY differs from reports' in {len(diff)} cells, "
                        f"e.g. {diff[0]}: {truth.get(diff[0])} vs {from_release.get(diff[0])}")  # fmt: skip
    if case.window.end > info.through:
        problems.append(f"window ends {case.window.end}, after the release's {info.through}")
    if answer is None or truth is None:
        return problems
    figures, doc = answer_figures(case, answer)
    if case.answer != "tile":
        if "release" not in doc or "window" not in doc:
            problems.append(f"answer lacks release or window: {sorted(doc)}")
        else:
            w = doc["window"]
            if (w["start"], w["end"]) != (str(case.window.start), str(case.window.end)):
                problems.append(f"window {w} is not {case.window}")
            if doc["release"]["release_id"] != info.release_id:
                problems.append(f"release {doc['release']} is not the cut {info.release_id}")
    wrong = []
    for key, got in figures.items():
        want = publish(*truth.get(key, (0, 0)), RULE)
        if got != (want.reports, want.people):
            wrong.append(f"{key}: published {got}, rule on raw {truth.get(key, (0, 0))} gives "
                         f"{(want.reports, want.people)}")  # fmt: skip
    if case.answer == "aggregate":
        # Every shown cell of a group whose total is shown must be listed.
        n = len(case.keys)
        totals: dict[Key, tuple[int, int]] = {}
        for key, (r, p) in truth.items():
            t = totals.get(key[:n], (0, 0))
            totals[key[:n]] = (t[0] + r, t[1] + p)
        for key, (r, p) in truth.items():
            total_r, total_p = totals[key[:n]]
            if (
                key not in figures
                and not publish(r, p, RULE).hidden
                and not publish(total_r, total_p, RULE).hidden
            ):
                wrong.append(f"{key}: shown by the rule ({r}, {p}) but not listed")
    elif case.answer == "geojson":
        missing = {s.segment_id for s in segment_index().segments} - {k[0] for k in figures}
        if missing:
            wrong.append(f"{len(missing)} segments not in the choropleth")
    problems += [f"{len(wrong)} figures differ from the rule, e.g. {w}" for w in wrong[:3]]
    checked.append(len(figures))
    return problems


# --- the cut ---------------------------------------------------------------------------------

_PG_HELPERS = ("checkpointer", "background writer", "walwriter", "autovacuum", "archiver")


def _title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").split(": ", 2)[-1]
    except OSError:
        return ""


class BackendSampler:
    """CPU of the PostgreSQL processes working for one database while a short-lived client (the
    CLI) runs: its backend exits with it, so /proc is sampled (and new backends are pinned to
    ``cores``) every ``every_s``; the shared helpers are read before and after."""

    def __init__(self, postgres: PostgresCpu, cores: set[int] | None, every_s: float = 0.02):
        self.postgres, self.cores, self.every_s = postgres, cores, every_s
        self.seen: dict[int, float] = {}
        self.before: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _helpers(self) -> float:
        total = 0.0
        if self.postgres.postmaster is None:
            return total
        for pid in children_of(self.postgres.postmaster):
            if _title(pid).startswith(_PG_HELPERS):
                with contextlib.suppress(OSError):
                    total += cpu_seconds(pid)
        return total

    def _sample(self) -> None:
        for pid in self.postgres.backends():
            with contextlib.suppress(OSError):
                if pid not in self.seen and pid not in self.before and self.cores:
                    pin_process(pid, self.cores)
                self.seen[pid] = cpu_seconds(pid)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.every_s)

    def __enter__(self) -> BackendSampler:
        for pid in self.postgres.backends():
            with contextlib.suppress(OSError):
                self.before[pid] = cpu_seconds(pid)
        self.helpers_before = self._helpers()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.helpers_after = self._helpers()

    def seconds(self) -> float:
        backends = sum(v - self.before.get(pid, 0.0) for pid, v in self.seen.items())
        return backends + self.helpers_after - self.helpers_before


def measure_cuts(
    url: str, n: int, *, postgres: PostgresCpu, cores: set[int] | None
) -> dict[str, Any]:
    walls, pg, cli = [], [], []
    for i in range(n):
        print(f"cut {i + 1}/{n} ...", file=sys.stderr)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with BackendSampler(postgres, cores) as sampler:
            start = time.perf_counter()
            done = subprocess.run(
                [str(CROSSINGS), "release", "cut"],
                env=server_env(url, log_level="warning") | SERVER_ENV,
                capture_output=True, text=True, check=False,
                preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None,
            )  # fmt: skip
            walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"crossings release cut failed:\n{done.stdout}{done.stderr}")
        pg.append(sampler.seconds())
        cli.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    with psycopg.connect(libpq_url(url)) as conn:
        (rows,) = conn.execute("SELECT count(*) FROM release_cells").fetchone()  # type: ignore[misc]
        (size,) = conn.execute("SELECT pg_total_relation_size('release_cells')").fetchone()  # type: ignore[misc]
    return {
        "cuts": n,
        "wall_s": spread(walls, digits=2),
        "postgres_cpu_s": spread(pg, digits=2),
        "cli_cpu_s": spread(cli, digits=2),
        "release_rows": rows,
        "release_table_bytes": size,
        "output": done.stdout.strip()[-300:],
    }


# The cut's own statements (service/storage/postgis/release.py), run here in a transaction that
# is rolled back: the database's share of a cut, without the CLI's start-up.
CUT_SQL = (
    "DELETE FROM release_cells",
    """INSERT INTO release_cells (day, segment_id, kind, direction, side, reports, people)
    SELECT (observed_at AT TIME ZONE 'UTC')::date, segment_id, kind, direction, side,
           count(*), sum(people_count)
    FROM reports WHERE observed_at < %(through)s GROUP BY 1, 2, 3, 4, 5""",
)


def measure_cut_sql(
    url: str, n: int, info: ReleaseInfo, *, postgres: PostgresCpu, cores: set[int] | None
) -> dict[str, Any]:
    walls, cpu = [], []
    with psycopg.connect(libpq_url(url), prepare_threshold=None) as conn:
        conn.execute("SET jit = off")
        conn.commit()
        postgres.pin_backends(cores)
        for _ in range(n):
            before = postgres.seconds()
            start = time.perf_counter()
            conn.execute("SET LOCAL statement_timeout = 0")
            for statement in CUT_SQL:
                conn.execute(statement, {"through": day_start(info.through)})
            walls.append(time.perf_counter() - start)
            after = postgres.seconds()
            conn.rollback()
            if before is not None and after is not None:
                cpu.append(after - before)
    return {
        "runs": n,
        "what": "DELETE + INSERT ... SELECT GROUP BY of the cut over psycopg, rolled back",
        "wall_s": spread(walls, digits=3),
        "postgres_cpu_s": spread(cpu, digits=3) if cpu else None,
    }


def read_info(url: str) -> ReleaseInfo:
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT release_id, cut_at, through, first_day FROM release_info"
        ).fetchone()
    if row is None:
        raise RuntimeError("no release was cut")
    return ReleaseInfo(int(row[0]), row[1], row[2], row[3])


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Measured:
    phase: Phase
    sizes: list[int] = field(default_factory=list)
    digests: set[str] = field(default_factory=set)
    first: bytes | None = None  # the first answer (a public body, or raw rows as JSON)
    cells: dict[Key, Counts] | None = None  # raw targets: the first answer's cells

    def record(self, sent: list[Sent]) -> None:
        for s in sent:
            if s.status == 200:
                self.sizes.append(len(s.body))
                self.digests.add(hashlib.sha256(s.body).hexdigest())
                if self.first is None:
                    self.first = s.body
        self.phase.sent += [s if s.status >= 300 else Sent(s.status, s.seconds, b"") for s in sent]


@dataclass
class Context(RunContext):
    cases: list[Case]
    measured: dict[tuple[str, str], Measured] = field(default_factory=dict)
    load_ms: list[float] = field(default_factory=list)
    pinned_backends: list[int] = field(default_factory=list)
    fresh_next: int = 0  # fresh requests are never repeated, across rounds either

    def of(self, target: str, case: Case) -> Measured:
        key = (target, case.name)
        if key not in self.measured:
            self.measured[key] = Measured(Phase(f"{target} {case.name}"))
        return self.measured[key]

    def per_round(self, target: str) -> int:
        total: int = self.args.raw_requests if target.startswith("raw") else self.args.requests
        rounds: int = self.args.rounds
        return max(1, round(total / rounds))

    def pin(self) -> None:
        self.pinned_backends.append(self.postgres.pin_backends(self.server_cores))


@contextlib.contextmanager
def public_server(ctx: Context) -> Iterator[Server]:
    port = free_port()
    with running_process(
        [str(CROSSINGS), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=server_env(ctx.url, log_level=ctx.args.server_log_level) | SERVER_ENV,
        base_url=f"http://127.0.0.1:{port}",
        ready_path="/readyz",
        log_path=ctx.scratch / "server.log",
        cores=ctx.server_cores,
    ) as server:  # fmt: skip
        yield server


def server_round(ctx: Context, order: tuple[str, ...]) -> None:
    with public_server(ctx) as server:
        probes = Probes(server.pid, ctx.postgres)
        sender = Sender(server.base_url, headers=HEADERS, warm_path="/healthz")
        try:
            start = time.perf_counter()
            first = sender.get([ctx.cases[0].url()])  # loads the cut into arrays
            ctx.load_ms.append((time.perf_counter() - start) * 1000.0)
            if first[0].status != 200:
                raise RuntimeError(f"first request: {first[0].status} {first[0].body[:300]!r}")
            for case in ctx.cases:
                sent = sender.get([case.url()] * WARMUP_API)
                if bad := [s for s in sent if s.status != 200]:
                    raise RuntimeError(f"warm-up: {bad[0].status} {case.url()} {bad[0].body[:300]!r}")  # fmt: skip
                for target in order:
                    n = ctx.per_round(target)
                    if target == "api":
                        urls = [case.url()] * n
                    else:
                        urls = [case.url(ctx.fresh_next + k) for k in range(n)]
                        ctx.fresh_next += n
                    measured = ctx.of(target, case)
                    ctx.pin()
                    with measured.phase.round(probes, len(urls)):
                        sent = sender.get(urls)
                    measured.record(sent)
        finally:
            sender.close()


def raw_round(ctx: Context, conn: psycopg.Connection[Any], order: tuple[str, ...]) -> None:
    probes = Probes(None, ctx.postgres)
    for case in ctx.cases:
        for target in order:
            table = "reports" if target == "raw_reports" else "release_cells"
            statement, params = case.sql(table), case.raw_params()
            for _ in range(WARMUP_RAW):
                conn.execute(statement, params).fetchall()
            measured = ctx.of(target, case)
            n = ctx.per_round(target)
            ctx.pin()
            results = []
            with measured.phase.round(probes, n):
                for _ in range(n):
                    start = time.perf_counter()
                    rows = conn.execute(statement, params).fetchall()
                    results.append((time.perf_counter() - start, rows))
            width = len(case.keys) + (case.bucket is not None)
            if measured.cells is None:
                measured.cells = {as_key(r, width): (int(r[-2]), int(r[-1])) for r in results[0][1]}
            measured.record([
                Sent(200, s, orjson.dumps(sorted(rows, key=repr), default=str))
                for s, rows in results
            ])  # fmt: skip


def run(ctx: Context) -> None:
    set_parallel_query(ctx.url, allowed=ctx.args.allow_parallel_query)
    with psycopg.connect(libpq_url(ctx.url), autocommit=True, prepare_threshold=None) as conn:
        conn.execute("SET jit = off")  # as the service's sessions run
        conn.execute("VACUUM ANALYZE release_cells, segments")
        for round_no in range(ctx.args.rounds):
            api = ("api", "api_fresh") if round_no % 2 == 0 else ("api_fresh", "api")
            raw = ("raw_reports", "raw_release") if round_no % 2 == 0 else ("raw_release", "raw_reports")  # fmt: skip
            parts: list[Callable[[], None]] = [
                lambda api=api: server_round(ctx, api),  # type: ignore[misc]
                lambda raw=raw: raw_round(ctx, conn, raw),  # type: ignore[misc]
            ]
            if round_no % 2:
                parts.reverse()
            for i, part in enumerate(parts):
                print(f"round {round_no + 1}/{ctx.args.rounds} part {i + 1} ...", file=sys.stderr)
                part()


def cap_check(ctx: Context) -> list[str]:
    """The segment,kind window is under the cap, and one more week is refused (400)."""
    case = next(c for c in ctx.cases if c.name == "segment_kind_week")
    longer = dict(case.params)
    longer["start"] = stamp(day_start(case.window.start - timedelta(weeks=1)))
    problems = []
    with public_server(ctx) as server:
        sender = Sender(server.base_url, headers=HEADERS, warm_path="/healthz")
        try:
            ok, refused = sender.get([case.url(), "/v1/aggregates?" + urlencode(longer)])
        finally:
            sender.close()
    if ok.status != 200:
        problems.append(f"segment_kind_week answered {ok.status}: {ok.body[:200]!r}")
    if refused.status != 400:
        problems.append(f"one more week than the cap allows answered {refused.status}")
    return problems


def reload_stall(ctx: Context) -> dict[str, Any]:
    """What a new cut costs a running server: 4 clients ask for the (kept) public tile in a loop
    while ``crossings release cut`` stores a new cut, until an aggregate answer names the new
    release (the server looks every ``CROSSINGS_RELEASE_CHECK_S``, 5 s, and then loads it)."""
    tile = next(c for c in ctx.cases if c.answer == "tile")
    probe = ctx.cases[0].url()

    def release_id(body: bytes) -> int:
        return int(orjson.loads(body)["release"]["release_id"])

    latencies: list[float] = []
    with public_server(ctx) as server:
        sender = Sender(server.base_url, headers=HEADERS, warm_path="/healthz")
        try:
            before = release_id(sender.get([probe])[0].body)  # the current cut, loaded
            sender.get([tile.url()] * 8, clients=4)
            cores = ctx.server_cores
            subprocess.run(
                [str(CROSSINGS), "release", "cut"],
                env=server_env(ctx.url, log_level="warning") | SERVER_ENV,
                capture_output=True, check=True,
                preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None,
            )  # fmt: skip
            start = time.perf_counter()
            after = before
            while after == before and time.perf_counter() - start < 120.0:
                sent = sender.get([tile.url()] * 8, clients=4)
                latencies += [s.seconds * 1000.0 for s in sent if s.status == 200]
                after = release_id(sender.get([probe])[0].body)
            seconds = time.perf_counter() - start
        finally:
            sender.close()
    ordered = sorted(latencies)
    return {
        "clients": 4,
        "tile_requests": len(latencies),
        "tile_p50_ms": round(ordered[len(ordered) // 2], 1) if ordered else None,
        "tile_max_ms": round(ordered[-1], 1) if ordered else None,
        "tile_requests_over_1s": sum(1 for v in latencies if v > 1000.0),
        "seconds_until_new_release_answered": round(seconds, 1),
        "new_release_seen": after != before,
    }


# --- results ---------------------------------------------------------------------------------


def case_result(ctx: Context, case: Case, info: ReleaseInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": case.description,
        "url": case.url(),
        "fresh_url_example": case.url(1),
        "window": {"start": str(case.window.start), "end": str(case.window.end)},
        "raw_sql_reports": case.sql("reports"),
        "raw_sql_release": case.sql("release_cells"),
    }
    phases = {}
    for target in TARGETS:
        m = ctx.measured.get((target, case.name))
        if m is None:
            continue
        phases[target] = m.phase
        out[target] = m.phase.summary(unit="requests", per="request") | {
            "bytes_per_response": spread(m.sizes, digits=0) if m.sizes else None,
            "distinct_answers": len(m.digests),
        }
        if m.cells is not None:
            out[target]["cells"] = len(m.cells)
    for a, b in (("api_fresh", "raw_reports"), ("api", "raw_reports"),
                 ("api_fresh", "raw_release"), ("raw_release", "raw_reports")):  # fmt: skip
        if a in phases and b in phases:
            out[f"ratio_{a}_to_{b}"] = ratios(phases[a], phases[b])
    truth = ctx.measured.get(("raw_reports", case.name))
    release = ctx.measured.get(("raw_release", case.name))
    api = ctx.measured.get(("api", case.name))
    checked: list[int] = []
    problems = check_case(
        case,
        None if api is None else api.first,
        None if truth is None else truth.cells,
        None if release is None else release.cells,
        info,
        checked,
    )
    out["figures_checked"] = sum(checked)
    if api and len(api.digests) > 1:
        problems.append(f"cached answers differ ({len(api.digests)})")
    if truth and len(truth.digests) > 1:
        problems.append(f"raw GROUP BY answered differently ({len(truth.digests)})")
    out["checks"] = [f"{case.name}: {p}" for p in problems]
    worst = max(
        (out[t]["latency_ms"]["p99"] for t in ("api", "api_fresh") if t in out), default=None
    )
    out["aim_p99_at_most_ms"] = AIM_MS
    out["aim_met"] = None if worst is None else worst <= AIM_MS
    return out


def table(result: dict[str, Any]) -> None:
    cut = result["cut"]
    print()
    alone = cut["sql_alone"]
    print_table(
        ["cuts", "wall s", "range", "PG CPU s", "CLI CPU s", "SQL alone s", "its PG CPU s",
         "release rows", "table MB"],
        [[cut["cuts"], cut["wall_s"]["median"],
          f"{cut['wall_s']['min']:.2f}-{cut['wall_s']['max']:.2f}",
          cut["postgres_cpu_s"]["median"], cut["cli_cpu_s"]["median"],
          alone["wall_s"]["median"],
          alone["postgres_cpu_s"] and alone["postgres_cpu_s"]["median"],
          cut["release_rows"], round(cut["release_table_bytes"] / 2**20, 1)]],
    )  # fmt: skip
    detail = []
    for name, case in result["cases"].items():
        for target in TARGETS:
            s = case.get(target)
            if s is None:
                continue
            lat, cpu = s["latency_ms"], s["cpu_us_per_request"]
            size = s["bytes_per_response"]
            detail.append([
                name, LABEL[target], s["requests_per_s"], lat["p50"], lat["p99"],
                None if size is None else round(size["median"] / 1024, 1),
                ms_of_us(cpu["server"]), ms_of_us(cpu["postgres"]), ms_of_us(cpu["client"]),
                s["non_2xx"],
            ])  # fmt: skip
    print()
    print_table(
        ["case", "target", "req/s", "p50 ms", "p99 ms", "KB/resp", "srv ms/req", "pg ms/req",
         "client ms/req", "non-2xx"],
        detail,
    )  # fmt: skip
    summary = []
    for name, case in result["cases"].items():

        def r(key: str, c: dict[str, Any] = case) -> float | None:
            got = c.get(key)
            return None if got is None else got["overall"]

        summary.append([
            name, case.get("figures_checked"), r("ratio_api_fresh_to_raw_reports"), r("ratio_api_to_raw_reports"),
            r("ratio_api_fresh_to_raw_release"), r("ratio_raw_release_to_raw_reports"),
            {True: "yes", False: "NO", None: "-"}[case["aim_met"]],
        ])  # fmt: skip
    print()
    print_table(
        ["case", "figures checked", "fresh x reports", "cached x reports", "fresh x release_cells",
         "release_cells x reports", f"p99 <= {AIM_MS:g} ms"],
        summary,
    )  # fmt: skip
    print(f"\nfirst request of a server (loads the cut): {result['load_ms']} ms")
    print(f"a new cut while 4 clients ask for a tile: {result['new_cut_under_load']}")
    print_checks_and_notes(result)


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(
        "public_release", __doc__, quick="100,000 reports; 45 and 6 requests per case"
    )
    add_request_arguments(
        parser, requests=90, per="case and API target", rounds=3,
        raw_requests=9, raw_per="case and raw target",
    )  # fmt: skip
    parser.add_argument("--cuts", type=int, default=3)
    quick = {"reports": 100_000, "requests": 45, "raw_requests": 6}
    args = parse_benchmark_args(parser, argv, seed=SEED, output=None, quick=quick)
    if args.output is None:
        args.output = "public_release_quick" if args.quick else "public_release"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_at_start = os.getloadavg()
    bench_run = Run.start(
        args,
        about=[
            "api: one URL again and again (answers kept per cut); api_fresh: start moved inside "
            "the window's first period every time (the same periods counted, a new request)",
            "no key: every figure from the release, through the public rule "
            f"(min_count {RULE.min_count}, round_to {RULE.round_to}); rate limits off",
            "raw targets: psycopg from this process, never prepared, rows fetched into Python, "
            "jit off; with few requests their p99 is about their maximum",
            "the cut: crossings release cut (a new process each time: its Python start-up is in "
            "the wall time); PostgreSQL CPU sampled every 20 ms (up to 20 ms per cut unseen)",
        ],
    )
    with (
        scratch_dir("crossings_public_release_") as scratch,
        benchmark_database(args, bench_run.notes) as (url, facts),
    ):
        postgres = PostgresCpu.of_database(url)
        cut = measure_cuts(url, args.cuts, postgres=postgres, cores=bench_run.server_cores)
        info = read_info(url)
        cut["sql_alone"] = measure_cut_sql(
            url, args.cuts, info, postgres=postgres, cores=bench_run.server_cores
        )
        cases = build_cases(info, segment_index())
        ctx = Context(args, url, scratch, bench_run.server_cores, postgres, cases)
        checks = cap_check(ctx)
        run(ctx)
        print("a new cut under load ...", file=sys.stderr)
        stall = reload_stall(ctx)
        with psycopg.connect(libpq_url(url)) as conn:
            settings = pg_settings(conn, PG_SETTINGS)
            (reports,) = conn.execute("SELECT count(*) FROM reports").fetchone()  # type: ignore[misc]
    params = ("reports", "requests", "raw_requests", "rounds", "cuts", "seed", "quick")
    result: dict[str, Any] = bench_run.header(
        "public_release", params, facts | {"reports_now": reports}
    ) | {
        "release": {
            "release_id": info.release_id,
            "cut_at": info.cut_at.isoformat(),
            "through": str(info.through),
            "first": str(info.first),
        },
        "crossings": service_facts(None),
        "database": {"settings": settings},
        "machine": bench_run.machine(ctx.pinned_backends)
        | {"loadavg_at_start": load_at_start, "loadavg_at_end": os.getloadavg()},
        "cut": cut,
        "load_ms": [round(v, 1) for v in ctx.load_ms],
        "new_cut_under_load": stall,
    }
    result["cases"] = {c.name: case_result(ctx, c, info) for c in cases}
    result["checks"] = checks + [p for c in result["cases"].values() for p in c["checks"]]
    return bench_run.finish(result, table)


if __name__ == "__main__":
    sys.exit(main())
