"""OGC API - Features Part 1 at /ogc, so GDAL, QGIS and ArcGIS read reports and segments natively;
Part 4 "create" for reports (the same code path as POST /v1/reports)."""

from __future__ import annotations

import dataclasses
import functools
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from service.api import audit, cql2
from service.api import encodings as enc
from service.api.cancel import until_disconnected
from service.api.deps import CallerDep, IndexDep, SettingsDep, StoreDep, get_caller
from service.api.lifecycle import current_release
from service.api.openapi30 import OPENAPI_30, to_openapi_30
from service.api.problems import DocumentedRoute
from service.api.routes.reports import submission, submit_single
from service.api.routes.segments import segment_feature as v1_segment_feature
from service.api.schemas import ogc
from service.api.schemas.common import FormatQuery, format_instant
from service.api.schemas.pages import decode_cursor, encode_cursor
from service.api.schemas.reports import report_feature
from service.domain.access import Caller
from service.domain.errors import CollectionNotFound
from service.domain.segments import BorderSegment, SegmentIndex
from service.usecases import features, links
from service.usecases.public_release import CurrentRelease, public_extent

router = APIRouter(
    prefix="/ogc", tags=["ogc"], dependencies=[Depends(get_caller)], route_class=DocumentedRoute
)
DOCS = (enc.JSON, enc.HTML)
ITEMS = (enc.GEOJSON, enc.HTML, enc.CSV, enc.GEOJSON_SEQ)
COLLECTIONS = {
    "reports": ("Crossing reports", "Reports of people crossing the border, snapped to it"),
    "segments": ("Border segments", "The border line in pieces of about 25 km"),
}
REPORT_PROPERTIES = frozenset(name for name, *_ in ogc.REPORT_SCHEMA)
SCHEMA = "application/schema+json"
# A page of features: the features, how many match (None: not counted), the next page's cursor.
_Page = tuple[list[dict[str, Any]], int | None, str | None]


def _base(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}/ogc"


def _respond(request: Request, doc: dict[str, Any], *, media: str, title: str) -> Response:
    """``doc`` in ``media`` (as enc.negotiate chose it)."""
    if media == enc.HTML:
        body = enc.html_dict(doc) + enc.html_links(doc.get("links", []))
        if "features" in doc:
            rows = [{"id": f["id"], **f["properties"]} for f in doc["features"]]
            body = enc.html_table(rows) + body
        return Response(enc.html_page(title, body), media_type=enc.HTML, headers=_link_header(doc))
    headers = _link_header(doc)
    if media == enc.CSV:
        return Response(enc.features_csv(doc["features"]), media_type=enc.CSV, headers=headers)
    if media == enc.GEOJSON_SEQ:
        sequence = enc.geojson_seq(doc["features"])
        return Response(sequence, media_type=enc.GEOJSON_SEQ, headers=headers)
    return Response(orjson.dumps(doc), media_type=media, headers=headers)


def _link_header(doc: dict[str, Any]) -> dict[str, str]:
    """A page's next link as an RFC 8288 Link header too: CSV and GeoJSON text sequences have no
    place for links in their bodies, and a client pages them by this header."""
    nexts = [link["href"] for link in doc.get("links", ()) if link["rel"] == "next"]
    return {"Link": f'<{nexts[0]}>; rel="next"'} if nexts else {}


def _with_params(request: Request, **params: str) -> str:
    """The request's URL with ``params`` set, replacing any values they had: what Starlette's
    ``URL.include_query_params`` gives, a third cheaper (four links a page)."""
    items = parse_qsl(request.url.query, keep_blank_values=True)
    kept = [(k, v) for k, v in items if k not in params]
    return str(request.url.replace(query=urlencode(kept + list(params.items()))))


_FORMAT_NAMES = {enc.GEOJSON: "json", enc.HTML: "html", enc.CSV: "csv", enc.GEOJSON_SEQ: "jsonseq"}


