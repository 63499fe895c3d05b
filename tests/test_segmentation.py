"""Stage-4 loss (255 ignored; PSPNet's auxiliary term), the per-architecture recipes, and multi-scale + flip
inference against a loop over scales."""

import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tool import segmentation as seg
from tool.segmentation import fill_recipe, predict_probs, seg_training_loss, segmentation_loss


def test_loss_is_the_mean_cross_entropy_of_the_labelled_pixels():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 4, 5, 6, generator=g, requires_grad=True)
    label = torch.randint(0, 4, (2, 5, 6), generator=g)
    label[torch.rand(2, 5, 6, generator=g) < 0.3] = 255
    loss = segmentation_loss(scores, label)
    log_p = scores.log_softmax(1)
    terms = [-log_p[n, label[n, y, x], y, x] for n in range(2) for y in range(5) for x in range(6)
             if label[n, y, x] != 255]
    assert loss.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-6)
    loss.backward()
    ignored = (label == 255).unsqueeze(1).expand_as(scores)
    assert torch.all(scores.grad[ignored] == 0) and torch.any(scores.grad[~ignored] != 0)
    assert segmentation_loss(scores.detach(), torch.full_like(label, 255)).item() == 0.0


def labelled_mean_nll(scores, label):
    """Reference: mean of -log softmax at the label over the pixels whose label is not 255, by a mask."""
    keep = label != 255
    picked = scores.log_softmax(1).gather(1, label.clamp(max=scores.shape[1] - 1).unsqueeze(1)).squeeze(1)
    return -picked[keep].sum() / keep.sum()


def test_pspnet_objective_adds_the_auxiliary_loss_at_weight_0_4():
    g = torch.Generator().manual_seed(1)
    main = torch.randn(3, 5, 7, 6, generator=g, requires_grad=True)
    aux = torch.randn(3, 5, 7, 6, generator=g, requires_grad=True)
    label = torch.randint(0, 5, (3, 7, 6), generator=g)
    label[torch.rand(3, 7, 6, generator=g) < 0.25] = 255
    loss, terms = seg_training_loss((main, aux), label)
    expected_main, expected_aux = labelled_mean_nll(main, label), labelled_mean_nll(aux, label)
    torch.testing.assert_close(loss, expected_main + 0.4 * expected_aux)
    torch.testing.assert_close(terms["main_loss"], expected_main)
    torch.testing.assert_close(terms["aux_loss"], expected_aux)
    assert terms["loss"] is loss
    loss.backward()
    main_grad, aux_grad = main.grad.clone(), aux.grad.clone()
    main.grad = aux.grad = None
    labelled_mean_nll(main, label).backward()
    labelled_mean_nll(aux, label).backward()
    torch.testing.assert_close(main_grad, main.grad)
    torch.testing.assert_close(aux_grad, 0.4 * aux.grad)  # the auxiliary head learns at 0.4 of the rate
    single, single_terms = seg_training_loss(main.detach(), label)  # every other network: plain cross entropy
    torch.testing.assert_close(single, expected_main.detach())
    assert list(single_terms) == ["loss"]


def test_recipe_defaults_follow_the_architecture_and_keep_explicit_flags():
    psp = fill_recipe(argparse.Namespace(arch="pspnet_resnet101", max_iters=None, batch_size=None, crop_size=None,
                                         lr=None, wt_dec=None))
    assert (psp.max_iters, psp.batch_size, psp.crop_size, psp.lr, psp.wt_dec) == (33050, 16, 473, 0.01, 1e-4)
    assert seg.PSPNET_RECIPE.max_iters == 50 * (10582 // 16)  # semseg: 50 epochs of train_aug, last batch dropped
    deeplab = fill_recipe(argparse.Namespace(arch="deeplabv2_resnet101", max_iters=None, batch_size=None,
                                             crop_size=None, lr=1e-4, wt_dec=None))
    assert (deeplab.max_iters, deeplab.batch_size, deeplab.crop_size, deeplab.wt_dec) == (
        seg.DEEPLAB_RECIPE.max_iters, 10, 321, 5e-4)
    assert deeplab.lr == 1e-4  # given on the command line: kept


class Asymmetric(torch.nn.Module):
    """A small conv net whose output changes under a flip (no BatchNorm: batch items stay independent)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 5, 3, stride=2, padding=1)

    def forward(self, x):
        return F.interpolate(self.conv2(torch.relu(self.conv1(x))), x.shape[2:], mode="bilinear")


def test_multiscale_flip_prediction_equals_a_loop_over_scales_and_mirrors():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    net = Asymmetric().eval()
    scales = (0.5, 1.0, 1.75)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = torch.from_numpy(((image / 255.0 - mean) / std).astype(np.float32)).permute(2, 0, 1)[None]
    expected = torch.zeros(5, 23, 31)
    with torch.no_grad():
        for s in scales:
            xs = x if s == 1 else F.interpolate(x, (round(23 * s), round(31 * s)), mode="bilinear")
            for mirror in (False, True):
                inp = xs.flip(-1) if mirror else xs
                p = F.interpolate(net(inp).softmax(1), (23, 31), mode="bilinear")[0]
                expected += (p.flip(-1) if mirror else p) / (2 * len(scales))
    got = predict_probs(net, image, scales, flip=True)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.sum(0), torch.ones(23, 31), rtol=0, atol=1e-5)
    single = predict_probs(net, image, (1.0,), flip=False)
    assert not torch.allclose(single, got, atol=1e-3)  # the scales and the mirror do contribute
