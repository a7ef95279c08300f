"""Content negotiation (``f=`` or Accept) and the non-JSON encodings: HTML, CSV, GeoJSON-seq."""

from __future__ import annotations

import csv
import html
import io
from typing import Any

import orjson
from starlette.requests import Request

from service.domain.errors import FieldError, InvalidParameter

GEOJSON = "application/geo+json"
JSON = "application/json"
HTML = "text/html"
CSV = "text/csv"
GEOJSON_SEQ = "application/geo+json-seq"
FORMATS = {"json": JSON, "geojson": GEOJSON, "html": HTML, "csv": CSV, "jsonseq": GEOJSON_SEQ}


def negotiate(request: Request, f: str | None, *, offered: tuple[str, ...]) -> str:
    """The media type to answer with: ``f`` (the route's FormatQuery) wins, then the Accept
    header, else the first offered.

    ``f=json`` means the resource's JSON flavour (GeoJSON for features)."""
    if f is not None:
        media = FORMATS.get(f)
        if media == JSON and GEOJSON in offered:
            media = GEOJSON
        if media is None or media not in offered:
            names = sorted(
                k
                for k, v in FORMATS.items()
                if v in offered or (k == "json" and GEOJSON in offered)
            )
            raise InvalidParameter(
                f"f={f} is not offered here",
                errors=[FieldError("f", f"one of: {', '.join(names)}")],
            )
        return media
    accept = request.headers.get("accept", "")
    best, best_q = offered[0], -1.0
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        for candidate in offered:
            if _matches(media, candidate) and q > best_q:
                best, best_q = candidate, q
    return best


def _matches(pattern: str, media: str) -> bool:
    if pattern in ("*/*", media):
        return True
    if pattern == JSON and media == GEOJSON:
        return True
    return pattern.endswith("/*") and media.startswith(pattern[:-1])


def geojson_seq(features: list[dict[str, Any]]) -> bytes:
    """RFC 8142: each feature after a record separator, ending in a newline."""
    return b"".join(b"\x1e" + orjson.dumps(f) + b"\n" for f in features)


def features_csv(features: list[dict[str, Any]]) -> bytes:
    """One row per feature: id, lon, lat (points) and every property, in first-seen order."""
    columns: dict[str, None] = {"id": None}
    points = any((f.get("geometry") or {}).get("type") == "Point" for f in features)
    if points:
        columns.update({"lon": None, "lat": None})
    for f in features:
        columns.update(dict.fromkeys(f["properties"]))
    out = io.StringIO()
    names = list(columns)
    writer = csv.writer(out)
    writer.writerow([safe_cell(name) for name in names])
    for f in features:
        row = dict(f["properties"])
        row["id"] = f.get("id")
        geometry = f.get("geometry") or {}
        if points and geometry.get("type") == "Point":
            row["lon"], row["lat"] = geometry["coordinates"][:2]
        writer.writerow([safe_cell(_cell(row.get(name))) for name in names])
    return out.getvalue().encode()


# OWASP's CSV injection rule: a spreadsheet runs a cell that starts with one of these as a
# formula (tab and carriage return too, as some split on them before looking).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A CSV cell no spreadsheet runs: text that starts like a formula gets a leading ``'``
    (OWASP), which spreadsheets show as text. Numbers stay numbers: a negative longitude is
    written as ``-73.5``, since only text (notes, device ids, any string) can carry a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return "" if value is None else value


def html_page(title: str, body: str) -> bytes:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        "<style>body{font:15px/1.4 system-ui,sans-serif;margin:2em;max-width:80em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .5em;"
        "text-align:left;vertical-align:top}code{font-size:90%}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    ).encode()


def html_links(links: list[dict[str, Any]]) -> str:
    items = "".join(
        f"<li><a href='{html.escape(ln['href'])}'>{html.escape(ln.get('title') or ln['rel'])}</a>"
        f" <small>({html.escape(ln['rel'])}, {html.escape(ln.get('type', ''))})</small></li>"
        for ln in links
    )
    return f"<ul>{items}</ul>"


def html_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>None.</p>"
    columns = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(_cell(r.get(c))))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_dict(doc: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td><code>{html.escape(orjson.dumps(v).decode() if isinstance(v, dict | list) else str(v))}</code></td></tr>"
        for k, v in doc.items()
        if k not in ("links", "type", "features")
    )
    return f"<table>{rows}</table>"


def rows_csv(rows: list[dict[str, Any]], columns: list[str]) -> bytes:
    """A header of ``columns``, then one line per row (null as an empty field)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([safe_cell(column) for column in columns])
    writer.writerows([_csv_cell(row.get(column)) for column in columns] for row in rows)
    return out.getvalue().encode()


def _csv_cell(value: Any) -> Any:
    """``safe_cell`` of the cell's text: once per cell of a table of up to 12,000 rows for the
    public (bench/costliest.py), so the common types come first."""
    kind = type(value)
    if kind is int or kind is float:
        return value
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    return safe_cell(_cell(value))