def _alternates(request: Request, offered: tuple[str, ...], current: str) -> list[dict[str, Any]]:
    """A link to the same request in each other encoding (its query read once for all)."""
    kept = [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True) if k != "f"]
    return [
        ogc.link(
            str(request.url.replace(query=urlencode([*kept, ("f", _FORMAT_NAMES[m])]))),
            "alternate",
            m,
        )
        for m in offered
        if m != current
    ]


@router.get("")
async def landing(request: Request, query: Annotated[FormatQuery, Query()]) -> Response:
    """The landing page: links to the API description, conformance and the collections."""
    base = _base(request)
    root = str(request.base_url).rstrip("/")
    doc = {
        "title": "crossings",
        "description": "Border-crossing reports and border segments (OGC API - Features)",
        "links": [
            ogc.link(base, "self", enc.JSON, "This document"),
            ogc.link(f"{base}?f=html", "alternate", enc.HTML, "This document as HTML"),
            ogc.link(f"{base}/api", "service-desc", OPENAPI_30, "The API definition (OpenAPI 3.0)"),
            ogc.link(
                f"{root}/openapi.json",
                "service-desc",
                "application/vnd.oai.openapi+json;version=3.1",
                "The API definition (OpenAPI 3.1)",
            ),
            ogc.link(f"{root}/docs", "service-doc", enc.HTML, "The API documentation"),
            ogc.link(f"{base}/conformance", "conformance", enc.JSON, "Conformance classes"),
            ogc.link(f"{base}/collections", "data", enc.JSON, "Collections"),
        ],
    }
    media = enc.negotiate(request, query.f, offered=DOCS)
    return _respond(request, doc, media=media, title="crossings")


@router.get("/api")
async def api_definition(request: Request) -> Response:
    """The OGC API's definition as OpenAPI 3.0: its paths relative to the server `/ogc` (the
    whole service, in 3.1, is at `/openapi.json`)."""
    return Response(orjson.dumps(_ogc_definition(request)), media_type=OPENAPI_30)


def _ogc_definition(request: Request) -> dict[str, Any]:
    """The OGC paths of the service's definition, under ``servers: [<base>/ogc]``: GDAL looks up
    ``/collections/{id}/items`` relative to the server to learn which attribute filters it may
    send (then `-where kind = 'attempt'` goes to the server as `kind=attempt`)."""
    doc = to_openapi_30(request.app.openapi())
    doc["servers"] = [{"url": _base(request), "description": "OGC API - Features"}]
    doc["paths"] = {
        path.removeprefix(router.prefix) or "/": item
        for path, item in doc["paths"].items()
        if path == router.prefix or path.startswith(f"{router.prefix}/")
    }
    return doc


@router.get("/conformance")
async def conformance(request: Request, query: Annotated[FormatQuery, Query()]) -> Response:
    """The conformance classes this API passes."""
    classes = [*ogc.CONFORMANCE, *cql2.CONFORMANCE]
    media = enc.negotiate(request, query.f, offered=DOCS)
    return _respond(request, {"conformsTo": classes}, media=media, title="Conformance")


