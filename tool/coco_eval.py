"""Mask AP with ``pycocotools`` COCOeval (stage 4 instances, **OURS**), and the pseudo labels' own quality.

:func:`mask_ap` scores predictions (COCO results: ``image_id``, ``category_id``, ``segmentation`` RLE,
``score``) against a COCO instances file and returns, in [0, 1] (-1 where no ground truth exists):

- ``AP``, ``AP50``, ``AP75``: COCO's mask AP over IoU 0.50:0.05:0.95, at 0.5, at 0.75 (101-point
  interpolated precision, all areas, 100 detections per image);
- ``mAP_r@0.25`` / ``@0.5`` / ``@0.7`` / ``@0.75``: the box-supervised instance segmentation papers'
  mAP^r at those IoUs (SDI, BBTP, BoxInst on VOC), computed the same way at that one threshold.

:func:`matched_iou` is the mean IoU of each predicted instance with the ground-truth instance of the same
index (``"instance"``, the box order), the pseudo labels' per-box quality, and the share of instances it gets
nearly exact (IoU >= 0.9, >= 0.95): a label set can be right more often and exact less often than another.

:func:`found_instances` splits a network's errors into finding and outlining: for each ground-truth instance
the top-scoring detection of its class whose box overlaps its box by IoU >= 0.5, and the mean box and mask IoU
of those pairs (a mask is rarely better than the box it is drawn in).
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tool.instances import decode_mask

COCO_IOUS = np.linspace(0.5, 0.95, 10)
MAP_R_IOUS = (0.25, 0.5, 0.7, 0.75)
AP_KEYS = ("AP", "AP50", "AP75", *(f"mAP_r@{t}" for t in MAP_R_IOUS))


def load_coco(dataset: dict) -> COCO:
    """A ``COCO`` object from an instances dict (without pycocotools' prints)."""
    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def as_results(dataset: dict, score: float = 1.0) -> list[dict]:
    """The annotations of an instances file as predictions of score ``score`` (pseudo labels scored as
    detections)."""
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
             "bbox": a["bbox"], "score": score} for a in dataset["annotations"]]


def mask_ap(gt: dict, results: Sequence[dict], image_ids: Sequence[int] | None = None) -> dict[str, float]:
    """The :data:`AP_KEYS` of ``results`` against ``gt`` (both COCO dicts / lists) on ``image_ids`` (default:
    every image of ``gt``). No prediction at all gives 0 wherever ground truth exists."""
    thresholds = np.union1d(COCO_IOUS.round(2), MAP_R_IOUS)
    coco_gt = load_coco(gt)
    if not results:
        has_gt = bool(gt["annotations"])
        return {key: 0.0 if has_gt else -1.0 for key in AP_KEYS}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(list(results)))
        evaluator = COCOeval(coco_gt, coco_dt, iouType="segm")
        evaluator.params.iouThrs = thresholds
        if image_ids is not None:
            evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
    # precision: (T thresholds, R recall points, K classes, A areas, M max-dets); area "all", 100 dets
    precision = evaluator.eval["precision"][:, :, :, 0, -1]

    def ap(rows: np.ndarray) -> float:
        values = precision[rows]
        values = values[values > -1]
        return float(values.mean()) if values.size else -1.0

    def at(iou: float) -> np.ndarray:
        return np.flatnonzero(np.isclose(thresholds, iou))

    scores = {"AP": ap(np.flatnonzero(np.isin(thresholds.round(2), COCO_IOUS.round(2)))),
              "AP50": ap(at(0.5)), "AP75": ap(at(0.75))}
    scores.update({f"mAP_r@{t}": ap(at(t)) for t in MAP_R_IOUS})
    return scores


def mask_iou(a: dict, b: dict, hw: tuple[int, int]) -> float:
    """IoU of two COCO ``segmentation`` masks of an ``(H, W)`` image (0 when both are empty)."""
    a, b = decode_mask(a, hw), decode_mask(b, hw)
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


EXACT_IOUS = (0.9, 0.95)  # matched_iou's "iou>=0.9" / "iou>=0.95": shares of nearly exact instances


def matched_iou(gt: dict, pred: dict) -> dict[str, float]:
    """Mean IoU over the ground-truth instances of each ``pred`` instance with the same image and
    ``"instance"`` index (0 for a ground-truth instance without one), how many were matched, and for each
    ``t`` of :data:`EXACT_IOUS` the share ``"iou>=t"`` of ground-truth instances with IoU >= ``t``."""
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    by_key = {(a["image_id"], a.get("instance")): a for a in pred["annotations"]}
    ious = []
    for a in gt["annotations"]:
        p = by_key.get((a["image_id"], a.get("instance")))
        if p is None:
            ious.append(0.0)
            continue
        ious.append(mask_iou(a["segmentation"], p["segmentation"], sizes[a["image_id"]]))
    matched = sum(1 for a in gt["annotations"] if (a["image_id"], a.get("instance")) in by_key)
    exact = {f"iou>={t}": float(np.mean(np.array(ious) >= t)) if ious else -1.0 for t in EXACT_IOUS}
    return {"mean_iou": float(np.mean(ious)) if ious else -1.0, "instances": len(ious), "matched": matched, **exact}


def found_instances(gt: dict, results: Sequence[dict], box_iou: float = 0.5) -> dict[str, float]:
    """For each ground-truth instance of ``gt`` (COCO instances dict), the top-scoring result of its image and
    class whose ``bbox`` has IoU >= ``box_iou`` with the instance's ``bbox``. Returns ``found`` (the share of
    instances with one, in [0, 1]) and, over those pairs, the mean ``box_iou`` and ``mask_iou`` (-1 if none)."""
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    by_key: dict[tuple[int, int], list[dict]] = {}
    for r in results:
        by_key.setdefault((r["image_id"], r["category_id"]), []).append(r)
    boxes, masks = [], []
    for a in gt["annotations"]:
        candidates = by_key.get((a["image_id"], a["category_id"]), [])
        if not candidates:
            continue
        overlaps = mask_utils.iou([r["bbox"] for r in candidates], [a["bbox"]], [0])[:, 0]
        good = np.flatnonzero(overlaps >= box_iou)
        if good.size == 0:
            continue
        best = good[np.argmax([candidates[k]["score"] for k in good])]
        boxes.append(float(overlaps[best]))
        masks.append(mask_iou(a["segmentation"], candidates[best]["segmentation"], sizes[a["image_id"]]))
    total = len(gt["annotations"])
    return {"found": len(boxes) / total if total else -1.0, "box_iou": float(np.mean(boxes)) if boxes else -1.0,
            "mask_iou": float(np.mean(masks)) if masks else -1.0}
