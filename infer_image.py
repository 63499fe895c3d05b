"""A mask for one image of your own from boxes, a scribble or clicks: stages 1c–3 for that image.

    python infer_image.py --image photo.jpg --box "48,30,310,400,person" --box "300,200,460,380,dog"
    python infer_image.py --image photo.jpg --scribble strokes.png
    python infer_image.py --image photo.jpg --point "120,200,cat" --point "10,10,background"

Writes the label PNG (``--out``, palette PNG of class ids, 0 background) and an overlay picture
(``--overlay``: the image with class outlines over a light fill, the annotation and a legend). Coordinates
are 0-based pixels of the image (box corners inclusive); a class is a VOC class name or its id (1..20,
0 background).

Seeds (stage 1c): boxes give GrabCut per box, merged with the CAM seeds of a classifier when
``--cam_weights`` is given (as ``make_seed_labels.py``) and GrabCut alone otherwise; a scribble PNG (class id
on stroke pixels, 255 elsewhere) is spread over superpixels; clicks become discs, over the CAM seeds with
``--cam_weights`` (then the CAM random walk is fused too, as published for points). Clicks and strokes need
a background one (id 0) unless ``--cam_weights`` supplies background seeds. Then the affinity net
(``--weights``; its backbone width is read from the file) and one A2GNN with its dense CRF (stage 3).

``--schedule fast`` (default) is the single-image plan measured by ``benchmarks/bench_infer_image.py``
(fewer A2GNN epochs, a smaller working size; docs/infer_image.md); ``--schedule published`` keeps the
paper's 150 + 150 epochs (boxes) or 50 + 50 (scribbles, clicks). The label is resized back to the image.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from stages.single_image import KINDS, PLANS, Annotation, Phases, Settings, load_network, segment
from tool import cli
from tool.cli import UserError, default_device, str2bool
from tool.label_io import atomic_path, read_image, read_label_png, save_label_png
from tool.overlay import overlay
from voc12.annotations import Point
from vocabulary import CLASS_NAMES, Box


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
    parser = cli.make_parser(__doc__)
    parser.add_argument("--image", required=True, type=str, help="the image (any size, any PIL format)")
    parser.add_argument("--box", action="append", default=[], type=parse_box,
                        help='"x0,y0,x1,y1,class" in pixels (repeat for several boxes)')
    parser.add_argument("--scribble", default=None, type=str,
                        help="PNG of the image's size: class id on stroke pixels (0 background), 255 elsewhere")
    parser.add_argument("--point", action="append", default=[], type=parse_point,
                        help='"x,y,class" click in pixels (repeat; class "background" for background clicks)')
    parser.add_argument("--weights", default=None, type=str,
                        help="affinity net; default netWeights/final_model/aff_box.pth, aff_scribble.pth or "
                             "aff_point.pth by the annotation (download_weights.py lists them)")
    parser.add_argument("--cam_weights", default=None, type=str,
                        help="SEAM classifier (e.g. netWeights/resnet38_SEAM.pth) for CAM seeds; default: none "
                             "(boxes: GrabCut-only seeds; clicks: click a background pixel too)")
    fast, published = PLANS["fast"], PLANS["published"]
    parser.add_argument("--schedule", default="fast", choices=sorted(PLANS),
                        help=f"fast: {fast.box_epochs}+{fast.box_epochs} A2GNN epochs for boxes, "
                             f"{fast.others_epochs}+{fast.others_epochs} for scribbles and clicks, long side <= "
                             f"{fast.max_side} px (the single-image plan, docs/infer_image.md); published: the "
                             f"paper's {published.box_epochs}+{published.box_epochs} / {published.others_epochs}+"
                             f"{published.others_epochs} at up to {published.max_side} px")
    parser.add_argument("--epochs", default=None, type=int,
                        help="A2GNN epochs of each of the two phases (default: the --schedule's)")
    parser.add_argument("--max_side", default=None, type=int,
                        help="work with the long side at most this many pixels, 0 for the image's own size; the "
                             "label is resized back (default: the --schedule's)")
    parser.add_argument("--radius", default=None, type=int,
                        help="affinity window radius in grid cells (default 4 boxes / scribbles, 3 clicks)")
    parser.add_argument("--hidden", default=256, type=int, help="A2GNN hidden units")
    parser.add_argument("--scales", default=[0.5, 1.0, 1.5, 2.0], type=float, nargs="+",
                        help="CAM scales, image size multiples (with --cam_weights)")
    parser.add_argument("--box_constraint", default=False, type=str2bool,
                        help="True: a pixel is labelled only background or the class of a box holding it "
                             "(as train_infer_A2GNN_box.py --box_constraint)")
    parser.add_argument("--out", default=None, type=str, help="label PNG path (default <image stem>_mask.png)")
    parser.add_argument("--overlay", default=None, type=str,
                        help="overlay picture path (default <image stem>_overlay.png; 'none' for none)")
    parser.add_argument("--progress", default=True, type=str2bool, help="progress bars on stderr (True/False)")
    parser.add_argument("--device", default=default_device(), type=str, help=cli.DEVICE_HELP)
    parser.add_argument("--seed", default=0, type=int, help="random seed of GrabCut and of the A2GNN training")
    return parser


def annotation(args: argparse.Namespace, hw: tuple[int, int]) -> Annotation:
    """The one kind of annotation given, checked against the image size ``hw``; boxes clipped to it."""
    given = [k for k, v in (("box", args.box), ("scribble", args.scribble), ("point", args.point)) if v]
    if len(given) != 1:
        raise UserError("give one kind of annotation: --box (repeatable), --scribble or --point (repeatable)")
    h, w = hw
    boxes = [Box(b.cls, max(0, b.x0), max(0, b.y0), min(w - 1, b.x1), min(h - 1, b.y1)) for b in args.box]
    empty = [raw for raw, b in zip(args.box, boxes, strict=True) if b.x1 < b.x0 or b.y1 < b.y0]
    if empty:
        raise UserError(f"--box outside the {w}x{h} image: " + "; ".join(
            f"{b.x0},{b.y0},{b.x1},{b.y1},{CLASS_NAMES[b.cls]}" for b in empty))
    outside = [p for p in args.point if not (0 <= p.x < w and 0 <= p.y < h)]
    if outside:
        raise UserError(f"--point outside the {w}x{h} image: " + "; ".join(
            f"{p.x},{p.y},{CLASS_NAMES[p.cls]}" for p in outside))
    scribble = None
    if args.scribble:
        try:
            scribble = read_label_png(args.scribble, hw)
        except (OSError, ValueError) as err:
            raise UserError(f"--scribble: {err}") from None
    return Annotation(given[0], boxes, list(args.point), scribble)


def infer(args: argparse.Namespace) -> tuple[np.ndarray, Phases]:
    """Write the label PNG and the overlay; return the ``(H, W)`` uint8 label at the image's size and the
    run's ``Phases`` (their seconds, and the ``'total'`` from start to end: loading and writing included)."""
    start, cpu = time.perf_counter(), time.process_time()
    image_path = Path(args.image)
    try:
        rgb = read_image(image_path)
    except (OSError, ValueError) as err:
        raise UserError(f"--image: {err}") from None
    ann = annotation(args, rgb.shape[:2])
    device = torch.device(args.device)
    weights = args.weights or f"netWeights/final_model/aff_{ann.kind}.pth"
    aff_net = load_network("network.resnet38_aff_gated", weights, "--weights", device)
    cam_net = None if not args.cam_weights else load_network("network.resnet38_SEAM", args.cam_weights,
                                                             "--cam_weights", device)
    settings = Settings(PLANS[args.schedule], hidden=args.hidden, radius=args.radius, scales=tuple(args.scales),
                        seed=args.seed, box_constraint=args.box_constraint, progress=args.progress)
    settings = settings.with_epochs(args.epochs, args.max_side)
    schedule = KINDS[ann.kind][0]
    print(f"{ann.kind}: {settings.plan.epochs(schedule)} + {settings.plan.epochs(schedule)} A2GNN epochs, long side "
          f"<= {settings.plan.max_side or max(rgb.shape[:2])} px" + ("" if ann.kind != "box" else
          ", seeds: " + ("cam_and_grabcut" if cam_net is not None else "grabcut (no --cam_weights)")))
    phases = Phases(args.progress)
    label = segment(rgb, ann, aff_net, settings, cam_net, phases)

    out = Path(args.out) if args.out else image_path.with_name(f"{image_path.stem}_mask.png")
    save_label_png(out, label)
    present = ", ".join(f"{CLASS_NAMES[c]} {np.mean(label == c):.1%}" for c in np.unique(label))
    print(f"mask -> {out} ({present})")
    if (args.overlay or "").lower() != "none":
        picture_path = Path(args.overlay) if args.overlay else image_path.with_name(f"{image_path.stem}_overlay.png")
        picture = overlay(rgb, label, boxes=ann.boxes, points=ann.points)
        with atomic_path(picture_path) as tmp:
            picture.save(tmp, format="PNG")
        print(f"overlay -> {picture_path}")
    phases.seconds["total"], phases.cpu_seconds["total"] = time.perf_counter() - start, time.process_time() - cpu
    print(phases.summary())
    return label, phases


def main(args: argparse.Namespace) -> np.ndarray:
    """Write the label PNG and the overlay; return the ``(H, W)`` uint8 label at the image's size."""
    return infer(args)[0]


if __name__ == "__main__":
    sys.exit(cli.run(lambda: main(get_args_parser().parse_args())))
