"""What every benchmark runs on: a throwaway PostGIS database, a real server process (crossings or
TiPG) pinned to a core, CPU accounting from /proc, and the notes that say how fair a run was.

Nothing here imports the service's web or storage layers: a benchmark talks to the service the way
a client does (over HTTP), so the service code it measures is exactly what runs in production.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.figures import machine_facts, write_results
from bench.synthetic import REPO

CROSSINGS = Path(sys.executable).with_name("crossings")  # the venv's console script
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


# --- processes, cores and CPU time -----------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a whole process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if int(raw[raw.rindex(b")") + 2 :].split()[1]) == pid:
            found.append(int(entry.name))
    return found


# PostgreSQL's shared helper processes: they work for every database, ours included.
_PG_HELPERS = ("checkpointer", "background writer", "walwriter", "autovacuum", "archiver")


class PostgresCpu:
    """CPU time of the PostgreSQL backends connected to one database, plus the cluster's shared
    helpers (WAL writer, checkpointer, background writer).

    Processes are told apart by the title PostgreSQL gives them (``postgres: 15/main: user db
    host(port) state``). Backends that exit between two readings take their time with them; the
    server's pooled connections and the benchmark's own live through a whole phase, so little is
    lost. The helpers also work for other databases on this cluster, if anything else is busy.
    """

    def __init__(self, data_directory: str, database: str) -> None:
        self.database = database
        try:
            self.postmaster: int | None = int(
                Path(data_directory, "postmaster.pid").read_text().split()[0]
            )
        except (OSError, ValueError, IndexError):
            self.postmaster = None  # not local or not readable: report nothing rather than guess

    @classmethod
    def of_database(cls, url: str) -> PostgresCpu:
        """The accountant of the database at ``url`` (a service or libpq URL)."""
        import psycopg

        with psycopg.connect(libpq_url(url)) as conn:
            data_directory = pg_settings(conn, ["data_directory"])["data_directory"]
            return cls(data_directory, conn.info.dbname)

    @staticmethod
    def _title(pid: int) -> str:
        """What follows ``postgres: 15/main: `` in a process title ("" if it is gone)."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""
        return title.split(": ", 2)[-1]

    def _is_ours(self, title: str) -> bool:
        words = title.split()
        return len(words) >= 2 and words[1] == self.database

    def _counts(self, pid: int) -> bool:
        title = self._title(pid)
        return self._is_ours(title) or any(title.startswith(h) for h in _PG_HELPERS)

    def backends(self) -> list[int]:
        """The pids of the backends connected to our database (not the shared helpers)."""
        if self.postmaster is None:
            return []
        return [pid for pid in children_of(self.postmaster) if self._is_ours(self._title(pid))]

    def pin_backends(self, cores: set[int] | None) -> int:
        """Pin the backends connected to our database to ``cores`` (needs root or the postgres
        user); return how many were pinned. Backends started later (a pool growing, parallel
        workers) are not: call again before each measured round."""
        if not cores:
            return 0
        pinned = 0
        for pid in self.backends():
            with contextlib.suppress(OSError):
                pin_process(pid, cores)
                pinned += 1
        return pinned

    def seconds(self) -> float | None:
        if self.postmaster is None:
            return None
        total = 0.0
        for pid in children_of(self.postmaster):
            if self._counts(pid):
                with contextlib.suppress(OSError):
                    total += cpu_seconds(pid)
        return total


def pin_process(pid: int, cores: set[int]) -> None:
    """Pin every existing thread of ``pid`` (sched_setaffinity on a pid moves one thread only)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task), cores)


def core_plan() -> tuple[set[int] | None, set[int] | None, str]:
    """(client cores, server cores, a note): the first two allowed cores, or no pinning."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None, f"not pinned: only {len(allowed)} core(s) available"
    client, server = {allowed[0]}, {allowed[1]}
    note = (
        f"load generator pinned to core {allowed[0]}, server to core {allowed[1]}; PostgreSQL is "
        "not pinned (it runs on either core, competing with both)"
    )
    return client, server, note


