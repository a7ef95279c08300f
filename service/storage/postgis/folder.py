"""The maintainer that folds pending reports into the rollups (rollups.py): a thread, in
`crossings fold` (a server's supervised child by default) or in each server process, started by
its first ingest (CROSSINGS_ROLLUP_FOLDER=thread).

It folds up to a batch every ``interval_s``, and again at once while it finds a full batch. Only
one process folds at a time (an advisory lock; the others skip their turn). A fold is one
transaction: stopped or killed midway, it leaves its reports pending, and readers count them
there meanwhile, so nothing it does or fails to do changes an answer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("crossings")

# After a failure (the database away), wait this many intervals before trying again.
_BACKOFF = 20
# Vacuum rollup_pending once this many rows were folded out of it and it is caught up: a queue
# table's dead rows are otherwise read by every reader's scan, and its freed pages are not
# reused, until autovacuum comes by (if it is on at all).
VACUUM_AFTER = 20_000
# How long stopping waits for a fold under way (each of its statements is bounded by the
# statement timeout; a fold is a few of them and the detection between).
STOP_WAIT_S = 300.0


class Folder:
    def __init__(
        self,
        fold: Callable[[int], int | None],
        *,
        interval_s: float,
        batch: int,
        vacuum: Callable[[], None] | None = None,
    ) -> None:
        self._fold = fold
        self._vacuum = vacuum
        self._since_vacuum = 0
        self.interval_s = interval_s
        self.batch = batch
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread if it is not running (and folding is on). Cheap when it is."""
        if self._thread is not None or self.interval_s <= 0:
            return
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="crossings-rollup-folder", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            # A fold under way finishes first (it is one transaction; with surge detection a
            # backfill's fold can take a while): closing the engine under it would leave its
            # connection to be dropped unclosed.
            thread.join(timeout=STOP_WAIT_S)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                folded = self._fold(self.batch)
            except Exception:  # the database away, a statement timeout: pending reports wait
                log.warning("folding pending reports into the rollups failed", exc_info=True)
                self._stop.wait(self.interval_s * _BACKOFF)
                continue
            self._since_vacuum += folded or 0
            if folded == self.batch:
                continue
            if self._vacuum is not None and self._since_vacuum >= VACUUM_AFTER:
                self._since_vacuum = 0
                try:
                    self._vacuum()
                except Exception:
                    log.warning("vacuuming rollup_pending failed", exc_info=True)
            self._stop.wait(self.interval_s)
