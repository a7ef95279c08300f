"""Estimating the stores' u and crowding for linking (issue #20, docs/linking.md "Model in the
stores"), and rescoring the proposed links under a new estimate: ``crossings links estimate``,
and ``crossings serve`` once the latest estimate is ``link_estimate_every_h`` old."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from service.domain.link_model import (
    MIN_U_PAIRS,
    EstimatedModel,
    UnrelatedSample,
    estimate_model,
)
from service.storage.base import LinkStore, SegmentStore

# Proposed links rescored in one transaction: short enough not to hold up ingest (SQLite's one
# writer, PostGIS's link lock), as the background linker's batches are.
RESCORE_BATCH = 1_000


@dataclass(frozen=True, slots=True)
class Estimate:
    """What an estimate found: the sample, and the model stored from it (None: too few unrelated
    pairs, the defaults stay)."""

    sample: UnrelatedSample
    model: EstimatedModel | None
    superseded: bool = False  # not stored: another estimate was stored while this one sampled


def estimate_link_model(
    store: LinkStore,
    *,
    sample_size: int,
    now: datetime,
    seed: int | None = None,
    min_pairs: int = MIN_U_PAIRS,
    still_wanted: Callable[[], bool] | None = None,
) -> Estimate:
    """Draw a day-shifted sample of up to ``sample_size`` stored reports, estimate u and each
    segment's crowding from it and store them as the next version, when the sample holds at
    least ``min_pairs`` unrelated pairs and ``still_wanted`` (asked after the sampling, which
    takes a while) says so: servers that found an estimate due at once store one, not one each
    (each would make every proposed link's rescore due again)."""
    drawn_seed = random.SystemRandom().randrange(2**62) if seed is None else seed
    sample = store.sample_unrelated(sample_size, seed=drawn_seed)
    model = estimate_model(sample, at=now, min_pairs=min_pairs)
    if model is None:
        return Estimate(sample, None)
    if still_wanted is not None and not still_wanted():
        return Estimate(sample, None, superseded=True)
    version = store.save_link_model(model)
    return Estimate(sample, dataclasses.replace(model, version=version))


def rescore_links(store: LinkStore, *, on_batch: Callable[[int], None] | None = None) -> int:
    """Rescore every proposed link scored before the current estimate, a batch per transaction:
    how many."""
    done = 0
    while n := store.rescore_links(RESCORE_BATCH):
        done += n
        if on_batch is not None:
            on_batch(done)
    return done


class ModelStore(LinkStore, SegmentStore, Protocol):
    """What deciding whether an estimate is due reads."""


def link_model_is_due(store: ModelStore, *, now: datetime, every_s: float) -> bool:
    """Whether a new estimate is wanted: none yet, the latest ``every_s`` old, or made under
    another border (its crowding is per segment)."""
    latest = store.link_model()
    return (
        latest is None
        or (now - latest.estimated_at).total_seconds() >= every_s
        or latest.border_version != store.border_version()
    )
