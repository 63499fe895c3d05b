"""A mask for one image of your own from boxes, a scribble or clicks: stages 1c–3 for that image.

    python infer_image.py --image photo.jpg --box "48,30,310,400,person" --box "300,200,460,380,dog"
    python infer_image.py --image photo.jpg --scribble strokes.png
    python infer_image.py --image photo.jpg --point "120,200,cat" --point "10,10,background"

Writes the label PNG (``--out``, palette PNG of class ids, 0 background) and an overlay picture
(``--overlay``: the image with the coloured mask and the annotation drawn on it). Coordinates are 0-based
pixels of the image (box corners inclusive); a class is a VOC class name or its id (1..20, 0 background).

Seeds (stage 1c): boxes give GrabCut per box, merged with the CAM seeds of a classifier when
``--cam_weights`` is given (``cam_and_grabcut``, as ``make_seed_labels.py``) and GrabCut alone otherwise,
so no classifier is needed; a scribble PNG (class id on stroke pixels, 255 elsewhere) is spread over
superpixels; clicks become discs, merged with the CAM seeds with ``--cam_weights`` (then the CAM random
walk is fused too, as published for points); without a classifier click the background as well. Then the
affinity net (``--weights``, e.g. the published ``aff_box.pth``; radius 4 for boxes and scribbles, 3 for
points) and the per-image A2GNN with its dense CRF (stage 3). An image larger than ``--max_side`` is worked
on at that size and its label resized back (nearest neighbour), so any image size works.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from network import resnet38_aff_gated, resnet38_SEAM
from stages.a2gnn import SCRIPT_DEFAULTS
from tool import cli
from tool.box_labels import grabcut_box_masks
from tool.cam import multiscale_cam, seeds_from_cams
from tool.checkpoint import load_checkpoint
from tool.cli import DEVICE_HELP, default_device, make_parser
from tool.crf import A2GNN_CRF, dense_crf
from tool.label_io import atomic_path, read_image, read_label_png, save_label_png
from tool.overlay import overlay
from tool.propagate import STRIDE, PropagateConfig, propagate
from tool.seed_labels import box_seed_label, point_seed_label, scribble_superpixel_label, superpixels
from tool.transforms import multiscale_flip_inputs, normalize, pad_to_multiple, resize_image, to_chw_tensor
from voc12 import CLASS_NAMES, IGNORE
from voc12.annotations import Box, Point

KINDS = {"box": ("box", 4), "scribble": ("others", 4), "point": ("others", 3)}  # schedule, radius


def class_id(text: str) -> int:
    """A VOC class name (``person``) or id (``15``; 0 = background)."""
    text = text.strip()
    if text.isdigit() and int(text) < len(CLASS_NAMES):
        return int(text)
    if text in CLASS_NAMES:
        return CLASS_NAMES.index(text)
    raise argparse.ArgumentTypeError(f"unknown class {text!r}: use one of {', '.join(CLASS_NAMES)} or 0..20")


def parse_box(text: str) -> Box:
    """``"x0,y0,x1,y1,class"`` → ``Box`` (0-based inclusive corners, a foreground class)."""
    parts = text.split(",")
    if len(parts) != 5:
        raise argparse.ArgumentTypeError(f"--box {text!r}: expected x0,y0,x1,y1,class")
    x0, y0, x1, y1 = (int(float(v)) for v in parts[:4])
    cls = class_id(parts[4])
    if cls == 0 or x1 < x0 or y1 < y0:
        raise argparse.ArgumentTypeError(f"--box {text!r}: needs x0 <= x1, y0 <= y1 and a foreground class")
    return Box(cls, x0, y0, x1, y1)


def parse_point(text: str) -> Point:
    """``"x,y,class"`` → ``Point`` (0-based pixel; class may be background)."""
    parts = text.split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"--point {text!r}: expected x,y,class")
    return Point(class_id(parts[2]), int(float(parts[0])), int(float(parts[1])))


def get_args_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("--image", required=True, type=str, help="the image (any size, any PIL format)")
    parser.add_argument("--box", action="append", default=[], type=parse_box,
                        help='"x0,y0,x1,y1,class" (repeat for several boxes)')
    parser.add_argument("--scribble", default=None, type=str,
                        help="PNG of the image's size: class id on stroke pixels, 255 elsewhere")
    parser.add_argument("--point", action="append", default=[], type=parse_point,
                        help='"x,y,class" click (repeat; class "background" for background clicks)')
    parser.add_argument("--weights", default=None, type=str,
                        help="affinity net (default netWeights/final_model/aff_box.pth, aff_scribble.pth or "
                             "aff_point.pth by the annotation)")
    parser.add_argument("--cam_weights", default=None, type=str,
                        help="SEAM classifier (e.g. netWeights/resnet38_SEAM.pth) for CAM seeds; default: none "
                             "(boxes: GrabCut-only seeds)")
    parser.add_argument("--backbone_width", default=1.0, type=float,
                        help="width multiplier of both networks (1 for the published weights)")
    parser.add_argument("--radius", default=None, type=int, help="affinity window radius (default 4 box/scribble, "
                                                                  "3 point)")
    parser.add_argument("--epochs", default=None, type=int,
                        help="A2GNN epochs per phase (default 150 for boxes, 50 otherwise, as published)")
    parser.add_argument("--hidden", default=256, type=int, help="A2GNN hidden units")
    parser.add_argument("--scales", default=[0.5, 1.0, 1.5, 2.0], type=float, nargs="+",
                        help="CAM scales (with --cam_weights)")
    parser.add_argument("--max_side", default=1000, type=int,
                        help="work at most at this long side in pixels (0: the image's own size)")
    parser.add_argument("--out", default=None, type=str, help="label PNG (default <image stem>_mask.png)")
    parser.add_argument("--overlay", default=None, type=str,
                        help="overlay picture (default <image stem>_overlay.png; 'none' for none)")
    parser.add_argument("--device", default=default_device(), type=str, help=DEVICE_HELP)
    parser.add_argument("--seed", default=0, type=int, help="random seed of GrabCut and of the A2GNN training")
    return parser


def annotation_kind(args: argparse.Namespace) -> str:
    given = [k for k, v in (("box", args.box), ("scribble", args.scribble), ("point", args.point)) if v]
    if len(given) != 1:
        raise cli.UserError("give one kind of annotation: --box (repeatable), --scribble or --point (repeatable)")
    return given[0]


def scaled(args: argparse.Namespace, rgb: np.ndarray, scribble: np.ndarray | None) -> tuple:
    """The image, boxes, points and scribble at the working size (long side at most ``--max_side``)."""
    h, w = rgb.shape[:2]
    s = min(1.0, args.max_side / max(h, w)) if args.max_side else 1.0
    if s == 1.0:
        return rgb, list(args.box), list(args.point), scribble
    size = (max(1, round(h * s)), max(1, round(w * s)))

    def at(v: int, n: int) -> int:
        return min(n - 1, int(v * s))

    boxes = [Box(b.cls, at(b.x0, size[1]), at(b.y0, size[0]), at(b.x1, size[1]), at(b.y1, size[0]))
             for b in args.box]
    points = [Point(p.cls, at(p.x, size[1]), at(p.y, size[0])) for p in args.point]
    if scribble is not None:
        scribble = np.asarray(torch.nn.functional.interpolate(
            torch.from_numpy(scribble)[None, None].float(), size, mode="nearest")[0, 0].byte())
    return resize_image(rgb, size).copy(), boxes, points, scribble  # (a writable array for the CRF)


def clip_boxes(boxes: list[Box], hw: tuple[int, int]) -> list[Box]:
    h, w = hw
    clipped = [Box(b.cls, max(0, b.x0), max(0, b.y0), min(w - 1, b.x1), min(h - 1, b.y1)) for b in boxes]
    empty = [b for b in clipped if b.x1 < b.x0 or b.y1 < b.y0]
    if empty:
        raise cli.UserError(f"--box outside the {w}x{h} image: {empty}")
    return clipped


def cam_seed_label(args: argparse.Namespace, rgb: np.ndarray, classes: np.ndarray,
                   device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Compact CAMs ``(K, H, W)`` of ``classes`` and their confident seeds ``(H, W)`` (stage 1b)."""
    net = resnet38_SEAM.Net(width=args.backbone_width)
    load_checkpoint(net, args.cam_weights, strict=True)
    net.eval().to(device)
    label = torch.zeros(20)
    label[torch.from_numpy(classes - 1)] = 1
    with torch.no_grad():
        cams = multiscale_cam(net, multiscale_flip_inputs(rgb, tuple(args.scales)), label, rgb.shape[:2])
    cams = cams[classes - 1]
    return cams, seeds_from_cams(rgb, classes, cams)[2]


