"""Window graphs over the feature grid (algorithm.md §3.2), the input of the A2GNN layers: every grid cell is a node,
its neighbours are the cells of the ``(2r+1)²`` square window around it that lie inside the grid.

Layout: node ``i = y·w + x``; neighbour slot ``k = (dy + r)·(2r+1) + (dx + r)`` holds the node at
``(y + dy, x + dx)``, the layout of the affinity network's ``aff[dy + r, dx + r, y, x]``. The slot of the
reverse edge (``j → i``) is ``K − 1 − k``. Memory is ``O(N·K)``, ``K = (2r+1)²``; nothing is ``N × N``.

``TiledWindows`` lays the same graph out in square tiles of nodes so that the sums over windows of the
graph attention layer become batched matrix products over (tile, halo) pairs: fast on CPU and GPU.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

DEFAULT_TILE = 7  # nodes per tile side; 7×7 tiles with a radius-4 halo were fastest at VOC size on CPU


def window_offsets(radius: int, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Row and column offsets ``(dy, dx)`` of the ``K = (2r+1)²`` window slots, each ``(K,)`` long."""
    span = torch.arange(-radius, radius + 1, device=device)
    dy, dx = torch.meshgrid(span, span, indexing="ij")
    return dy.reshape(-1), dx.reshape(-1)


@dataclass
class TiledWindows:
    """A window graph in tile layout: ``T`` tiles of ``t×t`` centre nodes, each with its halo of
    ``s×s`` nodes, ``s = t + 2r`` (the union of the centres' windows).

    center_index ``(T, t²)`` / halo_index ``(T, s²)`` long: node ids, ``N`` where the slot lies outside
    the grid (read a zero row appended to the node features). node_slot ``(N,)`` long: position of each
    node in the flattened ``(T·t²)`` centres. weight ``(T, t², s²)``: ``A_ij`` of the window edges, 0
    elsewhere; mask ``(T, t², s²)`` bool: the window edges inside the grid. image ``(T,)`` long: the graph
    each tile belongs to (all 0 for one graph; see ``GraphBatch``).
    """

    center_index: Tensor
    halo_index: Tensor
    node_slot: Tensor
    weight: Tensor
    mask: Tensor
    image: Tensor

    @functools.cached_property
    def excluded(self) -> Tensor:
        """``~mask``, kept for the graph's lifetime (every attention layer of every epoch uses it)."""
        return ~self.mask


