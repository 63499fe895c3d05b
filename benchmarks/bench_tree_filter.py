"""Is a pure-PyTorch learnable tree filter (Tree-FCN's module, TreeFilter-Torch's CUDA kernels) practical?

Times, per image, the two parts of one tree-filter module on an ``H × W`` feature map of ``--channels``
channels in ``--groups`` groups (Tree-FCN on VOC: 512 channels, 16 groups, maps of 32², 64² and 128² at
strides 16, 8 and 4 of a 512 crop):

1. the minimum spanning tree of the 4-connected grid whose edge lengths are ``1 + ‖g_u − g_v‖²`` of a guide
   map (``scipy.sparse.csgraph.minimum_spanning_tree``, no gradient) and its breadth-first order from the
   centre pixel (``breadth_first_order``), grouped into depth levels;
2. the filter: ``y_i = Σ_j S_ij x_j / Σ_j S_ij`` with ``S_ij`` the product over the tree path from ``i`` to
   ``j`` of the edge weights ``exp(−‖e_u − e_v‖²)`` of an embedding map (one weight per group), computed in
   linear time by a leaf-to-root pass (``A_i = x_i + Σ_children w_c A_c``) and a root-to-leaf pass
   (``y_i = (1 − w_i²) A_i + w_i y_parent``), one vectorized step per depth level; autograd gives the
   gradient for the features and the embedding. The normaliser rides along as one extra channel per group.

The depth of the tree sets the number of sequential steps, so it is printed. ``tests/test_bench_tree_filter.py``
checks the filter and its gradients against the dense ``S`` on small trees.

    python benchmarks/bench_tree_filter.py                      # 33², 65², 129²; 512 channels, 16 groups
    python benchmarks/bench_tree_filter.py --sizes 65 --device cuda
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tool.cli import default_device  # noqa: E402


@dataclass
class Tree:
    """A spanning tree of ``n`` nodes in breadth-first order: ``order[k]`` is the node at position ``k`` (the
    root first), ``parent[k]`` the position of its parent (the root: 0), ``starts`` the first position of
    each depth level (and ``n`` at the end)."""

    order: torch.Tensor  # (n,) int64
    parent: torch.Tensor  # (n,) int64
    starts: list[int]

    @property
    def depth(self) -> int:
        return len(self.starts) - 2


def grid_edges(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The 4-connected grid's edges: ``(u, v)`` node indices (row-major), horizontal ones first."""
    index = np.arange(height * width).reshape(height, width)
    u = np.concatenate([index[:, :-1].ravel(), index[:-1, :].ravel()])
    v = np.concatenate([index[:, 1:].ravel(), index[1:, :].ravel()])
    return u, v


