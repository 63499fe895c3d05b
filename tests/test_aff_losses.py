"""Affinity labels and loss against loops over pixels and offsets, and the DDP count synchronization."""

import itertools
import math
import os
import socket

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from gated_crf_reference import affinity_crf_loss

from tool.aff_losses import affinity_label_masks, affinity_loss, resize_nearest

RADIUS = 2
D = 2 * RADIUS + 1


def loop_masks(labels, radius):
    n, h, w = labels.shape
    d = 2 * radius + 1
    masks = {k: torch.zeros(n, d, d, h, w, dtype=torch.bool) for k in ("bg", "fg", "neg")}
    for k, y, x, a, b in itertools.product(range(n), range(h), range(w), range(d), range(d)):
        yy, xx = y + a - radius, x + b - radius
        if not (0 <= yy < h and 0 <= xx < w):
            continue
        ci, cj = int(labels[k, y, x]), int(labels[k, yy, xx])
        if ci == 255 or cj == 255:
            continue
        if ci == cj:
            masks["bg" if ci == 0 else "fg"][k, a, b, y, x] = True
        else:
            masks["neg"][k, a, b, y, x] = True
    return masks


def random_batch(seed, n=2, h=5, w=6, factor=4, classes=3):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n, h * factor, w * factor), generator=g)
    labels[torch.rand(labels.shape, generator=g) < 0.2] = 255
    aff = torch.rand(n, D, D, h, w, generator=g) * 0.98 + 0.01
    aff_crf = torch.rand(n, D, D, h, w, generator=g)
    image = torch.randn(n, 3, h * factor, w * factor, generator=g) * 0.2
    valid = torch.ones(n, h * factor, w * factor)
    valid[:, -factor * 2:] = 0
    return aff, aff_crf, labels, image, valid


@pytest.mark.parametrize("hw,out", [((32, 16), (4, 2)), ((448, 448), (56, 56)), ((45, 37), (7, 5)),
                                    ((20, 28), (6, 9))])
def test_resize_nearest_is_opencv_inter_nearest(hw, out):
    """The published stage 2 shrinks seeds with cv2.INTER_NEAREST: cell (y, x) takes pixel (8y, 8x)."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 256, (2, *hw), generator=g).to(torch.uint8)
    small = resize_nearest(labels, out)
    assert small.dtype == torch.uint8
    for k in range(2):
        reference = cv2.resize(labels[k].numpy(), out[::-1], interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(small[k].numpy(), reference)
    if hw[0] == 8 * out[0] and hw[1] == 8 * out[1]:
        assert torch.equal(small, labels[:, ::8, ::8])


def test_label_masks_match_loop():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (2, 6, 7), generator=g)
    labels[torch.rand(labels.shape, generator=g) < 0.25] = 255
    got = affinity_label_masks(labels, RADIUS)
    expected = loop_masks(labels, RADIUS)
    for key in ("bg", "fg", "neg"):
        assert got[key].shape == (2, D, D, 6, 7)
        assert torch.equal(got[key], expected[key]), key
    # the centre tap of a labelled pixel is a positive pair
    labelled = labels != 255
    assert torch.equal((got["bg"] | got["fg"])[:, RADIUS, RADIUS], labelled)


def test_out_of_grid_neighbours_are_no_pairs():
    labels = torch.zeros(1, 3, 3, dtype=torch.long)
    masks = affinity_label_masks(labels, 1)
    # corner pixel (0, 0): only the 4 in-grid taps of its 3x3 window are background pairs
    assert masks["bg"][0, :, :, 0, 0].sum() == 4
    # 4 corners x 4 taps + 4 edge pixels x 6 taps + the middle pixel's 9 taps
    assert masks["bg"].sum() == 4 * 4 + 4 * 6 + 9
    assert masks["neg"].sum() == 0


def test_loss_terms_match_formulas():
    aff, aff_crf, labels, image, valid = random_batch(1)
    out = affinity_loss(aff, aff_crf, labels, image, valid, RADIUS)
    masks = loop_masks(labels[:, ::4, ::4], RADIUS)  # INTER_NEAREST: top-left pixel of each 4x4 block
    terms = {}
    for key in ("bg", "fg", "neg"):
        total, count = 0.0, 0
        for idx in masks[key].nonzero().tolist():
            a = float(aff[tuple(idx)])
            total += -math.log(a + 1e-5) if key != "neg" else -math.log(1 + 1e-5 - a)
            count += 1
        assert out[f"{key}_count"].item() == count
        terms[key] = total / count
        assert out[key].item() == pytest.approx(terms[key], rel=1e-5), key
    terms["crf"] = affinity_crf_loss(aff_crf, image, valid, RADIUS).item()
    assert out["crf"].item() == pytest.approx(terms["crf"], rel=1e-6)
    total = terms["bg"] / 4 + terms["fg"] / 4 + terms["neg"] / 2 + 3 * terms["crf"]
    assert out["loss"].item() == pytest.approx(total, rel=1e-5)


def test_empty_terms_are_zero_not_nan():
    aff, aff_crf, labels, image, valid = random_batch(2)
    aff.requires_grad_(True)
    labels = torch.zeros_like(labels)  # background only: no foreground and no negative pairs
    out = affinity_loss(aff, aff_crf, labels, image, torch.zeros_like(valid), RADIUS)
    assert out["fg"].item() == 0.0 and out["neg"].item() == 0.0 and out["crf"].item() == 0.0
    assert out["bg"].item() > 0
    out["loss"].backward()
    assert torch.isfinite(aff.grad).all()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_worker(rank, world, port, batch, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        aff, aff_crf, labels, image, valid = (t[rank::world].clone() for t in batch)
        aff.requires_grad_(True)
        aff_crf.requires_grad_(True)
        out = affinity_loss(aff, aff_crf, labels, image, valid, RADIUS, sync_counts=True)
        out["loss"].backward()
        results[rank] = (out["loss"].detach(), aff.grad, aff_crf.grad)
    finally:
        dist.destroy_process_group()


def test_synchronized_counts_make_rank_mean_equal_global_batch():
    batch = random_batch(3, n=4)
    # make the two halves very different, so that per-rank count normalization would not match
    batch[2][1::2, :8] = 255
    aff, aff_crf, labels, image, valid = (t.clone() for t in batch)
    aff.requires_grad_(True)
    aff_crf.requires_grad_(True)
    out = affinity_loss(aff, aff_crf, labels, image, valid, RADIUS)
    out["loss"].backward()

    results = mp.Manager().dict()
    mp.spawn(_rank_worker, args=(2, _free_port(), batch, results), nprocs=2, join=True)
    losses = torch.stack([results[r][0] for r in range(2)])
    torch.testing.assert_close(losses.mean(), out["loss"].detach())
    # DDP averages gradients over ranks: (grad of rank r on its samples) / world == global grad
    for which, grad in ((1, aff.grad), (2, aff_crf.grad)):
        for r in range(2):
            torch.testing.assert_close(results[r][which] / 2, grad[r::2])
