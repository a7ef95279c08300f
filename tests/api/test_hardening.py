"""Hardening (issue #13), on both stores: nothing of another key's report through a reused id,
one 401 for every bad key, keys refused in query strings and kept out of logs and the audit,
only allowed hosts, CSV cells that no spreadsheet runs, and every precise read audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from service.api.lifecycle import current_store
from service.api.state import app_state
from tests.conftest import libpq_url, make_key
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
        app.state.test_keys["reporter2"] = make_key(current_store(app), "reporter", "other")
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


# --- one 401 for every bad key -------------------------------------------------------------------


async def test_invalid_revoked_and_expired_keys_get_the_same_401(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    from datetime import UTC, datetime, timedelta

    from service.domain.access import ApiKey, Role, digest_of, new_token

    store = current_store(app)
    now = datetime.now(UTC)
    revoked_id, revoked, digest = new_token()
    store.add_key(ApiKey(revoked_id, "revoked", Role.ANALYST, digest, now - timedelta(days=2)))
    assert store.revoke_key(revoked_id, now - timedelta(days=1))
    expired_id, expired, digest = new_token()
    store.add_key(ApiKey(expired_id, "expired", Role.ANALYST, digest, now - timedelta(days=2), now))
    good = app.state.test_keys["analyst"]
    unknown = "crs_0123456789ab_" + good.split("_", 2)[2]
    wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    assert digest_of(good.split("_", 2)[2]) != digest_of(wrong_secret.split("_", 2)[2])
    answers = []
    for token in (unknown, wrong_secret, "not-a-key", revoked, expired):
        async with _client(app, token) as c:
            response = await c.get("/v1/reports")
        assert response.status_code == 401, token
        body = response.json()
        body.pop("request_id")
        answers.append((body, response.headers["www-authenticate"]))
    assert all(a == answers[0] for a in answers), answers


# --- keys never in URLs, logs, the audit or the database ------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["api_key={token}", "key={token}", "access_token={token}", "cursor={token}", "kind=x&{token}"],
)
async def test_a_key_in_the_query_string_is_refused(
    app: FastAPI, anonymous: httpx.AsyncClient, query: str
) -> None:
    token = app.state.test_keys["analyst"]
    response = await anonymous.get(f"/v1/aggregates?{query.format(token=token)}")
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "header" in response.json()["errors"][0]["reason"]
    assert token not in response.text
    # Words that merely contain "key" are no key (the map style ignores parameters it does not
    # take; every other route with parameters refuses them).
    assert (await anonymous.get("/v1/tiles/style.json?keys_are=here&monkey=1")).status_code == 200


def _stored_text(url: str) -> str:
    """Everything the store holds in its audit log and reports, as text."""
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            rows = conn.execute("SELECT * FROM audit_log").fetchall()
            rows += conn.execute("SELECT * FROM reports").fetchall()
        return repr(rows)
    import psycopg

    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute("SELECT detail::text, key_id FROM audit_log").fetchall()
        rows += conn.execute("SELECT notes, device_id FROM reports").fetchall()
    return repr(rows)


def test_a_key_in_a_url_reaches_neither_the_access_log_nor_the_audit_nor_the_database(
    store_url: str, tmp_path: Any
) -> None:
    from tests.live import auth, live_key, running_server

    analyst = live_key(store_url, "analyst")
    secret = analyst.split("_", 2)[2]
    log = tmp_path / "server.log"
    with (
        running_server(store_url, log_to=log, CROSSINGS_LOG_LEVEL="info") as base,
        httpx.Client(base_url=base, headers=auth(analyst), timeout=30) as c,
    ):
        for path in (
            f"/v1/reports?api_key={analyst}",  # an analyst's read is audited with its query
            f"/v1/aggregates?access_token={analyst}",
            f"/v1/reports?bbox=0,0,1,1&note={analyst}",
            f"/ogc/collections/reports/items?token={analyst}&f=csv",
        ):
            response = c.get(path)
            assert response.status_code == 400, (path, response.text)
        assert c.get("/v1/reports?kind=crossing").status_code == 200  # this one is audited
    text = log.read_text()
    # The access log is on (one line per request, by route template: never a query string).
    logged = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    refused = [e for e in logged if e.get("logger") == "crossings.access" and e["status"] == 400]
    assert len(refused) == 4, text
    assert secret not in text
    stored = _stored_text(store_url)
    assert "kind=crossing" in stored  # the audit is on
    assert secret not in stored


# --- Host header ---------------------------------------------------------------------------------


async def test_a_host_not_allowed_is_refused_and_never_written_into_a_page(
    anonymous: httpx.AsyncClient,
) -> None:
    for path in ("/map", "/ogc", "/v1/tiles.json", "/healthz"):
        response = await anonymous.get(path, headers={"Host": "evil.example"})
        assert response.status_code == 400, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["field"] == "Host"
        assert "evil.example" not in response.text
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "testserver"):
        page = await anonymous.get("/map", headers={"Host": host})
        assert page.status_code == 200, host
        assert f"//{host}/static/" in page.text


async def test_the_public_url_makes_every_link_whatever_the_host(store_url: str) -> None:
    from service.app import create_app
    from tests.conftest import make_settings

    application = create_app(
        make_settings(store_url, public_url="https://crossings.example.org", rate_limit_public=0)
    )
    async with application.router.lifespan_context(application), _client(application) as c:
        page = await c.get("/map", headers={"Host": "evil.example"})
        assert page.status_code == 200
        assert "evil.example" not in page.text
        assert 'src="https://crossings.example.org/static/' in page.text
        ogc = (await c.get("/ogc", headers={"Host": "evil.example"})).json()
        assert all(ln["href"].startswith("https://crossings.example.org/") for ln in ogc["links"])
        tiles = (await c.get("/v1/tiles.json", headers={"Host": "evil.example"})).json()
        assert all(t.startswith("https://crossings.example.org/") for t in tiles["tiles"])


def test_the_public_url_is_an_origin() -> None:
    from pydantic import ValidationError

    from service.settings import Settings

    assert Settings(public_url="https://a.example:8443/").public_url == "https://a.example:8443"
    for bad in ("ftp://a.example", "https://a.example/prefix", "a.example"):
        with pytest.raises(ValidationError):
            Settings(public_url=bad)


# --- CSV formula injection -----------------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://x.example","y")', "+1+2", "-2+3", "@SUM(A1)", "\tx", "\r=1"]


def _csv(text: str) -> list[dict[str, str]]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


async def test_report_csv_cells_never_start_a_formula_and_numbers_stay_numbers(
    client: httpx.AsyncClient,
) -> None:
    for i, note in enumerate(FORMULAS):
        body = report_body(notes=note, device_id="@dev" if i % 2 else "=dev", lon=-73.5172)
        assert (await client.post("/v1/reports", json=body)).status_code == 201
    response = await client.get("/ogc/collections/reports/items?f=csv&limit=100")
    assert response.status_code == 200
    rows = _csv(response.text)
    assert sorted(r["notes"] for r in rows) == sorted("'" + n for n in FORMULAS)
    assert {r["device_id"] for r in rows} == {"'@dev", "'=dev"}
    for row in rows:
        for name, cell in row.items():
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), (name, cell)
            if cell.startswith("-"):
                float(cell)  # only numbers may start with a minus: a negative longitude
        assert float(row["lon"]) == -73.5172


async def test_aggregate_csv_cells_never_start_a_formula(store_url: str) -> None:
    from service.app import create_app
    from tests.conftest import make_settings

    kinds = ("crossing", "=cmd|' /C calc'!A0", "-1", "@x")
    application = create_app(
        make_settings(store_url, report_kinds=",".join(kinds), rate_limit_public=0)
    )
    async with application.router.lifespan_context(application):
        token = make_key(current_store(application), "analyst")
        reporter = make_key(current_store(application), "reporter")
        async with _client(application, reporter) as r:
            for kind in kinds:
                assert (await r.post("/v1/reports", json=report_body(kind=kind))).status_code == 201
        async with _client(application, token) as c:
            for path in (
                "/v1/aggregates?group_by=kind&f=csv",
                "/v1/aggregates?group_by=kind,segment&bucket=day&f=csv",
            ):
                response = await c.get(path)
                assert response.status_code == 200, response.text
                cells = {row["kind"] for row in _csv(response.text)}
                assert {"'=cmd|' /C calc'!A0", "'-1", "'@x", "crossing"} <= cells, cells


def test_a_safe_cell_is_the_text_behind_a_quote_and_numbers_are_untouched() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from service.api.encodings import FORMULA_START, safe_cell

    @given(st.text())
    def text(value: str) -> None:
        cell = safe_cell(value)
        assert not str(cell).startswith(FORMULA_START)
        assert cell == value or cell == "'" + value

    @given(st.integers() | st.floats(allow_nan=False))
    def numbers(value: float) -> None:
        assert safe_cell(value) == value

    text()
    numbers()


# --- every precise read is audited ---------------------------------------------------------------


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    import math

    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def _audited_paths(app: FastAPI) -> list[str]:
    return [str(e.detail.get("path")) for e in current_store(app).list_audit(None, 100_000)]


async def test_point_zoom_tiles_and_aggregates_are_audited_for_analysts(
    app: FastAPI, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    from tests.factories import ROXHAM_ROAD

    assert (await client.post("/v1/reports", json=report_body())).status_code == 201
    points_from = app_state(app).settings.tile_points_min_zoom
    async with _client(app, app.state.test_keys["analyst"]) as analyst:
        for z in (points_from, points_from + 2):
            x, y = _tile_of(*ROXHAM_ROAD, z)
            for suffix in ("mvt", "geojson"):
                path = f"/v1/tiles/{z}/{x}/{y}.{suffix}"
                before = _audited_paths(app).count(path)
                assert (await analyst.get(path)).status_code == 200
                assert _audited_paths(app).count(path) == before + 1, path
                # The public's tiles show no report: not a precise read.
                await anonymous.get(path)
                assert _audited_paths(app).count(path) == before + 1, path
        x, y = _tile_of(*ROXHAM_ROAD, points_from - 2)  # clusters only: not audited
        path = f"/v1/tiles/{points_from - 2}/{x}/{y}.mvt"
        assert (await analyst.get(path)).status_code == 200
        assert path not in _audited_paths(app)
        for path in ("/v1/aggregates", "/v1/segments/{}/timeseries"):
            segment = (await client.get("/v1/reports")).json()["features"][0]["properties"]
            path = path.format(segment["segment_id"])
            before = _audited_paths(app).count(path)
            assert (await analyst.get(path, params={"f": "csv"})).status_code == 200
            assert (await analyst.get(path)).status_code == 200
            assert _audited_paths(app).count(path) == before + 2, path
        before = _audited_paths(app).count("/ogc/collections/reports/items")
        response = await analyst.get("/ogc/collections/reports/items", params={"f": "csv"})
        assert response.status_code == 200
        assert _audited_paths(app).count("/ogc/collections/reports/items") == before + 1


# --- request ids and security headers (one middleware layer) ------------------------------------


async def test_every_answer_carries_a_request_id_and_the_security_headers(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    from uuid import UUID

    async with _client(app, app.state.test_keys["reporter"]) as reporter:
        created = await reporter.post("/v1/reports", json=report_body())
        bad_host = await reporter.get("/healthz", headers={"Host": "evil.example"})
        traced = await reporter.post(
            "/v1/reports", json={"kind": "nonsense"}, headers={"X-Request-ID": "trace-7.a_b"}
        )
        unsafe = await reporter.get("/healthz", headers={"X-Request-ID": "has spaces"})
        again = await reporter.get("/healthz")
    assert [r.status_code for r in (created, bad_host, traced, unsafe, again)] == [
        201, 400, 422, 200, 200
    ]  # fmt: skip
    for response in (created, bad_host, traced, unsafe, again):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert len(response.headers.get_list("x-request-id")) == 1
    # A client's safe id is echoed, in the header and in a problem's body.
    assert traced.headers["x-request-id"] == "trace-7.a_b"
    assert traced.json()["request_id"] == "trace-7.a_b"
    assert bad_host.json()["request_id"] == bad_host.headers["x-request-id"]
    # Otherwise each request gets a fresh random (version 4) UUID, as 32 hex digits.
    made = [r.headers["x-request-id"] for r in (created, bad_host, unsafe, again)]
    assert len(set(made)) == len(made)
    for request_id in made:
        assert UUID(request_id).version == 4 and UUID(request_id).hex == request_id


def test_request_ids_do_not_repeat_across_many_draws() -> None:
    from uuid import UUID

    from service.api.middleware import _request_ids

    drawn = [_request_ids.next_hex() for _ in range(5_000)]  # past several refills
    assert len(set(drawn)) == len(drawn)
    assert all(UUID(h).version == 4 and UUID(h).variant == "specified in RFC 4122" for h in drawn)
