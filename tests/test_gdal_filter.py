"""GDAL (the OAPIF driver of GDAL 3.6) sends an ogr2ogr -where to the server as a CQL2 filter
(OGC API - Features Part 3), and the server sends only the matching reports.

GDAL talks to the live server through a small proxy that counts every feature the server sends
back: the rows sent must be exactly the rows asked for, not the whole collection filtered by
GDAL on the client.

GDAL 3.6 pushes a -where as CQL text when the API definition lists ``filter-lang`` with
"cql-text" for the collection's items path, and takes the names it may use from the collection's
``queryables`` link. It finds that path when ``/ogc/api`` declares ``servers: /ogc`` (issue #14's
other half); the config option OGR_OAPIF_ALLOW_CQL_TEXT=YES makes it send CQL text without
reading the API definition.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from service.domain.reports import Report
from tests.conftest import served_fresh
from tests.factories import fill_along_border
from tests.live import http_server, live_key

REPORTS = 3_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)
WHERE = "kind = 'attempt' AND people_count > 3"
BOX = (-80.0, 42.0, -70.0, 46.0)
pytestmark = pytest.mark.skipif(
    shutil.which("ogr2ogr") is None, reason="GDAL (gdal-bin) is not installed"
)


def _fill(url: str) -> list[Report]:
    """3,000 reports along the CA-US border, of every kind, 1-11 people each."""
    return fill_along_border(
        url,
        REPORTS,
        seed=11,
        observed_at=lambda i, rng: T0 + timedelta(seconds=int(rng.integers(0, 90 * 86_400))),
    )


class _Counted:
    """What the server sent through the proxy: the query of each items request and its
    features' ids."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pages: list[tuple[dict[str, list[str]], list[str]]] = []

    @property
    def ids(self) -> list[str]:
        return [i for _, ids in self.pages for i in ids]

    def split(self) -> tuple[list[str], list[tuple[dict[str, list[str]], list[str]]]]:
        """The ids sent for the requests with a filter, and the requests without one: GDAL reads
        one first page, unfiltered, to learn the layer's fields before it applies the -where."""
        ids = [i for query, ids in self.pages if "filter" in query for i in ids]
        return ids, [(query, ids) for query, ids in self.pages if "filter" not in query]


