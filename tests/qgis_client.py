"""QGIS (PyQGIS, headless) as a GIS user drives it, for tests/test_qgis.py.

Run with the system Python that Debian's python3-qgis is built for, not the test virtualenv:
    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/qgis_client.py CHECK BASE_URL [KEY] [OUT]
It prints one JSON object. It imports nothing from the service: it is a client.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

from qgis.core import (
    QgsApplication,
    QgsAuthMethodConfig,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFillSymbol,
    QgsGeometry,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsProject,
    QgsRectangle,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
    QgsVectorTileLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor


def basic_auth(user: str, password: str) -> str:
    """A Basic authentication configuration, as made in Settings > Options > Authentication:
    the id that layers name in ``authcfg``."""
    manager = QgsApplication.authManager()
    if not manager.masterPasswordIsSet():
        manager.setMasterPassword("tests-master-password", True)
    config = QgsAuthMethodConfig("Basic")
    config.setName("crossings")
    config.setConfig("username", user)
    config.setConfig("password", password)
    ok, config = manager.storeAuthenticationConfig(config)
    if not ok:
        raise RuntimeError("QGIS did not store the authentication configuration")
    return str(config.id())


def oapif_layer(base: str, collection: str, authcfg: str | None) -> QgsVectorLayer:
    """Layer > Add Layer > Add WFS / OGC API - Features Layer, on ``base``/ogc."""
    uri = f"url='{base}/ogc' typename='{collection}'"
    if authcfg:
        uri += f" authcfg={authcfg}"
    layer = QgsVectorLayer(uri, collection, "OAPIF")
    if not layer.isValid():
        raise RuntimeError(f"QGIS could not open {collection}: {layer.error().summary()}")
    return layer


def count(base: str, collection: str, key: str | None) -> dict[str, Any]:
    """The layer's feature count as QGIS first knows it, and the features QGIS reads."""
    authcfg = basic_auth("qgis", key) if key else None
    layer = oapif_layer(base, collection, authcfg)
    announced = layer.featureCount()
    ids = [str(f.attribute("id")) if collection == "reports" else str(f.attribute("segment_id"))
           for f in layer.getFeatures()]  # fmt: skip
    fields = [f.name() for f in layer.fields()]
    return {"announced": announced, "read": len(ids), "ids": ids, "fields": fields}


def render(base: str, key: str | None, out: str, extent: list[float], size: int) -> dict[str, Any]:
    """The vector tile layer with the service's style (its styleUrl, converted by QGIS's MapBox GL
    converter) over a blue background layer, rendered to ``out`` (PNG)."""
    uri = (
        f"type=xyz&url={base}/v1/tiles/{{z}}/{{x}}/{{y}}.mvt&zmin=0&zmax=14"
        f"&styleUrl={base}/v1/tiles/style.json"
    )
    if key:
        uri += f"&authcfg={basic_auth('qgis', key)}"
    tiles = QgsVectorTileLayer(uri, "crossings")
    if not tiles.isValid():
        raise RuntimeError("QGIS could not open the vector tiles")
    message, styled = tiles.loadDefaultStyle()
    web = QgsCoordinateReferenceSystem("EPSG:3857")
    background = QgsVectorLayer("Polygon?crs=EPSG:3857", "background", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(-2e7, -2e7, 2e7, 2e7)))
    background.dataProvider().addFeatures([feature])
    symbol = QgsFillSymbol.createSimple({"color": "0,0,255,255", "outline_style": "no"})
    background.setRenderer(QgsSingleSymbolRenderer(symbol))
    QgsProject.instance().addMapLayers([background, tiles])
    settings = QgsMapSettings()
    settings.setLayers([tiles, background])  # first drawn last: tiles on top
    settings.setDestinationCrs(web)
    settings.setBackgroundColor(QColor(255, 255, 255))
    settings.setOutputSize(QSize(size, size))
    settings.setExtent(QgsRectangle(*extent))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    image.save(out, "PNG")
    colours: dict[str, int] = {}
    for y in range(image.height()):
        for x in range(image.width()):
            name = QColor(image.pixel(x, y)).name()
            colours[name] = colours.get(name, 0) + 1
    errors = [f"{e.layerID}: {e.message}" for e in job.errors()]
    return {
        "styled": bool(styled),
        "style_message": message,
        "errors": errors,
        "image": out,
        "colours": colours,  # "#rrggbb" -> pixels
        "styles": [st.styleName() for st in tiles.renderer().styles()],
    }


def main() -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    check, base = sys.argv[1], sys.argv[2]
    key = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
    profile = tempfile.mkdtemp(prefix="qgis-profile-")
    os.environ["QGIS_AUTH_DB_DIR_PATH"] = profile
    app = QgsApplication([], False, profile)
    app.initQgis()
    try:
        if check in ("reports", "segments"):
            result = count(base, check, key)
        elif check == "render":
            extent = [float(v) for v in sys.argv[5].split(",")]
            result = render(base, key, sys.argv[4], extent, int(sys.argv[6]))
        else:
            raise SystemExit(f"unknown check {check!r}")
    finally:
        QgsProject.instance().clear()
    print(json.dumps(result))
    app.exitQgis()


if __name__ == "__main__":
    main()
