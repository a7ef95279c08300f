"""Access control, on both stores: every route of the app and every role gets the status its row
of the access table says, and no answer to a caller who may not see precise data holds a precise
position, a note or a device id; keys are stored only as digests, and are refused once revoked."""

from __future__ import annotations

import re
from typing import Any

import httpx
import mapbox_vector_tile
from fastapi import FastAPI
from fastapi.routing import APIRoute

from service.api.access import DOCUMENTATION, RULES, permission_for
from service.api.lifecycle import current_store
from service.domain.access import GRANTS, Role
from tests.factories import report_body

NOTE = "note-7f3a-should-never-leak"  # in reports the reporter key did not post
OWN_NOTE = "the reporter's own note"
DEVICE = "device-91c2-should-never-leak"
# Precise, unusual coordinates: their digits must not appear in public answers.
LON, LAT = -73.4617391, 45.0123457
ROLES = ("public", "reporter", "analyst", "admin")


def _tile(z: int) -> str:
    import math

    n = 2**z
    x = int((LON + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(LAT))) / math.pi) / 2 * n)
    return f"{z}/{x}/{y}"


async def _seed(as_role: dict[str, httpx.AsyncClient]) -> dict[str, str]:
    """Reports posted by the reporter key (one precise, with a note and a device id) and by the
    admin; returns the path parameters the matrix fills in."""
    own = report_body(location={"type": "Point", "coordinates": [LON, LAT]}, notes=OWN_NOTE,
                      device_id="own-device")  # fmt: skip
    response = await as_role["reporter"].post("/v1/reports", json=own)
    assert response.status_code == 201, response.text
    others = [report_body(notes=NOTE, device_id=DEVICE) for _ in range(3)]
    response = await as_role["admin"].post("/v1/reports/batch", json=others)
    assert response.json()["summary"]["created"] == 3
    key = await as_role["admin"].post("/v1/keys", json={"role": "reporter", "name": "spare"})
    return {
        "report_id": own["id"],
        "other_report_id": others[0]["id"],
        "segment_id": "CA-US-0208",
        "key_id": key.json()["key_id"],
    }


def _requests(params: dict[str, str]) -> list[tuple[str, str, str, Any]]:
    """(method, route path, URL, JSON body) for every route of the app."""
    rid = params["report_id"]
    z12 = _tile(12)
    fill = {
        "/v1/reports/{report_id}": f"/v1/reports/{rid}",
        "/v1/segments/{segment_id}": f"/v1/segments/{params['segment_id']}",
        "/v1/segments/{segment_id}/timeseries": f"/v1/segments/{params['segment_id']}/timeseries",
        "/v1/tiles/{z}/{x}/{y}.mvt": f"/v1/tiles/{z12}.mvt",
        "/v1/tiles/{z}/{x}/{y}.geojson": f"/v1/tiles/{z12}.geojson",
        "/ogc/collections/{collection_id}": "/ogc/collections/reports",
        "/ogc/collections/{collection_id}/schema": "/ogc/collections/reports/schema",
        "/ogc/collections/{collection_id}/items": "/ogc/collections/nope/items",
        "/ogc/collections/{collection_id}/items/{feature_id}": f"/ogc/collections/reports/items/{rid}",
        "/v1/keys/{key_id}": f"/v1/keys/{params['key_id']}",
    }  # fmt: skip
    bodies = {
        "/v1/reports": report_body(),
        "/v1/reports/batch": [report_body()],
        "/v1/snap": {"type": "Point", "coordinates": [LON, LAT]},
        "/ogc/collections/reports/items": {
            "type": "Feature", "geometry": {"type": "Point", "coordinates": [LON, LAT]},
            "properties": {k: v for k, v in report_body().items() if k != "location"},
        },
        "/v1/keys": {"role": "analyst", "name": "matrix"},
    }  # fmt: skip
    out = []
    for (method, path), _ in sorted(RULES.items()):
        if method == "DELETE" and path == "/v1/reports/{report_id}":
            url = f"/v1/reports/{params['other_report_id']}"
        else:
            url = fill.get(path, path)
        out.append((method, path, url, bodies.get(path) if method == "POST" else None))
    return out


