"""Affinity labels from seeds and the affinity-network training loss (algorithm.md §2.1).

Window tensors follow ``tool.gated_crf_loss``: ``(N, 2r+1, 2r+1, h, w)``, entry ``[n, a, b, y, x]``
pairs pixel ``(y, x)`` with its neighbour ``(y + a − r, x + b − r)``; the centre tap is the pixel itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tool.dist import mean_over_processes
from tool.gated_crf_loss import SIGMA_RGB, SIGMA_XY, affinity_crf_terms, unfold_window
from vocabulary import IGNORE

EPS = 1e-5
TERM_WEIGHTS = {"bg": 0.25, "fg": 0.25, "neg": 0.5, "crf": 3.0}


def resize_nearest(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of ``(N, H, W)`` maps (labels, validity) to ``(N, h, w)``, same dtype.

    As the published affinity training shrinks its seed crop (OpenCV ``cv2.resize(..., INTER_NEAREST)``):
    output ``(y, x)`` reads input ``(floor(y·H/h), floor(x·W/w))``, at an 8× reduction the top-left pixel
    ``(8y, 8x)`` of each 8×8 block (torch's ``mode="nearest"`` is that rule).
    """
    return F.interpolate(x[:, None].float(), size, mode="nearest")[:, 0].to(x.dtype)


def affinity_label_masks(labels: Tensor, radius: int) -> dict[str, Tensor]:
    """Pair masks from seed labels on the affinity grid.

    labels: ``(N, h, w)`` integer, 0 background, 1..20 classes, 255 ignore. For a centre ``i`` and a
    neighbour ``j`` inside the grid (centre included), both labelled (≠ 255): ``'bg'`` = equal labels
    with ``i`` background, ``'fg'`` = equal foreground labels, ``'neg'`` = different labels.
    Returns bool masks ``(N, 2r+1, 2r+1, h, w)``; out-of-grid neighbours are in none of them.
    """
    lab = labels[:, None].float()
    neighbour = unfold_window(lab, radius, pad_value=float(IGNORE))[:, 0]
    centre = lab[:, :, None]  # (N, 1, 1, h, w)
    known = (neighbour != IGNORE) & (centre != IGNORE)
    same = known & (neighbour == centre)
    return {"bg": same & (centre == 0), "fg": same & (centre != 0), "neg": known & (neighbour != centre)}


def affinity_loss(aff: Tensor, aff_crf: Tensor, labels: Tensor, image: Tensor, valid: Tensor, radius: int,
                  sigma_rgb: float = SIGMA_RGB, sigma_xy: float = SIGMA_XY,
                  sync_counts: bool = False) -> dict[str, Tensor]:
    """The affinity training loss of algorithm.md §2.1 for one batch.

    aff, aff_crf: ``(N, 2r+1, 2r+1, h, w)`` network outputs (``aff`` in (0, 1]).
    labels: ``(N, H, W)`` integer seeds on the crop (255 = ignore and padding), resized to ``(h, w)`` by
    nearest neighbour. image: ``(N, 3, H, W)`` normalized crop. valid: ``(N, H, W)`` 1 inside the crop.
    Terms: ``bg = −Σ_bg log(aff + 1e-5) / n_bg``, ``fg`` likewise, ``neg = −Σ_neg log(1 + 1e-5 − aff) /
    n_neg``, ``crf = Σ K·aff_crf·m / Σ m``; each count is pooled over the whole batch and a term whose
    count is 0 is 0. ``loss = bg/4 + fg/4 + neg/2 + 3·crf``.

    sync_counts: under DistributedDataParallel each process holds part of the global batch. The counts
    are then replaced by their mean over processes, so that the mean of the per-process losses (what DDP's
    gradient averaging optimizes) equals the loss of the global batch in one process.

    Returns ``{'loss', 'bg', 'fg', 'neg', 'crf'}`` (scalars with gradient) and the local pair counts
    ``{'bg_count', 'fg_count', 'neg_count', 'crf_count'}`` (detached).
    """
    if aff.shape != aff_crf.shape:
        raise ValueError(f"affinity_loss: aff {tuple(aff.shape)} and aff_crf {tuple(aff_crf.shape)} differ")
    masks = affinity_label_masks(resize_nearest(labels, tuple(aff.shape[-2:])), radius)
    pos_nll = -torch.log(aff + EPS)
    neg_nll = -torch.log(1 + EPS - aff)
    zero = aff.new_zeros(())
    crf_sum, crf_count = affinity_crf_terms(aff_crf, image, valid, radius, sigma_rgb, sigma_xy)
    sums = torch.stack([
        torch.where(masks["bg"], pos_nll, zero).sum(),
        torch.where(masks["fg"], pos_nll, zero).sum(),
        torch.where(masks["neg"], neg_nll, zero).sum(),
        crf_sum,
    ])
    counts = torch.stack([masks["bg"].sum(), masks["fg"].sum(), masks["neg"].sum(), crf_count]).to(aff.dtype)
    counts = counts.detach()
    norm = mean_over_processes(counts) if sync_counts else counts
    # a zero count means an all-zero sum (every pair is masked out), so the term is 0
    terms = sums / norm.clamp(min=EPS)
    out = dict(zip(TERM_WEIGHTS, terms, strict=True))
    out["loss"] = sum(weight * out[name] for name, weight in TERM_WEIGHTS.items())
    out.update({f"{name}_count": count for name, count in zip(TERM_WEIGHTS, counts, strict=True)})
    return out
