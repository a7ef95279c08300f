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
import numpy.typing as npt

from service.domain.chains import Chains
from service.domain.geodesy import FloatArray, IntArray

LIBRARY = Path(__file__).with_name("_ranking" + (sysconfig.get_config_var("SHLIB_SUFFIX") or ".so"))

# Arrays go to the kernel as bare pointers (numpy's checked ndpointer costs a few microseconds an
# argument, which a single report's snap would feel); _pointer checks dtype and layout instead.
_P = ctypes.c_void_p
_ARGTYPES: list[Any] = [ctypes.c_int64, _P, _P, _P, _P, _P, _P, _P, _P, ctypes.c_int32]
_ARGTYPES += [_P] * 12 + [_P, ctypes.c_int64, _P, _P, _P, _P]


def _pointer(a: npt.NDArray[Any], dtype: type[np.generic]) -> int:
    if a.dtype != dtype or not a.flags.c_contiguous:
        raise TypeError(f"the kernel takes contiguous {np.dtype(dtype)} arrays, not {a.dtype}")
    return int(a.ctypes.data)


def _load() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(str(LIBRARY))
    except OSError as error:
        raise ImportError(
            f"{LIBRARY.name} is missing or unloadable ({error}); it is built when the package is "
            "installed: `pip install -e .` (or `pip install .`) with a C compiler present"
        ) from error
    lib.rank.restype = ctypes.c_int64
    lib.rank.argtypes = _ARGTYPES
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
        f64 = [np.ascontiguousarray(a, dtype=np.float64) for a in (lon, lat, kx, ky, ratio)]
        i64 = [np.ascontiguousarray(a, dtype=np.int64) for a in (start, count, items)]
        if c is not None:
            chain_f64 = [c.ax, c.ay, c.dlon, c.dlat, c.eps_m]
            single, chain_i64 = c.single.view(np.uint8), [c.first, c.count]
        else:
            chain_f64, single, chain_i64 = [none_f] * 5, np.zeros(1, np.uint8), [none_i] * 2
        self._n = len(lon)
        self._keep = (f64, i64, chain_f64, single, chain_i64, edges)  # alive while in use
        self._args: tuple[object, ...] = (
            self._n,
            *(_pointer(a, np.float64) for a in f64),
            *(_pointer(a, np.int64) for a in i64),
            int(c is not None),
            *(_pointer(a, np.float64) for a in chain_f64),
            _pointer(single, np.uint8),
            *(_pointer(a, np.int64) for a in chain_i64),
            *(_pointer(a, np.float64) for a in edges),
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
            m = int(
                _LIB.rank(
                    *self._args,
                    _pointer(least, np.float64),
                    room,
                    _pointer(row, np.int64),
                    _pointer(edge, np.int64),
                    _pointer(t, np.float64),
                    _pointer(d2, np.float64),
                )
            )
            if m == -2:
                raise MemoryError("the ranking kernel ran out of memory")
            if m <= room:
                return least, row[:m], edge[:m], t[:m], d2[:m]
            room = m
