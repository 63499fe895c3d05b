"""Losses of the per-image A2GNN training (algorithm.md §3.4), for a batch of ``B`` images of one grid size.

Grid tensors are ``(B, C, h, w)`` at feature resolution (``(C, h, w)`` for one image where noted); the
losses see their upsampling to the padded image resolution ``Hp = 8h``, ``Wp = 8w`` of the seed maps,
``(B, Hp, Wp)`` long with classes 0..C-1 and 255 = unknown, and return one loss per image ``(B,)``.
Upsampling is bilinear with ``align_corners=False`` everywhere. No full-resolution tensor outlives a loss
call: the seed loss computes its gradient in its forward pass, the MP loss upsamples only box crops'
argmax maps and points, the gated CRF kernel is a window graph built once per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from network.a2gnn import COS_EPS
from network.graph import GraphBatch, WindowGraph
from tool.gated_crf_loss import SIGMA_RGB, SIGMA_XY, gated_crf_kernels
from tool.graph import window_graph
from vocabulary import IGNORE, Box

PAIR_EPS = 1e-5
CRF_KERNELS = [{"weight": 1, "xy": SIGMA_XY, "rgb": SIGMA_RGB}]
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


def bilinear_points(grid: Tensor, ys: Tensor, xs: Tensor, out_size: tuple[int, int],
                    images: Tensor | None = None) -> Tensor:
    """The upsampling of ``grid`` ``(B, C, h, w)`` (or ``(C, h, w)``) to ``out_size`` at the points
    ``(images[p], ys[p], xs[p])`` (``images`` default 0): ``(P, C)``. Reads the four tap nodes' rows of
    ``(B·h·w, C)`` in one ``index_select`` (no copy when ``grid`` is the permuted view of node-major
    ``(B·N, C)`` values; its gradient is one ``index_add``)."""
    if grid.dim() == 3:
        grid = grid[None]
    y0, y1, wy0, wy1 = bilinear_taps(ys, grid.shape[2], out_size[0], grid.dtype)
    x0, x1, wx0, wx1 = bilinear_taps(xs, grid.shape[3], out_size[1], grid.dtype)
    h, w = grid.shape[2:]
    index = torch.cat([y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1])
    if images is not None:
        index = index + (images * (h * w)).repeat(4)
    weight = torch.cat([wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1])
    taps = grid.permute(0, 2, 3, 1).reshape(-1, grid.shape[1]).index_select(0, index) * weight[:, None]
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
    """``(grid (B, C, h, w), seeds (B, Hp, Wp)) -> (B,)``: the seed loss of the upsampled logits of each
    image. Forward also computes the gradient, ``R_yᵀ · (weight · (softmax − onehot)) · R_x``, and keeps
    only that ``(B, C, h, w)`` tensor: no full-resolution tensor outlives the call."""

    @staticmethod
    def forward(ctx, grid: Tensor, seeds: Tensor) -> Tensor:
        rows = interpolation_matrix(grid.shape[2], seeds.shape[1], grid.dtype, grid.device)
        cols = interpolation_matrix(grid.shape[3], seeds.shape[2], grid.dtype, grid.device)
        log_probs = F.log_softmax(torch.matmul(rows, grid @ cols.t()), dim=1)  # (B, C, Hp, Wp)
        target = seeds.clamp(max=grid.shape[1] - 1)[:, None]
        background = seeds == 0
        foreground = ~background & (seeds != IGNORE)
        # each pixel weighted by 1 / (pixels of its term): the weighted sum is the sum of the two means
        weight = sum(member.to(grid.dtype) / member.sum(dim=(1, 2), keepdim=True).clamp(min=1)
                     for member in (background, foreground))
        loss = -(log_probs.gather(1, target)[:, 0] * weight).sum(dim=(1, 2))
        grad_pred = log_probs.exp_().scatter_add_(1, target, log_probs.new_full(target.shape, -1.0))
        grad_pred.mul_(weight[:, None])
        ctx.save_for_backward(torch.matmul(rows.t(), grad_pred) @ cols)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (grad_grid,) = ctx.saved_tensors
        return grad[:, None, None, None] * grad_grid, None


def seed_loss(grid: Tensor, seeds: Tensor) -> Tensor:
    """Balanced seed loss of the logits upsampled to the seeds: mean CE over background seeds + mean CE over
    foreground seeds, per image.

    grid: ``(B, C, h, w)`` logits; seeds: ``(B, Hp, Wp)`` long, 0 = background, 1..C-1 = foreground, 255
    = unknown. Returns ``(B,)`` (a scalar for ``(C, h, w)`` and ``(Hp, Wp)``). The logits are upsampled
    bilinearly to ``(Hp, Wp)``. A term without pixels is 0 (**FIX**: the published code returns NaN).
    """
    if grid.dim() == 3:
        return UpsampledSeedLoss.apply(grid[None], seeds[None])[0]
    return UpsampledSeedLoss.apply(grid, seeds)


def crf_kernel_graph(image: Tensor) -> WindowGraph:
    """The gated CRF kernel of ``image`` ``(3, h, w)`` (the normalized image resized to the grid): kernel
    weight 1, σ_xy 6 (grid cells), σ_rgb 0.1, radius 5 (``gated_crf_kernels``), as a window graph with
    ``A_ij = K_ij`` and ``A_ii = 0``. Fixed per image: built once, used by every epoch's CRF term."""
    kernel = gated_crf_kernels(CRF_KERNELS, CRF_RADIUS, {"rgb": image[None]}, image[None])[0, 0]
    return window_graph(kernel, CRF_RADIUS, self_weight=None)


