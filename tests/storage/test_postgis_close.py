"""Closing a PostGIS store while another thread is still in one of its calls (a request the
server stopped waiting for, the release keeper's cut): the call finishes on its connection, the
close waits for it, and no connection is left to be dropped unclosed (service/storage/postgis/
gate.py). Later calls are refused as the store being unavailable."""

from __future__ import annotations

import gc
import threading
import time

import psycopg
import pytest

from service.domain.errors import StoreUnavailable
from service.domain.queries import ReportQuery
from service.settings import Settings
from service.storage.postgis.store import PostgisStore

pytestmark = pytest.mark.postgis


def _waiting_on_a_lock(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return row is not None and row[0] > 0


def test_close_waits_for_a_call_under_way_and_refuses_later_ones(postgis_url: str) -> None:
    dsn = postgis_url.replace("postgresql+psycopg://", "postgresql://", 1)
    store = PostgisStore.open(Settings(database_url=postgis_url).store_options)
    read: list[int] = []
    with psycopg.connect(dsn) as locker:
        locker.execute("LOCK TABLE reports IN ACCESS EXCLUSIVE MODE")
        reader = threading.Thread(
            target=lambda: read.append(len(store.query_reports(ReportQuery(limit=1)).reports))
        )
        reader.start()
        deadline = time.monotonic() + 10
        # This store's read holds a connection (it is inside the call) and some session waits
        # on the lock (the test database is shared: others may too, so both are asked).
        while store.pool_usage()[0] < 1 or not _waiting_on_a_lock(dsn):
            assert time.monotonic() < deadline, "the store's read never reached the lock"
            time.sleep(0.05)
        closer = threading.Thread(target=store.close)
        closer.start()
        closer.join(timeout=0.5)
        assert closer.is_alive(), "close() did not wait for the call under way"
    # The locker's transaction ends with its connection: the read goes on, then the close.
    reader.join(timeout=10)
    closer.join(timeout=10)
    assert not reader.is_alive() and not closer.is_alive()
    assert len(read) == 1  # the read answered (the thread appends only when it returns)
    with pytest.raises(StoreUnavailable):
        store.count_segments()
    # A connection dropped unclosed would warn here (pytest turns the warning into a failure).
    gc.collect()
