"""Shared fixtures: a PostGIS database of this run's own, both stores, and an app client.

PostGIS tests need a server at CROSSINGS_TEST_PG_ADMIN_URL (default: postgres on 127.0.0.1:5432,
trust auth) with the PostGIS extension installed. Without one they are skipped locally; under
CI=true that is an error, because a green run without them proves nothing about production.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from service.api.lifecycle import current_store
from service.app import create_app
from service.domain.queries import ReportQuery
from service.domain.reports import Report
from service.settings import Settings
from service.storage.postgis.rollups import PENDING, ROLLUP_TABLES

ADMIN_URL = os.environ.get(
    "CROSSINGS_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() == "true"

# Property tests check rules, not speed: no per-example deadline and no "too slow" health check,
# which on a shared two-core machine fail for the load's sake (explicit @settings still apply).
hypothesis_settings.register_profile(
    "crossings", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("crossings")


def _postgis_unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"PostGIS is required under CI=true: {reason}", pytrace=False)
    pytest.skip(f"PostGIS not available: {reason}")


@pytest.fixture(scope="session")
def postgis_url() -> Iterator[str]:
    """A fresh database for this run, migrated with Alembic; dropped at the end."""
    with fresh_postgis_database() as url:
        yield url


@contextmanager
def fresh_postgis_database(revision: str | None = "head") -> Iterator[str]:
    """A new PostGIS database migrated to ``revision`` (None: left empty, not even PostGIS),
    as a SQLAlchemy URL; dropped on exit. Skips (fails under CI) when PostgreSQL is not there."""
    name = f"crossings_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        _postgis_unavailable(str(error).strip())
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
            if revision is not None:
                try:
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
                except psycopg.Error as error:
                    _postgis_unavailable(str(error).strip())
                from service.storage.postgis.migrations import upgrade

                upgrade(url.replace("postgresql://", "postgresql+psycopg://", 1), revision)
            yield url.replace("postgresql://", "postgresql+psycopg://", 1)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def libpq_url(url: str) -> str:
    """psycopg's form of a SQLAlchemy PostgreSQL URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def fresh_url(store_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated store of the same kind as ``store_url``, for tests that change segments."""
    if store_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with fresh_postgis_database() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'crossings.db'}"


STORES = ["sqlite", pytest.param("postgis", marks=pytest.mark.postgis)]
T = TypeVar("T")


@contextmanager
def module_store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[str]:
    """A fresh, empty, migrated database of the store ``request.param`` names (a fixture over
    STORES): a SQLite file in a temporary folder named after ``name``, or a PostGIS database
    dropped on exit."""
    with fresh_store_url(request.param, tmp_path_factory, name) as url:
        yield url


@contextmanager
def fresh_store_url(
    kind: str, tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[str]:
    """A fresh database of the store ``kind`` names (``sqlite``, or PostGIS for any other, as
    a store URL's scheme says): see module_store_url."""
    if kind.startswith("sqlite"):
        yield f"sqlite:///{tmp_path_factory.mktemp(name) / f'{name}.db'}"
        return
    with fresh_postgis_database() as url:
        yield url


@contextmanager
def served_fresh(
    store_url: str, tmp_path_factory: pytest.TempPathFactory, name: str, fill: Callable[[str], T]
) -> Iterator[tuple[str, str, T]]:
    """(database URL, server base URL, what ``fill`` returned): a live server (tests/live.py)
    over a fresh database of ``store_url``'s store, filled by ``fill`` before it starts."""
    from tests.live import running_server

    with fresh_store_url(store_url, tmp_path_factory, name) as url:
        filled = fill(url)
        with running_server(url) as base:
            yield url, base, filled


@pytest.fixture(scope="module", params=STORES)
def store_with_border(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Any, Any]]:
    """(url, open store, index of its border): a fresh store of each kind, for one test module."""
    from service.storage import open_store
    from service.usecases.segments import ensure_segments

    with module_store_url(request, tmp_path_factory, "module") as url:
        opened = open_store(Settings(database_url=url))
        try:
            yield url, opened, ensure_segments(opened, None)
        finally:
            opened.close()


