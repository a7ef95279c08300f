"""Query parameters of the tile routes (tiles, TileJSON): which reports a tile draws."""

from __future__ import annotations

from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field

from service.api.schemas.pages import parse_time
from service.domain import tiles


class TileFilterQuery(BaseModel):
    """The tiles' filters, declared once: FastAPI documents and reads them (and refuses any other
    parameter); ``to_filter`` checks their values, naming the one that is wrong."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str | None = Field(
        default=None, description="Reports observed at or after this instant (RFC 3339)"
    )
    end: str | None = Field(
        default=None, description="Reports observed before this instant (RFC 3339)"
    )
    kind: str | None = Field(default=None, description="Reports of this kind only", max_length=100)

    def to_filter(self, kinds: tuple[str, ...]) -> tiles.TileFilter:
        flt = tiles.TileFilter(
            start=parse_time("start", self.start), end=parse_time("end", self.end), kind=self.kind
        )
        return tiles.check_filter(flt, kinds)

    def query_string(self) -> str:
        """The filters given (empty ones left out), for URLs that carry them on: the TileJSON's
        tile URLs, the style's TileJSON URL."""
        return urlencode({k: v for k, v in self.model_dump().items() if v})


class StyleFilterQuery(TileFilterQuery):
    """The tiles' filters as the map style takes them, to pass on to the TileJSON URL (which
    checks them); other parameters are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)
