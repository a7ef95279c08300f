"""Bridges of a bipartite graph, and which of them later cycles cover: the graph search behind
small-count suppression (service/domain/suppression.py), where the graph's nodes are a table's
rows and columns and its edges the figures not published."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]


@dataclass(slots=True)
class Forest:
    """The bridges of the graph of unknown entries, and the tree they form between its 2-edge-
    connected components, with a union-find that records which bridges new cycles have covered.

    Nodes 0..n_rows are the grid's rows, the rest its columns; a bridge is named by its grid entry.
    """

    n_rows: int
    bridges: list[tuple[int, int]]
    component: list[int]  # of each node
    parent: list[int]  # of each component in the bridge tree, -1 at a root
    depth: list[int]
    tree: list[int]
    merged: list[int]  # union-find: a component merged into its parent once its bridge is covered

    @classmethod
    def of(cls, unknown: BoolArray) -> Forest:
        n_rows, n_cols = unknown.shape
        ii, jj = np.nonzero(unknown)
        ends = list(zip(ii.tolist(), (jj + n_rows).tolist(), strict=True))
        order, parent_node, is_bridge = _tarjan(n_rows + n_cols, ends)
        component = [-1] * len(order)
        parent: list[int] = []
        depth: list[int] = []
        tree: list[int] = []
        for v in order:  # preorder: a node's DFS parent is labelled before it
            above, edge = parent_node[v]
            if above >= 0 and not is_bridge[edge]:
                component[v] = component[above]
                continue
            component[v] = len(parent)
            parent.append(component[above] if above >= 0 else -1)
            depth.append(depth[parent[-1]] + 1 if above >= 0 else 0)
            tree.append(tree[parent[-1]] if above >= 0 else len(parent) - 1)
        bridges = [(a, b - n_rows) for (a, b), flag in zip(ends, is_bridge, strict=True) if flag]
        return cls(n_rows, bridges, component, parent, depth, tree, list(range(len(parent))))

    def _node(self, kind: Literal["row", "column"], index: int) -> int:
        return index if kind == "row" else self.n_rows + index

    def _find(self, x: int) -> int:
        root = x
        while self.merged[root] != root:
            root = self.merged[root]
        while self.merged[x] != root:
            self.merged[x], x = root, self.merged[x]
        return root

    def is_covered(self, i: int, j: int) -> bool:
        """Whether the bridge at grid entry (i, j) now lies on a cycle."""
        a, b = self.component[self._node("row", i)], self.component[self._node("column", j)]
        child = a if self.parent[a] == b else b
        return self._find(child) != child

    def cover_cycle(self, cycle: Sequence[tuple[Literal["row", "column"], int]]) -> None:
        """Record a new cycle through the nodes ``cycle``, in order, as covering bridges.

        Between two nodes of one tree that come one after the other on the cycle (once the nodes
        of other trees are skipped), the cycle runs outside that tree's edges, so together with the
        tree path between them it makes a closed walk that passes each bridge on that path once:
        those bridges now lie on cycles. This holds for every tree the cycle visits, and still
        holds after earlier cycles have joined trees: it only needs the cycle to leave the tree.
        """
        comps = [self.component[self._node(kind, index)] for kind, index in cycle]
        for tree in dict.fromkeys(self.tree[c] for c in comps):
            on_tree = [c for c in comps if self.tree[c] == tree]
            for a, b in zip(on_tree, on_tree[1:] + on_tree[:1], strict=True):
                self._cover_path(a, b)

    def _cover_path(self, a: int, b: int) -> None:
        a, b = self._find(a), self._find(b)
        while a != b:
            if self.depth[a] < self.depth[b]:
                a, b = b, a
            self.merged[a] = self.parent[a]
            a = self._find(a)


def _tarjan(
    n_nodes: int, ends: Sequence[tuple[int, int]]
) -> tuple[list[int], list[tuple[int, int]], list[bool]]:
    """Depth-first preorder, each node's (DFS parent, edge to it) or (-1, -1), and which edges are
    bridges, for the simple graph with edges ``ends``. Iterative: tables may have many rows."""
    adjacent: list[list[tuple[int, int]]] = [[] for _ in range(n_nodes)]
    for edge, (a, b) in enumerate(ends):
        adjacent[a].append((b, edge))
        adjacent[b].append((a, edge))
    seen = [-1] * n_nodes
    low = [0] * n_nodes
    parent = [(-1, -1)] * n_nodes
    is_bridge = [False] * len(ends)
    order: list[int] = []
    for root in range(n_nodes):
        if seen[root] >= 0:
            continue
        seen[root] = low[root] = len(order)
        order.append(root)
        stack = [(root, iter(adjacent[root]))]
        while stack:
            v, neighbours = stack[-1]
            for w, edge in neighbours:
                if seen[w] < 0:
                    parent[w] = (v, edge)
                    seen[w] = low[w] = len(order)
                    order.append(w)
                    stack.append((w, iter(adjacent[w])))
                    break
                if edge != parent[v][1]:
                    low[v] = min(low[v], seen[w])
            else:
                stack.pop()
                above, edge = parent[v]
                if above >= 0:
                    low[above] = min(low[above], low[v])
                    is_bridge[edge] = low[v] == seen[v]
    return order, parent, is_bridge
