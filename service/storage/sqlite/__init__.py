"""The embedded store: stdlib sqlite3 in WAL mode, an R*Tree for boxes, one file on disk."""

from __future__ import annotations

from service.storage.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