@contextmanager
def _counting_proxy(counted: _Counted) -> Iterator[str]:
    """An HTTP proxy (GDAL_HTTP_PROXY) that forwards GETs and counts the reports sent back."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() in ("authorization", "accept")}  # fmt: skip
            answer = httpx.get(self.path, headers=headers, timeout=120)
            target = urlsplit(self.path)
            if target.path.endswith("/collections/reports/items") and answer.status_code == 200:
                features = answer.json()["features"]
                with counted.lock:
                    counted.pages.append((parse_qs(target.query), [f["id"] for f in features]))
            self.send_response(answer.status_code)
            self.send_header("Content-Type", answer.headers.get("content-type", ""))
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with http_server(Handler) as address:
        yield address


@pytest.fixture(scope="module")
def served(
    store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[Report], str]]:
    with served_fresh(store_url, tmp_path_factory, "gdal_filter", _fill) as (url, base, stored):
        yield base, stored, live_key(url, "analyst")


def _ogr2ogr(
    base: str, key: str, proxy: str, *extra: str, **config: str
) -> tuple[list[dict[str, Any]], str]:
    """The reports ogr2ogr copies (through the proxy), and GDAL's debug output."""
    env = {**os.environ, "GDAL_HTTP_HEADERS": f"Authorization: Bearer {key}",
           "GDAL_HTTP_PROXY": proxy, "CPL_DEBUG": "ON", **config}  # fmt: skip
    env.pop("NO_PROXY", None), env.pop("no_proxy", None)
    copied = subprocess.run(
        ["ogr2ogr", "-f", "GeoJSON", "/vsistdout/", f"OAPIF:{base}/ogc", "reports",
         "-oo", "PAGE_SIZE=100", *extra],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr[-3000:]
    return json.loads(copied.stdout)["features"], copied.stderr


def _expected(stored: list[Report], *, box: tuple[float, ...] | None = None) -> set[str]:
    return {
        str(r.id)
        for r in stored
        if r.draft.kind == "attempt"
        and r.draft.people_count > 3
        and (box is None or (box[0] <= r.draft.lon <= box[2] and box[1] <= r.draft.lat <= box[3]))
    }


def _declares_servers(base: str) -> bool:
    return "servers" in httpx.get(f"{base}/ogc/api", timeout=30).json()


@pytest.mark.parametrize("how", ["declared", "OGR_OAPIF_ALLOW_CQL_TEXT"])
def test_ogr2ogr_where_is_evaluated_by_the_server(
    served: tuple[str, list[Report], str], how: str
) -> None:
    base, stored, key = served
    if how == "declared" and not _declares_servers(base):
        pytest.skip("GDAL 3.6 finds filter-lang only under `servers: /ogc` (issue #14, gis)")
    config = {} if how == "declared" else {"OGR_OAPIF_ALLOW_CQL_TEXT": "YES"}
    counted = _Counted()
    with _counting_proxy(counted) as proxy:
        copied, debug = _ogr2ogr(base, key, proxy, "-where", WHERE, **config)
    expected = _expected(stored)
    assert len(expected) > 200  # the filter keeps about one report in 8
    assert {f["properties"]["id"] for f in copied} == expected
    assert "evaluated on client side" not in debug
    # What the server sent for the -where: only the matching reports, each once, in CQL2
    sent, unfiltered = counted.split()
    assert sorted(sent) == sorted(expected)
    assert len(unfiltered) <= 1 and all(len(ids) <= 100 for _, ids in unfiltered)
    for query, _ in counted.pages:
        if "filter" in query:
            assert query["filter"] == ["(kind = 'attempt') AND (people_count > 3)"], query
            assert query["filter-lang"] == ["cql-text"]


def test_ogr2ogr_where_and_spat_are_both_evaluated_by_the_server(
    served: tuple[str, list[Report], str],
) -> None:
    base, stored, key = served
    counted = _Counted()
    spat = [str(v) for v in BOX]
    with _counting_proxy(counted) as proxy:
        copied, _ = _ogr2ogr(base, key, proxy, "-where", WHERE, "-spat", *spat,
                             OGR_OAPIF_ALLOW_CQL_TEXT="YES")  # fmt: skip
    expected = _expected(stored, box=BOX)
    assert 0 < len(expected) < len(_expected(stored))
    assert {f["properties"]["id"] for f in copied} == expected
    sent, unfiltered = counted.split()
    assert sorted(sent) == sorted(expected)
    assert len(unfiltered) <= 1
    assert all("bbox" in query for query, _ in counted.pages if "filter" in query)


def test_a_filter_gdal_cannot_push_whole_is_still_exact(
    served: tuple[str, list[Report], str],
) -> None:
    """A -where with a part GDAL cannot write in CQL (arithmetic): GDAL sends the rest and
    filters the rows itself; the result is still exactly the matching reports."""
    base, stored, key = served
    counted = _Counted()
    where = "kind = 'attempt' AND people_count + 0 > 3"
    with _counting_proxy(counted) as proxy:
        copied, _ = _ogr2ogr(base, key, proxy, "-where", where, OGR_OAPIF_ALLOW_CQL_TEXT="YES")
    assert {f["properties"]["id"] for f in copied} == _expected(stored)
    sent, _ = counted.split()
    kept = {str(r.id) for r in stored if r.draft.kind == "attempt"}
    assert sorted(sent) == sorted(kept)  # the part GDAL could send: kind = 'attempt'
    assert all(q["filter"] == ["kind = 'attempt'"] for q, _ in counted.pages if "filter" in q)


def test_the_proxy_counts_what_an_unfiltered_read_sends(
    served: tuple[str, list[Report], str],
) -> None:
    """The counting itself: without a filter every report passes through it."""
    base, stored, key = served
    counted = _Counted()
    with _counting_proxy(counted) as proxy:
        copied, _ = _ogr2ogr(base, key, proxy, "-oo", "PAGE_SIZE=1000")
    sent, unfiltered = counted.split()
    assert not sent and len(copied) == REPORTS
    assert {i for _, ids in unfiltered for i in ids} == {str(r.id) for r in stored}
