"""The storage interface every backend implements (PostGIS in production, SQLite embedded).

Stores take and return domain objects, and own their transactions: one per call. Behaviour that
differs between backends is a bug unless documented here. Datetimes in and out are timezone-aware
(UTC out). Documented differences: SQLite reads -0.0 back as 0.0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Protocol, runtime_checkable
from uuid import UUID

from service.domain.access import ApiKey, AuditEntry
from service.domain.aggregation import CountQuery, CountRow
from service.domain.alerts import Alert, AlertPage, AlertQuery, AlertTransition
from service.domain.link_model import EstimatedModel, UnrelatedSample
from service.domain.links import LinkPage, LinkQuery, LinkState, StoredLink
from service.domain.queries import Extent, ReportPage, ReportQuery
from service.domain.release import ReleaseInfo, ReleaseRow
from service.domain.reports import IngestResult, Report, SnapResult
from service.domain.segments import BorderSegment
from service.domain.tiles import SegmentCount, TileFilter, TileQuery, TileReports
from service.domain.webhooks import (
    ClaimedDelivery,
    Delivery,
    DeliveryState,
    Outcome,
    Webhook,
    WebhookSecret,
)

# Snaps positions (lons, lats) to a border: one result each, in order.
Resnap = Callable[[list[float], list[float]], list[SnapResult]]
# Told (reports done, reports in all) as a long operation goes.
OnProgress = Callable[[int, int], None]


class SegmentStore(Protocol):
    def border_version(self) -> int:
        """The stored border's version: raised by every change of the segment set."""
        ...

    def count_segments(self) -> int:
        """How many segments are loaded."""
        ...

    def replace_segments(self, segments: Sequence[BorderSegment]) -> None:
        """Replace the whole segment set in one transaction (all or nothing)."""
        ...

    def list_segments(self) -> list[BorderSegment]:
        """Every segment, in load order."""
        ...

    def replace_border(
        self,
        segments: Sequence[BorderSegment],
        resnap: Resnap,
        *,
        on_progress: OnProgress | None = None,
        expected_version: int | None = None,
    ) -> int:
        """In one transaction: replace the segment set, re-snap every stored report with
        ``resnap``, and recount every rollup, so that no reader ever sees reports snapped to one
        border with segments or counts of another. Writers of reports wait meanwhile. Returns how
        many reports were re-snapped. With ``expected_version``, raise BorderChanged and change
        nothing when the stored border is no longer that version (another process replaced it)."""
        ...


class ReportStore(Protocol):
    def add_reports(
        self,
        reports: Sequence[Report],
        *,
        posted_by: str | None = None,
        border_version: int | None = None,
    ) -> list[IngestResult]:
        """Store new reports exactly once, in one transaction; one result per input, in order.
        With ``border_version`` (the border the reports were snapped to), raise BorderChanged and
        write nothing when the stored border has another version, at any moment until commit.

        A report whose id is already stored (or earlier in the same call) is a DUPLICATE when its
        content hash matches and a CONFLICT otherwise; both carry the stored report. The database's
        unique key decides, so concurrent writers of one id cannot both create it.
        """
        ...

    def get_report(self, report_id: UUID, *, posted_by: str | None = None) -> Report | None:
        """The report, or None; with ``posted_by``, only if that key posted it."""
        ...

    def delete_report(self, report_id: UUID) -> bool:
        """Delete a report and count it out of every rollup, in one transaction; False when there
        was no such report."""
        ...

    def query_reports(self, query: ReportQuery, *, audit: AuditEntry | None = None) -> ReportPage:
        """Reports matching ``query`` in (observed_at, id) order (or its reverse), after
        ``query.after``; with ``audit``, that entry is written in the same transaction, after the
        read (the page and the record that it was read commit together, or neither does)."""
        ...

    def report_extent(self) -> Extent:
        """The bounding box and observed_at range of every stored report."""
        ...

    def count_matched(self, query: ReportQuery) -> int | None:
        """The number of reports ``query`` matches (paging aside) when the store knows it
        exactly and cheaply (from rollups kept with the reports), else None."""
        ...


class TileStore(Protocol):
    def tile_reports(self, query: TileQuery) -> TileReports:
        """The reports layer of a tile as plain data (see service/domain/tiles.py): points within
        the tile grown by its buffer, or the tile's non-empty cluster cells with exact counts."""
        ...

    def segment_counts(
        self, flt: TileFilter, segment_ids: Sequence[str]
    ) -> dict[str, SegmentCount]:
        """Snapped reports and their people per segment, for those of ``segment_ids`` that have
        any matching ``flt``."""
        ...

    def rebuild_rollups(self) -> None:
        """Recompute every rollup from the stored reports: after rows were written around ingest
        (a bulk COPY) or rewritten (re-snapped to a new border)."""
        ...

    def fold_rollups(self) -> int:
        """Count every report that ingest left pending into the rollups (a store that counts
        them at ingest has none): how many. Reads count pending reports anyway; this only
        moves them, e.g. before looking at the rollup tables themselves."""
        ...

    def tile_mvt(self, query: TileQuery) -> bytes | None:
        """The whole tile (segments and reports layers) encoded by the database, or None when the
        store has no encoder of its own (the caller then encodes ``tile_reports`` in Python).
        Empty bytes for an empty tile."""
        ...


