"""Surges (issue #19): a series' own normal, a negative-binomial CUSUM against it, and episodes.

Plain functions over plain data: no storage, no clock. See docs/surges.md.
"""

from service.domain.surges.cusum import (
    BatchRun,
    SurgeParams,
    params_for,
    run_batch,
)
from service.domain.surges.series import (
    HORIZON_DAYS,
    KEEP_DAYS,
    DayState,
    Episode,
    EpisodeEvent,
    SeriesState,
    advance,
    observe,
    replay,
    state_from_bytes,
    state_from_dict,
    state_to_bytes,
    state_to_dict,
)

__all__ = [
    "HORIZON_DAYS",
    "KEEP_DAYS",
    "BatchRun",
    "DayState",
    "Episode",
    "EpisodeEvent",
    "SeriesState",
    "SurgeParams",
    "advance",
    "observe",
    "params_for",
    "replay",
    "run_batch",
    "state_from_bytes",
    "state_from_dict",
    "state_to_bytes",
    "state_to_dict",
]
