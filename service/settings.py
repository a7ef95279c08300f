"""All configuration, read from the environment (prefix ``CROSSINGS_``) in this one place."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.domain.linking import LinkWindows
from service.domain.release import PublicRule
from service.domain.surges.watch import SurgeConfig
from service.domain.webhooks import STANDARD_SCHEDULE_S
from service.storage.linking import LinkConfig
from service.storage.options import StoreOptions

DEFAULT_KINDS = ("crossing", "attempt", "evidence", "assistance")


class Settings(BaseSettings):
    """Service settings. Every field can be set as ``CROSSINGS_<FIELD_NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CROSSINGS_", frozen=True, extra="ignore")

    database_url: str = Field(
        default="sqlite:///crossings.db",
        description="sqlite:///path (embedded default) or postgresql+psycopg://user@host/db",
    )
    segments_path: Path | None = Field(
        default=None, description="GeoJSON loaded on first start when the store has no segments"
    )
    max_snap_distance_m: float = Field(default=25_000.0, gt=0, le=1_000_000)
    max_clock_skew_s: float = Field(default=600.0, ge=0)
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    batch_max_items: int = Field(default=1_000, gt=0)
    batch_max_body_bytes: int = Field(default=4_194_304, gt=0)
    page_max_items: int = Field(default=10_000, gt=0)
    report_kinds: Annotated[tuple[str, ...], NoDecode] = DEFAULT_KINDS
    allow_anonymous_reports: bool = Field(
        default=False, description="Accept reports without a key (closed networks only)"
    )
    border_check_s: float = Field(
        default=5.0,
        gt=0,
        description="How often a server looks whether another process loaded a new border",
    )
    key_cache_s: float = Field(
        default=10.0, ge=0, description="How long a process trusts a key it has looked up"
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Origins allowed by CORS, comma-separated (default none)"
    )
    # The public release (service/domain/release.py): all a caller without an analyst key sees.
    public_min_count: int = Field(
        default=5, ge=1, description="Public figures below this, zero included, are hidden"
    )
    public_round_to: int = Field(
        default=5, ge=1, description="Every other public figure is rounded to a multiple of this"
    )
    public_delay_h: float = Field(
        default=24, ge=0, description="The release holds only days that ended this long ago"
    )
    release_refresh_s: float = Field(
        default=3600, gt=0, description="How often the server cuts the release again"
    )
    release_check_s: float = Field(
        default=5, ge=0, description="How often a server looks for a release another one cut"
    )
    release_cutter: bool = Field(
        default=True,
        description="`crossings serve` cuts the release again when it is due; off: a scheduled"
        " `crossings release cut` does (a server still cuts a new store's first release)",
    )
    public_max_cells: int = Field(
        default=12_000,
        gt=0,
        description="Most cells (periods x possible groups) a public aggregate may have",
    )
    precise_retention_days: int | None = Field(
        default=None,
        ge=1,
        description=(
            "`crossings purge` coarsens reports observed more than this many days ago to their"
            " ~1 km grid cell and drops their notes, device, accuracy and snapped point;"
            " unset: kept"
        ),
    )
    tile_points_min_zoom: int = Field(
        default=10, ge=0, le=22, description="From this zoom, tiles draw reports as points"
    )
    tile_max_points: int = Field(
        default=4_000, gt=0, le=100_000, description="A tile with more points draws clusters"
    )
    tile_max_age_s: int = Field(
        default=10, ge=0, description="Cache-Control max-age of tiles (ETag revalidates)"
    )
    retry_after_s: int = Field(default=5, ge=1, description="Retry-After sent with 503")
    startup_wait_s: float = Field(
        default=3.0,
        ge=0,
        description=(
            "How long start-up waits for the store before it serves anyway (/healthz answers,"
            " /readyz says 503) while it goes on trying in the background"
        ),
    )
    redis_url: str | None = Field(
        default=None,
        description="redis://host:port/db shared by every worker for rate limits; unset: per process",
    )
    rate_limit_public: int = Field(
        default=1_200,
        ge=0,
        description="Requests per window per client address without a key; 0: off",
    )
    rate_limit_per_key: int = Field(
        default=20_000, ge=0, description="Requests per window per API key; 0: off"
    )
    rate_limit_window_s: int = Field(
        default=60, ge=1, description="Length of a rate-limit window, from a bucket's first request"
    )
    db_pool_size: int = Field(default=8, ge=1)
    db_statement_timeout_ms: int = Field(default=30_000, ge=0)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1)
    log_level: str = "info"
    # Real GIS clients (issue 14): key-less reads answer any origin (CORS "*", no credentials).
    cors_public: bool = Field(
        default=True,
        description=(
            "Key-less GET requests answer any origin (Access-Control-Allow-Origin: *); keyed"
            " cross-origin use still needs the origin in CROSSINGS_CORS_ORIGINS"
        ),
    )

    # Read replicas (issue #18, deployment): lag-tolerant reads go to a streaming replica.
    read_database_url: str | None = Field(
        default=None,
        description=(
            "postgresql+psycopg://... of a streaming (hot standby) replica of database_url: tiles,"
            " aggregates and report pages are read there; unset: everything reads the primary"
        ),
    )
    read_max_lag_s: float = Field(
        default=5.0, gt=0, description="A replica behind the primary for longer is not read"
    )
    read_wait_ms: int = Field(
        default=250,
        ge=0,
        description="How long a read of this process's own writes waits for the replica to"
        " replay them before it reads the primary",
    )
    read_retry_s: float = Field(
        default=5.0, gt=0, description="After a replica fault, how long the primary is read"
    )

    # Issue #17 (writepath): ingest appends reports to rollup_pending; a thread per server
    # process folds them into the rollups (service/storage/postgis/folder.py). Readers count
    # pending reports too, so these change only how much a read sums, never what it answers.
    rollup_fold_interval_ms: int = Field(
        default=100, ge=0, description="PostGIS: how often pending reports are folded; 0: never"
    )
    rollup_fold_batch: int = Field(default=5_000, gt=0, description="Pending reports per fold")
    # Where a server's folding runs (docs/operations.md, "What a server runs beside requests").
    rollup_folder: Literal["process", "thread", "off"] = Field(
        default="process",
        description="PostGIS: `process`: `crossings serve` runs `crossings fold` as a supervised"
        " child process and its workers fold nothing (an app served otherwise folds in a thread);"
        " `thread`: each server process folds in a thread of its own, from its first ingest;"
        " `off`: this server does not fold (a `crossings fold` elsewhere does)",
    )

    # Issue #15 (the Mexico-US border from the IBWC line): docs/border-data.md.
    upgrade_bundled_border: bool = Field(
        default=True,
        description="`crossings db upgrade` and `crossings serve` replace an earlier release's "
        "bundled border with this release's (never a border the operator loaded)",
    )

    # Hardening (issue #13): where links point, which Host headers are served, bounded work.
    public_url: str | None = Field(
        default=None,
        description=(
            "scheme://host[:port] this service is reached at (behind a proxy): every link and the"
            " map page's script URLs use it, whatever Host a request carries; unset: the Host"
            " header, which must then be one of allowed_hosts"
        ),
    )
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("localhost", "127.0.0.1", "::1", "testserver"),
        description=(
            "Host header names served when public_url is unset, comma-separated (the bind host"
            " is added); '*' serves any (do not, unless a proxy checks Host)"
        ),
    )
    aggregate_max_cells: int = Field(
        default=100_000,
        gt=0,
        description=(
            "Most cells (periods x groups, bounded before counting) one aggregates answer may"
            " hold; refused above"
        ),
    )
    aggregate_max_range_days: int = Field(
        default=36_525,
        gt=0,
        description="Longest window, in days, one aggregates request may count (100 years)",
    )
    aggregate_max_parts: int = Field(
        default=50_000,
        gt=0,
        description=(
            "Most counting parts (rollup periods and ranges of reports) one aggregates request"
            " may need: local zones off UTC midnight need more per bucket"
        ),
    )

    # Surges (issue #19, docs/surges.md): one budget of false alerts for all watched series.
    surges: bool = Field(
        default=True,
        description="Watch every segment's, region's and border's daily series for surges where"
        " reports are counted, and raise alerts (docs/surges.md)",
    )
    surge_false_alerts_per_week: float = Field(
        default=1.0,
        gt=0,
        description=(
            "False surge alerts a week allowed across all series in control; each series' CUSUM"
            " threshold is set from this budget divided by the number of series watched"
        ),
    )

    # Alerts to other services (issue #19): docs/webhooks.md.
    webhook_allow_private: bool = Field(
        default=False,
        description="Let webhooks reach loopback, private and link-local addresses (tests, closed"
        " networks); unset, such URLs are refused when made and when sent",
    )
    webhook_worker: bool = Field(
        default=True,
        description="`crossings serve` sends webhook deliveries in process; off: run"
        " `crossings worker` instead (either way, any number of them may run)",
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="A receiver not answering within this is retried"
    )
    webhook_retry_schedule_s: Annotated[tuple[float, ...], NoDecode] = Field(
        default=STANDARD_SCHEDULE_S,
        description="Waits after each failed attempt, comma-separated seconds (jittered +-20%);"
        " default the Standard Webhooks schedule 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h",
    )
    webhook_poll_s: float = Field(
        default=1.0, gt=0, description="How often an idle worker looks for due deliveries"
    )
    webhook_batch: int = Field(default=20, gt=0, description="Deliveries one worker takes at once")
    webhook_concurrency: int = Field(
        default=4, gt=0, le=64, description="Requests one worker has in flight at once"
    )
    webhook_lease_s: float = Field(
        default=120.0,
        gt=0,
        description="A taken delivery whose worker died is taken again after this (at least"
        " three webhook timeouts)",
    )
    webhook_rotation_overlap_s: float = Field(
        default=86_400.0,
        ge=0,
        description="After a secret is rotated, the old one also signs for this long",
    )

    @field_validator("webhook_retry_schedule_s", mode="before")
    @classmethod
    def _schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(float(v) for v in value.split(",") if v.strip())
        return value

    # Linking reports of one crossing by different monitors (issue #20): docs/linking.md.
    link_max_hours: float = Field(
        default=6.0, gt=0, le=72, description="Reports further apart in time are never linked"
    )
    link_max_km: float = Field(
        default=5.0, gt=0, le=50, description="Reports further apart (geodesic) are never linked"
    )
    link_threshold_bits: float = Field(
        default=1.0,
        description=(
            "A candidate pair is linked when its match weight (bits: the sum of log2(m/u) and"
            " the crowding term) reaches this"
        ),
    )
    link_min_reviews: int = Field(
        default=200,
        ge=1,
        description="Confirmed pairs needed before m is estimated from reviews (defaults until then)",
    )
    link_u_sample_pairs: int = Field(
        default=20_000,
        ge=100,
        le=200_000,
        description=(
            "Reports drawn at random (each looked for whole days away) that u and the crowding"
            " are estimated from"
        ),
    )
    link_estimate_every_h: float = Field(
        default=24.0,
        ge=0,
        description=(
            "`crossings serve` estimates u and the crowding again once the latest estimate is"
            " this old (0: never in process; run `crossings links estimate`)"
        ),
    )

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(h.strip().lower() for h in value.split(",") if h.strip())
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be http(s)://host[:port]")
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError("must be http(s)://host[:port], without a path (no prefix support)")
        return f"{parts.scheme}://{parts.netloc}"

    # --- Operations (issue #18): healing, drain, proxies, metrics, logs, batch cost ---
    db_retry_max_s: float = Field(
        default=5.0, gt=0, description="Longest pause between attempts to reach a lost database"
    )
    drain_s: float = Field(
        default=10.0,
        ge=0,
        description="After SIGTERM: /readyz answers 503 and requests are still served this long",
    )
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Addresses/CIDRs whose X-Forwarded-For is believed, comma-separated (none)",
    )
    metrics_allow: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Addresses/CIDRs that may read /metrics without a key, comma-separated (none)",
    )
    log_format: Literal["json", "text"] = "json"
    batch_item_cost_ms: float = Field(
        # Measured (docs/operations.md): 0.11 ms per report in batches of 1,000, 0.34 ms in
        # batches of 100, on a 2-core machine shared with other work; about 3x that for headroom.
        default=1.0,
        gt=0,
        description=(
            "Database time one report of a batch costs (measured: docs/operations.md); a batch"
            " whose cost passes half the statement timeout is refused before any work"
        ),
    )

    @field_validator("trusted_proxies", "metrics_allow", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        for network in value if isinstance(value, tuple | list) else ():
            ipaddress.ip_network(network, strict=False)  # a ValueError names the bad entry
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @field_validator("report_kinds", mode="before")
    @classmethod
    def _split_kinds(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def folds(self) -> bool:
        """Whether the store leaves work for a rollup folder and folding is on (PostGIS, a fold
        interval above 0): what ``crossings fold`` and a server's fold child need."""
        return not self.is_sqlite and self.rollup_fold_interval_ms > 0

    @property
    def public_rule(self) -> PublicRule:
        return PublicRule(min_count=self.public_min_count, round_to=self.public_round_to)

    @property
    def surge_config(self) -> SurgeConfig | None:
        """What detection runs with; None when ``CROSSINGS_SURGES`` turns it off."""
        if not self.surges:
            return None
        return SurgeConfig(float(self.surge_false_alerts_per_week), tuple(self.report_kinds))

    @property
    def store_options(self) -> StoreOptions:
        """What the store needs of these settings (storage reads no settings itself)."""
        return StoreOptions(
            database_url=self.database_url,
            read_database_url=self.read_database_url,
            statement_timeout_ms=self.db_statement_timeout_ms,
            pool_size=self.db_pool_size,
            read_max_lag_s=self.read_max_lag_s,
            read_wait_s=self.read_wait_ms / 1000,
            read_retry_s=self.read_retry_s,
            fold_interval_s=self.rollup_fold_interval_ms / 1000,
            fold_batch=self.rollup_fold_batch,
            fold_in_thread=self.rollup_folder != "off",
            surges=self.surge_config,
            links=LinkConfig(
                windows=LinkWindows(self.link_max_hours, self.link_max_km),
                threshold_bits=self.link_threshold_bits,
                min_reviews=self.link_min_reviews,
            ),
        )
