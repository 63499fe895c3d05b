"""Losses of the per-image A2GNN training (SPEC §3.4) and the random-walk fusion (SPEC §3.7).

Grid tensors are ``(C, h, w)`` at feature resolution; ``pred`` is ``(C, Hp, Wp)`` at the padded image
resolution ``Hp = 8h``, ``Wp = 8w``; seed maps are ``(Hp, Wp)`` long with classes 0..C-1 and 255 =
unknown. Upsampling is bilinear with ``align_corners=False`` everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from tool.gated_crf_loss import GatedCRFLoss
from tool.graph import WindowGraph
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
    ``(C, P)``."""
    y0, y1, wy0, wy1 = bilinear_taps(ys, grid.shape[1], out_size[0], grid.dtype)
    x0, x1, wx0, wx1 = bilinear_taps(xs, grid.shape[2], out_size[1], grid.dtype)
    top = grid[:, y0, x0] * wx0 + grid[:, y0, x1] * wx1
    bottom = grid[:, y1, x0] * wx0 + grid[:, y1, x1] * wx1
    return top * wy0 + bottom * wy1


def seed_loss(pred: Tensor, seeds: Tensor) -> Tensor:
    """Balanced seed loss: mean CE over background seeds + mean CE over foreground seeds.

    pred: ``(C, Hp, Wp)`` logits; seeds: ``(Hp, Wp)`` long, 0 = background, 1..C-1 = foreground, 255 =
    unknown. A term without pixels is 0 (**FIX**: the published code returns NaN).
    """
    log_probs = F.log_softmax(pred, dim=0)
    nll = -log_probs.gather(0, seeds.clamp(max=pred.shape[0] - 1)[None])[0]
    background = seeds == 0
    foreground = (seeds != 0) & (seeds != IGNORE)
    loss = pred.new_zeros(())
    for member in (background, foreground):
        loss = loss + (nll * member).sum() / member.sum().clamp(min=1)
    return loss


def gated_crf_term(probs: Tensor, image: Tensor) -> Tensor:
    """Gated CRF loss (Potts) of ``probs`` ``(C, h, w)`` (softmax of the logits) with kernel weight 1,
    σ_xy 6 (grid cells), σ_rgb 0.1 on ``image`` ``(3, h, w)`` (the normalized image resized to the grid),
    radius 5."""
    h, w = probs.shape[-2:]
    out = GatedCRFLoss()(probs[None], CRF_KERNELS, CRF_RADIUS, {"rgb": image[None]}, h, w)
    return out["loss"]


def box_points(pred: Tensor, box: Box) -> tuple[Tensor, Tensor]:
    """MP points of ``box`` on ``pred`` ``(C, Hp, Wp)``: for every box row the column of its largest
    class-``box.cls`` logit, then for every box column the row of its largest one. Returns
    ``(ys, xs)`` long, ``h_b + w_b`` points in image coordinates (duplicates kept)."""
    crop = pred[box.cls, box.y0:box.y1 + 1, box.x0:box.x1 + 1].detach()
    rows = torch.arange(box.y0, box.y1 + 1, device=pred.device)
    cols = torch.arange(box.x0, box.x1 + 1, device=pred.device)
    col_of_row = crop.max(dim=1).indices + box.x0
    row_of_col = crop.max(dim=0).indices + box.y0
    return torch.cat([rows, row_of_col]), torch.cat([col_of_row, cols])


def mp_loss(pred: Tensor, embedding: Tensor, boxes: Sequence[Box], seeds: Tensor) -> tuple[Tensor, Tensor]:
    """Box MP loss with consistency checking, on box regions only.

    pred: ``(C, Hp, Wp)`` upsampled logits; embedding: ``(d, h, w)`` grid node embeddings (upsampled only
    at the MP points here, equal to cropping the full upsampling); boxes: 0-based inclusive, processed
    in order; seeds: ``(Hp, Wp)`` long.
    Returns ``(loss, pruned_seeds)``: ``CE(points, cls)`` summed / total points + ``Σ(1 − cos + 1e-5)`` over
    every ordered point pair of a box / total pairs; pruned seeds: pixels of a box labelled with its
    class whose embedding has a negative cosine to the box prototype (mean point embedding) become 255
    (the sign of the cosine is that of the dot product, which is linear in the embedding, so it is taken
    from the upsampled ``prototype · embedding`` map). ``seeds`` is not modified. No boxes: loss 0.
    """
    out_size = tuple(pred.shape[-2:])
    seeds = seeds.clone()
    ce_sum = dis_sum = pred.new_zeros(())
    points = pairs = 0
    for box in boxes:
        ys, xs = box_points(pred, box)
        target = torch.full_like(ys, box.cls)
        ce_sum = ce_sum + F.cross_entropy(pred[:, ys, xs].t(), target, reduction="sum")
        emb = bilinear_points(embedding, ys, xs, out_size).t()  # (P, d)
        norm = emb.norm(dim=1)
        cos = (emb @ emb.t()) / (norm[:, None] * norm[None, :] + COS_EPS)
        dis_sum = dis_sum + (1 - cos + PAIR_EPS).sum()
        points += len(ys)
        pairs += len(ys) ** 2
        with torch.no_grad():
            score = torch.einsum("d,dhw->hw", emb.mean(dim=0), embedding)[None]
            rows = torch.arange(box.y0, box.y1 + 1, device=pred.device)
            cols = torch.arange(box.x0, box.x1 + 1, device=pred.device)
            negative = bilinear_at(score, rows, cols, out_size)[0] < 0
            region = seeds[box.y0:box.y1 + 1, box.x0:box.x1 + 1]
            region[(region == box.cls) & negative] = IGNORE
    if not points:
        return pred.new_zeros(()), seeds
    return ce_sum / points + dis_sum / pairs, seeds


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
