import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tool.cam import (
    cam_label,
    confident_seeds,
    crf_with_alpha,
    expand_cams,
    load_cams,
    multiscale_cam,
    normalize_cam,
    save_cams,
)


def reference_normalize(s):
    """The published steps, one class and one pixel at a time."""
    s = s.copy()
    out = np.zeros_like(s)
    for c in range(s.shape[0]):
        for i in range(s.shape[1]):
            for j in range(s.shape[2]):
                s[c, i, j] = max(s[c, i, j], 0.0)
        cmax, cmin = s[c].max(), s[c].min()
        for i in range(s.shape[1]):
            for j in range(s.shape[2]):
                v = 0.0 if s[c, i, j] < cmin + 1e-5 else s[c, i, j]
                out[c, i, j] = (v - cmin - 1e-5) / (cmax - cmin + 1e-5)
    return out


def test_normalize_cam_matches_loops():
    rng = np.random.default_rng(0)
    s = rng.normal(0.5, 1.0, (3, 5, 7)).astype(np.float64)
    s[1] = np.abs(s[1]) + 0.3  # a class with a positive minimum
    np.testing.assert_allclose(normalize_cam(torch.from_numpy(s)).numpy(), reference_normalize(s), atol=1e-9)


class FakeNet(torch.nn.Module):
    """cam_rv = a fixed per-class linear map of the input's channels, at stride 1."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(21, 3, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        rv = torch.einsum("kc,nchw->nkhw", self.weight, x)
        return rv, rv


def test_multiscale_cam_unflips_and_sums():
    torch.manual_seed(0)
    h, w = 6, 9
    base = torch.rand(3, h, w)
    inputs = []
    for size in [(3, 5), (6, 9), (9, 14)]:
        x = F.interpolate(base[None], size, mode="bilinear", align_corners=False)[0]
        inputs += [x, x.flip(-1)]
    label = torch.zeros(20)
    label[[2, 7]] = 1
    net = FakeNet()
    got = multiscale_cam(net, inputs, label, (h, w))
    total = torch.zeros(20, h, w)
    for k, x in enumerate(inputs):
        with torch.no_grad():
            rv = net(x[None])[1]
        cam = F.interpolate(rv[:, 1:], (h, w), mode="bilinear", align_corners=False)[0]
        if k % 2:
            cam = cam.flip(-1)
        total += cam * label[:, None, None]
    want = reference_normalize(total.double().numpy())
    np.testing.assert_allclose(got[[2, 7]], want[[2, 7]], atol=1e-5)


def test_save_load_roundtrip(tmp_path):
    cams = np.random.default_rng(0).random((2, 4, 5)).astype(np.float32)
    save_cams(tmp_path / "a.npz", np.array([3, 15]), cams)
    classes, back = load_cams(tmp_path / "a.npz")
    assert classes.tolist() == [3, 15]
    np.testing.assert_array_equal(back, cams)
    np.save(tmp_path / "b.npy", {2: cams[0], 14: cams[1]})
    classes, back = load_cams(tmp_path / "b.npy", legacy_npy=True)
    assert classes.tolist() == [3, 15]
    np.testing.assert_array_equal(back, cams)


def test_cam_label_argmax_with_background_power():
    cams = np.array([[[0.9, 0.2]], [[0.1, 0.25]]], np.float32)  # classes 4, 9
    # pixel 0: bg (0.1)^2 = 0.01 < 0.9 -> 4; pixel 1: bg (0.75)^2 = 0.5625 > 0.25 -> 0
    assert cam_label(np.array([4, 9]), cams, bg_power=2).tolist() == [[4, 0]]


def test_cam_label_with_constant_background_score():
    cams = np.array([[[0.9, 0.2, 0.0]], [[0.1, 0.27, 0.3]]], np.float32)  # classes 4, 9
    # the published --out_cam_pred_alpha 0.26: background wins where every CAM is below 0.26
    assert cam_label(np.array([4, 9]), cams, bg_score=0.26).tolist() == [[4, 9, 9]]
    assert cam_label(np.array([4, 9]), cams, bg_score=0.5).tolist() == [[4, 0, 0]]
    with pytest.raises(ValueError, match="exactly one"):
        cam_label(np.array([4, 9]), cams)


def reference_seeds(classes, cams, crf_la, crf_ha, bg_thresh=0.8):
    """algorithm.md §1.1 steps 1-3 (the published rule) with per-pixel loops."""
    _, h, w = crf_la.shape
    cam_all = np.zeros((21, h, w), np.float32)
    for k, c in enumerate(classes):
        cam_all[c] = cams[k]
    cam_img = np.zeros((h, w), int)
    full = np.zeros((h, w), np.uint8)
    for i in range(h):
        for j in range(w):
            cam_all[0, i, j] = (1 - max(cams[:, i, j])) ** 24
            cam_img[i, j] = int(np.argmax(cam_all[:, i, j]))
            la, ha = int(np.argmax(crf_la[:, i, j])), int(np.argmax(crf_ha[:, i, j]))
            full[i, j] = 255 if la == 0 else la
            if ha == 0:
                full[i, j] = 0
    seed = full.copy()
    la_label = crf_la.argmax(0)
    sure = np.zeros((h, w), bool)
    for c in set(la_label.ravel().tolist()):
        if c == 0:
            for i in range(h):
                for j in range(w):
                    if cam_img[i, j] == 0 and cam_all[0, i, j] > bg_thresh:
                        sure[i, j] = True
            continue
        values = sorted(cam_all[c, i, j] for i in range(h) for j in range(w)
                        if cam_img[i, j] == c and cam_all[c, i, j] > 0.01)
        pos = int(len(values) * 0.6)
        if pos >= 1:
            for i in range(h):
                for j in range(w):
                    if cam_img[i, j] == c and cam_all[c, i, j] > values[pos]:
                        sure[i, j] = True
    for i in range(h):
        for j in range(w):
            conf = max([crf_ha[0, i, j], *crf_la[1:, i, j]])
            if not sure[i, j] or conf < 0.8:
                seed[i, j] = 255
    return seed, full


def test_confident_seeds_match_loops():
    rng = np.random.default_rng(3)
    h, w = 14, 17
    classes = np.array([5, 12])
    yy, xx = np.mgrid[:h, :w]
    cams = np.stack([np.exp(-((yy - 4) ** 2 + (xx - 5) ** 2) / 20),
                     np.exp(-((yy - 9) ** 2 + (xx - 12) ** 2) / 25)])
    cams = (cams + 0.002 * rng.random(cams.shape)).clip(0, 1).astype(np.float32)

    def fake_crf(alpha):
        full = np.zeros((21, h, w), np.float32)
        scores = np.concatenate([(1 - cams.max(0, keepdims=True)) ** alpha, cams])
        scores = np.exp(6 * scores)
        full[[0, *classes]] = scores / scores.sum(0)
        return full

    crf_la, crf_ha = fake_crf(4), fake_crf(24)
    seed, full = confident_seeds(classes, cams, crf_la, crf_ha)
    ref_seed, ref_full = reference_seeds(classes, cams, crf_la, crf_ha)
    np.testing.assert_array_equal(full, ref_full)
    np.testing.assert_array_equal(seed, ref_seed)
    assert {0, 5, 12} <= set(np.unique(seed).tolist()) and (seed == 255).any()
    # a looser sure-background score (infer_SEAM.py --sure_bg_score) seeds more background, same rule
    loose, _ = confident_seeds(classes, cams, crf_la, crf_ha, bg_thresh=0.3)
    np.testing.assert_array_equal(loose, reference_seeds(classes, cams, crf_la, crf_ha, bg_thresh=0.3)[0])
    assert (loose == 0).sum() > (seed == 0).sum()


def test_confident_seeds_background_quantile_matches_loops():
    """--sure_bg_quantile: the lowest-q max-CAM pixels below the cap become background unless seeded as object."""
    rng = np.random.default_rng(5)
    h, w = 12, 15
    classes = np.array([3, 7])
    cams = (0.2 + 0.8 * rng.random((2, h, w))).astype(np.float32)  # no pixel below 0.009: no published bg seed
    scores = np.exp(6 * np.concatenate([(1 - cams.max(0, keepdims=True)) ** 4, cams]))
    crf = np.zeros((21, h, w), np.float32)
    crf[[0, *classes]] = scores / scores.sum(0)
    seed, _ = confident_seeds(classes, cams, crf, crf)
    assert not (seed == 0).any()
    out, _ = confident_seeds(classes, cams, crf, crf, bg_quantile=0.2, bg_quantile_max_cam=0.5)
    max_cam = [[max(cams[:, i, j]) for j in range(w)] for i in range(h)]
    cut = float(np.quantile(np.array(max_cam), 0.2))
    ref = seed.copy()
    for i in range(h):
        for j in range(w):
            if max_cam[i][j] <= cut and max_cam[i][j] < 0.5 and seed[i, j] in (0, 255):
                ref[i, j] = 0
    np.testing.assert_array_equal(out, ref)
    assert (out == 0).any() and (out == 0).sum() <= 0.2 * h * w + 1


def test_crf_with_alpha_places_classes():
    rng = np.random.default_rng(0)
    cams = rng.random((2, 6, 8)).astype(np.float32)
    out = crf_with_alpha(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8), np.array([2, 20]), cams, alpha=4)
    assert out.shape == (21, 6, 8)
    np.testing.assert_allclose(out[[0, 2, 20]].sum(0), 1, atol=1e-4)
    assert np.abs(out[[1, *range(3, 20)]]).max() == 0
    assert expand_cams(np.array([2, 20]), cams)[19].tolist() == cams[1].tolist()
