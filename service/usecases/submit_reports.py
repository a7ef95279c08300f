"""Submit reports: check the rules, snap in one vectorised call, store exactly once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from service.domain.costs import batch_cost_cap
from service.domain.errors import (
    BatchTooCostly,
    BodyTooLarge,
    BorderChanged,
    InvalidInput,
    Problem,
    ReportConflict,
    StoreUnavailable,
)
from service.domain.reports import (
    IngestOutcome,
    IngestResult,
    Report,
    ReportDraft,
    check_report_rules,
)
from service.domain.segments import SegmentIndex
from service.domain.snapping import snap
from service.settings import Settings
from service.storage.base import ReportStore


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """What became of one submitted item: an ingest result, or the problem that refused it."""

    result: IngestResult
    problem: Problem | None = None


# A border change while a batch is snapped makes it snap again; more than this in a row is a
# border being reloaded in a loop, and the batch is refused as unavailable for now.
BORDER_RETRIES = 3


def check_batch_size(count: int, *, settings: Settings) -> None:
    """Refuse before any work a batch over ``batch_max_items``, or one whose predicted database
    time (``count`` x ``batch_item_cost_ms``) passes half the PostGIS statement timeout."""
    if count > settings.batch_max_items:
        raise BodyTooLarge(f"{count} items; a batch holds at most {settings.batch_max_items}")
    if settings.is_sqlite:
        return  # SQLite has no statement timeout
    cap = batch_cost_cap(
        item_cost_ms=settings.batch_item_cost_ms,
        statement_timeout_ms=settings.db_statement_timeout_ms,
    )
    if cap is not None and count > cap:
        raise BatchTooCostly(
            f"{count} items would take about {count * settings.batch_item_cost_ms:.0f} ms of "
            f"database time, over what the statement timeout "
            f"({settings.db_statement_timeout_ms} ms) allows: send at most {cap} per batch"
        )


def submit_batch(
    store: ReportStore,
    index: SegmentIndex,
    items: Sequence[ReportDraft | Problem],
    *,
    settings: Settings,
    now: datetime | None = None,
    posted_by: str | None = None,
    reload_border: Callable[[SegmentIndex], SegmentIndex] | None = None,
) -> list[ItemOutcome]:
    """One outcome per item, in order. Valid items are stored even when others are refused.

    With ``reload_border``, the reports are stored only if the stored border is still ``index``'s
    version; if another process changed it meanwhile, ``reload_border(index)`` gives the new one
    and the batch is checked and snapped again, so no report is stored against a replaced border.
    """
    if reload_border is not None and index.version is None:
        index = reload_border(index)  # a border of unknown version cannot be checked
    for attempt in range(1, BORDER_RETRIES + 1):
        try:
            return _submit(
                store, index, items, settings=settings, now=now, posted_by=posted_by,
                border_version=None if reload_border is None else index.version,
            )  # fmt: skip
        except BorderChanged:
            if reload_border is None:
                raise
            if attempt < BORDER_RETRIES:
                index = reload_border(index)
    raise StoreUnavailable("the border is being changed: try again in a moment")


def _submit(
    store: ReportStore,
    index: SegmentIndex,
    items: Sequence[ReportDraft | Problem],
    *,
    settings: Settings,
    now: datetime | None,
    posted_by: str | None,
    border_version: int | None,
) -> list[ItemOutcome]:
    now = now or datetime.now(UTC)
    outcomes: list[ItemOutcome | None] = [None] * len(items)
    valid: list[tuple[int, ReportDraft]] = []
    for position, item in enumerate(items):
        if isinstance(item, Problem):
            outcomes[position] = _invalid(item)
            continue
        errors = check_report_rules(
            item,
            now=now,
            max_clock_skew_s=settings.max_clock_skew_s,
            kinds=settings.report_kinds,
            countries=index.countries,
        )
        if errors:
            outcomes[position] = _invalid(Problem(InvalidInput, "the report breaks a rule", errors))
        else:
            valid.append((position, item))
    if valid:
        drafts = [d for _, d in valid]
        snaps = snap(
            [d.lon for d in drafts],
            [d.lat for d in drafts],
            index,
            max_distance_m=settings.max_snap_distance_m,
        )
        reports = [Report(d, now, s) for d, s in zip(drafts, snaps, strict=True)]
        stored = store.add_reports(reports, posted_by=posted_by, border_version=border_version)
        for (position, draft), result in zip(valid, stored, strict=True):
            outcomes[position] = (
                ItemOutcome(result, _conflict(result))
                if result.same_poster or result.outcome is IngestOutcome.CREATED
                else _taken(draft)
            )
    return [o for o in outcomes if o is not None]


def submit_one(
    store: ReportStore,
    index: SegmentIndex,
    draft: ReportDraft,
    *,
    settings: Settings,
    now: datetime | None = None,
) -> IngestResult:
    """Store one report; raise InvalidInput or ReportConflict instead of returning them."""
    (outcome,) = submit_batch(store, index, [draft], settings=settings, now=now)
    if outcome.problem is not None:
        raise outcome.problem.kind(outcome.problem.detail, errors=outcome.problem.errors)
    return outcome.result


def _invalid(problem: Problem) -> ItemOutcome:
    return ItemOutcome(IngestResult(IngestOutcome.INVALID), problem)


def _taken(draft: ReportDraft) -> ItemOutcome:
    """An id another key posted (a replay or not): a conflict that tells nothing of the stored
    report, not even whether its content is the same."""
    problem = Problem(
        ReportConflict,
        f"report id {draft.id} is already taken; send a new id for a new report",
    )
    return ItemOutcome(IngestResult(IngestOutcome.CONFLICT, same_poster=False), problem)


def _conflict(result: IngestResult) -> Problem | None:
    if result.outcome is not IngestOutcome.CONFLICT:
        return None
    return Problem(
        ReportConflict,
        f"report {result.report.id if result.report else ''} was already stored with other content",
    )
