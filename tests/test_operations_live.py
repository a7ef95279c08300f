"""Issue #18 against the real server process (`crossings serve`, uvicorn) over sockets: start-up
with the database away, losing it and getting it back, configuration errors, the drain on
SIGTERM, X-Forwarded-For from loopback, JSON logs without secrets, and /metrics summed over
two workers.

The database is reached through a small TCP proxy that the test starts and stops: the machine's
PostgreSQL itself is never stopped (other work uses it)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.factories import report_body
from tests.live import auth, free_port, live_key


class ThreadedProxy:
    """Forwards ``port`` on 127.0.0.1 to ``target``; ``stop`` refuses new connections and cuts
    open ones (a database that went away), ``start`` brings it back on the same port."""

    def __init__(self, target: tuple[str, int], port: int) -> None:
        self.target = target
        self.port = port
        self._listener: socket.socket | None = None
        self._links: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            links, self._links = self._links, set()
        for link in links:
            with contextlib.suppress(OSError):
                link.shutdown(socket.SHUT_RDWR)
            link.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._links |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def serve(
    database_url: str, log: Path, *, workers: int = 1, env: Mapping[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`crossings serve` on a free port, its output to ``log``; nothing waited for."""
    port = free_port()
    environ = {**os.environ, "CROSSINGS_DATABASE_URL": database_url, **(env or {})}
    command = [sys.executable, "-m", "service.cli", "serve", "--port", str(port),
               "--workers", str(workers)]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=environ, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # no drain: the test is over
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for(check: Callable[[], bool], *, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if check():
                return
        time.sleep(0.2)
    raise AssertionError(f"not within {within_s} s: {what}")


def status(base: str, path: str, **kwargs: Any) -> int:
    with httpx.Client(base_url=base, timeout=10) as http:
        return http.get(path, **kwargs).status_code


def steadily_ready(base: str) -> bool:
    """Ten /readyz in a row answer 200 (on new connections: every worker is asked)."""
    return all(status(base, "/readyz", headers={"Connection": "close"}) == 200 for _ in range(10))


# --- Starts and heals by itself ----------------------------------------------------------------


@pytest.mark.postgis
def test_serve_waits_for_an_absent_database_and_heals_when_it_is_lost(
    postgis_url: str, tmp_path: Path
) -> None:
    parts = urlsplit(postgis_url)
    proxy = ThreadedProxy((parts.hostname or "127.0.0.1", parts.port or 5432), free_port())
    url = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    key = live_key(postgis_url)
    env = {"CROSSINGS_DB_RETRY_MAX_S": "1", "CROSSINGS_LOG_LEVEL": "info"}
    with serve(url, tmp_path / "server.log", workers=2, env=env) as (process, base):
        # Nothing listens where the database should be: the server starts anyway.
        wait_for(lambda: status(base, "/healthz") == 200, within_s=60, what="/healthz answers")
        with httpx.Client(base_url=base, timeout=10) as http:
            waiting = http.get("/readyz")
        assert waiting.status_code == 503
        assert "waiting for the database" in waiting.json()["detail"], waiting.json()["detail"]
        time.sleep(8)  # longer than the old start-up ever waited (3 s, then exit)
        assert process.poll() is None
        assert status(base, "/healthz") == 200
        proxy.start()
        try:
            wait_for(lambda: steadily_ready(base), within_s=30, what="ready once it answers")
            # The kernel may hand every new connection to the worker that became ready first:
            # each worker says so once in the log when it is ready.
            log = tmp_path / "server.log"
            wait_for(
                lambda: log.read_text().count("ready: the store answers") >= 2,
                within_s=30,
                what="both workers ready",
            )
            with httpx.Client(base_url=base, timeout=10, headers=auth(key)) as http:
                assert http.post("/v1/reports", json=report_body()).status_code == 201
            proxy.stop()  # the database is lost while serving
            wait_for(lambda: status(base, "/readyz") == 503, within_s=30, what="503 when lost")
            assert status(base, "/healthz") == 200
            proxy.start()
            wait_for(lambda: steadily_ready(base), within_s=30, what="ready once it is back")
            with httpx.Client(base_url=base, timeout=10, headers=auth(key)) as http:
                assert http.post("/v1/reports", json=report_body()).status_code == 201
            assert process.poll() is None
        finally:
            proxy.stop()
    output = (tmp_path / "server.log").read_text()
    assert "Application startup failed" not in output


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CROSSINGS_TRUSTED_PROXIES": "10.0.0.0/8, not-an-address"}, "CROSSINGS_TRUSTED_PROXIES"),
        ({"CROSSINGS_DATABASE_URL": "mysql://someone@127.0.0.1/db"}, "CROSSINGS_DATABASE_URL"),
        ({"CROSSINGS_LOG_FORMAT": "yaml"}, "CROSSINGS_LOG_FORMAT"),
    ],
)
def test_serve_exits_on_a_configuration_error_saying_which(
    env: dict[str, str], named: str, tmp_path: Path
) -> None:
    url = env.pop("CROSSINGS_DATABASE_URL", f"sqlite:///{tmp_path / 'c.db'}")
    with serve(url, tmp_path / "server.log", env=env) as (process, _):
        assert process.wait(timeout=60) == 2
    assert named in (tmp_path / "server.log").read_text()


# --- Drain on SIGTERM ---------------------------------------------------------------------------


