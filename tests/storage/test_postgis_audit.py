"""The audit log on PostGIS: an entry is stored as written, and its commit does not wait for the
disk (one is written for every page an analyst reads)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, create_engine

from service.domain.access import AuditEntry, Role
from service.domain.queries import ReportQuery
from service.storage.postgis import access, pages

pytestmark = pytest.mark.postgis


@pytest.fixture
def conn(postgis_url: str) -> Iterator[Connection]:
    """A connection in a transaction that is rolled back."""
    engine = create_engine(postgis_url)
    try:
        with engine.connect() as connection, connection.begin() as transaction:
            yield connection
            transaction.rollback()
    finally:
        engine.dispose()


def test_an_audit_entry_is_stored_as_written(conn: Connection) -> None:
    at = datetime(2099, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)  # after any other entry
    detail: dict[str, object] = {
        "method": "GET",
        "path": "/ogc/collections/reports/items",
        "query": "a=1&b=é",
    }
    access.add_audit(conn, AuditEntry(at, "key1", Role.ANALYST, "reports.read", detail))
    entries = access.list_audit(conn, at, 10)
    assert entries == [AuditEntry(at, "key1", Role.ANALYST, "reports.read", detail)]


def test_an_audit_entry_commits_without_waiting_for_the_disk(conn: Connection) -> None:
    entry = AuditEntry(datetime.now(UTC), None, Role.ADMIN, "report.delete", {"report_id": "x"})
    access.add_audit(conn, entry)
    assert conn.exec_driver_sql("SHOW synchronous_commit").scalar_one() == "off"


def test_a_page_of_reports_writes_its_audit_entry_from_its_own_statement(
    conn: Connection,
) -> None:
    at = datetime(2099, 1, 3, 4, 5, 6, 7, tzinfo=UTC)
    entry = AuditEntry(at, "key2", Role.ANALYST, "reports.read", {"path": "/ogc", "query": ""})
    for query in (ReportQuery(limit=1), ReportQuery(bbox=(-80.0, 40.0, -70.0, 50.0), limit=1)):
        pages.query_reports(conn, query, entry)
    assert access.list_audit(conn, at, 10) == [entry, entry]
    assert conn.exec_driver_sql("SHOW synchronous_commit").scalar_one() == "off"
