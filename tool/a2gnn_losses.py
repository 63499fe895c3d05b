"""Losses of the per-image A2GNN training (SPEC §3.4).

Grid tensors are ``(C, h, w)`` at feature resolution; the losses see their upsampling to the padded
image resolution ``Hp = 8h``, ``Wp = 8w`` of the seed maps, ``(Hp, Wp)`` long with classes 0..C-1 and
255 = unknown. Upsampling is bilinear with ``align_corners=False`` everywhere. No full-resolution tensor
outlives a loss call: the seed loss computes its gradient in its forward pass, the MP loss upsamples only
box crops and points, the gated CRF kernel is a window graph built once per image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from tool.gated_crf_loss import GatedCRFLoss
from tool.graph import WindowGraph, window_graph
from voc12 import IGNORE
from voc12.annotations import Box

COS_EPS = 1e-7
PAIR_EPS = 1e-5
CRF_KERNELS = [{"weight": 1, "xy": 6, "rgb": 0.1}]
CRF_RADIUS = 5


def bilinear_taps(positions: Tensor, in_size: int, out_size: int, dtype: torch.dtype
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Source taps of bilinear upsampling ``in_size → out_size`` (``align_corners=False``) at the output
    indices ``positions`` (long): ``(i0, i1, l0, l1)`` with ``out = l0·x[i0] + l1·x[i1]``, exactly the taps
    ``F.interpolate`` uses (source coordinate ``(o + ½)·in/out − ½`` clamped at 0)."""
    src = ((positions.to(torch.float64) + 0.5) * (in_size / out_size) - 0.5).clamp(min=0)
    i0 = src.floor().long()
    i1 = (i0 + 1).clamp(max=in_size - 1)
    l1 = (src - i0).to(dtype)
    return i0, i1, 1 - l1, l1


def bilinear_at(grid: Tensor, rows: Tensor, cols: Tensor, out_size: tuple[int, int]) -> Tensor:
    """Rows × columns of the upsampling of ``grid`` ``(C, h, w)`` to ``out_size`` without computing the
    rest: ``(C, R, Q)`` for output ``rows`` ``(R,)`` and ``cols`` ``(Q,)`` (long). Equals
    ``F.interpolate(grid[None], out_size, mode='bilinear')[0][:, rows][:, :, cols]``."""
    y0, y1, wy0, wy1 = bilinear_taps(rows, grid.shape[1], out_size[0], grid.dtype)
    x0, x1, wx0, wx1 = bilinear_taps(cols, grid.shape[2], out_size[1], grid.dtype)
    across = grid[:, :, x0] * wx0 + grid[:, :, x1] * wx1  # (C, h, Q)
    return across[:, y0] * wy0[:, None] + across[:, y1] * wy1[:, None]


def bilinear_points(grid: Tensor, ys: Tensor, xs: Tensor, out_size: tuple[int, int]) -> Tensor:
    """The upsampling of ``grid`` ``(C, h, w)`` to ``out_size`` at the points ``(ys[p], xs[p])``:
    ``(P, C)``. Reads the four tap nodes' rows of ``(h·w, C)`` in one ``index_select`` (no copy when
    ``grid`` is the transposed view of node-major ``(N, C)`` values; its gradient is one ``index_add``)."""
    y0, y1, wy0, wy1 = bilinear_taps(ys, grid.shape[1], out_size[0], grid.dtype)
    x0, x1, wx0, wx1 = bilinear_taps(xs, grid.shape[2], out_size[1], grid.dtype)
    w = grid.shape[2]
    index = torch.cat([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1])
    weight = torch.cat([wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1])
    taps = grid.flatten(1).t().index_select(0, index) * weight[:, None]  # (4P, C)
    return taps.view(4, len(ys), -1).sum(dim=0)


