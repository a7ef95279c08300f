"""OGC API - Features Part 3 (Filtering) for the reports: the ``filter`` parameter in CQL2 text or
JSON, parsed by pygeofilter and translated into the domain's filter tree (service/domain/
filters.py), and the queryables document that names what a filter may use.

pygeofilter 0.4's CQL2 text grammar writes the temporal operators infix (``t T_AFTER x``), not as
CQL2's functions (``T_AFTER(t, x)``), and stops a string at the first quote (no ``''``); its
CQL2 JSON reader takes BETWEEN's bounds as a pair and reads a ``bbox`` out of order. So the text
grammar is extended here (Lark's ``%extend`` / ``%override`` on pygeofilter's own grammar and
transformer), and a JSON filter is normalised to the forms pygeofilter reads before it is read.

The parsed tree is translated by service/api/cql2_translation.py: every value the stores see
comes out of it typed (numbers, UUIDs, aware datetimes, Shapely geometries), and the stores bind
them as parameters, never as SQL text.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from lark import Lark, Token, v_args
from lark.exceptions import LarkError, UnexpectedInput, VisitError
from pydantic import BaseModel, Field
from pygeofilter import ast, values
from pygeofilter.cql2 import TEMPORAL_PREDICATES_MAP
from pygeofilter.parsers.cql2_json import parse as parse_cql2_json
from pygeofilter.parsers.cql2_text import parser as cql2_text
from starlette.requests import Request

from service.api.cql2_translation import CRS84, GEOMETRY, SUPPORTED, bad, translate
from service.domain import filters as f
from service.domain.reports import SnapStatus

QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
SCHEMA_JSON = "application/schema+json"
PARAMS = ("filter", "filter-lang", "filter-crs")
# "cql-text" is the name drafts before CQL2 1.0 gave the text encoding; GDAL 3.6 sends it.
LANGS = ("cql2-text", "cql2-json", "cql-text")
MAX_FILTER_CHARS = 16_384
MAX_DEPTH = 48  # nested brackets (text) or objects and arrays (JSON)

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
]


def parse_filter(params: Mapping[str, str]) -> f.Filter | None:
    """The domain filter of an items request's ``filter``, ``filter-lang`` and ``filter-crs``
    (None without a filter); InvalidParameter naming the parameter and the reason otherwise."""
    crs = params.get("filter-crs", CRS84)
    if crs != CRS84:
        raise bad(f"only {CRS84} is supported", "filter-crs")
    lang = params.get("filter-lang", "cql2-text")
    if lang not in LANGS:
        raise bad(f"must be one of: {', '.join(LANGS)}", "filter-lang")
    text = params.get("filter")
    if text is None:
        return None
    if len(text) > MAX_FILTER_CHARS:
        raise bad(f"is longer than {MAX_FILTER_CHARS} characters")
    if not text.strip():
        raise bad("is empty")
    try:
        node = _parse_json(text) if lang == "cql2-json" else _parse_text(text)
        return translate(node)
    except RecursionError as error:
        raise bad(f"is nested too deeply (at most {MAX_DEPTH} levels)") from error


# --- CQL2 text ------------------------------------------------------------------------------

_TEXT_EXTENSION = r"""
%extend ?predicate: TEMPORAL_FUNCTION "(" expression "," expression ")" -> temporal_function
TEMPORAL_FUNCTION.3: /T_[A-Z]+(?=\s*\()/i
%override SINGLE_QUOTED: /'(?:[^']|'')*'/
%override ?interval: "INTERVAL"i "(" _interval_end "," _interval_end ")"
_interval_end: "'" (DATETIME | DATE | OPEN_END) "'"
OPEN_END: ".."
%ignore /[\t\r\n]+/
"""


@v_args(inline=True)
class _Transformer(cql2_text.CQLTransformer):  # type: ignore[misc]
    """pygeofilter's CQL2 text transformer, with CQL2's temporal functions and '' in strings."""

    def temporal_function(self, name: Token, lhs: Any, rhs: Any) -> ast.Node:
        return _temporal(str(name), lhs, rhs)

    def binary_temporal_predicate(self, lhs: Any, op: Token, rhs: Any) -> ast.Node:
        return _temporal(str(op), lhs, rhs)

    def wkt__geometry_with_srid(self, srid: Any, geometry: Any) -> Any:
        raise _Refused(f"geometries are in {CRS84}; an SRID is not supported")

    def wkt__multipoint_2(self, *coordinates: Any) -> dict[str, Any]:
        return {"type": "MultiPoint", "coordinates": coordinates}  # (pygeofilter's prints)

    def interval(self, start: Any, end: Any) -> values.Interval:
        return values.Interval(start, end)

    def OPEN_END(self, token: Token) -> str:
        return ".."

    def SINGLE_QUOTED(self, token: Token) -> str:
        return str(token)[1:-1].replace("''", "'")


def _temporal(name: str, lhs: Any, rhs: Any) -> ast.Node:
    op = name.lower()
    # pygeofilter reads T_INTERSECTS as TimeOverlaps; T_OVERLAPS itself is refused here, so
    # that TimeOverlaps means T_INTERSECTS alone.
    if op == "t_overlaps" or op not in TEMPORAL_PREDICATES_MAP:
        raise _Refused(
            f"does not support the temporal operator {name.upper()} (supported: {SUPPORTED})"
        )
    node: ast.Node = TEMPORAL_PREDICATES_MAP[op](lhs, rhs)
    return node


class _Refused(Exception):
    """A reason to refuse the filter, raised from inside the parser's transformer."""


