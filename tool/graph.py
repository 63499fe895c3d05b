"""Building the window graph of an affinity map (algorithm.md §3.2), and the random walk on such a graph
(algorithm.md §3.7); the graph types and their layout are in ``network.graph``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from network.graph import WindowGraph, window_offsets


def window_graph(aff: Tensor, radius: int, self_weight: float | None = 1.0) -> WindowGraph:
    """Build the window graph of an affinity map.

    aff: ``(2r+1, 2r+1, h, w)`` float, ``aff[dy+r, dx+r, y, x]`` = affinity of node ``(y, x)`` to
    ``(y+dy, x+dx)`` (the affinity network's output for one image). Out-of-grid neighbours become
    invalid. ``self_weight``: value of ``A_ii`` (algorithm.md §3.2 sets 1); ``None`` keeps ``aff``'s centre tap.
    """
    d = 2 * radius + 1
    if aff.dim() != 4 or aff.shape[0] != d or aff.shape[1] != d:
        raise ValueError(f"window_graph: aff must be (2r+1, 2r+1, h, w) = ({d}, {d}, h, w) for radius "
                         f"{radius}, got {tuple(aff.shape)}")
    h, w = aff.shape[-2:]
    dy, dx = window_offsets(radius, aff.device)
    ys = torch.arange(h * w, device=aff.device)[:, None] // w
    xs = torch.arange(h * w, device=aff.device)[:, None] % w
    rows, cols = ys + dy, xs + dx  # (N, K)
    valid = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    index = rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)
    weight = aff.reshape(d * d, h * w).t().masked_fill(~valid, 0).contiguous()
    if self_weight is not None:
        weight[:, d * d // 2] = self_weight
    return WindowGraph(index=index, weight=weight, valid=valid, h=h, w=w, radius=radius)


def random_walk(scores: Tensor, graph: WindowGraph, beta: float, logt: int) -> Tensor:
    """Random-walk propagation ``scores · T^(2^logt)`` with ``T = A^β`` column-normalized.

    scores: ``(C, h, w)`` per-node class scores; graph: the window graph of the raw affinity (keep the
    network's diagonal: ``window_graph(aff, r, self_weight=None)``). ``2^logt`` sparse products
    ``v ← v·T``, equal to the published dense repeated squaring. Returns ``(C, h, w)``.
    """
    c, h, w = scores.shape
    incoming = graph.reverse_weight().pow(beta)  # at node j, slot k: A_ij^β for i = index[j, k]
    transition = incoming / incoming.sum(dim=1, keepdim=True)  # T[i, j], column-normalized
    v = scores.reshape(c, h * w)
    for _ in range(2 ** logt):
        v = (v[:, graph.index] * transition).sum(dim=-1)
    return v.reshape(c, h, w)
