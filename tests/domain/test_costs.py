"""The batch cost cap: the largest batch whose predicted cost fits the budget, never 0."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.domain.costs import BUDGET_SHARE, batch_cost_cap


@given(
    item_cost_ms=st.floats(min_value=0.001, max_value=10_000, allow_nan=False),
    statement_timeout_ms=st.integers(min_value=1, max_value=10_000_000),
)
def test_the_cap_is_the_largest_batch_within_the_budget(
    item_cost_ms: float, statement_timeout_ms: int
) -> None:
    cap = batch_cost_cap(item_cost_ms=item_cost_ms, statement_timeout_ms=statement_timeout_ms)
    budget_ms = statement_timeout_ms * BUDGET_SHARE
    assert cap is not None and cap >= 1
    if cap > 1:
        assert cap * item_cost_ms <= budget_ms * (1 + 1e-9)
    assert (cap + 1) * item_cost_ms > budget_ms * (1 - 1e-9)


def test_no_statement_timeout_means_no_cap() -> None:
    assert batch_cost_cap(item_cost_ms=1.0, statement_timeout_ms=0) is None


def test_the_default_cost_lets_a_full_batch_through_the_default_timeout() -> None:
    from service.settings import Settings

    settings = Settings()
    cap = batch_cost_cap(
        item_cost_ms=settings.batch_item_cost_ms,
        statement_timeout_ms=settings.db_statement_timeout_ms,
    )
    assert cap is not None and cap >= settings.batch_max_items
