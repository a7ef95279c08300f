"""Start-up that waits and heals: the store is reached, its schema checked and the border indexed
in the background, retried forever with backoff, while the server already answers /healthz
(/readyz and store-backed routes answer 503, saying why). Once ready, background watchers keep
the border current and the pool's metrics fresh.

A database lost after start-up needs nothing here: each request's store call fails as
StoreUnavailable (503) and the connection pool reconnects when the database is back.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import threading
from datetime import UTC, datetime, timedelta
from functools import partial

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from service.api.metrics import Metrics
from service.api.state import app_state
from service.domain.errors import StoreUnavailable
from service.domain.link_model import MIN_U_PAIRS
from service.domain.release import day_start
from service.settings import Settings
from service.storage import check_ready, open_store
from service.storage.base import FoldingStore, PooledStore, Store
from service.usecases.deliver_webhooks import DeliveryWorker
from service.usecases.link_model import (
    RESCORE_BATCH,
    Estimate,
    estimate_link_model,
    link_model_is_due,
)
from service.usecases.public_release import CurrentRelease
from service.usecases.release import cut_release, release_is_due
from service.usecases.segments import CurrentBorder, ensure_segments

log = logging.getLogger("crossings")

FIRST_RETRY_S = 0.25
POOL_METRICS_EVERY_S = 2.0
# How often the folder's backlog is counted for /metrics (two count(*) of queue tables).
BACKLOG_METRICS_EVERY_S = 5.0
WEBHOOK_STOP_WAIT_S = 5.0


async def start(app: FastAPI) -> None:
    """Become ready (however long the database takes), then watch the border and the pool."""
    state = app_state(app)
    settings, startup = state.settings, state.startup
    delay = FIRST_RETRY_S
    while True:
        try:
            await run_in_threadpool(_connect, app)
            break
        except StoreUnavailable as error:
            startup.reached = False
            startup.reason = f"waiting for the database: {error.detail}"
            log.warning("%s (next try in %.2f s)", startup.reason, delay)
        except Exception as error:  # e.g. a segment file refused: say so, and keep trying
            startup.reached = False
            startup.reason = f"start-up failed: {type(error).__name__}: {error}"
            log.exception("%s (next try in %.2f s)", startup.reason, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, settings.db_retry_max_s)
    startup.ready.set()
    store, border, release = current_store(app), current_border(app), current_release(app)
    log.info("ready: the store answers and the border has %d segments", len(border.index))
    # What start-up built lives as long as the process: keep it out of every later full
    # garbage collection (those paused big pages by ~100 ms each in bench/features.py).
    gc.collect()
    gc.freeze()
    await asyncio.gather(
        _watch_border(border, settings.border_check_s),
        _watch_pool(store, state.metrics),
        _watch_backlog(store, state.metrics),
        _keep_release(store, release, state.metrics, settings),
        _deliver_webhooks(store, settings),
        _keep_surges(store),
        _keep_link_model(store, settings),
    )


def _connect(app: FastAPI) -> None:
    state = app_state(app)
    settings, startup = state.settings, state.startup
    if startup.store is None:
        startup.store = open_store(settings.store_options)
    check_ready(startup.store, settings.store_options)
    startup.reached = True
    index = ensure_segments(startup.store, settings.segments_path)
    state.border = CurrentBorder(startup.store, index)
    state.release = CurrentRelease(startup.store, check_s=settings.release_check_s)
    if startup.store.release_info() is None:  # a new store: cut one now
        _cut_now(startup.store, settings)
    state.store = startup.store


async def _watch_border(border: CurrentBorder, every_s: float) -> None:
    """Take up a border that another process (``crossings segments load``) stored, within
    ``every_s``: tiles, segments and aggregates then use it. Ingest does not wait for this: it
    finds a changed border in its own transaction (service/usecases/submit_reports.py)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            before = border.index
            if await run_in_threadpool(border.refresh) is not before:
                log.info("took up border version %s", border.index.version)
        except StoreUnavailable:
            continue  # the database is away: look again next time
        except Exception:  # never let the watcher die with the server still up
            log.exception("could not check the border's version")


def _cut_now(store: Store, settings: Settings) -> None:
    info = cut_release(store, now=datetime.now(UTC), delay_h=settings.public_delay_h)
    log.info("cut public release %s (days before %s)", info.release_id, info.through)


async def _keep_release(
    store: Store, release: CurrentRelease, metrics: Metrics, settings: Settings
) -> None:
    """Cut the public release again when it is due: a new day came of age, or late reports,
    deletions or a new border may have changed it (every ``release_refresh_s``). Several servers
    may each cut; the store takes one cut at a time, and each is whole. The release's lag (how
    long ago the newest day it holds ended) goes to /metrics. With ``release_cutter`` off, only
    the lag is watched: the cuts come from elsewhere."""
    every_s = min(settings.release_refresh_s, 60.0)
    while True:
        try:
            now = datetime.now(UTC)
            due = settings.release_cutter and await run_in_threadpool(
                release_is_due,
                store,
                now=now,
                delay_h=settings.public_delay_h,
                refresh_s=settings.release_refresh_s,
            )
            if due:
                await run_in_threadpool(_cut_now, store, settings)
                await run_in_threadpool(release.refresh_now)  # this process's own cut, at once
            info = await run_in_threadpool(store.release_info)
            if info is not None:
                metrics.release_lag.set((now - day_start(info.through)).total_seconds())
        except StoreUnavailable:
            pass  # the database is away: try again next time
        except Exception:  # never let the task die with the server still up
            log.exception("could not cut the public release")
        await asyncio.sleep(every_s * (0.75 + random.random() / 2))  # servers drift apart


