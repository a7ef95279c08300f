"""What a store needs of the configuration, as plain values: built from the settings in one place
(``Settings.store_options``, service/settings.py), so that storage never reads them itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from service.domain.surges.watch import SurgeConfig
from service.storage.linking import LinkConfig


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """The database to open and how (the settings' defaults and meanings: service/settings.py):
    ``read_database_url`` names a PostGIS replica for reads; ``surges`` is None when detection is
    off; ``links`` is how reports are linked (docs/linking.md). The PostGIS pool, timeouts and
    rollup folder take the rest; SQLite only the URL, ``surges`` and ``links``."""

    database_url: str
    read_database_url: str | None
    statement_timeout_ms: int
    pool_size: int
    read_max_lag_s: float
    read_wait_s: float
    read_retry_s: float
    fold_interval_s: float
    fold_batch: int
    surges: SurgeConfig | None
    links: LinkConfig = field(default_factory=LinkConfig)
    # False: this process's ingest starts no folder thread (another process folds).
    fold_in_thread: bool = True

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


class HasStoreOptions(Protocol):
    """What carries store options (the service's Settings)."""

    @property
    def store_options(self) -> StoreOptions: ...
