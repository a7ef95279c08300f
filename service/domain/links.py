"""Stored links between reports (issue #20), as analysts list and review them.

A link is a candidate pair whose match weight reached the threshold when it was scored
(``linking.score_candidates``). It is stored once per pair, with its levels and each field's
term, and starts ``proposed``. An analyst confirms it (the pair is one group: it is taken before
every unconfirmed link when groups are made) or rejects it (the pair is never an edge again, and
never proposed again: the stored row stays, as the pair's verdict).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from service.domain.errors import NotFound
from service.domain.linking import FIELDS, LEVEL_NAMES, Levels


class LinkState(StrEnum):
    PROPOSED = "proposed"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"


# The namespace of link ids: a pair's id is uuid5 of its two report ids, so scoring a pair twice
# (a retried transaction, two arrival orders) names the same link.
_LINK_NAMESPACE = uuid.UUID("6f1c2a4e-2d0b-5e8a-9a61-20d1a7c3b420")


def link_id(a: uuid.UUID, b: uuid.UUID) -> uuid.UUID:
    """The id of the link between reports a and b (either order)."""
    first, second = sorted((a, b))
    return uuid.uuid5(_LINK_NAMESPACE, f"{first}/{second}")


@dataclass(frozen=True, slots=True)
class StoredLink:
    """One stored link: the pair (``a < b``), their segments, the levels and per-field weights it
    was scored with (bits; ``crowding`` included), their total, its review and the version of
    the store's estimate of u and the crowding it was scored with."""

    id: uuid.UUID
    a: uuid.UUID
    b: uuid.UUID
    segment_a: str | None
    segment_b: str | None
    levels: Levels
    per_field: dict[str, float]
    weight: float
    state: LinkState
    created_at: datetime
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None
    model_version: int = 0  # the store's estimate of u and crowding it was scored with (0: none)


@dataclass(frozen=True, slots=True)
class LinkQuery:
    """Filters for listing links: ``state``; ``segment_id`` (either report on it); ``since``
    (created at or after). Paging is by (created_at, id) after ``after``."""

    state: LinkState | None = None
    segment_id: str | None = None
    since: datetime | None = None
    limit: int = 100
    after: tuple[datetime, uuid.UUID] | None = None


@dataclass(frozen=True, slots=True)
class LinkPage:
    links: list[StoredLink]
    next_key: tuple[datetime, uuid.UUID] | None


class LinkNotFound(NotFound):
    pass


def link_fields(link: StoredLink) -> dict[str, Any]:
    """A link as the API lists it: the pair, why it was linked (each field's level and bits),
    and its review."""
    fields: dict[str, Any] = {
        name: {"level": LEVEL_NAMES[name][level], "weight": round(link.per_field[name], 3)}
        for name, level in zip(FIELDS, link.levels, strict=True)
    }
    fields["crowding"] = {"level": "", "weight": round(link.per_field.get("crowding", 0.0), 3)}
    return {
        "id": str(link.id),
        "reports": [str(link.a), str(link.b)],
        "segments": [link.segment_a, link.segment_b],
        "weight": round(link.weight, 3),
        "fields": fields,
        "state": link.state.value,
        "created_at": link.created_at.isoformat(),
        "reviewed_by": link.reviewed_by,
        "reviewed_at": None if link.reviewed_at is None else link.reviewed_at.isoformat(),
        "model_version": link.model_version,
    }
