import math

import torch
import torch.nn.functional as F

from tool.seam_losses import (
    TwoViews,
    classification_loss,
    max_norm,
    min_pooling_loss,
    seam_losses,
    seam_step_losses,
    winner_take_all,
)


def make_inputs(seed=0, n=2, h=10, w=12, h2=3, w2=3):
    g = torch.Generator().manual_seed(seed)
    cam1, rv1 = torch.randn(n, 21, h, w, generator=g), torch.randn(n, 21, h, w, generator=g)
    cam2, rv2 = torch.randn(n, 21, h2, w2, generator=g), torch.randn(n, 21, h2, w2, generator=g)
    labels = (torch.rand(n, 20, generator=g) < 0.3).float()
    labels[:, 0] = 1
    y = torch.cat([torch.ones(n, 1), labels], 1).view(n, 21, 1, 1)
    return cam1, rv1, cam2, rv2, y


def ref_max_norm(p):
    out = torch.zeros_like(p)
    for i in range(p.shape[0]):
        for c in range(p.shape[1]):
            r = p[i, c].clamp(min=0)
            out[i, c] = (r - r.min() - 1e-5).clamp(min=0) / (r.max() - r.min() + 1e-5)
    return out


def ref_cls(cam, y):
    n, total = cam.shape[0], 0.0
    for i in range(n):
        for c in range(1, 21):
            s, t = cam[i, c].mean().item(), y[i, c].item()
            total += -(t * math.log(1 / (1 + math.exp(-s))) + (1 - t) * math.log(1 / (1 + math.exp(s)))) / 20
    return total / n


def ref_rvmin(rv, y):
    n, _, h, w = rv.shape
    k = h * w // 4
    total = 0.0
    for i in range(n):
        maxima = sorted(max(rv[i, c, a, b].item() * y[i, c].item() for c in range(1, 21))
                        for a in range(h) for b in range(w))
        total += sum(max(v, 0.0) for v in maxima[:k])
    return total / (k * n)


def ref_wta(x):
    out = x.clone()
    for i in range(x.shape[0]):
        for a in range(x.shape[2]):
            for b in range(x.shape[3]):
                m = max(x[i, 1:, a, b].tolist())
                for c in range(1, 21):
                    if x[i, c, a, b] != m:
                        out[i, c, a, b] = 0
    return out


def test_pieces_match_loops():
    cam1, rv1, _, _, y = make_inputs()
    torch.testing.assert_close(max_norm(cam1), ref_max_norm(cam1))
    assert abs(classification_loss(cam1, y).item() - ref_cls(cam1, y)) < 1e-5
    assert abs(min_pooling_loss(rv1, y).item() - ref_rvmin(rv1, y)) < 1e-5
    torch.testing.assert_close(winner_take_all(cam1), ref_wta(cam1))


def test_seam_losses_match_formula():
    cam1, rv1, cam2, rv2, y = make_inputs(1)
    got = seam_losses(cam1, rv1, cam2, rv2, y)
    size = cam2.shape[-2:]
    c1 = F.interpolate(ref_max_norm(cam1), size, mode="bilinear", align_corners=True) * y
    r1 = F.interpolate(ref_max_norm(rv1), size, mode="bilinear", align_corners=True) * y
    c2, r2 = ref_max_norm(cam2) * y, ref_max_norm(rv2) * y
    n, _, h, w = c2.shape
    er = sum(abs(c1[i, c, a, b] - c2[i, c, a, b]) for i in range(n) for c in range(1, 21)
             for a in range(h) for b in range(w)) / (n * 20 * h * w)
    for c in (c1, c2):
        c[:, 0] = 1 - c[:, 1:].max(1).values
    k = int(21 * h * w * 0.2)

    def topmean(d):
        return sum(sum(sorted(d[i].flatten().tolist(), reverse=True)[:k]) / k for i in range(n)) / n

    ecr = topmean((ref_wta(c2) - r1).abs()) + topmean((ref_wta(c1) - r2).abs())
    cls = (ref_cls(cam1, y) + ref_cls(cam2, y)) / 2
    rvmin = (ref_rvmin(rv1, y) + ref_rvmin(rv2, y)) / 2
    for name, want in [("cls", cls), ("rvmin", rvmin), ("er", er), ("ecr", ecr),
                       ("loss", cls + rvmin + er + ecr)]:
        assert abs(got[name].item() - float(want)) < 1e-4, name


def test_step_uses_downscaled_second_view_and_has_gradients():
    calls = []

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 21, 1)

        def forward(self, x):
            calls.append(tuple(x.shape[-2:]))
            out = self.conv(x)
            return out, out * 0.5

    net = Net()
    images = torch.randn(2, 3, 40, 30)
    labels = torch.zeros(2, 20)
    labels[:, 3] = 1
    losses = seam_step_losses(TwoViews(net), images, labels)
    assert calls == [(40, 30), (12, 9)]
    losses["loss"].backward()
    assert net.conv.weight.grad.abs().sum() > 0
