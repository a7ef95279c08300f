"""What real GIS clients need of the API (issue 14): every page of every collection in every
format, keys sent as HTTP Basic, the OGC API definition under its server, numberMatched when
exact, one id column, public CORS, and a style QGIS 3.22 converts. Both stores."""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.api.lifecycle import current_border, current_store
from service.app import create_app
from service.domain.queries import ReportQuery
from tests.conftest import make_settings
from tests.factories import report_body

BASE = datetime(2026, 5, 1, tzinfo=UTC)
FORMATS = ("json", "jsonseq", "csv", "html")
ORIGIN = "https://elsewhere.example"
LISTED = "https://office.example"


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def _post(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/reports/batch", json=bodies)
    assert response.json()["summary"]["created"] == len(bodies), response.text


def _spread(n: int) -> list[dict[str, Any]]:
    """``n`` reports along the CA-US border near Roxham Road, one a minute, kinds in turn."""
    kinds = ("crossing", "attempt", "evidence")
    return [
        report_body(
            lon=-73.9 + 0.8 * i / n, lat=45.0 + 0.001 * (i % 7),
            observed_at=(BASE + timedelta(minutes=i)).isoformat(), kind=kinds[i % 3],
        )
        for i in range(n)
    ]  # fmt: skip


def _ids_of(response: httpx.Response, fmt: str) -> list[str]:
    """The feature ids of a page in any of the four formats."""
    if fmt == "json":
        return [str(f["id"]) for f in response.json()["features"]]
    if fmt == "jsonseq":
        records = [r for r in response.content.split(b"\x1e") if r.strip()]
        return [str(json.loads(r)["id"]) for r in records]
    if fmt == "csv":
        return [row["id"] for row in csv.DictReader(io.StringIO(response.text))]
    body = (
        response.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
        if "<tbody>" in response.text
        else ""
    )
    return re.findall(r"<tr><td>([^<]*)</td>", body)


async def _crawl(client: httpx.AsyncClient, url: str, fmt: str) -> list[str]:
    """Every id from ``url`` on, following each page's next link (the Link header, which every
    format has; for GeoJSON also the body's, which must agree) to the end."""
    seen: list[str] = []
    pages = 0
    next_url: str | None = url
    while next_url is not None:
        response = await client.get(next_url)
        assert response.status_code == 200, response.text
        seen += _ids_of(response, fmt)
        link = response.headers.get("link")
        next_url = re.match(r'<([^>]+)>; rel="next"', link).group(1) if link else None  # type: ignore[union-attr]
        if fmt == "json":
            body_next = [k["href"] for k in response.json()["links"] if k["rel"] == "next"]
            assert body_next == ([next_url] if next_url else [])
        if fmt == "html" and next_url:
            assert next_url.replace("&", "&amp;") in response.text
        pages += 1
        assert pages < 1_000, "paging does not end"
    return seen


@pytest.mark.parametrize("fmt", FORMATS)
async def test_every_page_of_every_collection_in_every_format_has_each_feature_once(
    fmt: str, app: FastAPI, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    bodies = _spread(23)
    await _post(client, bodies)
    reports = [b["id"] for b in bodies]
    segments = [s.segment_id for s in current_border(app).index.segments]
    analyst = {"Authorization": f"Bearer {app.state.test_keys['analyst']}"}
    for limit in (1, 7, 100):
        url = f"/ogc/collections/reports/items?limit={limit}&f={fmt}"
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=analyst
        ) as keyed:
            assert await _crawl(keyed, url, fmt) == reports
        assert (await anonymous.get(url)).status_code == 401
    for limit in (7, 100):  # 457 segments: 66 pages of 7
        url = f"/ogc/collections/segments/items?limit={limit}&f={fmt}"
        assert await _crawl(anonymous, url, fmt) == segments
        assert await _crawl(client, url, fmt) == segments


async def test_filtered_and_boxed_pages_of_both_collections_match_a_direct_read(
    app: FastAPI, client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    await _post(client, _spread(30))
    box = (-73.7, 44.9, -73.3, 45.1)
    url = "/ogc/collections/reports/items?limit=4&kind=attempt&bbox=" + ",".join(map(str, box))
    crawled = await _crawl(client, url, "json")
    page = current_store(app).query_reports(ReportQuery(bbox=box, kind="attempt", limit=10_000))
    assert crawled == [str(r.id) for r in page.reports] and crawled
    url = "/ogc/collections/segments/items?limit=5&border=CA-US&bbox=-80,40,-70,50&f=csv"
    crawled = await _crawl(anonymous, url, "csv")
    whole = (
        await anonymous.get(url.replace("limit=5", "limit=10000").replace("csv", "json"))
    ).json()["features"]
    assert crawled == [f["id"] for f in whole] and len(crawled) > 5


async def test_a_cursor_of_one_collection_is_refused_by_the_other(
    client: httpx.AsyncClient,
) -> None:
    await _post(client, _spread(3))
    reports = (await client.get("/ogc/collections/reports/items?limit=1")).json()
    segments = (await client.get("/ogc/collections/segments/items?limit=1")).json()
    cursor_of = {
        "reports": re.search(
            r"cursor=([^&]+)", next(k for k in reports["links"] if k["rel"] == "next")["href"]
        ),
        "segments": re.search(
            r"cursor=([^&]+)", next(k for k in segments["links"] if k["rel"] == "next")["href"]
        ),
    }
    for collection, other in (("reports", "segments"), ("segments", "reports")):
        token = cursor_of[other].group(1)  # type: ignore[union-attr]
        response = await client.get(f"/ogc/collections/{collection}/items?cursor={token}")
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "cursor"


async def test_a_key_sent_as_the_basic_password_reads_like_a_bearer_key_and_is_audited(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await _post(client, _spread(3))
    key = app.state.test_keys["analyst"]
    caplog.set_level(logging.DEBUG)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        for user in ("qgis", "", "any name"):
            response = await c.get(
                "/ogc/collections/reports/items?limit=2&kind=evidence", headers=_basic(user, key)
            )
            assert response.status_code == 200 and len(response.json()["features"]) == 1
    entries = (await client.get("/v1/audit")).json()["entries"]
    reads = [e for e in entries if e["action"] == "reports.read" and e["role"] == "analyst"]
    assert sum(e["detail"]["query"] == "limit=2&kind=evidence" for e in reads) == 3
    assert key not in caplog.text and key.split("_", 2)[2] not in caplog.text


async def test_a_bad_basic_key_gets_the_same_401_as_any_bad_key_and_a_basic_challenge(
    app: FastAPI,
) -> None:
    key = app.state.test_keys["analyst"]
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    transport = httpx.ASGITransport(app=app)
    url = "/ogc/collections/reports/items"
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        bearer = await c.get(url, headers={"Authorization": f"Bearer {wrong}"})
        answers = [
            await c.get(url, headers=_basic("qgis", wrong)),
            await c.get(url, headers={"Authorization": "Basic bm90IGJhc2U2NA=="[:-3] + "!"}),
            await c.get(url, headers=_basic("qgis", "")),
            await c.get(
                url, headers={"Authorization": "Basic " + base64.b64encode(b"nocolon").decode()}
            ),
        ]
        anonymous = await c.get(url)
    for answer in answers:
        assert answer.status_code == 401
        assert answer.json()["detail"] == bearer.json()["detail"] == "the API key is not valid"
        assert wrong not in answer.text
    for answer in (*answers, anonymous):
        assert 'Basic realm="crossings"' in answer.headers["www-authenticate"]


async def test_the_ogc_api_definition_lists_its_paths_under_its_server(
    client: httpx.AsyncClient,
) -> None:
    doc = (await client.get("/ogc/api")).json()
    assert doc["servers"] == [{"url": "http://testserver/ogc", "description": "OGC API - Features"}]
    assert "/" in doc["paths"] and "/conformance" in doc["paths"]
    assert all(not p.startswith(("/ogc", "/v1")) for p in doc["paths"])
    items = doc["paths"]["/collections/reports/items"]["get"]["parameters"]
    assert {"kind", "direction", "segment_id", "border"} <= {p["name"] for p in items}
    segment_items = doc["paths"]["/collections/segments/items"]["get"]["parameters"]
    assert {"border", "section", "segment_id"} <= {p["name"] for p in segment_items}


async def test_number_matched_is_the_exact_total_on_a_first_page_without_filters(
    client: httpx.AsyncClient,
) -> None:
    await _post(client, _spread(25))
    first = (await client.get("/ogc/collections/reports/items?limit=10")).json()
    assert first["numberMatched"] == 25 and first["numberReturned"] == 10
    newest = await client.get("/ogc/collections/reports/items?limit=10&sortby=-observed_at")
    assert newest.json()["numberMatched"] == 25
    later = (await client.get(next(k["href"] for k in first["links"] if k["rel"] == "next"))).json()
    assert "numberMatched" not in later  # clients read it from the first page
    filtered = (await client.get("/ogc/collections/reports/items?limit=3&kind=attempt")).json()
    assert "numberMatched" not in filtered  # not known without counting
    whole = (await client.get("/ogc/collections/reports/items?limit=100&kind=attempt")).json()
    assert whole["numberMatched"] == whole["numberReturned"] == 8  # one page: free


async def test_number_matched_of_a_box_when_given_is_exact(
    app: FastAPI, client: httpx.AsyncClient, store_url: str
) -> None:
    await _post(client, _spread(40))
    boxes = [(-75.0, 44.0, -72.0, 46.0), (-73.6, 44.99, -73.4, 45.01), (-73.5, 45.0, -73.45, 45.01),
             (-73.901, 44.9, -73.7, 45.1), (-100.0, 20.0, -60.0, 60.0)]  # fmt: skip
    given = 0
    for box in boxes:
        bbox = ",".join(map(str, box))
        page = (await client.get(f"/ogc/collections/reports/items?limit=2&bbox={bbox}")).json()
        truth = current_store(app).query_reports(ReportQuery(bbox=box, limit=10_000)).reports
        if "numberMatched" in page:
            given += 1
            assert page["numberMatched"] == len(truth), box
    # A box around all the data is counted from the rollups on PostGIS (SQLite does not count).
    assert given >= (2 if store_url.startswith("postgresql") else 0)


async def test_gis_tools_get_one_id_column_for_reports(client: httpx.AsyncClient) -> None:
    await _post(client, _spread(1))
    schema = (await client.get("/ogc/collections/reports/schema")).json()
    assert "id" not in schema["properties"]["properties"]["properties"]
    assert schema["properties"]["id"] == {"type": "string"}
    feature = (await client.get("/ogc/collections/reports/items")).json()["features"][0]
    assert feature["id"] == feature["properties"]["id"]  # the property stays, for QGIS


PUBLIC_READS = (
    "/ogc/collections/segments/items?limit=2",
    "/v1/segments",
    "/v1/tiles.json",
    "/v1/tiles/style.json",
    "/v1/tiles/6/18/22.mvt",
    "/v1/aggregates?group_by=segment",
)


async def test_key_less_reads_answer_any_origin_without_credentials(
    anonymous: httpx.AsyncClient,
) -> None:
    for path in PUBLIC_READS:
        response = await anonymous.get(path, headers={"Origin": ORIGIN})
        assert response.status_code in (200, 204), (path, response.text)
        assert response.headers["access-control-allow-origin"] == "*", path
        assert "access-control-allow-credentials" not in response.headers
    preflight = await anonymous.options(
        "/v1/tiles/6/18/22.mvt",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "if-none-match"},
    )  # fmt: skip
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"


async def test_keyed_requests_from_an_unlisted_origin_are_not_granted(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    keyed = await client.get("/ogc/collections/segments/items", headers={"Origin": ORIGIN})
    assert keyed.status_code == 200 and "access-control-allow-origin" not in keyed.headers
    for asked in ("authorization", "x-api-key", "Content-Type, Authorization"):
        preflight = await client.options(
            "/ogc/collections/reports/items",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                     "Access-Control-Request-Headers": asked},
        )  # fmt: skip
        assert preflight.status_code == 403
        assert "access-control-allow-origin" not in preflight.headers
    post = await client.options(
        "/v1/reports", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert post.status_code == 403 and "access-control-allow-origin" not in post.headers


@pytest.fixture(scope="module")
async def listed_app(store_url: str) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        store_url, cors_origins=(LISTED,), rate_limit_public=0, rate_limit_per_key=0
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def test_keyed_cross_origin_use_is_opt_in_for_listed_origins(
    listed_app: FastAPI, app: FastAPI
) -> None:
    key = app.state.test_keys["analyst"]
    transport = httpx.ASGITransport(app=listed_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        preflight = await c.options(
            "/ogc/collections/reports/items",
            headers={"Origin": LISTED, "Access-Control-Request-Method": "GET",
                     "Access-Control-Request-Headers": "authorization"},
        )  # fmt: skip
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == LISTED
        keyed = await c.get(
            "/ogc/collections/reports/items",
            headers={"Origin": LISTED, "Authorization": f"Bearer {key}"},
        )
        assert keyed.status_code == 200
        assert keyed.headers["access-control-allow-origin"] == LISTED
        public = await c.get("/v1/segments", headers={"Origin": ORIGIN})
        assert public.headers["access-control-allow-origin"] == "*"


def _expressions(value: Any) -> list[str]:
    """The operators of every expression in a paint or layout value."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [value[0], *(op for v in value[1:] for op in _expressions(v))]
    if isinstance(value, list):
        return [op for v in value for op in _expressions(v)]
    return []


async def test_the_style_is_data_driven_through_filters_only(anonymous: httpx.AsyncClient) -> None:
    """QGIS 3.22's converter drops ``interpolate``/``match``/``step`` over properties: every
    class is a layer with a filter and constant colours; only zoom is interpolated."""
    style = (await anonymous.get("/v1/tiles/style.json")).json()
    layers = style["layers"]
    assert all(layer["type"] != "background" for layer in layers)
    for layer in layers:
        for value in {**layer.get("paint", {}), **layer.get("layout", {})}.values():
            ops = _expressions(value)
            assert "get" not in ops and "match" not in ops and "step" not in ops, layer["id"]
            if "interpolate" in ops:
                assert value[2] == ["zoom"], layer["id"]
    colours = {layer["paint"]["line-color"] for layer in layers if layer["type"] == "line"}
    assert len(colours) == 5 and all(lyr["filter"] for lyr in layers if lyr["type"] == "line")
    kinds = {lyr["id"] for lyr in layers if lyr["id"].startswith("points-")}
    assert {"points-crossing", "points-attempt", "points-*"} <= kinds
