"""A realistic ``reports`` table on PostGIS for read benchmarks: a million rows in well under a
minute.

The reports come from ``bench.synthetic.report_columns`` (near the Canada-US border, 40% around five
hot spots, observed over the past year) and are snapped in process exactly as the service snaps
them (``service.domain.snapping.snap_arrays`` on the bundled segments, within the service's default
reach), so segment_id, distance, side and chainage are the real ones. Rows are written in the
order they arrived (``received_at``: a few minutes after being observed), as an append-only log
fills a table, so the heap is roughly in time order, as it would be in production.

Loading: the secondary indexes the migration made are dropped, the rows go in by binary ``COPY``,
and the indexes are rebuilt from their own definitions (``pg_indexes.indexdef``), which is several
times faster than maintaining a GiST index row by row; then ``VACUUM (ANALYZE)``, as autovacuum
would have done on a live table.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import psycopg
from psycopg import sql

from bench.harness import ADMIN_URL, fresh_postgis_database, libpq_url, postgis_url, run_cli
from bench.raw_limits import COPY_TYPES, PG_COLUMNS, Ewkb, register_ewkb_dumper
from bench.synthetic import (
    DIRECTIONS,
    KINDS,
    NOTES,
    SEGMENTS_PATH,
    Border,
    ReportColumns,
    report_columns,
)
from service.domain.reports import ReportDraft, SnapStatus
from service.domain.segments import SegmentIndex, parse_segment_collection
from service.domain.snapping import SnapArrays, snap_arrays
from service.settings import Settings
from service.storage.postgis.rollups import ROLLUP_TABLES

CHUNK_ROWS = 50_000
RECEIVED_DELAY_MEAN_S = 300.0  # how long after being observed a report reaches the server
# The service's own default reach: a report farther from the border than this is not snapped.
MAX_SNAP_DISTANCE_M = float(Settings.model_fields["max_snap_distance_m"].default)

# A little-endian EWKB point with an SRID: byte order, type | 0x20000000, SRID, x, y.
_EWKB_POINT = np.dtype(
    [("order", "u1"), ("type", "<u4"), ("srid", "<i4"), ("x", "<f8"), ("y", "<f8")]
)


@contextlib.contextmanager
def reports_database(
    *, admin_url: str, reuse: str | None, keep: bool, reports: int, seed: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(service URL, facts about the data) of a database holding ``reports`` reports: a fresh
    one (migrated with ``crossings db upgrade``, segments loaded with ``crossings segments load``,
    reports loaded here, rollups counted with ``crossings db rebuild-rollups``; dropped afterwards
    unless ``keep``), or ``reuse``, loaded earlier so (and upgraded to the current schema)."""
    if reuse:
        url = postgis_url(admin_url, reuse)
        with psycopg.connect(libpq_url(url)) as conn:
            (comment,) = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database"
                " WHERE datname = current_database()"
            ).fetchone() or (None,)
            (count,) = conn.execute("SELECT count(*) FROM reports").fetchone()  # type: ignore[misc]
        facts = orjson.loads(comment) if comment else {}
        if "now" not in facts:
            raise SystemExit(
                f"{reuse} was not loaded by bench/dataset.py (no facts in its comment)"
            )
        run_cli(["db", "upgrade"], database_url=url)  # a database older than this code catches up
        unlinked = skip_linking(url)
        yield url, facts | {"reused": reuse, "rows_now": count, "linking_skipped": unlinked}
        return
    with fresh_postgis_database(admin_url, keep=keep) as url:
        run_cli(["db", "upgrade"], database_url=url)
        run_cli(["segments", "load", str(SEGMENTS_PATH)], database_url=url)
        print(f"loading {reports:,} reports ...", file=sys.stderr)
        with psycopg.connect(libpq_url(url)) as conn:
            facts = load_reports(conn, n=reports, seed=seed, now=datetime.now(UTC))
            # The facts go with the database, for a later run that reuses it.
            conn.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(conn.info.dbname), sql.Literal(orjson.dumps(facts).decode())
                )
            )
            conn.commit()
        # COPY went around ingest, which keeps the tile rollups: count them now.
        run_cli(["db", "rebuild-rollups"], database_url=url)
        vacuum_rollups(url)
        facts["linking_skipped"] = skip_linking(url)
        print(f"loaded in {facts['seconds']}", file=sys.stderr)
        yield url, facts


