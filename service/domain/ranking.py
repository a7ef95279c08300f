"""The planar ranking of snapping's candidates as one compiled loop per point (``_ranking.c``).

numpy ranks a block of (points x candidates) pairs in some twenty passes over memory, each a
call with its own overhead; near a river line, where a point has a dozen chains and thirty-odd
edges to rank, those passes were most of its time. The loop in ``_ranking.c`` does the same
arithmetic in the same order, so every distance, foot and bound is bit for bit what
``geodesy.plane_foot`` and ``Chains.bounds`` give (tests/domain/test_ranking_kernel.py compares
them). The limit between its two passes is geodesy's, in numpy (snapping._own_ratio).

The library is built by the package's build hook (``hatch_build.py``) with the system's C
compiler when the package is installed (``pip install .`` or ``pip install -e .``), and loaded
here with ctypes: no Python C API, so nothing to build against but libc.
"""

from __future__ import annotations

import ctypes
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np

from service.domain.chains import Chains
from service.domain.geodesy import FloatArray, IntArray

LIBRARY = Path(__file__).with_name("_ranking" + (sysconfig.get_config_var("SHLIB_SUFFIX") or ".so"))

_f64 = np.ctypeslib.ndpointer(dtype=np.float64, flags="C_CONTIGUOUS")
_i64 = np.ctypeslib.ndpointer(dtype=np.int64, flags="C_CONTIGUOUS")
_u8 = np.ctypeslib.ndpointer(dtype=np.uint8, flags="C_CONTIGUOUS")
_COMMON: list[Any] = [
    ctypes.c_int64,
    _f64,
    _f64,
    _f64,
    _f64,
    _f64,
    _i64,
    _i64,
    _i64,
    ctypes.c_int32,
]
_COMMON += [_f64, _f64, _f64, _f64, _f64, _u8, _i64, _i64, _f64, _f64, _f64, _f64]


def _load() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(str(LIBRARY))
    except OSError as error:
        raise ImportError(
            f"{LIBRARY.name} is missing or unloadable ({error}); it is built when the package is "
            "installed: `pip install -e .` (or `pip install .`) with a C compiler present"
        ) from error
    lib.rank.restype = ctypes.c_int64
    lib.rank.argtypes = [*_COMMON, _f64, ctypes.c_int64, _i64, _i64, _f64, _f64]
    return lib


_LIB = _load()


class Ranking:
    """The arrays one ranking reads: points, their candidate lists, chains and edges.

    ``items[start[i]:start[i] + count[i]]`` are point i's candidate edges, or with ``chain`` its
    candidate chains (of ``chains``), which are first sorted out by their bounds as
    snapping._nearest explains. ``ratio`` is each point's leaf factor
    (geodesy.rank_ratio).
    """

    def __init__(
        self,
        lon: FloatArray,
        lat: FloatArray,
        kx: FloatArray,
        ky: FloatArray,
        ratio: FloatArray,
        lists: tuple[IntArray, IntArray, IntArray],
        *,
        chains: Chains | None,
        edges: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    ) -> None:
        start, count, items = lists
        c = chains
        none_f, none_i = np.zeros(1), np.zeros(1, dtype=np.int64)
        self._n = len(lon)
        self._args: tuple[object, ...] = (
            self._n,
            *(np.ascontiguousarray(a, dtype=np.float64) for a in (lon, lat, kx, ky, ratio)),
            *(np.ascontiguousarray(a, dtype=np.int64) for a in (start, count, items)),
            int(c is not None),
            *((c.ax, c.ay, c.dlon, c.dlat, c.eps_m) if c is not None else (none_f,) * 5),
            c.single.view(np.uint8) if c is not None else np.zeros(1, dtype=np.uint8),
            *((c.first, c.count) if c is not None else (none_i, none_i)),
            *edges,
        )

    def run(self) -> tuple[FloatArray, IntArray, IntArray, FloatArray, FloatArray]:
        """(least, point, edge, foot t, squared distance): each point's least squared planar
        distance to its candidate edges (inf without any), and every candidate edge within
        ``(sqrt(least) * ratio + RANK_SLACK_M) ** 2`` of its point, point by point and in edge
        order within a point.

        About two pass per point, so room for four is made first (room for every edge measured,
        tens per point near a river, would cost more in page faults than the ranking), and more
        only if that is not enough.
        """
        n = self._n
        least = np.empty(n)
        room = 4 * n + 64
        while True:
            row = np.empty(room, dtype=np.int64)
            edge = np.empty(room, dtype=np.int64)
            t = np.empty(room)
            d2 = np.empty(room)
            m = int(_LIB.rank(*self._args, least, room, row, edge, t, d2))
            if m == -2:
                raise MemoryError("the ranking kernel ran out of memory")
            if m <= room:
                return least, row[:m], edge[:m], t[:m], d2[:m]
            room = m