def gated_crf_term(probs: Tensor, kernel: WindowGraph | GraphBatch) -> Tensor:
    """Gated CRF loss (Potts) of ``probs`` ``(N, C)`` (softmax of the node logits) with the kernel graph
    ``kernel`` (``crf_kernel_graph``, or a ``GraphBatch`` of them: then ``(K,)``, one per image):
    ``(Σ K − Σ_c Σ_i y_ci Σ_j K_ij y_cj) / N``, the Potts form of the gated CRF loss. The window sums
    ``Σ_j K_ij y_cj`` are batched products over the kernel's tiles."""
    batch = GraphBatch([kernel]) if isinstance(kernel, WindowGraph) else kernel
    tiles = batch.tiles
    padded = torch.cat([probs, probs.new_zeros(1, probs.shape[1])])  # row N: outside every grid
    halo = padded.index_select(0, tiles.halo_index.view(-1)).view(*tiles.halo_index.shape, -1)
    smoothed = torch.bmm(tiles.weight, halo).view(-1, probs.shape[1]).index_select(0, tiles.node_slot)
    count = len(batch.graphs)
    total = probs.new_zeros(count).index_add_(0, tiles.image, tiles.weight.sum(dim=(1, 2)))
    agree = probs.new_zeros(count).index_add_(0, batch.node_image, (smoothed * probs).sum(dim=1))
    nodes = probs.new_zeros(count).index_add_(0, batch.node_image, probs.new_ones(len(probs)))  # no host copy
    loss = (total - agree) / nodes
    return loss[0] if isinstance(kernel, WindowGraph) else loss


def box_table(boxes: Sequence[Sequence[Box]], device: torch.device | str | None = None) -> Tensor:
    """``(nb, 6)`` long rows ``(image, cls, x0, y0, x1, y1)``: the boxes of ``B`` images, image by image,
    each image's in file order (the layout ``mp_loss`` takes)."""
    rows = [(k, b.cls, b.x0, b.y0, b.x1, b.y1) for k, image_boxes in enumerate(boxes) for b in image_boxes]
    return torch.tensor(rows, dtype=torch.long, device=device).view(-1, 6)


