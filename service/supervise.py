"""A child process kept running beside `crossings serve` (its rollup folder, `crossings fold`):
restarted with a doubling pause when it exits unasked, stopped with SIGTERM and waited for.

The child runs in a session of its own, so that a Ctrl-C at a terminal reaches only the server,
which then stops it after its own shutdown; and the child watches its parent (``--parent``), so
that a server killed outright (SIGKILL) does not leave it running.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

log = logging.getLogger("crossings")

FIRST_RESTART_S = 1.0
MAX_RESTART_S = 60.0
# A child that ran this long before exiting is restarted after the first pause again.
HEALTHY_S = 60.0


class Supervised:
    """``argv`` run as a child process from ``start`` to ``stop``, started again when it exits."""

    def __init__(self, argv: Sequence[str], *, name: str, stop_wait_s: float) -> None:
        self.argv = list(argv)
        self.name = name
        self.stop_wait_s = stop_wait_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._keep, name=f"supervise-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """SIGTERM to the child, and wait for it (a fold under way finishes) up to
        ``stop_wait_s``; then SIGKILL (a fold killed midway leaves its reports pending)."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_wait_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killed", self.name, self.stop_wait_s)
                process.kill()
                process.wait()
        self._thread.join(timeout=5)

    def _keep(self) -> None:
        pause = FIRST_RESTART_S
        while True:
            started = time.monotonic()
            try:
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self._process = subprocess.Popen(self.argv, start_new_session=True)
                log.info("%s started (pid %d)", self.name, self._process.pid)
                status: object = self._process.wait()
            except OSError as error:  # could not start it (out of processes, memory)
                status = f"not started: {error}"
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= HEALTHY_S:
                pause = FIRST_RESTART_S
            log.warning("%s exited with status %s: restarting in %.0f s", self.name, status, pause)
            if self._stopping.wait(pause):
                return
            pause = min(pause * 2, MAX_RESTART_S)


class HeldSignals:
    """SIGTERM and SIGINT recorded, not acted on, from creation to ``release``: which gives back
    the handlers found and raises again what was received (so that the process ends as it would
    have: killed by SIGTERM, or exit 0 after a Ctrl-C)."""

    def __init__(self) -> None:
        self._previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        self._received: list[int] = []
        for signum in self._previous:
            signal.signal(signum, self._hold)

    def _hold(self, signum: int, frame: object) -> None:
        self._received.append(signum)

    def release(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        for received in self._received:
            # As uvicorn.run does: SIGINT's default handler raises KeyboardInterrupt, swallowed.
            with contextlib.suppress(KeyboardInterrupt):
                signal.raise_signal(received)
