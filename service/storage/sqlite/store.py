"""SqliteStore: the embedded default backend (stdlib sqlite3, WAL, R*Tree), one file on disk."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar
from uuid import UUID

from service.domain.access import ApiKey, AuditEntry
from service.domain.aggregation import CountQuery, CountRow
from service.domain.alerts import Alert, AlertPage, AlertQuery, AlertTransition
from service.domain.errors import BorderChanged
from service.domain.link_model import EstimatedModel, UnrelatedSample
from service.domain.links import LinkPage, LinkQuery, LinkState, StoredLink
from service.domain.queries import Extent, ReportPage, ReportQuery
from service.domain.release import ReleaseInfo, ReleaseRow, day_start
from service.domain.reports import IngestOutcome, IngestResult, Report
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
from service.storage.cancel import cancellable
from service.storage.linking import LinkConfig, Linker
from service.storage.sqlite import access as access_queries
from service.storage.sqlite import alerts as alert_queries
from service.storage.sqlite import border as border_queries
from service.storage.sqlite import counts as count_queries
from service.storage.sqlite import links as link_queries
from service.storage.sqlite import release as release_queries
from service.storage.sqlite import reports as report_queries
from service.storage.sqlite import retention as retention_queries
from service.storage.sqlite import segments as segment_queries
from service.storage.sqlite import surges as surge_queries
from service.storage.sqlite import tiles as tile_queries
from service.storage.sqlite import webhooks as webhook_queries
from service.storage.sqlite.database import BUSY_TIMEOUT_S, Database, path_from_url
from service.storage.sqlite.schema import MIGRATIONS, MigrationStep, migrate
from service.storage.surge_cache import SeriesCache

T = TypeVar("T")


class SqliteStore:
    """The Store protocol over one SQLite file; safe to share between threads and processes.

    Each call is one short transaction on a pooled connection. Raises StoreUnavailable when the
    file cannot be read or written, or stays locked by other writers past the busy timeout.
    """

    def __init__(
        self, db: Database, *, surges: SurgeConfig | None = None, links: LinkConfig | None = None
    ) -> None:
        self._db = db
        # Surge detection runs where reports are counted (ingest, deletion): surges.py.
        self.surges = surges
        # Linking runs in ingest's transaction (links.py, docs/linking.md).
        self.linker = Linker(links or LinkConfig())
        self._watch_of: tuple[int, Watch] | None = None  # (border version, its Watch)
        self._series = SeriesCache()  # the states detection last read or wrote: surge_cache.py

    @classmethod
    def open(
        cls,
        url: str,
        *,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        surges: SurgeConfig | None = None,
        links: LinkConfig | None = None,
    ) -> SqliteStore:
        """Open the file a ``sqlite:///path`` URL names, creating and migrating it as needed;
        with ``surges``, watch the series the reports count in (docs/surges.md); ``links``:
        how reports are linked (docs/linking.md)."""
        store = cls.open_path(path_from_url(url), busy_timeout_s=busy_timeout_s)
        store.surges = surges
        store.linker = Linker(links or LinkConfig())
        return store

    @classmethod
    def open_path(
        cls,
        path: Path,
        *,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        migrations: Sequence[MigrationStep] = MIGRATIONS,
    ) -> SqliteStore:
        """Open ``path``; ``migrations`` is replaceable so tests can stage older or newer files."""
        db = Database.create(path, busy_timeout_s=busy_timeout_s)
        try:
            db.write(partial(migrate, steps=migrations))
        except BaseException:
            db.close()
            raise
        return cls(db)

    @property
    def path(self) -> Path:
        return self._db.path

    def border_version(self) -> int:
        return self._db.read(segment_queries.border_version)

    def count_segments(self) -> int:
        return self._db.read(segment_queries.count_segments)

    def replace_segments(self, segments: Sequence[BorderSegment]) -> None:
        self._db.write(partial(segment_queries.replace_segments, segments=segments))

    def list_segments(self) -> list[BorderSegment]:
        return self._db.read(segment_queries.list_segments)

    def replace_border(
        self,
        segments: Sequence[BorderSegment],
        resnap: Resnap,
        *,
        on_progress: OnProgress | None = None,
        expected_version: int | None = None,
    ) -> int:
        def work(conn: sqlite3.Connection) -> int:
            done = border_queries.replace_border(
                conn,
                batch=segments,
                resnap=resnap,
                on_progress=on_progress,
                expected_version=expected_version,
            )
            # New segments, new adjacency: every report is linked again (reviews kept).
            link_queries.relink_all(conn, self.linker, at=datetime.now(UTC))
            return done

        return self._db.write(work)

    def add_reports(
        self,
        reports: Sequence[Report],
        *,
        posted_by: str | None = None,
        border_version: int | None = None,
    ) -> list[IngestResult]:
        if not reports:
            return []

        def work(conn: sqlite3.Connection) -> list[IngestResult]:
            # In the write transaction (BEGIN IMMEDIATE): no border change can come between.
            if border_version is not None and border_version != segment_queries.border_version(
                conn
            ):
                raise BorderChanged("the border changed since these reports were snapped")
            results = report_queries.add_reports(conn, reports=reports, posted_by=posted_by)
            created = [r.report for r in results if r.outcome is IngestOutcome.CREATED and r.report]
            self._detect(
                conn, [(r.snap.segment_id, r.draft.kind, r.draft.observed_at) for r in created]
            )
            if created:
                link_queries.link_reports(
                    conn, self.linker, created, posted_by=posted_by, at=datetime.now(UTC)
                )
            return results

        return self._db.write(work)

    def get_report(self, report_id: UUID, *, posted_by: str | None = None) -> Report | None:
        return self._db.read(
            partial(report_queries.get_report, report_id=str(report_id), posted_by=posted_by)
        )

    def delete_report(self, report_id: UUID) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            # Links first, while the report is stored: its group row is counted out of
            # group_days by the report's day and keys.
            link_queries.forget_report(conn, self.linker, report_id)
            counted = report_queries.delete_report(conn, str(report_id))
            if counted is None:
                return False
            if counted.segment_id is not None and self.surges is not None:
                touched = {counted.day: {(counted.segment_id, counted.kind)}}
                surge_queries.detect(conn, touched, self._watch(conn), cache=self._series)
            return True

        return self._db.write(work)

    def advance_surges(self, through: date) -> list[Alert]:
        if self.surges is None:
            return []
        now = datetime.now(UTC)
        return self._db.write(
            lambda conn: surge_queries.advance(conn, self._watch(conn), through, now=now)
        )

    def rebuild_surges(self, today: date) -> list[Alert]:
        if self.surges is None:
            return []
        now = datetime.now(UTC)
        return self._db.write(
            lambda conn: surge_queries.rebuild(conn, self._watch(conn), today, now=now)
        )

    def _detect(
        self, conn: sqlite3.Connection, counted: Sequence[tuple[str | None, str, datetime]]
    ) -> None:
        """Surge detection for reports just counted in, in their transaction."""
        if self.surges is None:
            return
        touched: dict[date, set[tuple[str, str]]] = {}
        for segment_id, kind, observed_at in counted:
            if segment_id is not None:
                day = observed_at.astimezone(UTC).date()
                touched.setdefault(day, set()).add((segment_id, kind))
        if touched:
            surge_queries.detect(conn, touched, self._watch(conn), cache=self._series)

    def _watch(self, conn: sqlite3.Connection) -> Watch:
        """The border's series and thresholds, made again when the border's version changes."""
        assert self.surges is not None
        version = segment_queries.border_version(conn)
        cached = self._watch_of
        if cached is None or cached[0] != version:
            cached = (version, make_watch(segment_queries.list_segments(conn), self.surges))
            self._watch_of = cached
        return cached[1]

    def settle_links(self) -> int:
        return 0  # linked in ingest's transaction: nothing is left pending

    def list_links(self, query: LinkQuery, *, audit: AuditEntry | None = None) -> LinkPage:
        return self._audited_read(partial(link_queries.list_links, query=query), audit)

    def review_link(
        self,
        link_id: UUID,
        *,
        state: LinkState,
        reviewed_by: str | None,
        at: datetime,
        audit: AuditEntry | None = None,
    ) -> StoredLink | None:
        def work(conn: sqlite3.Connection) -> StoredLink | None:
            found = link_queries.review_link(
                conn, self.linker, link_id, state=state, reviewed_by=reviewed_by, at=at
            )
            if found is not None and audit is not None:
                access_queries.add_audit(conn, entry=audit)
            return found

        return self._db.write(work)

    def group_ids(self, report_ids: Sequence[UUID]) -> dict[UUID, UUID]:
        return self._db.read(partial(link_queries.group_ids, ids=report_ids))

    def sample_unrelated(self, size: int, *, seed: int) -> UnrelatedSample:
        return self._db.read(
            partial(link_queries.sample_unrelated, linker=self.linker, size=size, seed=seed)
        )

    def save_link_model(self, model: EstimatedModel) -> int:
        return self._db.write(partial(link_queries.save_model, model=model))

    def link_model(self) -> EstimatedModel | None:
        return self._db.read(link_queries.latest_model)

    def rescore_links(self, limit: int) -> int:
        return self._db.write(partial(link_queries.rescore_links, linker=self.linker, limit=limit))

    def add_key(self, key: ApiKey) -> None:
        self._db.write(partial(access_queries.add_key, key=key))

    def get_key(self, key_id: str) -> ApiKey | None:
        return self._db.read(partial(access_queries.get_key, key_id=key_id))

    def list_keys(self) -> list[ApiKey]:
        return self._db.read(access_queries.list_keys)

    def revoke_key(self, key_id: str, at: datetime) -> bool:
        return self._db.write(partial(access_queries.revoke_key, key_id=key_id, at=at))

    def add_audit(self, entry: AuditEntry) -> None:
        self._db.write(partial(access_queries.add_audit, entry=entry))

    def list_audit(self, since: datetime | None = None, limit: int = 1000) -> list[AuditEntry]:
        return self._db.read(partial(access_queries.list_audit, since=since, limit=limit))

    def _audited_read(self, read: Callable[[sqlite3.Connection], T], audit: AuditEntry | None) -> T:
        """``read``, and with ``audit`` the entry recorded in the same (write) transaction."""
        if audit is None:
            return self._db.read(read)

        def read_then_record(conn: sqlite3.Connection) -> T:
            out = read(conn)
            access_queries.add_audit(conn, entry=audit)
            return out

        return self._db.write(read_then_record)

    def query_reports(self, query: ReportQuery, *, audit: AuditEntry | None = None) -> ReportPage:
        return self._audited_read(partial(report_queries.query_reports, query=query), audit)

    def report_extent(self) -> Extent:
        return self._db.read(report_queries.report_extent)

    def count_matched(self, query: ReportQuery) -> int | None:
        return self._db.read(partial(report_queries.count_matched, query=query))

    def tile_reports(self, query: TileQuery) -> TileReports:
        return self._db.read(partial(tile_queries.tile_reports, query=query))

    def segment_counts(
        self, flt: TileFilter, segment_ids: Sequence[str]
    ) -> dict[str, SegmentCount]:
        return self._db.read(partial(tile_queries.segment_counts, flt=flt, segment_ids=segment_ids))

    def rebuild_rollups(self) -> None:
        self._db.write(report_queries.rebuild_counts)

    def fold_rollups(self) -> int:
        return 0  # counted in ingest's transaction: nothing is left pending

    def tile_mvt(self, query: TileQuery) -> bytes | None:
        return None  # no encoder in SQLite: the caller encodes tile_reports in Python

    def count_reports(self, query: CountQuery) -> list[CountRow]:
        def count(conn: sqlite3.Connection) -> list[CountRow]:
            # Interrupted when the request's client goes away (service/storage/cancel.py).
            with cancellable(conn.interrupt):
                return count_queries.count_reports(conn, query=query)

        return self._db.read(count)

    def observed_range(self) -> tuple[datetime, datetime] | None:
        return self._db.read(count_queries.observed_range)

    def cut_release(self, through: date, cut_at: datetime) -> ReleaseInfo:
        def work(conn: sqlite3.Connection) -> ReleaseInfo:
            # The groups the released reports make among themselves, where those differ.
            groups = link_queries.release_groups(conn, self.linker, day_start(through))
            return release_queries.cut_release(conn, through, cut_at, groups)

        return self._db.write(work)

    def release_info(self) -> ReleaseInfo | None:
        return self._db.read(release_queries.release_info)

    def read_release(self) -> tuple[ReleaseInfo, list[ReleaseRow]] | None:
        return self._db.read(release_queries.read_release)

    def purge_precise(self, before: datetime) -> int:
        return self._db.write(partial(retention_queries.purge_precise, before=before))

    def record_alerts(self, transitions: Sequence[AlertTransition]) -> list[Alert]:
        if not transitions:
            return []
        return self._db.write(lambda conn: alert_queries.record_alerts(conn, transitions))

    def get_alert(self, alert_id: UUID) -> Alert | None:
        return self._db.read(partial(alert_queries.get_alert, alert_id_=alert_id))

    def list_alerts(self, query: AlertQuery, *, audit: AuditEntry | None = None) -> AlertPage:
        return self._audited_read(partial(alert_queries.list_alerts, query=query), audit)

    def add_webhook(self, hook: Webhook) -> None:
        self._db.write(partial(webhook_queries.add_webhook, hook=hook))

    def get_webhook(self, webhook_id: str) -> Webhook | None:
        return self._db.read(partial(webhook_queries.get_webhook, webhook_id=webhook_id))

    def list_webhooks(self) -> list[Webhook]:
        return self._db.read(webhook_queries.list_webhooks)

    def disable_webhook(self, webhook_id: str, *, at: datetime, reason: str) -> bool:
        return self._db.write(
            partial(webhook_queries.disable_webhook, webhook_id=webhook_id, at=at, reason=reason)
        )

    def rotate_webhook_secret(
        self, webhook_id: str, secret: WebhookSecret, *, old_expire_at: datetime
    ) -> Webhook | None:
        return self._db.write(
            partial(
                webhook_queries.rotate_secret,
                webhook_id=webhook_id,
                secret=secret,
                old_expire_at=old_expire_at,
            )
        )

    def claim_deliveries(
        self, *, now: datetime, limit: int, lease_s: float
    ) -> list[ClaimedDelivery]:
        # A read first: an idle worker polling takes no write lock.
        if not self._db.read(partial(webhook_queries.any_due, now=now)):
            return []
        return self._db.write(partial(webhook_queries.claim, now=now, limit=limit, lease_s=lease_s))

    def finish_delivery(
        self, delivery_id: str, *, attempts: int, outcome: Outcome, now: datetime
    ) -> bool:
        return self._db.write(
            partial(
                webhook_queries.finish,
                delivery_id=delivery_id,
                attempts=attempts,
                outcome=outcome,
                now=now,
            )
        )

    def list_deliveries(
        self, webhook_id: str, *, state: DeliveryState | None = None, limit: int = 100
    ) -> list[Delivery]:
        return self._db.read(
            partial(
                webhook_queries.list_deliveries, webhook_id=webhook_id, state=state, limit=limit
            )
        )

    def ping(self) -> None:
        """Raise StoreUnavailable unless the file answers a read now."""
        self._db.read(lambda conn: conn.execute("SELECT count(*) FROM sqlite_master").fetchone())

    def close(self) -> None:
        self._db.close()