@functools.cache
def _text_parser() -> Lark:
    grammar = Path(cql2_text.__file__).with_name("grammar.lark").read_text()
    return Lark(
        grammar + _TEXT_EXTENSION,
        parser="lalr",
        maybe_placeholders=False,
        transformer=_Transformer(),
        import_paths=[os.path.dirname(os.path.dirname(cql2_text.__file__))],
    )


def _parse_text(text: str) -> Any:
    depth = deepest = 0
    quoted = False
    for char in text:  # brackets outside strings, before the parser recurses into them
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif not quoted and char == ")":
            depth -= 1
    if deepest > MAX_DEPTH:
        raise bad(f"is nested too deeply (at most {MAX_DEPTH} levels)")
    try:
        return _text_parser().parse(text)
    except _Refused as error:
        raise bad(str(error)) from error
    except VisitError as error:
        if isinstance(error.orig_exc, _Refused):
            raise bad(str(error.orig_exc)) from error
        raise bad(f"is not valid CQL2 text ({error.orig_exc})") from error
    except UnexpectedInput as error:
        where = f"at line {error.line}, column {error.column}"
        found = getattr(error, "token", None) or getattr(error, "char", None)
        tail = f": unexpected {str(found)!r}" if found not in (None, "") else ": it ends too early"
        raise bad(f"is not valid CQL2 text {where}{tail}") from error
    except (LarkError, ValueError, TypeError, ArithmeticError) as error:
        # pygeofilter's transformer runs as the parser reduces: a date out of range, or a minus
        # before a text, raises from it directly.
        raise bad(f"is not valid CQL2 text ({error})") from error


# --- CQL2 JSON ------------------------------------------------------------------------------


def _parse_json(text: str) -> Any:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise bad(f"is not valid JSON ({error})") from error
    if not isinstance(doc, dict):
        raise bad("must be a JSON object (a CQL2 JSON expression)")
    if _depth(doc) > MAX_DEPTH:
        raise bad(f"is nested too deeply (at most {MAX_DEPTH} levels)")
    try:
        return parse_cql2_json(_normalised(doc))
    except _Refused as error:
        raise bad(str(error)) from error
    except RecursionError:
        raise
    except Exception as error:
        # pygeofilter's JSON reader raises bare Exceptions (and ValueError, KeyError, ...) for
        # documents it cannot read; each one is the client's document, named in the answer.
        raise bad(f"is not valid CQL2 JSON ({error})") from error


