"""The series states a store keeps in memory (service/storage/surge_cache.py) are trusted only
while the stored token is the one the cache last wrote: another writer's token, or the old
token left by a transaction of ours that rolled back, empties it. And detection pauses Python's
cyclic garbage collector while it moves the states (storage/surges.py), leaving it as it was."""

from __future__ import annotations

import gc
from datetime import date

from service.domain.surges.series import SeriesState
from service.storage.surge_cache import SeriesCache
from service.storage.surges import _collector_paused

STATE = SeriesState(first_day=date(2026, 12, 1), last_day=date(2026, 12, 1), counts=(3,), days=())


def test_a_cache_holds_what_it_read_and_wrote_while_the_token_is_its_own() -> None:
    cache = SeriesCache()
    cache.check(0)
    assert cache.known({"a", "b"}) == ({}, {"a", "b"})
    cache.read({"a", "b"}, {"a": STATE})  # b: no stored state
    token = cache.wrote({"c": STATE})
    cache.check(token)
    assert cache.known({"a", "b", "c", "d"}) == ({"a": STATE, "c": STATE}, {"d"})


def test_another_token_empties_it() -> None:
    cache = SeriesCache()
    cache.check(0)
    old = cache.wrote({"a": STATE})
    cache.check(old)
    cache.wrote({"b": STATE})  # in a transaction that then rolled back: the store keeps ``old``
    cache.check(old)
    assert cache.known({"a", "b"}) == ({}, {"a", "b"})
    cache.read({"a"}, {"a": STATE})
    cache.check(12345)  # another process wrote
    assert cache.known({"a"}) == ({}, {"a"})


def test_detection_pauses_the_collector_and_leaves_it_as_it_found_it() -> None:
    assert gc.isenabled()
    with _collector_paused():
        assert not gc.isenabled()
        with _collector_paused():  # another detection under way at once (another store)
            assert not gc.isenabled()
        assert not gc.isenabled()  # on again only when the last ends
    assert gc.isenabled()
    gc.disable()  # the process had turned it off: it stays off
    try:
        with _collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