class CountStore(Protocol):
    def count_reports(self, query: CountQuery) -> list[CountRow]:
        """The sum over the query's parts, per bucket and key; combinations whose sum is zero may
        be left out."""
        ...

    def observed_range(self) -> tuple[datetime, datetime] | None:
        """The first and last observed_at stored (None when there are no reports)."""
        ...


class RetentionStore(Protocol):
    def purge_precise(self, before: datetime) -> int:
        """In one transaction, strip every report observed before ``before`` and not purged yet
        of what could identify or place it precisely, and mark it purged; returns how many.

        Its position moves to the centre of its level-15 grid cell (``cell_centre``), so its cells
        at every ROLLUP_LEVELS level, the tile rollups and every tile below zoom 10 stay the same;
        notes, device_id, accuracy_m and the snapped point, distance and chainage become None.
        Its id, times, people, kind, direction, snap status, segment, side and content hash stay,
        so aggregates do not change and a replay is still recognised as a DUPLICATE.
        """
        ...


class ReleaseReader(Protocol):
    """The public release, and nothing else: what code that answers the public takes."""

    def release_info(self) -> ReleaseInfo | None:
        """The current cut (None before the first)."""
        ...

    def read_release(self) -> tuple[ReleaseInfo, list[ReleaseRow]] | None:
        """The current cut and all its cells, read together (never two cuts mixed)."""
        ...


class ReleaseWriter(Protocol):
    def cut_release(self, through: date, cut_at: datetime) -> ReleaseInfo:
        """Replace the release, in one transaction, with exact counts of the stored reports
        observed before ``through`` (a UTC midnight) per cell of the release's partition."""
        ...


class SurgeStore(Protocol):
    """Surge detection's upkeep beyond what counting reports does (docs/surges.md)."""

    def advance_surges(self, through: date) -> list[Alert]:
        """Close the quiet days up to ``through`` of series with an open episode, so that an
        episode whose series went quiet closes; the alerts that changed (none when detection
        is off)."""
        ...

    def rebuild_surges(self, today: date) -> list[Alert]:
        """Replay every series from the day counts (after a border change); close the alerts
        whose episode is gone."""
        ...


class BorderStore(SegmentStore, ReleaseReader, ReleaseWriter, SurgeStore, Protocol):
    """The border, and what must be recounted when it changes (the public release, surges)."""


class LinkStore(Protocol):
    """Links between reports of one crossing by different monitors, and their groups (issue #20,
    docs/linking.md). Reports are linked as they are stored: SQLite in ingest's transaction,
    PostGIS soon after, by the rollup folder's thread. Deleting a report takes its links with it;
    a border change links every report again (reviewed links kept)."""

    def settle_links(self) -> int:
        """Link every report still waiting to be linked (a store that links at ingest has none):
        how many."""
        ...

    def list_links(self, query: LinkQuery, *, audit: AuditEntry | None = None) -> LinkPage:
        """Links matching ``query`` in (created_at, id) order; with ``audit``, that entry is
        written with the read."""
        ...

    def review_link(
        self,
        link_id: UUID,
        *,
        state: LinkState,
        reviewed_by: str | None,
        at: datetime,
        audit: AuditEntry | None = None,
    ) -> StoredLink | None:
        """Set a link's state (confirmed or rejected) and regroup its reports' component, with
        ``audit`` written in the same transaction; None (nothing written) when there is no such
        link. A rejected pair is never linked again; a confirmed one is taken first in grouping,
        and confirmed pairs feed the estimate of m."""
        ...

    def group_ids(self, report_ids: Sequence[UUID]) -> dict[UUID, UUID]:
        """The group of each of ``report_ids`` in a group of two or more (the others are each a
        group of their own)."""
        ...

    def sample_unrelated(self, size: int, *, seed: int) -> UnrelatedSample:
        """Up to ``size`` random snapped reports, each with its candidates as if observed whole
        days earlier or later (``domain.link_model``): what u and the crowding are estimated
        from. Reads the drawn reports and their index ranges, never the whole table."""
        ...

    def save_link_model(self, model: EstimatedModel) -> int:
        """Store a new estimate of u and the crowding: its version. Links are scored with it from
        then on, while the border is the one it was estimated under."""
        ...

    def link_model(self) -> EstimatedModel | None:
        """The latest stored estimate (None: none yet)."""
        ...

    def rescore_links(self, limit: int) -> int:
        """Rescore up to ``limit`` proposed links scored before the current estimate (one
        transaction), regrouping their components: how many (0 when every one is current)."""
        ...


