import numpy as np
import pytest

from tool.metrics import confusion_matrix, scores_from_confusion, seed_scores_from_confusion

GT = np.array([[0, 0, 1, 1],
               [0, 2, 2, 255]])
PRED = np.array([[0, 1, 1, 255],
                 [2, 2, 0, 1]])


def test_confusion_by_hand_pred_255_as_background():
    # pixel pairs (gt, pred): (0,0) (0,1) (1,1) (1,255->0) (0,2) (2,2) (2,0); (255,1) ignored
    expected = np.array([[1, 1, 1],
                         [1, 1, 0],
                         [1, 0, 1]])
    assert np.array_equal(confusion_matrix(PRED, GT, num_classes=3), expected)


def test_confusion_by_hand_pred_255_as_wrong():
    expected = np.array([[1, 1, 1, 0],
                         [0, 1, 0, 1],
                         [1, 0, 1, 0]])
    assert np.array_equal(confusion_matrix(PRED, GT, num_classes=3, pred_255_as="wrong"), expected)


def test_scores_by_hand_both_ways():
    s = scores_from_confusion(confusion_matrix(PRED, GT, num_classes=3))
    # IoU_0 = 1 / (3 + 3 - 1), IoU_1 = 1 / (2 + 2 - 1), IoU_2 = 1 / (2 + 2 - 1)
    assert s["iou"] == pytest.approx([1 / 5, 1 / 3, 1 / 3])
    assert s["miou"] == pytest.approx((1 / 5 + 2 / 3) / 3)
    assert s["pixel_acc"] == pytest.approx(3 / 7)
    w = scores_from_confusion(confusion_matrix(PRED, GT, num_classes=3, pred_255_as="wrong"))
    # the 255 prediction on gt class 1 is a miss for class 1 and a prediction of no class:
    # IoU_0 = 1 / (3 + 2 - 1), IoU_1 = 1 / (2 + 2 - 1), IoU_2 = 1 / (2 + 2 - 1)
    assert w["iou"] == pytest.approx([1 / 4, 1 / 3, 1 / 3])
    assert w["pixel_acc"] == pytest.approx(3 / 7)


def test_absent_classes_are_not_counted():
    gt = np.array([[0, 0, 3, 3]])
    pred = np.array([[0, 3, 3, 3]])
    s = scores_from_confusion(confusion_matrix(pred, gt, num_classes=5))
    assert s["iou"][1] is None and s["iou"][2] is None and s["iou"][4] is None
    assert s["iou"][0] == pytest.approx(1 / 2) and s["iou"][3] == pytest.approx(2 / 3)
    assert s["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # a class only predicted (false positives) is counted, with IoU 0
    s = scores_from_confusion(confusion_matrix(np.array([[4, 0]]), np.array([[0, 0]]), num_classes=5))
    assert s["iou"][4] == 0.0 and s["miou"] == pytest.approx((1 / 2 + 0) / 2)


def test_confusion_matches_a_pixel_loop():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 21, (37, 41))
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = rng.integers(0, 21, (37, 41))
    pred[rng.random(pred.shape) < 0.1] = 255
    for mode, cols in (("background", 21), ("wrong", 22)):
        ref = np.zeros((21, cols), int)
        for g, p in zip(gt.ravel(), pred.ravel(), strict=True):
            if g == 255:
                continue
            ref[g, (0 if mode == "background" else 21) if p == 255 else p] += 1
        assert np.array_equal(confusion_matrix(pred, gt, pred_255_as=mode), ref)


def test_seed_precision_and_coverage_by_hand():
    gt = np.array([[0, 0, 1, 1, 1, 2]])
    seeds = np.array([[0, 255, 1, 2, 255, 255]])
    s = seed_scores_from_confusion(confusion_matrix(seeds, gt, num_classes=3, pred_255_as="wrong"))
    assert s["precision"] == pytest.approx(2 / 3)  # 3 seeds, 2 correct
    assert s["coverage"] == pytest.approx(3 / 6)
    assert s["class_precision"] == pytest.approx([1.0, 1.0, 0.0])
    assert s["class_coverage"] == pytest.approx([1 / 2, 2 / 3, 0.0])
    with pytest.raises(ValueError, match="pred_255_as='wrong'"):
        seed_scores_from_confusion(np.zeros((3, 3)))


def test_bad_values_and_shapes_are_refused():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([[21]]), np.array([[0]]))
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="pred_255_as"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 2)), pred_255_as="ignore")