def spanning_tree(guide: torch.Tensor) -> Tree:
    """Minimum spanning tree of the grid of ``guide`` ``(C, H, W)`` under ``1 + ‖g_u − g_v‖²``, in BFS order
    from the centre pixel."""
    _, height, width = guide.shape
    u, v = grid_edges(height, width)
    flat = guide.detach().reshape(guide.shape[0], -1).double().cpu().numpy()
    length = 1.0 + ((flat[:, u] - flat[:, v]) ** 2).sum(0)
    n = height * width
    mst = minimum_spanning_tree(sp.coo_matrix((length, (u, v)), shape=(n, n)).tocsr())
    root = (height // 2) * width + width // 2
    order, predecessors = breadth_first_order(mst, root, directed=False, return_predecessors=True)
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    depth = np.zeros(n, dtype=np.int64)
    for k in range(1, n):  # BFS order: a parent's depth is known before its children's
        depth[k] = depth[position[predecessors[order[k]]]] + 1
    parent = np.zeros(n, dtype=np.int64)
    parent[1:] = position[predecessors[order[1:]]]
    starts = np.searchsorted(depth, np.arange(depth[-1] + 2)).tolist()
    return Tree(torch.from_numpy(order.astype(np.int64)), torch.from_numpy(parent), starts)


def tree_filter(x: torch.Tensor, embed: torch.Tensor, tree: Tree, groups: int) -> torch.Tensor:
    """The learnable tree filter of one image: ``x`` ``(C, H, W)``, ``embed`` ``(E, H, W)`` → ``(C, H, W)``.

    ``C`` and ``E`` are split into ``groups``; group ``g``'s features are filtered with the edge weights
    ``exp(−‖e_u − e_v‖²)`` of its embedding channels.
    """
    channels, height, width = x.shape
    device = x.device
    order, parent = tree.order.to(device), tree.parent.to(device)
    # node-major layout: position k of the BFS order first, so that a level is a contiguous slice
    e = embed.reshape(groups, -1, height * width).permute(2, 0, 1).index_select(0, order)  # (n, G, E/G)
    weight = torch.exp(-(e - e.index_select(0, parent)).square().sum(2))[:, :, None]  # (n, G, 1); root unused
    feats = x.reshape(groups, channels // groups, height * width).permute(2, 0, 1).index_select(0, order)
    feats = torch.cat([feats, torch.ones_like(feats[:, :, :1])], 2)  # (n, G, C/G + 1): the normaliser last
    sizes = [hi - lo for lo, hi in zip(tree.starts[:-1], tree.starts[1:], strict=True)]
    levels = len(sizes)
    # one split each (not a slice per level): autograd then gathers each tensor's gradient once
    feat_levels, weight_levels = feats.split(sizes, 0), weight.split(sizes, 0)
    local_parent = (parent - torch.tensor([0, *tree.starts[:-2]], device=device).repeat_interleave(
        torch.tensor(sizes, device=device), 0, output_size=len(parent))).split(sizes, 0)  # in the parent's level
    up: list[torch.Tensor] = [feat_levels[-1]]  # A over each level's positions, deepest first
    for d in range(levels - 2, -1, -1):
        up.append(feat_levels[d].index_add(0, local_parent[d + 1], up[-1] * weight_levels[d + 1]))
    up.reverse()
    down = [up[0]]
    for d in range(1, levels):
        w = weight_levels[d]
        down.append((1 - w * w) * up[d] + w * down[-1].index_select(0, local_parent[d]))
    out = torch.cat(down, 0)
    out = out[:, :, :-1] / out[:, :, -1:]  # (n, G, C/G) in BFS order
    result = torch.empty_like(out).index_copy(0, order, out)
    return result.permute(1, 2, 0).reshape(channels, height, width)


def timed(fn, repeat: int, device: torch.device) -> float:
    """Fastest of ``repeat`` calls of ``fn``, in seconds (CUDA synchronised): on a shared machine the
    least disturbed call is the closest to the cost of the code."""
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def measure(size: int, channels: int, groups: int, embed: int, device: torch.device, repeat: int) -> dict:
    """One row: tree depth and the fastest seconds of the tree, the filter, the filter with its backward."""
    g = torch.Generator().manual_seed(size)
    # a smooth guide (a few blobs) rather than noise: real feature maps have regions, so longer tree paths
    coarse = torch.randn(channels, 4, 4, generator=g)
    guide = torch.nn.functional.interpolate(coarse[None], (size, size), mode="bilinear")[0]
    guide = guide + 0.05 * torch.randn(channels, size, size, generator=g)
    x = torch.randn(channels, size, size, generator=g).to(device).requires_grad_()
    e = (0.1 * torch.randn(embed, size, size, generator=g)).to(device).requires_grad_()
    tree = spanning_tree(guide)
    t_tree = timed(lambda: spanning_tree(guide), repeat, device)
    with torch.no_grad():
        t_forward = timed(lambda: tree_filter(x, e, tree, groups), repeat, device)
    t_backward = timed(lambda: tree_filter(x, e, tree, groups).square().sum().backward(), repeat, device)
    return {"size": size, "nodes": size * size, "depth": tree.depth, "tree": t_tree, "forward": t_forward,
            "forward_backward": t_backward}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Time a pure-PyTorch tree filter (MST + two passes).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sizes", default=[33, 65, 129], type=int, nargs="+", help="square map sizes (pixels)")
    p.add_argument("--channels", default=512, type=int, help="feature channels (Tree-FCN: 512)")
    p.add_argument("--groups", default=16, type=int, help="channel groups, one edge weight each (Tree-FCN: 16)")
    p.add_argument("--embed", default=256, type=int, help="embedding channels (Tree-FCN: 256)")
    p.add_argument("--repeat", default=3, type=int, help="timed calls per cell; the fastest is printed")
    p.add_argument("--device", default=default_device(), type=str)
    return p


def main(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    rows = [measure(s, args.channels, args.groups, args.embed, device, args.repeat) for s in args.sizes]
    print(f"tree filter, {args.channels} channels in {args.groups} groups, {args.embed}-channel embedding, "
          f"{device}, {torch.get_num_threads()} threads, best of {args.repeat}; seconds per image")
    print(f"{'map':>9} {'nodes':>7} {'depth':>6} {'MST+BFS':>8} {'filter':>8} {'fwd+bwd':>8}")
    for r in rows:
        print(f"{r['size']:>4}x{r['size']:<4} {r['nodes']:>7} {r['depth']:>6} {r['tree']:>8.3f} "
              f"{r['forward']:>8.3f} {r['forward_backward']:>8.3f}")
    return rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