def vacuum_rollups(url: str) -> None:
    """VACUUM (ANALYZE) the rollups a rebuild has just refilled, as autovacuum would have done on
    a live database: their reads are index-only (migrations 0007, 0019), which needs the
    visibility map that vacuum keeps; without it every row read costs a heap page as well."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(f"VACUUM (ANALYZE) {', '.join(ROLLUP_TABLES)}")


def skip_linking(url: str) -> int:
    """Empty the queue of reports waiting to be linked (filled by COPY's insert trigger, or by
    migration 0015 for the reports a database held); return how many were in it. The read
    benchmarks measure reads, not a server's folder thread linking a million-report backlog
    beside them (docs/linking.md: a backlog links at about 0.7 ms a report)."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('link_pending')").fetchone() == (None,):
            return 0
        return conn.execute("DELETE FROM link_pending").rowcount


def set_parallel_query(url: str, *, allowed: bool) -> None:
    """Allow parallel query on the database (the server's default), or switch it off."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        name = sql.Identifier(conn.info.dbname)
        statement = (
            "ALTER DATABASE {} RESET max_parallel_workers_per_gather"
            if allowed
            else "ALTER DATABASE {} SET max_parallel_workers_per_gather = 0"
        )
        conn.execute(sql.SQL(statement).format(name))


def segment_index() -> SegmentIndex:
    """The index the service builds from the bundled segment file."""
    return SegmentIndex(parse_segment_collection(orjson.loads(SEGMENTS_PATH.read_bytes())))


def load_reports(
    conn: psycopg.Connection[Any], *, n: int, seed: int, now: datetime
) -> dict[str, Any]:
    """Fill the (empty, migrated) ``reports`` table with ``n`` reports; return what was done and
    how long each step took."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    columns = report_columns(n, seed=seed, border=Border.load())
    timings["generate_s"] = time.perf_counter() - started

    started = time.perf_counter()
    index = segment_index()
    snap = snap_arrays(columns.lon, columns.lat, index, max_distance_m=MAX_SNAP_DISTANCE_M)
    segment_ids = index.ids[np.maximum(snap.segment, 0)]
    segment_ids[snap.edge < 0] = None
    timings["snap_s"] = time.perf_counter() - started

    rng = np.random.default_rng(seed + 1)  # a stream of its own: report_columns stays as it is
    received_age_s = np.maximum(columns.age_s - rng.exponential(RECEIVED_DELAY_MEAN_S, n), 0.0)
    order = np.argsort(-received_age_s, kind="stable")  # the oldest arrival first

    started = time.perf_counter()
    indexes = _drop_secondary_indexes(conn)
    _copy(conn, columns, snap, segment_ids, received_age_s, order, now=now)
    timings["copy_s"] = time.perf_counter() - started

    started = time.perf_counter()
    conn.execute("SET maintenance_work_mem = '512MB'")
    for definition in indexes.values():
        conn.execute(sql.SQL(definition))  # the catalog's own text
    conn.commit()
    timings["index_s"] = time.perf_counter() - started

    started = time.perf_counter()
    conn.autocommit = True
    conn.execute("VACUUM (ANALYZE) reports")
    conn.autocommit = False
    timings["vacuum_analyze_s"] = time.perf_counter() - started

    return {
        "reports": n,
        "seed": seed,
        "now": now.isoformat(),
        "snapped": int((snap.edge >= 0).sum()),
        "indexes_rebuilt": sorted(indexes),
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }


