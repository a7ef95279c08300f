"""Which database a read goes to: a streaming replica when it is fresh enough, else the primary.

Two kinds of reads use the replica:

- **lag-tolerant** reads (tiles, aggregates, report pages) read it while it is less than
  ``read_max_lag_s`` behind the primary;
- **own-writes** reads (a reporter reading back its report, one report read right after a write)
  read it only once it has replayed the writes they must see: the WAL position (LSN) of this
  process's last write, per key (who wrote) and in all. They wait up to ``read_wait_ms`` for the
  replica's replay position to pass it, then read the primary.

A replica that fails (cannot be reached, is not in recovery) is left alone for ``read_retry_s``
and the primary is read meanwhile: losing the replica never fails a read the primary can answer.
The lag is measured by positions: a replica is behind from the moment it is seen short of a
primary position until it has replayed it (so one whose WAL receiver stalled, though it answers,
is found out too). "Since when" is bounded conservatively by the age of the last transaction it
replayed: whatever it lacks was committed after that one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine, text

T = TypeVar("T")
log = logging.getLogger("crossings.replica")

# LSNs as byte offsets (bigint): comparable in Python without parsing 'X/Y'.
PRIMARY_LSN = text("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint")
REPLAYED_LSN = text(
    "SELECT pg_is_in_recovery(), pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint,"
    " extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8"
)
_KEYS_KEPT = 10_000  # keys whose last write position is remembered (the oldest are forgotten)
_POLL_S = 0.005


class ReplicaBehind(Exception):
    """The replica has not replayed what this read must see (in time): read the primary."""


class ReplicaUnusable(Exception):
    """The replica answers but is not a standby in recovery (promoted, or misconfigured)."""


class ReplicaRouter:
    """The replica's engine and what is known of its freshness; thread-safe."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_lag_s: float,
        wait_s: float,
        retry_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.max_lag_s = max_lag_s
        self.wait_s = wait_s
        self.retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._measuring = threading.Lock()
        self._written: OrderedDict[str, int] = OrderedDict()  # key -> LSN of its last write
        self._last_write = 0  # LSN of this process's last write
        self._replayed = 0  # the replica's replay position when last seen
        self._behind: tuple[int, float] | None = None  # (primary LSN not yet replayed, seen at)
        self._checked_at = float("-inf")
        self._down_until = float("-inf")
        self.reads = {"replica": 0, "primary": 0}  # where reads went (for metrics and tests)

    # --- writes ---------------------------------------------------------------------------------

    def wrote(self, lsn: int, key: str | None) -> None:
        """Remember a committed write's position (for the own-writes reads that follow)."""
        with self._lock:
            self._last_write = max(self._last_write, lsn)
            if key is not None:
                self._written[key] = max(lsn, self._written.pop(key, 0))
                while len(self._written) > _KEYS_KEPT:
                    self._written.popitem(last=False)

    def must_see(self, key: str | None) -> int:
        """The position an own-writes read by ``key`` (None: anyone) must see replayed."""
        with self._lock:
            return self._last_write if key is None else self._written.get(key, 0)

    # --- freshness ------------------------------------------------------------------------------

    def usable(self, primary: Engine) -> bool:
        """Whether lag-tolerant reads may use the replica now. Its freshness is measured at most
        every ``max_lag_s / 4`` seconds (1 s at most), by one thread; the others use what was
        last measured rather than wait for it."""
        now = self._clock()
        if now < self._down_until:
            return False
        interval = min(1.0, self.max_lag_s / 4)
        if now - self._checked_at >= interval and self._measuring.acquire(blocking=False):
            try:
                self._checked_at = now
                self._measure(primary, now)
            finally:
                self._measuring.release()
        with self._lock:
            if now < self._down_until:
                return False
            return self._behind is None or now - self._behind[1] <= self.max_lag_s

    def _measure(self, primary: Engine, now: float) -> None:
        head: int | None
        try:
            with primary.connect() as conn:
                head = int(conn.execute(PRIMARY_LSN).scalar_one())
        except Exception:  # the primary's own faults are for the read itself to meet
            head = None
        try:
            with self.engine.connect() as conn:
                replayed, age_s = self._replay_position(conn)
        except Exception as error:
            self.failed(error)
            return
        with self._lock:
            self._replayed = max(self._replayed, replayed)
            if self._behind is not None and self._replayed >= self._behind[0]:
                self._behind = None
            if self._behind is None and head is not None and self._replayed < head:
                self._behind = (head, now - max(0.0, age_s or 0.0))

    @staticmethod
    def _replay_position(conn: Connection) -> tuple[int, float | None]:
        """(replayed LSN, seconds since the last replayed transaction committed, if any)."""
        in_recovery, replayed, age_s = conn.execute(REPLAYED_LSN).one()
        if not in_recovery or replayed is None:
            raise ReplicaUnusable("the read database is not a standby in recovery")
        return int(replayed), age_s

    def failed(self, error: BaseException) -> None:
        """The replica failed a read or a check: read the primary for ``retry_s``."""
        with self._lock:
            if self._clock() >= self._down_until:
                log.warning("read replica unusable, reading the primary: %s", error)
            self._down_until = self._clock() + self.retry_s

    # --- reading --------------------------------------------------------------------------------

    def caught_up(self, conn: Connection, position: int) -> None:
        """Return once the replica (on ``conn``) has replayed ``position``; ReplicaBehind if it
        has not within ``wait_s``."""
        if position <= self._replayed:
            return
        deadline = self._clock() + self.wait_s
        while True:
            replayed, _ = self._replay_position(conn)
            with self._lock:
                self._replayed = max(self._replayed, replayed)
            if replayed >= position:
                return
            if self._clock() >= deadline:
                raise ReplicaBehind(f"replica at {replayed}, the read needs {position}")
            time.sleep(_POLL_S)

    def count(self, where: str) -> None:
        with self._lock:
            self.reads[where] += 1