@pytest.fixture(scope="session", params=STORES)
def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of each store in turn: every behavioural test runs against both."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def all_reports(store: Any, **filters: Any) -> list[Report]:
    """Every report of ``store`` that ``filters`` (ReportQuery's fields) select, in one page."""
    page = store.query_reports(ReportQuery(limit=100_000, **filters))
    assert page.next_key is None
    reports: list[Report] = page.reports
    return reports


def wipe_reports(url: str) -> None:
    """Delete every report (tests start from an empty table; segments stay loaded)."""
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            return  # not created yet: nothing to wipe
        with sqlite3.connect(path) as lite:
            lite.execute("DELETE FROM reports")
            lite.execute("DELETE FROM reports_rtree")
            lite.execute("DELETE FROM count_days")
            lite.execute("DELETE FROM count_months")
            lite.execute("DELETE FROM report_links")
            lite.execute("DELETE FROM report_groups")
            lite.execute("DELETE FROM group_days")
            lite.execute("DELETE FROM group_months")
            lite.execute("DELETE FROM link_models")
        lite.close()
        return
    truncate = (
        f"TRUNCATE reports, {PENDING}, {', '.join(ROLLUP_TABLES)},"
        " report_links, report_groups, group_days, group_months, link_pending, link_models"
    )
    # A store a test left open may still be linking (link_pending, then reports: the opposite
    # of the order TRUNCATE locks them in); PostgreSQL then aborts one of the two. Try again.
    for attempt in range(5):
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
            try:
                conn.execute(truncate)
                return
            except psycopg.errors.DeadlockDetected:
                if attempt == 4:
                    raise
        time.sleep(0.2)


def make_settings(url: str, **overrides: Any) -> Settings:
    return Settings(database_url=url, **overrides)


@pytest.fixture(scope="session")
async def app(store_url: str) -> AsyncIterator[FastAPI]:
    """One app per store for the session, its lifespan running (store open, border indexed),
    with a key of each role in ``app.state.test_keys`` (role -> the key to send)."""
    application = create_app(
        make_settings(
            store_url,
            rate_limit_public=0,
            rate_limit_per_key=0,
            release_check_s=0,
            webhook_worker=False,  # tests/api/test_webhooks.py runs its own
        )
    )
    async with application.router.lifespan_context(application):
        application.state.test_keys = {
            role: make_key(current_store(application), role) for role in KEY_ROLES
        }
        yield application


def make_key(store: Any, role: str, name: str = "tests") -> str:
    """A new key of ``role`` in ``store``: the token to send."""
    from service.domain.access import Caller, Role
    from service.usecases.access import create_key

    _, token = create_key(
        store, role=role, name=name, expires_at=None, actor=Caller(role=Role.ADMIN)
    )
    return token


KEY_ROLES = ("reporter", "analyst", "admin")


@pytest.fixture
async def client(app: FastAPI, store_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding the admin key: tests of behaviour see everything. Tests of access
    control send their own keys (``app.state.test_keys``) or none."""
    wipe_reports(store_url)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {app.state.test_keys['admin']}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as c:
        yield c


@pytest.fixture
async def anonymous(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A client without a key (the public), on the same app and data as ``client``."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def as_role(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[dict[str, Any]]:
    """A client per role ("public" without a key, "reporter", "analyst", "admin") on the same
    app and data as ``client``."""
    transport = httpx.ASGITransport(app=app)
    out: dict[str, httpx.AsyncClient] = {}
    for role in ("public", "reporter", "analyst", "admin"):
        headers = {} if role == "public" else {
            "Authorization": f"Bearer {app.state.test_keys[role]}"}  # fmt: skip
        out[role] = httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        )
    yield out
    for c in out.values():
        await c.aclose()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
