"""A bounded schemathesis run over the service's own OpenAPI document, against the real server:
no generated request, valid or not, may produce a 5xx.

Schemathesis's pytest plugin does not run on this pytest, so its per-operation strategies are
driven with Hypothesis directly: each operation and generation mode is its own test case.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from tests.conftest import wipe_reports
from tests.live import live_key, running_server

EXAMPLES_PER_OPERATION = 40


@pytest.fixture(scope="module")
def live_url(store_url: str) -> Iterator[str]:
    wipe_reports(store_url)
    with running_server(store_url) as base:
        yield base


@pytest.fixture(scope="module")
def admin_key(store_url: str) -> str:
    """The fuzzer holds an admin key: otherwise most requests would stop at 401."""
    return live_key(store_url)


@pytest.fixture(scope="module")
def api_schema(live_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_url}/openapi.json")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_produces_a_server_error(
    api_schema: schemathesis.BaseSchema, live_url: str, admin_key: str, mode: GenerationMode
) -> None:
    operations = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document names operations it cannot parse
        operations.append(result.ok())
    assert len(operations) >= 8, "the OpenAPI document lost operations"
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {admin_key}"
    server_errors: list[str] = []
    exercised = 0
    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: schemathesis.Case[Any]) -> None:
            response = case.call(base_url=live_url, session=session)
            if response.status_code >= 500:
                server_errors.append(
                    f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}"
                    f" -> {response.status_code} {response.text[:300]}"
                )

        try:
            call()
            exercised += 1
        except Unsatisfiable:
            # An operation without inputs has no invalid request to make.
            assert mode is GenerationMode.NEGATIVE, operation.label
    session.close()
    assert exercised >= 6, f"only {exercised} operations were fuzzed"
    assert not server_errors, "\n".join(server_errors[:10])
