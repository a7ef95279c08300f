"""The database's own fastest way to store the rows the service stored: the raw limit an ingest
path is compared with. A round at a time, so that a benchmark can interleave raw rounds with its
own and let drift of the machine hit both alike.

- PostGIS: binary ``COPY`` into ``reports_copy`` (``LIKE reports INCLUDING ALL``).
- SQLite: ``executemany`` plus the R*Tree insert the store makes, into an empty file with the
  server file's own schema.

The rows are read back from the service's database exactly as it stored them (geometry and snap
columns included), outside the clock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

from bench.load import Phase, Probes

# The columns of `reports`, as the service stores them (alembic/versions/0001_initial.py).
PG_COLUMNS = (
    "id, observed_at, received_at, geom, people_count, kind, direction, accuracy_m, notes, "
    "device_id, content_hash, snap_status, segment_id, snap_distance_m, snap_geom, chainage_km, side"
)


# What the limits store: PG_COLUMNS and the posting key, so that their rows enter the same indexes
# as the service's (reports_key_observed holds the reports posted with a key).
LIMIT_COLUMNS = PG_COLUMNS + ", key_id"

# Binary COPY types of PG_COLUMNS. char(2) travels as text (bpchar's binary form is its text);
# geometry as EWKB, for which psycopg has no dumper: register_ewkb_dumper makes one.
COPY_TYPES = (
    "uuid", "timestamptz", "timestamptz", "geometry", "int4", "text", "text", "float8", "text",
    "text", "bytea", "text", "text", "float8", "geometry", "float8", "text",
)  # fmt: skip
LIMIT_TYPES = (*COPY_TYPES, "text")


def rows_by_id(
    conn: Any, select: str, ids: Sequence[str], *, geometry: Callable[[Any], Any]
) -> dict[str, tuple[Any, ...]]:
    """The stored rows (``select``'s columns, in LIMIT_TYPES' order) of the reports ``ids`` that
    are still there, by id, each geometry passed through ``geometry``; the transaction ended."""
    found = {
        str(row[0]): tuple(
            geometry(v) if t == "geometry" and v is not None else v
            for v, t in zip(row, LIMIT_TYPES, strict=True)
        )
        for row in conn.execute(
            f"SELECT {select} FROM reports WHERE id = ANY(%s::uuid[])", [list(ids)]
        )
    }
    conn.commit()
    return found


class Ewkb(bytes):
    """Geometry as EWKB bytes, to be dumped with the geometry type's oid."""


def register_ewkb_dumper(conn: psycopg.Connection[Any]) -> int:
    (oid,) = conn.execute("SELECT 'geometry'::regtype::oid").fetchone()  # type: ignore[misc]

    class EwkbDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj: Any) -> bytes:
            return bytes(obj)

    EwkbDumper.oid = int(oid)
    conn.adapters.register_dumper(Ewkb, EwkbDumper)
    return int(oid)


class RawLimit(Protocol):
    """The database's own fastest way to store rows the service stored, a round at a time."""

    name: str
    phase: Phase

    def warm_up(self, ids: Sequence[str]) -> None: ...

    def round(self, ids: Sequence[str]) -> None: ...

    def summary(self) -> dict[str, Any]: ...