class AccessStore(Protocol):
    def add_key(self, key: ApiKey) -> None: ...

    def get_key(self, key_id: str) -> ApiKey | None: ...

    def list_keys(self) -> list[ApiKey]: ...

    def revoke_key(self, key_id: str, at: datetime) -> bool:
        """Revoke a key (from ``at`` on); False when there is no such usable key."""
        ...

    def add_audit(self, entry: AuditEntry) -> None: ...

    def list_audit(self, since: datetime | None = None, limit: int = 1000) -> list[AuditEntry]:
        """Audit entries in the order they were written, from ``since``."""
        ...


class AlertStore(Protocol):
    """Alerts (one per episode) and the outbox of their webhook deliveries.

    ``record_alerts`` runs in a transaction of its own. To write alerts in the transaction that
    wrote the reports which raised them, call the backend's connection-level function from inside
    that transaction instead: ``service.storage.postgis.alerts.record_alerts(conn, transitions)``
    or ``service.storage.sqlite.alerts.record_alerts(conn, transitions)`` (same contract).
    """

    def record_alerts(self, transitions: Sequence[AlertTransition]) -> list[Alert]:
        """Upsert the alert of each transition (its id: ``alert_id(series, opened_day)``) and,
        for each alert that changed, enqueue one delivery per enabled webhook whose filter
        matches; all in one transaction. Returns the alerts that changed (a transition that
        changes nothing, e.g. stored twice, enqueues nothing), in input order."""
        ...

    def get_alert(self, alert_id: UUID) -> Alert | None: ...

    def list_alerts(self, query: AlertQuery, *, audit: AuditEntry | None = None) -> AlertPage:
        """Alerts matching ``query``, the most recently updated first; with ``audit``, that
        entry is written with the read."""
        ...


class WebhookStore(Protocol):
    def add_webhook(self, hook: Webhook) -> None: ...

    def get_webhook(self, webhook_id: str) -> Webhook | None: ...

    def list_webhooks(self) -> list[Webhook]:
        """Every subscription, disabled ones too, oldest first."""
        ...

    def disable_webhook(self, webhook_id: str, *, at: datetime, reason: str) -> bool:
        """Disable a subscription and give up its pending deliveries (state gone), in one
        transaction; False when there is no such enabled subscription."""
        ...

    def rotate_webhook_secret(
        self, webhook_id: str, secret: WebhookSecret, *, old_expire_at: datetime
    ) -> Webhook | None:
        """Add ``secret``; the secrets active now sign too until ``old_expire_at``. None when
        there is no such enabled subscription."""
        ...

    def claim_deliveries(
        self, *, now: datetime, limit: int, lease_s: float
    ) -> list[ClaimedDelivery]:
        """Take up to ``limit`` pending deliveries that are due, counting an attempt on each and
        moving its next attempt ``lease_s`` on (so that a worker that dies mid-send leaves it to
        be taken again after the lease). Several workers never take the same row at once."""
        ...

    def finish_delivery(
        self, delivery_id: str, *, attempts: int, outcome: Outcome, now: datetime
    ) -> bool:
        """Record an attempt's outcome, unless the delivery was taken again since (its attempts
        moved on): then False. A GONE outcome also disables the webhook (reason "gone") and
        gives up its other pending deliveries, in the same transaction."""
        ...

    def list_deliveries(
        self,
        webhook_id: str,
        *,
        state: DeliveryState | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """The webhook's deliveries, newest first."""
        ...


class Store(
    AlertStore,
    LinkStore,
    SurgeStore,
    WebhookStore,
    SegmentStore,
    ReportStore,
    TileStore,
    CountStore,
    RetentionStore,
    ReleaseReader,
    ReleaseWriter,
    AccessStore,
    Protocol,
):
    """One backend: segments, reports, and its own life cycle."""

    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers now."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class FoldingStore(Protocol):
    """A store whose ingest leaves work for a folder (PostGIS: ``crossings fold``), for the
    backlog's metrics."""

    def backlog(self) -> tuple[int, int]:
        """(reports waiting to be folded into the rollups, reports waiting to be linked)."""
        ...


@runtime_checkable
class PooledStore(Protocol):
    """A store with a pool of database connections (PostGIS), for the pool's metrics."""

    def pool_usage(self) -> tuple[int, int]:
        """(connections lent out now, connections open) in this process."""
        ...
