"""Gated CRF loss (Obukhov et al., 2019) and its affinity-training variant (SPEC §2.1, §3.4).

Both share one window kernel: for every pixel ``i`` of a ``(h, w)`` grid and every neighbour ``j`` in the
``(2r+1)²`` square window around it, ``K_ij = exp(-½‖φ_i − φ_j‖²)`` where ``φ`` stacks feature maps that
are already divided by their sigmas. The centre tap (``j = i``) and neighbours outside the grid are 0.

Window tensors are laid out ``(N, C, 2r+1, 2r+1, h, w)``: entry ``[n, c, a, b, y, x]`` belongs to the
neighbour at row ``y + a − r`` and column ``x + b − r`` of pixel ``(y, x)``; this is the layout of the
affinity network's ``aff`` / ``aff_crf`` outputs (without the channel axis).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def _binary_mask(mask: Tensor, name: str, n: int, size: tuple[int, int],
                 downsamplers: dict[str, Downsampler] | None) -> Tensor:
    """A ``(N, 1, H, W)`` float mask resized to the prediction grid; NaN and values < 1 become 0."""
    if mask.dim() != 4 or tuple(mask.shape[:2]) != (n, 1) or not mask.is_floating_point():
        raise ValueError(f"GatedCRFLoss: {name} must be a float (N={n}, 1, H, W) tensor, "
                         f"got {tuple(mask.shape)} {mask.dtype}")
    mask = _resize_modality(mask, "mask", size, downsamplers)
    return torch.where(mask >= 1.0, torch.ones_like(mask), torch.zeros_like(mask))


def _kernels_visualization(kernels: Tensor, radius: int, height_input: int, width_input: int) -> Tensor:
    """Tile the kernels of every ``(2r+1)``-th pixel into an image: ``(N, 1, height_input, width_input)``."""
    n, _, d, _, h, w = kernels.shape
    picked = kernels[:, 0, :, :, radius::d, radius::d]  # (N, d, d, h', w')
    hs, ws = picked.shape[-2:]
    tiles = picked.permute(0, 3, 1, 4, 2).reshape(n, 1, hs * d, ws * d)[:, :, :h, :w]
    tiles = F.pad(tiles, (0, w - tiles.shape[-1], 0, h - tiles.shape[-2]))
    return F.interpolate(tiles, (height_input, width_input), mode="nearest")


class GatedCRFLoss(nn.Module):
    """Gated CRF loss with the call of Obukhov et al.'s reference module.

    ``loss = Σ_{i, j ∈ window(i)} K_ij · Σ_{a,b} μ(a, b) · y_a(i) · y_b(j) / denom``, where ``y`` is the
    prediction, ``K`` the (masked) kernel, ``μ`` the class compatibility (Potts ``μ = 1 − I`` by default)
    and ``denom`` = ``N·h·w``, or the number of mask pixels when a mask is given (the destination mask
    wins when both are). **FIX** vs. the reference: kernel entries of neighbours outside the grid are 0
    (the reference keeps kernels computed against zero padding in the Potts ``Σ K`` term). This only
    changes the loss by a prediction-independent constant, and makes the Potts shortcut equal the
    compatibility path with ``1 − I`` exactly.
    """

    def forward(
        self,
        y_hat_softmax: Tensor,
        kernels_desc: list[dict[str, float]],
        kernels_radius: int,
        sample: dict[str, Tensor],
        height_input: int,
        width_input: int,
        mask_src: Tensor | None = None,
        mask_dst: Tensor | None = None,
        compatibility: Tensor | None = None,
        custom_modality_downsamplers: dict[str, Downsampler] | None = None,
        out_kernels_vis: bool = False,
    ) -> dict[str, Tensor]:
        """
        y_hat_softmax: ``(N, C, h, w)`` class probabilities (each pixel sums to 1 for the Potts path).
        kernels_desc: list of kernels summed with their ``'weight'``; every other key names a modality and
            gives its sigma, e.g. ``[{'weight': 1, 'xy': 6, 'rgb': 0.1}]``. ``'xy'`` = pixel coordinates of
            the prediction grid (so its sigma is in grid cells); other names are looked up in ``sample``.
        kernels_radius: window radius ``r``.
        sample: modality name -> ``(N, Cm, H, W)`` tensor; resized to ``(h, w)`` by area averaging (or by
            ``custom_modality_downsamplers[name](x, (h, w))``) when its size differs.
        height_input, width_input: full-resolution size of the modalities, integer multiples of ``(h, w)``
            with the same aspect; used for the kernel visualization.
        mask_src / mask_dst: optional float ``(N, 1, H, W)`` masks (1 = use, resized like a modality under
            the name ``'mask'``; values < 1 after resizing count as 0). ``mask_src`` gates neighbours
            ``j``, ``mask_dst`` gates centres ``i``.
        compatibility: optional ``(C, C)`` non-negative matrix with zero diagonal; each row is rescaled to
            sum to ``C − 1`` (so any positive off-diagonal constant is the Potts model).
        Returns ``{'loss': scalar}`` plus ``'kernels_vis'`` ``(N, 1, height_input, width_input)`` when
        ``out_kernels_vis``.
        """
        if y_hat_softmax.dim() != 4:
            raise ValueError("GatedCRFLoss: y_hat_softmax must be (N, C, h, w), "
                             f"got {tuple(y_hat_softmax.shape)}")
        n, c, h, w = y_hat_softmax.shape
        if height_input % h or width_input % w or height_input * w != width_input * h:
            raise ValueError(f"GatedCRFLoss: input size {height_input}x{width_input} must be an integer "
                             f"multiple of the prediction size {h}x{w} with the same aspect")
        kernels = self.kernels(kernels_desc, kernels_radius, sample, y_hat_softmax,
                               custom_modality_downsamplers)

        denom = torch.tensor(float(n * h * w), device=y_hat_softmax.device, dtype=y_hat_softmax.dtype)
        if mask_src is not None:
            src = _binary_mask(mask_src, "mask_src", n, (h, w), custom_modality_downsamplers)
            denom = src.sum().clamp(min=1)
            kernels = kernels * unfold_window(src, kernels_radius)
        if mask_dst is not None:
            dst = _binary_mask(mask_dst, "mask_dst", n, (h, w), custom_modality_downsamplers)
            denom = dst.sum().clamp(min=1)
            kernels = kernels * dst[:, :, None, None]

        # (Σ_j K_ij y_b(j)) for every pixel i and class b: (N, C, h, w)
        smoothed = (kernels * unfold_window(y_hat_softmax, kernels_radius)).sum(dim=(2, 3))
        if compatibility is None:
            # Potts shortcut: Σ_{a≠b} y_a(i) y_b(j) = 1 − Σ_a y_a(i) y_a(j) for probabilities summing to 1.
            loss = kernels.sum() - (smoothed * y_hat_softmax).sum()
        else:
            compat = self._compatibility(compatibility, c).to(y_hat_softmax)
            pair_sums = torch.einsum("nahw,nbhw->ab", y_hat_softmax, smoothed)
            loss = (compat * pair_sums).sum()

        out = {"loss": loss / denom}
        if out_kernels_vis:
            out["kernels_vis"] = _kernels_visualization(kernels.detach(), kernels_radius, height_input,
                                                        width_input)
        return out

    @staticmethod
    def kernels(kernels_desc: list[dict[str, float]], radius: int, sample: dict[str, Tensor],
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

    @staticmethod
    def _compatibility(compatibility: Tensor, c: int) -> Tensor:
        if tuple(compatibility.shape) != (c, c):
            raise ValueError(f"GatedCRFLoss: compatibility must be ({c}, {c}), "
                             f"got {tuple(compatibility.shape)}")
        if (compatibility < 0).any():
            raise ValueError("GatedCRFLoss: compatibility must not have negative entries")
        if (torch.diagonal(compatibility) != 0).any():
            raise ValueError("GatedCRFLoss: compatibility must have a zero diagonal")
        return (c - 1) * F.normalize(compatibility.float(), p=1, dim=1)


def affinity_crf_terms(aff_crf: Tensor, image: Tensor, valid: Tensor, radius: int,
                       sigma_rgb: float = 0.1, sigma_xy: float = 6.0) -> tuple[Tensor, Tensor]:
    """Numerator and pair count of the affinity CRF loss (SPEC §2.1): ``(Σ K·aff_crf·m, Σ m)``.

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


def affinity_crf_loss(aff_crf: Tensor, image: Tensor, valid: Tensor, radius: int,
                      sigma_rgb: float = 0.1, sigma_xy: float = 6.0) -> Tensor:
    """``L_crf = Σ K_ij · aff_crf_ij · m_ij / Σ m_ij`` over the batch (0 when no pair is valid); see
    :func:`affinity_crf_terms` for shapes."""
    weighted, count = affinity_crf_terms(aff_crf, image, valid, radius, sigma_rgb, sigma_xy)
    return weighted / count.clamp(min=1)