@dataclass
class BoxPoints:
    """What the MP loss needs that depends only on the boxes and the seed size ``(Hp, Wp)``, built once per
    batch by ``box_points`` (its ``nonzero``, ``bincount`` and maxima wait for the device there, once,
    instead of in every epoch). ``nb`` boxes, ``P`` points (every row and every column of every box).

    table: ``box_table`` rows ``(nb, 6)``; rows ``(Hp,)``, cols ``(Wp,)``: output indices; row_in ``(nb, Hp)``,
    col_in ``(nb, Wp)``: the rows / columns inside each box; box_r, y_r / box_c, x_c: the (box, row) /
    (box, column) pairs of the points chosen along rows / columns; order: the permutation that sorts the
    concatenated points box by box; point_box, point_image, point_cls ``(P,)`` in that order; count ``(nb,)``
    points per box; slot ``(P,)``: a point's place in its box; valid ``(nb, width)``: the used slots
    (``width`` = most points of a box); box_slot ``(nb,)``: a box's place among its image's boxes (``slots``
    = most boxes of an image); points, pairs ``(B,)``: each image's points and ordered point pairs.
    """

    table: Tensor
    count_images: int
    out_size: tuple[int, int]
    rows: Tensor
    cols: Tensor
    row_in: Tensor
    col_in: Tensor
    box_r: Tensor
    y_r: Tensor
    box_c: Tensor
    x_c: Tensor
    order: Tensor
    point_box: Tensor
    point_image: Tensor
    point_cls: Tensor
    count: Tensor
    slot: Tensor
    width: int
    valid: Tensor
    box_slot: Tensor
    slots: int
    points: Tensor
    pairs: Tensor

    def __len__(self) -> int:
        return len(self.table)


def box_points(table: Tensor, out_size: tuple[int, int], count_images: int) -> BoxPoints:
    """The ``BoxPoints`` of ``box_table`` rows ``table`` (boxes sorted by image, 0-based inclusive) of
    ``count_images`` images whose seeds are ``out_size`` ``(Hp, Wp)``, on ``table``'s device."""
    device = table.device
    image, cls, x0, y0, x1, y1 = table.unbind(1)
    rows = torch.arange(out_size[0], device=device)
    cols = torch.arange(out_size[1], device=device)
    row_in = (rows >= y0[:, None]) & (rows <= y1[:, None])  # (nb, Hp)
    col_in = (cols >= x0[:, None]) & (cols <= x1[:, None])  # (nb, Wp)
    box_r, y_r = row_in.nonzero(as_tuple=True)
    box_c, x_c = col_in.nonzero(as_tuple=True)
    point_box = torch.cat([box_r, box_c])
    order = torch.argsort(point_box, stable=True)  # points box by box
    point_box = point_box[order]
    count = torch.bincount(point_box, minlength=len(table))  # points per box
    slot = torch.arange(len(point_box), device=device) - (torch.cumsum(count, 0) - count)[point_box]
    width = int(count.max()) if len(table) else 0
    first = torch.searchsorted(image.contiguous(), torch.arange(count_images, device=device))
    box_slot = torch.arange(len(table), device=device) - first[image]  # boxes sorted by image
    points = torch.zeros(count_images, dtype=torch.long, device=device).index_add_(0, image, count)
    pairs = torch.zeros(count_images, dtype=torch.long, device=device).index_add_(0, image, count ** 2)
    return BoxPoints(table, count_images, tuple(out_size), rows, cols, row_in, col_in, box_r, y_r, box_c, x_c,
                     order, point_box, image[point_box], cls[point_box], count, slot, width,
                     torch.arange(width, device=device) < count[:, None], box_slot,
                     int(box_slot.max()) + 1 if len(table) else 0, points, pairs)


