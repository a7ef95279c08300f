"""The delivery worker: take due deliveries from the outbox, send each, record its outcome.

At least once: a delivery is marked done only after its receiver answered 2xx, and a worker that
dies between sending and recording leaves it leased, to be sent again (same ``webhook-id``) once
the lease runs out. Any number of workers may run (server processes and `crossings worker`s):
the store never hands one delivery to two at once.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from service.domain.errors import StoreUnavailable
from service.domain.webhooks import ClaimedDelivery, DeliveryState, outcome
from service.settings import Settings
from service.storage.base import WebhookStore
from service.usecases.webhook_http import Sender

log = logging.getLogger("crossings.webhooks")

FINISH_ATTEMPTS = 5  # recording an outcome through a short database outage, before the lease


class DeliveryWorker:
    def __init__(self, store: WebhookStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.sender = Sender(
            timeout_s=settings.webhook_timeout_s, allow_private=settings.webhook_allow_private
        )
        # A lease shorter than a request's worst case would hand the row to a second worker
        # while the first still waits on the receiver (connect, write and read each time out).
        self.lease_s = max(settings.webhook_lease_s, 3 * settings.webhook_timeout_s)
        self._pool = ThreadPoolExecutor(settings.webhook_concurrency, "webhook")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.sender.close()

    def run_once(self) -> int:
        """Send what is due now (one batch); how many deliveries were taken."""
        claimed = self.store.claim_deliveries(
            now=datetime.now(UTC), limit=self.settings.webhook_batch, lease_s=self.lease_s
        )
        list(self._pool.map(self._attempt, claimed))
        return len(claimed)

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set: send what is due, then wait ``webhook_poll_s`` when nothing
        was (a database away is waited for)."""
        while not stop.is_set():
            taken = 0
            try:
                taken = self.run_once()
            except StoreUnavailable as error:
                log.warning("webhook worker: the store is unavailable: %s", error.detail)
            except Exception:  # never let the worker die with the process still up
                log.exception("webhook worker: a batch failed")
            if taken < self.settings.webhook_batch:
                stop.wait(self.settings.webhook_poll_s)

    def _attempt(self, claimed: ClaimedDelivery) -> DeliveryState:
        d = claimed.delivery
        result = self.sender.send(claimed)
        now = datetime.now(UTC)
        done = outcome(
            attempts=d.attempts,
            status=result.status,
            error=result.error,
            retry_after=result.retry_after,
            now=now,
            schedule=self.settings.webhook_retry_schedule_s,
            refused=result.refused,
        )
        for attempt in range(FINISH_ATTEMPTS):
            try:
                self.store.finish_delivery(d.id, attempts=d.attempts, outcome=done, now=now)
                break
            except StoreUnavailable:
                if attempt + 1 == FINISH_ATTEMPTS:
                    # Left leased: sent again after the lease (the receiver drops the repeat).
                    log.warning("webhook %s: outcome not recorded; it will be sent again", d.id)
                    break
                time.sleep(0.2 * 2**attempt)
        log.info(
            "webhook delivery %s to %s: attempt %d, %s (%s)",
            d.id, d.webhook_id, d.attempts, done.state.value, result.status or result.error,
        )  # fmt: skip
        return done.state