async def _keep_surges(store: Store, every_s: float = 600.0) -> None:
    """Close the quiet days of series with an open surge episode, up to yesterday (UTC), so an
    episode whose reports stopped coming closes (docs/surges.md). Several servers may each do
    it; the store does it one transaction at a time, and a day closed twice changes nothing."""
    while True:
        # First a wait: start-up (and a test's short-lived server) is not the time for it.
        await asyncio.sleep(every_s * (0.75 + random.random() / 2))
        try:
            yesterday = datetime.now(UTC).date() - timedelta(days=1)
            changed = await run_in_threadpool(store.advance_surges, yesterday)
            if changed:
                log.info("surge episodes moved on a quiet day: %d alerts changed", len(changed))
        except StoreUnavailable:
            pass  # the database is away: try again next time
        except Exception:  # never let the task die with the server still up
            log.exception("could not move surge series on")


async def _keep_link_model(store: Store, settings: Settings) -> None:
    """Estimate linking's u and crowding again once the latest estimate is
    ``link_estimate_every_h`` old (or was made under another border), and rescore the proposed
    links scored before the latest estimate, a batch per transaction (docs/linking.md). Checked
    about hourly (45 to 75 min, jittered; more often when the setting is under an hour); a server
    that finds, after sampling, that another stored an estimate meanwhile stores none, and each
    rescore batch is whole."""
    every_s = settings.link_estimate_every_h * 3600
    if every_s <= 0:
        return
    while True:
        # First a wait: start-up (and a test's short-lived server) is not the time for it.
        await asyncio.sleep(min(every_s, 3600.0) * (0.75 + random.random() / 2))
        try:
            now = datetime.now(UTC)
            if await run_in_threadpool(link_model_is_due, store, now=now, every_s=every_s):
                found = await run_in_threadpool(
                    partial(estimate_link_model, store, sample_size=settings.link_u_sample_pairs),
                    now=now,
                    still_wanted=lambda: link_model_is_due(
                        store, now=datetime.now(UTC), every_s=every_s
                    ),
                )
                _log_estimate(found)
            while await run_in_threadpool(store.rescore_links, RESCORE_BATCH):
                pass  # one transaction per batch: ingest goes on between them
        except StoreUnavailable:
            pass  # the database is away: try again next time
        except Exception:  # never let the task die with the server still up
            log.exception("could not estimate linking's model")


def _log_estimate(found: Estimate) -> None:
    if found.superseded:
        log.info("linking: another server stored an estimate meanwhile; this one is dropped")
    elif found.model is None:
        log.info(
            "linking: %d unrelated pairs in a sample of %d reports, fewer than %d: u and the"
            " crowding stay the defaults",
            found.sample.pairs, len(found.sample.reports), MIN_U_PAIRS,
        )  # fmt: skip
    else:
        log.info(
            "linking: estimate %d of u and the crowding stored (%d reports, %d pairs)",
            found.model.version, found.model.reports, found.model.pairs,
        )  # fmt: skip


async def _deliver_webhooks(store: Store, settings: Settings) -> None:
    """Send webhook deliveries from this process (unless CROSSINGS_WEBHOOK_WORKER is off), on a
    thread of its own: its requests wait on receivers, never on the event loop. Stopped with the
    server."""
    if not settings.webhook_worker:
        return
    worker = DeliveryWorker(store, settings)
    stop = threading.Event()

    def run() -> None:
        try:
            worker.run(stop)
        finally:
            worker.close()

    thread = threading.Thread(target=run, name="webhook-worker", daemon=True)
    thread.start()
    try:
        await asyncio.Event().wait()  # until the server stops (this task is cancelled)
    finally:
        stop.set()
        # A request still in flight after this is not waited for: its delivery stays leased
        # and is sent again later (at least once), so shutdown is not held up by a receiver.
        await asyncio.to_thread(thread.join, WEBHOOK_STOP_WAIT_S)


async def _watch_pool(store: Store, metrics: Metrics) -> None:
    """Copy the pool's use into its gauges (in every worker: /metrics sums them)."""
    if not isinstance(store, PooledStore):
        return
    while True:
        metrics.pool(*store.pool_usage())
        await asyncio.sleep(POOL_METRICS_EVERY_S)


async def _watch_backlog(store: Store, metrics: Metrics) -> None:
    """Count what the folder has still to do into its gauges, whichever process folds: a
    backlog that keeps growing means folding (and with it surge detection and linking) falls
    behind ingest, or that no process folds at all."""
    if not isinstance(store, FoldingStore):
        return
    while True:
        try:
            metrics.backlog(*await run_in_threadpool(store.backlog))
        except StoreUnavailable:
            pass  # the database is away: count again next time
        except Exception:  # never let the watcher die with the server still up
            log.exception("could not count the folder's backlog")
        await asyncio.sleep(BACKLOG_METRICS_EVERY_S)


def current_store(app: FastAPI) -> Store:
    """The store, once start-up has reached it; StoreUnavailable (503) saying why before."""
    state = app_state(app)
    if state.store is None:
        raise StoreUnavailable(state.startup.reason, operation="start-up")
    return state.store


def current_release(app: FastAPI) -> CurrentRelease:
    state = app_state(app)
    if state.release is None or state.store is None:
        raise StoreUnavailable(state.startup.reason, operation="start-up")
    return state.release


def current_border(app: FastAPI) -> CurrentBorder:
    state = app_state(app)
    if state.border is None or state.store is None:
        raise StoreUnavailable(state.startup.reason, operation="start-up")
    return state.border
