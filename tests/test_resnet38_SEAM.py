"""SEAM network: published keys, output shapes, PCM equal to the algorithm.md §0.2 formula, parameter groups."""

import math

import torch
import torch.nn.functional as F
from test_resnet38d import spec_backbone_shapes, state_shapes

from network import resnet38_SEAM


def test_width1_keys_and_shapes():
    with torch.device("meta"):
        net = resnet38_SEAM.Net()
    expected = spec_backbone_shapes()
    expected.update({"fc8.weight": (21, 4096, 1, 1), "f8_3.weight": (64, 512, 1, 1),
                     "f8_4.weight": (128, 1024, 1, 1), "f9.weight": (192, 195, 1, 1)})
    assert state_shapes(net) == expected


def reference_cam_rv(net, x):
    """cam_rv written directly from algorithm.md §0.2 with explicit per-channel / per-pixel steps."""
    d = net.forward_as_dict(x)
    cam = net.fc8(d["conv6"])
    n, c, h, w = cam.shape
    norm = torch.zeros_like(cam)
    for b in range(n):
        for k in range(c):
            r = torch.clamp(cam[b, k], min=0)
            # published SEAM: relu(c - 1e-5) / (max(c) + 1e-5), the 1e-5 subtracted before dividing
            norm[b, k] = torch.clamp(r - 1e-5, min=0) / (r.max() + 1e-5)
        fg = norm[b, 1:].clone()
        winner = fg.max(dim=0).values
        norm[b, 0] = 1 - winner
        norm[b, 1:] = fg * (fg >= winner).float()
    image = F.interpolate(x, (h, w), mode="bilinear", align_corners=True)
    feats = torch.cat([image, torch.relu(net.f8_3(d["conv4"])), torch.relu(net.f8_4(d["conv5"]))], 1)
    f = net.f9(feats).reshape(n, -1, h * w)
    out = torch.zeros(n, c, h * w)
    for b in range(n):
        fb = f[b] / (torch.sqrt((f[b] ** 2).sum(0, keepdim=True)) + 1e-5)
        a = torch.clamp(torch.einsum("ci,cj->ij", fb, fb), min=0)
        a = a / (a.sum(0, keepdim=True) + 1e-5)
        for j in range(h * w):
            out[b, :, j] = (norm[b].reshape(c, -1) * a[:, j]).sum(1)
    size = x.shape[2:]
    return (F.interpolate(cam, size, mode="bilinear", align_corners=True),
            F.interpolate(out.view(n, c, h, w), size, mode="bilinear", align_corners=True))


def test_forward_matches_spec_reference():
    torch.manual_seed(0)
    net = resnet38_SEAM.Net(width=1 / 8).eval()
    x = torch.randn(2, 3, 67, 93)
    with torch.no_grad():
        cam, cam_rv = net(x)
        ref_cam, ref_rv = reference_cam_rv(net, x)
    assert cam.shape == cam_rv.shape == (2, 21, 67, 93)
    assert torch.allclose(cam, ref_cam, atol=1e-5)
    assert torch.allclose(cam_rv, ref_rv, atol=1e-5)
    assert cam_rv.abs().max() > 1e-3  # not trivially zero


def test_cam_rv_gradient_reaches_only_the_pcm_head():
    torch.manual_seed(0)
    net = resnet38_SEAM.Net(width=1 / 16).train()
    _, cam_rv = net(torch.randn(1, 3, 40, 48))
    cam_rv.sum().backward()
    assert net.f9.weight.grad is not None and net.f8_3.weight.grad is not None
    assert net.fc8.weight.grad is None  # the CAM enters the PCM without gradient
    assert net.b3.conv_branch2a.weight.grad is None  # conv4/conv5 are detached


def test_parameter_groups_and_frozen_layers():
    net = resnet38_SEAM.Net(width=1 / 16)
    pre_w, pre_b, new_w, new_b = net.get_parameter_groups()
    assert {id(p) for p in new_w} == {id(m.weight) for m in (net.fc8, net.f8_3, net.f8_4, net.f9)}
    assert pre_b == [] and new_b == []
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert len(pre_w) + len(new_w) == len(trainable)
    frozen = [net.conv1a, net.b2, net.b2_1, net.b2_2] + [m for m in net.modules()
                                                          if isinstance(m, torch.nn.BatchNorm2d)]
    frozen_ids = {id(p) for m in frozen for p in m.parameters()}
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert not frozen_ids & {id(p) for p in pre_w}
    assert net.b3.conv_branch2a.weight.requires_grad


def test_head_initialization():
    torch.manual_seed(0)
    net = resnet38_SEAM.Net(width=1 / 8)
    fc8_bound = math.sqrt(6 / (512 + 21))
    f9_bound = 4 * math.sqrt(6 / (195 + 192))
    assert net.fc8.weight.abs().max() <= fc8_bound and net.fc8.weight.abs().max() > 0.9 * fc8_bound
    assert net.f9.weight.abs().max() <= f9_bound and net.f9.weight.abs().max() > 0.9 * f9_bound
    assert abs(net.f8_4.weight.std().item() - math.sqrt(2 / 128)) < 0.1 * math.sqrt(2 / 128)


def test_from_scratch_trains_every_layer():
    net = resnet38_SEAM.Net(width=1 / 16, from_scratch=True).train()
    pre_w, pre_b, new_w, new_b = net.get_parameter_groups()
    # nothing is pretrained, so no layer is "new": the head trains at the backbone's rate (no ×10)
    assert new_w == [] and new_b == []
    assert {id(m.weight) for m in (net.fc8, net.f8_3, net.f8_4, net.f9)} <= {id(p) for p in pre_w}
    published = resnet38_SEAM.Net(width=1 / 16).get_parameter_groups()[2]
    assert {id(p) for p in published} != set() and len(published) == 4  # with pretrained weights: ×10 head
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert {id(p) for p in pre_b} == {id(m.bias) for m in bns}  # BatchNorm shifts: the ×2 bias group
    assert {id(net.conv1a.weight), id(net.b2.conv_branch2a.weight)} <= {id(p) for p in pre_w}
    assert len(pre_w) + len(pre_b) + len(new_w) == len(list(net.parameters()))
    assert net.not_training == [] and all(m.training for m in bns)


def test_normalised_cam_subtracts_1e5_before_dividing():
    """At small CAM values (a fresh network) the published ``− 1e-5`` changes the result visibly."""
    cam = torch.tensor([0.0, 5e-6, 1e-5, 2e-5, 1e-2]).view(1, 1, 1, 5).repeat(1, 21, 1, 1)
    got = resnet38_SEAM.winner_take_all_cam(cam)
    c = cam[0, 1, 0]
    expected = torch.tensor([max(float(v) - 1e-5, 0.0) / (1e-2 + 1e-5) for v in c])
    torch.testing.assert_close(got[0, 1, 0], expected, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(got[0, 0, 0], 1 - expected, rtol=1e-6, atol=1e-7)
    assert got[0, 1, 0, 1] == 0 and got[0, 1, 0, 3] > 0  # below 1e-5 → exactly 0
