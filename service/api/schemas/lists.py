"""Query parameters of the listings for analysts and admins (alerts, links, the audit log,
webhook deliveries), declared once each as the other routes' are: FastAPI documents and reads
them, and refuses any other parameter (a 400 problem naming the ones the route takes)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas.common import (
    AUDIT_PAGE,
    AUDIT_PAGE_MAX,
    LIST_PAGE,
    LIST_PAGE_MAX,
    NAME_MAX_LENGTH,
    PAGE_MAX_ITEMS,
    STATE_MAX_LENGTH,
)
from service.domain.alerts import AlertState
from service.domain.links import LinkState


class _Listing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(default=LIST_PAGE, ge=1, le=LIST_PAGE_MAX)


class _Paged(_Listing):
    cursor: str | None = Field(
        default=None, description="From the previous page's next link", max_length=NAME_MAX_LENGTH
    )


class AlertListQuery(_Paged):
    state: AlertState | None = Field(default=None, description="open or closed")
    border: str | None = Field(default=None, max_length=NAME_MAX_LENGTH)
    segment: str | None = Field(
        default=None, max_length=NAME_MAX_LENGTH, description="A segment id"
    )
    since: str | None = Field(default=None, description="Updated at or after (RFC 3339)")


class LinkListQuery(_Paged):
    state: LinkState | None = Field(default=None, description="proposed, confirmed or rejected")
    segment: str | None = Field(
        default=None, max_length=NAME_MAX_LENGTH, description="Either report on this segment"
    )
    since: str | None = Field(default=None, description="Proposed at or after (RFC 3339)")


class DeliveryListQuery(_Listing):
    state: str | None = Field(
        default=None,
        description="pending, delivered, failed or gone",
        max_length=STATE_MAX_LENGTH,
    )


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    since: str | None = Field(default=None, description="From this instant (RFC 3339)")
    limit: int = Field(default=AUDIT_PAGE, ge=1, le=AUDIT_PAGE_MAX)


class ReportSearchQuery(BaseModel):
    """``GET /v1/reports``: its filters and page (``report_query`` checks their values)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bbox: str | None = Field(default=None, description="min_lon,min_lat,max_lon,max_lat (WGS84)")
    start: str | None = Field(default=None, description="observed_at >= start (RFC 3339)")
    end: str | None = Field(default=None, description="observed_at < end (RFC 3339)")
    segment_id: str | None = Field(default=None, max_length=100)
    kind: str | None = Field(default=None, max_length=100)
    limit: int = Field(
        default=100,
        description="Page size (at most CROSSINGS_PAGE_MAX_ITEMS)",
        json_schema_extra=PAGE_MAX_ITEMS,
    )
    cursor: str | None = Field(
        default=None, description="From the previous page's next link", max_length=NAME_MAX_LENGTH
    )


class SegmentListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    border: str | None = Field(
        default=None, description="Only this border, e.g. CA-US", max_length=50
    )