def mp_loss(grid: Tensor, embedding: Tensor, boxes: BoxPoints | Tensor | Sequence[Box], seeds: Tensor
            ) -> tuple[Tensor, Tensor]:
    """Box MP loss with consistency checking, every box of every image at once.

    grid: ``(B, C, h, w)`` logits and embedding: ``(B, d, h, w)`` node embeddings, both on the feature
    grid; the loss sees their bilinear upsampling to the seed size ``(Hp, Wp)``, computed only at the MP
    points and, for choosing the points and the pruning, the box's class map (equal to cropping the full
    upsampling); boxes: ``box_points`` of the batch (nothing in the call then waits for the device) or
    ``box_table`` rows (0-based inclusive); seeds: ``(B, Hp, Wp)`` long. One image: ``(C, h, w)``,
    ``(d, h, w)``, a list of ``Box`` and ``(Hp, Wp)`` give a scalar loss and ``(Hp, Wp)``.

    Per image, returns ``(loss (B,), pruned_seeds)``: for every box row the column of its largest
    class-``cls`` logit, for every box column the row of its largest one (first maximum on ties);
    ``CE(points, cls)`` summed / the image's total points + ``Σ(1 − cos + 1e-5)`` over every ordered point
    pair of a box / the image's total pairs; 0 for an image without boxes. Pruned seeds: pixels of a box
    labelled with its class whose embedding has a negative cosine to the box prototype (mean point
    embedding) become 255 (the sign of the cosine is that of the dot product, which is linear in the
    embedding, so it is taken from the upsampled ``prototype · embedding`` map). The published code prunes
    box after box; the scores do not depend on the seeds, so that equals pruning a pixel when any of its
    boxes of its class scores it negative, which is what is computed. ``seeds`` is not modified.
    """
    if grid.dim() == 3:
        loss, pruned = mp_loss(grid[None], embedding[None], box_table([boxes], grid.device), seeds[None])
        return loss[0], pruned[0]
    count_images, _, h, w = grid.shape
    if not isinstance(boxes, BoxPoints):
        boxes = box_points(boxes, tuple(seeds.shape[1:]), count_images)
    if len(boxes) == 0:
        return grid.new_zeros(count_images), seeds
    b = boxes
    out_size = b.out_size
    image, cls = b.table[:, 0], b.table[:, 1]
    with torch.no_grad():
        maps = bilinear_at(grid.detach()[image, cls], b.rows, b.cols, out_size)  # (nb, Hp, Wp) class maps
        col_of_row = maps.masked_fill(~b.col_in[:, None, :], -torch.inf).argmax(dim=2)  # (nb, Hp)
        row_of_col = maps.masked_fill_(~b.row_in[:, :, None], -torch.inf).argmax(dim=1)  # (nb, Wp)
        del maps
    ys = torch.cat([b.y_r, row_of_col[b.box_c, b.x_c]])[b.order]
    xs = torch.cat([col_of_row[b.box_r, b.y_r], b.x_c])[b.order]

    ce = F.cross_entropy(bilinear_points(grid, ys, xs, out_size, b.point_image), b.point_cls, reduction="none")
    emb = bilinear_points(embedding, ys, xs, out_size, b.point_image)  # (P, d)
    padded = emb.new_zeros(len(b), b.width, emb.shape[1]).index_put((b.point_box, b.slot), emb)
    norm = emb.new_zeros(len(b), b.width).index_put((b.point_box, b.slot), emb.norm(dim=1))
    cos = torch.bmm(padded, padded.transpose(1, 2)) / (norm[:, :, None] * norm[:, None, :] + COS_EPS)
    dis = (1 - cos + PAIR_EPS).masked_fill(~(b.valid[:, :, None] & b.valid[:, None, :]), 0).sum(dim=(1, 2))

    per_image = grid.new_zeros(2, count_images)
    per_image[0].index_add_(0, b.point_image, ce)
    per_image[1].index_add_(0, image, dis)
    ce_sum, dis_sum = per_image.unbind(0)
    points, pairs = b.points.to(grid.dtype), b.pairs.to(grid.dtype)
    loss = torch.where(points > 0, ce_sum / points.clamp(min=1) + dis_sum / pairs.clamp(min=1), 0)

    with torch.no_grad():
        prototype = padded.detach().sum(dim=1) / b.count[:, None]  # (nb, d)
        stacked = prototype.new_zeros(count_images, b.slots, prototype.shape[1])
        stacked[image, b.box_slot] = prototype
        score = torch.bmm(stacked, embedding.reshape(count_images, embedding.shape[1], h * w))
        score = score[image, b.box_slot].view(-1, h, w)  # prototype · embedding on the grid, (nb, h, w)
        prune = bilinear_at(score, b.rows, b.cols, out_size) < 0
        prune &= b.row_in[:, :, None] & b.col_in[:, None, :] & (seeds[image] == cls[:, None, None])
        hits = torch.zeros(count_images, prune[0].numel(), dtype=torch.int32, device=grid.device)
        hits.index_add_(0, image, prune.flatten(1).to(torch.int32))
        seeds = seeds.masked_fill(hits.view(seeds.shape) > 0, IGNORE)
    return loss, seeds
