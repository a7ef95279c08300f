"""Reports as the domain sees them: what a field worker sent, and what the service made of it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from uuid import UUID

import orjson

from service.domain.errors import FieldError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SnapStatus(StrEnum):
    SNAPPED = "snapped"
    BEYOND_MAX_DISTANCE = "beyond_max_distance"


@dataclass(frozen=True, slots=True)
class SnapResult:
    """Where a point meets the border. Every field but ``status`` is None when beyond reach."""

    status: SnapStatus
    segment_id: str | None = None
    distance_m: float | None = None
    snapped_lon: float | None = None
    snapped_lat: float | None = None
    chainage_km: float | None = None
    side: str | None = None  # ISO 3166-1 alpha-2; None when the point lies on the line itself

    @property
    def is_snapped(self) -> bool:
        return self.status is SnapStatus.SNAPPED


BEYOND = SnapResult(status=SnapStatus.BEYOND_MAX_DISTANCE)


@dataclass(frozen=True, slots=True)
class ReportDraft:
    """A validated report as the client sent it (``observed_at`` normalised to UTC)."""

    id: UUID
    observed_at: datetime
    lon: float
    lat: float
    people_count: int
    kind: str
    direction: str | None = None
    accuracy_m: float | None = None
    notes: str | None = None
    device_id: str | None = None

    def content_hash(self) -> bytes:
        """A digest of everything the client sent, to tell a replay from a conflicting reuse of an id.

        Equal instants written with different offsets hash alike: they are the same report. The
        digest is stored with each report, so this encoding must never change (a changed digest
        would turn every later replay of a stored report into a conflict).
        """
        if self.observed_at.tzinfo is None:
            raise ValueError("observed_at must carry a UTC offset")
        instant = self.observed_at - _EPOCH
        micros = (instant.days * 86_400 + instant.seconds) * 1_000_000 + instant.microseconds
        fields = (
            self.id.hex,
            micros,
            float(self.lon) + 0.0,  # + 0.0 folds -0.0 into 0.0: SQLite does not keep the sign
            float(self.lat) + 0.0,
            self.people_count,
            self.kind,
            self.direction,
            None if self.accuracy_m is None else float(self.accuracy_m) + 0.0,
            self.notes,
            self.device_id,
        )
        return hashlib.blake2b(orjson.dumps(fields), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Report:
    """A stored report: the draft, when it arrived, and its snap."""

    draft: ReportDraft
    received_at: datetime
    snap: SnapResult

    @property
    def id(self) -> UUID:
        return self.draft.id


class IngestOutcome(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The outcome for one submitted report; ``report`` is the stored one (created or duplicate).

    ``same_poster`` is False when the id was already stored by another key (or with a key by
    none, or without one by a key): the caller must then learn nothing of the stored report."""

    outcome: IngestOutcome
    report: Report | None = None
    same_poster: bool = True


# Rules that need context (the clock, the configured kinds, the border): the wire schema checks
# types and ranges, these check meaning. Field names are the report's own.
EARLIEST_OBSERVATION = datetime(1970, 1, 1, tzinfo=UTC)


def check_report_rules(
    draft: ReportDraft,
    *,
    now: datetime,
    max_clock_skew_s: float,
    kinds: tuple[str, ...],
    countries: frozenset[str],
) -> list[FieldError]:
    """Every rule the draft breaks; an empty list when it may be stored."""
    errors: list[FieldError] = []
    if (draft.observed_at - now).total_seconds() > max_clock_skew_s:
        errors.append(
            FieldError("observed_at", f"is more than {max_clock_skew_s:g} s in the future")
        )
    if draft.observed_at < EARLIEST_OBSERVATION:
        errors.append(FieldError("observed_at", "is before 1970-01-01T00:00:00Z"))
    if draft.kind not in kinds:
        errors.append(FieldError("kind", f"must be one of: {', '.join(kinds)}"))
    if draft.direction is not None and draft.direction not in countries:
        errors.append(
            FieldError(
                "direction",
                f"{draft.direction!r} is not a country on this border ({', '.join(sorted(countries))})",
            )
        )
    return errors
