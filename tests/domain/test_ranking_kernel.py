"""The compiled ranking (domain.ranking, _ranking.c) against numpy doing the same arithmetic.

The kernel must give bit for bit what geodesy.plane_foot and Chains.bounds give, so that the
survivors it hands on, and so every snapped result, are what the numpy ranking gave before it. The
reference here is that numpy ranking, over flat (point, candidate) pairs. That the ranking never
drops the geodesically nearest edge is checked against brute force, here for the kernel's own
survivors and in test_snapping_properties / test_snapping_cases for the snapped results.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings

from service.domain.candidate_grid import expand_slices
from service.domain.chains import Chains
from service.domain.geodesy import FloatArray, IntArray, metres_per_degree, plane_foot
from service.domain.ranking import Ranking
from service.domain.segments import SegmentIndex
from service.domain.snapping import RANK_SLACK_M

from .brute_force import Edges, nearest_on_border
from .bundled import near_the_river

Ranked = tuple[FloatArray, IntArray, IntArray, FloatArray, FloatArray]


def _bits(a: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.int64)


def _least_per_point(value: FloatArray, point: IntArray, n: int) -> FloatArray:
    least = np.full(n, np.inf)
    np.minimum.at(least, point, value)
    return least


def numpy_ranking(
    index: SegmentIndex,
    lon: FloatArray,
    lat: FloatArray,
    ratio: FloatArray,
    lists: tuple[IntArray, IntArray, IntArray],
    chains: Chains | None,
) -> Ranked:
    """What Ranking.run returns, the way snapping ranked with numpy before the kernel."""
    start, count, items = lists
    kx, ky = metres_per_degree(lat)
    point, at = expand_slices(start, count)
    candidate = items[at]
    if chains is not None:
        lower, upper = chains.bounds(lon[point], lat[point], kx=kx[point], ky=ky[point],
                                     chain=candidate)  # fmt: skip
        limit = _least_per_point(upper, point, len(lon)) * ratio + RANK_SLACK_M
        kept = lower <= limit[point]
        point, chain = point[kept], candidate[kept]
        pair, candidate = expand_slices(chains.first[chain], chains.count[chain])
        point = point[pair]
    edges = (index.ax, index.ay, index.dlon, index.dlat)
    d2, t = plane_foot(edges, lon[point], lat[point], kx=kx[point], ky=ky[point], line=candidate)
    least = _least_per_point(d2, point, len(lon))
    limit = (np.sqrt(least) * ratio + RANK_SLACK_M) ** 2
    keep = d2 <= limit[point]
    return least, point[keep], candidate[keep], t[keep], d2[keep]


def kernel_ranking(
    index: SegmentIndex,
    lon: FloatArray,
    lat: FloatArray,
    ratio: FloatArray,
    lists: tuple[IntArray, IntArray, IntArray],
    chains: Chains | None,
) -> Ranked:
    kx, ky = metres_per_degree(lat)
    return Ranking(lon, lat, kx, ky, ratio, lists, chains=chains,
                   edges=(index.ax, index.ay, index.dlon, index.dlat)).run()  # fmt: skip


def _leaf_lists(
    index: SegmentIndex, leaf: IntArray, *, chained: bool
) -> tuple[tuple[IntArray, IntArray, IntArray], Chains | None]:
    grid = index.grid
    if chained:
        start = grid.chain_start[leaf]
        return (start, grid.chain_stop[leaf] - start, grid.chains), index.chains
    return (grid.start[leaf], grid.stop[leaf] - grid.start[leaf], grid.edges), None


def _points_in(
    index: SegmentIndex, leaves: IntArray, rng: np.random.Generator, per_leaf: int
) -> tuple[FloatArray, FloatArray]:
    grid = index.grid
    leaf = np.repeat(leaves, per_leaf)
    lon = grid.west[leaf] + rng.uniform(0, 1, len(leaf)) * grid.size_deg[leaf]
    lat = grid.south[leaf] + rng.uniform(0, 1, len(leaf)) * grid.size_deg[leaf]
    return lon, lat


def _assert_same(got: Ranked, want: Ranked) -> None:
    least, row, edge, t, d2 = got
    w_least, w_row, w_edge, w_t, w_d2 = want
    np.testing.assert_array_equal(_bits(least), _bits(w_least))
    np.testing.assert_array_equal(row, w_row)
    np.testing.assert_array_equal(edge, w_edge)
    # By value: numpy 1 and 2 give a zero t different signs, which no result depends on.
    np.testing.assert_array_equal(t, w_t)
    np.testing.assert_array_equal(_bits(d2), _bits(w_d2))


def test_the_kernel_ranks_a_leafs_chains_bit_for_bit_as_numpy(index: SegmentIndex) -> None:
    grid = index.grid
    leaves = np.flatnonzero((grid.child < 0) & (grid.chain_stop > grid.chain_start))
    rng = np.random.default_rng(15)
    leaves = rng.choice(leaves, 400, replace=False)
    lon, lat = _points_in(index, leaves, rng, 20)
    leaf = grid.locate(lon, lat)
    lists, chains = _leaf_lists(index, leaf, chained=True)
    assert chains is not None
    ratio = grid.rank_ratio[leaf]
    got = kernel_ranking(index, lon, lat, ratio, lists, chains)
    assert len(got[1]) > len(lon)  # several survivors a point, in the plane
    _assert_same(got, numpy_ranking(index, lon, lat, ratio, lists, chains))


def test_the_kernel_ranks_a_leafs_edges_bit_for_bit_as_numpy(index: SegmentIndex) -> None:
    grid = index.grid
    leaves = np.flatnonzero((grid.child < 0) & (grid.stop > grid.start))
    rng = np.random.default_rng(16)
    leaves = rng.choice(leaves, 1000, replace=False)
    lon, lat = _points_in(index, leaves, rng, 8)
    leaf = grid.locate(lon, lat)
    lists, _ = _leaf_lists(index, leaf, chained=False)
    ratio = grid.rank_ratio[leaf]
    _assert_same(
        kernel_ranking(index, lon, lat, ratio, lists, None),
        numpy_ranking(index, lon, lat, ratio, lists, None),
    )


def test_the_kernel_takes_any_list_and_its_edge_cases(index: SegmentIndex) -> None:
    # Lists of any length (the STRtree path's), empty lists, a point on a vertex (least 0), an
    # infinite ratio, and a zero-length edge (t = 0): still numpy's answer.
    edges = np.arange(len(index.ax), dtype=np.int64)
    lon = np.array([index.ax[10], index.ax[20] + 0.01, -100.0, index.ax[30], index.ax[40] + 0.1])
    lat = np.array([index.ay[10], index.ay[20], 30.0, index.ay[30] + 0.001, index.ay[40]])
    start = np.array([0, 15, 0, 25, 0])
    count = np.array([50, 3000, 0, 10, len(edges)])
    ratio = np.array([1.0001, np.inf, 1.0, 1.0001, 1.002])
    lists = (start, count, edges)
    _assert_same(
        kernel_ranking(index, lon, lat, ratio, lists, None),
        numpy_ranking(index, lon, lat, ratio, lists, None),
    )
    zero = (np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1))
    kx, ky = metres_per_degree(np.array([45.0]))
    r = Ranking(np.array([1.0]), np.array([45.0]), kx, ky, np.ones(1),
                (np.zeros(1, np.int64), np.ones(1, np.int64), np.zeros(1, np.int64)),
                chains=None, edges=zero).run()  # fmt: skip
    d2, t = plane_foot(zero, np.array([1.0]), np.array([45.0]), kx=kx, ky=ky,
                       line=np.zeros(1, np.int64))  # fmt: skip
    assert _bits(r[0]).tolist() == _bits(d2).tolist() and r[3].tolist() == t.tolist() == [0.0]


@settings(max_examples=150, deadline=None)
@given(near_the_river())
def test_the_kernels_survivors_hold_the_geodesically_nearest_edge(
    index: SegmentIndex, edges: Edges, point: tuple[float, float]
) -> None:
    # The bound the ranking rests on, for the kernel's own survivors: the edge brute force finds
    # nearest, or one as near (the two edges of a vertex), is among them.
    lon, lat = np.array([point[0]]), np.array([point[1]])
    leaf = index.grid.locate(lon, lat)
    if leaf[0] < 0:
        return
    grid = index.grid
    chained = bool(grid.chain_stop[leaf[0]] > grid.chain_start[leaf[0]])
    lists, chains = _leaf_lists(index, leaf, chained=chained)
    _, _, survivors, _, _ = kernel_ranking(index, lon, lat, grid.rank_ratio[leaf], lists, chains)
    want = nearest_on_border(edges, point, window_m=30_000)
    kept = set(survivors.tolist())
    # At a vertex the nearest point is on both its edges; brute force names either.
    at_end = want.t >= 1 - 1e-6 and int(index.next_edge[want.edge]) in kept
    at_start = want.t <= 1e-6 and int(index.prev_edge[want.edge]) in kept
    assert want.edge in kept or at_end or at_start


@settings(max_examples=300, deadline=None)
@given(near_the_river())
def test_chains_left_unmeasured_after_the_first_hold_nothing_handed_on(
    index: SegmentIndex, point: tuple[float, float]
) -> None:
    # The kernel measures the kept chain of least lower bound first and leaves unmeasured every
    # chain whose lower bound is beyond the limit of that chain's least distance: what it hands
    # on must still be, bit for bit, what ranking every kept chain's edges (numpy) hands on.
    lon, lat = np.array([point[0]]), np.array([point[1]])
    leaf = index.grid.locate(lon, lat)
    grid = index.grid
    if leaf[0] < 0 or not grid.chain_stop[leaf[0]] > grid.chain_start[leaf[0]]:
        return
    lists, chains = _leaf_lists(index, leaf, chained=True)
    ratio = grid.rank_ratio[leaf]
    got = kernel_ranking(index, lon, lat, ratio, lists, chains)
    _assert_same(got, numpy_ranking(index, lon, lat, ratio, lists, chains))
