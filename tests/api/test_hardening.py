"""Hardening (issue #13), on both stores: nothing of another key's report through a reused id,
one 401 for every bad key, keys refused in query strings and kept out of logs and the audit,
only allowed hosts, CSV cells that no spreadsheet runs, and every precise read audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import make_key
from tests.factories import report_body, report_feature_body


def _client(app: FastAPI, token: str | None = None, **kw: Any) -> httpx.AsyncClient:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=kw.pop("base_url", "http://testserver"),
        headers=headers,
        **kw,
    )


@pytest.fixture
async def two_reporters(
    app: FastAPI, client: httpx.AsyncClient
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two reporter keys (the second made here), on clean data."""
    if "reporter2" not in app.state.test_keys:
        app.state.test_keys["reporter2"] = make_key(app.state.store, "reporter", "other")
    async with (
        _client(app, app.state.test_keys["reporter"]) as one,
        _client(app, app.state.test_keys["reporter2"]) as two,
    ):
        yield one, two


# --- other keys' reports ------------------------------------------------------------------------

NOTE = "secret-note-4c1d"


def _no_detail_of(stored: dict[str, Any], answer: str) -> None:
    """None of the stored report's server-side facts appear in ``answer``."""
    props = stored["properties"]
    for name in ("received_at", "segment_id", "snap_status", "snapped_lon", "chainage_km"):
        value = props[name]
        if value is not None and value not in ("snapped",):
            assert str(value) not in answer, name
    assert NOTE not in answer
    assert "received_at" not in answer and "segment_id" not in answer


@pytest.mark.parametrize("same_content", [True, False])
async def test_an_id_another_key_posted_is_a_bare_conflict(
    two_reporters: tuple[httpx.AsyncClient, httpx.AsyncClient], same_content: bool
) -> None:
    one, two = two_reporters
    body = report_body(notes=NOTE)
    first = await one.post("/v1/reports", json=body)
    assert first.status_code == 201
    stored = first.json()
    again = dict(body) if same_content else {**body, "people_count": 9}

    single = await two.post("/v1/reports", json=again)
    assert single.status_code == 409, single.text
    assert single.headers["content-type"] == "application/problem+json"
    _no_detail_of(stored, single.text)

    batch = await two.post(
        "/v1/reports/batch", json=[again], headers={"Prefer": "return=representation"}
    )
    assert batch.status_code == 200
    (item,) = batch.json()["results"]
    assert item["status"] == "conflict" and item["problem"]["status"] == 409
    _no_detail_of(stored, batch.text)

    feature = report_feature_body(id=body["id"], notes=NOTE)
    feature["properties"]["observed_at"] = body["observed_at"]
    if not same_content:
        feature["properties"]["people_count"] = 9
    ogc = await two.post("/ogc/collections/reports/items", json=feature)
    assert ogc.status_code == 409, ogc.text
    _no_detail_of(stored, ogc.text)

    # The key that posted it still gets its replay (200) or its conflict.
    own = await one.post("/v1/reports", json=again)
    assert own.status_code == (200 if same_content else 409)
    if same_content:
        assert own.json()["properties"]["received_at"] == stored["properties"]["received_at"]
