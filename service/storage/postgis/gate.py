"""The store's calls in flight, so that closing it never pulls the engine from under one.

A call still running on another thread when the store closes (a request the server stops
waiting for, the release keeper's cut, a webhook worker finishing its delivery) would hand its
connection back to a pool that ``dispose()`` has already emptied and replaced: nothing closes it
then, and it is dropped unclosed when the old pool is collected. Closing therefore refuses new
calls, waits (bounded) for those under way, and only then disposes of the engines."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from service.domain.errors import StoreUnavailable


class Gate:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._running = 0
        self._closed = False

    @contextmanager
    def call(self, name: str) -> Iterator[None]:
        """One call of the store: refused (StoreUnavailable) once the store is closing."""
        with self._changed:
            if self._closed:
                raise StoreUnavailable("the store is closed", operation=name)
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                if self._running == 0:
                    self._changed.notify_all()

    def close(self, wait_s: float) -> int:
        """Refuse new calls and wait up to ``wait_s`` for those running; how many still run."""
        with self._changed:
            self._closed = True
            self._changed.wait_for(lambda: self._running == 0, timeout=wait_s)
            return self._running