def _drop_secondary_indexes(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Drop the indexes of ``reports`` that back no constraint; return their definitions."""
    rows = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = current_schema() AND tablename = 'reports'"
        " AND indexname NOT IN (SELECT conname FROM pg_constraint"
        "  WHERE conrelid = 'reports'::regclass)"
    ).fetchall()
    for name, _ in rows:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    return dict(rows)


def _copy(
    conn: psycopg.Connection[Any],
    columns: ReportColumns,
    snap: SnapArrays,
    segment_ids: np.ndarray,
    received_age_s: np.ndarray,
    order: np.ndarray,
    *,
    now: datetime,
) -> None:
    geometry = register_ewkb_dumper(conn)
    types = [geometry if t == "geometry" else t for t in COPY_TYPES]
    statement = f"COPY reports ({PG_COLUMNS}) FROM STDIN (FORMAT BINARY)"
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(types)
        for start in range(0, len(order), CHUNK_ROWS):
            which = order[start : start + CHUNK_ROWS]
            for row in _rows(columns, snap, segment_ids, received_age_s, which, now=now):
                copy.write_row(row)
    conn.commit()


def _ewkb_points(lon: np.ndarray, lat: np.ndarray) -> list[Ewkb | None]:
    points = np.zeros(len(lon), dtype=_EWKB_POINT)
    points["order"], points["type"], points["srid"] = 1, 0x20000001, 4326
    points["x"], points["y"] = lon, lat
    raw = points.tobytes()
    size = _EWKB_POINT.itemsize
    return [
        None if np.isnan(lon[i]) else Ewkb(raw[i * size : (i + 1) * size]) for i in range(len(lon))
    ]


def _rows(
    c: ReportColumns,
    snap: SnapArrays,
    segment_ids: np.ndarray,
    received_age_s: np.ndarray,
    which: np.ndarray,
    *,
    now: datetime,
) -> list[tuple[Any, ...]]:
    """The rows of reports ``which``, in the column order of raw_limits.PG_COLUMNS."""
    snapped = snap.edge[which] >= 0
    segment_id = segment_ids[which].tolist()
    lon, lat = c.lon[which].tolist(), c.lat[which].tolist()
    accuracy = c.accuracy_m[which].tolist()
    distance = snap.distance_m[which].tolist()
    chainage = snap.chainage_km[which].tolist()
    geoms = _ewkb_points(c.lon[which], c.lat[which])
    snap_geoms = _ewkb_points(snap.lon[which], snap.lat[which])
    sides = snap.side[which].tolist()
    rows = []
    for k, i in enumerate(which.tolist()):
        observed = c.observed_at(i, now)
        draft = ReportDraft(
            id=c.report_id(i),
            observed_at=observed,
            lon=lon[k],
            lat=lat[k],
            people_count=int(c.people_count[i]),
            kind=KINDS[c.kind[i]],
            direction=DIRECTIONS[c.direction[i]],
            accuracy_m=None if np.isnan(accuracy[k]) else accuracy[k],
            notes=NOTES[c.note[i]] if c.note[i] >= 0 else None,
            device_id=f"dev-{c.device[i]:05d}" if c.device[i] >= 0 else None,
        )
        is_snapped = bool(snapped[k])
        rows.append(
            (
                draft.id,
                observed,
                now - timedelta(seconds=float(received_age_s[i])),
                geoms[k],
                draft.people_count,
                draft.kind,
                draft.direction,
                draft.accuracy_m,
                draft.notes,
                draft.device_id,
                draft.content_hash(),
                (SnapStatus.SNAPPED if is_snapped else SnapStatus.BEYOND_MAX_DISTANCE).value,
                segment_id[k],
                distance[k] if is_snapped else None,
                snap_geoms[k],
                chainage[k] if is_snapped else None,
                sides[k],
            )
        )
    return rows


def parse_benchmark_args(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    *,
    seed: int,
    output: str | None,
    quick: Mapping[str, int],
) -> argparse.Namespace:
    """Add the database options and ``--output`` (the JSON's name in bench/results, default
    ``output``) to a benchmark_parser, parse ``argv``, and under ``--quick`` set ``quick``'s
    values (100,000 reports and fewer requests)."""
    add_database_arguments(parser, seed=seed)
    parser.add_argument(
        "--output", default=output, help="name of the JSON in bench/results"
        + (" (default by size)" if output is None else "")
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in quick.items():
            setattr(args, name, value)
    return args


def add_database_arguments(parser: argparse.ArgumentParser, *, seed: int) -> None:
    """The options of a benchmark that reads a database loaded by bench/dataset.py and pins its
    server and PostgreSQL backends (pin_for_database)."""
    parser.add_argument("--db", help="reuse this database, loaded by an earlier --keep-db run")
    parser.add_argument("--keep-db", action="store_true", help="keep the database loaded here")
    parser.add_argument(
        "--allow-parallel-query",
        action="store_true",
        help="leave max_parallel_workers_per_gather at the server default",
    )
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--admin-url", default=ADMIN_URL, help="libpq URL that may CREATE DATABASE")
    parser.add_argument("--server-log-level", default="warning")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")


@contextlib.contextmanager
def benchmark_database(
    args: argparse.Namespace, notes: list[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(service URL, facts) of the database add_database_arguments' options ask for: ``--db``
    reused, or ``args.reports`` reports loaded by bench/dataset.py (kept with ``--keep-db``).
    What a later reader must know about it goes to ``notes``."""
    if args.db:
        notes.append(f"reused database {args.db} (loaded by an earlier run, kept)")
    with reports_database(
        admin_url=args.admin_url, reuse=args.db, keep=args.keep_db, reports=args.reports,
        seed=args.seed,
    ) as (url, facts):  # fmt: skip
        if args.keep_db and not args.db:
            name = url.rsplit("/", 1)[-1]
            notes.append(f"database {name} kept: rerun with --db {name}; drop it when done")
        yield url, facts
