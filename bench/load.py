"""Measuring load in rounds: CPU clocks of each process, wall time, and every HTTP request.

A benchmark encodes its request bodies (or URLs) first, then sends them in rounds through a
``Sender`` (one keep-alive connection, or N concurrent clients) inside ``Phase.round``;
``Phase.summary`` gives the rate overall and per round (median and range), latency percentiles and
CPU per item; ``ratios`` compares two phases run in alternating rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from bench.figures import latency_summary, per_item_us, spread
from bench.harness import PostgresCpu, children_of, cpu_seconds, self_cpu_seconds

JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True, slots=True)
class Sent:
    """One request: its status, latency and response body (and the URL, for a GET)."""

    status: int
    seconds: float
    body: bytes
    url: str = ""


class Probes:
    """CPU clocks read at the start and end of every round."""

    def __init__(self, server_pid: int | None, postgres: PostgresCpu | None) -> None:
        self.server_pid = server_pid
        self.postgres = postgres

    @staticmethod
    def _server_cpu(pid: int) -> float:
        """The server process's CPU and its live children's (uvicorn's workers, if several)."""
        return cpu_seconds(pid) + sum(cpu_seconds(child) for child in children_of(pid))

    def read(self) -> dict[str, float | None]:
        return {
            "server": None if self.server_pid is None else self._server_cpu(self.server_pid),
            "postgres": None if self.postgres is None else self.postgres.seconds(),
            "client": self_cpu_seconds(),
        }


@dataclass
class Phase:
    """Rounds of one phase: wall time, items, CPU used by each process, and every request."""

    name: str
    items_per_round: list[int] = field(default_factory=list)
    seconds_per_round: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # only processes that could be read
    sent: list[Sent] = field(default_factory=list)

    @contextlib.contextmanager
    def round(self, probes: Probes, items: int) -> Iterator[None]:
        before = probes.read()
        start = time.perf_counter()
        yield
        elapsed = time.perf_counter() - start
        after = probes.read()
        self.items_per_round.append(items)
        self.seconds_per_round.append(elapsed)
        for who, value in after.items():
            earlier = before[who]
            if value is not None and earlier is not None:
                self.cpu[who] = self.cpu.get(who, 0.0) + value - earlier

    def summary(self, *, unit: str = "reports", per: str = "report") -> dict[str, Any]:
        items = sum(self.items_per_round)
        seconds = sum(self.seconds_per_round)
        rates = [n / s for n, s in zip(self.items_per_round, self.seconds_per_round, strict=True)]
        out: dict[str, Any] = {
            unit: items,
            "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
            "seconds": round(seconds, 3),
            f"{unit}_per_s": round(items / seconds, 1),
            "rounds": len(rates),
            f"round_{unit}_per_s": spread(rates),
            f"cpu_us_per_{per}": {
                who: per_item_us(self.cpu.get(who), items)
                for who in ("server", "postgres", "client")
            },
        }
        if self.sent:
            statuses = Counter(s.status for s in self.sent)
            out["requests"] = len(self.sent)
            out["latency_ms"] = latency_summary([s.seconds for s in self.sent])
            out["statuses"] = {str(k): v for k, v in sorted(statuses.items())}
            bad = [s for s in self.sent if s.status >= 300]
            out["non_2xx"] = len(bad)
            out["error_samples"] = [
                {"status": s.status, "body": s.body[:500].decode("utf-8", "replace")}
                for s in bad[:3]
            ]
        return out


def ratios(a: Phase, b: Phase) -> dict[str, Any]:
    """Rate of ``a`` over the rate of ``b``: overall, and per pair of rounds (round i of each),
    which lets drift of the machine between the two cancel when their rounds alternate."""
    pairs = [
        (na / sa) / (nb / sb)
        for na, sa, nb, sb in zip(
            a.items_per_round, a.seconds_per_round, b.items_per_round, b.seconds_per_round,
            strict=True,
        )
    ]  # fmt: skip
    overall = (sum(a.items_per_round) / sum(a.seconds_per_round)) / (
        sum(b.items_per_round) / sum(b.seconds_per_round)
    )
    return {"overall": round(overall, 3), "rounds": spread(pairs, digits=3)}


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """``items`` in ``parts`` contiguous, nearly equal runs (no empty ones)."""
    bounds = np.linspace(0, len(items), min(parts, len(items)) + 1).round().astype(int)
    return [list(items[a:b]) for a, b in itertools.pairwise(bounds) if b > a]


def post_each(client: httpx.Client, path: str, bodies: Sequence[bytes]) -> list[Sent]:
    """POST each body in turn on one keep-alive connection."""
    sent = []
    for body in bodies:
        start = time.perf_counter()
        response = client.post(path, content=body, headers=JSON_HEADERS)
        sent.append(Sent(response.status_code, time.perf_counter() - start, response.content))
    return sent


async def post_concurrently(
    client: httpx.AsyncClient, path: str, bodies: Sequence[bytes], *, clients: int
) -> list[Sent]:
    """POST every body from ``clients`` concurrent senders, each taking the next body when free."""
    pending = iter(bodies)
    sent: list[Sent] = []

    async def sender() -> None:
        for body in pending:
            start = time.perf_counter()
            response = await client.post(path, content=body, headers=JSON_HEADERS)
            sent.append(Sent(response.status_code, time.perf_counter() - start, response.content))

    await asyncio.gather(*(sender() for _ in range(clients)))
    return sent


def get_each(client: httpx.Client, urls: Sequence[str]) -> list[Sent]:
    """GET each URL (path and query) in turn on one keep-alive connection."""
    sent = []
    for url in urls:
        start = time.perf_counter()
        response = client.get(url)
        sent.append(Sent(response.status_code, time.perf_counter() - start, response.content, url))
    return sent


async def get_concurrently(
    client: httpx.AsyncClient, urls: Sequence[str], *, clients: int
) -> list[Sent]:
    """GET every URL from ``clients`` concurrent senders, each taking the next URL when free."""
    pending = iter(urls)
    sent: list[Sent] = []

    async def sender() -> None:
        for url in pending:
            start = time.perf_counter()
            response = await client.get(url)
            elapsed = time.perf_counter() - start
            sent.append(Sent(response.status_code, elapsed, response.content, url))

    await asyncio.gather(*(sender() for _ in range(clients)))
    return sent


class Sender:
    """POSTs pre-encoded bodies, or GETs URLs: from one client on one keep-alive connection, or
    from N concurrent clients (asyncio, N connections opened before any clock starts).
    ``headers`` go with every request."""

    def __init__(
        self, base_url: str, *, headers: dict[str, str] | None = None, warm_path: str = "/healthz"
    ) -> None:
        self.base_url = base_url
        self.headers = headers or {}
        self.warm_path = warm_path
        self.client = httpx.Client(base_url=base_url, timeout=120.0, headers=self.headers)
        self.runner = asyncio.Runner()
        self.aclients: dict[int, httpx.AsyncClient] = {}

    def send(self, path: str, bodies: Sequence[bytes], *, clients: int = 1) -> list[Sent]:
        if clients <= 1:
            return post_each(self.client, path, bodies)
        aclient = self._aclient(clients)
        return self.runner.run(post_concurrently(aclient, path, bodies, clients=clients))

    def get(self, urls: Sequence[str], *, clients: int = 1) -> list[Sent]:
        if clients <= 1:
            return get_each(self.client, urls)
        aclient = self._aclient(clients)
        return self.runner.run(get_concurrently(aclient, urls, clients=clients))

    def _aclient(self, clients: int) -> httpx.AsyncClient:
        aclient = self.aclients.get(clients)
        if aclient is None:
            aclient = self.aclients[clients] = self.runner.run(self._open(clients))
        return aclient

    async def _open(self, clients: int) -> httpx.AsyncClient:
        aclient = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=120.0,
            limits=httpx.Limits(max_connections=clients),
            headers=self.headers,
        )
        await asyncio.gather(*(aclient.get(self.warm_path) for _ in range(clients)))
        return aclient

    def close(self) -> None:
        for aclient in self.aclients.values():
            self.runner.run(aclient.aclose())
        self.runner.close()
        self.client.close()


