"""One SQLite file shared by threads and processes: a small connection pool and short transactions.

Every call runs in its own transaction on a pooled connection. Writes start with ``BEGIN
IMMEDIATE`` so that writers (threads here, or other uvicorn worker processes on the same file)
queue on the write lock at the start instead of failing when a read transaction tries to upgrade.
WAL lets readers carry on while one writer works.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from service.domain.errors import StoreUnavailable

T = TypeVar("T")

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 10.0
BUSY_ATTEMPTS = 3
MAX_IDLE_CONNECTIONS = 8

_URL_SCHEMES = ("sqlite", "sqlite+pysqlite")

# Failures of the file or its locks rather than of our SQL: the store is unusable now, and a
# client may retry later. Anything else (a syntax error, a constraint) is a bug and propagates.
_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOLFS,
    }
)
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def path_from_url(url: str) -> Path:
    """The file a ``sqlite:///relative/path`` or ``sqlite:////absolute/path`` URL names."""
    scheme, sep, rest = url.partition("://")
    if scheme not in _URL_SCHEMES or not sep or not rest.startswith("/"):
        raise ValueError(f"not a SQLite file URL (sqlite:///path): {url!r}")
    path = rest[1:]
    if not path or "?" in path or path == ":memory:":
        # An in-memory database would be private to each pooled connection.
        raise ValueError(f"a SQLite URL must name a file, without options: {url!r}")
    return Path(path)


def _error_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF  # extended codes keep the primary in the low byte


def is_unavailable(exc: sqlite3.Error) -> bool:
    return _error_code(exc) in _UNAVAILABLE_CODES


def _is_busy(exc: sqlite3.Error) -> bool:
    return _error_code(exc) in _BUSY_CODES


class Database:
    """A pool of connections to one file; ``read`` and ``write`` run a function in a transaction."""

    def __init__(self, path: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def create(cls, path: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Database:
        """Open (creating the file and its directory) in WAL mode, or raise StoreUnavailable."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the directory for {path}: {exc}") from exc
        db = cls(path, busy_timeout_s=busy_timeout_s)
        try:
            # WAL is a property of the file: set once, it stays for every later connection.
            (mode,) = db.run(lambda conn: conn.execute("PRAGMA journal_mode = WAL").fetchone())
        except BaseException:
            db.close()
            raise
        if (
            mode != "wal"
        ):  # e.g. a filesystem without shared memory: correct, but writers block readers
            log.warning("%s stays in %s journal mode, not WAL", path, mode)
        return db

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn``'s result, run in one read transaction (a consistent snapshot)."""
        return self._transaction(fn, begin="BEGIN")

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn``'s result, run in one write transaction, committed; rolled back if ``fn`` raises.

        ``fn`` may run more than once when the file stays locked, so it must only touch the
        database through ``conn``.
        """
        return self._transaction(fn, begin="BEGIN IMMEDIATE")

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn``'s result, run outside a transaction (for pragmas that refuse one)."""
        return self._transaction(fn, begin=None)

    def close(self) -> None:
        """Close idle connections now; connections in use close when their call ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _transaction(self, fn: Callable[[sqlite3.Connection], T], *, begin: str | None) -> T:
        for attempt in range(BUSY_ATTEMPTS):
            try:
                with self._connection() as conn:
                    return _run_in_transaction(conn, fn, begin=begin)
            except sqlite3.Error as exc:
                if _is_busy(exc) and attempt + 1 < BUSY_ATTEMPTS:
                    log.warning("%s is busy (attempt %d), retrying", self.path, attempt + 1)
                    time.sleep(0.05 * 2**attempt * (1 + random.random()))
                    continue
                if is_unavailable(exc):
                    raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc
                raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = self._checkout()
        try:
            yield conn
        except sqlite3.Error as exc:
            # A connection that saw the file fail, or could not roll back, is not reused.
            self._checkin(conn, healthy=not (is_unavailable(exc) or conn.in_transaction))
            raise
        except BaseException:
            self._checkin(conn, healthy=not conn.in_transaction)
            raise
        self._checkin(conn, healthy=True)

    def _checkout(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise StoreUnavailable(f"SQLite store {self.path} is closed")
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _checkin(self, conn: sqlite3.Connection, *, healthy: bool) -> None:
        with self._lock:
            if healthy and not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread is off because the pool hands a connection to one thread at a time;
        # isolation_level=None leaves transactions to us (explicit BEGIN/COMMIT).
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            # In WAL mode NORMAL loses at most the last transactions on power loss, never integrity.
            conn.execute("PRAGMA synchronous = NORMAL")
            # Measured on batches of 500: a 16 MiB page cache and a 16 MiB WAL between checkpoints
            # keep R*Tree inserts and checkpoint fsyncs from dominating as the file grows.
            conn.execute("PRAGMA cache_size = -16000")
            conn.execute("PRAGMA wal_autocheckpoint = 4000")
        except BaseException:
            conn.close()
            raise
        return conn


def _run_in_transaction(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], *, begin: str | None
) -> T:
    if begin is None:
        return fn(conn)
    conn.execute(begin)
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("rollback failed on %s", conn)
        raise
    return result
