"""Reference label maps that every pseudo-label number can be compared with.

    python make_baseline_labels.py --method box_fill --voc12_root R --list train --out_dir out/box_fill
    python make_baseline_labels.py --method grabcut  --voc12_root R --list train --out_dir out/grabcut
    python make_baseline_labels.py --method seeds    --voc12_root R --list train --out_dir out/seeds_bg \
        --seed_dir out/seeds

box_fill: boxes filled with their class (smallest box on top). grabcut: OpenCV GrabCut per box (3
iterations, whole box when it finds nothing or IoU < 0.15), overlaps to the smallest box. seeds: a
seed folder with 255 (unknown) set to background. Writes palette PNGs ``<out_dir>/<id>.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tool import cli
from tool.box_labels import box_fill_label, grabcut_label
from tool.cli import add_id_list, add_voc12_root, make_parser, str2bool
from tool.label_io import read_image, read_label_png, save_label_png
from tool.runner import run_per_image
from voc12.annotations import read_boxes
from voc12.lists import read_list
from vocabulary import IGNORE

METHODS = ("box_fill", "grabcut", "seeds")


def baseline_label(method: str, voc12_root: Path, image_id: str, seed_dir: Path | None = None,
                   seed: int = 0) -> np.ndarray:
    """The ``(H, W)`` uint8 baseline label map of one image (0..20)."""
    if method == "seeds":
        seeds = read_label_png(seed_dir / f"{image_id}.png")
        return np.where(seeds == IGNORE, 0, seeds).astype(np.uint8)
    image_path = voc12_root / "JPEGImages" / f"{image_id}.jpg"
    if method == "box_fill":
        with Image.open(image_path) as img:
            hw = (img.height, img.width)
        return box_fill_label(read_boxes(voc12_root / "Annotations" / f"{image_id}.xml", hw), hw)
    image = read_image(image_path)
    boxes = read_boxes(voc12_root / "Annotations" / f"{image_id}.xml", image.shape[:2])
    return grabcut_label(image, boxes, seed=seed)


def get_args_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--method", required=True, choices=METHODS,
                        help="box_fill: each box filled with its class (smallest on top); grabcut: GrabCut in "
                             "each box; seeds: the --seed_dir labels with 255 as background")
    add_voc12_root(parser)
    add_id_list(parser, "--infer_list", "--list", what="images to write baseline labels for")
    parser.add_argument("--out_dir", required=True, help="folder for the <id>.png label maps")
    parser.add_argument("--seed_dir", default=None, help="seed label folder (--method seeds)")
    parser.add_argument("--seed", type=int, default=0, help="OpenCV random seed for GrabCut")
    parser.add_argument("--shard", default=None, type=str, help="'i/n': process every n-th id starting at i")
    parser.add_argument("--overwrite", default=False, type=str2bool, help="redo images whose output exists")
    return parser


def main(args: argparse.Namespace) -> int:
    if args.method == "seeds" and args.seed_dir is None:
        raise cli.UserError("--method seeds needs --seed_dir")
    root, out_dir = Path(args.voc12_root), Path(args.out_dir)
    seed_dir = Path(args.seed_dir) if args.seed_dir else None
    ids = read_list(args.infer_list, root)

    def process(image_id: str) -> None:
        save_label_png(out_dir / f"{image_id}.png", baseline_label(args.method, root, image_id, seed_dir,
                                                                   args.seed))

    summary = run_per_image(ids, process, lambda i: [out_dir / f"{i}.png"], desc=args.method,
                            shard=args.shard, overwrite=args.overwrite)
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
