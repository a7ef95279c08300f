"""Cutting the public release: exact counts of the reports, up to the delay, replacing the last."""

from __future__ import annotations

from datetime import datetime

from service.domain.release import ReleaseInfo, release_through
from service.storage.base import ReleaseReader, ReleaseWriter


def cut_release(writer: ReleaseWriter, *, now: datetime, delay_h: float) -> ReleaseInfo:
    """A new cut holding every day that ended at least ``delay_h`` hours before ``now``."""
    return writer.cut_release(release_through(now, delay_h), now)


def release_is_due(
    reader: ReleaseReader, *, now: datetime, delay_h: float, refresh_s: float
) -> bool:
    """Whether a new cut is wanted: none yet, the last one older than ``refresh_s`` (late
    reports, deletions, a new border), or a new day has come of age since."""
    info = reader.release_info()
    return (
        info is None
        or (now - info.cut_at).total_seconds() >= refresh_s
        or release_through(now, delay_h) != info.through
    )