class RawSender:
    """POSTs pre-encoded bodies over N keep-alive HTTP/1.1 connections opened with asyncio
    streams, each response read by its Content-Length (or chunks): a few tens of µs of client
    CPU a request, where httpx took 1-3 ms (bench/ingest.py measured its AsyncClient at 2.3-3 ms
    a request with 16 clients, as much as the server: the load generator was the bottleneck).
    Connections are opened before the clock of a round starts."""

    def __init__(self, base_url: str, *, headers: dict[str, str] | None = None) -> None:
        url = httpx.URL(base_url)
        self.host, self.port = url.host, url.port or 80
        extra = {"content-type": "application/json", **(headers or {})}
        self.head = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
        self.runner = asyncio.Runner()

    def send(self, path: str, bodies: Sequence[bytes], *, clients: int = 1) -> list[Sent]:
        return self.runner.run(self._send(path, bodies, clients))

    async def _send(self, path: str, bodies: Sequence[bytes], clients: int) -> list[Sent]:
        streams = [await asyncio.open_connection(self.host, self.port) for _ in range(clients)]
        head = f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n{self.head}"
        prefix = (head + "content-length: ").encode()
        pending = iter(bodies)
        sent: list[Sent] = []

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for body in pending:
                start = time.perf_counter()
                writer.write(prefix + str(len(body)).encode() + b"\r\n\r\n" + body)
                status = int((await reader.readline()).split()[1])
                length, chunked = 0, False
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"transfer-encoding" and b"chunked" in value.lower():
                        chunked = True
                if chunked:
                    parts = []
                    while size := int((await reader.readline()).strip(), 16):
                        parts.append(await reader.readexactly(size))
                        await reader.readline()
                    await reader.readline()
                    data = b"".join(parts)
                else:
                    data = await reader.readexactly(length)
                sent.append(Sent(status, time.perf_counter() - start, data))

        try:
            await asyncio.gather(*(client(r, w) for r, w in streams))
        finally:
            for _, writer in streams:
                writer.close()
        return sent

    def close(self) -> None:
        self.runner.close()