def _app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every API route, including those of included routers."""
    found: set[tuple[str, str]] = set()
    pending = list(app.routes)
    while pending:
        route = pending.pop()
        if isinstance(route, APIRoute):
            found |= {(m, route.path) for m in route.methods or ()}
        elif hasattr(route, "original_router"):  # an included router (FastAPI >= 0.16x)
            pending.extend(route.original_router.routes)
        elif hasattr(route, "routes") and not hasattr(route, "app"):
            pending.extend(route.routes)
    return found


def test_every_route_has_an_access_rule(app: FastAPI) -> None:
    routes = _app_routes(app)
    assert len(routes) > 30
    missing = {rp for rp in routes if rp[1] not in DOCUMENTATION and rp not in RULES}
    assert not missing, f"routes without an access rule: {sorted(missing)}"
    assert not set(RULES) - routes, "rules for routes that do not exist"


def _allowed(role: str, method: str, path: str, url: str) -> bool:
    params = {"collection_id": url.split("/")[3]} if path.startswith("/ogc/collections/{") else {}
    permission = permission_for(method, path, params)
    assert permission is not None
    return permission in GRANTS[Role(role)]


def _forbidden_content(role: str, body: bytes, content_type: str) -> list[str]:
    """What a role that may not see precise data finds in an answer it should not."""
    if role in ("analyst", "admin"):
        return []
    found = []
    text = body.decode("utf-8", "replace") if "vector-tile" not in content_type else ""
    if "vector-tile" in content_type and body:
        tile = mapbox_vector_tile.decode(body)
        for feature in tile.get("reports", {"features": []})["features"]:
            props = feature["properties"]
            if "id" in props or "count" not in props:
                found.append(f"a single report in a tile: {props}")
            elif props["count"] < 5:
                found.append(f"a cluster of {props['count']} reports")
        text = repr(tile)
    for marker in (NOTE, DEVICE):
        if marker in text:
            found.append(marker)
    if role == "public" and re.search(r"-73\.46173|45\.01234", text):
        found.append("a precise position")
    return found


async def test_every_route_for_every_role(as_role: dict[str, httpx.AsyncClient]) -> None:
    params = await _seed(as_role)
    for role in ROLES:
        for method, path, url, body in _requests(params):
            if method == "DELETE":
                continue  # checked last, below: a deletion would change what others see
            response = await as_role[role].request(method, url, json=body)
            where = f"{role} {method} {url}"
            if _allowed(role, method, path, url):
                assert response.status_code not in (401, 403), (where, response.text[:300])
                assert response.status_code < 500, (where, response.text[:300])
            else:
                expected = 401 if role == "public" else 403
                assert response.status_code == expected, (where, response.status_code)
                assert response.headers["content-type"] == "application/problem+json"
                if role == "public":
                    assert response.headers["www-authenticate"].startswith("Bearer")
            leaks = _forbidden_content(role, response.content,
                                       response.headers.get("content-type", ""))  # fmt: skip
            assert not leaks, (where, leaks)
    for role in ("public", "reporter", "analyst", "admin"):
        for method, path, url, _ in _requests(params):
            if method != "DELETE":
                continue
            response = await as_role[role].request(method, url)
            if _allowed(role, method, path, url):
                assert response.status_code in (204, 404), (role, url, response.text)
            else:
                assert response.status_code == (401 if role == "public" else 403), (role, url)


async def test_a_reporter_reads_back_only_its_own_reports(
    as_role: dict[str, httpx.AsyncClient],
) -> None:
    params = await _seed(as_role)
    reporter = as_role["reporter"]
    own = await reporter.get(f"/v1/reports/{params['report_id']}")
    assert own.status_code == 200 and own.json()["properties"]["notes"] == OWN_NOTE
    other = await reporter.get(f"/v1/reports/{params['other_report_id']}")
    assert other.status_code == 404
    listed = (await reporter.get("/v1/reports")).json()["features"]
    assert [f["id"] for f in listed] == [params["report_id"]]
    items = (await reporter.get("/ogc/collections/reports/items")).json()["features"]
    assert [f["id"] for f in items] == [params["report_id"]]
    analyst = (await as_role["analyst"].get("/v1/reports")).json()["features"]
    assert len(analyst) == 4


async def test_keys_are_stored_as_digests_and_refused_when_revoked(
    app: FastAPI, as_role: dict[str, httpx.AsyncClient]
) -> None:
    made = await as_role["admin"].post("/v1/keys", json={"role": "analyst", "name": "temp"})
    assert made.status_code == 201
    token, key_id = made.json()["key"], made.json()["key_id"]
    stored = current_store(app).get_key(key_id)
    assert stored is not None
    # crs_<key id>_<secret>; the secret's own alphabet holds "_", so split after the key id
    secret = token.split(f"{key_id}_", 1)[1]
    assert len(secret) >= 32
    assert secret.encode() not in stored.digest and token.encode() not in stored.digest
    assert len(stored.digest) == 32
    listed = (await as_role["admin"].get("/v1/keys")).json()["keys"]
    assert all("digest" not in k and "key" not in k for k in listed)
    assert token not in str(listed)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        assert (await c.get("/v1/reports", headers={"X-API-Key": token})).status_code == 200
        wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
        bad = await c.get("/v1/reports", headers={"Authorization": f"Bearer {wrong}"})
        assert bad.status_code == 401 and token not in bad.text
        assert (await as_role["admin"].delete(f"/v1/keys/{key_id}")).status_code == 204
        revoked = await c.get("/v1/reports", headers={"Authorization": f"Bearer {token}"})
        assert revoked.status_code == 401
    actions = [e["action"] for e in (await as_role["admin"].get("/v1/audit")).json()["entries"]]
    assert "key.create" in actions and "key.revoke" in actions


async def test_precise_reads_and_deletions_are_audited(
    as_role: dict[str, httpx.AsyncClient],
) -> None:
    params = await _seed(as_role)
    await as_role["analyst"].get("/v1/reports?kind=crossing")
    assert (
        await as_role["admin"].delete(f"/v1/reports/{params['other_report_id']}")
    ).status_code == 204
    entries = (await as_role["admin"].get("/v1/audit")).json()["entries"]
    reads = [e for e in entries if e["action"] == "reports.read" and e["role"] == "analyst"]
    assert any(e["detail"]["query"] == "kind=crossing" for e in reads)
    deletions = [e for e in entries if e["action"] == "report.delete"]
    assert deletions[-1]["detail"]["report_id"] == params["other_report_id"]


async def test_ogc_reads_of_precise_reports_are_audited_before_they_are_answered(
    as_role: dict[str, httpx.AsyncClient],
) -> None:
    params = await _seed(as_role)
    items = await as_role["analyst"].get("/ogc/collections/reports/items?kind=crossing&limit=2")
    one = await as_role["analyst"].get(f"/ogc/collections/reports/items/{params['report_id']}")
    assert items.status_code == 200 and one.status_code == 200
    entries = (await as_role["admin"].get("/v1/audit")).json()["entries"]
    reads = [e["detail"] for e in entries if e["action"] == "reports.read"]
    assert {"method": "GET", "path": "/ogc/collections/reports/items",
            "query": "kind=crossing&limit=2"} in reads  # fmt: skip
    assert any(d["path"].endswith(params["report_id"]) for d in reads)


async def test_anonymous_writes_are_refused_by_default(
    as_role: dict[str, httpx.AsyncClient],
) -> None:
    response = await as_role["public"].post("/v1/reports", json=report_body())
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


async def test_security_headers_on_every_answer(as_role: dict[str, httpx.AsyncClient]) -> None:
    for url in ("/v1/segments", "/map", "/v1/reports"):
        response = await as_role["public"].get(url)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'self'" in response.headers["content-security-policy"]
