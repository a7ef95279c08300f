"""Files shipped with the service: the bundled border and the PostGIS migrations.

A wheel carries them under ``service/_bundled`` (see pyproject's force-include); a source checkout
or an editable install reads them from the repository's top level, where they are maintained.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_REPO = _PACKAGE.parent


def _find(bundled: str, in_repo: str) -> Path:
    for candidate in (_PACKAGE / "_bundled" / bundled, _REPO / in_repo):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{in_repo} is neither bundled in the package nor in a source checkout")


def bundled_segments_path() -> Path:
    return _find("border_segments.geojson", "data/border_segments.geojson")


def alembic_dir() -> Path:
    return _find("alembic", "alembic")
