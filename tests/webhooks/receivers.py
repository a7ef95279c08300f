"""Real HTTP receivers for webhook tests (no mocks): a server in a thread whose answers a test
scripts, and a receiver in a subprocess that a test can kill and start again."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from service.domain.alerts import AlertEvent, AlertFigures, AlertTransition, Measure, SeriesKey

RECEIVER_SCRIPT = Path(__file__).with_name("receiver_process.py")


@dataclass
class Answer:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


class ScriptedReceiver:
    """An HTTP server on 127.0.0.1 answering each POST with the next scripted Answer (then 204);
    every request is kept in ``received``."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.received.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body, time.time())
                    )
                    answer = receiver.answers.pop(0) if receiver.answers else Answer()
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def receiver_process(
    port: int, ledger: Path, secret: str, *, delay_s: float = 0.0
) -> Iterator[subprocess.Popen[bytes]]:
    """receiver_process.py on ``port``: verifies each message and records it in ``ledger``."""
    proc = subprocess.Popen(
        [sys.executable, str(RECEIVER_SCRIPT), str(port), str(ledger), secret, str(delay_s)]
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def transition(
    *,
    event: AlertEvent = AlertEvent.OPENED,
    border: str = "CAN-USA",
    section: str | None = "Quebec",
    segment_id: str | None = "CAN-USA-0001",
    kind: str | None = None,
    measure: Measure = Measure.REPORTS,
    opened_day: date = date(2026, 11, 30),
    last_day: date | None = None,
    days: int = 1,
    observed: float = 40.0,
    expected: float = 3.0,
    statistic: float = 9.5,
    peak: float | None = None,
    closed_day: date | None = None,
    at: datetime | None = None,
) -> AlertTransition:
    """An alert transition with sensible defaults (a segment's reports, all kinds)."""
    return AlertTransition(
        event=event,
        series=SeriesKey(border, section, segment_id, kind, measure),
        opened_day=opened_day,
        figures=AlertFigures(
            last_day or opened_day,
            days,
            observed,
            expected,
            statistic,
            statistic if peak is None else peak,
            closed_day,
        ),
        at=at or datetime.now(UTC),
    )
