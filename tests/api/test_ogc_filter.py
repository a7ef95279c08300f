"""OGC API - Features Part 3 (Filtering) on the reports: queryables, conformance, CQL2 text and
JSON filters with the other parameters and paging, and every bad filter refused as a 400 that
names the parameter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api import cql2
from service.domain.errors import InvalidParameter
from tests.factories import report_body

BASE = datetime(2026, 3, 1, tzinfo=UTC)
ITEMS = "/ogc/collections/reports/items"


async def _post(client: httpx.AsyncClient, bodies: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/reports/batch", json=bodies)
    assert response.json()["summary"]["created"] == len(bodies)


async def _ids(client: httpx.AsyncClient, **params: str) -> list[str]:
    response = await client.get(ITEMS, params={"limit": "1000", **params})
    assert response.status_code == 200, response.text
    return [f["id"] for f in response.json()["features"]]


def _sample() -> list[dict[str, Any]]:
    """Six reports: kinds, directions, people, times and places that the filters below tell
    apart (two near Roxham Road, one at Tijuana, one with no direction and notes)."""
    at = [(BASE + timedelta(hours=h)).isoformat() for h in range(6)]
    return [
        report_body(observed_at=at[0], kind="attempt", people_count=5, direction="US"),
        report_body(observed_at=at[1], kind="attempt", people_count=2, direction="CA"),
        report_body(observed_at=at[2], kind="crossing", people_count=7, direction="US",
                    lon=-73.4, lat=45.01),
        report_body(observed_at=at[3], kind="evidence", people_count=1, direction=None,
                    notes="it's a boot", accuracy_m=None),
        report_body(observed_at=at[4], kind="attempt", people_count=4, direction="US",
                    lon=-117.02972, lat=32.54333),
        report_body(observed_at=at[5], kind="crossing", people_count=3, direction="CA"),
    ]  # fmt: skip


async def test_queryables_name_every_filter_property_with_types_and_enums(
    client: httpx.AsyncClient,
) -> None:
    collection = (await client.get("/ogc/collections/reports")).json()
    links = {link["rel"]: link["href"] for link in collection["links"]}
    href = links["http://www.opengis.net/def/rel/ogc/1.0/queryables"]
    assert links["queryables"] == href
    response = await client.get(href)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/schema+json"
    doc = response.json()
    props = doc["properties"]
    assert props["geometry"]["format"] == "geometry-point"
    assert props["observed_at"] == {"title": "observed_at", "type": "string",
                                    "format": "date-time", "x-ogc-role": "primary-instant"}  # fmt: skip
    assert props["people_count"]["type"] == "integer"
    assert props["accuracy_m"]["type"] == "number"
    assert "crossing" in props["kind"]["enum"]
    assert {"CA", "US", "MX"} <= set(props["direction"]["enum"])
    assert props["side"]["enum"] == props["direction"]["enum"]
    assert props["snap_status"]["enum"] == ["snapped", "beyond_max_distance"]
    assert doc["additionalProperties"] is False
    # GDAL 3.6 asks for JSON only, and reads the draft's list of ids
    as_json = await client.get(href, headers={"Accept": "application/geo+json, application/json"})
    assert as_json.headers["content-type"] == "application/json"
    assert {q["id"] for q in as_json.json()["queryables"]} == set(props)


async def test_segments_have_no_queryables(client: httpx.AsyncClient) -> None:
    assert (await client.get("/ogc/collections/segments/queryables")).status_code == 404


async def test_conformance_declares_filtering(client: httpx.AsyncClient) -> None:
    classes = set((await client.get("/ogc/conformance")).json()["conformsTo"])
    part3 = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/"
    cql2 = "http://www.opengis.net/spec/cql2/1.0/conf/"
    assert {part3 + c for c in ("queryables", "filter", "features-filter")} <= classes
    assert {cql2 + c for c in ("cql2-text", "cql2-json", "basic-cql2",
                               "advanced-comparison-operators", "basic-spatial-functions",
                               "basic-spatial-functions-plus")} <= classes  # fmt: skip
    assert cql2 + "temporal-functions" not in classes  # only some temporal operators


async def test_the_openapi_document_lists_the_filter_parameters(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/ogc/api")).json()["paths"]
    (items,) = [p for name, p in paths.items() if name.endswith("/collections/reports/items")]
    params = {p["name"]: p for p in items["get"]["parameters"]}
    assert {"filter", "filter-lang", "filter-crs"} <= set(params)
    assert "cql-text" in params["filter-lang"]["schema"]["enum"]  # what GDAL 3.6 looks for


TEXT_CASES = {
    "kind = 'attempt' AND people_count > 3": [0, 4],
    "(kind = 'attempt') AND (people_count > 3)": [0, 4],  # as GDAL writes it
    "kind <> 'attempt'": [2, 3, 5],
    "direction <> 'US'": [1, 5],  # a report without a direction is not "not US"
    "NOT direction = 'US'": [1, 5],
    "direction IS NULL": [3],
    "direction IS NOT NULL AND people_count <= 2": [1],
    "kind IN ('crossing', 'evidence')": [2, 3, 5],
    "kind NOT IN ('crossing', 'evidence')": [0, 1, 4],
    "people_count BETWEEN 2 AND 4": [1, 4, 5],
    "people_count NOT BETWEEN 2 AND 4": [0, 2, 3],
    "3 < people_count": [0, 2, 4],
    "people_count >= 4.5": [0, 2],
    "kind = 'attempt' OR people_count = 7": [0, 1, 2, 4],
    "notes = 'it''s a boot'": [3],
    "notes LIKE 'it_s%'": [3],
    "notes LIKE 'IT%'": [],  # case-sensitive
    "accuracy_m IS NULL": [3],
    "observed_at >= TIMESTAMP('2026-03-01T03:00:00Z')": [3, 4, 5],
    "observed_at < '2026-03-01T01:00:00Z'": [0],  # as GDAL sends a time
    "T_AFTER(observed_at, TIMESTAMP('2026-03-01T03:00:00Z'))": [4, 5],
    "T_BEFORE(observed_at, TIMESTAMP('2026-03-01T01:00:00Z'))": [0],
    "T_INTERSECTS(observed_at, INTERVAL('2026-03-01T01:00:00Z', '2026-03-01T03:00:00Z'))": [
        1,
        2,
        3,
    ],
    "T_DURING(observed_at, INTERVAL('2026-03-01T01:00:00Z', '2026-03-01T03:00:00Z'))": [2],
    "T_INTERSECTS(observed_at, DATE('2026-03-01'))": [0, 1, 2, 3, 4, 5],
    "T_INTERSECTS(observed_at, INTERVAL('2026-03-01T04:00:00Z', '..'))": [4, 5],
    "T_INTERSECTS(observed_at, INTERVAL('..', '2026-02-28'))": [],
    "T_DURING(observed_at, INTERVAL('2026-03-01', '2026-03-01T02:00:00Z'))": [1],
    "T_INTERSECTS(observed_at, DATE('2026-03-02'))": [],
    "T_EQUALS(observed_at, TIMESTAMP('2026-03-01T02:00:00Z'))": [2],
    "S_INTERSECTS(geometry, BBOX(-74, 44, -73, 46))": [0, 1, 2, 3, 5],
    "S_INTERSECTS(geometry, POLYGON((-73.45 44.9, -73.3 44.9, -73.3 45.1, -73.45 45.1, -73.45 44.9)))": [
        2
    ],
    "S_INTERSECTS(geometry, POINT(-73.4 45.01))": [2],
    "S_DISJOINT(geometry, BBOX(-74, 44, -73, 46))": [4],
    "BBOX(geometry, -118, 32, -116, 33)": [4],
    "S_INTERSECTS(geometry, MULTIPOLYGON(((-118 32, -116 32, -116 33, -118 33, -118 32)), ((-73.45 44.9, -73.3 45.1, -73.45 45.1, -73.45 44.9))))": [
        2,
        4,
    ],
}


@pytest.mark.parametrize("text", list(TEXT_CASES))
async def test_cql2_text_filters_select_exactly_the_matching_reports(
    client: httpx.AsyncClient, text: str
) -> None:
    bodies = _sample()
    await _post(client, bodies)
    expected = [bodies[i]["id"] for i in TEXT_CASES[text]]
    assert await _ids(client, filter=text) == expected
    assert await _ids(client, filter=text, **{"filter-lang": "cql-text"}) == expected


JSON_CASES: list[tuple[dict[str, Any], list[int]]] = [
    ({"op": "and", "args": [{"op": "=", "args": [{"property": "kind"}, "attempt"]},
                            {"op": ">", "args": [{"property": "people_count"}, 3]}]}, [0, 4]),
    ({"op": "between", "args": [{"property": "people_count"}, 2, 4]}, [1, 4, 5]),
    ({"op": "in", "args": [{"property": "kind"}, ["crossing", "evidence"]]}, [2, 3, 5]),
    ({"op": "isNull", "args": [{"property": "direction"}]}, [3]),
    ({"op": "not", "args": [{"op": "like", "args": [{"property": "kind"}, "att%"]}]}, [2, 3, 5]),
    ({"op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": [-118, 32, -116, 33]}]},
     [4]),
    ({"op": "s_intersects", "args": [{"property": "geometry"}, {"type": "Polygon", "coordinates":
      [[[-73.45, 44.9], [-73.3, 45.1], [-73.45, 45.1], [-73.45, 44.9]]]}]}, [2]),
    ({"op": "t_intersects", "args": [{"property": "observed_at"},
                                     {"interval": ["2026-03-01T04:00:00Z", ".."]}]}, [4, 5]),
    ({"op": "t_during", "args": [{"property": "observed_at"},
                                 {"interval": ["2026-03-01T01:00:00Z", "2026-03-01T03:00:00Z"]}]},
     [2]),
    ({"op": "t_after", "args": [{"property": "observed_at"},
                                {"timestamp": "2026-03-01T04:00:00Z"}]}, [5]),
]  # fmt: skip


@pytest.mark.parametrize("case", JSON_CASES, ids=[c[0]["op"] for c in JSON_CASES])
async def test_cql2_json_filters_select_exactly_the_matching_reports(
    client: httpx.AsyncClient, case: tuple[dict[str, Any], list[int]]
) -> None:
    doc, indices = case
    bodies = _sample()
    await _post(client, bodies)
    got = await _ids(client, filter=json.dumps(doc), **{"filter-lang": "cql2-json"})
    assert got == [bodies[i]["id"] for i in indices]


async def test_a_filter_combines_with_bbox_datetime_and_the_other_parameters(
    client: httpx.AsyncClient,
) -> None:
    bodies = _sample()
    await _post(client, bodies)
    got = await _ids(
        client,
        filter="people_count > 1",
        bbox="-74,44,-73,46",
        datetime="2026-03-01T01:00:00Z/..",
        direction="CA",
        sortby="-observed_at",
    )
    assert got == [bodies[5]["id"], bodies[1]["id"]]


async def test_paging_with_a_filter_is_exact(client: httpx.AsyncClient) -> None:
    bodies = [
        report_body(observed_at=(BASE + timedelta(minutes=i // 2)).isoformat(),
                    people_count=1 + i % 5, kind=["attempt", "crossing"][i % 2])
        for i in range(60)
    ]  # fmt: skip
    await _post(client, bodies)
    expected = sorted(
        (b["observed_at"], b["id"])
        for b in bodies
        if b["people_count"] >= 3 or b["kind"] == "attempt"
    )
    for query in ("limit=7", "limit=7&bbox=-74,44,-73,46", "limit=4&sortby=-observed_at"):
        url: str | None = f"{ITEMS}?{query}&filter=people_count >= 3 OR kind = 'attempt'"
        seen = []
        while url:
            page = (await client.get(url)).json()
            seen += [f["id"] for f in page["features"]]
            url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
            assert url is None or "filter=" in url
        want = [i for _, i in expected]
        assert seen == (want[::-1] if "-observed_at" in query else want), query


BAD_FILTERS = [
    ({"filter": "colour = 'red'"}, "filter", "unknown property 'colour'"),
    ({"filter": "kind = "}, "filter", "not valid CQL2 text"),
    ({"filter": "kind = 'a' AND"}, "filter", "not valid CQL2 text"),
    ({"filter": "people_count = 'three'"}, "filter", "people_count takes a number"),
    ({"filter": "kind = 3"}, "filter", "kind takes text"),
    ({"filter": "kind = kind"}, "filter", "another property"),
    ({"filter": "people_count + 1 > 3"}, "filter", "compares no property"),
    ({"filter": "upper(kind) = 'A'"}, "filter", "functions are not supported"),
    ({"filter": "id = 'not-a-uuid'"}, "filter", "not a UUID"),
    ({"filter": "observed_at > 'yesterday'"}, "filter", "not a date"),
    ({"filter": "people_count LIKE '3%'"}, "filter", "LIKE applies to text"),
    ({"filter": "kind LIKE 'a\\'"}, "filter", "lone escape"),
    ({"filter": "S_WITHIN(geometry, BBOX(-74, 44, -73, 46))"}, "filter", "not supported"),
    ({"filter": "S_INTERSECTS(geometry, BBOX(-73, 44, -74, 46))"}, "filter", "antimeridian"),
    ({"filter": "S_INTERSECTS(geometry, POLYGON((0 0, 1 1, 1 0, 0 1, 0 0)))"}, "filter",
     "not valid"),
    ({"filter": "S_INTERSECTS(kind, BBOX(-74, 44, -73, 46))"}, "filter", "geometry"),
    ({"filter": "geometry = 'x'"}, "filter", "S_INTERSECTS"),
    ({"filter": "T_MEETS(observed_at, TIMESTAMP('2026-03-01T00:00:00Z'))"}, "filter",
     "T_MEETS"),
    ({"filter": "T_OVERLAPS(observed_at, INTERVAL('2026-03-01T00:00:00Z', '2026-03-02T00:00:00Z'))"},
     "filter", "T_OVERLAPS"),
    ({"filter": "T_AFTER(kind, TIMESTAMP('2026-03-01T00:00:00Z'))"}, "filter", "temporal"),
    ({"filter": "people_count > 1e999"}, "filter", "finite"),
    ({"filter": ""}, "filter", "empty"),
    ({"filter": "(" * 60 + "kind = 'a'" + ")" * 60}, "filter", "nested too deeply"),
    ({"filter": "kind = '" + "a" * 20_000 + "'"}, "filter", "longer than"),
    ({"filter": " OR ".join(f"people_count = {i}" for i in range(300))}, "filter",
     "more than 256"),
    ({"filter": "S_INTERSECTS(geometry, POLYGON((" + ", ".join(
        f"{i / 1000} {(i % 2) / 1000}" for i in range(1_100)) + ", 0 0)))"}, "filter",
     "vertices"),
    ({"filter": "observed_at > DATE('2026-02-30')"}, "filter", "day is out of range"),
    ({"filter": "kind = - 'a'"}, "filter", "not valid CQL2 text"),
    ({"filter": "S_INTERSECTS(geometry, SRID=3857;POINT(0 0))"}, "filter", "SRID"),
    ({"filter": "T_DURING(observed_at, INTERVAL('2026-03-02', '2026-03-01'))"}, "filter",
     "ends before it starts"),
    ({"filter": "kind = 'a'", "filter-lang": "sql"}, "filter-lang", "one of"),
    ({"filter": '{"filter-lang": "x"}', "filter-lang": "cql2-json"}, "filter",
     "not valid CQL2 JSON"),
    ({"filter": "kind = 'a'", "filter-crs": "http://www.opengis.net/def/crs/EPSG/0/3857"},
     "filter-crs", "CRS84"),
    ({"filter": "{", "filter-lang": "cql2-json"}, "filter", "not valid JSON"),
    ({"filter": '{"op": "=", "args": [{"property": "colour"}, 1]}', "filter-lang": "cql2-json"},
     "filter", "unknown property"),
    ({"filter": '{"op": "nope", "args": []}', "filter-lang": "cql2-json"}, "filter",
     "not valid CQL2 JSON"),
    ({"filter": '{"op": "in", "args": [{"property": "kind"}, []]}', "filter-lang": "cql2-json"},
     "filter", "IN takes"),
    ({"filter": '{"op": "not", "args": [' * 60 + '{"op": "isNull", "args": [{"property": "kind"}]}'
      + "]}" * 60, "filter-lang": "cql2-json"}, "filter", "nested too deeply"),
    ({"filter": '"kind"', "filter-lang": "cql2-json"}, "filter", "JSON object"),
]  # fmt: skip


@pytest.mark.parametrize("params, field, reason", BAD_FILTERS, ids=range(len(BAD_FILTERS)))
async def test_a_bad_filter_is_a_400_naming_the_parameter_and_the_reason(
    client: httpx.AsyncClient, params: dict[str, str], field: str, reason: str
) -> None:
    response = await client.get(ITEMS, params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    (error,) = response.json()["errors"]
    assert error["field"] == field
    assert reason in error["reason"], error["reason"]


TOKENS = ["kind", "people_count", "observed_at", "geometry", "notes", "=", "<>", "<", ">=",
          "AND", "OR", "NOT", "(", ")", ",", "'", "'a'", "3", "-1.5", "1e999", "-", "+", "*",
          "IN", "BETWEEN", "LIKE", "IS", "NULL", "TRUE", "INCLUDE", "''", "\\", "%",
          "TIMESTAMP('2026-13-45T00:00:00Z')", "DATE('2026-02-30')", "DATE('2026-03-01')",
          "INTERVAL('2026-01-02T00:00:00Z', '..')", "TIMESTAMP('2026-01-01T00:00:00Z')",
          "T_AFTER", "T_INTERSECTS", "T_MEETS", "S_INTERSECTS", "S_WITHIN", "BBOX",
          "POLYGON((0 0, 1 1, 0 1, 0 0))", "POINT(0 0)", "SRID=3857;", "MULTIPOINT((0 0))",
          "LINESTRING(0 0, 1 1)", "ENVELOPE(1 2 3 4)", "casei", '"kind"', "x:y"]  # fmt: skip


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=14))
def test_any_filter_text_is_read_or_refused_as_invalid_never_an_error(tokens: list[str]) -> None:
    """Token soup from the CQL2 vocabulary: a filter, or InvalidParameter (a 400), nothing
    else (pygeofilter raises ValueError, TypeError and bare Exceptions from inside its parser)."""
    try:
        cql2.parse_filter({"filter": " ".join(tokens)})
    except InvalidParameter as error:
        assert error.errors[0].field == "filter"


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4),
              st.sampled_from(["kind", "geometry", "observed_at", "2026-01-01", "..", "=",
                               "and", "not", "isNull", "between", "in", "like", "s_intersects",
                               "t_after", "t_intersects"])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["op", "args", "property", "bbox", "interval",
                                         "timestamp", "date", "type", "coordinates",
                                         "function", "filter-lang"]), inner, max_size=3),
    ),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES)
def test_any_filter_json_is_read_or_refused_as_invalid_never_an_error(doc: object) -> None:
    try:
        cql2.parse_filter({"filter": json.dumps(doc), "filter-lang": "cql2-json"})
    except InvalidParameter as error:
        assert error.errors[0].field == "filter"
