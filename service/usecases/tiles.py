"""Map tiles: a tile's content from the store and the loaded border, as MVT or GeoJSON.

No tile is cached on the server: each response is computed from the store as it is, so a report is
in the very next tile asked for. Revalidation (ETag) saves the transfer, not the work.
"""

from __future__ import annotations

from service.domain.segments import SegmentIndex
from service.domain.tiles import (
    TileContent,
    TileQuery,
    TileSegment,
    segment_boxes,
    segments_in_tile,
)
from service.storage.base import TileStore
from service.usecases.tile_encoding import encode_mvt


def tile_content(store: TileStore, index: SegmentIndex, query: TileQuery) -> TileContent:
    positions = segments_in_tile(segment_boxes(index), query.tile)
    segments = [index.segments[i] for i in positions]
    counts = (
        store.segment_counts(query.filter, [s.segment_id for s in segments]) if segments else {}
    )
    return TileContent(
        tile=query.tile,
        segments=tuple(
            TileSegment(s, i + 1, counts.get(s.segment_id))
            for i, s in zip(positions, segments, strict=True)
        ),
        reports=store.tile_reports(query),
    )


def mvt_tile(store: TileStore, index: SegmentIndex, query: TileQuery) -> bytes:
    """The tile as Mapbox Vector Tile bytes (empty for an empty tile): encoded by the store when
    it can (PostGIS, one query), else in Python from the same content."""
    native = store.tile_mvt(query)
    if native is not None:
        return native
    return encode_mvt(tile_content(store, index, query))
