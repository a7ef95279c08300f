"""Run the real server (`crossings serve`, uvicorn) as a child process for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(
    database_url: str,
    *,
    workers: int = 1,
    log_to: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    **env: str,
) -> Iterator[str]:
    """Start the server on a free port, wait until it is ready, yield its base URL, stop it.
    With ``log_to``, its output (the access log among it, at
    ``CROSSINGS_LOG_LEVEL=info``) is appended to that file rather than a pipe nobody reads."""
    port = free_port()
    environ = {
        **os.environ,
        "CROSSINGS_DATABASE_URL": database_url,
        "CROSSINGS_LOG_LEVEL": "warning",
        **(extra_env or {}),
        **env,
    }
    command = [
        sys.executable,
        "-m",
        "service.cli",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    log_file = None if log_to is None else log_to.open("ab")
    process = subprocess.Popen(
        command,
        env=environ,
        stdout=subprocess.PIPE if log_file is None else log_file,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else str(log_to)
                raise RuntimeError(f"server exited with {process.returncode}:\n{output}")
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
        if log_file is not None:
            log_file.close()


def live_key(database_url: str, role: str = "admin") -> str:
    """A new key of ``role`` in the store at ``database_url`` (made as `crossings keys create`
    would): the token to send."""
    result = run_cli(database_url, "keys", "create", "--role", role, "--name", "tests", text=True)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return str(result.stdout).strip()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def run_cli(
    database_url: str,
    *args: str,
    stdin: bytes | None = None,
    text: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[Any]:
    """Run `crossings ARGS` against a store, as a user would (``env``: more settings), and return
    what it printed."""
    env = {**os.environ, "CROSSINGS_DATABASE_URL": database_url, **(env or {})}
    command = [sys.executable, "-m", "service.cli", *args]
    if text:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    return subprocess.run(command, env=env, capture_output=True, input=stdin, timeout=300)


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server of ``handler`` on a free local port, for a test's while: its
    ``host:port``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
