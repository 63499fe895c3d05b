"""Stage 3: per-image A2GNN training and inference (algorithm.md §3), tensors in, tensors out, for one image or
many at once.

``propagate_batch`` takes ``K`` images' affinity-network outputs, seeds and annotations and returns each
image's class probabilities before the dense CRF; ``propagate`` is the one-image call. The images train
together, one A2GNN each (stacked parameters, one Adam over them = ``K`` independent ones), on their
disjoint graphs; each image's loss is summed into one backward. Images of one grid size form a bucket
whose seed and MP losses run batched. Each image's initial parameters and dropout masks come from its own
generator, seeded by ``(seed, key)`` (``image_generator``), so an image's result does not depend on the
batch it ran in. The stage layer (``stages/a2gnn.py``) reads files and writes labels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from network.a2gnn import A2GNN
from network.graph import GraphBatch
from tool.a2gnn_losses import BoxPoints, box_points, box_table, crf_kernel_graph, gated_crf_term, mp_loss, seed_loss
from tool.graph import random_walk, window_graph
from vocabulary import IGNORE, NUM_CLASSES, Box

STRIDE = 8
SCHEDULES = ("box", "others")
CRF_WEIGHT = {"box": 0.01, "others": 0.3}  # weight of the gated CRF term in the second phase


@dataclass
class PropagateConfig:
    """Per-image training settings (algorithm.md §3.5, §3.7). ``epochs`` is the length of each of the two phases.

    schedule ``'box'``: seed + MP loss, then seed + MP + 0.01·CRF. ``'others'``: seed loss, then
    seed + 0.3·CRF. ``rw``: fuse the random walk of the CAMs into the probabilities. ``amp``: bf16 autocast
    of the embedding product (``A2GNN``).
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
    amp: bool = False

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


@dataclass
class ImageInputs:
    """One image for ``propagate_batch``.

    features: ``(Cf, h, w)`` affinity-network features; aff: ``(2r+1, 2r+1, h, w)`` affinities;
    seeds: ``(Hp, Wp)`` long (0..C-1, 255 = unknown, padded with 255), ``Hp = 8h``, ``Wp = 8w``;
    image: ``(3, Hp, Wp)`` normalized image padded with 0; image_size: ``(H, W)`` before padding;
    boxes: 0-based inclusive boxes (box schedule); cams ``(M, H, W)``, cam_classes ``(M,)``: CAMs for
    ``cfg.rw``; key: the image's name in its generator's seed (``image_generator``).
    """

    features: Tensor
    aff: Tensor
    seeds: Tensor
    image: Tensor
    image_size: tuple[int, int]
    boxes: Sequence[Box] | None = None
    cams: Tensor | None = None
    cam_classes: Tensor | None = None
    key: str = ""


