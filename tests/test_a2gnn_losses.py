import math

import pytest
import torch
import torch.nn.functional as F
from gated_crf_reference import GatedCRFLoss

from network.graph import GraphBatch
from tool.a2gnn_losses import (
    bilinear_at,
    bilinear_points,
    box_points,
    box_table,
    crf_kernel_graph,
    gated_crf_term,
    interpolation_matrix,
    mp_loss,
    seed_loss,
)
from vocabulary import Box


def upsample(grid, size):
    return F.interpolate(grid[None], size, mode="bilinear", align_corners=False)[0]


@pytest.mark.parametrize("hw,size", [((5, 7), (40, 56)), ((4, 6), (13, 21)), ((3, 3), (24, 24))])
def test_bilinear_tables_equal_interpolate(hw, size):
    torch.manual_seed(0)
    grid = torch.randn(4, *hw, dtype=torch.float64)
    full = upsample(grid, size)
    rows = torch.tensor([0, 1, size[0] // 2, size[0] - 1])
    cols = torch.arange(2, size[1] - 1)
    torch.testing.assert_close(bilinear_at(grid, rows, cols, size), full[:, rows][:, :, cols],
                               rtol=0, atol=1e-12)
    ys = torch.randint(0, size[0], (50,))
    xs = torch.randint(0, size[1], (50,))
    torch.testing.assert_close(bilinear_points(grid, ys, xs, size), full[:, ys, xs].t(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("hw,size", [((5, 7), (40, 56)), ((4, 6), (13, 21)), ((1, 3), (8, 24))])
def test_interpolation_matrices_upsample_like_interpolate_with_gradients(hw, size):
    torch.manual_seed(6)
    grid = torch.randn(3, *hw, dtype=torch.float64, requires_grad=True)
    target = torch.randn(3, *size, dtype=torch.float64)
    rows = interpolation_matrix(hw[0], size[0], torch.float64)
    cols = interpolation_matrix(hw[1], size[1], torch.float64)
    out = rows @ grid @ cols.t()
    (out * target).sum().backward()
    grad = grid.grad.clone()
    grid.grad = None
    ref = upsample(grid, size)
    (ref * target).sum().backward()
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad, grid.grad, rtol=0, atol=1e-12)
    # each output row of the 1-D matrix is a convex combination of at most two neighbouring inputs
    matrix = interpolation_matrix(hw[1], size[1], torch.float64)
    torch.testing.assert_close(matrix.sum(dim=1), torch.ones(size[1], dtype=torch.float64))
    assert ((matrix > 0).sum(dim=1) <= 2).all()


def test_seed_loss_is_balanced_cross_entropy_of_the_upsampled_logits():
    torch.manual_seed(1)
    grid = torch.randn(21, 4, 6, dtype=torch.float64, requires_grad=True)
    seeds = torch.randint(0, 21, (32, 48))
    seeds[torch.rand(32, 48) < 0.4] = 255
    seeds[torch.rand(32, 48) < 0.3] = 0
    bg = seeds.clone()
    bg[seeds != 0] = 255
    fg = seeds.clone()
    fg[seeds == 0] = 255
    loss = seed_loss(grid, seeds)
    loss.backward()
    grad = grid.grad.clone()
    grid.grad = None
    pred = upsample(grid, (32, 48))[None]
    ref = F.cross_entropy(pred, bg[None], ignore_index=255) + F.cross_entropy(pred, fg[None], ignore_index=255)
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad, grid.grad, rtol=0, atol=1e-12)


def test_seed_loss_empty_terms_are_zero():
    grid = torch.randn(21, 2, 2, dtype=torch.float64, requires_grad=True)
    only_bg = torch.full((16, 16), 255)
    only_bg[:2] = 0
    ref = F.cross_entropy(upsample(grid, (16, 16))[None], only_bg[None], ignore_index=255)
    torch.testing.assert_close(seed_loss(grid, only_bg), ref)
    nothing = seed_loss(grid, torch.full((16, 16), 255))
    assert nothing.item() == 0.0
    nothing.backward()
    assert torch.isfinite(grid.grad).all() and (grid.grad == 0).all()


def published_mp(pred, fts, boxes, seeds):
    """Full-resolution MP loss with consistency checking, as published (fts upsampled everywhere)."""
    seeds = seeds.clone()
    ce, ce_n, dis, dis_n = 0, 0, 0, 0
    for box in boxes:
        c = box.cls
        pred_box = pred[:, box.y0:box.y1 + 1, box.x0:box.x1 + 1]
        fts_box = fts[:, box.y0:box.y1 + 1, box.x0:box.x1 + 1]
        _, ind_row = torch.max(pred_box[c], dim=1)
        _, ind_col = torch.max(pred_box[c], dim=0)
        rows = torch.arange(pred_box.shape[1])
        cols = torch.arange(pred_box.shape[2])
        points = torch.cat([pred_box[:, rows, ind_row], pred_box[:, ind_col, cols]], dim=1)
        f = torch.cat([fts_box[:, rows, ind_row], fts_box[:, ind_col, cols]], dim=1).t()
        norm = torch.norm(f, 2, 1).view(-1, 1)
        cos = torch.div(f @ f.t(), norm @ norm.t() + 1e-7)
        dis = dis + torch.sum(1 - cos + 1e-5)
        dis_n += cos.numel()
        ce = ce + F.cross_entropy(points.t(), torch.full((points.shape[1],), c), reduction="sum")
        ce_n += points.shape[1]
        sim = F.cosine_similarity(fts_box.reshape(fts.shape[0], -1), f.mean(0)[:, None], dim=0)
        region = seeds[box.y0:box.y1 + 1, box.x0:box.x1 + 1]
        prune = (sim.view(region.shape) < 0) & (region == c)
        region[prune] = 255
    return ce / ce_n + dis / dis_n, seeds


def test_mp_loss_on_crops_equals_full_resolution():
    torch.manual_seed(3)
    h, w, size = 6, 8, (48, 64)
    grid = torch.randn(21, h, w, dtype=torch.float64, requires_grad=True)
    emb = torch.randn(16, h, w, dtype=torch.float64, requires_grad=True)
    seeds = torch.randint(0, 3, size)
    seeds[seeds == 2] = 7
    seeds[torch.rand(size) < 0.2] = 255
    boxes = [Box(7, 3, 5, 30, 40), Box(7, 20, 0, 63, 20), Box(3, 0, 30, 10, 47), Box(7, 40, 44, 40, 47)]

    loss, pruned = mp_loss(grid, emb, boxes, seeds)
    loss.backward()
    grads = grid.grad.clone(), emb.grad.clone()
    grid.grad, emb.grad = None, None

    ref, ref_pruned = published_mp(upsample(grid, size), upsample(emb, size), boxes, seeds)
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(grads[0], grid.grad, rtol=0, atol=1e-10)
    torch.testing.assert_close(grads[1], emb.grad, rtol=0, atol=1e-10)
    assert torch.equal(pruned, ref_pruned)
    assert ((pruned == 255) & (seeds == 7)).any()  # the check pruned something
    assert (seeds != 255).sum() > (pruned != 255).sum()  # and the input was not modified


def test_mp_loss_without_boxes_is_zero():
    loss, pruned = mp_loss(torch.randn(21, 2, 2), torch.randn(8, 2, 2), [], torch.zeros(16, 16).long())
    assert loss.item() == 0.0 and torch.equal(pruned, torch.zeros(16, 16).long())


def test_gated_crf_term_equals_potts_formula():
    torch.manual_seed(5)
    c, h, w, r = 3, 5, 7, 5
    probs = F.softmax(torch.randn(c, h, w, dtype=torch.float64), dim=0)
    image = torch.randn(3, h, w, dtype=torch.float64)
    total = 0.0
    for y in range(h):
        for x in range(w):
            for yy in range(max(0, y - r), min(h, y + r + 1)):
                for xx in range(max(0, x - r), min(w, x + r + 1)):
                    if (yy, xx) == (y, x):
                        continue
                    d2 = ((image[:, y, x] - image[:, yy, xx]) ** 2).sum() / 0.1 ** 2
                    d2 = d2 + ((y - yy) ** 2 + (x - xx) ** 2) / 6 ** 2
                    k = math.exp(-0.5 * d2)
                    total += k * (1 - (probs[:, y, x] * probs[:, yy, xx]).sum())
    ref = torch.tensor(float(total) / (h * w), dtype=torch.float64)
    torch.testing.assert_close(gated_crf_term(probs.flatten(1).t(), crf_kernel_graph(image)), ref)
    # the same value as the shared GatedCRFLoss module, and the same gradient
    logits = torch.randn(c, h, w, dtype=torch.float64, requires_grad=True)
    gated_crf_term(F.softmax(logits, dim=0).flatten(1).t(), crf_kernel_graph(image)).backward()
    grad = logits.grad.clone()
    logits.grad = None
    module = GatedCRFLoss()(F.softmax(logits, dim=0)[None], [{"weight": 1, "xy": 6, "rgb": 0.1}], 5,
                            {"rgb": image[None]}, h, w)["loss"]
    module.backward()
    torch.testing.assert_close(grad, logits.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("precomputed", [False, True])
def test_batched_losses_equal_the_losses_of_each_image(precomputed):
    """Three images of one grid size with 2, 0 and 3 boxes: the batched seed loss, MP loss (vectorised
    over boxes) and pruning equal the published full-resolution ones image by image, with gradients;
    also with the box points built once beforehand (``box_points``, what every epoch of a batch uses)."""
    torch.manual_seed(6)
    h, w, size = 5, 7, (40, 56)
    grid = torch.randn(3, 21, h, w, dtype=torch.float64, requires_grad=True)
    emb = torch.randn(3, 16, h, w, dtype=torch.float64, requires_grad=True)
    seeds = torch.randint(0, 3, (3, *size))
    seeds[seeds == 1] = 4
    seeds[seeds == 2] = 9
    seeds[torch.rand(3, *size) < 0.2] = 255
    boxes = [[Box(4, 3, 5, 30, 39), Box(9, 20, 0, 55, 20)], [],
             [Box(9, 0, 30, 10, 39), Box(4, 40, 30, 40, 39), Box(9, 5, 2, 50, 35)]]
    table = box_points(box_table(boxes), size, 3) if precomputed else box_table(boxes)
    weights = torch.randn(2, 3, dtype=torch.float64)
    mp, pruned = mp_loss(grid, emb, table, seeds)
    seed = seed_loss(grid, pruned)
    ((weights[0] * mp).sum() + (weights[1] * seed).sum()).backward()
    grads = grid.grad.clone(), emb.grad.clone()
    assert mp.shape == seed.shape == (3,) and mp[1] == 0
    grid.grad, emb.grad = None, None
    for k in range(3):
        if boxes[k]:
            ref_mp, ref_pruned = published_mp(upsample(grid[k], size), upsample(emb[k], size), boxes[k], seeds[k])
        else:
            ref_mp, ref_pruned = grid.new_zeros(()), seeds[k]
        ref_seed = seed_loss(grid[k], ref_pruned)
        (weights[0, k] * ref_mp + weights[1, k] * ref_seed).backward()
        torch.testing.assert_close(mp[k], ref_mp, rtol=0, atol=1e-10)
        torch.testing.assert_close(seed[k], ref_seed, rtol=0, atol=1e-10)
        assert torch.equal(pruned[k], ref_pruned)
    torch.testing.assert_close(grads[0], grid.grad, rtol=0, atol=1e-10)
    torch.testing.assert_close(grads[1], emb.grad, rtol=0, atol=1e-10)
    assert (pruned[2] == 255).sum() > (seeds[2] == 255).sum()  # the check pruned something


def test_gated_crf_term_of_a_graph_batch_is_per_image():
    torch.manual_seed(7)
    images = [torch.randn(3, 5, 7, dtype=torch.float64), torch.randn(3, 4, 9, dtype=torch.float64)]
    kernels = [crf_kernel_graph(image) for image in images]
    probs = [F.softmax(torch.randn(20, 35 if k == 0 else 36, dtype=torch.float64), dim=0).t() for k in range(2)]
    batched = gated_crf_term(torch.cat(probs), GraphBatch(kernels))
    ref = torch.stack([gated_crf_term(p, kern) for p, kern in zip(probs, kernels, strict=True)])
    torch.testing.assert_close(batched, ref, rtol=0, atol=1e-12)
