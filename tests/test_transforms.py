import numpy as np
import pytest
import torch

from tool.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    color_jitter,
    normalize,
    pad_to_multiple,
    random_crop,
    random_hflip,
    random_resize_long,
    resize_image,
    to_chw_tensor,
)


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_normalize_matches_formula_per_channel():
    img = _image(5, 7)
    out = normalize(img)
    assert out.dtype == np.float32 and out.shape == (5, 7, 3)
    for c, (m, s) in enumerate(zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)):
        np.testing.assert_allclose(out[..., c], (img[..., c] / 255.0 - m) / s, rtol=1e-6, atol=1e-6)
    # a pixel of the mean colour maps to zero, the padding value of normalized crops
    np.testing.assert_allclose(normalize((IMAGENET_MEAN * 255).reshape(1, 1, 3)), 0, atol=1e-6)
    assert IMAGENET_STD.dtype == np.float32


def test_to_chw_tensor():
    img = _image(4, 6)
    t = to_chw_tensor(img)
    assert t.shape == (3, 4, 6) and t.dtype == torch.uint8
    assert t[2, 3, 5] == img[3, 5, 2]
    assert to_chw_tensor(img[..., 0]).shape == (4, 6)
    with pytest.raises(ValueError):
        to_chw_tensor(np.zeros(3))


def test_pad_to_multiple_numpy_and_torch():
    img = normalize(_image(13, 17))
    out = pad_to_multiple(img, 8, 0)
    assert out.shape == (16, 24, 3)
    np.testing.assert_array_equal(out[:13, :17], img)
    assert np.all(out[13:] == 0) and np.all(out[:, 17:] == 0)

    label = np.ones((13, 17), dtype=np.uint8)
    out = pad_to_multiple(label, 8, 255)
    assert out.shape == (16, 24) and out.dtype == np.uint8
    assert (out == 255).sum() == 16 * 24 - 13 * 17

    t = torch.arange(2 * 3 * 9 * 8, dtype=torch.float32).reshape(2, 3, 9, 8)
    out = pad_to_multiple(t, 8, -1.0)
    assert out.shape == (2, 3, 16, 8)
    assert torch.equal(out[..., :9, :], t) and torch.all(out[..., 9:, :] == -1)
    assert pad_to_multiple(label[:8, :16], 8, 255).shape == (8, 16)


def test_random_resize_long_long_side_in_range_and_aspect_kept():
    img = _image(30, 50)
    longs = set()
    for seed in range(40):
        out = random_resize_long(img, 40, 44, rng=np.random.default_rng(seed))
        h, w = out.shape[:2]
        assert 40 <= w <= 44 and out.dtype == np.uint8
        assert h == round(30 * w / 50)
        longs.add(w)
    assert longs == {40, 41, 42, 43, 44}
    tall = random_resize_long(img.transpose(1, 0, 2), 20, 20, rng=np.random.default_rng(0))
    assert tall.shape == (20, 12, 3)


def test_resize_image_same_size_is_identity():
    img = _image(9, 11)
    np.testing.assert_array_equal(resize_image(img, (9, 11)), img)
    assert resize_image(img, (5, 4)).shape == (5, 4, 3)


def test_random_hflip_flips_image_and_label_together():
    img = _image(4, 5)
    label = np.arange(20, dtype=np.uint8).reshape(4, 5)
    flipped = 0
    for seed in range(200):
        out_img, out_label = random_hflip(img, label, rng=np.random.default_rng(seed))
        is_flipped = not np.array_equal(out_label, label)
        if is_flipped:
            flipped += 1
            np.testing.assert_array_equal(out_label, label[:, ::-1])
            np.testing.assert_array_equal(out_img, img[:, ::-1])
        else:
            np.testing.assert_array_equal(out_img, img)
    assert 70 < flipped < 130


def test_color_jitter_zero_is_identity_and_brightness_matches_scaling():
    img = _image(6, 8)
    np.testing.assert_array_equal(color_jitter(img, 0, 0, 0, 0, rng=np.random.default_rng(0)), img)
    out = color_jitter(img, 0.3, 0, 0, 0, rng=np.random.default_rng(3))
    factor = np.random.default_rng(3).uniform(0.7, 1.3)  # the first draw is the brightness factor
    reference = np.clip(img.astype(np.float64) * factor, 0, 255)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.abs(out - reference).max() <= 1.0
    a = color_jitter(img, 0.3, 0.3, 0.3, 0.1, rng=np.random.default_rng(5))
    b = color_jitter(img, 0.3, 0.3, 0.3, 0.1, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_random_crop_of_larger_image_is_a_window():
    img = normalize(_image(12, 10))
    label = np.random.default_rng(1).integers(0, 21, (12, 10)).astype(np.uint8)
    offsets = set()
    for seed in range(60):
        out, out_label, valid = random_crop(img, 6, rng=np.random.default_rng(seed), label=label)
        assert out.shape == (6, 6, 3) and out_label.shape == (6, 6) and valid.dtype == np.float32
        assert np.all(valid == 1)
        match = [(y, x) for y in range(7) for x in range(5)
                 if np.array_equal(img[y:y + 6, x:x + 6], out) and np.array_equal(label[y:y + 6, x:x + 6],
                                                                                   out_label)]
        assert len(match) == 1
        offsets.add(match[0])
    assert len(offsets) > 15


def test_random_crop_pads_image_0_label_255_valid_0():
    img = normalize(_image(4, 7))
    label = np.full((4, 7), 3, dtype=np.uint8)
    placements = set()
    for seed in range(40):
        out, out_label, valid = random_crop(img, 9, rng=np.random.default_rng(seed), label=label)
        inside = valid == 1
        assert inside.sum() == 4 * 7
        ys, xs = np.nonzero(inside)
        y0, x0 = ys.min(), xs.min()
        placements.add((y0, x0))
        np.testing.assert_array_equal(out[y0:y0 + 4, x0:x0 + 7], img)
        assert np.all(out[~inside] == 0)
        assert np.all(out_label[~inside] == 255) and np.all(out_label[inside] == 3)
    assert len(placements) > 5


def test_random_crop_mixed_axes_and_shape_mismatch():
    img = normalize(_image(20, 3))
    out, none_label, valid = random_crop(img, 8, rng=np.random.default_rng(0))
    assert none_label is None and out.shape == (8, 8, 3)
    assert valid.sum() == 8 * 3 and np.all(valid.sum(1) == 3)
    with pytest.raises(ValueError, match="label shape"):
        random_crop(img, 8, rng=np.random.default_rng(0), label=np.zeros((5, 5), np.uint8))
