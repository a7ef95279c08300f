"""The application's state, typed: what create_app builds (settings, limiter, metrics, drain,
start-up) and what start-up adds once the store answers (store, border, release). It is held on
``app.state`` under one name and read through ``app_state``: nothing else reads ``app.state``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from fastapi import FastAPI

from service.api.drain import Drain
from service.api.metrics import Metrics
from service.api.ratelimit import RateLimiter
from service.domain.access import ApiKey
from service.settings import Settings
from service.storage.base import Store
from service.usecases.public_release import CurrentRelease
from service.usecases.segments import CurrentBorder


class Startup:
    """Whether start-up is done, and if not, why (for /readyz and the 503s meanwhile)."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.reason = "waiting for the database: the first attempt is under way"
        self.store: Store | None = None  # opened, not yet known to answer
        self.reached = False  # the store answered in the attempt under way (the border loads)

    async def wait(self, wait_s: float) -> None:
        """Until ready, or ``wait_s`` passed without the store answering (a store that answered
        is waited for while its attempt goes on: loading the first border takes a while)."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while not self.ready.is_set():
            if not self.reached and asyncio.get_running_loop().time() >= deadline:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ready.wait(), 0.05)


@dataclass(slots=True)
class AppState:
    settings: Settings
    limiter: RateLimiter
    metrics: Metrics
    drain: Drain
    startup: Startup = field(default_factory=Startup)
    # key id -> (when it was read, monotonic; the stored key or None): service/api/deps.py
    key_cache: dict[str, tuple[float, ApiKey | None]] = field(default_factory=dict)
    # Set by start-up (service/api/lifecycle.py) once the store answers; None before.
    store: Store | None = None
    border: CurrentBorder | None = None
    release: CurrentRelease | None = None


def app_state(app: FastAPI) -> AppState:
    state: AppState = app.state.crossings
    return state
