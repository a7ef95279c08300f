"""Prometheus metrics (prometheus-client): what each app records, and their exposition.

Every metric of this service is defined here, in ``Metrics``; one instance per app lives on
``app_state(app).metrics`` (service/api/state.py), with a registry of its own (two apps in one process, as in the tests, do
not share counts). Under ``crossings serve --workers N`` the workers are separate processes: the
CLI then sets ``PROMETHEUS_MULTIPROC_DIR`` and /metrics sums every worker's files (prometheus-
client's multiprocess mode; gauges say how in ``multiprocess_mode``).

``crossings_release_lag_seconds`` is defined here for the public release (issue #13) to set:
``app_state(app).metrics.release_lag.set(seconds)``.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from service.domain.errors import PoolExhausted, SchemaNotCurrent, ServiceError, StatementTimeout
from service.domain.reports import IngestOutcome

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Request latency: the API's own work is milliseconds; pages and exports run to seconds.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# How far reports lie from the border line, up to the default reach (max_snap_distance_m).
SNAP_BUCKETS_M = (10.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 25_000.0)


def is_multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    """The service's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "crossings_http_requests",
            "HTTP requests answered, by route template, method, status and the caller's role",
            ["route", "method", "status", "role"],
            registry=registry,
        )
        self.latency = Histogram(
            "crossings_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by route template",
            ["route", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.ingested = Counter(
            "crossings_reports_ingested",
            "Submitted reports by outcome (created, duplicate, conflict, invalid)",
            ["outcome"],
            registry=registry,
        )
        self.snap_distance = Histogram(
            "crossings_snap_distance_meters",
            "Geodesic distance from a newly stored report to the border segment it snapped to",
            buckets=SNAP_BUCKETS_M,
            registry=registry,
        )
        self.db_pool = Gauge(
            "crossings_db_pool_connections",
            "Database connections of the pool: in_use (lent to a request) and open",
            ["state"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.fold_backlog = Gauge(
            "crossings_fold_backlog_reports",
            "PostGIS: acknowledged reports not yet folded into the rollups (queue=rollups) or "
            "not yet linked (queue=links), as last counted by any worker",
            ["queue"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.db_errors = Counter(
            "crossings_db_errors",
            "Requests failed by the database: unreachable, timeout, pool_exhausted, schema",
            ["kind"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "crossings_rate_limited",
            "Requests refused by a rate limit (429), by the bucket's kind (key or address)",
            ["bucket"],
            registry=registry,
        )
        self.release_lag = Gauge(
            "crossings_release_lag_seconds",
            "Age of the newest public release: now minus the moment it was cut (set by the "
            "release's keeper)",
            multiprocess_mode="mostrecent",
            registry=registry,
        )

    def ingest(self, outcomes: Iterable[tuple[IngestOutcome, float | None]]) -> None:
        """Count each item's outcome, and the snap distance of each report created: one counter
        increment per outcome for a whole batch (a labelled increment per item was a tenth of
        a batch's server CPU, bench.ingest --profile)."""
        counts: collections.Counter[IngestOutcome] = collections.Counter()
        observe = self.snap_distance.observe
        for outcome, snap_distance_m in outcomes:
            counts[outcome] += 1
            if outcome is IngestOutcome.CREATED and snap_distance_m is not None:
                observe(snap_distance_m)
        for outcome, n in counts.items():
            self.ingested.labels(outcome.value).inc(n)

    def db_error(self, error: ServiceError) -> None:
        if isinstance(error, StatementTimeout):
            kind = "timeout"
        elif isinstance(error, SchemaNotCurrent):
            kind = "schema"
        elif isinstance(error, PoolExhausted):
            kind = "pool_exhausted"
        else:
            kind = "unreachable"
        self.db_errors.labels(kind).inc()

    def pool(self, in_use: int, open_: int) -> None:
        self.db_pool.labels("in_use").set(in_use)
        self.db_pool.labels("open").set(open_)

    def backlog(self, rollups: int, links: int) -> None:
        self.fold_backlog.labels("rollups").set(rollups)
        self.fold_backlog.labels("links").set(links)

    def exposition(self) -> bytes:
        """The text format: every worker's metrics summed in multiprocess mode, else this app's."""
        if is_multiprocess():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
