"""OGC API - Features: documents, items paging and filters, encodings, create, errors."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from service.app import create_app
from tests.conftest import make_settings
from tests.factories import report_body, report_feature_body
from tests.problems import refused_fields

BASE = datetime(2026, 3, 1, tzinfo=UTC)


async def _post(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/reports/batch", json=bodies)
    assert response.json()["summary"]["created"] == len(bodies)


def _href(doc: dict[str, Any], rel: str, media: str | None = None) -> str | None:
    for link in doc["links"]:
        if link["rel"] == rel and (media is None or link["type"] == media):
            return str(link["href"])
    return None


def _must_href(doc: dict[str, Any], rel: str, media: str | None = None) -> str:
    href = _href(doc, rel, media)
    assert href is not None, (rel, media, doc["links"])
    return href


async def test_landing_page_links_the_api_conformance_and_data(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/ogc")).json()
    rels = {link["rel"] for link in doc["links"]}
    assert {"self", "service-desc", "service-doc", "conformance", "data"} <= rels
    desc = await client.get(_must_href(doc, "service-desc"))
    assert "/collections/reports/items" in desc.json()["paths"]  # relative to servers: /ogc


async def test_conformance_declares_only_what_is_passed(client: httpx.AsyncClient) -> None:
    classes = (await client.get("/ogc/conformance")).json()["conformsTo"]
    part1 = [c for c in classes if "ogcapi-features-1/" in c]  # Part 3: test_ogc_filter.py
    assert {c.rsplit("/", 1)[1] for c in part1} == {"core", "geojson", "html"}


async def test_collections_have_spatial_and_temporal_extents(client: httpx.AsyncClient) -> None:
    await _post(
        client,
        [
            report_body(observed_at=BASE.isoformat()),
            report_body(lon=-73.4, observed_at=(BASE + timedelta(days=2)).isoformat()),
        ],
    )
    collections = {c["id"]: c for c in (await client.get("/ogc/collections")).json()["collections"]}
    reports = collections["reports"]["extent"]
    assert reports["spatial"]["bbox"] == [[-73.5172, 45.0071, -73.4, 45.0071]]
    assert reports["temporal"]["interval"] == [["2026-03-01T00:00:00Z", "2026-03-03T00:00:00Z"]]
    assert collections["segments"]["extent"]["spatial"]["bbox"][0][1] < 32


async def test_paging_follows_next_links_and_counts_match(client: httpx.AsyncClient) -> None:
    bodies = [report_body(observed_at=(BASE + timedelta(minutes=i)).isoformat()) for i in range(23)]
    await _post(client, bodies)
    url: str | None = "/ogc/collections/reports/items?limit=10"
    seen: list[str] = []
    first: dict[str, Any] | None = None
    while url:
        page: dict[str, Any] = (await client.get(url)).json()
        first = first or page
        assert page["numberReturned"] == len(page["features"])
        seen += [f["id"] for f in page["features"]]
        url = _href(page, "next")
    assert first is not None and first["numberMatched"] == 23  # no filter: from the rollups
    assert seen == [b["id"] for b in bodies]
    whole = (await client.get("/ogc/collections/reports/items?limit=50")).json()
    assert whole["numberMatched"] == whole["numberReturned"] == 23


async def test_next_and_alternate_links_keep_every_other_parameter(
    client: httpx.AsyncClient,
) -> None:
    await _post(client, [report_body(observed_at=(BASE + timedelta(minutes=i)).isoformat(),
                                     kind="attempt") for i in range(3)])  # fmt: skip
    query = "kind=attempt&direction=&f=json&limit=1&datetime=2026-03-01T00:00:00Z/.."
    page = (await client.get(f"/ogc/collections/reports/items?{query}")).json()
    following = httpx.URL(_href(page, "next") or "")
    assert following.params.multi_items()[:-1] == [
        (k, v) for k, v in httpx.QueryParams(query).multi_items() if k != "cursor"
    ]
    assert following.params.multi_items()[-1][0] == "cursor"
    csv_link = httpx.URL(_href(page, "alternate", "text/csv") or "")
    assert csv_link.params.multi_items() == [
        *[(k, v) for k, v in httpx.QueryParams(query).multi_items() if k != "f"],
        ("f", "csv"),
    ]
    second = (await client.get(str(following))).json()
    assert second["features"][0]["id"] != page["features"][0]["id"]
    assert "cursor" in str(httpx.URL(_href(second, "next") or "").params)
    assert str(httpx.URL(_href(second, "next") or "").params).count("cursor=") == 1


async def test_datetime_instant_and_intervals(client: httpx.AsyncClient) -> None:
    bodies = [report_body(observed_at=(BASE + timedelta(days=d)).isoformat()) for d in range(4)]
    await _post(client, bodies)
    cases = {
        "2026-03-02T00:00:00Z": [1],
        "2026-03-02T00:00:00Z/2026-03-03T00:00:00Z": [1, 2],  # closed interval: both ends
        "../2026-03-01T00:00:00Z": [0],
        "2026-03-03T00:00:00Z/..": [2, 3],
        "2026-03-02": [1],
        "../..": [0, 1, 2, 3],
    }
    for value, expected in cases.items():
        page = (
            await client.get("/ogc/collections/reports/items", params={"datetime": value})
        ).json()
        assert [f["id"] for f in page["features"]] == [bodies[i]["id"] for i in expected], value


async def test_bbox_property_filters_sort_and_selection(client: httpx.AsyncClient) -> None:
    roxham = report_body(kind="attempt", direction="US", observed_at=BASE.isoformat())
    later = report_body(
        kind="attempt", direction="US", observed_at=(BASE + timedelta(hours=1)).isoformat()
    )
    mexico = report_body(lon=-117.02972, lat=32.54333, kind="attempt", direction="US")
    await _post(client, [roxham, later, mexico])
    params = {"bbox": "-74,44,-73,46", "kind": "attempt", "direction": "US", "border": "CA-US",
              "sortby": "-observed_at", "properties": "kind,segment_id"}  # fmt: skip
    page = (await client.get("/ogc/collections/reports/items", params=params)).json()
    assert [f["id"] for f in page["features"]] == [later["id"], roxham["id"]]
    assert page["features"][0]["properties"] == {"kind": "attempt", "segment_id": "CA-US-0208"}
    by_border = (await client.get("/ogc/collections/reports/items?border=MX-US")).json()
    assert [f["id"] for f in by_border["features"]] == [mexico["id"]]


async def test_item_by_id_and_unknowns_are_404(client: httpx.AsyncClient) -> None:
    body = report_body()
    await _post(client, [body])
    item = await client.get(f"/ogc/collections/reports/items/{body['id']}")
    assert item.status_code == 200 and item.headers["content-type"] == "application/geo+json"
    assert item.json()["id"] == body["id"]
    segment = (await client.get("/ogc/collections/segments/items/CA-US-0208")).json()
    assert segment["properties"]["region_pair"] == "Québec / New York + Vermont"
    for url in ("/ogc/collections/nope", "/ogc/collections/nope/items",
                "/ogc/collections/reports/items/not-a-uuid", "/ogc/collections/segments/items/XX"):  # fmt: skip
        response = await client.get(url)
        assert response.status_code == 404, url
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "query, field",
    [
        ("bbox=1,2,3,4,5,6", "bbox"),
        ("bbox=1,2,3", "bbox"),
        ("bbox-crs=EPSG:3857", "bbox-crs"),
        ("datetime=yesterday", "datetime"),
        ("datetime=2026-03-02T00:00:00Z/2026-03-01T00:00:00Z", "datetime"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("sortby=kind", "sortby"),
        ("properties=name", "properties"),
        ("colour=red", "colour"),
        ("f=xml", "f"),
        ("cursor=zzz", "cursor"),
    ],
)
async def test_bad_items_parameter_is_400_naming_it(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    response = await client.get(f"/ogc/collections/reports/items?{query}")
    assert refused_fields(response) == [field]


async def test_an_unknown_items_parameter_names_the_documented_ones(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/ogc/collections/segments/items?colour=red")
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["field"] == "colour"
    known = error["reason"].removeprefix("is not a parameter of this resource (known: ")
    assert known.rstrip(")").split(", ") == sorted(
        ["bbox", "bbox-crs", "datetime", "limit", "sortby", "properties", "f", "cursor",
         "border", "section", "segment_id"]
    )  # fmt: skip


async def test_the_documented_page_maximum_is_the_setting(store_url: str) -> None:
    application = create_app(
        make_settings(store_url, page_max_items=500, rate_limit_public=0, webhook_worker=False)
    )
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://testserver"
        ) as c,
    ):
        doc = (await c.get("/openapi.json")).json()
        for path in ("/v1/reports", "/ogc/collections/reports/items",
                     "/ogc/collections/segments/items"):  # fmt: skip
            (limit,) = [p for p in doc["paths"][path]["get"]["parameters"] if p["name"] == "limit"]
            assert limit["schema"]["maximum"] == 500, path
        assert (await c.get("/ogc/collections/segments/items?limit=500")).status_code == 200
        refused = await c.get("/ogc/collections/segments/items?limit=501")
        assert refused.status_code == 400 and refused.json()["errors"][0]["field"] == "limit"


async def test_segment_properties_are_flat(client: httpx.AsyncClient) -> None:
    page = (await client.get("/ogc/collections/segments/items?limit=500")).json()
    assert page["numberReturned"] == 478 and page["numberMatched"] == 478
    for feature in page["features"]:
        assert not any(isinstance(v, dict | list) for v in feature["properties"].values())


async def test_html_csv_and_geojson_seq_encodings(client: httpx.AsyncClient) -> None:
    bodies = [report_body(observed_at=(BASE + timedelta(minutes=i)).isoformat()) for i in range(3)]
    await _post(client, bodies)
    page = await client.get("/ogc/collections/reports/items", headers={"Accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html") and bodies[0]["id"] in page.text
    rows = list(
        csv.DictReader(io.StringIO((await client.get("/ogc/collections/reports/items?f=csv")).text))
    )
    assert [r["id"] for r in rows] == [b["id"] for b in bodies]
    assert float(rows[0]["lon"]) == -73.5172 and rows[0]["segment_id"] == "CA-US-0208"
    seq = await client.get(
        "/ogc/collections/reports/items", headers={"Accept": "application/geo+json-seq"}
    )
    records = [r for r in seq.content.split(b"\x1e") if r]
    assert len(records) == 3 and all(r.endswith(b"\n") for r in records)
    landing = await client.get("/ogc?f=html")
    assert landing.headers["content-type"].startswith("text/html")


async def test_create_through_ogc_follows_the_same_rules(client: httpx.AsyncClient) -> None:
    body = report_feature_body()
    created = await client.post("/ogc/collections/reports/items", json=body)
    assert created.status_code == 201
    report_id = body["properties"]["id"]
    assert created.headers["location"].endswith(f"/ogc/collections/reports/items/{report_id}")
    assert (await client.post("/ogc/collections/reports/items", json=body)).status_code == 200
    body["properties"]["people_count"] = 99
    assert (await client.post("/ogc/collections/reports/items", json=body)).status_code == 409
    bad = report_feature_body(kind="stroll")
    response = await client.post("/ogc/collections/reports/items", json=bad)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "properties.kind"


async def test_service_description_is_valid_openapi_30(client: httpx.AsyncClient) -> None:
    from openapi_spec_validator import validate

    landing = (await client.get("/ogc")).json()
    response = await client.get(
        _must_href(landing, "service-desc", "application/vnd.oai.openapi+json;version=3.0")
    )
    assert response.headers["content-type"] == "application/vnd.oai.openapi+json;version=3.0"
    doc = response.json()
    assert doc["openapi"].startswith("3.0.")
    validate(doc)  # raises on anything that is not OpenAPI 3.0
    assert "/collections/reports/items" in doc["paths"]  # relative to its servers entry


_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
}


@pytest.mark.parametrize("collection", ["reports", "segments"])
async def test_schema_types_every_property_of_every_item(
    client: httpx.AsyncClient, collection: str
) -> None:
    """The describedby schema names each property an item carries (every one, for reports; a
    segment carries only the attributes the border file gives it), with a type its values have;
    only properties marked nullable are ever null."""
    bodies = [report_body(observed_at=(BASE + timedelta(minutes=i)).isoformat()) for i in range(3)]
    bodies[0].pop("accuracy_m", None)
    await _post(client, bodies)
    meta = (await client.get(f"/ogc/collections/{collection}")).json()
    href = _href(meta, "describedby", "application/schema+json")
    assert href is not None
    response = await client.get(href)
    assert response.headers["content-type"] == "application/schema+json"
    props = response.json()["properties"]["properties"]["properties"]
    items = (await client.get(f"/ogc/collections/{collection}/items?limit=1000")).json()
    assert items["features"]
    for feature in items["features"]:
        names = list(feature["properties"])
        if collection == "reports":
            # The id property is the feature's own id, typed at the top of the schema: a property
            # of that name as well made GDAL add a second, empty id column (id2).
            assert names == ["id", *props] and feature["properties"]["id"] == feature["id"]
            assert response.json()["properties"]["id"] == {"type": "string"}
        else:
            assert set(names) <= set(props)
        for name, value in feature["properties"].items():
            if name == "id" and collection == "reports":
                continue
            if value is None:
                assert props[name].get("nullable") is True, name
            else:
                assert isinstance(value, _JSON_TYPES[props[name]["type"]]), (name, value)
    unknown = await client.get("/ogc/collections/nope/schema")
    assert unknown.status_code == 404
