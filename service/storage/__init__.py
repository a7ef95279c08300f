"""Persistence. ``open_store`` picks the backend from the database URL."""

from __future__ import annotations

from service.storage.base import Store
from service.storage.options import HasStoreOptions, StoreOptions


def _options(source: StoreOptions | HasStoreOptions) -> StoreOptions:
    return source if isinstance(source, StoreOptions) else source.store_options


def open_store(source: StoreOptions | HasStoreOptions) -> Store:
    """Open (and for SQLite, create and migrate) the store the options name (or the settings'
    ``store_options``)."""
    options = _options(source)
    if options.is_sqlite:
        from service.storage.sqlite.store import SqliteStore

        return SqliteStore.open(options.database_url, surges=options.surges, links=options.links)
    from service.storage.postgis.store import PostgisStore

    return PostgisStore.open(options)


def check_ready(store: Store, source: StoreOptions | HasStoreOptions) -> None:
    """Raise StoreUnavailable unless the store answers now and its schema is this code's
    (SchemaNotCurrent when a PostGIS schema is behind; SQLite migrates itself on open)."""
    store.ping()
    options = _options(source)
    if not options.is_sqlite:
        from service.storage.postgis.store import PostgisStore

        if isinstance(store, PostgisStore):
            store.check_schema(options.database_url)
