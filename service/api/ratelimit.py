"""Request rate limits: a fixed window per bucket, in process or shared through Redis.

A bucket's window opens with its first request and lasts ``window_s`` seconds; it lets ``limit``
requests through and refuses the rest until it closes, then the next request opens a new one.
Anchoring each window to its bucket's first request (rather than to the clock's minute) spreads
the moments when refused clients come back, instead of releasing them all at once.

The API awaits ``hit`` once per request with a bucket such as ``key:<key_id>`` or
``addr:<client address>``; a refusal becomes a 429 problem with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import OrderedDict
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from service.settings import Settings

log = logging.getLogger("crossings")

KEY_PREFIX = "crossings:rl:"


class RateLimiter(Protocol):
    async def hit(self, bucket: str, *, limit: int, window_s: int) -> float | None:
        """Count one request against ``bucket``; None when allowed, else the seconds until it would be (for Retry-After, >= 1)."""

    async def close(self) -> None:
        """Release connections (called when the app shuts down)."""


def _retry_after(remaining_s: float) -> float:
    """Whole seconds, rounded up so that a client who waits that long is let through, and >= 1."""
    return float(max(1, math.ceil(remaining_s)))


class LocalLimiter:
    """Counts in this process only: each worker process has its own budget.

    Thread-safe (requests run on the event loop and in the thread pool). Memory stays bounded:
    windows are kept in the order they opened, so closed ones are dropped from the front as new
    ones open, and past ``max_buckets`` open windows the oldest is dropped too (its bucket starts
    afresh, which only errs towards letting requests through).
    """

    def __init__(self, *, max_buckets: int = 100_000) -> None:
        self._max_buckets = max_buckets
        self._lock = threading.Lock()
        # bucket -> [window end (monotonic seconds), requests counted in the window]
        self._windows: OrderedDict[str, list[float]] = OrderedDict()

    async def hit(self, bucket: str, *, limit: int, window_s: int) -> float | None:
        if limit <= 0:
            return None
        now = time.monotonic()
        with self._lock:
            window = self._windows.get(bucket)
            if window is None or window[0] <= now:
                if window is not None:
                    del self._windows[bucket]  # re-inserted at the end: the newest window
                self._drop_closed(now)
                window = self._windows[bucket] = [now + window_s, 0]
            window[1] += 1
            if window[1] <= limit:
                return None
            return _retry_after(window[0] - now)

    def _drop_closed(self, now: float) -> None:
        windows = self._windows
        while windows:
            oldest = next(iter(windows.values()))
            if oldest[0] > now and len(windows) < self._max_buckets:
                break
            windows.popitem(last=False)

    async def close(self) -> None:
        pass


# INCR, then open the window on the first hit; refusals read the time left. One atomic round trip,
# and the window's length is kept by Redis's clock, the same one for every worker and host.
# ARGV[1] is the window in ms, ARGV[2] the limit.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
if count <= tonumber(ARGV[2]) then
  return -1
end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  -- a key without a TTL (not written by this script) would refuse forever: start a window
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return left
"""


# Redis counts expiry in whole ms and drops a key only once its time is strictly past, so a key
# can outlive its TTL by about a millisecond (seen here: PTTL 0 at 1.0006 s after PEXPIRE 1000).
# Windows are kept that much shorter and Retry-After that much longer, so that a client who waits
# Retry-After is let through, and Retry-After still never exceeds the window.
_EXPIRY_SLACK_MS = 5


class RedisLimiter:
    """Counts in Redis, so every worker and host sharing it shares one budget per bucket.

    Asynchronous (redis.asyncio): a slow Redis delays only the requests waiting on it, never the
    event loop. Each call is bounded by ``timeout_s``. A circuit breaker fails open:
    ``failures_to_open`` failures in a row (an error, or no answer within ``timeout_s``) open it,
    requests are then let through without touching Redis, and a background probe pings Redis
    every ``cooldown_s`` until it answers; the circuit then closes. (One slow answer on a busy
    machine is not an outage: the first use of a connection loads the script, three round
    trips.) Each outage is logged once, and its end once.
    A rate limiter is a guard against abuse, not a correctness check, so losing it for the length
    of a Redis outage is the usual trade for keeping the API up.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = KEY_PREFIX,
        timeout_s: float = 0.1,
        cooldown_s: float = 1.0,
        failures_to_open: int = 3,
    ) -> None:
        # No retries: a retry would multiply the time a request waits on a Redis that is down.
        # A bounded pool that makes a burst wait (within the timeout) for a free connection,
        # rather than fail: one round trip frees a connection in well under a millisecond.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=64,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._client = aioredis.Redis(connection_pool=pool)
        self._script = self._client.register_script(_HIT_SCRIPT)
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._cooldown_s = cooldown_s
        self._failures_to_open = failures_to_open
        self._failures = 0
        self._probe: asyncio.Task[None] | None = None

    @property
    def is_open(self) -> bool:
        """Whether Redis is being skipped (requests let through uncounted)."""
        return self._probe is not None

    async def hit(self, bucket: str, *, limit: int, window_s: int) -> float | None:
        if limit <= 0 or self.is_open:
            return None
        window_ms = max(1, window_s * 1000 - _EXPIRY_SLACK_MS)
        try:
            async with asyncio.timeout(self._timeout_s):
                left = await self._script(keys=[self._prefix + bucket], args=[window_ms, limit])
        except (RedisError, OSError, TimeoutError) as error:
            self._failures += 1
            if self._failures >= self._failures_to_open:
                self._open(error)
            return None
        self._failures = 0
        left_ms = int(left)
        return None if left_ms < 0 else _retry_after((left_ms + _EXPIRY_SLACK_MS) / 1000)

    def _open(self, error: BaseException) -> None:
        if self._probe is not None:
            return  # requests that were already waiting when it opened: logged once
        log.warning(
            "rate limits are off: Redis is unavailable (%s); requests are let through until it "
            "answers again",
            type(error).__name__ if isinstance(error, TimeoutError) else error,
        )
        self._probe = asyncio.get_running_loop().create_task(self._wait_for_redis())

    async def _wait_for_redis(self) -> None:
        while True:
            await asyncio.sleep(self._cooldown_s)
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._client.ping()
            except (RedisError, OSError, TimeoutError):
                continue
            log.warning("Redis answers again: rate limits are back on")
            self._failures = 0
            self._probe = None
            return

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        await self._client.aclose(close_connection_pool=True)


def make_limiter(settings: Settings) -> RateLimiter:
    """Shared through Redis when ``redis_url`` is set, else counted in this process."""
    if settings.redis_url:
        return RedisLimiter(settings.redis_url)
    return LocalLimiter()
