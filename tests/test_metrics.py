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


def test_average_precision_equals_a_loop_over_ranks():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(40, 6))
    labels = (rng.random((40, 6)) < 0.3).astype(int)
    labels[:, 5] = 0  # a class without positives
    scores[:, 2] = np.round(scores[:, 2])  # ties, broken by image order
    from tool.metrics import average_precision

    ap = average_precision(scores, labels)
    for k in range(6):
        ranked = sorted(range(40), key=lambda i: (-scores[i, k], i))
        hits, precisions = 0, []
        for rank, i in enumerate(ranked, start=1):
            if labels[i, k]:
                hits += 1
                precisions.append(hits / rank)
        expected = sum(precisions) / len(precisions) if precisions else None
        assert (ap[k] is None) == (expected is None)
        if expected is not None:
            assert abs(ap[k] - expected) < 1e-12
    assert average_precision(labels.astype(float), labels)[:5] == [1.0] * 5


def test_grid_label_equals_a_loop_over_cells():
    from tool.metrics import grid_label

    rng = np.random.default_rng(4)
    gt = rng.integers(0, 4, size=(21, 30)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.1] = 255
    stride, classes = 8, 4
    hp, wp = 24, 32
    cells = np.zeros((classes, hp // stride, wp // stride))
    for cy in range(hp // stride):
        for cx in range(wp // stride):
            for y in range(cy * stride, (cy + 1) * stride):
                for x in range(cx * stride, (cx + 1) * stride):
                    if y < 21 and x < 30 and gt[y, x] != 255:
                        cells[gt[y, x], cy, cx] += 1.0 / stride ** 2
    expected = np.zeros((21, 30), np.uint8)
    for y in range(21):
        for x in range(30):
            # bilinear with half-pixel centres: source coordinate (y + 0.5) / stride - 0.5, clamped
            sy = min(max((y + 0.5) / stride - 0.5, 0), cells.shape[1] - 1)
            sx = min(max((x + 0.5) / stride - 0.5, 0), cells.shape[2] - 1)
            y0, x0 = int(sy), int(sx)
            y1, x1 = min(y0 + 1, cells.shape[1] - 1), min(x0 + 1, cells.shape[2] - 1)
            fy, fx = sy - y0, sx - x0
            v = ((1 - fy) * (1 - fx) * cells[:, y0, x0] + (1 - fy) * fx * cells[:, y0, x1]
                 + fy * (1 - fx) * cells[:, y1, x0] + fy * fx * cells[:, y1, x1])
            expected[y, x] = int(np.argmax(v))
    got = grid_label(gt, stride, num_classes=classes)
    assert (got == expected).mean() > 0.99  # float ties may differ at a few pixels
    big = np.zeros((64, 64), np.uint8)
    big[8:40, 16:48] = 3  # aligned with the grid: recovered but for its four corners, which round off
    wrong = np.argwhere(grid_label(big, 8, num_classes=4) != big)
    corners = np.array([(8, 16), (8, 47), (39, 16), (39, 47)])
    assert len(wrong) > 0 and all(np.abs(corners - p).max(axis=1).min() < 4 for p in wrong)
