"""Mask AP of instance predictions or instance labels against ground truth (docs/instances.md).

``--pred_json`` is either COCO results (a list of ``image_id, category_id, segmentation, score``, as
``infer_inst.py`` writes) or a COCO instances file (``make_instance_labels.py``: pseudo labels, scored as
predictions of score 1, plus the mean IoU of each box's mask with the ground-truth instance of the same box).

    python eval_inst.py --gt_json out/val_gt.json --pred_json out/maskrcnn_box_val.json
    python eval_inst.py --gt_json out/train_gt.json --pred_json out/instances_box.json

Prints AP, AP50, AP75 (COCO, IoU 0.5:0.95) and mAP^r at IoU 0.25 / 0.5 / 0.7 / 0.75, in %; for a network also
how many ground-truth instances it found (its top detection of the class with box IoU >= 0.5) and their mean box
and mask IoU: finding against outlining.
"""

from __future__ import annotations

import argparse
import json
import sys

from tool import cli
from tool.coco_eval import AP_KEYS, EXACT_IOUS, as_results, found_instances, mask_ap, matched_iou
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


RESULT_KEYS = ("image_id", "category_id", "segmentation", "score")


def read_json(flag: str, path: str) -> dict | list:
    """The JSON of ``path``; a missing, unreadable or non-JSON file is the user's mistake, named with ``flag``."""
    try:
        return read_coco(path)
    except (OSError, ValueError) as err:  # read_coco: FileNotFoundError, a folder or no permission, not JSON
        raise cli.UserError(f"{flag} {path}: {err}") from None


def check_coco(gt: object, pred: object, args: argparse.Namespace) -> None:
    """``UserError`` unless ``gt`` is a COCO instances file and ``pred`` a COCO results list or instances file."""
    if not isinstance(gt, dict) or not {"images", "annotations", "categories"} <= gt.keys():
        raise cli.WrongFileError(f"--gt_json {args.gt_json}: not a COCO instances file (needs 'images', "
                                 "'annotations', 'categories'); write it with make_instance_labels.py")
    if isinstance(pred, dict):
        if "annotations" not in pred:
            raise cli.WrongFileError(f"--pred_json {args.pred_json}: neither a COCO results list nor an instances "
                                     "file with 'annotations'")
        return
    bad = next((r for r in pred if not isinstance(r, dict) or not set(RESULT_KEYS) <= r.keys()), None) \
        if isinstance(pred, list) else pred
    if bad is not None:
        raise cli.WrongFileError(f"--pred_json {args.pred_json}: not a COCO results list (each entry needs "
                                 f"{', '.join(RESULT_KEYS)}; found {str(bad)[:80]})")


def evaluate(gt: dict, pred: dict | list) -> dict[str, float]:
    """The :data:`tool.coco_eval.AP_KEYS` of ``pred`` on the images of ``gt``; for an instances file also
    ``mean_iou`` / ``matched`` of :func:`tool.coco_eval.matched_iou`, for results ``found`` / ``box_iou`` /
    ``mask_iou`` of :func:`tool.coco_eval.found_instances`."""
    known = {im["id"] for im in gt["images"]}
    if isinstance(pred, dict):
        pred = {**pred, "annotations": [a for a in pred["annotations"] if a["image_id"] in known]}
        scores = mask_ap(gt, as_results(pred), [im["id"] for im in gt["images"]])
        scores.update(matched_iou(gt, pred))
        return scores
    scores = mask_ap(gt, pred, sorted(known))
    scores.update(found_instances(gt, [r for r in pred if r["image_id"] in known]))
    return scores


def main(args: argparse.Namespace) -> dict[str, float]:
    gt, pred = read_json("--gt_json", args.gt_json), read_json("--pred_json", args.pred_json)
    check_coco(gt, pred, args)
    scores = evaluate(gt, pred)
    print(", ".join(f"{k} {100 * scores[k]:.1f}" for k in AP_KEYS)
          + (f"; per-box mean IoU {100 * scores['mean_iou']:.1f} over {scores['instances']} ground-truth instances, "
             + ", ".join(f"{100 * scores[f'iou>={t}']:.1f} % at IoU >= {t}" for t in EXACT_IOUS)
             if "mean_iou" in scores else "")
          + (f"; found {100 * scores['found']:.1f} % of the ground-truth instances (a detection of the class with box "
             f"IoU >= 0.5), their box IoU {100 * scores['box_iou']:.1f}, mask IoU {100 * scores['mask_iou']:.1f}"
             if "found" in scores else ""))
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(scores, indent=2))
    return scores


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
