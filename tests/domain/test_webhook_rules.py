"""The delivery rules as properties: the retry schedule and its jitter, Retry-After, the outcome
of an attempt, which addresses are refused, and which alerts a filter lets through."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.alerts import AlertEvent, Measure, alert_id
from service.domain.errors import InvalidInput
from service.domain.webhooks import (
    JITTER,
    MAX_RETRY_AFTER_S,
    STANDARD_SCHEDULE_S,
    DeliveryState,
    WebhookFilter,
    outcome,
    parse_filter,
    parse_url,
    refused_address,
    retry_after_s,
    retry_delay_s,
)
from tests.webhooks.receivers import transition

NOW = datetime(2026, 12, 7, 5, tzinfo=UTC)


@given(st.integers(1, len(STANDARD_SCHEDULE_S)), st.integers(0, 2**32))
def test_every_wait_is_within_the_jitter_of_the_schedule(attempts: int, seed: int) -> None:
    delay = retry_delay_s(attempts, STANDARD_SCHEDULE_S, rng=random.Random(seed))
    base = STANDARD_SCHEDULE_S[attempts - 1]
    assert delay is not None
    assert base * (1 - JITTER) <= delay <= base * (1 + JITTER)


def test_the_standard_schedule_makes_eight_attempts_over_about_27_hours() -> None:
    assert len(STANDARD_SCHEDULE_S) + 1 == 8
    assert sum(STANDARD_SCHEDULE_S) == 5 + 5 * 60 + 30 * 60 + 2 * 3600 + 5 * 3600 + 20 * 3600
    assert retry_delay_s(len(STANDARD_SCHEDULE_S) + 1, STANDARD_SCHEDULE_S) is None


@given(st.integers(200, 299), st.integers(1, 8))
def test_2xx_is_delivered_whatever_the_attempt(status: int, attempts: int) -> None:
    result = outcome(attempts=attempts, status=status, error=None, retry_after=None, now=NOW,
                     schedule=STANDARD_SCHEDULE_S)  # fmt: skip
    assert result.state is DeliveryState.DELIVERED


@given(st.integers(1, 8))
def test_410_is_gone_on_any_attempt(attempts: int) -> None:
    result = outcome(attempts=attempts, status=410, error=None, retry_after=None, now=NOW,
                     schedule=STANDARD_SCHEDULE_S)  # fmt: skip
    assert result.state is DeliveryState.GONE


@given(
    st.one_of(st.none(), st.integers(300, 599).filter(lambda s: s != 410)),
    st.integers(1, len(STANDARD_SCHEDULE_S)),
    st.integers(0, 200_000),
)
def test_a_failure_waits_at_least_the_jittered_schedule_and_any_retry_after(
    status: int | None, attempts: int, asked: int
) -> None:
    result = outcome(attempts=attempts, status=status, error="x", retry_after=str(asked),
                     now=NOW, schedule=STANDARD_SCHEDULE_S)  # fmt: skip
    assert result.state is DeliveryState.PENDING and result.next_attempt_at is not None
    wait = (result.next_attempt_at - NOW).total_seconds()
    assert wait >= STANDARD_SCHEDULE_S[attempts - 1] * (1 - JITTER) - 1e-6
    assert wait >= min(asked, MAX_RETRY_AFTER_S) - 1e-6


def test_a_failure_after_the_last_attempt_fails() -> None:
    result = outcome(attempts=len(STANDARD_SCHEDULE_S) + 1, status=500, error=None,
                     retry_after="5", now=NOW, schedule=STANDARD_SCHEDULE_S)  # fmt: skip
    assert result.state is DeliveryState.FAILED


def test_retry_after_as_an_http_date() -> None:
    header = format_datetime(NOW + timedelta(seconds=120), usegmt=True)
    assert retry_after_s(header, NOW) == 120
    assert retry_after_s("soon", NOW) is None


NON_PUBLIC = [
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
    "100.64.0.0/10", "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "::1/128", "fc00::/7",
    "fe80::/10", "ff00::/8",
]  # fmt: skip


@pytest.mark.parametrize("network", NON_PUBLIC)
@given(data=st.data())
def test_every_non_public_address_is_refused(network: str, data: st.DataObject) -> None:
    net = ipaddress.ip_network(network)
    address = net[data.draw(st.integers(0, net.num_addresses - 1))]
    assert refused_address(str(address)) is not None
    if address.version == 4:  # and in IPv6 clothing
        assert refused_address(f"::ffff:{address}") is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_not_refused(address: str) -> None:
    assert refused_address(address) is None


@pytest.mark.parametrize("url", ["gopher://x/", "https://", "https://u:p@h/", "https://h:99999/",
                                 "https://h/#frag", 42])  # fmt: skip
def test_bad_urls_are_refused(url: object) -> None:
    with pytest.raises(InvalidInput):
        parse_url(url)


segments = st.sampled_from(["S1", "S2", None])
borders = st.sampled_from(["CAN-USA", "MEX-USA"])
events = st.sampled_from(list(AlertEvent))


@given(
    borders,
    segments,
    events,
    st.lists(borders, max_size=2),
    st.lists(segments.filter(bool), max_size=2),
)
def test_a_filter_lets_through_exactly_what_each_field_allows(
    border: str, segment: str | None, event: AlertEvent, want_borders: list[str],
    want_segments: list[str],
) -> None:  # fmt: skip
    flt = WebhookFilter(borders=tuple(want_borders) or None,
                        segment_ids=tuple(want_segments) or None)  # fmt: skip
    t = transition(border=border, segment_id=segment, event=event)
    expected = (not want_borders or border in want_borders) and (
        not want_segments or segment in want_segments
    )
    assert flt.matches(t) == expected


def test_an_empty_filter_is_everything() -> None:
    assert parse_filter(None) == WebhookFilter() == parse_filter({})


@given(borders, segments, st.sampled_from(list(Measure)), st.dates(max_value=date(9000, 1, 1)))
def test_an_alert_id_is_the_same_for_the_same_episode_only(
    border: str, segment: str | None, measure: Measure, day: date
) -> None:
    a = transition(border=border, segment_id=segment, measure=measure, opened_day=day)
    b = transition(border=border, segment_id=segment, measure=measure, opened_day=day)
    assert alert_id(a.series, a.opened_day) == alert_id(b.series, b.opened_day)
    other = transition(border=border, segment_id=segment, measure=measure,
                       opened_day=a.opened_day + timedelta(days=1))  # fmt: skip
    assert alert_id(other.series, other.opened_day) != alert_id(a.series, a.opened_day)
