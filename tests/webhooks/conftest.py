"""Fixtures for the alert and webhook tests: a store of each kind, emptied of alerts and
webhooks before each test."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import STORES, module_store_url

TABLES = ("webhook_deliveries", "webhooks", "alerts")


@pytest.fixture(scope="module", params=STORES)
def alert_store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with module_store_url(request, tmp_path_factory, "alerts") as url:
        yield url


def wipe(url: str) -> None:
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            return
        with sqlite3.connect(path) as lite:
            for table in TABLES:
                lite.execute(f"DELETE FROM {table}")
        lite.close()
        return
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)}")


@pytest.fixture
def store(alert_store_url: str) -> Iterator[Any]:
    from service.settings import Settings
    from service.storage import open_store

    opened = open_store(Settings(database_url=alert_store_url))
    wipe(alert_store_url)
    try:
        yield opened
    finally:
        opened.close()