def _depth(doc: Any) -> int:
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _normalised(node: Any) -> Any:
    """The CQL2 JSON ``node`` in the forms pygeofilter 0.4 reads: BETWEEN's bounds as a pair, a
    ``bbox`` as the function BBOX (as CQL2 text reads it), T_OVERLAPS refused (pygeofilter reads
    T_INTERSECTS as T_OVERLAPS)."""
    if isinstance(node, list):
        return [_normalised(child) for child in node]
    if not isinstance(node, dict):
        return node
    if "bbox" in node and isinstance(node["bbox"], list):
        return {"function": {"name": "bbox", "arguments": node["bbox"]}}
    op = node.get("op")
    if isinstance(op, str) and op.lower() == "t_overlaps":
        raise _Refused(
            f"does not support the temporal operator T_OVERLAPS (supported: {SUPPORTED})"
        )
    out = {key: _normalised(value) for key, value in node.items()}
    args = out.get("args")
    if op == "between" and isinstance(args, list) and len(args) == 3:
        out["args"] = [args[0], [args[1], args[2]]]
    if isinstance(op, str) and op != op.lower() and op != "isNull":
        out["op"] = op.lower()
    return out


# --- queryables -----------------------------------------------------------------------------

_JSON_TYPES = {"uuid": "string", "string": "string", "integer": "integer", "number": "number",
               "datetime": "string"}  # fmt: skip


def queryables(
    url: str, *, title: str, kinds: tuple[str, ...], countries: frozenset[str]
) -> dict[str, Any]:
    """The reports' queryables as a JSON Schema (Part 3): each property a filter may name, its
    type and, for the closed sets, its values."""
    enums: dict[str, list[str]] = {
        "kind": list(kinds),
        "direction": sorted(countries),
        "side": sorted(countries),
        "snap_status": [status.value for status in SnapStatus],
    }
    props: dict[str, Any] = {
        GEOMETRY: {"title": "Position", "format": "geometry-point",
                    "x-ogc-role": "primary-geometry"},
    }  # fmt: skip
    for name, kind in f.FILTER_PROPERTIES.items():
        prop: dict[str, Any] = {"title": name, "type": _JSON_TYPES[kind]}
        if kind == "uuid":
            prop["format"] = "uuid"
        if kind == "datetime":
            prop["format"] = "date-time"
        if name in enums:
            prop["enum"] = enums[name]
        if name == "observed_at":
            prop["x-ogc-role"] = "primary-instant"
        props[name] = prop
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": url,
        "type": "object",
        "title": title,
        "properties": props,
        "additionalProperties": False,
        # GDAL 3.6 reads the names it may send from this list (a draft of Part 3's format); it
        # is ignored by JSON Schema readers.
        "queryables": [{"id": name} for name in props],
    }


class FilterQuery(BaseModel):
    """The filter parameters of an items request (Part 3), declared once; ``parse_filter`` reads
    them. ``filter-lang`` lists "cql-text": GDAL 3.6 pushes a -where to the server only then."""

    filter: str | None = Field(
        default=None,
        description="A CQL2 filter (OGC API - Features Part 3); see the queryables",
    )
    filter_lang: str = Field(
        default="cql2-text",
        alias="filter-lang",
        description="cql2-text (the default; cql-text is read as it) or cql2-json",
        json_schema_extra={"enum": list(LANGS)},
    )
    filter_crs: str = Field(default=CRS84, alias="filter-crs", json_schema_extra={"enum": [CRS84]})


def queryables_media(request: Request) -> str:
    """application/schema+json, as Part 3 says, unless the client asks for JSON alone (GDAL 3.6
    asks for GeoJSON or JSON, and refuses any other answer)."""
    accept = request.headers.get("accept", "")
    if SCHEMA_JSON in accept or "*/*" in accept or not accept:
        return SCHEMA_JSON
    return "application/json"
