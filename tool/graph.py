"""Building the window graph of an affinity map (algorithm.md §3.2); the graph types and their layout are in
``network.graph``.
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