async def _collection_doc(
    request: Request, collection_id: str, store: StoreDep, index: IndexDep, caller: Caller
) -> dict[str, Any]:
    if collection_id not in COLLECTIONS:
        raise CollectionNotFound(f"no collection {collection_id!r}; there are: reports, segments")
    title, description = COLLECTIONS[collection_id]
    url = f"{_base(request)}/collections/{collection_id}"
    if collection_id == "reports":
        if caller.sees_everything:
            extent = await run_in_threadpool(features.report_extent, store)
            bbox, start, end = extent.bbox, extent.first_observed, extent.last_observed
        else:  # the edges of the data would place its outermost and newest reports
            release: CurrentRelease = current_release(request.app)
            view = await run_in_threadpool(release.view)
            bbox, (start, end) = index.bounds, public_extent(view)
    else:
        bbox, start, end = index.bounds, None, None
    doc: dict[str, Any] = {
        "id": collection_id,
        "title": title,
        "description": description,
        "itemType": "feature",
        "crs": [ogc.CRS84],
        "extent": {
            "spatial": {"bbox": [list(bbox) if bbox else [-180, -90, 180, 90]], "crs": ogc.CRS84}
        },
        "links": [
            ogc.link(url, "self", enc.JSON),
            ogc.link(f"{url}?f=html", "alternate", enc.HTML),
            ogc.link(f"{url}/items", "items", enc.GEOJSON, "Items as GeoJSON"),
            ogc.link(f"{url}/items?f=html", "items", enc.HTML, "Items as HTML"),
            ogc.link(f"{url}/items?f=csv", "items", enc.CSV, "Items as CSV"),
            ogc.link(
                f"{url}/items?f=jsonseq", "items", enc.GEOJSON_SEQ, "Items as GeoJSON text sequence"
            ),
            ogc.link(f"{url}/schema", "describedby", SCHEMA, "JSON Schema of one item"),
            # GDAL (3.6 at least) looks for this spelling only: with it, it types each column from
            # the schema instead of guessing from a first page whose values may all be null.
            ogc.link(f"{url}/schema", "describedBy", SCHEMA, "JSON Schema of one item"),
        ],
    }
    if collection_id == "reports":  # Part 3; GDAL 3.6 reads the rel "queryables"
        for rel in (cql2.QUERYABLES_REL, "queryables"):
            doc["links"].append(ogc.link(f"{url}/queryables", rel, SCHEMA, "Queryables"))
    if collection_id == "reports":
        doc["extent"]["temporal"] = {
            "interval": ogc.temporal(start, end),
            "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian",
        }
    return doc


@router.get("/collections")
async def collections(
    request: Request,
    query: Annotated[FormatQuery, Query()],
    store: StoreDep,
    index: IndexDep,
    caller: CallerDep,
) -> Response:
    """Both collections, with their extents."""
    docs = [await _collection_doc(request, cid, store, index, caller) for cid in COLLECTIONS]
    base = _base(request)
    doc = {
        "collections": docs,
        "links": [
            ogc.link(f"{base}/collections", "self", enc.JSON),
            ogc.link(f"{base}/collections?f=html", "alternate", enc.HTML),
        ],
    }
    media = enc.negotiate(request, query.f, offered=DOCS)
    return _respond(request, doc, media=media, title="Collections")


@router.get("/collections/{collection_id}/schema")
async def collection_schema(collection_id: str, request: Request, index: IndexDep) -> Response:
    """A JSON Schema of one item of the collection: each property's type, and whether it may be
    null."""
    url = f"{_base(request)}/collections/{collection_id}/schema"
    if collection_id == "reports":
        # The feature's own id is the report's id: GDAL makes it the "id" column, and a property
        # of that name in the schema as well gave it a second, always-null column (id2).
        props = tuple(p for p in ogc.REPORT_SCHEMA if p[0] != "id")
        doc = ogc.feature_schema(url, COLLECTIONS["reports"][0], "Point", props)
    elif collection_id == "segments":
        doc = ogc.feature_schema(
            url, COLLECTIONS["segments"][0], "LineString", _segment_schema(index)
        )
    else:
        raise CollectionNotFound(f"no collection {collection_id!r}; there are: reports, segments")
    # GDAL accepts a schema only as JSON; everyone else is told what it is.
    media = SCHEMA
    return Response(orjson.dumps(doc), media_type=media)


@router.get("/collections/{collection_id}/queryables")
async def collection_queryables(
    collection_id: str, request: Request, index: IndexDep, settings: SettingsDep
) -> Response:
    """The properties a `filter` (CQL2) may name, as a JSON Schema (OGC API - Features Part 3)."""
    if collection_id != "reports":
        raise CollectionNotFound(f"no queryables for {collection_id!r}; only reports")
    url = f"{_base(request)}/collections/reports/queryables"
    doc = cql2.queryables(url, title=COLLECTIONS["reports"][0], kinds=settings.report_kinds,
                          countries=index.countries)  # fmt: skip
    return Response(orjson.dumps(doc), media_type=cql2.queryables_media(request))