def pin_for_database(*, no_pin: bool) -> tuple[set[int] | None, set[int] | None, str]:
    """core_plan() for a benchmark that also pins the PostgreSQL backends of its database to the
    server's core (PostgresCpu.pin_backends, before each measured round); pins this process to
    the client core. Returns (client cores, server cores, a note)."""
    if no_pin:
        return None, None, "not pinned (--no-pin)"
    client_cores, server_cores, note = core_plan()
    note = note.replace(
        "PostgreSQL is not pinned (it runs on either core, competing with both)",
        "so are the PostgreSQL backends of the benchmark database (re-pinned before each "
        "measured round); the cluster's shared helpers are not",
    )
    if client_cores:
        pin_process(os.getpid(), client_cores)
    return client_cores, server_cores, note


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(database_url: str, *, log_level: str, source: Path | None = None) -> dict[str, str]:
    """The environment for a service process: ours without any CROSSINGS_* setting, plus the
    database URL and log level, so that a developer's shell settings cannot skew a run. With
    ``source``, the service package is imported from that directory (a copy of another checkout)
    instead of the installed one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSINGS_")}
    env["CROSSINGS_DATABASE_URL"] = database_url
    env["CROSSINGS_LOG_LEVEL"] = log_level
    # Benchmarks measure the service, not its rate limits (a limit would refuse the load itself).
    env["CROSSINGS_RATE_LIMIT_PUBLIC"] = "0"
    env["CROSSINGS_RATE_LIMIT_PER_KEY"] = "0"
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(source), env.get("PYTHONPATH", "")) if p
        )
    return env


def analyst_headers(database_url: str) -> dict[str, str]:
    """An Authorization header with a new analyst key for the service on ``database_url``: the
    role that reads precise reports and unsuppressed counts, as the benchmarks do."""
    return key_headers(database_url, "analyst")


def key_headers(database_url: str, role: str) -> dict[str, str]:
    """An Authorization header with a new key of ``role`` for the service on ``database_url``."""
    done = subprocess.run(
        [str(CROSSINGS), "keys", "create", "--role", role, "--name", "benchmark"],
        env=server_env(database_url, log_level="warning"),
        capture_output=True,
        text=True,
        check=True,
    )
    return {"authorization": f"Bearer {done.stdout.strip()}"}


def run_cli(args: Sequence[str], *, database_url: str, source: Path | None = None) -> None:
    """Run ``crossings ARGS`` to completion; raise with its output when it fails."""
    done = subprocess.run(
        [str(CROSSINGS), *args],
        env=server_env(database_url, log_level="warning", source=source),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"crossings {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


@dataclass
class Server:
    """A running ``crossings serve`` process."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextlib.contextmanager
