"""tool.coco_eval: COCOeval mask AP and mAP^r, and the per-box IoU of pseudo labels."""

import numpy as np
import pytest

from tool.coco_eval import AP_KEYS, as_results, found_instances, mask_ap, matched_iou
from tool.instances import InstanceLabels, coco_annotations, coco_dataset, coco_image, encode_mask


def two_squares(shift: int = 0) -> np.ndarray:
    """Two 10x10 instances of class 1 in a 40x40 image; the second moved ``shift`` columns right."""
    inst = np.zeros((40, 40), np.uint8)
    inst[2:12, 2:12] = 1
    inst[20:30, 20 + shift:30 + shift] = 2
    return inst


def ground_truth() -> dict:
    labels = InstanceLabels(two_squares(), [1, 1])
    return coco_dataset([coco_image("2026_000001", (40, 40))], coco_annotations(labels, 2026000001, 1), "gt")


def test_ground_truth_against_itself_scores_one():
    gt = ground_truth()
    scores = mask_ap(gt, as_results(gt))
    assert scores.keys() == set(AP_KEYS)
    assert all(v == pytest.approx(1.0) for v in scores.values())
    assert matched_iou(gt, gt) == {"mean_iou": 1.0, "instances": 2, "matched": 2, "iou>=0.9": 1.0, "iou>=0.95": 1.0}


def test_a_shifted_mask_scores_the_hand_computed_ap():
    gt = ground_truth()
    shifted = two_squares(shift=2)  # the second mask: overlap 10x8 = 80, union 120, IoU 2/3
    results = [{"image_id": 2026000001, "category_id": 1, "segmentation": encode_mask(shifted == k), "score": s}
               for k, s in ((1, 0.9), (2, 0.8))]
    scores = mask_ap(gt, results)
    # IoU 2/3 matches at thresholds up to 0.65; above, the best detection alone is right: precision 1 up to
    # recall 0.5, then nothing: 51 of the 101 recall points
    half = 51 / 101
    assert scores["mAP_r@0.25"] == pytest.approx(1.0) and scores["mAP_r@0.5"] == pytest.approx(1.0)
    assert scores["mAP_r@0.7"] == pytest.approx(half) and scores["mAP_r@0.75"] == pytest.approx(half)
    assert scores["AP50"] == pytest.approx(1.0) and scores["AP75"] == pytest.approx(half)
    assert scores["AP"] == pytest.approx((4 * 1.0 + 6 * half) / 10)
    # the pseudo-label view: the same masks with the ground truth's indices
    pred = coco_dataset(gt["images"], coco_annotations(InstanceLabels(shifted, [1, 1]), 2026000001, 1), "pred")
    scores = matched_iou(gt, pred)
    assert scores["mean_iou"] == pytest.approx((1 + 80 / 120) / 2)
    assert scores["iou>=0.9"] == scores["iou>=0.95"] == 0.5  # the unshifted square alone


def test_no_prediction_scores_zero():
    assert set(mask_ap(ground_truth(), []).values()) == {0.0}


def test_found_instances_takes_the_top_scoring_overlapping_detection_of_the_class():
    gt = ground_truth()  # squares [2, 12) and [20, 30) of class 1

    def det(rows, cols, score, category=1):
        mask = np.zeros((40, 40), bool)
        mask[rows[0]:rows[1], cols[0]:cols[1]] = True
        box = [cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0]]
        return {"image_id": 2026000001, "category_id": category, "segmentation": encode_mask(mask), "bbox": box,
                "score": score}

    results = [
        det((2, 12), (2, 12), 0.5),  # the first square exactly
        det((20, 30), (22, 32), 0.9),  # the second moved 2 columns: box and mask IoU 80 / 120
        det((20, 30), (20, 30), 0.3),  # the second exactly, but a lower score: not taken
        det((20, 30), (20, 30), 0.99, category=2),  # another class: ignored
        det((0, 40), (0, 40), 0.95),  # overlaps both by box IoU 100 / 1600: below 0.5
    ]
    scores = found_instances(gt, results)
    assert scores["found"] == 1.0
    assert scores["box_iou"] == pytest.approx((1 + 80 / 120) / 2)
    assert scores["mask_iou"] == pytest.approx((1 + 80 / 120) / 2)
    missed = found_instances(gt, results[1:2])
    assert missed == pytest.approx({"found": 0.5, "box_iou": 80 / 120, "mask_iou": 80 / 120})
    assert found_instances(gt, [])["found"] == 0.0
