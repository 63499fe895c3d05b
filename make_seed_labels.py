"""Stage 1: seed labels for each kind of weak supervision (algorithm.md §1.3), one palette PNG per image.

``--type image`` checks and copies the CAM seeds of ``infer_SEAM.py --crf``; ``box`` merges VOC XML boxes
(GrabCut per box) with them; ``scribble`` spreads scribble strokes over SLIC superpixels
(``--scribble_mode superpixel``) or lays the strokes over the CAM seeds (``override``, the affinity-training
seeds); ``point`` paints discs around clicks over the CAM seeds of the clicked classes. 255 = unknown.

SLIC's ``--n_segments`` is given for a VOC-sized image (500×375) and scaled by each image's area, so
superpixels keep the same pixel size on smaller or larger images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tool import cli
from tool.box_labels import grabcut_box_masks
from tool.cli import add_id_list, add_voc12_root, make_parser, str2bool
from tool.label_io import read_image, read_label_png, save_label_png
from tool.runner import RunSummary, run_per_image
from tool.seed_labels import (
    BOX_MODES,
    SCRIBBLE_MODES,
    box_seed_label,
    check_label,
    point_seed_label,
    scribble_override_label,
    scribble_superpixel_label,
    superpixels,
)
from voc12.annotations import read_box_annotation, read_points, read_scribble
from voc12.lists import read_list

TYPES = ("image", "box", "scribble", "point")
DEFAULT_OUT = {"image": "SEAM_Image", "box": "SEAM_Box", "scribble superpixel": "Scribble_SuperPixel",
               "scribble override": "SEAM_Scribble", "point": "SEAM_Point"}


def default_out_dir(args: argparse.Namespace) -> Path:
    """``data/Init_Label/<published folder name>`` of this ``--type`` (and ``--scribble_mode``)."""
    key = f"scribble {args.scribble_mode}" if args.type == "scribble" else args.type
    return Path("data") / "Init_Label" / DEFAULT_OUT[key]


def get_args_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--type", required=True, choices=TYPES, help="kind of weak supervision")
    add_voc12_root(parser)
    add_id_list(parser, "--infer_list", "--list", what="images to write seeds for")
    parser.add_argument("--cam_seed_dir", default="data/Init_Label/SEAM_Image", type=str,
                        help="confident CAM seeds (infer_SEAM.py --crf); needed except for --type box "
                             "--box_mode grabcut and --type scribble --scribble_mode superpixel")
    parser.add_argument("--out_dir", default=None, type=str,
                        help="output folder; default data/Init_Label/<name> with the names of the published "
                             "seeds: " + ", ".join(f"{k} -> {v}" for k, v in DEFAULT_OUT.items()))
    parser.add_argument("--annotation_dir", default=None, help="VOC XML (default <root>/Annotations)")
    parser.add_argument("--scribble_dir", default=None, help="scribble PNGs (default <root>/Scribbles)")
    parser.add_argument("--point_dir", default=None, help="point JSON files (default <root>/Points)")
    parser.add_argument("--box_mode", default="cam_and_grabcut", choices=BOX_MODES,
                        help="box seeds: GrabCut in each box, the CAM seeds inside the boxes, or their agreement")
    parser.add_argument("--grabcut_iters", default=3, type=int, help="GrabCut iterations per box (count)")
    parser.add_argument("--grabcut_min_iou", default=0.15, type=float,
                        help="below this IoU with its box a GrabCut mask is replaced by the whole box")
    parser.add_argument("--scribble_mode", default="superpixel", choices=SCRIBBLE_MODES,
                        help="superpixel: strokes grown to their SLIC superpixels; override: strokes drawn over "
                             "the CAM seeds")
    parser.add_argument("--n_segments", default=1000, type=int, help="SLIC segments at VOC size (500x375)")
    parser.add_argument("--compactness", default=10.0, type=float, help="SLIC compactness")
    parser.add_argument("--point_radius", default=6, type=int, help="disc radius around each click, pixels")
    parser.add_argument("--shard", default=None, type=str, help="i/n: process ids[i::n]")
    parser.add_argument("--overwrite", default=False, type=str2bool,
                        help="recompute existing outputs")
    parser.add_argument("--seed", default=0, type=int, help="OpenCV random seed of GrabCut")
    return parser


def needs_cam_seeds(args: argparse.Namespace) -> bool:
    return not ((args.type == "box" and args.box_mode == "grabcut")
                or (args.type == "scribble" and args.scribble_mode == "superpixel"))


def main(args: argparse.Namespace) -> RunSummary:
    root = Path(args.voc12_root)
    image_dir = root / "JPEGImages"
    annotation_dir = Path(args.annotation_dir or root / "Annotations")
    scribble_dir = Path(args.scribble_dir or root / "Scribbles")
    point_dir = Path(args.point_dir or root / "Points")
    out_dir = Path(args.out_dir) if args.out_dir else default_out_dir(args)
    if needs_cam_seeds(args):
        if not Path(args.cam_seed_dir).is_dir():
            raise cli.MissingFileError(f"--cam_seed_dir not found: {args.cam_seed_dir} (--type {args.type} needs "
                                       "the confident CAM seeds: the --crf folder of infer_SEAM.py)")
    ids = read_list(args.infer_list, args.voc12_root)

    def cam_seed(image_id: str, hw: tuple[int, int]) -> np.ndarray:
        path = Path(args.cam_seed_dir) / f"{image_id}.png"
        return read_label_png(path, hw)

    def process(image_id: str) -> None:
        image = read_image(image_dir / f"{image_id}.jpg")
        hw = image.shape[:2]
        if args.type == "image":
            label = cam_seed(image_id, hw)
        elif args.type == "box":
            boxes, dropped = read_box_annotation(annotation_dir / f"{image_id}.xml", image_size=hw)
            masks = (None if args.box_mode == "cam" else
                     grabcut_box_masks(image, boxes, args.grabcut_iters, args.grabcut_min_iou, args.seed))
            seeds = None if args.box_mode == "grabcut" else cam_seed(image_id, hw)
            label = box_seed_label(boxes, hw, args.box_mode, grabcut_masks=masks, cam_seed=seeds,
                                   unknown=dropped)
        elif args.type == "scribble":
            path = scribble_dir / f"{image_id}.png"
            scribble = check_label(read_scribble(path), hw, path)
            if args.scribble_mode == "superpixel":
                segments = superpixels(image, args.n_segments, args.compactness)
                label = scribble_superpixel_label(segments, scribble)
            else:
                label = scribble_override_label(cam_seed(image_id, hw), scribble)
        else:
            points = read_points(point_dir / f"{image_id}.json", image_size=hw)
            label = point_seed_label(points, cam_seed(image_id, hw), args.point_radius)
        save_label_png(out_dir / f"{image_id}.png", label)

    return run_per_image(ids, process, lambda image_id: [out_dir / f"{image_id}.png"],
                         desc=f"seeds ({args.type})", shard=args.shard, overwrite=args.overwrite)


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
