"""Graceful drain on SIGTERM: /readyz turns 503 at once, requests are still served for
``drain_s`` (each response then closes its connection), then the listening socket closes and
uvicorn's own shutdown lets in-flight requests finish.

uvicorn stops listening as soon as it gets SIGTERM; a load balancer that has not yet seen
/readyz fail still sends requests, which then meet a closed port or a reset. So, under uvicorn
only (when its handler holds SIGTERM), the handler is wrapped: the first SIGTERM starts the
drain and reaches uvicorn ``drain_s`` later; a second one reaches it at once. Ctrl-C (SIGINT)
is left to uvicorn: someone at a terminal wants the server to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("crossings")

# The listening socket closes this long after the drain period, so that a request sent within
# the period is accepted even on a busy machine (a connection still in the kernel's queue when
# the socket closes is reset); then connections just accepted get as long again to send their
# request before uvicorn closes the idle ones.
LINGER_S = 0.5

Handler = Callable[[int, FrameType | None], Any]


class Drain:
    """Whether this process is draining; installs itself in front of uvicorn's SIGTERM handler."""

    def __init__(self, drain_s: float) -> None:
        self.drain_s = drain_s
        self.draining = False
        self._previous: Handler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def install(self) -> None:
        """Wrap uvicorn's SIGTERM handler (its ``Server.handle_exit``); elsewhere do nothing."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous) or getattr(previous, "__name__", "") != "handle_exit":
            return
        self._previous = previous
        self._loop = asyncio.get_running_loop()
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def uninstall(self) -> None:
        if self._previous is not None and signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._previous)
        if self._task is not None:
            self._task.cancel()

    def _on_sigterm(self, sig: int, frame: FrameType | None) -> None:
        assert self._previous is not None and self._loop is not None
        if self.draining or self.drain_s <= 0:
            self._previous(sig, frame)  # a second SIGTERM, or no drain: uvicorn's shutdown now
            return
        self.draining = True
        log.warning(
            "SIGTERM: draining for %.1f s (/readyz answers 503, requests are still served)",
            self.drain_s,
        )
        self._loop.call_soon_threadsafe(self._start, sig)

    def _start(self, sig: int) -> None:
        assert self._loop is not None
        self._task = self._loop.create_task(self._finish(sig))

    async def _finish(self, sig: int) -> None:
        assert self._previous is not None
        await asyncio.sleep(self.drain_s + LINGER_S)
        # Stop accepting first, and give connections just accepted a moment to send their
        # request: uvicorn's shutdown closes connections that have no request in progress.
        server = getattr(self._previous, "__self__", None)
        for listener in getattr(server, "servers", []):
            with contextlib.suppress(Exception):
                listener.close()
        await asyncio.sleep(LINGER_S)
        log.warning("drain over: shutting down")
        self._previous(sig, None)