def seed_label(args: argparse.Namespace, kind: str, rgb: np.ndarray, boxes: list[Box], points: list[Point],
               scribble: np.ndarray | None, device: torch.device) -> tuple[np.ndarray, dict]:
    """Seeds ``(H, W)`` uint8 (255 unknown) and the CAM inputs of the random walk (empty without one)."""
    hw = rgb.shape[:2]
    if kind == "scribble":
        return scribble_superpixel_label(superpixels(rgb), scribble), {}
    classes = np.unique([b.cls for b in boxes] if kind == "box" else [p.cls for p in points if p.cls])
    cams, cam_seed = (None, None) if not args.cam_weights or not classes.size else cam_seed_label(
        args, rgb, classes.astype(np.int64), device)
    if kind == "box":
        masks = grabcut_box_masks(rgb, boxes, seed=args.seed)
        mode = "grabcut" if cam_seed is None else "cam_and_grabcut"
        print(f"box seeds: {mode}" + (" (no --cam_weights)" if cam_seed is None else ""))
        return box_seed_label(boxes, hw, mode, grabcut_masks=masks, cam_seed=cam_seed), {}
    seeds = point_seed_label(points, np.full(hw, IGNORE, np.uint8) if cam_seed is None else cam_seed)
    rw = {} if cams is None else {"cams": torch.from_numpy(cams), "cam_classes": torch.from_numpy(classes)}
    return seeds, rw


