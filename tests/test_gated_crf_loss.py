"""GatedCRFLoss and the affinity CRF loss against dense loops over pixel pairs."""

import itertools
import math

import numpy as np
import pytest
import torch
from gated_crf_reference import GatedCRFLoss, affinity_crf_loss

from tool.gated_crf_loss import gated_crf_kernel, position_grid, unfold_window


def window_pairs(h, w, radius):
    """Every (centre, neighbour, offset) with the neighbour inside the grid, centre excluded."""
    for y, x, a, b in itertools.product(range(h), range(w), range(2 * radius + 1), range(2 * radius + 1)):
        yy, xx = y + a - radius, x + b - radius
        if 0 <= yy < h and 0 <= xx < w and (a, b) != (radius, radius):
            yield y, x, yy, xx, a, b


def block_mean(x, factor):
    n, c, hh, ww = x.shape
    return x.reshape(n, c, hh // factor, factor, ww // factor, factor).mean(axis=(3, 5))


def dense_gated_crf(y, kernels_desc, radius, sample, factor, mask_src=None, mask_dst=None, compat=None):
    """Σ_i Σ_{j ∈ window(i)} K_ij src_j dst_i Σ_ab μ_ab y_a(i) y_b(j) / denom, with numpy loops."""
    y = y.numpy().astype(np.float64)
    n, c, h, w = y.shape
    feats = []
    for desc in kernels_desc:
        parts = []
        for name, sigma in desc.items():
            if name == "weight":
                continue
            if name == "xy":
                xs, ys = np.meshgrid(np.arange(w), np.arange(h))
                parts.append(np.broadcast_to(np.stack([xs, ys])[None], (n, 2, h, w)) / sigma)
            else:
                parts.append(block_mean(sample[name].numpy().astype(np.float64), factor) / sigma)
        feats.append((desc["weight"], np.concatenate(parts, axis=1)))
    mu = np.ones((c, c)) - np.eye(c) if compat is None else compat
    src = np.ones((n, h, w)) if mask_src is None else mask_src
    dst = np.ones((n, h, w)) if mask_dst is None else mask_dst
    total = 0.0
    for k in range(n):
        for y0, x0, y1, x1, _, _ in window_pairs(h, w, radius):
            kern = sum(wt * math.exp(-0.5 * np.sum((f[k, :, y0, x0] - f[k, :, y1, x1]) ** 2))
                       for wt, f in feats)
            total += kern * src[k, y1, x1] * dst[k, y0, x0] * (y[k, :, y0, x0] @ mu @ y[k, :, y1, x1])
    denom = n * h * w
    if mask_src is not None:
        denom = max(mask_src.sum(), 1)
    if mask_dst is not None:
        denom = max(mask_dst.sum(), 1)
    return total / denom


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    n, c, h, w, factor = 2, 4, 5, 6, 2
    y = torch.softmax(3 * torch.randn(n, c, h, w, generator=g), dim=1)
    rgb = torch.rand(n, 3, h * factor, w * factor, generator=g)
    desc = [{"weight": 0.9, "xy": 3.0, "rgb": 0.3}, {"weight": 0.1, "xy": 2.0}]
    return y, {"rgb": rgb}, desc, factor


def test_unfold_window_reads_neighbours_and_pad_value():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    win = unfold_window(x, 1, pad_value=-1.0)
    for y, x0, a, b in itertools.product(range(3), range(4), range(3), range(3)):
        yy, xx = y + a - 1, x0 + b - 1
        expected = x[0, 0, yy, xx] if 0 <= yy < 3 and 0 <= xx < 4 else -1.0
        assert win[0, 0, a, b, y, x0] == expected


def test_gated_crf_kernel_matches_loop():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(2, 3, 4, 5, generator=g)
    kernel = gated_crf_kernel(feats, 2)
    expected = torch.zeros_like(kernel)
    for k in range(2):
        for y0, x0, y1, x1, a, b in window_pairs(4, 5, 2):
            diff = feats[k, :, y0, x0] - feats[k, :, y1, x1]
            expected[k, 0, a, b, y0, x0] = torch.exp(-0.5 * (diff**2).sum())
    torch.testing.assert_close(kernel, expected)


def test_position_grid_is_x_then_y():
    grid = position_grid(1, 2, 3)
    assert grid[0, 0].tolist() == [[0, 1, 2], [0, 1, 2]]
    assert grid[0, 1].tolist() == [[0, 0, 0], [1, 1, 1]]


def test_potts_matches_dense_reference(problem):
    y, sample, desc, factor = problem
    h, w = y.shape[-2:]
    out = GatedCRFLoss()(y, desc, 2, sample, h * factor, w * factor)
    assert out["loss"].item() == pytest.approx(dense_gated_crf(y, desc, 2, sample, factor), rel=1e-5)


def test_compatibility_path(problem):
    y, sample, desc, factor = problem
    h, w = y.shape[-2:]
    c = y.shape[1]
    loss = GatedCRFLoss()
    potts = loss(y, desc, 2, sample, h * factor, w * factor)["loss"]
    # any positive constant off the diagonal is the Potts model after row normalization
    flat = loss(y, desc, 2, sample, h * factor, w * factor, compatibility=5 * (1 - torch.eye(c)))["loss"]
    torch.testing.assert_close(flat, potts)
    g = torch.Generator().manual_seed(3)
    compat = torch.rand(c, c, generator=g)
    compat = (compat + compat.t()) * (1 - torch.eye(c))
    got = loss(y, desc, 2, sample, h * factor, w * factor, compatibility=compat)["loss"]
    mu = (c - 1) * compat.double().numpy() / compat.double().numpy().sum(axis=1, keepdims=True)
    assert got.item() == pytest.approx(dense_gated_crf(y, desc, 2, sample, factor, compat=mu), rel=1e-5)


def test_masks_at_input_resolution(problem):
    y, sample, desc, factor = problem
    n, _, h, w = y.shape
    g = torch.Generator().manual_seed(4)
    src = (torch.rand(n, 1, h * factor, w * factor, generator=g) > 0.2).float()
    dst = (torch.rand(n, 1, h, w, generator=g) > 0.3).float()
    # a source cell counts only when its whole input block is 1 (area average < 1 -> 0)
    src_small = src.view(n, h, factor, w, factor).amin(dim=(2, 4)).numpy()
    loss = GatedCRFLoss()
    got_src = loss(y, desc, 1, sample, h * factor, w * factor, mask_src=src)["loss"]
    ref = dense_gated_crf(y, desc, 1, sample, factor, mask_src=src_small)
    assert got_src.item() == pytest.approx(ref, rel=1e-5)
    got_both = loss(y, desc, 1, sample, h * factor, w * factor, mask_src=src, mask_dst=dst)["loss"]
    ref = dense_gated_crf(y, desc, 1, sample, factor, mask_src=src_small, mask_dst=dst[:, 0].numpy())
    assert got_both.item() == pytest.approx(ref, rel=1e-5)


def test_constant_prediction_has_zero_potts_loss(problem):
    y, sample, desc, factor = problem
    h, w = y.shape[-2:]
    one_hot = torch.zeros_like(y)
    one_hot[:, 2] = 1
    out = GatedCRFLoss()(one_hot, desc, 3, sample, h * factor, w * factor)
    assert abs(out["loss"].item()) < 1e-6


def test_custom_downsampler_and_kernels_vis(problem):
    y, sample, desc, factor = problem
    n, _, h, w = y.shape
    calls = []

    def pick_corner(x, size):
        calls.append(size)
        return x[:, :, ::factor, ::factor]

    radius = 1
    out = GatedCRFLoss()(y, [{"weight": 1.0, "rgb": 0.5}], radius, sample, h * factor, w * factor,
                         custom_modality_downsamplers={"rgb": pick_corner}, out_kernels_vis=True)
    assert calls == [(h, w)]
    kernel = gated_crf_kernel(sample["rgb"][:, :, ::factor, ::factor] / 0.5, radius)
    vis = out["kernels_vis"]
    assert vis.shape == (n, 1, h * factor, w * factor)
    d = 2 * radius + 1
    # the tile of pixel (r, r) holds its window, each cell upsampled factor x factor
    for a, b in itertools.product(range(d), range(d)):
        assert vis[0, 0, a * factor, b * factor] == kernel[0, 0, a, b, radius, radius]


def test_bad_input_size_is_refused(problem):
    y, sample, desc, _ = problem
    with pytest.raises(ValueError, match="integer"):
        GatedCRFLoss()(y, desc, 1, sample, 7, 9)
    with pytest.raises(KeyError, match="depth"):
        GatedCRFLoss()(y, [{"weight": 1, "depth": 1.0}], 1, sample, y.shape[2], y.shape[3])


def dense_affinity_crf(aff_crf, image, valid, radius, sigma_rgb, sigma_xy, factor):
    n, _, _, h, w = aff_crf.shape
    # bilinear, align_corners=False, at an even integer factor = mean of the two middle rows/columns
    mid = factor // 2
    blocks = image.view(n, 3, h, factor, w, factor)
    rgb = blocks[:, :, :, mid - 1:mid + 1, :, mid - 1:mid + 1].mean(dim=(3, 5))
    inside = valid[:, ::factor, ::factor]  # OpenCV INTER_NEAREST: the top-left pixel of each block
    num, den = 0.0, 0.0
    for k in range(n):
        for y0, x0 in itertools.product(range(h), range(w)):
            den += float(inside[k, y0, x0])  # centre tap: counted, kernel 0
        for y0, x0, y1, x1, a, b in window_pairs(h, w, radius):
            m = float(inside[k, y0, x0] * inside[k, y1, x1])
            d2 = ((rgb[k, :, y0, x0] - rgb[k, :, y1, x1]) ** 2).sum() / sigma_rgb**2
            d2 += ((x0 - x1) ** 2 + (y0 - y1) ** 2) / sigma_xy**2
            num += math.exp(-0.5 * float(d2)) * float(aff_crf[k, a, b, y0, x0]) * m
            den += m
    return num / den if den else 0.0


def test_affinity_crf_loss_matches_loop():
    g = torch.Generator().manual_seed(5)
    n, h, w, factor, radius = 2, 5, 6, 4, 2
    d = 2 * radius + 1
    aff_crf = torch.rand(n, d, d, h, w, generator=g)
    image = torch.randn(n, 3, h * factor, w * factor, generator=g) * 0.1
    valid = torch.zeros(n, h * factor, w * factor)
    valid[0, :13, :17] = 1
    valid[1, 5:, :] = 1
    got = affinity_crf_loss(aff_crf, image, valid, radius, sigma_rgb=0.1, sigma_xy=2.0)
    assert got.item() == pytest.approx(dense_affinity_crf(aff_crf, image, valid, radius, 0.1, 2.0, factor),
                                       rel=1e-5)


def test_affinity_crf_loss_without_valid_pixels_is_zero():
    aff_crf = torch.rand(1, 3, 3, 4, 4, requires_grad=True)
    loss = affinity_crf_loss(aff_crf, torch.rand(1, 3, 32, 32), torch.zeros(1, 32, 32), 1)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(aff_crf.grad).all()
