"""Instants on the wire: format_instant writes what ``isoformat`` in UTC with a Z writes, for any
instant and offset, and parse_instant reads it back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from service.api.schemas.common import format_instant, parse_instant

_OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_INSTANTS = st.datetimes(
    min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1), timezones=_OFFSETS
)


@given(_INSTANTS)
def test_format_instant_is_isoformat_in_utc_with_a_z(value: datetime) -> None:
    expected = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert format_instant(value) == expected
    assert parse_instant(format_instant(value)) == value


def test_microseconds_appear_only_when_present() -> None:
    assert format_instant(datetime(2026, 5, 1, 14, 30, tzinfo=UTC)) == "2026-05-01T14:30:00Z"
    at = datetime(2026, 5, 1, 9, 30, 0, 120, tzinfo=timezone(timedelta(hours=-5)))
    assert format_instant(at) == "2026-05-01T14:30:00.000120Z"
