"""Stage 4 loss and inference (algorithm.md §4): cross entropy with 255 ignored, multi-scale + flip prediction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tool.transforms import normalize, to_chw_tensor
from vocabulary import IGNORE


def segmentation_loss(scores: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy over the pixels whose label is not 255.

    scores: ``(N, C, H, W)`` raw class scores; label: ``(N, H, W)`` int64, 0..C-1 or 255. A batch without
    any labelled pixel gives 0 (not NaN), so a crop of pure padding does not poison the step.
    """
    per_pixel = F.cross_entropy(scores.float(), label, ignore_index=IGNORE, reduction="sum")
    return per_pixel / (label != IGNORE).sum().clamp(min=1)


def scaled_input(image: np.ndarray, scale: float) -> torch.Tensor:
    """``(H, W, 3)`` uint8 → normalized ``(1, 3, round(H·s), round(W·s))`` float32 (bilinear resize)."""
    x = to_chw_tensor(normalize(image))[None]
    if scale == 1:
        return x
    h, w = image.shape[:2]
    return F.interpolate(x, (max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear",
                         align_corners=False)


@torch.no_grad()
def predict_probs(net: nn.Module, image: np.ndarray, scales: Sequence[float] = (1.0,), flip: bool = False,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Class probabilities of one image, averaged over ``scales`` (and their mirror images if ``flip``).

    image: ``(H, W, 3)`` uint8 RGB. ``net`` maps ``(N, 3, h, w)`` to ``(N, C, h, w)`` scores. At each scale
    the image and its mirror go through the net as one batch of two; the softmax of each is resized to
    ``(H, W)`` (bilinear), the mirror's flipped back. Returns ``(C, H, W)`` float32 on the CPU, summing to 1.
    """
    h, w = image.shape[:2]
    total = None
    for scale in scales:
        x = scaled_input(image, scale).to(device)
        if flip:
            x = torch.cat([x, x.flip(-1)])
        probs = F.interpolate(net(x).float().softmax(1), (h, w), mode="bilinear", align_corners=False)
        if flip:
            probs = torch.stack([probs[0], probs[1].flip(-1)])
        summed = probs.sum(0)
        total = summed if total is None else total + summed
    return (total / (len(scales) * (2 if flip else 1))).cpu()