@dataclass
class WindowGraph:
    """Sparse window graph on an ``h × w`` grid.

    index ``(N, K)`` long: neighbour node of each slot (clamped into the grid where invalid, so it can be
    used for gathering directly). weight ``(N, K)`` float: ``A_ij`` (0 where invalid). valid ``(N, K)``
    bool: neighbour inside the grid.
    """

    index: Tensor
    weight: Tensor
    valid: Tensor
    h: int
    w: int
    radius: int

    @property
    def num_nodes(self) -> int:
        return self.h * self.w

    def to_dense(self) -> tuple[Tensor, Tensor]:
        """Dense ``(N, N)`` weights ``A`` (0 off the edge set) and ``(N, N)`` bool edge mask (for tests and
        the dense benchmark reference)."""
        n = self.num_nodes
        rows = torch.arange(n, device=self.index.device)[:, None].expand_as(self.index)[self.valid]
        cols = self.index[self.valid]
        dense = self.weight.new_zeros(n, n)
        dense[rows, cols] = self.weight[self.valid]
        mask = torch.zeros(n, n, dtype=torch.bool, device=self.index.device)
        mask[rows, cols] = True
        return dense, mask

    def reverse_weight(self) -> Tensor:
        """``(N, K)``: at node ``j``, slot ``k``, the weight ``A_ij`` stored at the neighbour ``i`` for the
        edge ``i → j`` (0 where invalid). Lets column sums and ``v @ A`` be computed by gathering."""
        k = self.index.shape[1]
        reverse = self.weight[self.index, torch.arange(k - 1, -1, -1, device=self.index.device)]
        return reverse.masked_fill(~self.valid, 0)

    @functools.cached_property
    def tiles(self) -> TiledWindows:
        """The tile layout with ``DEFAULT_TILE``, built once per graph."""
        return self.tiled(DEFAULT_TILE)

    def tiled(self, tile: int) -> TiledWindows:
        """Tile layout with ``tile × tile`` centre nodes per tile."""
        h, w, r, device = self.h, self.w, self.radius, self.index.device
        t, s = tile, tile + 2 * self.radius
        tiles_y, tiles_x = -(-h // t), -(-w // t)
        n = h * w

        def node_ids(rows: Tensor, cols: Tensor) -> Tensor:
            inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
            return torch.where(inside, rows * w + cols, torch.full_like(rows, n))

        ty = torch.arange(tiles_y, device=device).view(-1, 1, 1, 1) * t
        tx = torch.arange(tiles_x, device=device).view(1, -1, 1, 1) * t
        u = torch.arange(t, device=device)
        v = torch.arange(s, device=device) - r
        center_index = node_ids(ty + u.view(1, 1, -1, 1), tx + u.view(1, 1, 1, -1)).reshape(-1, t * t)
        halo_index = node_ids(ty + v.view(1, 1, -1, 1), tx + v.view(1, 1, 1, -1)).reshape(-1, s * s)

        ys = torch.arange(n, device=device) // w
        xs = torch.arange(n, device=device) % w
        node_slot = ((ys // t) * tiles_x + xs // t) * (t * t) + (ys % t) * t + xs % t
        dy, dx = window_offsets(r, device)
        halo_pos = ((ys % t)[:, None] + dy + r) * s + (xs % t)[:, None] + dx + r  # (N, K) in [0, s²)
        entry = (node_slot[:, None] * (s * s) + halo_pos)[self.valid]

        size = tiles_y * tiles_x * t * t * s * s
        weight = self.weight.new_zeros(size)
        weight[entry] = self.weight[self.valid]
        mask = torch.zeros(size, dtype=torch.bool, device=device)
        mask[entry] = True
        shape = (tiles_y * tiles_x, t * t, s * s)
        image = torch.zeros(shape[0], dtype=torch.long, device=device)
        return TiledWindows(center_index, halo_index, node_slot, weight.view(shape), mask.view(shape), image)


@dataclass
class GraphBatch:
    """Disjoint window graphs of ``K`` images, possibly of different sizes, as one graph: image ``k``'s
    nodes are rows ``offsets[k]:offsets[k+1]`` of the ``(N, ·)`` node tensors, ``N = Σ h_k·w_k``.
    ``tiles`` concatenates the graphs' tiles (node ids shifted, ``N`` = outside every grid,
    ``tiles.image`` = the image of each tile), so one batched product covers every image."""

    graphs: list[WindowGraph]

    @property
    def sizes(self) -> list[int]:
        """Nodes per image."""
        return [g.num_nodes for g in self.graphs]

    @property
    def num_nodes(self) -> int:
        return sum(self.sizes)

    @functools.cached_property
    def offsets(self) -> list[int]:
        """``K + 1`` node offsets."""
        out = [0]
        for n in self.sizes:
            out.append(out[-1] + n)
        return out

    @functools.cached_property
    def node_image(self) -> Tensor:
        """``(N,)`` long: the image of each node."""
        device = self.graphs[0].index.device
        sizes = torch.tensor(self.sizes, device=device)
        return torch.repeat_interleave(torch.arange(len(self.graphs), device=device), sizes)

    @functools.cached_property
    def tiles(self) -> TiledWindows:
        """The graphs' tiles (each graph's own ``tiles``) concatenated."""
        parts = [g.tiles for g in self.graphs]
        if len(parts) == 1:
            return parts[0]
        if len({p.weight.shape[1:] for p in parts}) > 1:
            raise ValueError("GraphBatch: the graphs need the same radius and tile size")
        total = self.num_nodes
        center, halo, slot, image = [], [], [], []
        slots = 0
        for k, (part, n, start) in enumerate(zip(parts, self.sizes, self.offsets, strict=False)):
            def shift(index: Tensor, n: int = n, start: int = start) -> Tensor:
                return torch.where(index < n, index + start, total)

            center.append(shift(part.center_index))
            halo.append(shift(part.halo_index))
            slot.append(part.node_slot + slots)
            image.append(torch.full_like(part.image, k))
            slots += part.center_index.numel()
        return TiledWindows(torch.cat(center), torch.cat(halo), torch.cat(slot),
                            torch.cat([p.weight for p in parts]), torch.cat([p.mask for p in parts]),
                            torch.cat(image))
