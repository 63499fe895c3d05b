"""Stage 3: per-image A2GNN training and inference (algorithm.md §3), and the per-image job both
``train_infer_A2GNN_*.py`` scripts run.

``propagate`` takes tensors and returns class probabilities before the dense CRF. ``A2GNNJob`` reads one
image's files, runs the affinity network, ``propagate``, the dense CRF and writes the label PNG.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from network.a2gnn import A2GNN
from network.graph import WindowGraph
from tool.a2gnn_losses import crf_kernel_graph, gated_crf_term, mp_loss, random_walk, seed_loss
from tool.cam import load_cams
from tool.checkpoint import load_checkpoint
from tool.cli import add_id_list, add_voc12_root, default_device, str2bool
from tool.crf import A2GNN_CRF, dense_crf
from tool.dist import cleanup_distributed, init_distributed
from tool.graph import window_graph
from tool.label_io import read_image, read_label_png, save_label_png, save_npz
from tool.runner import RunSummary, run_per_image
from tool.transforms import normalize, pad_to_multiple, to_chw_tensor
from voc12.annotations import read_boxes
from voc12.lists import read_list
from vocabulary import IGNORE, NUM_CLASSES, Box

STRIDE = 8
SCHEDULES = ("box", "others")
CRF_WEIGHT = {"box": 0.01, "others": 0.3}  # weight of the gated CRF term in the second phase


@dataclass
class PropagateConfig:
    """Per-image training settings (algorithm.md §3.5, §3.7). ``epochs`` is the length of each of the two phases.

    schedule ``'box'``: seed + MP loss, then seed + MP + 0.01·CRF. ``'others'``: seed loss, then
    seed + 0.3·CRF. ``rw``: fuse the random walk of the CAMs into the probabilities.
    """

    schedule: str = "box"
    epochs: int = 150
    lr: float = 0.035
    weight_decay: float = 5e-4
    hidden: int = 256
    dropout: float = 0.5
    num_class: int = NUM_CLASSES
    nlayers: int = 3
    rw: bool = False
    alpha: float = 6.0
    beta: float = 8.0
    logt: int = 6
    rw_weight: float = 3.0
    seed: int = 0

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")


def node_features(features: Tensor) -> Tensor:
    """``(Cf, h, w)`` → ``(N, Cf)`` node features divided by their L1 norm (a zero row stays zero)."""
    x = features.flatten(1).t()
    return x / x.abs().sum(dim=1, keepdim=True).clamp(min=torch.finfo(x.dtype).tiny)


def upsample(grid: Tensor, size: tuple[int, int]) -> Tensor:
    """``(C, h, w)`` → ``(C, *size)``, bilinear, ``align_corners=False``."""
    return F.interpolate(grid[None], size, mode="bilinear", align_corners=False)[0]


def train_step(model: A2GNN, x: Tensor, graph: WindowGraph, seeds: Tensor, optimizer: torch.optim.Optimizer,
               boxes: Sequence[Box] | None, crf_kernel: WindowGraph | None,
               crf_weight: float) -> tuple[Tensor, Tensor]:
    """One epoch (one full-graph step). ``boxes``: MP loss with consistency checking when not ``None``;
    ``crf_kernel`` (``crf_kernel_graph`` of the image at grid size): add ``crf_weight ×`` the gated CRF
    term. Returns ``(pruned seeds, loss)`` (the seeds of the next epoch; unchanged without boxes)."""
    model.train()
    optimizer.zero_grad()
    logits, embedding = model(x, graph)
    grid = logits.t().reshape(-1, graph.h, graph.w)
    loss = grid.new_zeros(())
    if boxes is not None:  # on box crops and points of the grid, before the seed loss sees the pruning
        mp, seeds = mp_loss(grid, embedding.t().reshape(-1, graph.h, graph.w), boxes, seeds)
        loss = loss + mp
    loss = loss + seed_loss(grid, seeds)
    if crf_kernel is not None:
        loss = loss + crf_weight * gated_crf_term(F.softmax(logits, dim=1), crf_kernel)
    loss.backward()
    optimizer.step()
    return seeds, loss.detach()


def random_walk_scores(cams: Tensor, cam_classes: Tensor, aff: Tensor, image_size: tuple[int, int],
                       cfg: PropagateConfig) -> Tensor:
    """CAM random walk (algorithm.md §3.7): ``(C, H, W)`` scores.

    cams ``(K, H, W)`` or ``(K, Hp, Wp)`` in [0, 1] for ``cam_classes`` ``(K,)`` (1..C-1); background
    ``(1 − max cam)^alpha`` inside the image, 0 in the padding (as published); 8×8 average pooling, walk on
    the raw affinity ``aff`` ``(2r+1, 2r+1, h, w)``, upsampling, crop.
    """
    height, width = image_size
    h, w = aff.shape[-2:]
    full = cams.new_zeros(cfg.num_class, height, width)
    full[cam_classes.long()] = cams[:, :height, :width]
    full[0] = (1 - full[1:].max(dim=0).values) ** cfg.alpha
    full = F.pad(full, (0, STRIDE * w - width, 0, STRIDE * h - height))
    pooled = F.avg_pool2d(full[None], STRIDE)[0]
    graph = window_graph(aff, (aff.shape[0] - 1) // 2, self_weight=None)
    walked = random_walk(pooled, graph, cfg.beta, cfg.logt)
    return upsample(walked, (STRIDE * h, STRIDE * w))[:, :height, :width]


def _check_inputs(features: Tensor, aff: Tensor, seeds: Tensor, image: Tensor, image_size: tuple[int, int],
                  cfg: PropagateConfig, boxes: Sequence[Box] | None, cams: Tensor | None) -> None:
    h, w = features.shape[-2:]
    padded = (STRIDE * h, STRIDE * w)
    if aff.dim() != 4 or aff.shape[0] != aff.shape[1] or aff.shape[0] % 2 == 0 or aff.shape[-2:] != (h, w):
        raise ValueError(f"aff must be (2r+1, 2r+1, {h}, {w}), got {tuple(aff.shape)}")
    if tuple(seeds.shape) != padded or tuple(image.shape) != (3, *padded):
        raise ValueError(f"seeds must be {padded} and image (3, {padded[0]}, {padded[1]}) for a {h}x{w} "
                         f"grid, got {tuple(seeds.shape)} and {tuple(image.shape)}")
    if any(not p - STRIDE < s <= p for p, s in zip(padded, image_size, strict=True)):
        raise ValueError(f"image size {image_size} does not pad to {padded}")
    bad = (seeds >= cfg.num_class) & (seeds != IGNORE)
    if bad.any():
        raise ValueError(f"seed labels must be 0..{cfg.num_class - 1} or {IGNORE}, found "
                         f"{sorted(set(seeds[bad].tolist()))[:5]}")
    if cfg.schedule == "box" and boxes is None:
        raise ValueError("the 'box' schedule needs boxes")
    if cfg.rw and cams is None:
        raise ValueError("rw=True needs CAMs")


def propagate(features: Tensor, aff: Tensor, seeds: Tensor, image: Tensor, image_size: tuple[int, int],
              cfg: PropagateConfig, boxes: Sequence[Box] | None = None, cams: Tensor | None = None,
              cam_classes: Tensor | None = None) -> Tensor:
    """Train an A2GNN on one image and return its class probabilities ``(C, H, W)`` before the dense CRF.

    features: ``(Cf, h, w)`` affinity-network features; aff: ``(2r+1, 2r+1, h, w)`` affinities;
    seeds: ``(Hp, Wp)`` long (0..C-1, 255 = unknown, padded with 255), ``Hp = 8h``, ``Wp = 8w``;
    image: ``(3, Hp, Wp)`` normalized image padded with 0; image_size: ``(H, W)`` before padding;
    boxes: 0-based inclusive boxes (box schedule); cams, cam_classes: CAMs for ``cfg.rw``.
    Runs on the device of ``features``; deterministic for a given ``cfg.seed`` (seeds the global RNG).
    """
    _check_inputs(features, aff, seeds, image, image_size, cfg, boxes, cams)
    device = features.device
    height, width = image_size
    h, w = features.shape[-2:]
    torch.manual_seed(cfg.seed)
    x = node_features(features)
    graph = window_graph(aff, (aff.shape[0] - 1) // 2)
    model = A2GNN(x.shape[1], cfg.hidden, cfg.num_class, cfg.nlayers, cfg.dropout).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    crf_kernel = crf_kernel_graph(F.interpolate(image[None].to(device), (h, w), mode="bilinear",
                                                align_corners=False)[0])
    seeds = seeds.to(device).long()
    mp_boxes = boxes if cfg.schedule == "box" else None
    for phase_crf in (None, crf_kernel):
        for _ in range(cfg.epochs):
            seeds, _ = train_step(model, x, graph, seeds, optimizer, mp_boxes, phase_crf,
                                  CRF_WEIGHT[cfg.schedule])

    model.eval()
    with torch.no_grad():
        logits, _ = model(x, graph)
        pred = upsample(logits.t().reshape(-1, h, w), (STRIDE * h, STRIDE * w))[:, :height, :width]
        probs = F.softmax(pred, dim=0)
        if cfg.rw:
            rw = random_walk_scores(cams.to(device), cam_classes.to(device), aff, image_size, cfg)
            probs = probs + cfg.rw_weight * rw
            probs = probs / probs.sum(dim=0, keepdim=True)
    return probs


# ---------------------------------------------------------------------------------------------------
# The per-image job of the two stage-3 scripts.

SCRIPT_DEFAULTS = {
    "box": {"weights": "./netWeights/final_model/aff_box.pth", "save_path": "./out/box_pred",
            "seed_label_root": "./data/Init_Label/SEAM_Box", "radius": 4, "epochs": 150, "lr": 0.035},
    "others": {"weights": "./netWeights/final_model/aff_scribble.pth", "save_path": "./out/scribble_pred",
               "seed_label_root": "./data/Init_Label/Scribble_SuperPixel", "radius": 3, "epochs": 50,
               "lr": 0.03},
}


def add_a2gnn_arguments(parser: argparse.ArgumentParser, schedule: str) -> argparse.ArgumentParser:
    """The flags both stage-3 scripts share (upstream names and meanings), with ``schedule``'s defaults."""
    d = SCRIPT_DEFAULTS[schedule]
    add_voc12_root(parser)
    parser.add_argument("--weights", default=d["weights"], type=str, help="trained affinity network")
    parser.add_argument("--network", default="network.resnet38_aff_gated", type=str,
                        help="module with the affinity network class Net")
    parser.add_argument("--backbone_width", default=1.0, type=float,
                        help="width multiplier of the affinity network (1 for the published weights)")
    add_id_list(parser, "--infer_list", what="images to write pseudo labels for")
    parser.add_argument("--num_workers", default=0, type=int,
                        help="accepted for the upstream commands (which pass 8) and unused: stage 3 reads each "
                             "image in the main process; a value > 0 prints a note")
    parser.add_argument("--seed_label_root", default=d["seed_label_root"], type=str,
                        help="folder of seed PNGs <id>.png (255 = unknown)")
    parser.add_argument("--save_path", default=d["save_path"], type=str, help="output folder of label PNGs")
    parser.add_argument("--save_probs", default=None, type=str,
                        help="also write the probabilities before the dense CRF to DIR/<id>.npz (float16)")
    parser.add_argument("--radius", default=d["radius"], type=int, help="affinity window radius")
    parser.add_argument("--epochs", default=d["epochs"], type=int, help="epochs of each of the two phases")
    parser.add_argument("--hidden", default=256, type=int, help="hidden units")
    parser.add_argument("--num_class", default=NUM_CLASSES, type=int)
    parser.add_argument("--dropout", default=0.5, type=float, help="dropout rate")
    parser.add_argument("--lr", default=d["lr"], type=float, help="Adam learning rate")
    parser.add_argument("--weight_decay", default=5e-4, type=float)
    parser.add_argument("--device", default=default_device(), type=str)
    parser.add_argument("--seed", default=0, type=int, help="random seed of every image's training")
    parser.add_argument("--shard", default=None, type=str,
                        help="process shard i/n of the list (default: torchrun RANK/WORLD_SIZE, else all)")
    parser.add_argument("--overwrite", default=False, type=str2bool, help="redo images whose output exists")
    return parser