def running_server(
    database_url: str,
    *,
    log_path: Path,
    cores: set[int] | None,
    log_level: str = "warning",
    source: Path | None = None,
    ready_timeout_s: float = 60.0,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """Start ``crossings serve`` (``workers`` uvicorn workers, ``env``: more settings) on a free
    port, pinned to ``cores`` from before exec so every thread it starts inherits the pinning;
    wait for /readyz; stop it after."""
    port = free_port()
    argv = [str(CROSSINGS), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with running_process(
        [*argv, "--workers", str(workers)],
        env=server_env(database_url, log_level=log_level, source=source) | dict(env or {}),
        base_url=f"http://127.0.0.1:{port}",
        ready_path="/readyz",
        log_path=log_path,
        cores=cores,
        ready_timeout_s=ready_timeout_s,
    ) as server:
        yield server


@contextlib.contextmanager
def running_process(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    base_url: str,
    ready_path: str,
    log_path: Path,
    cores: set[int] | None,
    cwd: Path | None = None,
    ready_timeout_s: float = 60.0,
) -> Iterator[Server]:
    """Start an HTTP server process, pinned to ``cores`` from before exec; wait until
    ``ready_path`` answers 200; stop it after (also on failure or Ctrl-C)."""
    import httpx

    log = log_path.open("wb")
    process = subprocess.Popen(
        list(argv),
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        # Its own session: a Ctrl-C in the terminal reaches us, and we stop it in order.
        start_new_session=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None,
    )
    server = Server(process, base_url, log_path)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{argv[0]} exited with {process.returncode}:\n{server.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}{ready_path}", timeout=2.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{argv[0]} was not ready in {ready_timeout_s:g} s:\n{server.log_tail()}"
                )
            time.sleep(0.2)
        yield server
    finally:
        stop_process(process)
        log.close()


def stop_process(process: subprocess.Popen[bytes], *, grace_s: float = 15.0) -> None:
    """SIGTERM (uvicorn shuts down gracefully), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()


def tipg_env(url: str, *, properties: Sequence[str]) -> dict[str, str]:
    """TiPG's settings for the ``reports`` table: collection ``public.reports``, geometry
    ``geom``, datetime ``observed_at``, id ``id``, and ``properties`` (its variables are read
    from the environment only: the process runs in an empty directory, so no stray .env is read
    either)."""
    return {
        "DATABASE_URL": libpq_url(url),
        "TIPG_DB_SCHEMAS": '["public"]',
        "TIPG_DB_TABLES": '["public.reports"]',
        "TIPG_TABLE_CONFIG__public_reports__GEOMCOL": "geom",
        "TIPG_TABLE_CONFIG__public_reports__DATETIMECOL": "observed_at",
        "TIPG_TABLE_CONFIG__public_reports__PK": "id",
        "TIPG_TABLE_CONFIG__public_reports__PROPERTIES": orjson.dumps(list(properties)).decode(),
    }


@contextlib.contextmanager
def running_tipg(
    url: str,
    *,
    properties: Sequence[str],
    scratch: Path,
    cores: set[int] | None,
    log_level: str,
) -> Iterator[Server]:
    """TiPG (``uvicorn tipg.main:app``, one worker) on the ``reports`` table of ``url``, pinned to
    ``cores``, without any TIPG_*, POSTGRES_* or DATABASE_URL setting of ours leaking in."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TIPG_", "POSTGRES_")) and k != "DATABASE_URL"
    }
    workdir = scratch / "tipg"
    workdir.mkdir(exist_ok=True)
    with running_process(
        [sys.executable, "-m", "uvicorn", "tipg.main:app", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--log-level", log_level],
        env=env | tipg_env(url, properties=properties),
        base_url=f"http://127.0.0.1:{port}",
        ready_path="/collections/public.reports",  # 200 once the catalog holds our table
        log_path=scratch / "tipg.log",
        cores=cores,
        cwd=workdir,
    ) as server:  # fmt: skip
        yield server


@contextlib.contextmanager
def fresh_postgis_database(
    admin_url: str = ADMIN_URL, *, keep: bool = False, template: str | None = None
) -> Iterator[str]:
    """A new database ``crossings_bench_<random>`` with PostGIS: empty, or a copy of ``template``
    (a database no one is connected to); dropped afterwards, also when the run fails or is
    interrupted, unless ``keep`` (then only when the run fails while creating it). Yields its
    SQLAlchemy URL for the service."""
    import psycopg
    from psycopg import sql

    name = f"crossings_bench_{secrets.token_hex(4)}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(create)
    drop = True
    try:
        with psycopg.connect(_with_dbname(admin_url, name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        drop = not keep
        yield postgis_url(admin_url, name)
    except BaseException:
        drop = True
        raise
    finally:
        if drop:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgis_url(admin_url: str, database: str) -> str:
    """The service's (SQLAlchemy) URL of ``database`` on the cluster of ``admin_url``."""
    return _with_dbname(admin_url, database).replace("postgresql://", "postgresql+psycopg://", 1)


def _with_dbname(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


def libpq_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def handle_stop_signals() -> None:
    """Turn SIGTERM into SystemExit and SIGINT into KeyboardInterrupt, so that ``finally`` blocks
    (server stop, DROP DATABASE) run. SIGINT is set explicitly because a process started in the
    background by a non-interactive shell inherits it ignored."""

    def on_sigterm(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def fairness_notes(
    pin_note: str, *, allow_parallel_query: bool, about: Sequence[str] = ()
) -> list[str]:
    """The notes of a read benchmark against TiPG: pinning, parallel query, encoding, then
    ``about`` (what the benchmark itself should say), how CPU was read, and the machine's load."""
    return [
        pin_note,
        "parallel query allowed" if allow_parallel_query
        else "max_parallel_workers_per_gather = 0 on the benchmark database (parallel workers "
        "would escape the pinning)",
        "requests send Accept-Encoding: identity (TiPG compresses when asked; crossings does not)",
        *about,
        "CPU ms/req: the server process, PostgreSQL (backends on the benchmark database plus the "
        "shared WAL writer, checkpointer and background writer), this load generator; /proc, "
        "10 ms ticks",
        f"load average at start {os.getloadavg()[0]:.2f} (other work on the machine skews figures)",
    ]  # fmt: skip


def pg_settings(conn: Any, names: Sequence[str]) -> dict[str, Any]:
    """The named settings of the PostgreSQL server (with their units) over a psycopg connection."""
    rows = conn.execute(
        "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY(%s)",
        [list(names)],
    ).fetchall()
    conn.commit()
    return dict(rows)


def service_facts(source: Path | None) -> dict[str, Any]:
    """Which service code ran: a --source copy, or this checkout at its HEAD (dirty or not)."""
    if source is not None:
        return {"source": str(source)}
    repo = REPO

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(repo), *args],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--untracked-files=no", "--", "service", "alembic")
    return {"source": str(repo), "git_head": git("rev-parse", "HEAD"), "dirty": bool(changed)}


# --- a read benchmark's run ------------------------------------------------------------------


def benchmark_parser(name: str, doc: str, *, quick: str) -> argparse.ArgumentParser:
    """The parser of ``python -m bench.<name>``, described by the first paragraph of ``doc``,
    with ``--reports`` (the size of the database) and ``--quick`` (what it does: ``quick``; see
    dataset.parse_benchmark_args)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m bench.{name}", description=doc.split("\n\n")[0]
    )
    parser.add_argument("--reports", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help=quick)
    return parser


def add_request_arguments(
    parser: argparse.ArgumentParser,
    *,
    requests: int,
    per: str,
    rounds: int,
    raw_requests: int | None = None,
    raw_per: str = "",
) -> None:
    """``--requests`` (per ``per``, over all rounds), ``--raw-requests`` where the benchmark has
    a raw SQL target (per ``raw_per``), and ``--rounds``."""
    help_ = "per {}, over all rounds"
    parser.add_argument("--requests", type=int, default=requests, help=help_.format(per))
    if raw_requests is not None:
        parser.add_argument(
            "--raw-requests", type=int, default=raw_requests, help=help_.format(raw_per)
        )
    parser.add_argument("--rounds", type=int, default=rounds)


def add_source_argument(parser: argparse.ArgumentParser, *, what: str) -> None:
    """``--source``: run ``what`` from the service package in another directory."""
    parser.add_argument(
        "--source", type=Path,
        help=f"run {what} from the service package in this directory (e.g. a copy of another "
        "checkout, for a before/after) instead of the installed one",
    )  # fmt: skip


def tipg_facts(path_name: str, path: str, *, properties: Sequence[str]) -> dict[str, Any]:
    """What a result says of the TiPG it compared with: its version, path and settings."""
    import tipg  # the bench extra; imported when a result is described

    env = tipg_env("postgresql://<db>", properties=properties)
    return {"version": tipg.__version__, path_name: path, "env": env}


@dataclass
class RunContext:
    """What every read benchmark's steps share: its arguments, the service's URL, a scratch
    folder, the server's cores (None: not pinned) and the PostgreSQL CPU meter. Each benchmark's
    Context adds its cases and what it measured."""

    args: argparse.Namespace
    url: str
    scratch: Path
    server_cores: set[int] | None
    postgres: PostgresCpu


@dataclass(frozen=True)
class Run:
    """A read benchmark under way: its arguments, when it started, the cores of the load
    generator and of the server (None: not pinned), and the notes of how fair it is."""

    args: argparse.Namespace
    started: datetime
    client_cores: set[int] | None
    server_cores: set[int] | None
    notes: list[str]

    @classmethod
    def start(cls, args: argparse.Namespace, *, about: Sequence[str]) -> Run:
        """Stop signals handled, this process and the database pinned (unless ``--no-pin``),
        the fairness notes begun with ``about``."""
        handle_stop_signals()
        client_cores, server_cores, pin_note = pin_for_database(no_pin=args.no_pin)
        started = datetime.now(UTC)
        notes = fairness_notes(
            pin_note, allow_parallel_query=args.allow_parallel_query, about=about
        )
        return cls(args, started, client_cores, server_cores, notes)

    def header(self, name: str, params: Sequence[str], data: dict[str, Any]) -> dict[str, Any]:
        """The first keys of the result: the benchmark, when, its parameters, its data."""
        return {
            "benchmark": name,
            "started_at": self.started.isoformat(),
            "params": {k: getattr(self.args, k) for k in params},
            "data": data,
        }

    def machine(self, pinned_backends: Sequence[int] | None = None) -> dict[str, Any]:
        return machine_facts(
            client_cores=self.client_cores,
            server_cores=self.server_cores,
            pinned_backends=pinned_backends,
        )

    def finish(self, result: dict[str, Any], table: Callable[[dict[str, Any]], None]) -> int:
        """The notes into the result, the result written (bench/results/<--output>.json) and
        printed as a table; the exit status."""
        result["notes"] = self.notes
        return finish(self.args.output, result, table)


def finish(output: str, result: dict[str, Any], table: Callable[[dict[str, Any]], None]) -> int:
    """Write the result to bench/results/<output>.json, print its table and where it went."""
    path = write_results(output, result)
    table(result)
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    print(f"\nwritten to {shown}")
    return 0
