"""Work that stops when its client goes away (issue #13): a read runs in the thread pool while the
request is watched for the client's disconnect; then the read's statement is cancelled in the
database (service/storage/cancel.py) and the request ends without an answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TypeVar

from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request

from service.domain.errors import ClientGone
from service.storage.cancel import CURRENT, CancelScope

T = TypeVar("T")
log = logging.getLogger("crossings")
# How often a running read looks whether its client is still there.
POLL_S = 0.1


async def until_disconnected(request: Request, read: Callable[[], T]) -> T:
    """``read()`` in the thread pool; if the client disconnects first, its statement is cancelled,
    the thread is waited for (it ends at once), and ClientGone is raised."""
    scope = CancelScope()
    token = CURRENT.set(scope)
    try:
        task = asyncio.ensure_future(run_in_threadpool(read))  # takes the scope with it
    finally:
        CURRENT.reset(token)
    while True:
        done, _ = await asyncio.wait({task}, timeout=POLL_S)
        if done:
            return task.result()
        if await request.is_disconnected():
            scope.cancel()
            with contextlib.suppress(Exception):
                await task
            log.info(
                "%s %s: client went away; its work was cancelled", request.method, request.url.path
            )
            raise ClientGone("the client went away")