class _Rounds:
    """A RawLimit's rounds: its rows read back (outside the clock), then stored (``_store``) on
    the clock of ``phase``; a warm-up stores them off the clock."""

    phase: Phase
    probes: Probes

    def _rows(self, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _store(self, rows: Sequence[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def warm_up(self, ids: Sequence[str]) -> None:
        self._store(self._rows(ids))

    def round(self, ids: Sequence[str]) -> None:
        rows = self._rows(ids)
        with self.phase.round(self.probes, len(rows)):
            self._store(rows)


def _ewkb_reads(conn: psycopg.Connection[Any]) -> tuple[list[Any], str]:
    """The COPY types of LIMIT_COLUMNS (geometry as EWKB, its dumper registered on ``conn``) and
    the select list that reads them back so."""
    geometry = register_ewkb_dumper(conn)
    types = [geometry if t == "geometry" else t for t in LIMIT_TYPES]
    select = LIMIT_COLUMNS.replace(" geom,", " ST_AsEWKB(geom),").replace(
        "snap_geom,", "ST_AsEWKB(snap_geom),"
    )
    return types, select


COPY_TABLE = "reports_copy"


def copy_target(conn: psycopg.Connection[Any], *, with_rows: bool) -> int:
    """Make ``reports_copy``, the table the COPY limit fills, and return the rows it holds.

    Empty: ``LIKE reports INCLUDING ALL`` (the same columns, defaults, constraints and indexes).
    ``with_rows``: the same, holding a copy of every row of ``reports``, its indexes built after
    the rows (as ``bench/dataset.py`` builds those of ``reports``), then vacuumed and analysed: a
    benchmark that ingests onto a loaded store then compares with ``COPY`` onto as many rows and
    indexes of the same size, not into an empty table. A ``reports_copy`` already there (made so
    in the template database of ``--onto``, once) is kept as it is.
    """
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [COPY_TABLE]).fetchone()
    if exists and exists[0]:
        (rows,) = conn.execute(f"SELECT count(*) FROM {COPY_TABLE}").fetchone()  # type: ignore[misc]
        conn.commit()
        return int(rows)
    if not with_rows:
        conn.execute(f"CREATE TABLE {COPY_TABLE} (LIKE reports INCLUDING ALL)")
        conn.commit()
        return 0
    conn.execute(f"CREATE TABLE {COPY_TABLE} (LIKE reports INCLUDING ALL EXCLUDING INDEXES)")
    # Generated columns (the grid cells) are computed again by the insert.
    columns = ", ".join(
        name
        for (name,) in conn.execute(
            "SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = 'reports'::regclass"
            " AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum"
        )
    )
    conn.execute(f"INSERT INTO {COPY_TABLE} ({columns}) SELECT {columns} FROM reports")
    definitions = conn.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'reports'::regclass"
    ).fetchall()
    for name, definition in definitions:
        head, on, tail = definition.partition(" ON public.reports ")
        if not on:
            raise RuntimeError(f"unexpected index definition: {definition}")
        head = head.replace(name, f"{COPY_TABLE}_{name}", 1)
        conn.execute(f"{head} ON public.{COPY_TABLE} {tail}")
    conn.commit()
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        conn.execute(f"VACUUM (ANALYZE) {COPY_TABLE}")
    finally:
        conn.autocommit = autocommit
    (rows,) = conn.execute(f"SELECT count(*) FROM {COPY_TABLE}").fetchone()  # type: ignore[misc]
    conn.commit()
    return int(rows)


class PostgisCopy(_Rounds):
    """Binary COPY, psycopg ``write_row``, one COPY and commit per round, into ``reports_copy``
    (``LIKE reports INCLUDING ALL``: the same columns, indexes and constraints; ``with_rows``:
    holding the rows ``reports`` held before the run too, see ``copy_target``), of the rows read
    back from ``reports`` exactly as the service stored them, their posting key too (outside the
    clock)."""

    name = "copy"

    def __init__(
        self, conn: psycopg.Connection[Any], probes: Probes, *, with_rows: bool = False
    ) -> None:
        self.conn = conn
        self.probes = probes
        self.phase = Phase(self.name)
        self.types, self.select = _ewkb_reads(conn)
        self.rows_before = copy_target(conn, with_rows=with_rows)
        self.missing = 0

    def _rows(self, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        found = rows_by_id(self.conn, self.select, ids, geometry=Ewkb)
        self.missing += len(ids) - len(found)
        return [found[i] for i in ids if i in found]  # in the order the service got them

    def _store(self, rows: Sequence[tuple[Any, ...]]) -> None:
        sql = f"COPY {COPY_TABLE} ({LIMIT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
        with self.conn.cursor() as cur, cur.copy(sql) as copy:
            copy.set_types(self.types)
            for row in rows:
                copy.write_row(row)
        self.conn.commit()

    def summary(self) -> dict[str, Any]:
        (copied,) = self.conn.execute(f"SELECT count(*) FROM {COPY_TABLE}").fetchone()  # type: ignore[misc]
        (same,) = self.conn.execute(  # type: ignore[misc]
            "SELECT count(*) FROM reports r JOIN reports_copy c USING (id)"
            " WHERE ST_Equals(r.geom, c.geom) AND r.content_hash = c.content_hash"
            " AND r.observed_at = c.observed_at"
            " AND r.snap_geom IS NOT DISTINCT FROM c.snap_geom"
        ).fetchone()
        self.conn.commit()
        return self.phase.summary(unit="rows") | {
            "method": "COPY ... FROM STDIN (FORMAT BINARY), psycopg write_row, "
            "one COPY and commit per round (warm-up rows included)",
            "rows_in_table": copied,
            "rows_before_the_rounds": self.rows_before,
            "rows_equal_to_service": same,
            "rows_missing_from_service": self.missing,
        }


class SqliteExecutemany(_Rounds):
    """``executemany`` + the R*Tree ``INSERT ... SELECT`` the store makes, one transaction per
    round, into an empty file with the server file's own schema, of the rows read back from the
    server's file exactly as stored (outside the clock)."""

    name = "executemany"

    def __init__(self, source: Path, target: Path, probes: Probes) -> None:
        self.probes = probes
        self.phase = Phase(self.name)
        self.source = sqlite3.connect(source)
        schema = self.source.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
        ).fetchall()
        self.columns = [
            r[1] for r in self.source.execute("PRAGMA table_info(reports)") if r[1] != "row_no"
        ]
        virtual = [n for n, sql in schema if sql.upper().startswith("CREATE VIRTUAL TABLE")]
        self.target = sqlite3.connect(target, isolation_level=None)
        self.target.execute("PRAGMA journal_mode = WAL")
        self.target.execute("PRAGMA synchronous = NORMAL")  # as the store sets it
        for name, sql in schema:
            if not any(name.startswith(f"{v}_") for v in virtual):  # R*Tree shadow tables
                self.target.execute(sql)
        names = ", ".join(self.columns)  # from the file's own schema, not from input
        self.select = f"SELECT {names} FROM reports WHERE id IN (SELECT value FROM json_each(?))"
        self.insert = f"INSERT INTO reports ({names}) VALUES ({', '.join('?' * len(self.columns))})"

    def _rows(self, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        id_at = self.columns.index("id")
        found = {r[id_at]: r for r in self.source.execute(self.select, (orjson.dumps(ids),))}
        return [found[i] for i in ids if i in found]

    def _store(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.target.execute("BEGIN IMMEDIATE")
        (last,) = self.target.execute("SELECT coalesce(max(row_no), 0) FROM reports").fetchone()
        self.target.executemany(self.insert, rows)
        self.target.execute(
            "INSERT INTO reports_rtree (row_no, min_lon, max_lon, min_lat, max_lat)"
            " SELECT row_no, lon, lon, lat, lat FROM reports WHERE row_no > ?",
            (last,),
        )
        self.target.execute("COMMIT")

    def summary(self) -> dict[str, Any]:
        (copied,) = self.target.execute("SELECT count(*) FROM reports").fetchone()
        return self.phase.summary(unit="rows") | {
            "method": "sqlite3 executemany + R*Tree INSERT ... SELECT, one transaction per round "
            "(warm-up rows included)",
            "rows_in_table": copied,
        }

    def close(self) -> None:
        self.source.close()
        self.target.close()


class PostgisInsert(_Rounds):
    """A bare single-row ``INSERT`` per report, each its own transaction (autocommit), from
    ``connections`` connections at once (a thread each, taking the next row when free), into
    ``reports_insert`` (``LIKE reports INCLUDING ALL``), of the rows read back from ``reports``
    exactly as the service stored them (outside the clock). What a single-report write path
    could do at best over the same number of connections."""

    name = "insert"

    def __init__(self, conn: psycopg.Connection[Any], probes: Probes, *, connections: int) -> None:
        self.conn = conn
        self.probes = probes
        self.phase = Phase(f"{self.name}_x{connections}")
        self.url = conn.info.dsn
        self.types, self.select = _ewkb_reads(conn)
        conn.execute("CREATE TABLE reports_insert (LIKE reports INCLUDING ALL)")
        conn.commit()
        self.sql = (
            f"INSERT INTO reports_insert ({LIMIT_COLUMNS}) VALUES ("
            + ", ".join("ST_GeomFromEWKB(%s)" if t == "geometry" else "%s" for t in LIMIT_TYPES)
            + ")"
        )
        self.connections = [psycopg.connect(self.url, autocommit=True) for _ in range(connections)]
        self.latencies: list[float] = []

    def _rows(self, ids: Sequence[str]) -> list[tuple[Any, ...]]:
        found = rows_by_id(self.conn, self.select, ids, geometry=bytes)
        return [found[i] for i in ids if i in found]

    def _store(self, rows: Sequence[tuple[Any, ...]]) -> None:
        import threading
        import time

        pending = iter(rows)
        lock = threading.Lock()
        latencies: list[float] = []

        def worker(conn: psycopg.Connection[Any]) -> None:
            while True:
                with lock:
                    row = next(pending, None)
                if row is None:
                    return
                start = time.perf_counter()
                conn.execute(self.sql, row, prepare=True)
                latencies.append(time.perf_counter() - start)

        threads = [threading.Thread(target=worker, args=(c,)) for c in self.connections]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.latencies.extend(latencies)

    def summary(self) -> dict[str, Any]:
        from bench.figures import latency_summary

        for conn in self.connections:
            conn.close()
        return self.phase.summary(unit="rows") | {
            "method": f"INSERT ... VALUES, one row per statement in autocommit, prepared, from "
            f"{len(self.connections)} connections at once (a thread each)",
            "latency_ms": latency_summary(self.latencies),
        }