def test_sigterm_drains_without_resetting_requests_sent_meanwhile(
    fresh_url: str, tmp_path: Path
) -> None:
    drain_s = 3.0
    results: list[tuple[float, str]] = []  # (when sent, outcome)
    readiness: list[tuple[float, int]] = []
    stop = threading.Event()

    def load(base: str) -> None:
        with httpx.Client(base_url=base, timeout=10) as http:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    outcome = str(http.get("/ogc/conformance").status_code)
                except httpx.HTTPError as error:
                    outcome = type(error).__name__
                results.append((sent, outcome))

    def probe(base: str) -> None:
        with httpx.Client(base_url=base, timeout=10) as http:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    readiness.append((time.monotonic(), http.get("/readyz").status_code))
                time.sleep(0.05)

    env = {"CROSSINGS_DRAIN_S": str(drain_s), "CROSSINGS_RATE_LIMIT_PUBLIC": "0"}
    with serve(fresh_url, tmp_path / "server.log", env=env) as (process, base):
        wait_for(lambda: status(base, "/readyz") == 200, within_s=60, what="ready")
        threads = [threading.Thread(target=load, args=(base,)) for _ in range(4)]
        threads.append(threading.Thread(target=probe, args=(base,)))
        for t in threads:
            t.start()
        time.sleep(1.0)
        sigterm_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        time.sleep(drain_s + 1.5)
        stop.set()
        for t in threads:
            t.join(timeout=20)
        code = process.wait(timeout=30)
    during = [o for sent, o in results if sigterm_at <= sent < sigterm_at + drain_s]
    assert len(during) > 20
    failed = [(round(sent - sigterm_at, 3), o) for sent, o in results if o != "200"]
    assert set(during) == {"200"}, failed[:10]
    # After the period the server stops: new connections are refused (ConnectError: nothing was
    # sent); one that reaches the socket the instant it closes may be reset.
    assert "ConnectError" in {o for sent, o in results if sent >= sigterm_at + drain_s}
    not_ready = [s for at, s in readiness if sigterm_at + 0.3 <= at < sigterm_at + drain_s]
    assert not_ready and set(not_ready) == {503}
    assert code in (0, -signal.SIGTERM)
    assert "draining" in (tmp_path / "server.log").read_text()


# --- Client addresses, logs and metrics ---------------------------------------------------------


def test_a_rotating_forwarded_for_from_loopback_no_longer_escapes_the_limit(
    fresh_url: str, tmp_path: Path
) -> None:
    """Issue #13: uvicorn believed X-Forwarded-For from 127.0.0.1; 3,000 of 3,000 got through."""
    env = {"CROSSINGS_RATE_LIMIT_PUBLIC": "20"}  # counted in this server's process alone
    with serve(fresh_url, tmp_path / "server.log", env=env) as (_, base):
        wait_for(lambda: status(base, "/readyz") == 200, within_s=60, what="ready")
        with httpx.Client(base_url=base, timeout=10) as http:  # from 127.0.0.1
            codes = [
                http.get("/ogc/conformance", headers={"X-Forwarded-For": f"10.1.{n // 200}.{n % 200}"}).status_code
                for n in range(60)
            ]  # fmt: skip
    assert codes.count(200) == 20
    assert codes.count(429) == 40


def test_logs_are_json_lines_without_keys_notes_positions_or_queries(
    fresh_url: str, tmp_path: Path
) -> None:
    key = live_key(fresh_url, "admin")
    note = "met them at the old mill, 3 children"
    body = report_body(notes=note, lon=-73.4617321, lat=45.0123456, device_id="device-xyz-123")
    log = tmp_path / "server.log"
    env = {"CROSSINGS_LOG_FORMAT": "json", "CROSSINGS_LOG_LEVEL": "info"}
    with serve(fresh_url, log, env=env) as (_, base):
        wait_for(lambda: status(base, "/readyz") == 200, within_s=60, what="ready")
        with httpx.Client(base_url=base, timeout=10, headers=auth(key)) as http:
            created = http.post("/v1/reports", json=body, headers={"X-Request-ID": "trace-1"})
            assert created.status_code == 201
            http.get("/v1/reports", params={"bbox": "-73.47,45.01,-73.45,45.02"})
            http.get("/v1/tiles/14/4848/5889.mvt")
            http.get("/v1/reports", params={"api_key": key})  # a key in a query string
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is JSON, uvicorn's too
    assert any("Started server process" in r["message"] for r in records)
    access = [r for r in records if r["logger"] == "crossings.access"]
    post = next(r for r in access if r["request_id"] == "trace-1")
    assert post["method"] == "POST"
    assert post["route"] == "/v1/reports"
    assert post["status"] == 201
    assert post["role"] == "admin"
    assert post["duration_ms"] > 0
    assert {r["route"] for r in access} >= {"/v1/reports", "/v1/tiles/{z}/{x}/{y}.mvt"}
    text = log.read_text()
    secret = key.split("_", 2)[2]  # crs_<id>_<secret>; the secret may hold "_"
    for leak in (key, secret, note, "device-xyz-123", "73.46", "45.01", "bbox", "4848"):
        assert leak not in text, leak


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{"):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("} ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_are_summed_over_two_workers(fresh_url: str, tmp_path: Path) -> None:
    env = {"CROSSINGS_METRICS_ALLOW": "127.0.0.0/8", "CROSSINGS_RATE_LIMIT_PUBLIC": "0"}
    with serve(fresh_url, tmp_path / "server.log", workers=2, env=env) as (_, base):
        wait_for(lambda: steadily_ready(base), within_s=90, what="both workers ready")
        for _ in range(40):  # a new connection each: the two workers share them
            assert status(base, "/ogc/conformance", headers={"Connection": "close"}) == 200
        scrapes = []
        for _ in range(6):
            with httpx.Client(base_url=base, timeout=10) as http:
                scrapes.append(http.get("/metrics", headers={"Connection": "close"}).text)
    counts = [
        _sample(s, "crossings_http_requests_total", route="/ogc/conformance", status="200")
        for s in scrapes
    ]
    assert counts == [40.0] * 6