def main(args: argparse.Namespace) -> np.ndarray:
    """Write the label PNG and the overlay; return the ``(H, W)`` uint8 label at the image's size."""
    kind = annotation_kind(args)
    schedule, radius = KINDS[kind]
    radius = args.radius or radius
    device = torch.device(args.device)
    image_path = Path(args.image)
    original = read_image(image_path)
    scribble = read_label_png(args.scribble) if args.scribble else None
    if scribble is not None and scribble.shape != original.shape[:2]:
        raise cli.UserError(f"--scribble {args.scribble}: {scribble.shape} is not the image's size "
                            f"{original.shape[:2]}")
    rgb, boxes, points, scribble = scaled(args, original, scribble)
    boxes = clip_boxes(boxes, rgb.shape[:2])
    seeds, rw = seed_label(args, kind, rgb, boxes, points, scribble, device)

    net = resnet38_aff_gated.Net(width=args.backbone_width)
    weights = args.weights or f"netWeights/final_model/aff_{kind}.pth"
    load_checkpoint(net, weights, strict=True)
    net.eval().to(device)
    image = pad_to_multiple(to_chw_tensor(normalize(rgb)), STRIDE, 0)
    with torch.no_grad():
        features, aff, _ = net(image[None].to(device), radius)
    d = SCRIPT_DEFAULTS[schedule]
    cfg = PropagateConfig(schedule=schedule, epochs=args.epochs or d["epochs"], lr=d["lr"], hidden=args.hidden,
                          rw=bool(rw), seed=args.seed)
    probs = propagate(features[0], aff[0], pad_to_multiple(torch.from_numpy(seeds).long(), STRIDE, IGNORE),
                      image, rgb.shape[:2], cfg, boxes=boxes if schedule == "box" else None, **rw)
    label = np.argmax(dense_crf(rgb, probs.cpu().numpy(), A2GNN_CRF), axis=0).astype(np.uint8)
    if label.shape != original.shape[:2]:
        label = np.asarray(torch.nn.functional.interpolate(
            torch.from_numpy(label)[None, None].float(), original.shape[:2], mode="nearest")[0, 0].byte())

    out = Path(args.out) if args.out else image_path.with_name(f"{image_path.stem}_mask.png")
    save_label_png(out, label)
    present = ", ".join(f"{CLASS_NAMES[c]} {np.mean(label == c):.1%}" for c in np.unique(label))
    print(f"mask -> {out} ({present})")
    if (args.overlay or "").lower() != "none":
        picture_path = Path(args.overlay) if args.overlay else image_path.with_name(f"{image_path.stem}_overlay.png")
        picture = overlay(original, label,
                          boxes=[(b.x0, b.y0, b.x1, b.y1, b.cls, CLASS_NAMES[b.cls]) for b in args.box],
                          points=[(p.x, p.y, p.cls, CLASS_NAMES[p.cls]) for p in args.point])
        with atomic_path(picture_path) as tmp:
            picture.save(tmp, format="PNG")
        print(f"overlay -> {picture_path}")
    return label


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
