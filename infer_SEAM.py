"""Stage 1: multi-scale CAMs of the SEAM classifier, dense-CRF labels and confident seeds (algorithm.md §1.1).

Writes, per image and for each output folder given: ``--out_cam`` CAM arrays (``.npz``, see
``tool.cam.save_cams``), ``--out_cam_pred`` the CAM argmax label, ``--out_la_crf``/``--out_ha_crf`` the CRF
marginals at the low/high alpha (``.npz``: ``classes`` (K+1,) with 0 first, ``probs`` (K+1, H, W)),
``--crf`` the confident ("top 40%") seed PNGs and ``--ori_crf`` the full (unmasked) CRF label PNGs.
A folder given as ``none`` is not written. Existing outputs are skipped (resume); ``--shard i/n`` or
torchrun splits the list, and a plain ``python`` run on N visible GPUs starts N workers that take shard
``RANK/N`` each on ``cuda:RANK`` (``--gpus K`` limits it). ``--num_workers`` processes read and scale the
next images while the network runs; ``--cpu_workers`` processes run the CRFs and the writes.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tool import cli
from tool.cam import cam_label, multiscale_cam, save_cams, seeds_from_cams
from tool.checkpoint import load_checkpoint
from tool.cli import DEVICE_HELP, add_id_list, add_voc12_root, default_device, make_parser, str2bool
from tool.dist import add_gpus_argument, launch, parse_shard, process_group, shard_ids
from tool.label_io import save_label_png, save_npz
from tool.runner import (
    RunSummary,
    add_cpu_workers_argument,
    add_load_workers_argument,
    resolve_cpu_workers,
    resolve_load_workers,
    run_per_image,
)
from voc12.data import CAM_SCALES, MultiScaleFlipDataset
from voc12.lists import read_list
from voc12.make_cls_labels import image_labels
from voc12.preflight import find_bad_files, known_failures


def get_args_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--weights", default="netWeights/resnet38_SEAM.pth", type=str,
                        help="trained SEAM classifier (train_SEAM.py's <session_name>.pth)")
    parser.add_argument("--network", default="network.resnet38_SEAM", type=str,
                        help="module that defines Net, the classifier of --weights")
    parser.add_argument("--backbone_width", default=1.0, type=float, help="backbone width of the checkpoint")
    add_id_list(parser, "--infer_list", what="images to write CAMs and seeds for")
    add_load_workers_argument(parser)
    add_voc12_root(parser)
    parser.add_argument("--cls_labels", default=None, type=str,
                        help="image labels (.npz of voc12/make_cls_labels.py); default: read the XML files")
    parser.add_argument("--scales", default=list(CAM_SCALES), type=float, nargs="+",
                        help="image scale factors (1 = input size) whose CAMs are averaged, each with its flip")
    parser.add_argument("--low_alpha", default=4, type=float, help="background power of the low CRF")
    parser.add_argument("--high_alpha", default=24, type=float, help="background power of the high CRF")
    parser.add_argument("--sure_bg_score", default=0.8, type=float,
                        help="a seed is background where the background score (1 - max CAM)^high_alpha exceeds "
                             "this (published 0.8: every CAM below 0.009 at alpha 24)")
    parser.add_argument("--sure_bg_quantile", default=0.0, type=float,
                        help="OURS: also seed as background, in every image, the pixels among its lowest this "
                             "fraction of max CAM (0.1 = 10 %%) that are below --sure_bg_quantile_max_cam, so that "
                             "no image is left without background seeds; default 0: off (published rule)")
    parser.add_argument("--sure_bg_quantile_max_cam", default=0.5, type=float,
                        help="max CAM above which --sure_bg_quantile seeds no background")
    parser.add_argument("--out_cam", default=None, type=str, help="folder of CAM .npz files")
    parser.add_argument("--out_cam_pred", default=None, type=str, help="folder of CAM argmax PNGs")
    parser.add_argument("--out_cam_pred_alpha", default=0.26, type=float,
                        help="constant background score of --out_cam_pred (published meaning and default: "
                             "a pixel is background unless a CAM exceeds it)")
    parser.add_argument("--out_cam_pred_bg_power", default=None, type=float,
                        help="OURS: instead of the constant, background score (1 - max cam)^POWER for "
                             "--out_cam_pred (4 ≈ a threshold of 0.28 at one class); default: the constant")
    parser.add_argument("--out_crf", default=None, type=str,
                        help="prefix: CRF marginals into <prefix>_<low_alpha> and <prefix>_<high_alpha>")
    parser.add_argument("--out_la_crf", default=None, type=str, help="folder of low-alpha CRF marginals")
    parser.add_argument("--out_ha_crf", default=None, type=str, help="folder of high-alpha CRF marginals")
    parser.add_argument("--crf", default="data/Init_Label/SEAM_Image", type=str,
                        help="folder of confident seed PNGs (the image-level seeds)")
    parser.add_argument("--ori_crf", default="data/Init_Label/SEAM_Image_Full", type=str,
                        help="folder of full (top 100%%) CRF label PNGs")
    parser.add_argument("--device", default=default_device(), type=str, help=DEVICE_HELP)
    parser.add_argument("--shard", default=None, type=str, help="i/n: process ids[i::n] (default: torchrun)")
    parser.add_argument("--overwrite", default=False, type=str2bool, help="recompute existing outputs")
    parser.add_argument("--seed", default=0, type=int, help="torch random seed (integer)")
    add_cpu_workers_argument(parser)
    return add_gpus_argument(parser)


def _folder(value: str | None) -> Path | None:
    return None if value is None or value.lower() == "none" else Path(value)


@dataclass(frozen=True)
class ItemById:
    """``load(image_id)``: the ``MultiScaleFlipDataset`` item of ``image_id`` (``index``: id -> position)."""

    dataset: MultiScaleFlipDataset
    index: dict[str, int]

    def __call__(self, image_id: str) -> dict:
        return self.dataset[self.index[image_id]]


def main(args: argparse.Namespace) -> RunSummary:
    # first, so that every worker reaches the rendezvous even if a later step fails in one of them
    with process_group(args.device) as device:  # cuda:LOCAL_RANK for each of several workers
        torch.manual_seed(args.seed)
        prefix = args.out_crf
        folders = {
            "cam": (_folder(args.out_cam), ".npz"),
            "cam_pred": (_folder(args.out_cam_pred), ".png"),
            "la_crf": (_folder(args.out_la_crf or (prefix and f"{prefix}_{args.low_alpha:.1f}")), ".npz"),
            "ha_crf": (_folder(args.out_ha_crf or (prefix and f"{prefix}_{args.high_alpha:.1f}")), ".npz"),
            "seed": (_folder(args.crf), ".png"),
            "full": (_folder(args.ori_crf), ".png"),
        }
        folders = {name: (folder, ext) for name, (folder, ext) in folders.items() if folder is not None}
        if not folders:
            raise ValueError("nothing to write: give at least one of --out_cam, --out_cam_pred, --out_crf, "
                             "--out_la_crf, --out_ha_crf, --crf, --ori_crf")

        def outputs(image_id: str) -> list[Path]:
            return [folder / f"{image_id}{ext}" for folder, ext in folders.values()]

        ids = read_list(args.infer_list, args.voc12_root)
        mine = shard_ids(ids, *parse_shard(args.shard))
        pending = [i for i in mine if args.overwrite or not all(p.exists() for p in outputs(i))]
        # a missing or corrupt image or XML fails that image only (named in the summary), not the run
        bad = known_failures(find_bad_files(pending, args.voc12_root, read_xml=args.cls_labels is None,
                                            cls_labels=args.cls_labels))
        good = [i for i in pending if i not in bad]
        labels = image_labels(args.voc12_root, good, args.cls_labels)
        net = importlib.import_module(args.network).Net(width=args.backbone_width)
        load_checkpoint(net, args.weights, strict=True)
        net.eval().to(device)

        dataset = MultiScaleFlipDataset(good, args.voc12_root, scales=args.scales, labels=labels)
        load = ItemById(dataset, {image_id: k for k, image_id in enumerate(good)})

        def process(image_id: str, item: dict) -> functools.partial:
            label = item["label"].numpy()
            classes = np.flatnonzero(label > 0) + 1
            cams = multiscale_cam(net, item["inputs"], item["label"], item["size"])[classes - 1]
            path = {name: folder / f"{image_id}{ext}" for name, (folder, ext) in folders.items()}
            return functools.partial(write_outputs, args, path, item["image"], classes, cams)

        return run_per_image(ids, process, outputs, desc="infer_SEAM", shard=args.shard, overwrite=args.overwrite,
                             known_failures=bad, cpu_workers=resolve_cpu_workers(args.cpu_workers, device),
                             load=load, load_workers=resolve_load_workers(args.num_workers, device))


def write_outputs(args: argparse.Namespace, path: dict[str, Path], image: np.ndarray, classes: np.ndarray,
                  cams: np.ndarray) -> None:
    """An image's CPU part: its CAMs ``(K, H, W)`` of ``classes`` ``(K,)`` on ``image`` ``(H, W, 3)``
    written to the outputs ``path`` names (``'cam'``, ``'cam_pred'``, and from the two dense CRFs
    ``'la_crf'``, ``'ha_crf'``, ``'seed'``, ``'full'``)."""
    if "cam" in path:
        save_cams(path["cam"], classes, cams)
    if "cam_pred" in path:
        save_label_png(path["cam_pred"], cam_label(
            classes, cams, bg_score=args.out_cam_pred_alpha if args.out_cam_pred_bg_power is None else None,
            bg_power=args.out_cam_pred_bg_power))
    if not {"la_crf", "ha_crf", "seed", "full"} & set(path):
        return
    present = np.concatenate([[0], classes])
    crf_la, crf_ha, seed, full = seeds_from_cams(image, classes, cams, args.low_alpha, args.high_alpha,
                                                 args.sure_bg_score, args.sure_bg_quantile,
                                                 args.sure_bg_quantile_max_cam)
    for name, crf in (("la_crf", crf_la), ("ha_crf", crf_ha)):
        if name in path:
            save_npz(path[name], classes=present, probs=crf[present])
    if "seed" in path:
        save_label_png(path["seed"], seed)
    if "full" in path:
        save_label_png(path["full"], full)


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    sys.exit(cli.run(lambda: launch(main, args, args.gpus, args.device)))
