"""Mask AP of instance predictions or instance labels against ground truth (docs/instances.md).

``--pred_json`` is either COCO results (a list of ``image_id, category_id, segmentation, score``, as
``infer_inst.py`` writes) or a COCO instances file (``make_instance_labels.py``: pseudo labels, scored as
predictions of score 1, plus the mean IoU of each box's mask with the ground-truth instance of the same box).

    python eval_inst.py --gt_json out/val_gt.json --pred_json out/maskrcnn_box_val.json
    python eval_inst.py --gt_json out/train_gt.json --pred_json out/instances_box.json

Prints AP, AP50, AP75 (COCO, IoU 0.5:0.95) and mAP^r at IoU 0.25 / 0.5 / 0.7 / 0.75, in %.
"""

from __future__ import annotations

import argparse
import json
import sys

from tool import cli
from tool.coco_eval import AP_KEYS, as_results, mask_ap, matched_iou
from tool.label_io import atomic_path
from voc12.instances import read_coco


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__)
    parser.add_argument("--gt_json", required=True, type=str,
                        help="ground-truth COCO instances file (make_instance_labels.py --label_dir gt)")
    parser.add_argument("--pred_json", required=True, type=str,
                        help="COCO results list (infer_inst.py) or COCO instances file (make_instance_labels.py)")
    parser.add_argument("--out", default=None, type=str, help="JSON file for the scores (fractions, not %%)")
    return parser


def evaluate(gt: dict, pred: dict | list) -> dict[str, float]:
    """The :data:`tool.coco_eval.AP_KEYS` of ``pred`` on the images of ``gt``; for an instances file also
    ``mean_iou`` / ``matched`` of :func:`tool.coco_eval.matched_iou`."""
    if isinstance(pred, dict):
        if "annotations" not in pred:
            raise ValueError("--pred_json: neither a COCO results list nor an instances file with 'annotations'")
        known = {im["id"] for im in gt["images"]}
        pred = {**pred, "annotations": [a for a in pred["annotations"] if a["image_id"] in known]}
        scores = mask_ap(gt, as_results(pred), [im["id"] for im in gt["images"]])
        scores.update(matched_iou(gt, pred))
        return scores
    return mask_ap(gt, pred, [im["id"] for im in gt["images"]])


def main(args: argparse.Namespace) -> dict[str, float]:
    try:
        gt, pred = read_coco(args.gt_json), read_coco(args.pred_json)
        if not isinstance(gt, dict) or "images" not in gt:
            raise ValueError(f"--gt_json {args.gt_json}: not a COCO instances file (no 'images')")
        scores = evaluate(gt, pred)
    except (OSError, ValueError, KeyError) as err:
        raise cli.UserError(f"{err}") from None
    print(", ".join(f"{k} {100 * scores[k]:.1f}" for k in AP_KEYS)
          + (f"; per-box mean IoU {100 * scores['mean_iou']:.1f} over {scores['instances']} ground-truth instances"
             if "mean_iou" in scores else ""))
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(scores, indent=2))
    return scores


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
