"""Result rows into the domain's values, the same way for both stores."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
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
from service.domain.segments import BorderSegment
from service.domain.webhooks import (
    Delivery,
    DeliveryState,
    Webhook,
    filter_from_json,
    secrets_from_json,
)


def rows_of(rows: Iterable[Sequence[Any]], *, width: int) -> list[CountRow]:
    """CountRows from result rows (bucket, ``width`` key values with '' for none, reports,
    people, groups, people_est), leaving out zero sums; each distinct key tuple is built once."""
    keys: dict[tuple[Any, ...], tuple[str | None, ...]] = {}
    out = []
    for row in rows:
        reports, people, groups, people_est = row[-4], row[-3], row[-2], row[-1]
        if not (reports or people or groups or people_est):
            continue
        raw = tuple(row[1 : 1 + width])
        key = keys.get(raw)
        if key is None:
            key = keys[raw] = tuple(v or None for v in raw)
        out.append(CountRow(int(row[0]), key, reports, people, groups, people_est))
    return out


ALERT_COLUMNS = (
    "id, state, border, section, segment_id, kind, measure, opened_day, last_day, closed_day,"
    " days, observed, expected, statistic, peak_statistic, raised_at, updated_at, version"
)


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


def _maybe(decode: Callable[[Any], datetime], value: Any) -> datetime | None:
    return None if value is None else decode(value)


def alert_of(
    row: Sequence[Any],
    *,
    uuid: Callable[[Any], UUID] = _same,
    day: Callable[[Any], date] = _same,
    at: Callable[[Any], datetime] = _same,
) -> Alert:
    """An Alert from a row of ALERT_COLUMNS; ``uuid``, ``day`` and
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


HOOK_COLUMNS = "id, url, description, filter, secrets, created_at, disabled_at, disabled_reason"
DELIVERY_COLUMNS = (
    "d.id, d.webhook_id, d.event_type, d.payload, d.state, d.attempts, d.next_attempt_at,"
    " d.created_at, d.updated_at, d.last_status, d.last_error, d.delivered_at"
)


def webhook_of(
    row: Sequence[Any], *, doc: Callable[[Any], Any] = _same, at: Callable[[Any], datetime] = _same
) -> Webhook:
    """A Webhook from a row of HOOK_COLUMNS; ``doc`` decodes the JSON columns and ``at`` the
    instants where the driver does not."""
    id_, url, description, flt, secrets, created, disabled, reason = row
    return Webhook(
        id_, url, filter_from_json(doc(flt)), secrets_from_json(doc(secrets)), at(created),
        description, _maybe(at, disabled), reason,
    )  # fmt: skip


def delivery_of(row: Sequence[Any], *, at: Callable[[Any], datetime] = _same) -> Delivery:
    """A Delivery from a row of DELIVERY_COLUMNS; ``at`` decodes the instants."""
    (id_, hook, event, payload, state, attempts, next_at, created, updated, status, error,
     delivered) = row  # fmt: skip
    return Delivery(
        id_, hook, event, payload.encode(), DeliveryState(state), attempts, at(next_at),
        at(created), at(updated), status, error, _maybe(at, delivered),
    )  # fmt: skip


def segment_of(
    row: Any, coords: tuple[tuple[float, float], ...], properties: Mapping[str, Any]
) -> BorderSegment:
    """A segment from a row naming its columns (segment_id, border, start_km, end_km,
    left_country, right_country), with its line and properties as each store decodes them."""
    return BorderSegment(
        row.segment_id, row.border, row.start_km, row.end_km, row.left_country,
        row.right_country, coords, properties,
    )  # fmt: skip
