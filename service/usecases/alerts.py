"""Reading alerts (analyst and admin keys): each read is audited with the read."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from service.domain.access import Caller
from service.domain.alerts import Alert, AlertPage, AlertQuery
from service.domain.errors import NotFound
from service.storage.base import AccessStore, AlertStore
from service.usecases.access import audit_entry, record


class AlertNotFound(NotFound):
    pass


def list_alerts(
    store: AlertStore, query: AlertQuery, *, caller: Caller, detail: dict[str, Any]
) -> AlertPage:
    """A page of alerts; the audit entry (``alerts.read``) is written in the read's transaction."""
    return store.list_alerts(query, audit=audit_entry(caller, "alerts.read", detail))


def get_alert(store: Any, alert_id: UUID, *, caller: Caller, detail: dict[str, Any]) -> Alert:
    alerts: AlertStore = store
    found = alerts.get_alert(alert_id)
    if found is None:
        raise AlertNotFound(f"no alert {alert_id}")
    access: AccessStore = store
    record(access, caller, "alerts.read", detail)
    return found
