"""Which permission each route needs: one table, read by the one dependency every route takes
(deps.get_caller). A route missing here is refused to everyone (deny by default), and a test
checks that every route of the app is listed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from service.domain.access import Permission as P

Rule = P | Callable[[Mapping[str, Any]], P]


def _items(params: Mapping[str, Any]) -> P:
    return P.READ_OWN if params.get("collection_id") == "reports" else P.PUBLIC


RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/healthz"): P.PUBLIC,
    ("GET", "/readyz"): P.PUBLIC,
    # reports
    ("POST", "/v1/reports"): P.SUBMIT,
    ("POST", "/v1/reports/batch"): P.SUBMIT,
    ("GET", "/v1/reports"): P.READ_OWN,
    ("GET", "/v1/reports/{report_id}"): P.READ_OWN,
    ("DELETE", "/v1/reports/{report_id}"): P.ADMIN,
    ("POST", "/v1/snap"): P.SUBMIT,
    # the border
    ("GET", "/v1/segments"): P.PUBLIC,
    ("GET", "/v1/segments/{segment_id}"): P.PUBLIC,
    ("GET", "/v1/segments/{segment_id}/timeseries"): P.PUBLIC,
    # aggregates (suppressed unless the caller reads everything)
    ("GET", "/v1/aggregates"): P.PUBLIC,
    ("GET", "/v1/aggregates/segments.geojson"): P.PUBLIC,
    # tiles and the map (clusters of at least k reports unless the caller reads everything)
    ("GET", "/v1/tiles/{z}/{x}/{y}.mvt"): P.PUBLIC,
    ("GET", "/v1/tiles/{z}/{x}/{y}.geojson"): P.PUBLIC,
    ("GET", "/v1/tiles.json"): P.PUBLIC,
    ("GET", "/v1/tiles/style.json"): P.PUBLIC,
    ("GET", "/map"): P.PUBLIC,
    # OGC API - Features: the reports collection's items are reports
    ("GET", "/ogc"): P.PUBLIC,
    ("GET", "/ogc/api"): P.PUBLIC,
    ("GET", "/ogc/conformance"): P.PUBLIC,
    ("GET", "/ogc/collections"): P.PUBLIC,
    ("GET", "/ogc/collections/{collection_id}"): P.PUBLIC,
    ("GET", "/ogc/collections/{collection_id}/schema"): P.PUBLIC,
    ("GET", "/ogc/collections/{collection_id}/queryables"): P.PUBLIC,
    ("GET", "/ogc/collections/reports/items"): P.READ_OWN,
    ("POST", "/ogc/collections/reports/items"): P.SUBMIT,
    ("GET", "/ogc/collections/segments/items"): P.PUBLIC,
    ("GET", "/ogc/collections/{collection_id}/items"): P.PUBLIC,  # unknown collections: 404
    ("GET", "/ogc/collections/{collection_id}/items/{feature_id}"): _items,
    # administration
    ("GET", "/v1/keys"): P.ADMIN,
    ("POST", "/v1/keys"): P.ADMIN,
    ("DELETE", "/v1/keys/{key_id}"): P.ADMIN,
    ("GET", "/v1/audit"): P.ADMIN,
    # alerts (issue #19): analysts and admins; webhook subscriptions: admins
    ("GET", "/v1/alerts"): P.READ_ALL,
    ("GET", "/v1/alerts/{alert_id}"): P.READ_ALL,
    # links between reports of one crossing (issue #20): analysts and admins
    ("GET", "/v1/links"): P.READ_ALL,
    ("POST", "/v1/links/{link_id}/confirm"): P.READ_ALL,
    ("POST", "/v1/links/{link_id}/reject"): P.READ_ALL,
    ("GET", "/v1/webhooks"): P.ADMIN,
    ("POST", "/v1/webhooks"): P.ADMIN,
    ("GET", "/v1/webhooks/{webhook_id}"): P.ADMIN,
    ("DELETE", "/v1/webhooks/{webhook_id}"): P.ADMIN,
    ("POST", "/v1/webhooks/{webhook_id}/rotate"): P.ADMIN,
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): P.ADMIN,
    # operations: an admin key, or (without a key) an address in CROSSINGS_METRICS_ALLOW
    ("GET", "/metrics"): P.METRICS,
}
# The documentation routes: public, and outside the routers' dependency (routes/docs.py).
DOCUMENTATION = frozenset({"/openapi.json", "/docs", "/redoc"})


def permission_for(method: str, path: str, params: Mapping[str, Any]) -> P | None:
    rule = RULES.get(("GET" if method == "HEAD" else method, path))
    if rule is None or isinstance(rule, P):
        return rule
    return rule(params)
