"""A throwaway PostgreSQL primary and streaming replica on loopback, for the replica tests.

Made with the machine's own PostgreSQL binaries (initdb, pg_ctl, pg_basebackup) as the postgres
user, on free ports, in a temporary directory; the machine's main cluster is not touched. PostGIS
comes from the same installation's extension files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's binaries (Debian: /usr/lib/postgresql/N/bin)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts)
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """One running server: its data directory and port."""

    bin: Path
    data: Path
    port: int
    as_user: list[str]

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), *args],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        self.pg_ctl("-w", "-t", "60", "-l", str(self.data / "server.log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-w", "-m", mode, "stop")

    def sql(self, statement: str, dbname: str = "postgres") -> object:
        with psycopg.connect(self.dsn(dbname), autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(statement)
            row = cursor.fetchone() if cursor.description else None
            return None if row is None else row[0]


@dataclass
class Replicated:
    primary: Cluster
    replica: Cluster
    dbname: str

    def wait_replayed(self, timeout_s: float = 10.0) -> None:
        """Until the replica has replayed everything the primary has written."""
        target = self.primary.sql("SELECT pg_current_wal_insert_lsn()::text")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = self.replica.sql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")
            if done:
                return
            time.sleep(0.02)
        raise TimeoutError("the replica did not catch up")


@contextlib.contextmanager
def replicated_cluster(dbname: str = "crossings") -> Iterator[Replicated]:
    """A primary with ``dbname`` (PostGIS created) and a hot standby streaming from it."""
    binaries = pg_bin()
    if binaries is None:
        raise FileNotFoundError("no PostgreSQL binaries in /usr/lib/postgresql")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    top = Path(tempfile.mkdtemp(prefix="crossings-cluster-"))
    if as_user:
        shutil.chown(top, "postgres", "postgres")
    primary = Cluster(binaries, top / "primary", _free_port(), as_user)
    replica = Cluster(binaries, top / "replica", _free_port(), as_user)
    started: list[Cluster] = []
    try:
        subprocess.run(
            [*as_user, str(binaries / "initdb"), "-D", str(primary.data), "-U", "postgres",
             "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"],
            check=True, capture_output=True,
        )  # fmt: skip
        settings = (
            f"port = {primary.port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{top}'\nwal_level = replica\nmax_wal_senders = 4\n"
            "hot_standby = on\nfsync = off\nshared_buffers = 32MB\n"
        )
        with (primary.data / "postgresql.conf").open("a") as conf:
            conf.write(settings)
        primary.start()
        started.append(primary)
        primary.sql(f'CREATE DATABASE "{dbname}"')
        primary.sql("CREATE EXTENSION postgis", dbname)
        subprocess.run(
            [*as_user, str(binaries / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
             "-U", "postgres", "-D", str(replica.data), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"],
            check=True, capture_output=True,
        )  # fmt: skip
        with (replica.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {replica.port}\n")
        replica.start()
        started.append(replica)
        yield Replicated(primary, replica, dbname)
    finally:
        for cluster in reversed(started):
            with contextlib.suppress(subprocess.CalledProcessError):
                cluster.stop("immediate")
        shutil.rmtree(top, ignore_errors=True)
