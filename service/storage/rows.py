"""Result rows into the domain's values, the same way for both stores."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from service.domain.aggregation import CountRow


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
