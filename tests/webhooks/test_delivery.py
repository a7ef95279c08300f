"""The delivery worker against real HTTP receivers, on both stores: signatures verified by the
standardwebhooks package's own verifier, retries, Retry-After, 410, timeouts, refused addresses,
and an outbox that outlives a database restart and a receiver's outage or death."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import standardwebhooks

from service.domain.access import Caller, Role
from service.domain.webhooks import DeliveryState, Webhook, WebhookFilter, WebhookSecret
from service.settings import Settings
from service.storage import open_store
from service.usecases.deliver_webhooks import DeliveryWorker
from service.usecases.webhooks import create_webhook, rotate_secret
from tests.webhooks.receivers import (
    Answer,
    ScriptedReceiver,
    free_port,
    receiver_process,
    transition,
)

ADMIN = Caller(role=Role.ADMIN, key_id="tests")


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "webhook_allow_private": True,  # the receivers listen on loopback
        "webhook_retry_schedule_s": (0.05, 0.05, 0.05, 0.05),
        "webhook_timeout_s": 1.0,
        "webhook_poll_s": 0.02,
    }
    return Settings(**(values | overrides))


def subscribe(store: Any, settings: Settings, url: str) -> tuple[Webhook, str]:
    return create_webhook(store, {"url": url}, settings=settings, actor=ADMIN)


@contextmanager
def delivery_worker(store: Any, settings: Settings) -> Iterator[DeliveryWorker]:
    """A delivery worker on ``store``, closed on exit."""
    worker = DeliveryWorker(store, settings)
    try:
        yield worker
    finally:
        worker.close()


def wait_for(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def states(store: Any, hook: Webhook) -> list[DeliveryState]:
    return [d.state for d in store.list_deliveries(hook.id)]


def test_the_signature_verifies_with_standardwebhooks(store: Any, alert_store_url: str) -> None:
    settings = settings_for(alert_store_url)
    with ScriptedReceiver() as receiver:
        hook, secret = subscribe(store, settings, receiver.url)
        [alert] = store.record_alerts([transition()])
        with delivery_worker(store, settings) as worker:
            assert worker.run_once() == 1
    [got] = receiver.received
    body = standardwebhooks.Webhook(secret).verify(got.body, got.headers)
    assert body["type"] == "alert.opened"
    assert body["data"]["id"] == str(alert.id)
    assert got.headers["webhook-signature"].startswith("v1,")
    [delivery] = store.list_deliveries(hook.id)
    assert (delivery.state, delivery.id, delivery.last_status) == (
        DeliveryState.DELIVERED, got.headers["webhook-id"], 204,
    )  # fmt: skip


def test_after_rotation_both_secrets_sign(store: Any, alert_store_url: str) -> None:
    settings = settings_for(alert_store_url)
    with ScriptedReceiver() as receiver:
        hook, old = subscribe(store, settings, receiver.url)
        _, new = rotate_secret(store, hook.id, settings=settings, actor=ADMIN)
        store.record_alerts([transition()])
        with delivery_worker(store, settings) as worker:
            worker.run_once()
    [got] = receiver.received
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        standardwebhooks.Webhook(secret).verify(got.body, got.headers)


def test_a_failed_attempt_is_retried_with_the_same_id(store: Any, alert_store_url: str) -> None:
    settings = settings_for(alert_store_url)
    with ScriptedReceiver() as receiver:
        receiver.answers = [Answer(500), Answer(502)]
        hook, _ = subscribe(store, settings, receiver.url)
        store.record_alerts([transition()])
        with delivery_worker(store, settings) as worker:
            wait_for(lambda: worker.run_once() >= 0 and states(store, hook) == ["delivered"])
    assert len(receiver.received) == 3
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    [delivery] = store.list_deliveries(hook.id)
    assert delivery.attempts == 3


def test_retry_after_is_honoured(store: Any, alert_store_url: str) -> None:
    settings = settings_for(alert_store_url)
    with ScriptedReceiver() as receiver:
        receiver.answers = [Answer(503, {"Retry-After": "2"})]
        hook, _ = subscribe(store, settings, receiver.url)
        store.record_alerts([transition()])
        with delivery_worker(store, settings) as worker:
            worker.run_once()
            [pending] = store.list_deliveries(hook.id)
            wait = pending.next_attempt_at - pending.updated_at
            assert timedelta(seconds=1.9) < wait <= timedelta(seconds=2.1)
            assert worker.run_once() == 0  # not due yet, though the schedule said 0.05 s
            wait_for(lambda: worker.run_once() >= 0 and states(store, hook) == ["delivered"])
    first, second = receiver.received
    assert second.at - first.at >= 1.9


def test_410_stops_and_disables_the_webhook(store: Any, alert_store_url: str) -> None:
    settings = settings_for(alert_store_url)
    with ScriptedReceiver() as receiver:
        receiver.answers = [Answer(410)]
        hook, _ = subscribe(store, settings, receiver.url)
        store.record_alerts([transition()])
        with delivery_worker(store, settings) as worker:
            worker.run_once()
            store.record_alerts([transition(segment_id="another")])
            time.sleep(0.1)
            assert worker.run_once() == 0
    assert len(receiver.received) == 1
    assert store.get_webhook(hook.id).disabled_reason == "gone"
    assert states(store, hook) == ["gone"]


def test_a_slow_receiver_times_out_and_is_retried(store: Any, alert_store_url: str) -> None:
    settings = settings_for(alert_store_url, webhook_timeout_s=0.3)
    with ScriptedReceiver() as receiver:
        receiver.answers = [Answer(204, delay_s=1.5)]
        hook, _ = subscribe(store, settings, receiver.url)
        store.record_alerts([transition()])
        with delivery_worker(store, settings) as worker:
            worker.run_once()
            [first] = store.list_deliveries(hook.id)
            assert first.state is DeliveryState.PENDING
            assert "timed out" in (first.last_error or "")
            wait_for(lambda: worker.run_once() >= 0 and states(store, hook) == ["delivered"])


def test_the_schedule_running_out_fails_the_delivery(store: Any, alert_store_url: str) -> None:
    settings = settings_for(alert_store_url, webhook_retry_schedule_s=(0.05,))
    with ScriptedReceiver() as receiver:
        receiver.answers = [Answer(500)] * 5
        hook, _ = subscribe(store, settings, receiver.url)
        store.record_alerts([transition()])
        with delivery_worker(store, settings) as worker:
            wait_for(lambda: worker.run_once() >= 0 and states(store, hook) == ["failed"])
    assert len(receiver.received) == 2


def test_a_private_address_is_refused_when_sending(store: Any, alert_store_url: str) -> None:
    """A subscription to a loopback address (made while it was allowed, or through the store)
    is not called once private addresses are not allowed."""
    settings = settings_for(alert_store_url, webhook_allow_private=False)
    with ScriptedReceiver() as receiver:
        now = datetime.now(UTC)
        hook = Webhook("wh_private", receiver.url, WebhookFilter(),
                       (WebhookSecret("whsec_" + "A" * 43 + "=", now),), now)  # fmt: skip
        store.add_webhook(hook)
        store.record_alerts([transition()])
        with delivery_worker(store, settings) as worker:
            worker.run_once()
    assert receiver.received == []
    [delivery] = store.list_deliveries(hook.id)
    assert delivery.state is DeliveryState.FAILED
    assert "loopback" in (delivery.last_error or "")


def _restart_database(store: Any, url: str) -> Any:
    """PostGIS: every connection to the database is terminated (the store's pool holds dead
    ones); SQLite: the store is closed and the file opened again."""
    if url.startswith("sqlite"):
        store.close()
        return open_store(Settings(database_url=url))
    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
    return store


def test_the_outbox_survives_a_database_restart(store: Any, alert_store_url: str) -> None:
    settings = settings_for(alert_store_url)
    with ScriptedReceiver() as receiver:
        hook, secret = subscribe(store, settings, receiver.url)
        store.record_alerts([transition(segment_id=f"S{i}") for i in range(3)])
        store.list_webhooks()  # the pool now holds a connection that the restart kills
        reopened = _restart_database(store, alert_store_url)
        worker = DeliveryWorker(reopened, settings)
        try:
            wait_for(lambda: worker.run_once() >= 0 and states(reopened, hook) == ["delivered"] * 3)
        finally:
            worker.close()
            if reopened is not store:
                reopened.close()
    for got in receiver.received:
        standardwebhooks.Webhook(secret).verify(got.body, got.headers)


def test_the_outbox_outlives_a_receiver_outage(
    store: Any, alert_store_url: str, tmp_path: Path
) -> None:
    settings = settings_for(alert_store_url, webhook_retry_schedule_s=(0.2,) * 50)
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    hook, secret = subscribe(store, settings, url)
    store.record_alerts([transition(segment_id=f"S{i}") for i in range(3)])
    with delivery_worker(store, settings) as worker:
        worker.run_once()  # nobody listens: refused, retried later
        assert all(d.attempts == 1 and d.state is DeliveryState.PENDING
                   for d in store.list_deliveries(hook.id))  # fmt: skip
        ledger = tmp_path / "ledger.db"
        with receiver_process(port, ledger, secret):
            wait_for(lambda: worker.run_once() >= 0 and states(store, hook) == ["delivered"] * 3)
    assert len(_seen(ledger)) == 3


def _seen(ledger: Path) -> list[str]:
    with sqlite3.connect(ledger) as conn:
        rows = conn.execute("SELECT id FROM seen").fetchall()
    conn.close()
    return [r[0] for r in rows]


def _receipts(ledger: Path) -> int:
    if not ledger.exists():
        return 0
    with sqlite3.connect(ledger) as conn:
        try:
            (n,) = conn.execute("SELECT count(*) FROM receipts").fetchone()
        except sqlite3.OperationalError:
            n = 0
    conn.close()
    return int(n)


def test_a_receiver_killed_mid_delivery_gets_every_alert_once(
    store: Any, alert_store_url: str, tmp_path: Path
) -> None:
    """The receiver records each message, then takes 0.3 s to answer; it is killed after a few
    and started again. Every alert arrives; after its own de-duplication by webhook-id, each
    once."""
    settings = settings_for(
        alert_store_url, webhook_retry_schedule_s=(0.2,) * 50, webhook_concurrency=3
    )
    port = free_port()
    ledger = tmp_path / "ledger.db"
    hook, secret = subscribe(store, settings, f"http://127.0.0.1:{port}/hook")
    store.record_alerts([transition(segment_id=f"S{i}") for i in range(20)])
    expected = {d.id for d in store.list_deliveries(hook.id)}
    worker = DeliveryWorker(store, settings)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    try:
        with receiver_process(port, ledger, secret, delay_s=0.3) as proc:
            thread.start()
            wait_for(lambda: _receipts(ledger) >= 4)
            proc.kill()  # mid-delivery: some received, not yet acknowledged
        time.sleep(0.5)
        with receiver_process(port, ledger, secret, delay_s=0.05):
            wait_for(lambda: states(store, hook) == ["delivered"] * 20, timeout_s=60)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        worker.close()
    seen = _seen(ledger)
    assert sorted(seen) == sorted(expected)
    assert _receipts(ledger) >= len(expected)


def test_the_server_sends_deliveries_in_process(store: Any, alert_store_url: str) -> None:
    import asyncio

    from service.app import create_app
    from service.usecases.segments import ensure_segments

    settings = settings_for(alert_store_url, release_check_s=0)

    async def serve_until_delivered(hook: Webhook) -> None:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            deadline = time.monotonic() + 60
            while states(store, hook) != ["delivered"]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)

    # The border first: a server loading it into an empty store replays the surge series and
    # closes alerts that no reports hold up (as this made-up one), a second delivery.
    ensure_segments(store, None)
    with ScriptedReceiver() as receiver:
        hook, _ = subscribe(store, settings, receiver.url)
        store.record_alerts([transition()])
        asyncio.run(serve_until_delivered(hook))
    assert len(receiver.received) == 1


def test_crossings_worker_delivers_and_stops_on_sigterm(
    store: Any, alert_store_url: str, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys

    settings = settings_for(alert_store_url)
    with ScriptedReceiver() as receiver:
        hook, _ = subscribe(store, settings, receiver.url)
        store.record_alerts([transition()])
        env = os.environ | {
            "CROSSINGS_DATABASE_URL": alert_store_url,
            "CROSSINGS_WEBHOOK_ALLOW_PRIVATE": "true",
            "CROSSINGS_WEBHOOK_POLL_S": "0.05",
        }
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=env)
        try:
            wait_for(lambda: states(store, hook) == ["delivered"])
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
    assert len(receiver.received) == 1


def test_two_workers_on_two_stores_send_each_delivery_once(
    store: Any, alert_store_url: str
) -> None:
    """Two workers, each with its own store (its own connections, as two processes would
    have), share the outbox: nothing is sent twice when nothing fails."""
    settings = settings_for(alert_store_url, webhook_batch=3, webhook_concurrency=2)
    second_store = open_store(Settings(database_url=alert_store_url))
    with ScriptedReceiver() as receiver:
        receiver.answers = [Answer(204, delay_s=0.02)] * 30
        hook, _ = subscribe(store, settings, receiver.url)
        store.record_alerts([transition(segment_id=f"S{i}") for i in range(30)])
        workers = [DeliveryWorker(store, settings), DeliveryWorker(second_store, settings)]
        stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(stop,)) for w in workers]
        try:
            for t in threads:
                t.start()
            wait_for(lambda: states(store, hook) == ["delivered"] * 30)
        finally:
            stop.set()
            for t in threads:
                if t.is_alive():
                    t.join()
            for w in workers:
                w.close()
            second_store.close()
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == 30 == len(set(ids))


def test_a_pinned_request_goes_to_the_checked_address() -> None:
    from urllib.parse import urlsplit

    from service.usecases.webhook_http import _pinned

    assert _pinned(urlsplit("https://hooks.example/a?b=1"), "93.184.215.14") == (
        "https://93.184.215.14/a?b=1"
    )
    assert _pinned(urlsplit("http://hooks.example:8080"), "2606:4700::1") == (
        "http://[2606:4700::1]:8080/"
    )
