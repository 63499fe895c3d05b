"""One photo of your own to a mask (``infer_image.py``): seeds from boxes / a scribble / clicks (stage 1c),
the affinity network (stage 2's net), one A2GNN and the dense CRF (stage 3), on one image, with a progress bar
per phase and the time of each.

The single-image plan (``PLANS``) sets the A2GNN epochs of each phase and the working size; ``fast`` was chosen
with ``benchmarks/bench_infer_image.py`` (time and pseudo-label mIoU against ``published``, the paper's
schedule), see ``docs/infer_image.md``.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from network.resnet38d import STAGE_CHANNELS, scaled
from tool.box_labels import box_class_mask, grabcut_box_masks
from tool.cam import multiscale_cam, seeds_from_cams
from tool.checkpoint import load_checkpoint, read_state_dict
from tool.cli import UserError, WrongFileError
from tool.crf import box_constrained_crf
from tool.propagate import STRIDE, ImageInputs, PropagateConfig, propagate_batch
from tool.seed_labels import box_seed_label, point_seed_label, scribble_superpixel_label, superpixels
from tool.transforms import multiscale_flip_inputs, normalize, pad_to_multiple, resize_image, to_chw_tensor
from voc12.annotations import Point
from vocabulary import IGNORE, NUM_CLASSES, Box

KINDS = {"box": ("box", 4), "scribble": ("others", 4), "point": ("others", 3)}  # A2GNN schedule, window radius
LR = {"box": 0.035, "others": 0.03}  # the stage-3 scripts' Adam learning rates (stages/a2gnn.py)


@dataclass(frozen=True)
class Plan:
    """A2GNN epochs of each of the two phases (``box`` schedule; ``others``: scribbles and clicks) and the
    working size: the image is worked on with its long side at most ``max_side`` px (0: its own size)."""

    box_epochs: int
    others_epochs: int
    max_side: int

    def epochs(self, schedule: str) -> int:
        return self.box_epochs if schedule == "box" else self.others_epochs


PLANS = {
    "fast": Plan(box_epochs=45, others_epochs=20, max_side=320),
    "published": Plan(box_epochs=150, others_epochs=50, max_side=1000),
}


@dataclass
class Annotation:
    """What the user drew, in 0-based pixels of one image: ``kind`` ``'box'``, ``'scribble'`` or ``'point'``;
    boxes (inclusive corners); clicks; a scribble ``(H, W)`` uint8 (class id on strokes, 255 elsewhere)."""

    kind: str
    boxes: list[Box] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    scribble: np.ndarray | None = None

    def resized(self, hw: tuple[int, int], size: tuple[int, int]) -> Annotation:
        """The annotation of an ``hw`` image on the same image resized to ``size``: coordinates scaled and
        floored; every stroke pixel lands on the pixel holding it, so a thin stroke stays connected."""
        if size == hw:
            return self
        sy, sx = size[0] / hw[0], size[1] / hw[1]

        def at(v: int, s: float, n: int) -> int:
            return min(n - 1, max(0, int(v * s)))

        boxes = [Box(b.cls, at(b.x0, sx, size[1]), at(b.y0, sy, size[0]), at(b.x1, sx, size[1]),
                     at(b.y1, sy, size[0])) for b in self.boxes]
        points = [Point(p.cls, at(p.x, sx, size[1]), at(p.y, sy, size[0])) for p in self.points]
        scribble = None
        if self.scribble is not None:
            ys, xs = np.nonzero(self.scribble != IGNORE)
            scribble = np.full(size, IGNORE, np.uint8)
            scribble[np.minimum((ys * sy).astype(int), size[0] - 1),
                     np.minimum((xs * sx).astype(int), size[1] - 1)] = self.scribble[ys, xs]
        return Annotation(self.kind, boxes, points, scribble)


def work_size(hw: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``hw`` scaled down so that its long side is at most ``max_side`` (0: unchanged)."""
    s = min(1.0, max_side / max(hw)) if max_side else 1.0
    return hw if s == 1.0 else (max(1, round(hw[0] * s)), max(1, round(hw[1] * s)))


class Phases:
    """A tqdm bar on stderr per phase of the run, and the seconds each phase took: wall clock (``seconds``) and
    this process's CPU time (``cpu_seconds``, all threads; on a machine shared with other work it is the
    steadier measure)."""

    def __init__(self, progress: bool = True):
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str, total: int, unit: str = "step") -> Iterator[tqdm]:
        bar = tqdm(total=total, desc=name, unit=unit, file=sys.stderr, disable=not self.progress,
                   dynamic_ncols=True)
        start, cpu = time.perf_counter(), time.process_time()
        try:
            yield bar
        finally:
            bar.close()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + time.process_time() - cpu

    def summary(self) -> str:
        """``total 12.3 s (seeds: GrabCut 0.4 s, ...)``, the total being ``seconds['total']`` when set."""
        parts = {name: s for name, s in self.seconds.items() if name != "total"}
        total = self.seconds.get("total", sum(parts.values()))
        cpu = self.cpu_seconds.get("total", sum(self.cpu_seconds.values()))
        return (f"total {total:.1f} s, CPU {cpu:.1f} s (" + ", ".join(f"{n} {s:.1f} s" for n, s in parts.items())
                + ")")


