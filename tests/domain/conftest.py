"""Fixtures for the domain tests: the bundled border as the service indexes it and as plain edges."""

from __future__ import annotations

import pytest

from service.domain.segments import SegmentIndex

from . import bundled
from .brute_force import Edges


@pytest.fixture(scope="session")
def index() -> SegmentIndex:
    return bundled.index()


@pytest.fixture(scope="session")
def edges() -> Edges:
    return bundled.edges()
