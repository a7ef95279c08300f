"""Rate limits: the in-process and the Redis limiter behave alike, Redis shares one budget between
processes, and a Redis outage lets requests through.

Redis tests use CROSSINGS_TEST_REDIS_URL (default redis://127.0.0.1:6379/0), each under a key
prefix of its own that it deletes afterwards: other things may use the same Redis. Without a
reachable Redis they are skipped; .ci/run fails if that happens under CI=true.
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from service.api.ratelimit import LocalLimiter, RateLimiter, RedisLimiter, make_limiter
from service.settings import Settings
from tests.live import free_port, running_server

REDIS_URL = os.environ.get("CROSSINGS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {error}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards (never FLUSHALL)."""
    prefix = f"crossings:rl:test-{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["local", "redis"])
def limiter(request: pytest.FixtureRequest) -> Iterator[RateLimiter]:
    """Each limiter in turn: both must behave the same."""
    if request.param == "local":
        yield LocalLimiter()
        return
    url: str = request.getfixturevalue("redis_url")
    shared = RedisLimiter(url, prefix=request.getfixturevalue("redis_prefix"))
    try:
        yield shared
    finally:
        shared.close()


def test_allows_limit_hits_then_refuses_until_the_window_ends(limiter: RateLimiter) -> None:
    assert [limiter.hit("a", limit=5, window_s=2) for _ in range(5)] == [None] * 5
    retry_after = limiter.hit("a", limit=5, window_s=2)
    assert retry_after is not None
    assert 0 < retry_after <= 2
    assert limiter.hit("a", limit=5, window_s=2) is not None


def test_waiting_retry_after_opens_a_new_window(limiter: RateLimiter) -> None:
    assert limiter.hit("a", limit=2, window_s=1) is None
    assert limiter.hit("a", limit=2, window_s=1) is None
    retry_after = limiter.hit("a", limit=2, window_s=1)
    assert retry_after is not None
    time.sleep(retry_after)
    assert limiter.hit("a", limit=2, window_s=1) is None
    assert limiter.hit("a", limit=2, window_s=1) is None
    assert limiter.hit("a", limit=2, window_s=1) is not None


def test_buckets_are_counted_apart(limiter: RateLimiter) -> None:
    for _ in range(3):
        limiter.hit("addr:192.0.2.1", limit=3, window_s=30)
    assert limiter.hit("addr:192.0.2.1", limit=3, window_s=30) is not None
    assert limiter.hit("addr:192.0.2.2", limit=3, window_s=30) is None
    assert limiter.hit("key:k1", limit=3, window_s=30) is None


def test_concurrent_hits_let_exactly_limit_through(limiter: RateLimiter) -> None:
    def hits(_: int) -> int:
        return sum(limiter.hit("busy", limit=100, window_s=30) is None for _ in range(40))

    with ThreadPoolExecutor(max_workers=8) as pool:
        allowed = sum(pool.map(hits, range(8)))
    assert allowed == 100


def test_a_zero_limit_is_off(limiter: RateLimiter) -> None:
    assert all(limiter.hit("a", limit=0, window_s=1) is None for _ in range(500))


def test_local_limiter_forgets_closed_windows() -> None:
    local = LocalLimiter()
    for n in range(1_000):
        local.hit(f"addr:{n}", limit=5, window_s=1)
    time.sleep(1.05)
    local.hit("addr:late", limit=5, window_s=1)
    assert list(local._windows) == ["addr:late"]


def test_local_limiter_holds_at_most_max_buckets() -> None:
    local = LocalLimiter(max_buckets=10)
    for n in range(1_000):
        local.hit(f"addr:{n}", limit=5, window_s=60)
    assert len(local._windows) == 10


def test_redis_limiters_in_two_processes_share_one_budget(
    redis_url: str, redis_prefix: str
) -> None:
    """Two limiters stand for two worker processes: they draw on one count."""
    first, second = (
        RedisLimiter(redis_url, prefix=redis_prefix),
        RedisLimiter(redis_url, prefix=redis_prefix),
    )
    try:
        results = [lim.hit("addr:192.0.2.9", limit=5, window_s=30) for lim in (first, second) * 4]
    finally:
        first.close()
        second.close()
    assert results[:5] == [None] * 5
    assert all(r is not None for r in results[5:])


def test_redis_windows_expire_by_themselves(redis_url: str, redis_prefix: str) -> None:
    shared = RedisLimiter(redis_url, prefix=redis_prefix)
    client = redis.Redis.from_url(redis_url)
    try:
        shared.hit("a", limit=5, window_s=30)
        assert 0 < client.pttl(f"{redis_prefix}a") <= 30_000
    finally:
        shared.close()
        client.close()


def test_redis_key_without_a_ttl_gets_a_window(redis_url: str, redis_prefix: str) -> None:
    """A count left without a TTL (not by this code) would otherwise refuse the bucket forever."""
    shared = RedisLimiter(redis_url, prefix=redis_prefix)
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(f"{redis_prefix}a", 1_000)
        retry_after = shared.hit("a", limit=5, window_s=2)
        assert retry_after is not None
        assert 0 < retry_after <= 2
        assert 0 < client.pttl(f"{redis_prefix}a") <= 2_000
    finally:
        shared.close()
        client.close()


def test_redis_down_lets_requests_through_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    down = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", cooldown_s=0)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="crossings"):
        results = [down.hit("a", limit=1, window_s=30) for _ in range(20)]
    down.close()
    assert results == [None] * 20
    assert time.monotonic() - started < 5
    assert len([r for r in caplog.records if "Redis is unavailable" in r.message]) == 1


def test_make_limiter_uses_redis_only_when_a_url_is_set(redis_url: str) -> None:
    assert isinstance(make_limiter(Settings()), LocalLimiter)
    shared = make_limiter(Settings(redis_url=redis_url))
    shared.close()
    assert isinstance(shared, RedisLimiter)


def test_two_servers_sharing_redis_share_one_public_budget(redis_url: str, tmp_path: Path) -> None:
    """Two real server processes on one store and one Redis: 10 public calls in all, then 429."""
    env = {
        "CROSSINGS_REDIS_URL": redis_url,
        "CROSSINGS_RATE_LIMIT_PUBLIC": "10",
        "CROSSINGS_RATE_LIMIT_WINDOW_S": "30",
    }
    # Calls come from a loopback address of this test's own, so its bucket is neither the one the
    # readiness polls count against nor one another test run on this Redis may be using.
    source = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"

    def get_segments(base: str) -> httpx.Response:
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(base_url=base, transport=transport, timeout=30) as http:
            return http.get("/v1/segments")

    url = f"sqlite:///{tmp_path / 'crossings.db'}"
    with (
        running_server(url, **env) as first,
        running_server(url, **env) as second,
        ThreadPoolExecutor(max_workers=6) as pool,
    ):
        responses = list(pool.map(get_segments, [first, second] * 12))
    assert [r.status_code for r in responses].count(200) == 10
    refused = [r for r in responses if r.status_code != 200]
    assert {r.status_code for r in refused} == {429}
    for response in refused:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["status"] == 429
        assert 1 <= int(response.headers["retry-after"]) <= 30
