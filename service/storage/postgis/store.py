"""PostgisStore: one engine, one transaction per call, database faults as StoreUnavailable."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TypeVar
from uuid import UUID

import psycopg
from psycopg.errors import QueryCanceled
from sqlalchemy import Connection, Engine, create_engine, exc, text

from service.domain.access import ApiKey, AuditEntry
from service.domain.errors import (
    PoolExhausted,
    SchemaNotCurrent,
    StatementTimeout,
    StoreUnavailable,
)
from service.domain.reports import IngestResult, Report
from service.domain.segments import BorderSegment
from service.domain.tiles import SegmentCount, TileFilter, TileReports
from service.settings import Settings
from service.storage.base import (
    BorderChanged,
    CountQuery,
    CountRow,
    Extent,
    OnProgress,
    ReportPage,
    ReportQuery,
    Resnap,
    TileQuery,
)
from service.storage.postgis import (
    access,
    border,
    counts,
    pages,
    reports,
    retention,
    rollups,
    segments,
    tiles,
)

T = TypeVar("T")

# Faults of the database or the network to it, not of the request: the client should retry.
_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError)
_DRIVER_FAULTS = (psycopg.OperationalError, psycopg.InterfaceError)


class _ConnectionLost(Exception):
    """The connection died under a statement on psycopg's own cursor (dropped; try once more)."""


def _closed(conn: Connection) -> bool:
    dbapi = conn.connection.dbapi_connection
    return dbapi is None or bool(getattr(dbapi, "closed", True))


def _unreachable(name: str) -> StoreUnavailable:
    return StoreUnavailable("the database is not reachable", operation=name)


def _timeout(name: str) -> StatementTimeout:
    return StatementTimeout(
        "the database did not finish this request within its statement timeout; a smaller "
        "request (fewer items, a narrower window) may pass",
        operation=name,
    )


def make_engine(settings: Settings) -> Engine:
    options = [
        # Spatial queries with bound parameters turn slow under generic plans (see
        # PERFORMANCE-NOTES: 4x after five runs); always plan for the actual values.
        "-c plan_cache_mode=force_custom_plan",
        f"-c statement_timeout={settings.db_statement_timeout_ms}",
        "-c TimeZone=UTC",  # timestamps come back in UTC: no conversion per row
        # Every query here is index-bound and takes milliseconds; JIT compiling one whose estimate
        # passes jit_above_cost took 400 ms (an aggregate in a box: bench/aggregates).
        "-c jit=off",
    ]
    return create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=10,
        # Errors carry the statement but never its parameters (positions, notes) into logs.
        hide_parameters=True,
        connect_args={"connect_timeout": 5, "options": " ".join(options)},
    )


class PostgisStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, settings: Settings) -> PostgisStore:
        return cls(make_engine(settings))

    def _run(self, name: str, work: Callable[[Connection], T], *, autocommit: bool = False) -> T:
        """Run ``work`` in one transaction (``autocommit``: each of its statements in its own);
        database faults become StoreUnavailable, a statement timeout StatementTimeout, both
        carrying ``name`` (the store call) for the log instead of the statement's text.

        A pooled connection that died while the database was away is found on use rather than by
        a ping before every request (a round trip each). SQLAlchemy then drops the whole pool, and
        the work is run once more on a fresh connection: safe, because every operation here is
        idempotent (reports are written exactly once by id, segments replaced whole).
        """
        for attempt in (1, 2):
            try:
                with self._connection(autocommit=autocommit) as conn:
                    try:
                        return work(conn)
                    except QueryCanceled as error:
                        raise _timeout(name) from error
                    except _DRIVER_FAULTS as error:
                        # From a statement run on psycopg's own cursor (report pages, counts),
                        # which SQLAlchemy neither wraps nor notices: a connection that died is
                        # dropped here, as SQLAlchemy drops its own.
                        if _closed(conn):
                            conn.invalidate()
                            raise _ConnectionLost from error
                        raise _unreachable(name) from error
            except _ConnectionLost as lost:
                if attempt == 1:
                    continue
                raise _unreachable(name) from lost
            except exc.DBAPIError as error:
                if isinstance(error.orig, QueryCanceled):
                    raise _timeout(name) from error
                if error.connection_invalidated and attempt == 1:
                    continue
                if error.connection_invalidated or isinstance(error, _UNAVAILABLE):
                    raise _unreachable(name) from error
                raise
            except exc.TimeoutError as error:
                raise PoolExhausted("no database connection is free", operation=name) from error
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _connection(self, *, autocommit: bool) -> Iterator[Connection]:
        if not autocommit:
            with self.engine.begin() as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    def ping(self) -> None:
        self._run("ping", lambda conn: conn.execute(text("SELECT 1")))

    def check_schema(self, database_url: str) -> None:
        """Raise SchemaNotCurrent unless the schema is at the newest migration this code knows."""
        from alembic.runtime.migration import MigrationContext

        from service.storage.postgis.migrations import head

        current = self._run(
            "check_schema", lambda conn: MigrationContext.configure(conn).get_current_revision()
        )
        if current != head(database_url):
            raise SchemaNotCurrent(
                f"the database schema is at {current or 'nothing'}, this code needs "
                f"{head(database_url)}: run `crossings db upgrade`",
                operation="check_schema",
            )

    def pool_usage(self) -> tuple[int, int]:
        """(connections lent out now, connections open) in this process's pool."""
        pool = self.engine.pool
        checked_out = int(getattr(pool, "checkedout", lambda: 0)())
        idle = int(getattr(pool, "checkedin", lambda: 0)())
        return checked_out, checked_out + idle

    def close(self) -> None:
        self.engine.dispose()

    def border_version(self) -> int:
        return self._run("border_version", segments.border_version)

    def count_segments(self) -> int:
        return self._run("count_segments", segments.count_segments)

    def replace_segments(self, batch: Sequence[BorderSegment]) -> None:
        self._run("replace_segments", lambda conn: segments.replace_segments(conn, batch))

    def list_segments(self) -> list[BorderSegment]:
        return self._run("list_segments", segments.list_segments)

    def replace_border(
        self,
        batch: Sequence[BorderSegment],
        resnap: Resnap,
        *,
        on_progress: OnProgress | None = None,
    ) -> int:
        return self._run(
            "replace_border", lambda conn: border.replace_border(conn, batch, resnap, on_progress)
        )

    def add_reports(
        self,
        batch: Sequence[Report],
        *,
        posted_by: str | None = None,
        border_version: int | None = None,
    ) -> list[IngestResult]:
        def work(conn: Connection) -> list[IngestResult]:
            # Held FOR SHARE until commit: a border change waits for this ingest, or this ingest
            # waits for it and then sees its version (migration 0009).
            if border_version is not None and border_version != segments.border_version(
                conn, for_share=True
            ):
                raise BorderChanged("the border changed since these reports were snapped")
            return reports.add_reports(conn, batch, posted_by)

        return self._run("add_reports", work)

    def get_report(self, report_id: UUID, *, posted_by: str | None = None) -> Report | None:
        return self._run("get_report", lambda conn: reports.get_report(conn, report_id, posted_by))

    def delete_report(self, report_id: UUID) -> bool:
        return self._run("delete_report", lambda conn: access.delete_report(conn, report_id))

    def add_key(self, key: ApiKey) -> None:
        self._run("add_key", lambda conn: access.add_key(conn, key))

    def get_key(self, key_id: str) -> ApiKey | None:
        return self._run("get_key", lambda conn: access.get_key(conn, key_id))

    def list_keys(self) -> list[ApiKey]:
        return self._run("list_keys", access.list_keys)

    def revoke_key(self, key_id: str, at: datetime) -> bool:
        return self._run("revoke_key", lambda conn: access.revoke_key(conn, key_id, at))

    def add_audit(self, entry: AuditEntry) -> None:
        self._run("add_audit", lambda conn: access.add_audit(conn, entry))

    def list_audit(self, since: datetime | None = None, limit: int = 1000) -> list[AuditEntry]:
        return self._run("list_audit", lambda conn: access.list_audit(conn, since, limit))

    def query_reports(self, query: ReportQuery, *, audit: AuditEntry | None = None) -> ReportPage:
        # One statement (the audit entry is written by the page's own), in autocommit mode: no
        # BEGIN and COMMIT round trips around it.
        return self._run(
            "query_reports", lambda conn: pages.query_reports(conn, query, audit), autocommit=True
        )

    def report_extent(self) -> Extent:
        return self._run("report_extent", reports.report_extent)

    def tile_reports(self, query: TileQuery) -> TileReports:
        return self._run("tile_reports", lambda conn: tiles.tile_reports(conn, query))

    def segment_counts(
        self, flt: TileFilter, segment_ids: Sequence[str]
    ) -> dict[str, SegmentCount]:
        return self._run(
            "segment_counts", lambda conn: tiles.segment_counts(conn, flt, segment_ids)
        )

    def tile_mvt(self, query: TileQuery) -> bytes | None:
        return self._run("tile_mvt", lambda conn: tiles.tile_mvt(conn, query))

    def rebuild_rollups(self) -> None:
        """Recompute the tile rollups from the stored reports (after a bulk load around ingest)."""
        self._run("rebuild_rollups", rollups.rebuild)

    def count_reports(self, query: CountQuery) -> list[CountRow]:
        return self._run("count_reports", lambda conn: counts.count_reports(conn, query))

    def observed_range(self) -> tuple[datetime, datetime] | None:
        return self._run("observed_range", counts.observed_range)

    def purge_precise(self, before: datetime) -> int:
        return self._run("purge_precise", lambda conn: retention.purge_precise(conn, before))
