"""Stopping a statement whose caller has gone away (issue #13: when the client goes away, the
work stops).

The API runs a cancellable read inside a ``CancelScope`` (service/api/cancel.py); a store marks
each statement that may take long with ``cancellable(handle)``, where ``handle`` stops it from
another thread: psycopg's ``Connection.cancel_safe`` (the server cancels the statement) or
sqlite3's ``Connection.interrupt``. Outside a scope (the CLI, tests of the stores) it does
nothing. The scope travels in a context variable, which the thread pool copies into the thread
that does the read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class Cancelled(Exception):
    """The scope was cancelled before the statement could start."""


class CancelScope:
    """The statements of one request, to stop at once when its client goes away."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: list[Callable[[], None]] = []
        self.cancelled = False

    def cancel(self) -> None:
        # Under the lock: a statement that ends meanwhile waits in _leave until its cancel was
        # sent, so its connection cannot go back to the pool (and to another request's
        # statement) with a cancel still on its way to the server.
        with self._lock:
            self.cancelled = True
            for handle in list(self._handles):
                handle()

    def _enter(self, handle: Callable[[], None]) -> None:
        with self._lock:
            if self.cancelled:
                raise Cancelled("the request was cancelled")
            self._handles.append(handle)

    def _leave(self, handle: Callable[[], None]) -> None:
        with self._lock:
            self._handles.remove(handle)


CURRENT: ContextVar[CancelScope | None] = ContextVar("crossings_cancel_scope", default=None)


def cancelled() -> bool:
    """Whether the current scope (the request this thread works for) was cancelled."""
    scope = CURRENT.get()
    return scope is not None and scope.cancelled


@contextmanager
def cancellable(handle: Callable[[], None]) -> Iterator[None]:
    """While in this block, cancelling the current scope calls ``handle`` (from another thread)."""
    scope = CURRENT.get()
    if scope is None:
        yield
        return
    scope._enter(handle)
    try:
        yield
    finally:
        scope._leave(handle)
