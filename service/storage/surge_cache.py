"""The series states a store's process last read or wrote, kept between detections (issue #19).

Reading and decoding each touched series' stored state on every fold or ingest cost detection more
than its statistics did (docs/surges.md, "What detection costs ingest"). A store keeps the states
here instead, and trusts them while the store's surge token (``surge_token``: PostGIS migration
0016, SQLite schema step 10) is the one this cache last wrote:

- every transaction that detects reads the token first, under the lock that lets one transaction
  detect at a time (the fold's advisory lock on PostGIS, the write transaction on SQLite); a token
  other than the one the cache holds its states under means another process (or a rolled-back
  transaction of this one) may have changed them: the cache starts empty, and holds what it
  reads next under the token read;
- a transaction that writes states writes a fresh random token with them and takes it as its
  own; if it rolls back, the stored token stays the old one and the next detection drops the
  cache. So a state here is always the one stored, and detection gives the same results as
  reading every state from the store (tested against a replay in tests/storage).

Writers that do not keep the cache (``advance``, ``rebuild``) write a token no cache holds.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping

from service.domain.surges.series import SeriesState


def new_token() -> int:
    """A token no cache holds (63 random bits: a signed bigint)."""
    return secrets.randbits(63)


class SeriesCache:
    """States by series (``series_key_text``); ``None``: known to have no stored state.

    Used only by the one transaction detecting at a time (the store's lock), so not locked here.
    """

    def __init__(self) -> None:
        self._token: int | None = None
        self._states: dict[str, SeriesState | None] = {}

    def check(self, stored: int | None) -> None:
        """Keep the cached states only if ``stored`` (the store's token now) is the one they
        were read or written under; what is read from now on is read under ``stored``."""
        if stored is None or stored != self._token:
            self._states.clear()
        self._token = stored

    def known(self, keys: Iterable[str]) -> tuple[dict[str, SeriesState], set[str]]:
        """The cached states of ``keys`` and the keys to read from the store."""
        found: dict[str, SeriesState] = {}
        missing: set[str] = set()
        for key in keys:
            if key in self._states:
                state = self._states[key]
                if state is not None:
                    found[key] = state
            else:
                missing.add(key)
        return found, missing

    def read(self, keys: Iterable[str], states: Mapping[str, SeriesState]) -> None:
        """What the store holds for ``keys`` (absent from ``states``: no stored state)."""
        for key in keys:
            self._states[key] = states.get(key)

    def wrote(self, states: Mapping[str, SeriesState]) -> int:
        """Take ``states`` as written; the token to store with them."""
        self._states.update(states)
        self._token = new_token()
        return self._token

    def drop(self) -> None:
        self._states.clear()
        self._token = None