@router.get("/collections/{collection_id}")
async def collection(
    collection_id: str,
    request: Request,
    query: Annotated[FormatQuery, Query()],
    store: StoreDep,
    index: IndexDep,
    caller: CallerDep,
) -> Response:
    """One collection: its extent and links to its items."""
    doc = await _collection_doc(request, collection_id, store, index, caller)
    media = enc.negotiate(request, query.f, offered=DOCS)
    return _respond(request, doc, media=media, title=doc["title"])


# Each collection's items have their own route so that the OpenAPI document lists their filters:
# GDAL reads it to learn which attribute filters it may send to the server.
@router.get("/collections/reports/items")
async def report_items(
    request: Request,
    query: Annotated[ogc.ReportItemsQuery, Query()],
    store: StoreDep,
    index: IndexDep,
    settings: SettingsDep,
    caller: CallerDep,
) -> Response:
    """Reports, a page at a time in observed_at order (follow `next`). A first page gives
    `numberMatched` when it is exact and cheap: with no filter or a box alone (when the rollups
    say it exactly), or when it is also the last page."""
    media = enc.negotiate(request, query.f, offered=ITEMS)
    page = await _report_items(request, query, store, caller, index, settings.page_max_items)
    doc = _collection(request, media, "reports", *page)
    return _respond(request, doc, media=media, title="Crossing reports: items")


@router.get("/collections/segments/items")
async def segment_items(
    request: Request,
    query: Annotated[ogc.SegmentItemsQuery, Query()],
    index: IndexDep,
    settings: SettingsDep,
) -> Response:
    """Border segments along each line, flat properties (lists joined by '; ')."""
    media = enc.negotiate(request, query.f, offered=ITEMS)
    doc = _collection(
        request, media, "segments", *_segment_items(query, index, settings.page_max_items)
    )
    return _respond(request, doc, media=media, title="Border segments: items")


@router.get("/collections/{collection_id}/items", include_in_schema=False)
async def unknown_items(collection_id: str) -> Response:
    raise CollectionNotFound(f"no collection {collection_id!r}; there are: reports, segments")


async def _report_items(
    request: Request,
    params: ogc.ReportItemsQuery,
    store: StoreDep,
    caller: Caller,
    index: IndexDep,
    max_limit: int,
) -> _Page:
    parsed = ogc.parse_items_params(
        params,
        filters=(*ogc.REPORT_FILTERS, *cql2.PARAMS),
        max_limit=max_limit,
        known_properties=REPORT_PROPERTIES,
        read_cursor=decode_cursor,
    )
    query = ogc.report_query(parsed, border_segments=index.segment_ids_by_border)
    flt = cql2.parse_filter(parsed.filters)
    query = dataclasses.replace(query, posted_by=caller.posted_by, filter=flt)
    entry = audit.entry(request, caller)
    # Its statements are cancelled if the client goes away (api/cancel.py).
    result = await until_disconnected(
        request, functools.partial(features.report_items, store, query, audit=entry)
    )
    groups = await run_in_threadpool(
        lambda: links.group_ids(store, result.page.reports, caller=caller)
    )
    feats = [
        _select(report_feature(r, group_id=groups.get(r.id)), parsed.properties)
        for r in result.page.reports
    ]
    next_token = None if result.page.next_key is None else encode_cursor(result.page.next_key)
    return feats, result.number_matched, next_token


def _segment_items(params: ogc.SegmentItemsQuery, index: IndexDep, max_limit: int) -> _Page:
    known = _segment_properties(index)
    parsed = ogc.parse_items_params(
        params,
        filters=ogc.SEGMENT_FILTERS,
        max_limit=max_limit,
        known_properties=known,
        read_cursor=ogc.decode_offset,
    )
    offset = ogc.decode_offset(parsed.cursor)
    chosen = features.segment_items(index, bbox=parsed.bbox, filters=parsed.filters)
    page = chosen[offset : offset + parsed.limit]
    feats = [_select(segment_feature(s), parsed.properties) for s in page]
    more = offset + parsed.limit < len(chosen)
    token = ogc.encode_offset(offset + parsed.limit) if more else None
    return feats, len(chosen), token


