"""Affinity network: published keys, window affinities equal a pixel-by-pixel loop (algorithm.md §0.3)."""

import numpy as np
import torch
import torch.nn.functional as F
from test_resnet38d import spec_backbone_shapes, state_shapes

from network import resnet38_aff_gated


def loop_affinity(f: np.ndarray, radius: int) -> np.ndarray:
    """aff_crf by Python loops over images, pixels and offsets; neighbours outside the grid are zeros."""
    n, c, h, w = f.shape
    k = 2 * radius + 1
    out = np.zeros((n, k, k, h, w))
    for b in range(n):
        for y in range(h):
            for x in range(w):
                for dy in range(-radius, radius + 1):
                    for dx in range(-radius, radius + 1):
                        yy, xx = y + dy, x + dx
                        inside = 0 <= yy < h and 0 <= xx < w
                        neighbour = f[b, :, yy, xx] if inside else np.zeros(c)
                        out[b, dy + radius, dx + radius, y, x] = np.abs(f[b, :, y, x] - neighbour).mean()
    return out


def test_width1_keys_and_shapes():
    with torch.device("meta"):
        net = resnet38_aff_gated.Net()
    expected = spec_backbone_shapes()
    expected.update({"f8_3.weight": (64, 512, 1, 1), "f8_4.weight": (128, 1024, 1, 1),
                     "f8_5.weight": (256, 4096, 1, 1), "f9.weight": (448, 448, 1, 1)})
    assert state_shapes(net) == expected
    assert net.feature_channels == 5632


def test_window_affinity_equals_loop():
    torch.manual_seed(0)
    f = torch.randn(2, 5, 4, 6, dtype=torch.float64)
    aff, aff_crf = resnet38_aff_gated.window_affinity(f, radius=2)
    ref = loop_affinity(f.numpy(), 2)
    assert aff_crf.shape == (2, 5, 5, 4, 6)
    np.testing.assert_allclose(aff_crf.numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(aff.numpy(), np.exp(-ref), atol=1e-12)
    assert torch.all(aff_crf[:, 2, 2] == 0)  # centre
    # out-of-grid neighbour of the top-left pixel is zero padding: mean |f|
    assert torch.allclose(aff_crf[:, 0, 0, 0, 0], f[:, :, 0, 0].abs().mean(1))


def test_forward_matches_spec_formula():
    torch.manual_seed(0)
    net = resnet38_aff_gated.Net(width=1 / 8).eval()
    x = torch.randn(1, 3, 67, 93)
    with torch.no_grad():
        features, aff, aff_crf = net(x, radius=2)
        d = net.forward_as_dict(x)
        f = F.elu(net.f9(torch.cat([F.elu(net.f8_3(d["conv4"])), F.elu(net.f8_4(d["conv5"])),
                                    F.elu(net.f8_5(d["conv6"]))], 1)))
    assert features.shape == (1, 64 + 128 + 512, 9, 12)
    assert torch.equal(features, torch.cat([d["conv4"], d["conv5"], d["conv6"]], 1))
    assert aff.shape == aff_crf.shape == (1, 5, 5, 9, 12)
    ref = loop_affinity(f.double().numpy(), 2)
    np.testing.assert_allclose(aff_crf.double().numpy(), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(aff.double().numpy(), np.exp(-ref), rtol=1e-5, atol=1e-6)


def test_parameter_groups_and_gradients():
    torch.manual_seed(0)
    net = resnet38_aff_gated.Net(width=1 / 16).train()
    pre_w, pre_b, new_w, new_b = net.get_parameter_groups()
    assert {id(p) for p in new_w} == {id(m.weight) for m in (net.f8_3, net.f8_4, net.f8_5, net.f9)}
    assert pre_b == [] and new_b == []
    assert len(pre_w) + len(new_w) == sum(p.requires_grad for p in net.parameters())
    assert all(not p.requires_grad for m in (net.conv1a, net.b2, net.b2_1, net.b2_2) for p in m.parameters())
    _, aff, _ = net(torch.randn(1, 3, 40, 48), radius=1)
    aff.sum().backward()
    assert net.b3.conv_branch2a.weight.grad is not None  # the backbone is trained through the affinities
    assert net.conv1a.weight.grad is None


def test_from_scratch_trains_every_layer():
    torch.manual_seed(0)
    net = resnet38_aff_gated.Net(width=1 / 16, from_scratch=True).train()
    assert net.not_training == [] and all(p.requires_grad for p in net.parameters())
    pre_w, pre_b, new_w, new_b = net.get_parameter_groups()
    assert len(pre_w) + len(pre_b) + len(new_w) + len(new_b) == len(list(net.parameters()))
    _, aff, _ = net(torch.randn(2, 3, 40, 48), radius=1)
    aff.sum().backward()
    assert net.conv1a.weight.grad is not None and net.b2.bn_branch2a.weight.grad is not None
    assert all(m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_window_affinity_gradient_equals_unfolded_autograd():
    """The hand-written backward equals autograd through the plain unfolded formula (float64)."""
    torch.manual_seed(1)
    f = torch.randn(2, 7, 5, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 7, 7, 5, 6, dtype=torch.float64)
    (resnet38_aff_gated.window_affinity(f, radius=3)[1] * weight).sum().backward()
    ours = f.grad.clone()
    f.grad = None
    neighbours = F.unfold(f, kernel_size=7, padding=3).view(2, 7, 7, 7, 5, 6)
    ((neighbours - f[:, :, None, None]).abs().mean(dim=1) * weight).sum().backward()
    torch.testing.assert_close(ours, f.grad, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: resnet38_aff_gated.window_affinity(x, 1)[0],
                                    (torch.randn(1, 3, 3, 4, dtype=torch.float64, requires_grad=True),))