def image_generator(seed: int, key: str, device: torch.device | str) -> torch.Generator:
    """The generator of one image's training on ``device``, seeded by a hash of ``(seed, key)``."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") & (2 ** 63 - 1))


@dataclass
class Bucket:
    """Images ``start:stop`` of a ``TrainingBatch`` (all of grid size ``h × w``) and their node rows
    ``nodes``; seeds ``(B, Hp, Wp)`` (replaced by each epoch's pruned seeds); boxes: their ``box_points``
    (the box schedule), built once for every epoch."""

    start: int
    stop: int
    h: int
    w: int
    nodes: slice
    seeds: Tensor
    boxes: BoxPoints | None


@dataclass
class TrainingBatch:
    """What every epoch of ``K`` images needs, images sorted by grid size: node features ``x``
    ``(N, Cf)``, their ``graph``, the CRF kernel graphs ``crf``, the size buckets."""

    x: Tensor
    graph: GraphBatch
    crf: GraphBatch
    buckets: list[Bucket] = field(default_factory=list)


def check_inputs(item: ImageInputs, cfg: PropagateConfig) -> None:
    """Raise ``ValueError`` naming what is wrong with one image's tensors."""
    h, w = item.features.shape[-2:]
    padded = (STRIDE * h, STRIDE * w)
    aff, seeds = item.aff, item.seeds
    if aff.dim() != 4 or aff.shape[0] != aff.shape[1] or aff.shape[0] % 2 == 0 or aff.shape[-2:] != (h, w):
        raise ValueError(f"aff must be (2r+1, 2r+1, {h}, {w}), got {tuple(aff.shape)}")
    if tuple(seeds.shape) != padded or tuple(item.image.shape) != (3, *padded):
        raise ValueError(f"seeds must be {padded} and image (3, {padded[0]}, {padded[1]}) for a {h}x{w} "
                         f"grid, got {tuple(seeds.shape)} and {tuple(item.image.shape)}")
    if any(not p - STRIDE < s <= p for p, s in zip(padded, item.image_size, strict=True)):
        raise ValueError(f"image size {item.image_size} does not pad to {padded}")
    bad = (seeds >= cfg.num_class) & (seeds != IGNORE)
    if bad.any():
        raise ValueError(f"seed labels must be 0..{cfg.num_class - 1} or {IGNORE}, found "
                         f"{sorted(set(seeds[bad].tolist()))[:5]}")
    if cfg.schedule == "box" and item.boxes is None:
        raise ValueError("the 'box' schedule needs boxes")
    if cfg.rw and item.cams is None:
        raise ValueError("rw=True needs CAMs")


def training_batch(items: Sequence[ImageInputs], cfg: PropagateConfig) -> TrainingBatch:
    """Node features, graphs, CRF kernels and size buckets of ``items`` (already sorted by grid size):
    everything that depends only on the inputs, boxes and sizes, so that no epoch waits for the device."""
    device = items[0].features.device
    graphs = [window_graph(item.aff, (item.aff.shape[0] - 1) // 2) for item in items]
    kernels = [crf_kernel_graph(F.interpolate(item.image[None].to(device), item.features.shape[-2:],
                                              mode="bilinear", align_corners=False)[0]) for item in items]
    batch = TrainingBatch(torch.cat([node_features(item.features) for item in items]), GraphBatch(graphs),
                          GraphBatch(kernels))
    start, node = 0, 0
    while start < len(items):
        h, w = items[start].features.shape[-2:]
        stop = start
        while stop < len(items) and tuple(items[stop].features.shape[-2:]) == (h, w):
            stop += 1
        group = items[start:stop]
        seeds = torch.stack([item.seeds.to(device).long() for item in group])
        boxes = (box_points(box_table([item.boxes for item in group], device), tuple(seeds.shape[1:]), len(group))
                 if cfg.schedule == "box" else None)
        batch.buckets.append(Bucket(start, stop, h, w, slice(node, node + len(group) * h * w), seeds, boxes))
        start, node = stop, node + len(group) * h * w
    _ = batch.graph.tiles, batch.crf.tiles, batch.crf.node_image  # built here, not in the first epochs
    return batch


def train_step(model: A2GNN, batch: TrainingBatch, optimizer: torch.optim.Optimizer,
               crf_weight: float | None) -> Tensor:
    """One epoch (one full-graph step) of every image of ``batch``: seed loss, the MP loss with consistency
    checking where a bucket has ``boxes`` (its pruned seeds replace ``bucket.seeds`` for the next epoch,
    before the seed loss sees them), and ``crf_weight ×`` the gated CRF term unless ``None``. Returns the
    images' losses ``(K,)``; their sum is what is back-propagated."""
    model.train()
    optimizer.zero_grad()
    logits, embedding = model(batch.x, batch.graph)
    losses = []
    for bucket in batch.buckets:
        count = bucket.stop - bucket.start
        grid = logits[bucket.nodes].view(count, bucket.h, bucket.w, -1).permute(0, 3, 1, 2)
        loss = grid.new_zeros(count)
        if bucket.boxes is not None:
            emb = embedding[bucket.nodes].view(count, bucket.h, bucket.w, -1).permute(0, 3, 1, 2)
            mp, bucket.seeds = mp_loss(grid, emb, bucket.boxes, bucket.seeds)
            loss = loss + mp
        losses.append(loss + seed_loss(grid, bucket.seeds))
    loss = torch.cat(losses)
    if crf_weight is not None:
        loss = loss + crf_weight * gated_crf_term(F.softmax(logits, dim=1), batch.crf)
    loss.sum().backward()
    optimizer.step()
    return loss.detach()


def train_a2gnn(items: Sequence[ImageInputs], cfg: PropagateConfig,
                on_epoch: Callable[[], None] | None = None) -> list[Tensor]:
    """Train one A2GNN per image, all images together (both phases of ``cfg.schedule``), and return each
    image's node logits ``(h·w, C)`` in evaluation mode, in the order of ``items``. ``on_epoch`` (e.g. a
    progress bar's ``update``) is called after each of the ``2 · cfg.epochs`` epochs.

    Runs on the device of the first image's ``features``. Every image's result is that of training it
    alone up to float rounding: its parameters, dropout masks and Adam state are its own.
    """
    for item in items:
        check_inputs(item, cfg)
    if len({item.features.shape[0] for item in items}) > 1:
        raise ValueError("every image of a batch needs the same feature channels")
    device = items[0].features.device
    order = sorted(range(len(items)), key=lambda i: tuple(items[i].features.shape[-2:]))
    ordered = [items[i] for i in order]
    batch = training_batch(ordered, cfg)
    generators = [image_generator(cfg.seed, item.key, device) for item in ordered]
    model = A2GNN(batch.x.shape[1], cfg.hidden, cfg.num_class, cfg.nlayers, cfg.dropout, generators, cfg.amp)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for crf_weight in (None, CRF_WEIGHT[cfg.schedule]):
        for _ in range(cfg.epochs):
            train_step(model, batch, optimizer, crf_weight)
            if on_epoch is not None:
                on_epoch()
    model.eval()
    with torch.no_grad():
        logits = model(batch.x, batch.graph)[0].split(batch.graph.sizes)
    out: list[Tensor] = [logits[0]] * len(items)
    for k, i in enumerate(order):
        out[i] = logits[k]
    return out


def propagate_batch(items: Sequence[ImageInputs], cfg: PropagateConfig,
                    on_epoch: Callable[[], None] | None = None) -> list[Tensor]:
    """``train_a2gnn`` (``on_epoch`` as there), then each image's class probabilities ``(C, H, W)`` before
    the dense CRF: logits upsampled to ``(Hp, Wp)``, cropped to ``(H, W)``, softmax, fused with the CAM
    random walk for ``cfg.rw``. In the order of ``items``."""
    probs = []
    for item, logits in zip(items, train_a2gnn(items, cfg, on_epoch), strict=True):
        h, w = item.features.shape[-2:]
        height, width = item.image_size
        pred = upsample(logits.t().reshape(-1, h, w), (STRIDE * h, STRIDE * w))[:, :height, :width]
        out = F.softmax(pred, dim=0)
        if cfg.rw:
            device = logits.device
            walk = random_walk_scores(item.cams.to(device), item.cam_classes.to(device), item.aff,
                                      item.image_size, cfg)
            out = out + cfg.rw_weight * walk
            out = out / out.sum(dim=0, keepdim=True)
        probs.append(out)
    return probs


def propagate(features: Tensor, aff: Tensor, seeds: Tensor, image: Tensor, image_size: tuple[int, int],
              cfg: PropagateConfig, boxes: Sequence[Box] | None = None, cams: Tensor | None = None,
              cam_classes: Tensor | None = None, key: str = "",
              on_epoch: Callable[[], None] | None = None) -> Tensor:
    """Train an A2GNN on one image and return its class probabilities ``(C, H, W)`` before the dense CRF
    (arguments as in ``ImageInputs``; ``on_epoch`` as in ``train_a2gnn``). Deterministic for a given
    ``cfg.seed`` and ``key``."""
    return propagate_batch([ImageInputs(features, aff, seeds, image, image_size, boxes, cams, cam_classes, key)],
                           cfg, on_epoch)[0]
