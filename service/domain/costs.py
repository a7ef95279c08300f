"""What a request would cost the database, known before any work, so that a request that could
never finish within the statement timeout is refused up front instead of timing out each time."""

from __future__ import annotations

import math

# A batch may use this share of the statement timeout: the measured cost per item is a typical
# one, and a busy database is slower.
BUDGET_SHARE = 0.5


def batch_cost_cap(*, item_cost_ms: float, statement_timeout_ms: int) -> int | None:
    """The most items a batch may hold to be stored within ``BUDGET_SHARE`` of the statement
    timeout (at least 1); None when there is no timeout (0: off)."""
    if statement_timeout_ms <= 0:
        return None
    return max(1, math.floor(statement_timeout_ms * BUDGET_SHARE / item_cost_ms))
