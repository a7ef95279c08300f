"""All configuration, read from the environment (prefix ``CROSSINGS_``) in this one place."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    suppress_below: int = Field(
        default=5, ge=0, description="Aggregate counts from 1 to this - 1 are suppressed"
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
