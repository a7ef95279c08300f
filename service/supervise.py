"""A child process kept running beside `crossings serve` (its rollup folder, `crossings fold`):
restarted with a doubling pause when it exits unasked, stopped with SIGTERM and waited for.

The child runs in a session of its own, so that a Ctrl-C at a terminal reaches only the server,
which then stops it after its own shutdown; and the child watches its parent (``--parent``), so
that a server killed outright (SIGKILL) does not leave it running.
"""

from __future__ import annotations

import contextlib
import logging
import os
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
        self._end(at_once=False)

    def kill(self) -> None:
        """Stop at once: SIGKILL to the child (a fold under way leaves its reports pending)."""
        self._end(at_once=True)

    def _end(self, *, at_once: bool) -> None:
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None and process.poll() is None:
            if not at_once:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=self.stop_wait_s)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in %.0f s: killed", self.name, self.stop_wait_s)
            if process.poll() is None:
                process.kill()
                process.wait()
        if self._thread.ident is not None:  # started
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


class StopSignal(BaseException):
    """SIGTERM or SIGINT, raised in the main thread by ``HeldSignals`` (a BaseException: no
    ``except Exception`` on the way catches it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class HeldSignals:
    """SIGTERM and SIGINT raise ``StopSignal`` in the main thread while armed (from creation,
    and again after ``arm``); ``release`` gives back the handlers found. ``crossings serve``
    holds them around uvicorn, which installs its own while it runs and, with one worker, raises
    the signal it stopped for again when it returns: here that lands as a ``StopSignal`` and the
    server stops its fold child before it ends as the signal says (``end_as``)."""

    def __init__(self) -> None:
        self._previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        self.arm()

    def arm(self) -> None:
        for signum in self._previous:
            signal.signal(signum, self._raise)

    def _raise(self, signum: int, frame: object) -> None:
        raise StopSignal(signum)

    def release(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def end_as(self, signum: int) -> None:
        """After ``release``: what the signal would have done had nothing held it (SIGTERM's
        default ends the process; a Ctrl-C's KeyboardInterrupt is swallowed, as uvicorn.run
        does, and the command returns)."""
        with contextlib.suppress(KeyboardInterrupt):
            signal.raise_signal(signum)


class StopRequest:
    """SIGTERM and SIGINT noted (by name), from creation on, for a loop that looks between its
    steps (``crossings fold``). The handler only sets an attribute: it runs between two
    bytecodes of the main thread, wherever that is, and takes no lock."""

    def __init__(self) -> None:
        self.why: str | None = None
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self.why = self.why or signal.Signals(signum).name

    def wait(self, wait_s: float, parent: int | None) -> str | None:
        """Wait up to ``wait_s`` for a stop: the signal's name, or "the server is gone" when
        ``parent`` is no longer this process's parent; None when the time is up."""
        deadline = time.monotonic() + wait_s
        while self.why is None:
            if parent is not None and os.getppid() != parent:
                return "the server is gone"
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(left, 0.25))  # a handler runs, then the sleep goes on: <= 0.25 s
        return self.why
