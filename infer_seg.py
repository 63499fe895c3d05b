"""Stage 4: label maps of a trained segmentation network, optionally refined by a dense CRF, and their scores.

    python infer_seg.py --voc12_root $VOC --infer_list val.txt --weights netWeights/deeplabv2_box.pth \\
        --save_path out/seg_box_val --save_path_crf out/seg_box_val_crf --scales 0.5 0.75 1.0 --flip True

Writes palette PNGs ``--save_path/<id>.png`` (argmax of the class probabilities averaged over
``--scales`` and, with ``--flip True``, their mirror images) and, with ``--save_path_crf FOLDER``, the
dense-CRF refined labels there (DeepLab v2's CRF parameters, ``tool.crf.SEG_CRF``). Per image, sharded
(``--shard i/n``, torchrun, or a plain ``python`` run over every visible GPU, one worker each: ``--gpus``
limits it) and resumable like the other per-image stages: existing outputs are skipped, one bad image is
named and the rest go on; ``--num_workers`` processes read the next images while the network runs, and
``--cpu_workers`` processes run the CRF and the writes. When every output of the list exists and ground
truth is available (``--gt_dir``, default ``VOC12_ROOT/SegmentationClass`` if present), the scores of ``eval_miou.py``
(per-class IoU, mIoU) are printed and written to ``<folder>.json`` for each folder (by the worker that
finishes last).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np

from eval_miou import evaluate, format_table
from network.deeplab import ARCHITECTURES, build_seg_net
from tool import cli
from tool.checkpoint import load_checkpoint
from tool.cli import DEVICE_HELP, default_device, make_parser, str2bool
from tool.crf import SEG_CRF, dense_crf
from tool.dist import add_gpus_argument, launch, process_group
from tool.label_io import atomic_path, read_image, save_label_png
from tool.runner import (
    RunSummary,
    add_cpu_workers_argument,
    add_load_workers_argument,
    resolve_cpu_workers,
    resolve_load_workers,
    run_per_image,
)
from tool.segmentation import predict_probs
from voc12 import NUM_CLASSES
from voc12.lists import read_list

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def get_args_parser() -> argparse.ArgumentParser:
    p = make_parser(__doc__)
    p.add_argument("--weights", required=True, type=str, help="a train_seg.py checkpoint ({session_name}.pth)")
    p.add_argument("--arch", default="deeplabv2_resnet101", choices=ARCHITECTURES, help="network of --weights")
    p.add_argument("--backbone_width", default=1.0, type=float, help="ResNet-38 width (deeplabv2_resnet38)")
    p.add_argument("--voc12_root", default=None, type=str,
                   help="dataset root (JPEGImages/, SegmentationClass/); not needed with --image_dir")
    p.add_argument("--infer_list", default=None, type=str,
                   help="id list (path or name under ImageSets/Segmentation); default val.txt, or every "
                        "image of --image_dir when that is given")
    p.add_argument("--image_dir", default=None, type=str,
                   help="folder of the images (<id>.jpg or .png); default VOC12_ROOT/JPEGImages")
    p.add_argument("--scales", default=[1.0], type=float, nargs="+", help="input scales, averaged")
    p.add_argument("--flip", default=False, type=str2bool, help="also average the mirrored images")
    p.add_argument("--save_path", default="data/seg_pred", type=str, help="folder of the label PNGs")
    p.add_argument("--save_path_crf", default=None, type=str,
                   help="folder of dense-CRF refined label PNGs (default: no CRF)")
    p.add_argument("--gt_dir", default=None, type=str,
                   help="ground-truth <id>.png for the scores (default VOC12_ROOT/SegmentationClass if it "
                        "exists); 'none': no scores")
    p.add_argument("--device", default=default_device(), type=str, help=DEVICE_HELP)
    p.add_argument("--shard", default=None, type=str, help="i/n: process ids[i::n] (default: torchrun)")
    p.add_argument("--overwrite", default=False, type=str2bool, help="recompute existing outputs")
    add_load_workers_argument(p)
    add_cpu_workers_argument(p)
    return add_gpus_argument(p)


def image_ids(args: argparse.Namespace, image_dir: Path) -> list[str]:
    """The list's ids, or every image of ``--image_dir`` (sorted) when it is given without a list."""
    if args.infer_list is None and args.image_dir is not None:
        ids = sorted(p.stem for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not ids:
            raise cli.MissingFileError(f"--image_dir {image_dir}: no .jpg / .png images")
        return ids
    return read_list(args.infer_list or "val.txt", args.voc12_root)


def find_image(image_dir: Path, image_id: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        if (image_dir / f"{image_id}{suffix}").is_file():
            return image_dir / f"{image_id}{suffix}"
    raise cli.MissingFileError(f"image not found: {image_dir / image_id}.jpg (or .png)")


def load_image(image_dir: Path, image_id: str) -> np.ndarray:
    """An image's input, ``(H, W, 3)`` uint8 (``run_per_image``'s ``load``, in a loader process)."""
    return read_image(find_image(image_dir, image_id))


def write_labels(image_id: str, image: np.ndarray, probs: np.ndarray, folders: list[Path]) -> None:
    """An image's CPU part: ``folders[0]/<id>.png`` the argmax of ``probs`` ``(C, H, W)``, and with a second
    folder the dense-CRF refined labels there (``image`` ``(H, W, 3)`` uint8)."""
    save_label_png(folders[0] / f"{image_id}.png", probs.argmax(0).astype(np.uint8))
    if len(folders) > 1:
        refined = dense_crf(image, probs, SEG_CRF)
        save_label_png(folders[1] / f"{image_id}.png", refined.argmax(0).astype(np.uint8))


def score(folders: list[Path], gt_dir: Path, ids: list[str]) -> dict[str, dict]:
    """``eval_miou.evaluate`` of each folder, printed and written to ``<folder>.json``."""
    results = {}
    for folder in folders:
        result = evaluate(folder, gt_dir, ids)
        print(f"\n{folder}:\n{format_table(result)}")
        with atomic_path(folder.with_name(folder.name + ".json")) as tmp:
            tmp.write_text(json.dumps(result, indent=1) + "\n")
        results[str(folder)] = result
    return results


def main(args: argparse.Namespace) -> RunSummary:
    if args.voc12_root is None and args.image_dir is None:
        raise cli.UserError("infer_seg.py: pass --voc12_root (with --infer_list) or --image_dir")
    # first, so that every worker reaches the rendezvous even if a later step fails in one of them
    with process_group(args.device) as device:  # cuda:LOCAL_RANK for each of several workers
        image_dir = Path(args.image_dir) if args.image_dir else Path(args.voc12_root) / "JPEGImages"
        ids = image_ids(args, image_dir)
        folders = [Path(args.save_path)] + ([Path(args.save_path_crf)] if args.save_path_crf else [])
        gt_dir = None if (args.gt_dir or "").lower() == "none" or not (args.gt_dir or args.voc12_root) else Path(
            args.gt_dir or Path(args.voc12_root) / "SegmentationClass")
        if args.gt_dir and gt_dir is not None and not gt_dir.is_dir():
            raise cli.MissingFileError(f"--gt_dir not found: {gt_dir}")
        net = build_seg_net(args.arch, NUM_CLASSES, args.backbone_width)
        load_checkpoint(net, args.weights, strict=True)
        net.eval().to(device)

        def outputs(image_id: str) -> list[Path]:
            return [folder / f"{image_id}.png" for folder in folders]

        def process(image_id: str, image: np.ndarray) -> functools.partial:
            probs = predict_probs(net, image, args.scales, args.flip, device)
            return functools.partial(write_labels, image_id, image, probs.numpy(), folders)

        summary = run_per_image(ids, process, outputs, desc="infer_seg", shard=args.shard, overwrite=args.overwrite,
                                cpu_workers=resolve_cpu_workers(args.cpu_workers, device),
                                load=functools.partial(load_image, image_dir),
                                load_workers=resolve_load_workers(args.num_workers, device))
    if gt_dir is not None and gt_dir.is_dir():
        if all(p.is_file() for i in ids for p in outputs(i)):
            score(folders, gt_dir, ids)
        else:
            print("scores skipped: not every image of the list has its outputs yet (other shards running, or "
                  "failures above)")
    return summary


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    sys.exit(cli.run(lambda: launch(main, args, args.gpus, args.device)))
