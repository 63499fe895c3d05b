import numpy as np
import pytest

from tool.crf import A2GNN_CRF, CAM_CRF, CRFParams, box_constrained_crf, dense_crf
from vocabulary import Box


def test_params_match_spec():
    assert CAM_CRF == CRFParams(10, 3, 3, 80, 13, 10)
    assert A2GNN_CRF == CRFParams(10, 2, 3, 50, 5, 10)


def test_dense_crf_is_a_distribution_and_cleans_noise():
    rng = np.random.default_rng(0)
    h, w = 24, 32
    image = np.zeros((h, w, 3), np.uint8)
    image[:, w // 2:] = 200  # two flat halves
    truth = np.zeros((h, w), int)
    truth[:, w // 2:] = 1
    probs = np.where(truth[None] == np.arange(2)[:, None, None], 0.7, 0.3).astype(np.float32)
    flip = rng.random((h, w)) < 0.15  # noisy unary: 15% of pixels prefer the wrong class
    probs[:, flip] = probs[::-1, flip]
    out = dense_crf(image, probs, CAM_CRF)
    assert out.shape == (2, h, w) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-4)
    assert (probs.argmax(0) != truth).mean() > 0.1
    assert (out.argmax(0) == truth).all()


def test_zero_iterations_give_clipped_softmax_of_unary():
    probs = np.random.default_rng(1).random((3, 5, 6)).astype(np.float32)
    probs[0, 0, 0] = 0.0  # clipped to 1e-5
    out = dense_crf(np.zeros((5, 6, 3), np.uint8), probs, CRFParams(0, 3, 3, 80, 13, 10))
    clipped = np.clip(probs, 1e-5, 1)
    np.testing.assert_allclose(out, clipped / clipped.sum(0), rtol=1e-4, atol=1e-6)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="probs"):
        dense_crf(np.zeros((4, 4, 3), np.uint8), np.ones((2, 4, 5), np.float32))


def test_box_constrained_crf_keeps_each_pixel_to_its_boxes_classes():
    rng = np.random.default_rng(2)
    h, w, c = 20, 24, 4
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    probs = rng.random((c, h, w)).astype(np.float32)
    label, given = box_constrained_crf(image, probs, None)  # no boxes: the plain A2GNN CRF
    assert given is probs
    np.testing.assert_array_equal(label, dense_crf(image, probs, A2GNN_CRF).argmax(0))
    boxes = [Box(1, 2, 3, 12, 15), Box(3, 8, 0, 20, 10)]
    allowed = np.zeros((c, h, w), bool)  # reference: loop over boxes
    allowed[0] = True
    for b in boxes:
        allowed[b.cls, b.y0:b.y1 + 1, b.x0:b.x1 + 1] = True
    label, given = box_constrained_crf(image, probs, boxes)
    expected = np.where(allowed, probs, 0) / np.where(allowed, probs, 0).sum(0, keepdims=True)
    np.testing.assert_allclose(given, expected, rtol=1e-6)
    assert label.dtype == np.uint8 and np.take_along_axis(allowed, label[None].astype(int), 0).all()
    np.testing.assert_array_equal(label, np.where(allowed, dense_crf(image, expected, A2GNN_CRF), -1).argmax(0))
