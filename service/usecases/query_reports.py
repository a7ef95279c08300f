"""Read reports back: one by id, or a filtered keyset page."""

from __future__ import annotations

from uuid import UUID

from service.domain.errors import ReportNotFound
from service.domain.reports import Report
from service.storage.base import ReportPage, ReportQuery, ReportStore


def get_report(store: ReportStore, report_id: UUID) -> Report:
    report = store.get_report(report_id)
    if report is None:
        raise ReportNotFound(f"no report with id {report_id}")
    return report


def list_reports(store: ReportStore, query: ReportQuery) -> ReportPage:
    return store.query_reports(query)
