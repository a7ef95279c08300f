"""The alert store and its outbox, on both stores."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from service.domain.alerts import AlertEvent, AlertQuery, AlertState, alert_id
from service.domain.webhooks import (
    DeliveryState,
    Outcome,
    Webhook,
    WebhookFilter,
    WebhookSecret,
    new_secret,
)
from tests.webhooks.receivers import transition


def hook(url: str = "https://example.org/hook", **filter_: Any) -> Webhook:
    now = datetime.now(UTC)
    return Webhook(
        f"wh_{url[-6:]}_{len(filter_)}_{now.timestamp()}",
        url,
        WebhookFilter(**filter_),
        (WebhookSecret(new_secret(), now),),
        now,
    )


def test_an_opened_alert_is_stored_with_its_figures(store: Any) -> None:
    t = transition(observed=40, expected=3, statistic=9.5)
    [alert] = store.record_alerts([t])
    assert alert.id == alert_id(t.series, t.opened_day)
    assert alert.state is AlertState.OPEN
    assert (alert.figures.observed, alert.figures.expected) == (40, 3)
    assert store.get_alert(alert.id) == alert


def test_the_same_transition_twice_is_one_alert_and_one_delivery(store: Any) -> None:
    store.add_webhook(hook())
    t = transition()
    assert len(store.record_alerts([t])) == 1
    assert store.record_alerts([t]) == []
    [alert] = store.list_alerts(AlertQuery()).alerts
    assert alert.version == 1
    [h] = store.list_webhooks()
    assert len(store.list_deliveries(h.id)) == 1


def test_an_update_and_a_close_are_the_same_episode(store: Any) -> None:
    t = transition()
    store.record_alerts([t])
    later = t.opened_day + timedelta(days=2)
    store.record_alerts([transition(event=AlertEvent.UPDATED, last_day=later, days=3,
                                    observed=120, statistic=14, peak=14)])  # fmt: skip
    store.record_alerts([transition(event=AlertEvent.CLOSED, last_day=later, days=3,
                                    observed=120, statistic=0.5, peak=14,
                                    closed_day=later + timedelta(days=1))])  # fmt: skip
    [alert] = store.list_alerts(AlertQuery()).alerts
    assert alert.state is AlertState.CLOSED
    assert alert.version == 3
    assert alert.figures.peak_statistic == 14
    assert alert.figures.closed_day == later + timedelta(days=1)


def test_a_late_alert_says_when_it_was_raised(store: Any) -> None:
    raised = datetime(2026, 12, 5, 8, tzinfo=UTC)
    [alert] = store.record_alerts([transition(opened_day=date(2026, 11, 20), at=raised)])
    assert alert.raised_at == raised
    assert alert.opened_day == date(2026, 11, 20)


def test_deliveries_go_only_to_matching_enabled_webhooks(store: Any) -> None:
    everything = hook("https://a.example/x1")
    this_border = hook("https://b.example/x2", borders=("CAN-USA",))
    other_border = hook("https://c.example/x3", borders=("MEX-USA",))
    only_closed = hook("https://d.example/x4", event_types=("alert.closed",))
    deleted = hook("https://e.example/x5")
    for h in (everything, this_border, other_border, only_closed, deleted):
        store.add_webhook(h)
    store.disable_webhook(deleted.id, at=datetime.now(UTC), reason="deleted")
    store.record_alerts([transition()])
    counts = {h.id: len(store.list_deliveries(h.id)) for h in store.list_webhooks()}
    assert counts == {everything.id: 1, this_border.id: 1, other_border.id: 0,
                      only_closed.id: 0, deleted.id: 0}  # fmt: skip


def test_alerts_filter_and_page(store: Any) -> None:
    base = datetime(2026, 12, 1, tzinfo=UTC)
    for i in range(5):
        store.record_alerts([transition(segment_id=f"S{i}", at=base + timedelta(hours=i))])
    store.record_alerts([transition(border="MEX-USA", segment_id="M1", at=base)])
    store.record_alerts([transition(segment_id="S0", event=AlertEvent.CLOSED,
                                    closed_day=date(2026, 12, 2), at=base + timedelta(hours=9))])  # fmt: skip
    assert [
        a.series.segment_id for a in store.list_alerts(AlertQuery(border="MEX-USA")).alerts
    ] == ["M1"]
    assert [a.series.segment_id for a in store.list_alerts(AlertQuery(segment_id="S3")).alerts] == [
        "S3"
    ]
    closed = store.list_alerts(AlertQuery(state=AlertState.CLOSED)).alerts
    assert [a.series.segment_id for a in closed] == ["S0"]
    since = store.list_alerts(AlertQuery(since=base + timedelta(hours=3))).alerts
    assert {a.series.segment_id for a in since} == {"S0", "S3", "S4"}
    seen, after = [], None
    while True:
        page = store.list_alerts(AlertQuery(limit=2, after=after))
        seen += [a.series.segment_id for a in page.alerts]
        if page.next_key is None:
            break
        after = page.next_key
    assert seen == ["S0", "S4", "S3", "S2", "S1", "M1"] or seen == [
        "S0",
        "S4",
        "S3",
        "S2",
        "M1",
        "S1",
    ]


def test_a_claimed_delivery_is_not_claimed_again_within_its_lease(store: Any) -> None:
    store.add_webhook(hook())
    store.record_alerts([transition()])
    now = datetime.now(UTC)
    [claimed] = store.claim_deliveries(now=now, limit=10, lease_s=60)
    assert claimed.delivery.attempts == 1
    assert store.claim_deliveries(now=now, limit=10, lease_s=60) == []
    [again] = store.claim_deliveries(now=now + timedelta(seconds=61), limit=10, lease_s=60)
    assert again.delivery.id == claimed.delivery.id and again.delivery.attempts == 2


def test_concurrent_claims_take_each_delivery_once(store: Any) -> None:
    store.add_webhook(hook())
    store.record_alerts([transition(segment_id=f"S{i}") for i in range(30)])
    now = datetime.now(UTC)
    taken: list[str] = []
    lock = threading.Lock()

    def claim() -> None:
        for _ in range(10):
            got = store.claim_deliveries(now=now, limit=3, lease_s=60)
            with lock:
                taken.extend(c.delivery.id for c in got)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 30 == len(set(taken))


def test_a_gone_outcome_disables_the_webhook_and_its_pending_deliveries(store: Any) -> None:
    h = hook()
    store.add_webhook(h)
    store.record_alerts([transition(segment_id="S1"), transition(segment_id="S2")])
    now = datetime.now(UTC)
    first, _ = store.claim_deliveries(now=now, limit=2, lease_s=60)
    gone = Outcome(DeliveryState.GONE, None, 410, "gone")
    assert store.finish_delivery(first.delivery.id, attempts=1, outcome=gone, now=now)
    assert store.get_webhook(h.id).disabled_reason == "gone"
    assert {d.state for d in store.list_deliveries(h.id)} == {DeliveryState.GONE}


def test_an_outcome_of_a_superseded_claim_is_not_recorded(store: Any) -> None:
    store.add_webhook(hook())
    store.record_alerts([transition()])
    now = datetime.now(UTC)
    [first] = store.claim_deliveries(now=now, limit=1, lease_s=1)
    store.claim_deliveries(now=now + timedelta(seconds=2), limit=1, lease_s=60)
    done = Outcome(DeliveryState.DELIVERED, None, 204, None)
    assert not store.finish_delivery(first.delivery.id, attempts=1, outcome=done, now=now)


def test_rotation_keeps_the_old_secret_signing_for_the_overlap(store: Any) -> None:
    h = hook()
    store.add_webhook(h)
    now = datetime.now(UTC)
    new = WebhookSecret(new_secret(), now)
    rotated = store.rotate_webhook_secret(h.id, new, old_expire_at=now + timedelta(hours=1))
    assert rotated.signing_secrets(now) == [new.secret, h.secrets[0].secret]
    assert rotated.signing_secrets(now + timedelta(hours=2)) == [new.secret]


class _Abort(Exception):
    pass


def _in_caller_transaction(store: Any, work: Any) -> None:
    """Run ``work(conn)`` in a transaction of the store's, as ingest would, then fail it."""
    if hasattr(store, "_db"):  # SQLite
        store._db.write(work)
    else:
        store._run("test", work)


def test_alerts_and_deliveries_roll_back_with_the_callers_transaction(store: Any) -> None:
    """Written through the connection-level record_alerts inside another transaction (as ingest
    does), an alert and its deliveries commit or vanish with that transaction."""
    from service.storage.postgis import alerts as pg_alerts
    from service.storage.sqlite import alerts as sqlite_alerts

    h = hook()
    store.add_webhook(h)
    module = sqlite_alerts if hasattr(store, "_db") else pg_alerts

    def fail_after_writing(conn: Any) -> None:
        assert len(module.record_alerts(conn, [transition()])) == 1
        raise _Abort

    with pytest.raises(_Abort):
        _in_caller_transaction(store, fail_after_writing)
    assert store.list_alerts(AlertQuery()).alerts == []
    assert store.list_deliveries(h.id) == []

    _in_caller_transaction(store, lambda conn: module.record_alerts(conn, [transition()]))
    assert len(store.list_alerts(AlertQuery()).alerts) == 1
    assert len(store.list_deliveries(h.id)) == 1