def interpolation_matrix(in_size: int, out_size: int, dtype: torch.dtype,
                         device: torch.device | str | None = None) -> Tensor:
    """``(out_size, in_size)`` matrix of the 1-D bilinear upsampling ``in_size → out_size``
    (``align_corners=False``): row ``o`` holds the two taps of output ``o`` (one tap of weight 1 at the
    clamped borders). The 2-D upsampling of ``(C, h, w)`` is ``R_y · grid · R_xᵀ``."""
    i0, i1, l0, l1 = bilinear_taps(torch.arange(out_size, device=device), in_size, out_size, dtype)
    rows = torch.arange(out_size, device=device)
    matrix = torch.zeros(out_size, in_size, dtype=dtype, device=device)
    matrix.index_put_((rows, i0), l0, accumulate=True)
    return matrix.index_put_((rows, i1), l1, accumulate=True)


class UpsampledSeedLoss(torch.autograd.Function):
    """``(grid (C, h, w), seeds (Hp, Wp)) -> scalar``: the seed loss of the upsampled logits. Forward also
    computes the gradient, ``R_yᵀ · (weight · (softmax − onehot)) · R_x``, and keeps only that ``(C, h, w)``
    tensor: no full-resolution tensor outlives the call."""

    @staticmethod
    def forward(ctx, grid: Tensor, seeds: Tensor) -> Tensor:
        rows = interpolation_matrix(grid.shape[1], seeds.shape[0], grid.dtype, grid.device)
        cols = interpolation_matrix(grid.shape[2], seeds.shape[1], grid.dtype, grid.device)
        log_probs = F.log_softmax(torch.matmul(rows, grid @ cols.t()), dim=0)  # (C, Hp, Wp)
        target = seeds.clamp(max=grid.shape[0] - 1)[None]
        background = seeds == 0
        foreground = ~background & (seeds != IGNORE)
        # each pixel weighted by 1 / (pixels of its term): the weighted sum is the sum of the two means
        weight = sum(member.to(grid.dtype) / member.sum().clamp(min=1) for member in (background, foreground))
        loss = -(log_probs.gather(0, target)[0] * weight).sum()
        grad_pred = log_probs.exp_().scatter_add_(0, target, log_probs.new_full(target.shape, -1.0)).mul_(weight)
        ctx.save_for_backward(torch.matmul(rows.t(), grad_pred) @ cols)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (grad_grid,) = ctx.saved_tensors
        return grad * grad_grid, None


def seed_loss(grid: Tensor, seeds: Tensor) -> Tensor:
    """Balanced seed loss of the logits upsampled to the seeds: mean CE over background seeds + mean CE over
    foreground seeds.

    grid: ``(C, h, w)`` logits; seeds: ``(Hp, Wp)`` long, 0 = background, 1..C-1 = foreground, 255 =
    unknown. The logits are upsampled bilinearly to ``(Hp, Wp)``. A term without pixels is 0 (**FIX**: the
    published code returns NaN).
    """
    return UpsampledSeedLoss.apply(grid, seeds)


def crf_kernel_graph(image: Tensor) -> WindowGraph:
    """The gated CRF kernel of ``image`` ``(3, h, w)`` (the normalized image resized to the grid): kernel
    weight 1, σ_xy 6 (grid cells), σ_rgb 0.1, radius 5 (``GatedCRFLoss.kernels``), as a window graph with
    ``A_ij = K_ij`` and ``A_ii = 0``. Fixed per image: built once, used by every epoch's CRF term."""
    kernel = GatedCRFLoss.kernels(CRF_KERNELS, CRF_RADIUS, {"rgb": image[None]}, image[None])[0, 0]
    return window_graph(kernel, CRF_RADIUS, self_weight=None)


