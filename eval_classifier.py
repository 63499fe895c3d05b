"""Stage 1 check: multi-label average precision of the SEAM classifier on an id list.

Scores each image at one scale (the whole image, no crop) by the global average of its CAM, the
classification score the classifier is trained on, and prints per-class AP, the mean AP and, for
comparison, the label-frequency prior (the mean AP of a ranking that knows no image: each class's share
of positive images).

    python eval_classifier.py --voc12_root data/demo/VOC2012 --weights data/demo/weights/resnet38_SEAM.pth \\
        --backbone_width 0.125 --list val.txt
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

import numpy as np
import torch
from tqdm import tqdm

from tool import cli
from tool.checkpoint import load_checkpoint
from tool.cli import DEVICE_HELP, add_id_list, add_voc12_root, default_device, make_parser
from tool.label_io import atomic_path
from tool.metrics import average_precision
from tool.transforms import normalize, to_chw_tensor
from voc12.data import ImageDataset
from voc12.lists import read_list
from voc12.make_cls_labels import image_labels
from vocabulary import CAT_LIST


def get_args_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--weights", default="netWeights/resnet38_SEAM.pth", type=str, help="SEAM checkpoint")
    parser.add_argument("--network", default="network.resnet38_SEAM", type=str,
                        help="module that defines Net, the classifier of --weights")
    parser.add_argument("--backbone_width", default=1.0, type=float, help="backbone width of the checkpoint")
    add_voc12_root(parser)
    add_id_list(parser, "--list", what="held-out images to score (e.g. val.txt)", required=True)
    parser.add_argument("--cls_labels", default=None, type=str,
                        help="image labels (.npz of voc12/make_cls_labels.py); default: read the XML files")
    parser.add_argument("--out", default=None, type=str, help="also write the scores as JSON here")
    parser.add_argument("--device", default=default_device(), type=str, help=DEVICE_HELP)
    return parser


@torch.no_grad()
def class_scores(net: torch.nn.Module, dataset: ImageDataset, device: torch.device) -> np.ndarray:
    """``(N, 20)`` float: global average of the CAM of classes 1..20 for each image of ``dataset``."""
    rows = []
    for item in tqdm(dataset, desc="classifier", dynamic_ncols=True):
        x = to_chw_tensor(normalize(item["image"]))[None].to(device)
        cam, _ = net(x)
        rows.append(cam[0, 1:].mean(dim=(1, 2)).cpu().numpy())
    return np.stack(rows)


def main(args: argparse.Namespace) -> dict:
    ids = read_list(args.list, args.voc12_root)
    labels = image_labels(args.voc12_root, ids, args.cls_labels)
    device = torch.device(args.device)
    net = importlib.import_module(args.network).Net(width=args.backbone_width)
    load_checkpoint(net, args.weights)
    net.to(device).eval()
    truth = np.stack([labels[i] for i in ids])
    ap = average_precision(class_scores(net, ImageDataset(ids, args.voc12_root), device), truth)
    present = [a for a in ap if a is not None]
    prior = [float(f) for f, a in zip(truth.mean(axis=0), ap, strict=True) if a is not None]
    result = {"map": float(np.mean(present)), "prior_map": float(np.mean(prior)), "images": len(ids),
              "ap": dict(zip(CAT_LIST, ap, strict=True))}
    for name, value in result["ap"].items():
        print(f"{name:>12}  {'-' if value is None else f'{100 * value:5.1f}'}")
    print(f"classifier on {args.list}: mAP {100 * result['map']:.1f} over {len(ids)} images "
          f"(label-frequency prior {100 * result['prior_map']:.1f})")
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
