"""Links between reports of one crossing (issue #20): analysts list and review them; analysts'
report features carry each report's group. Every read and review is audited."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from service.domain.access import Caller
from service.domain.links import LinkNotFound, LinkPage, LinkQuery, LinkState, StoredLink
from service.domain.reports import Report
from service.storage.base import LinkStore
from service.usecases.access import audit_entry


def list_links(
    store: LinkStore, query: LinkQuery, *, caller: Caller, detail: dict[str, Any]
) -> LinkPage:
    """A page of links; the audit entry (``links.read``) is written with the read."""
    return store.list_links(query, audit=audit_entry(caller, "links.read", detail))


def review_link(
    store: LinkStore,
    link_id: UUID,
    *,
    state: LinkState,
    caller: Caller,
    detail: dict[str, Any],
) -> StoredLink:
    """Confirm or reject a link (``link.confirm`` / ``link.reject`` audited in the same
    transaction); its reports' groups are made again."""
    action = "link.confirm" if state is LinkState.CONFIRMED else "link.reject"
    reviewed = store.review_link(
        link_id,
        state=state,
        reviewed_by=caller.key_id,
        at=datetime.now(UTC),
        audit=audit_entry(caller, action, detail | {"link_id": str(link_id)}),
    )
    if reviewed is None:
        raise LinkNotFound(f"no link {link_id}")
    return reviewed


def group_ids(store: LinkStore, reports: Sequence[Report], *, caller: Caller) -> dict[UUID, UUID]:
    """Each report's group id (its own id when it is a group alone) for a caller who reads
    everything; nothing for anyone else (a group would tell a reporter of other monitors'
    reports)."""
    if not caller.sees_everything or not reports:
        return {}
    ids = [r.id for r in reports]
    found = store.group_ids(ids)
    return {i: found.get(i, i) for i in ids}