BACKBONE_WIDTH_KEY = "bn7.weight"  # (4096·width,): the ResNet-38 backbone's last channel count


def checkpoint_width(state: dict[str, torch.Tensor], path: str) -> float:
    """The backbone width multiplier of a ResNet-38 checkpoint (``network.resnet38d``), read from its
    ``bn7`` channel count and checked against ``conv1a``'s."""
    if BACKBONE_WIDTH_KEY not in state or "conv1a.weight" not in state:
        raise ValueError(f"{path}: not a ResNet-38 checkpoint (no {BACKBONE_WIDTH_KEY} / conv1a.weight)")
    width = state[BACKBONE_WIDTH_KEY].shape[0] / STAGE_CHANNELS["b7"]
    if scaled(STAGE_CHANNELS["conv1a"], width) != state["conv1a.weight"].shape[0]:
        raise ValueError(f"{path}: its bn7 and conv1a channel counts fit no single backbone width")
    return width


def load_network(module: str, path: str, flag: str, device: torch.device) -> nn.Module:
    """``module.Net`` at the backbone width of the checkpoint ``path`` (given by ``flag``), loaded strictly,
    in eval mode on ``device``. A missing file, or one that is not that network's, is a ``UserError`` naming
    ``flag`` (the width is the file's, so a misfit means another network's file)."""
    try:
        state = read_state_dict(path)
        net = importlib.import_module(module).Net(width=checkpoint_width(state, path))
    except (FileNotFoundError, ValueError) as err:
        raise UserError(f"{flag}: {err}") from None
    try:
        load_checkpoint(net, path, strict=True, state=state)
    except WrongFileError as err:
        raise UserError(f"{flag}: {err}. {WHICH_FILE[module]}") from None
    print(f"backbone width {net.width:g} (from {path})")
    return net.eval().to(device)


WHICH_FILE = {
    "network.resnet38_aff_gated": "--weights takes an affinity net: aff_box.pth, aff_scribble.pth or aff_point.pth "
                                  "(download_weights.py) or what train_aff_gated_aff.py writes",
    "network.resnet38_SEAM": "--cam_weights takes the SEAM classifier: resnet38_SEAM.pth (download_weights.py) or "
                             "what train_SEAM.py writes",
}


def missing_background(annotation: Annotation, seeds: np.ndarray) -> str | None:
    """The warning for clicks or strokes that leave no background seed (every pixel would then become one
    of the annotated classes), or ``None``."""
    if annotation.kind == "box" or (seeds == 0).any():
        return None
    if annotation.kind == "point":
        return ('no background click: with no background seed the whole image becomes the clicked class(es). '
                'Add a click on the background with --point "x,y,background" (or give --cam_weights)')
    return ("no stroke of --scribble is background (0): with no background seed the whole image becomes the "
            "stroke class(es). Draw a stroke of value 0 over the background")


