"""Read reports back: one by id, or a filtered keyset page."""

from __future__ import annotations

from uuid import UUID

from service.domain.access import AuditEntry
from service.domain.errors import ReportNotFound
from service.domain.queries import ReportPage, ReportQuery
from service.domain.reports import Report
from service.storage.base import ReportStore


def get_report(store: ReportStore, report_id: UUID, *, posted_by: str | None = None) -> Report:
    """The report; with ``posted_by``, only if that key posted it (else not found: a reporter
    learns nothing of others' reports, not even that they exist)."""
    report = store.get_report(report_id, posted_by=posted_by)
    if report is None:
        raise ReportNotFound(f"no report with id {report_id}")
    return report


def list_reports(
    store: ReportStore, query: ReportQuery, *, audit: AuditEntry | None = None
) -> ReportPage:
    """A page of reports; with ``audit``, its audit entry is written with the read."""
    return store.query_reports(query, audit=audit)
