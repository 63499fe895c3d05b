"""Gated CRF kernels (Obukhov et al., 2019) and the affinity-training CRF terms (algorithm.md §2.1, §3.4).

Both share one window kernel: for every pixel ``i`` of a ``(h, w)`` grid and every neighbour ``j`` in the
``(2r+1)²`` square window around it, ``K_ij = exp(-½‖φ_i − φ_j‖²)`` where ``φ`` stacks feature maps that
are already divided by their sigmas. The centre tap (``j = i``) and neighbours outside the grid are 0.

Window tensors are laid out ``(N, C, 2r+1, 2r+1, h, w)``: entry ``[n, c, a, b, y, x]`` belongs to the
neighbour at row ``y + a − r`` and column ``x + b − r`` of pixel ``(y, x)``; this is the layout of the
affinity network's ``aff`` / ``aff_crf`` outputs (without the channel axis).

The stages need only the kernels and the affinity CRF terms. The complete ``GatedCRFLoss`` module (masks,
compatibility matrices, kernel visualization) is a reference of the tests: ``tests/gated_crf_reference.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

# Kernel of the gated CRF terms of stages 2 and 3 (algorithm.md §2.1, §3.4): sigma of the normalized RGB values and
# of the x, y position in grid cells.
SIGMA_RGB = 0.1
SIGMA_XY = 6.0

Downsampler = Callable[[Tensor, tuple[int, int]], Tensor]


def unfold_window(x: Tensor, radius: int, pad_value: float = 0.0) -> Tensor:
    """Square-window neighbours of every pixel.

    x: ``(N, C, h, w)`` float. Returns ``(N, C, 2r+1, 2r+1, h, w)``; neighbours outside the grid read
    ``pad_value``.
    """
    n, c, h, w = x.shape
    diameter = 2 * radius + 1
    if pad_value != 0.0:
        x = F.pad(x, (radius, radius, radius, radius), value=pad_value)
        cols = F.unfold(x, diameter)
    else:
        cols = F.unfold(x, diameter, padding=radius)
    return cols.view(n, c, diameter, diameter, h, w)


def position_grid(n: int, h: int, w: int, device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """Pixel coordinates in grid units: ``(N, 2, h, w)``, channel 0 = x (column), channel 1 = y (row)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype),
                            torch.arange(w, device=device, dtype=dtype), indexing="ij")
    return torch.stack((xs, ys)).unsqueeze(0).expand(n, 2, h, w)


def gated_crf_kernel(features: Tensor, radius: int) -> Tensor:
    """The window kernel ``K_ij = exp(-½‖φ_i − φ_j‖²)``.

    features: ``(N, D, h, w)`` float, each channel already divided by its sigma. Returns
    ``(N, 1, 2r+1, 2r+1, h, w)`` in [0, 1]; the centre tap and out-of-grid neighbours are 0.
    """
    n, _, h, w = features.shape
    diff = unfold_window(features, radius) - features[:, :, None, None]
    kernel = torch.exp(-0.5 * diff.pow(2).sum(dim=1, keepdim=True))
    pairs = unfold_window(features.new_ones(1, 1, h, w), radius)
    pairs[:, :, radius, radius] = 0
    return kernel * pairs


def _resize_modality(x: Tensor, name: str, size: tuple[int, int],
                     downsamplers: dict[str, Downsampler] | None) -> Tensor:
    """Bring a ``(N, C, H, W)`` modality to the prediction size: area averaging unless a custom
    downsampler is given for ``name``; unchanged when the size already matches."""
    if tuple(x.shape[-2:]) == size:
        return x
    if downsamplers is not None and name in downsamplers:
        return downsamplers[name](x, size)
    return F.adaptive_avg_pool2d(x, size)


def gated_crf_kernels(kernels_desc: list[dict[str, float]], radius: int, sample: dict[str, Tensor],
                      like: Tensor, downsamplers: dict[str, Downsampler] | None = None) -> Tensor:
    """The weighted kernel sum of ``kernels_desc`` on the grid of ``like`` ``(N, C, h, w)``:
    ``(N, 1, 2r+1, 2r+1, h, w)``."""
    n, _, h, w = like.shape
    total = None
    for index, desc in enumerate(kernels_desc):
        if "weight" not in desc:
            raise ValueError(f"GatedCRFLoss: kernels_desc[{index}] has no 'weight'")
        features = []
        for name, sigma in desc.items():
            if name == "weight":
                continue
            if name == "xy":
                feature = position_grid(n, h, w, like.device, like.dtype)
            elif name in sample:
                feature = _resize_modality(sample[name], name, (h, w), downsamplers).to(like.dtype)
            else:
                raise KeyError(f"GatedCRFLoss: kernels_desc[{index}] uses modality {name!r}, "
                               f"which is not in sample (keys: {sorted(sample)})")
            features.append(feature / sigma)
        if not features:
            raise ValueError(f"GatedCRFLoss: kernels_desc[{index}] names no modality")
        kernel = desc["weight"] * gated_crf_kernel(torch.cat(features, dim=1), radius)
        total = kernel if total is None else total + kernel
    if total is None:
        raise ValueError("GatedCRFLoss: kernels_desc is empty")
    return total


def affinity_crf_terms(aff_crf: Tensor, image: Tensor, valid: Tensor, radius: int,
                       sigma_rgb: float = SIGMA_RGB, sigma_xy: float = SIGMA_XY) -> tuple[Tensor, Tensor]:
    """Numerator and pair count of the affinity CRF loss (algorithm.md §2.1): ``(Σ K·aff_crf·m, Σ m)``.

    aff_crf: ``(N, 2r+1, 2r+1, h, w)`` feature distances. image: ``(N, 3, H, W)`` normalized crop,
    bilinearly resized to ``(h, w)`` (align_corners=False). valid: ``(N, H, W)`` 1 inside the crop, 0 on
    padding; resized to ``(h, w)`` by nearest neighbour as OpenCV ``INTER_NEAREST`` does (grid cell
    ``(y, x)`` reads pixel ``(floor(y·H/h), floor(x·W/w))``), so it agrees with the published validity
    mask, which is read from the seed map shrunk that way. ``m_ij`` = both pixels
    valid (and ``j`` inside the grid); the centre tap counts in ``Σ m`` while ``K_ii = 0``.
    Kernel: ``φ = (rgb/sigma_rgb, x/sigma_xy, y/sigma_xy)`` with x, y in grid cells.
    """
    n, d, d2, h, w = aff_crf.shape
    if d != 2 * radius + 1 or d2 != d:
        raise ValueError(f"affinity_crf_terms: aff_crf {tuple(aff_crf.shape)} does not match radius {radius}")
    rgb = F.interpolate(image.to(aff_crf.dtype), (h, w), mode="bilinear", align_corners=False)
    xy = position_grid(n, h, w, aff_crf.device, aff_crf.dtype)
    features = torch.cat((rgb / sigma_rgb, xy / sigma_xy), dim=1)
    kernel = gated_crf_kernel(features, radius)[:, 0]
    inside = F.interpolate(valid[:, None].to(aff_crf.dtype), (h, w), mode="nearest")
    pairs = unfold_window(inside, radius)[:, 0] * inside[:, :, None]  # (N, d, d, h, w)
    return (kernel * aff_crf * pairs).sum(), pairs.sum()