class A2GNNJob:
    """Everything one image needs: ``job(image_id)`` reads its files, runs the affinity network,
    ``propagate``, the dense CRF and writes ``save_path/<id>.png``; ``job.outputs(image_id)`` lists the
    files it writes (for resume)."""

    def __init__(self, args: argparse.Namespace, schedule: str, device: torch.device):
        self.args = args
        self.schedule = schedule
        self.device = device
        self.root = Path(args.voc12_root)
        self.net = importlib.import_module(args.network).Net(width=args.backbone_width)
        load_checkpoint(self.net, args.weights, strict=True)
        self.net.eval().to(device)
        rw = getattr(args, "rw", False)
        self.cfg = PropagateConfig(
            schedule=schedule, epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
            hidden=args.hidden, dropout=args.dropout, num_class=args.num_class, rw=rw, seed=args.seed,
            **({k: getattr(args, k) for k in ("alpha", "beta", "logt", "rw_weight")} if rw else {}))
        if rw and not getattr(args, "cam_dir", None):
            raise ValueError("--rw True needs --cam_dir (folder of <id>.npz CAM files from infer_SEAM.py)")
        self.box_dir = Path(args.BoxXmlpath or self.root / "Annotations") if schedule == "box" else None

    def outputs(self, image_id: str) -> list[Path]:
        paths = [Path(self.args.save_path) / f"{image_id}.png"]
        if self.args.save_probs:
            paths.append(Path(self.args.save_probs) / f"{image_id}.npz")
        return paths

    def load(self, image_id: str) -> dict:
        """Inputs of one image: the RGB image, padded tensors, boxes and CAMs as the schedule needs."""
        image = read_image(self.root / "JPEGImages" / f"{image_id}.jpg")
        seed_path = Path(self.args.seed_label_root) / f"{image_id}.png"
        seeds = read_label_png(seed_path)
        if seeds.shape != image.shape[:2]:
            raise ValueError(f"{seed_path}: seed map is {seeds.shape}, image is {image.shape[:2]}")
        inputs = {
            "rgb": image,
            "image": pad_to_multiple(to_chw_tensor(normalize(image)), STRIDE, 0),
            "seeds": pad_to_multiple(torch.from_numpy(seeds).long(), STRIDE, IGNORE),
            "boxes": None, "cams": None, "cam_classes": None,
        }
        if self.box_dir is not None:
            inputs["boxes"] = read_boxes(self.box_dir / f"{image_id}.xml", image_size=image.shape[:2])
        if self.cfg.rw:
            classes, cams = load_cams(Path(self.args.cam_dir) / f"{image_id}.npz")
            inputs["cams"], inputs["cam_classes"] = torch.from_numpy(cams), torch.from_numpy(classes)
        return inputs

    def __call__(self, image_id: str) -> None:
        inputs = self.load(image_id)
        with torch.no_grad():
            features, aff, _ = self.net(inputs["image"][None].to(self.device), self.args.radius)
        probs = propagate(features[0], aff[0], inputs["seeds"], inputs["image"], inputs["rgb"].shape[:2],
                          self.cfg, boxes=inputs["boxes"], cams=inputs["cams"],
                          cam_classes=inputs["cam_classes"]).cpu().numpy()
        if self.args.save_probs:
            save_npz(Path(self.args.save_probs) / f"{image_id}.npz", probs=probs.astype(np.float16))
        label = np.argmax(dense_crf(inputs["rgb"], probs, A2GNN_CRF), axis=0).astype(np.uint8)
        save_label_png(Path(self.args.save_path) / f"{image_id}.png", label)


def run_a2gnn(args: argparse.Namespace, schedule: str) -> RunSummary:
    """``main`` of the stage-3 scripts: the per-image job over the id list. Returns the ``RunSummary``."""
    ids = read_list(args.infer_list, args.voc12_root)
    if args.num_workers:
        print(f"note: --num_workers {args.num_workers} is unused: stage 3 reads each image in the main process "
              "(the per-image training dominates the time)")
    device = init_distributed(args.device)
    try:
        job = A2GNNJob(args, schedule, device)
        return run_per_image(ids, job, job.outputs, desc=f"A2GNN {schedule}", shard=args.shard,
                             overwrite=args.overwrite)
    finally:
        cleanup_distributed()
