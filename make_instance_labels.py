"""Instance labels from class label maps and the VOC boxes (stage 4 instances, docs/instances.md).

Every box of ``Annotations/<id>.xml`` becomes one instance: its pixels of its class in the label map; a
pixel claimed by several boxes of one class goes to the smallest box; unsure (255) pixels stay 255; a box
without a pixel of its class takes its rectangle's free pixels (tool/instances.py). The label map may be
pseudo labels (A2GNN box), a baseline (GrabCut per box, box fill) or anything else of 0..20 / 255;
``--label_dir gt`` converts the ground truth (``SegmentationObject`` + ``SegmentationClass``) instead; with
``--sbd_inst`` (SBD's ``benchmark_RELEASE/dataset/inst`` folder) an id without a ``SegmentationObject`` PNG
takes SBD's ``inst/<id>.mat``, so train_aug has ground-truth instances too (VOC's PNGs win where both exist).

    python make_instance_labels.py --voc12_root $VOC --infer_list train.txt --label_dir out/box_pred \\
        --out_json out/instances_box.json --out_dir out/box_inst
    python make_instance_labels.py --voc12_root $VOC --infer_list val.txt --label_dir gt --out_json out/val_gt.json
    python make_instance_labels.py --voc12_root $VOC --infer_list train_aug.txt --label_dir gt \\
        --sbd_inst $SBD/benchmark_RELEASE/dataset/inst --out_json out/train_aug_gt.json

Writes one COCO instances file (RLE masks; Detectron2 and MMDetection read it) and, with ``--out_dir``,
VOC-style ``SegmentationObject`` PNGs (index = box order, 0 background, 255 ignore).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from tool import cli
from tool.instances import coco_annotations, coco_dataset, coco_image
from tool.label_io import atomic_path, save_label_png
from voc12.instances import ground_truth_instances, pseudo_instances
from voc12.lists import read_list

GROUND_TRUTH = "gt"


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(__doc__)
    cli.add_voc12_root(parser)
    cli.add_id_list(parser, "--infer_list", what="images to write instance labels for")
    parser.add_argument("--label_dir", required=True, type=str,
                        help="folder of <id>.png class maps (0..20, 255 unsure) split by the XML boxes, or 'gt' "
                             "for the ground-truth instances")
    parser.add_argument("--sbd_inst", default=None, type=str,
                        help="with --label_dir gt: SBD's dataset/inst folder of <id>.mat (struct GTinst), read for "
                             "ids without a VOC SegmentationObject PNG (default: VOC's PNGs only)")
    parser.add_argument("--out_json", required=True, type=str, help="the COCO instances file to write")
    parser.add_argument("--out_dir", default=None, type=str,
                        help="folder for <id>.png SegmentationObject maps (default: none written)")
    return parser


def main(args: argparse.Namespace) -> int:
    """Write the labels; exit status 1 when an image failed (each is named)."""
    ids = read_list(args.infer_list, args.voc12_root)
    gt = args.label_dir == GROUND_TRUTH
    if not gt and not Path(args.label_dir).is_dir():
        raise cli.UserError(f"--label_dir {args.label_dir}: no such folder (a folder of <id>.png label maps, or "
                            f"'{GROUND_TRUTH}')")
    if args.sbd_inst is not None and not gt:
        raise cli.UserError(f"--sbd_inst is read only with --label_dir {GROUND_TRUTH}; drop it or pass --label_dir "
                            f"{GROUND_TRUTH}")
    if args.sbd_inst is not None and not Path(args.sbd_inst).is_dir():
        raise cli.UserError(f"--sbd_inst {args.sbd_inst}: no such folder (SBD's benchmark_RELEASE/dataset/inst, "
                            "unpacked)")
    images, annotations, failed = [], [], []
    filled = empty = 0
    start = time.time()
    for image_id in tqdm(ids, desc="instance labels", dynamic_ncols=True):
        try:
            labels, boxes = (ground_truth_instances(args.voc12_root, image_id, args.sbd_inst), None) if gt else \
                pseudo_instances(args.voc12_root, image_id, args.label_dir)
            image = coco_image(image_id, labels.inst.shape)
            if args.out_dir:
                save_label_png(Path(args.out_dir) / f"{image_id}.png", labels.inst)
        except (OSError, ValueError) as err:
            failed.append((image_id, str(err)))
            continue
        images.append(image)
        annotations += coco_annotations(labels, image["id"], len(annotations) + 1, boxes)
        filled, empty = filled + len(labels.filled), empty + len(labels.empty)
    source = "ground truth" if gt else args.label_dir
    with atomic_path(args.out_json) as tmp:
        tmp.write_text(json.dumps(coco_dataset(images, annotations, f"instances of {source}")))
    print(f"instance labels: {len(images)} images, {len(annotations)} instances ({filled} boxes without a pixel of "
          f"their class took their free rectangle, {empty} left empty) in {time.time() - start:.1f} s; "
          f"wrote {args.out_json}" + (f" and {args.out_dir}/" if args.out_dir else ""))
    for image_id, message in failed:
        print(f"failed {image_id}: {message}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(ids)} images failed (listed above); they are not in {args.out_json}",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
