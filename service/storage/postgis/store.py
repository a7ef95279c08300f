"""PostgisStore: one engine, one transaction per call, database faults as StoreUnavailable; with
``read_database_url``, a second engine on a streaming replica for reads (replica.py)."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import TypeVar
from uuid import UUID

import psycopg
from psycopg.errors import QueryCanceled
from sqlalchemy import Connection, Engine, create_engine, exc, text

from service.domain.access import ApiKey, AuditEntry
from service.domain.aggregation import CountQuery, CountRow
from service.domain.alerts import Alert, AlertPage, AlertQuery, AlertTransition
from service.domain.errors import (
    ClientGone,
    PoolExhausted,
    SchemaNotCurrent,
    StatementTimeout,
    StoreUnavailable,
)
from service.domain.link_model import EstimatedModel, UnrelatedSample
from service.domain.links import LinkPage, LinkQuery, LinkState, StoredLink
from service.domain.queries import Extent, ReportPage, ReportQuery
from service.domain.release import ReleaseInfo, ReleaseRow, day_start
from service.domain.reports import IngestResult, Report
from service.domain.segments import BorderSegment
from service.domain.surges.watch import SurgeConfig, Watch, make_watch
from service.domain.tiles import SegmentCount, TileFilter, TileQuery, TileReports
from service.domain.webhooks import (
    ClaimedDelivery,
    Delivery,
    DeliveryState,
    Outcome,
    Webhook,
    WebhookSecret,
)
from service.storage.base import OnProgress, Resnap
from service.storage.cancel import cancellable, cancelled
from service.storage.linking import LINK_BATCH, LinkConfig, Linker
from service.storage.options import StoreOptions
from service.storage.postgis import (
    access,
    alerts,
    border,
    counts,
    links,
    matched,
    pages,
    release,
    reports,
    retention,
    rollups,
    segments,
    surges,
    tiles,
    webhooks,
)
from service.storage.postgis.folder import Folder
from service.storage.postgis.gate import Gate
from service.storage.postgis.replica import (
    PRIMARY_LSN,
    ReplicaBehind,
    ReplicaRouter,
    ReplicaUnusable,
)
from service.storage.surge_cache import SeriesCache

T = TypeVar("T")
log = logging.getLogger(__name__)
# How long closing waits for calls still running on other threads (each is bounded by the
# statement timeout; a fold by the folder's own wait, before this one).
CLOSE_WAIT_S = 30.0

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


def _stopped(name: str) -> StatementTimeout | ClientGone:
    """What a cancelled statement means: its client went away (the API cancelled it), else the
    statement timeout."""
    if cancelled():
        return ClientGone("the client went away; its statement was cancelled")
    return _timeout(name)


def _cancel(conn: Connection) -> None:
    """Cancel the statement running on ``conn`` (from another thread): the server stops it. On
    failure the statement still ends (statement_timeout): nothing more to do here."""
    driver = conn.connection.dbapi_connection
    with contextlib.suppress(Exception):
        driver.cancel_safe(timeout=5.0)  # type: ignore[union-attr]


def make_engine(
    options: StoreOptions, url: str | None = None, *, connect_timeout_s: int = 5
) -> Engine:
    session = [
        # Spatial queries with bound parameters turn slow under generic plans (PostgreSQL's plan
        # after five runs of a prepared statement: 4x slower, measured); always plan for the values.
        "-c plan_cache_mode=force_custom_plan",
        f"-c statement_timeout={options.statement_timeout_ms}",
        "-c TimeZone=UTC",  # timestamps come back in UTC: no conversion per row
        # Every query here is index-bound and takes milliseconds; JIT compiling one whose estimate
        # passes jit_above_cost took 400 ms (an aggregate in a box: bench/aggregates).
        "-c jit=off",
    ]
    return create_engine(
        url or options.database_url,
        # As many connections at most as before (db_pool_size and as many again in overflow),
        # but all of them kept once opened: overflow connections were closed on return and
        # opened again under the next burst, 149 new sessions for 960 reports from 16 clients
        # (a backend forked, authenticated and configured each time); 22 now.
        pool_size=2 * options.pool_size,
        max_overflow=0,
        pool_timeout=10,
        # Errors carry the statement but never its parameters (positions, notes) into logs.
        hide_parameters=True,
        connect_args={"connect_timeout": connect_timeout_s, "options": " ".join(session)},
    )


class PostgisStore:
    def __init__(
        self,
        engine: Engine,
        replica: ReplicaRouter | None = None,
        *,
        fold_interval_s: float = 0.1,
        fold_batch: int = 5_000,
        fold_in_thread: bool = True,
        surges: SurgeConfig | None = None,
        link_config: LinkConfig | None = None,
    ) -> None:
        self.engine = engine
        self._gate = Gate()  # the calls in flight, which closing waits for: gate.py
        # Links reports queued by ingest, after each fold (links.py, docs/linking.md).
        self.linker = Linker(link_config or LinkConfig())
        self.replica = replica
        # Surge detection runs where reports are counted (folds, deletions, purges): surges.py.
        self._surges = surges
        self._watch_of: tuple[int, Watch] | None = None  # (border version, its Watch)
        self._series = SeriesCache()  # the states detection last read or wrote: surge_cache.py
        # Folds what ingest leaves pending into the rollups; started by the first ingest (unless
        # another process folds: ``fold_in_thread``), so that the CLI's and readers' stores run
        # no thread; or by ``start_folder`` (`crossings fold`).
        self._fold_in_thread = fold_in_thread
        self._folder = Folder(
            self._fold_some,
            interval_s=fold_interval_s,
            batch=fold_batch,
            vacuum=self._vacuum_pending,
        )

    @classmethod
    def open(cls, options: StoreOptions) -> PostgisStore:
        replica = None
        if options.read_database_url:
            # A short connect timeout: a lost replica costs a read that long, once per retry.
            reader = make_engine(options, options.read_database_url, connect_timeout_s=2)
            replica = ReplicaRouter(
                reader,
                max_lag_s=options.read_max_lag_s,
                wait_s=options.read_wait_s,
                retry_s=options.read_retry_s,
            )
        return cls(
            make_engine(options),
            replica,
            fold_interval_s=options.fold_interval_s,
            fold_batch=options.fold_batch,
            fold_in_thread=options.fold_in_thread,
            surges=options.surges,
            link_config=options.links,
        )

    def _run(
        self,
        name: str,
        work: Callable[[Connection], T],
        *,
        autocommit: bool = False,
        engine: Engine | None = None,
    ) -> T:
        with self._gate.call(name):
            return self._run_open(name, work, autocommit=autocommit, engine=engine)

    def _run_open(
        self,
        name: str,
        work: Callable[[Connection], T],
        *,
        autocommit: bool,
        engine: Engine | None,
    ) -> T:
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
                with self._connection(autocommit=autocommit, engine=engine) as conn:
                    try:
                        # Every statement of the call stops when the request's client goes
                        # away (service/storage/cancel.py): the server cancels it.
                        with cancellable(functools.partial(_cancel, conn)):
                            return work(conn)
                    except QueryCanceled as error:
                        raise _stopped(name) from error
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
                    raise _stopped(name) from error
                if error.connection_invalidated and attempt == 1:
                    continue
                if error.connection_invalidated or isinstance(error, _UNAVAILABLE):
                    raise _unreachable(name) from error
                raise
            except exc.TimeoutError as error:
                raise PoolExhausted("no database connection is free", operation=name) from error
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _connection(
        self, *, autocommit: bool, engine: Engine | None = None
    ) -> Iterator[Connection]:
        engine = engine or self.engine
        if not autocommit:
            with engine.begin() as conn:
                yield conn
            return
        with engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    def _write(
        self,
        name: str,
        work: Callable[[Connection], T],
        *,
        key: str | None = None,
        autocommit: bool = False,
    ) -> T:
        """``work`` on the primary; with a replica, its commit position is remembered (by
        ``key``, who wrote) for the reads of own writes that follow (``_read``)."""
        result = self._run(name, work, autocommit=autocommit)
        if self.replica is not None:
            lsn = self._run("primary_lsn", lambda conn: int(conn.execute(PRIMARY_LSN).scalar_one()))
            self.replica.wrote(lsn, key)
        return result

    def _read(
        self,
        name: str,
        work: Callable[[Connection], T],
        *,
        own_writes: bool = False,
        key: str | None = None,
        autocommit: bool = False,
    ) -> T:
        """``work`` on the replica when it may answer, else on the primary.

        Lag-tolerant reads use the replica while it is within ``read_max_lag_s``; with
        ``own_writes`` the replica must first have replayed this process's last write by ``key``
        (None: by anyone), waiting up to ``read_wait_ms``. A replica fault, or a replica still
        behind, sends the read to the primary (and a fault keeps it there for ``read_retry_s``).
        """
        replica = self.replica
        if replica is None:
            return self._run(name, work, autocommit=autocommit)
        with self._gate.call(name):  # usable() may measure the lag on both engines
            usable = replica.usable(self.engine)
        if not usable:
            return self._run(name, work, autocommit=autocommit)
        position = replica.must_see(key) if own_writes or key is not None else 0

        def on_replica(conn: Connection) -> T:
            replica.caught_up(conn, position)
            return work(conn)

        try:
            result = self._run(name, on_replica, autocommit=autocommit, engine=replica.engine)
        except ReplicaBehind:
            replica.count("primary")
            return self._run(name, work, autocommit=autocommit)
        except (StoreUnavailable, exc.DBAPIError, ReplicaUnusable) as error:
            replica.failed(error)
            replica.count("primary")
            return self._run(name, work, autocommit=autocommit)
        replica.count("replica")
        return result

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

    def backlog(self) -> tuple[int, int]:
        def count(conn: Connection) -> tuple[int, int]:
            row = conn.exec_driver_sql(
                "SELECT (SELECT count(*) FROM rollup_pending), (SELECT count(*) FROM link_pending)"
            ).one()
            return int(row[0]), int(row[1])

        return self._run("backlog", count)

    def pool_usage(self) -> tuple[int, int]:
        """(connections lent out now, connections open) in this process's pool."""
        pool = self.engine.pool
        checked_out = int(getattr(pool, "checkedout", lambda: 0)())
        idle = int(getattr(pool, "checkedin", lambda: 0)())
        return checked_out, checked_out + idle

    def close(self) -> None:
        self._folder.stop()
        if running := self._gate.close(CLOSE_WAIT_S):
            log.warning("store closed with %d calls still running", running)
        self.engine.dispose()
        if self.replica is not None:
            self.replica.engine.dispose()

    def border_version(self) -> int:
        return self._run("border_version", segments.border_version)

    def count_segments(self) -> int:
        return self._run("count_segments", segments.count_segments)

    def replace_segments(self, batch: Sequence[BorderSegment]) -> None:
        self._write("replace_segments", lambda conn: segments.replace_segments(conn, batch))

    def list_segments(self) -> list[BorderSegment]:
        return self._run("list_segments", segments.list_segments)

    def replace_border(
        self,
        batch: Sequence[BorderSegment],
        resnap: Resnap,
        *,
        on_progress: OnProgress | None = None,
        expected_version: int | None = None,
    ) -> int:
        def work(conn: Connection) -> int:
            done = border.replace_border(
                conn, batch, resnap, on_progress, expected_version=expected_version
            )
            # New segments, new adjacency: every report is linked again (reviews kept).
            links.relink_all(conn, self.linker)
            return done

        return self._write("replace_border", work)

    def add_reports(
        self,
        batch: Sequence[Report],
        *,
        posted_by: str | None = None,
        border_version: int | None = None,
    ) -> list[IngestResult]:
        if self._fold_in_thread:
            self._folder.start()
        # In autocommit: the insert is one statement (the reports, their pending rollup rows
        # and the border check together), atomic by itself, and the reads of duplicates after it
        # see what a read-committed transaction would. That saves the BEGIN and COMMIT round
        # trips a transaction adds to a single report's one statement.
        return self._write(
            "add_reports",
            lambda conn: reports.add_reports(conn, batch, posted_by, border_version),
            key=posted_by,
            autocommit=True,
        )

    def get_report(self, report_id: UUID, *, posted_by: str | None = None) -> Report | None:
        # Read right after a write (a reporter reading back its report): own writes.
        found = self._read(
            "get_report",
            lambda conn: reports.get_report(conn, report_id, posted_by),
            own_writes=True,
            key=posted_by,
        )
        if found is None and self.replica is not None:
            # Maybe written through another process, whose write positions this one does not
            # know, and not replayed yet: the primary has the last word on a miss.
            return self._run(
                "get_report", lambda conn: reports.get_report(conn, report_id, posted_by)
            )
        return found

    def delete_report(self, report_id: UUID) -> bool:
        on_counted = self._on_counted()

        def work(conn: Connection) -> bool:
            # Links first, while the report is stored: its group row is counted out of
            # group_days by the report's day, place and keys. (Lock order: LINK_LOCK, then the
            # fold's; nothing takes them the other way round.)
            links.forget_report(conn, self.linker, report_id)
            return access.delete_report(conn, report_id, on_counted)

        return self._write("delete_report", work)

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
        if self.replica is None:
            # One statement (the audit entry is written by the page's own), in autocommit mode:
            # no BEGIN and COMMIT round trips around it.
            return self._run(
                "query_reports",
                lambda conn: pages.query_reports(conn, query, audit),
                autocommit=True,
            )
        # A page is lag-tolerant, but a key's own reports (a reporter's list) are its own writes.
        # A standby cannot write the audit entry: it is written on the primary after the page
        # was read, before the page can be answered.
        key = query.posted_by or (audit.key_id if audit is not None else None)
        page = self._read(
            "query_reports", lambda conn: pages.query_reports(conn, query), key=key, autocommit=True
        )
        if audit is not None:
            self.add_audit(audit)
        return page

    def report_extent(self) -> Extent:
        return self._read("report_extent", reports.report_extent)

    def count_matched(self, query: ReportQuery) -> int | None:
        return self._run(
            "count_matched", lambda conn: matched.count_matched(conn, query), autocommit=True
        )

    def tile_reports(self, query: TileQuery) -> TileReports:
        return self._read("tile_reports", lambda conn: tiles.tile_reports(conn, query))

    def segment_counts(
        self, flt: TileFilter, segment_ids: Sequence[str]
    ) -> dict[str, SegmentCount]:
        return self._read(
            "segment_counts", lambda conn: tiles.segment_counts(conn, flt, segment_ids)
        )

    def tile_mvt(self, query: TileQuery) -> bytes | None:
        return self._read("tile_mvt", lambda conn: tiles.tile_mvt(conn, query))

    def rebuild_rollups(self) -> None:
        """Recompute the tile rollups from the stored reports (after a bulk load around ingest)."""
        self._write("rebuild_rollups", rollups.rebuild)

    def start_folder(self) -> None:
        """Fold in a thread from now until ``close`` (`crossings fold`), whoever ingests (none
        when ``fold_interval_s`` is 0: folding off)."""
        self._folder.start()

    def fold_rollups(self) -> int:
        on_counted = self._on_counted()
        return self._run("fold_rollups", lambda conn: rollups.fold_all(conn, on_counted=on_counted))

    def _fold_some(self, limit: int) -> int | None:
        on_counted = self._on_counted()
        folded = self._run("fold_some", lambda conn: rollups.fold(conn, limit, on_counted))
        self._link_some(min(limit, LINK_BATCH))
        return folded

    def _link_some(self, limit: int) -> int | None:
        """Link up to ``limit`` queued reports (a transaction of its own, after the fold)."""
        at = datetime.now(UTC)
        return self._run("link_some", lambda conn: links.link_some(conn, self.linker, limit, at=at))

    def settle_links(self) -> int:
        def step(conn: Connection) -> int | None:
            return links.link_some(conn, self.linker, LINK_BATCH, at=datetime.now(UTC), wait=True)

        done = 0
        while n := self._run("settle_links", step):
            done += n
        return done

    def list_links(self, query: LinkQuery, *, audit: AuditEntry | None = None) -> LinkPage:
        return self._audited_read(
            "list_links", functools.partial(links.list_links, query=query), audit
        )

    def review_link(
        self,
        link_id: UUID,
        *,
        state: LinkState,
        reviewed_by: str | None,
        at: datetime,
        audit: AuditEntry | None = None,
    ) -> StoredLink | None:
        def work(conn: Connection) -> StoredLink | None:
            found = links.review_link(
                conn, self.linker, link_id, state=state, reviewed_by=reviewed_by, at=at
            )
            if found is not None and audit is not None:
                access.add_audit(conn, audit)
            return found

        return self._write("review_link", work)

    def group_ids(self, report_ids: Sequence[UUID]) -> dict[UUID, UUID]:
        return self._run("group_ids", lambda conn: links.group_ids(conn, report_ids))

    def sample_unrelated(self, size: int, *, seed: int) -> UnrelatedSample:
        return self._run(
            "sample_unrelated",
            lambda conn: links.sample_unrelated(conn, self.linker, size, seed=seed),
        )

    def save_link_model(self, model: EstimatedModel) -> int:
        return self._write("save_link_model", lambda conn: links.save_model(conn, model))

    def link_model(self) -> EstimatedModel | None:
        return self._run("link_model", links.latest_model)

    def rescore_links(self, limit: int) -> int:
        return self._write(
            "rescore_links", lambda conn: links.rescore_links(conn, self.linker, limit)
        )

    def advance_surges(self, through: date) -> list[Alert]:
        if self._surges is None:
            return []
        now = datetime.now(UTC)
        return self._write(
            "advance_surges",
            lambda conn: surges.advance(conn, self._watch(conn), through, now=now),
        )

    def rebuild_surges(self, today: date) -> list[Alert]:
        if self._surges is None:
            return []
        now = datetime.now(UTC)
        return self._write(
            "rebuild_surges", lambda conn: surges.rebuild(conn, self._watch(conn), today, now=now)
        )

    def _on_counted(self) -> rollups.OnCounted | None:
        """Surge detection for what a transaction counted in or out (None: detection is off)."""
        if self._surges is None:
            return None

        def detect(conn: Connection, touched: rollups.Touched) -> None:
            surges.detect(conn, touched, self._watch(conn), cache=self._series)

        return detect

    def _watch(self, conn: Connection) -> Watch:
        """The border's series and thresholds, made again when the border's version changes."""
        assert self._surges is not None
        version = segments.border_version(conn)
        cached = self._watch_of
        if cached is None or cached[0] != version:
            cached = (version, make_watch(segments.list_segments(conn), self._surges))
            self._watch_of = cached
        return cached[1]

    def _vacuum_pending(self) -> None:
        self._run(
            "vacuum_pending",
            lambda conn: conn.exec_driver_sql(f"VACUUM {rollups.PENDING}"),
            autocommit=True,
        )

    def count_reports(self, query: CountQuery) -> list[CountRow]:
        return self._read("count_reports", lambda conn: counts.count_reports(conn, query))

    def observed_range(self) -> tuple[datetime, datetime] | None:
        return self._read("observed_range", counts.observed_range)

    def cut_release(self, through: date, cut_at: datetime) -> ReleaseInfo:
        def work(conn: Connection) -> ReleaseInfo:
            # The groups the released reports make among themselves, where those differ.
            groups = links.release_groups(conn, self.linker, day_start(through))
            return release.cut_release(conn, through, cut_at, groups)

        info = self._run("cut_release", work)
        # Every cut replaces every row: reclaim the last cut's now (autovacuum may be off or slow).
        self._run("cut_release", release.vacuum, autocommit=True)
        return info

    def release_info(self) -> ReleaseInfo | None:
        return self._read("release_info", release.release_info)

    def read_release(self) -> tuple[ReleaseInfo, list[ReleaseRow]] | None:
        return self._read("read_release", release.read_release)

    def purge_precise(self, before: datetime) -> int:
        on_counted = self._on_counted()
        return self._write(
            "purge_precise", lambda conn: retention.purge_precise(conn, before, on_counted)
        )

    def record_alerts(self, transitions: Sequence[AlertTransition]) -> list[Alert]:
        return self._write("record_alerts", lambda conn: alerts.record_alerts(conn, transitions))

    def get_alert(self, alert_id: UUID) -> Alert | None:
        return self._run("get_alert", lambda conn: alerts.get_alert(conn, alert_id))

    def list_alerts(self, query: AlertQuery, *, audit: AuditEntry | None = None) -> AlertPage:
        return self._audited_read(
            "list_alerts", functools.partial(alerts.list_alerts, query=query), audit
        )

    def _audited_read(
        self, name: str, read: Callable[[Connection], T], audit: AuditEntry | None
    ) -> T:
        """``read``, and with ``audit`` the entry recorded in the same transaction."""

        def read_then_record(conn: Connection) -> T:
            out = read(conn)
            if audit is not None:
                access.add_audit(conn, audit)
            return out

        return self._run(name, read_then_record)

    def add_webhook(self, hook: Webhook) -> None:
        self._run("add_webhook", lambda conn: webhooks.add_webhook(conn, hook))

    def get_webhook(self, webhook_id: str) -> Webhook | None:
        return self._run("get_webhook", lambda conn: webhooks.get_webhook(conn, webhook_id))

    def list_webhooks(self) -> list[Webhook]:
        return self._run("list_webhooks", webhooks.list_webhooks)

    def disable_webhook(self, webhook_id: str, *, at: datetime, reason: str) -> bool:
        return self._run(
            "disable_webhook", lambda conn: webhooks.disable_webhook(conn, webhook_id, at, reason)
        )

    def rotate_webhook_secret(
        self, webhook_id: str, secret: WebhookSecret, *, old_expire_at: datetime
    ) -> Webhook | None:
        return self._run(
            "rotate_webhook_secret",
            lambda conn: webhooks.rotate_secret(conn, webhook_id, secret, old_expire_at),
        )

    def claim_deliveries(
        self, *, now: datetime, limit: int, lease_s: float
    ) -> list[ClaimedDelivery]:
        return self._run("claim_deliveries", lambda conn: webhooks.claim(conn, now, limit, lease_s))

    def finish_delivery(
        self, delivery_id: str, *, attempts: int, outcome: Outcome, now: datetime
    ) -> bool:
        return self._run(
            "finish_delivery",
            lambda conn: webhooks.finish(conn, delivery_id, attempts, outcome, now),
        )

    def list_deliveries(
        self, webhook_id: str, *, state: DeliveryState | None = None, limit: int = 100
    ) -> list[Delivery]:
        return self._run(
            "list_deliveries",
            lambda conn: webhooks.list_deliveries(conn, webhook_id, state, limit),
        )
