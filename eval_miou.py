"""Score label maps against ground truth: per-class IoU, mIoU, pixel accuracy (algorithm.md §5).

    python eval_miou.py --pred_dir out/pseudo --gt_dir VOC2012/SegmentationClass --list train.txt
    python eval_miou.py --pred_dir out/seeds --gt_dir VOC2012/SegmentationClass --list train --seeds

One confusion matrix is accumulated over the whole list; ground truth 255 is ignored. Predictions of
255 count as background unless ``--ignore_pred_255`` counts them wrong. ``--seeds`` scores seed maps
(255 = no seed): precision of the labelled pixels and their coverage, overall and per class.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tool import cli
from tool.cli import VOC12_ROOT_HELP, add_id_list, make_parser
from tool.label_io import atomic_path, read_label_png
from tool.metrics import PRED_255_MODES, confusion_matrix, scores_from_confusion, seed_scores_from_confusion
from voc12.lists import read_list
from vocabulary import CLASS_NAMES, NUM_CLASSES


def missing_files(folder: Path, ids: Sequence[str], flag: str) -> None:
    """Raise ``FileNotFoundError`` naming the first few ``<id>.png`` missing from ``folder``."""
    missing = [i for i in ids if not (folder / f"{i}.png").is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise cli.MissingFileError(f"{flag} {folder}: {len(missing)} of {len(ids)} label maps missing "
                                   f"(<id>.png): {shown}")


def evaluate(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, ids: Sequence[str],
             num_classes: int = NUM_CLASSES, pred_255_as: str = "background", seeds: bool = False) -> dict:
    """Score ``pred_dir/<id>.png`` against ``gt_dir/<id>.png`` over ``ids``.

    Returns ``{'miou', 'iou' {class name: float | None}, 'pixel_acc', 'confusion' (C, C) or (C, C + 1)
    nested lists, 'num_images', 'pred_255_as'}``; with ``seeds=True`` (255 = no seed, forces
    ``pred_255_as='wrong'``) also ``'precision', 'coverage', 'class_precision', 'class_coverage'``
    (per-class dicts). ``None`` marks a class absent from both (left out of the mean).
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not ids:
        raise ValueError("the id list is empty")
    missing_files(gt_dir, ids, "--gt_dir")
    missing_files(pred_dir, ids, "--pred_dir")
    if seeds:
        pred_255_as = "wrong"
    cols = num_classes + (pred_255_as == "wrong")
    conf = np.zeros((num_classes, cols), dtype=np.int64)
    for image_id in ids:
        pred = read_label_png(pred_dir / f"{image_id}.png")
        gt = read_label_png(gt_dir / f"{image_id}.png")
        try:
            conf += confusion_matrix(pred, gt, num_classes, pred_255_as)
        except ValueError as err:
            raise ValueError(f"{pred_dir / f'{image_id}.png'}: {err}") from err
    names = CLASS_NAMES[:num_classes]
    scores = scores_from_confusion(conf)
    result = {"miou": scores["miou"], "iou": dict(zip(names, scores["iou"], strict=True)),
              "pixel_acc": scores["pixel_acc"], "num_images": len(ids), "pred_255_as": pred_255_as}
    if seeds:
        seed_scores = seed_scores_from_confusion(conf)
        result.update(precision=seed_scores["precision"], coverage=seed_scores["coverage"],
                      class_precision=dict(zip(names, seed_scores["class_precision"], strict=True)),
                      class_coverage=dict(zip(names, seed_scores["class_coverage"], strict=True)))
    result["confusion"] = conf.tolist()
    return result


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:6.2f}"


def format_table(result: dict) -> str:
    """A text table of ``evaluate``'s result: one row per class, then the summary lines."""
    seeds = "precision" in result
    header = f"{'class':<14}{'IoU':>8}" + (f"{'prec':>8}{'cover':>8}" if seeds else "")
    lines = [header, "-" * len(header)]
    for name, iou in result["iou"].items():
        row = f"{name:<14}{_pct(iou):>8}"
        if seeds:
            row += f"{_pct(result['class_precision'][name]):>8}{_pct(result['class_coverage'][name]):>8}"
        lines.append(row)
    lines.append("-" * len(header))
    lines.append(f"mIoU {_pct(result['miou'])}   pixel acc {_pct(result['pixel_acc'])}   "
                 f"({result['num_images']} images, prediction 255 as {result['pred_255_as']})")
    if seeds:
        lines.append(f"seed precision {_pct(result['precision'])}   coverage {_pct(result['coverage'])}")
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--pred_dir", required=True, help="folder of <id>.png label maps to score")
    parser.add_argument("--gt_dir", default=None,
                        help="folder of ground-truth <id>.png (default: <voc12_root>/SegmentationClass)")
    parser.add_argument("--voc12_root", default=None, type=str,
                        help=f"{VOC12_ROOT_HELP}; required unless --gt_dir is given")
    add_id_list(parser, "--list", what="images to score", required=True)
    parser.add_argument("--json", default=None, help="also write the scores to this JSON file")
    parser.add_argument("--pred_255", default="background", choices=PRED_255_MODES,
                        help="how a predicted 255 (unlabelled) pixel counts: as background, or as wrong")
    parser.add_argument("--ignore_pred_255", dest="pred_255", action="store_const", const="wrong",
                        help="old name of --pred_255 wrong (predictions of 255 count as wrong)")
    parser.add_argument("--seeds", action="store_true",
                        help="score seed maps (255 = no seed): precision and coverage, per class too")
    return parser


def main(args: argparse.Namespace) -> dict:
    if args.gt_dir is None and args.voc12_root is None:
        raise cli.UserError("give --gt_dir or --voc12_root")
    gt_dir = Path(args.gt_dir) if args.gt_dir else Path(args.voc12_root) / "SegmentationClass"
    root = Path(args.voc12_root) if args.voc12_root else gt_dir.parent
    ids = read_list(args.list, root)
    result = evaluate(args.pred_dir, gt_dir, ids,
                      pred_255_as=args.pred_255, seeds=args.seeds)
    print(format_table(result))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