def gated_crf_term(probs: Tensor, kernel: WindowGraph) -> Tensor:
    """Gated CRF loss (Potts) of ``probs`` ``(N, C)`` (softmax of the node logits) with the kernel graph
    ``kernel`` (``crf_kernel_graph``): ``(Σ K − Σ_c Σ_i y_ci Σ_j K_ij y_cj) / N``, the Potts form of
    ``GatedCRFLoss``. The window sums ``Σ_j K_ij y_cj`` are batched products over the kernel's tiles."""
    tiles = kernel.tiles
    padded = torch.cat([probs, probs.new_zeros(1, probs.shape[1])])  # row N: outside the grid
    halo = padded.index_select(0, tiles.halo_index.view(-1)).view(*tiles.halo_index.shape, -1)
    smoothed = torch.bmm(tiles.weight, halo).view(-1, probs.shape[1]).index_select(0, tiles.node_slot)
    return (tiles.weight.sum() - (smoothed * probs).sum()) / kernel.num_nodes


def box_points(grid: Tensor, box: Box, out_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """MP points of ``box`` on the upsampling of ``grid`` ``(C, h, w)`` to ``out_size``: for every box row
    the column of its largest class-``box.cls`` logit, then for every box column the row of its largest
    one. Only the box crop of that class is upsampled. Returns ``(ys, xs)`` long, ``h_b + w_b`` points in
    image coordinates (duplicates kept)."""
    rows = torch.arange(box.y0, box.y1 + 1, device=grid.device)
    cols = torch.arange(box.x0, box.x1 + 1, device=grid.device)
    crop = bilinear_at(grid[box.cls:box.cls + 1].detach(), rows, cols, out_size)[0]
    col_of_row = crop.max(dim=1).indices + box.x0
    row_of_col = crop.max(dim=0).indices + box.y0
    return torch.cat([rows, row_of_col]), torch.cat([col_of_row, cols])


def mp_loss(grid: Tensor, embedding: Tensor, boxes: Sequence[Box], seeds: Tensor) -> tuple[Tensor, Tensor]:
    """Box MP loss with consistency checking, on box regions only.

    grid: ``(C, h, w)`` logits and embedding: ``(d, h, w)`` node embeddings, both on the feature grid; the
    loss sees their bilinear upsampling to the seed size ``(Hp, Wp)``, computed only at the box crops and
    MP points (equal to cropping the full upsampling); boxes: 0-based inclusive, processed in order;
    seeds: ``(Hp, Wp)`` long.
    Returns ``(loss, pruned_seeds)``: ``CE(points, cls)`` summed / total points + ``Σ(1 − cos + 1e-5)`` over
    every ordered point pair of a box / total pairs; pruned seeds: pixels of a box labelled with its
    class whose embedding has a negative cosine to the box prototype (mean point embedding) become 255
    (the sign of the cosine is that of the dot product, which is linear in the embedding, so it is taken
    from the upsampled ``prototype · embedding`` map). ``seeds`` is not modified. No boxes: loss 0.
    """
    out_size = tuple(seeds.shape)
    seeds = seeds.clone()
    ce_sum = dis_sum = grid.new_zeros(())
    points = pairs = 0
    for box in boxes:
        ys, xs = box_points(grid, box, out_size)
        target = torch.full_like(ys, box.cls)
        ce_sum = ce_sum + F.cross_entropy(bilinear_points(grid, ys, xs, out_size), target, reduction="sum")
        emb = bilinear_points(embedding, ys, xs, out_size)  # (P, d)
        norm = emb.norm(dim=1)
        cos = (emb @ emb.t()) / (norm[:, None] * norm[None, :] + COS_EPS)
        dis_sum = dis_sum + (1 - cos + PAIR_EPS).sum()
        points += len(ys)
        pairs += len(ys) ** 2
        with torch.no_grad():
            score = torch.einsum("d,dhw->hw", emb.mean(dim=0), embedding)[None]
            rows = torch.arange(box.y0, box.y1 + 1, device=grid.device)
            cols = torch.arange(box.x0, box.x1 + 1, device=grid.device)
            negative = bilinear_at(score, rows, cols, out_size)[0] < 0
            region = seeds[box.y0:box.y1 + 1, box.x0:box.x1 + 1]
            region[(region == box.cls) & negative] = IGNORE
    if not points:
        return grid.new_zeros(()), seeds
    return ce_sum / points + dis_sum / pairs, seeds