def _collection(
    request: Request,
    media: str,
    collection_id: str,
    feats: list[dict[str, Any]],
    matched: int | None,
    next_token: str | None,
) -> dict[str, Any]:
    """A page of features in ``media``, with its links: itself, its collection, the next page
    in this page's encoding, and the same page in each other encoding."""
    doc: dict[str, Any] = {
        "type": "FeatureCollection",
        "features": feats,
        "numberReturned": len(feats),
    }
    if matched is not None:
        doc["numberMatched"] = matched
    doc["timeStamp"] = format_instant(datetime.now(UTC))
    links = [
        ogc.link(str(request.url), "self", enc.GEOJSON),
        ogc.link(f"{_base(request)}/collections/{collection_id}", "collection", enc.JSON),
    ]
    if next_token is not None:
        next_url = _with_params(request, cursor=next_token)
        links.append(ogc.link(next_url, "next", media, "Next page"))
    doc["links"] = links + _alternates(request, ITEMS, media)
    return doc


def _select(feature: dict[str, Any], properties: tuple[str, ...] | None) -> dict[str, Any]:
    if properties is not None:
        feature["properties"] = {k: v for k, v in feature["properties"].items() if k in properties}
    return feature


def segment_feature(segment: BorderSegment) -> dict[str, Any]:
    """The /v1 segment Feature with flat properties, so GIS tools map each to a column."""
    feature = v1_segment_feature(segment)
    feature["properties"] = ogc.flat_properties(feature["properties"])
    return feature


@functools.lru_cache(maxsize=4)
def _segment_schema(index: SegmentIndex) -> tuple[tuple[str, str, str | None, bool], ...]:
    """Every (flattened) property of the border with its type: derived once per loaded border."""
    values: dict[str, list[Any]] = {}
    for s in index.segments:
        for key, value in segment_feature(s)["properties"].items():
            values.setdefault(key, []).append(value)
    return ogc.schema_of_values(values)


def _segment_properties(index: SegmentIndex) -> frozenset[str]:
    return frozenset(name for name, *_ in _segment_schema(index)) | {"segment_id"}


@router.get("/collections/{collection_id}/items/{feature_id}")
async def item(
    collection_id: str,
    feature_id: str,
    request: Request,
    query: Annotated[FormatQuery, Query()],
    store: StoreDep,
    index: IndexDep,
    caller: CallerDep,
) -> Response:
    """One feature by id."""
    if collection_id not in COLLECTIONS:
        raise CollectionNotFound(f"no collection {collection_id!r}; there are: reports, segments")
    if collection_id == "reports":
        report = await until_disconnected(
            request,
            audit.recorded(
                store,
                audit.entry(request, caller),
                lambda: features.report_item(store, feature_id, posted_by=caller.posted_by),
            ),
        )
        groups = await run_in_threadpool(lambda: links.group_ids(store, [report], caller=caller))
        doc = report_feature(report, group_id=groups.get(report.id))
    else:
        doc = segment_feature(features.segment_item(index, feature_id))
    url = f"{_base(request)}/collections/{collection_id}"
    doc["links"] = [
        ogc.link(f"{url}/items/{feature_id}", "self", enc.GEOJSON),
        ogc.link(f"{url}/items/{feature_id}?f=html", "alternate", enc.HTML),
        ogc.link(url, "collection", enc.JSON),
    ]
    media = enc.negotiate(request, query.f, offered=(enc.GEOJSON, enc.HTML))
    return _respond(request, doc, media=media, title=f"{collection_id} {feature_id}")


@router.post("/collections/reports/items", **submission("ReportFeatureIn", "ReportIn"))
async def create_item(
    request: Request, store: StoreDep, index: IndexDep, settings: SettingsDep, caller: CallerDep
) -> Response:
    """OGC API - Features Part 4 create: a report as a GeoJSON Feature, with the same validation
    and exactly-once rules as `POST /v1/reports`."""
    return await submit_single(
        request,
        store,
        caller,
        index,
        settings,
        location=f"{_base(request)}/collections/reports/items/{{id}}",
    )
