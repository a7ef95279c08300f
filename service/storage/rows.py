"""Result rows into the domain's values, the same way for both stores."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID

from service.domain.aggregation import CountRow
from service.domain.alerts import (
    Alert,
    AlertFigures,
    AlertState,
    AlertTransition,
    Measure,
    SeriesKey,
    alert_id,
    state_after,
)


def rows_of(rows: Iterable[Sequence[Any]], *, width: int) -> list[CountRow]:
    """CountRows from result rows (bucket, ``width`` key values with '' for none, reports,
    people), leaving out zero sums; each distinct key tuple is built once."""
    keys: dict[tuple[Any, ...], tuple[str | None, ...]] = {}
    out = []
    for row in rows:
        reports, people = row[-2], row[-1]
        if not (reports or people):
            continue
        raw = tuple(row[1 : 1 + width])
        key = keys.get(raw)
        if key is None:
            key = keys[raw] = tuple(v or None for v in raw)
        out.append(CountRow(int(row[0]), key, reports, people))
    return out


def alert_params(t: AlertTransition) -> dict[str, Any]:
    """The named parameters of a transition's alert upsert, as the domain's values (a store
    encodes those its driver does not take as they are)."""
    f, s = t.figures, t.series
    return {
        "id": alert_id(s, t.opened_day),
        "state": state_after(t.event).value,
        "border": s.border,
        "section": s.section,
        "segment_id": s.segment_id,
        "kind": s.kind,
        "measure": s.measure.value,
        "opened_day": t.opened_day,
        "last_day": f.last_day,
        "closed_day": f.closed_day,
        "days": f.days,
        "observed": f.observed,
        "expected": f.expected,
        "statistic": f.statistic,
        "peak_statistic": f.peak_statistic,
        "at": t.at,
    }


def _same(value: Any) -> Any:
    return value


def alert_of(
    row: Sequence[Any],
    *,
    uuid: Callable[[Any], UUID] = _same,
    day: Callable[[Any], date] = _same,
    at: Callable[[Any], datetime] = _same,
) -> Alert:
    """An Alert from a row of the alerts table's columns in their order; ``uuid``, ``day`` and
    ``at`` decode what the store keeps in another form (the identity where the driver decodes)."""
    (id_, state, border, section, segment_id, kind, measure, opened, last, closed, days,
     observed, expected, statistic, peak, raised, updated, version) = row  # fmt: skip
    return Alert(
        id=uuid(id_),
        state=AlertState(state),
        series=SeriesKey(border, section, segment_id, kind, Measure(measure)),
        opened_day=day(opened),
        figures=AlertFigures(
            day(last),
            days,
            observed,
            expected,
            statistic,
            peak,
            None if closed is None else day(closed),
        ),
        raised_at=at(raised),
        updated_at=at(updated),
        version=version,
    )
