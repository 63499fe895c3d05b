"""Stage 3: per-image A2GNN training and inference (SPEC §3), tensors in, tensors out.

``propagate`` takes one image's affinity-network outputs, seeds and annotations and returns its class
probabilities before the dense CRF. The stage layer (``stages/a2gnn.py``) reads files and writes labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from network.a2gnn import A2GNN
from tool.a2gnn_losses import crf_kernel_graph, gated_crf_term, mp_loss, seed_loss
from tool.graph import WindowGraph, random_walk, window_graph
from voc12 import IGNORE, NUM_CLASSES
from voc12.annotations import Box

STRIDE = 8
SCHEDULES = ("box", "others")
CRF_WEIGHT = {"box": 0.01, "others": 0.3}  # weight of the gated CRF term in the second phase


@dataclass
class PropagateConfig:
    """Per-image training settings (SPEC §3.5, §3.7). ``epochs`` is the length of each of the two phases.

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
    """CAM random walk (SPEC §3.7): ``(C, H, W)`` scores.

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