def cam_seeds(cam_net: nn.Module, rgb: np.ndarray, classes: np.ndarray, scales: Sequence[float],
              device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Compact CAMs ``(K, H, W)`` of ``classes`` (1..20) and their confident seeds ``(H, W)`` (stage 1b)."""
    label = torch.zeros(NUM_CLASSES - 1)
    label[torch.from_numpy(classes - 1)] = 1
    with torch.no_grad():
        cams = multiscale_cam(cam_net, [x.to(device) for x in multiscale_flip_inputs(rgb, tuple(scales))], label,
                              rgb.shape[:2])
    cams = cams[classes - 1]
    return cams, seeds_from_cams(rgb, classes, cams)[2]


def seed_label(rgb: np.ndarray, annotation: Annotation, phases: Phases, cam_net: nn.Module | None = None,
               scales: Sequence[float] = (1.0,), seed: int = 0,
               device: torch.device | str = "cpu") -> tuple[np.ndarray, dict]:
    """Seeds ``(H, W)`` uint8 (255 unknown) of the annotation (stage 1c, as ``make_seed_labels.py``) and the
    CAM inputs of the random walk (clicks with a classifier; else empty). Boxes: GrabCut per box, merged
    with the CAM seeds when ``cam_net`` is given; scribble: superpixels touched by one class; clicks: discs,
    over the CAM seeds when ``cam_net`` is given."""
    hw = rgb.shape[:2]
    if annotation.kind == "scribble":
        with phases.phase("seeds: superpixels", 1) as bar:
            seeds = scribble_superpixel_label(superpixels(rgb), annotation.scribble)
            bar.update()
        return seeds, {}
    box = annotation.kind == "box"
    classes = np.unique([b.cls for b in annotation.boxes] if box else [p.cls for p in annotation.points if p.cls])
    cams = cam_seed = None
    if cam_net is not None and classes.size:
        with phases.phase("seeds: CAM", 1) as bar:
            cams, cam_seed = cam_seeds(cam_net, rgb, classes.astype(np.int64), scales, torch.device(device))
            bar.update()
    if box:
        with phases.phase("seeds: GrabCut", len(annotation.boxes), unit="box") as bar:
            masks = []
            for b in annotation.boxes:  # (grabcut_box_masks reseeds OpenCV per box: the same masks as at once)
                masks += grabcut_box_masks(rgb, [b], seed=seed)
                bar.update()
        mode = "grabcut" if cam_seed is None else "cam_and_grabcut"
        return box_seed_label(annotation.boxes, hw, mode, grabcut_masks=masks, cam_seed=cam_seed), {}
    seeds = point_seed_label(annotation.points, np.full(hw, IGNORE, np.uint8) if cam_seed is None else cam_seed)
    rw = {} if cams is None else {"cams": torch.from_numpy(cams), "cam_classes": torch.from_numpy(classes)}
    return seeds, rw


def a2gnn_probs(item: ImageInputs, cfg: PropagateConfig, phases: Phases) -> torch.Tensor:
    """``tool.propagate.propagate_batch`` of one image with a progress bar over its epochs: class
    probabilities ``(C, H, W)`` before the dense CRF."""
    with phases.phase("A2GNN", 2 * cfg.epochs, unit="epoch") as bar:
        return propagate_batch([item], cfg, on_epoch=bar.update)[0]


def keep_to_boxes(label: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """``label`` ``(H, W)`` with every pixel of a class outside all boxes of that class set to background."""
    allowed = box_class_mask(boxes, label.shape, NUM_CLASSES)
    inside = np.take_along_axis(allowed, label[None].astype(np.int64), axis=0)[0]
    return np.where(inside, label, 0).astype(np.uint8)


@dataclass
class Settings:
    """How ``segment`` runs: the plan, the A2GNN hidden units, the affinity window radius (``None``: 4 for
    boxes and scribbles, 3 for clicks), CAM scales, random seed, ``box_constraint`` (labels keep to the
    boxes of their class) and whether to draw progress bars."""

    plan: Plan = PLANS["fast"]
    hidden: int = 256
    radius: int | None = None
    scales: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    seed: int = 0
    box_constraint: bool = False
    progress: bool = True

    def with_epochs(self, epochs: int | None = None, max_side: int | None = None) -> Settings:
        """These settings with the plan's epochs (both schedules) and / or working size replaced."""
        plan = self.plan
        if epochs is not None:
            plan = replace(plan, box_epochs=epochs, others_epochs=epochs)
        if max_side is not None:
            plan = replace(plan, max_side=max_side)
        return replace(self, plan=plan)


def segment(rgb: np.ndarray, annotation: Annotation, aff_net: nn.Module, settings: Settings,
            cam_net: nn.Module | None = None, phases: Phases | None = None) -> np.ndarray:
    """The ``(H, W)`` uint8 label (class ids) of ``rgb`` ``(H, W, 3)`` uint8 from ``annotation``: seeds,
    affinity network, A2GNN, dense CRF, at the plan's working size, resized back (nearest neighbour).
    Runs on the device of ``aff_net``; ``phases`` collects each phase's seconds."""
    phases = phases or Phases(settings.progress)
    schedule, radius = KINDS[annotation.kind]
    radius = settings.radius or radius
    device = next(aff_net.parameters()).device
    size = work_size(rgb.shape[:2], settings.plan.max_side)
    work = rgb if size == rgb.shape[:2] else resize_image(rgb, size).copy()  # (writable for the CRF)
    ann = annotation.resized(rgb.shape[:2], size)
    seeds, rw = seed_label(work, ann, phases, cam_net, settings.scales, settings.seed, device)
    warning = missing_background(ann, seeds)
    if warning:
        tqdm.write(f"warning: {warning}", file=sys.stderr)
    with phases.phase("affinity network", 1) as bar:
        image = pad_to_multiple(to_chw_tensor(normalize(work)), STRIDE, 0)
        with torch.no_grad():
            features, aff, _ = aff_net(image[None].to(device), radius)
        bar.update()
    cfg = PropagateConfig(schedule=schedule, epochs=settings.plan.epochs(schedule), lr=LR[schedule],
                          hidden=settings.hidden, rw=bool(rw), seed=settings.seed)
    item = ImageInputs(features[0], aff[0], pad_to_multiple(torch.from_numpy(seeds).long(), STRIDE, IGNORE),
                       image.to(device), size, boxes=ann.boxes if schedule == "box" else None, **rw)
    probs = a2gnn_probs(item, cfg, phases)
    constrain = settings.box_constraint and annotation.kind == "box"
    with phases.phase("CRF", 1) as bar:
        label = box_constrained_crf(work, probs.cpu().numpy(), ann.boxes if constrain else None)[0]
        bar.update()
    if size != rgb.shape[:2]:
        label = np.asarray(torch.nn.functional.interpolate(
            torch.from_numpy(label)[None, None].float(), rgb.shape[:2], mode="nearest")[0, 0].byte())
    return keep_to_boxes(label, annotation.boxes) if constrain else label
