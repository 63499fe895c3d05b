"""Stage 4 recipes, loss and inference (algorithm.md §4): cross entropy with 255 ignored, multi-scale + flip
prediction."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from network.deeplab import PSP_AUX_WEIGHT
from tool.transforms import normalize, to_chw_tensor
from vocabulary import IGNORE


@dataclass(frozen=True)
class Recipe:
    """The ``train_seg.py`` defaults that depend on ``--arch`` (momentum 0.9, scales 0.5-2.0 and poly power 0.9
    are shared)."""

    max_iters: int  # training steps
    batch_size: int  # global batch (images)
    crop_size: int  # square crop (pixels)
    lr: float  # base learning rate of the backbone
    wt_dec: float  # weight decay


# DeepLab v2 (algorithm.md §4): 20k steps of 10 images, crop 321, lr 2.5e-4, weight decay 5e-4.
DEEPLAB_RECIPE = Recipe(max_iters=20000, batch_size=10, crop_size=321, lr=2.5e-4, wt_dec=5e-4)
# hszhao/semseg config/voc2012/voc2012_pspnet{50,101}.yaml: 50 epochs of train_aug (10,582 images) at batch 16
# = 661 steps per epoch = 33,050 steps, crop 473, base_lr 0.01 (new layers x10), weight_decay 1e-4.
PSPNET_RECIPE = Recipe(max_iters=33050, batch_size=16, crop_size=473, lr=0.01, wt_dec=1e-4)


def recipe(arch: str) -> Recipe:
    """PSPNet's recipe for ``pspnet_*``, DeepLab v2's for every other architecture."""
    return PSPNET_RECIPE if arch.startswith("pspnet") else DEEPLAB_RECIPE


def fill_recipe(args: argparse.Namespace) -> argparse.Namespace:
    """Set each :class:`Recipe` flag left at ``None`` to the value of ``recipe(args.arch)``; returns ``args``."""
    defaults = recipe(args.arch)
    for field in fields(Recipe):
        if getattr(args, field.name, None) is None:
            setattr(args, field.name, getattr(defaults, field.name))
    return args


class RecipeArgumentParser(argparse.ArgumentParser):
    """A parser whose result has the :class:`Recipe` flags that were not given filled from ``--arch``'s recipe
    (:func:`fill_recipe`), so every reader of the parsed flags sees the values the run uses (e.g. the parent
    process that chooses the GPU count by ``--batch_size``). A PSPNet batch of one image is refused."""

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        fill_recipe(namespace)
        if namespace.arch.startswith("pspnet") and namespace.batch_size < 2:
            self.error(f"--batch_size {namespace.batch_size}: {namespace.arch} needs 2 or more images per step "
                       "(BatchNorm after the 1x1 pyramid pooling sees one value per image)")
        return namespace, extras


def segmentation_loss(scores: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy over the pixels whose label is not 255.

    scores: ``(N, C, H, W)`` raw class scores; label: ``(N, H, W)`` int64, 0..C-1 or 255. A batch without
    any labelled pixel gives 0 (not NaN), so a crop of pure padding does not poison the step.
    """
    per_pixel = F.cross_entropy(scores.float(), label, ignore_index=IGNORE, reduction="sum")
    return per_pixel / (label != IGNORE).sum().clamp(min=1)


def seg_training_loss(outputs: torch.Tensor | tuple[torch.Tensor, torch.Tensor], label: torch.Tensor,
                      aux_weight: float = PSP_AUX_WEIGHT) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The objective of one training batch and its terms to log.

    outputs: ``(N, C, H, W)`` scores, or PSPNet's ``(scores, auxiliary scores)`` in training mode, whose
    objective is ``main + aux_weight · auxiliary`` (each :func:`segmentation_loss`); label: ``(N, H, W)``.
    """
    if isinstance(outputs, torch.Tensor):
        loss = segmentation_loss(outputs, label)
        return loss, {"loss": loss}
    main, aux = (segmentation_loss(scores, label) for scores in outputs)
    loss = main + aux_weight * aux
    return loss, {"loss": loss, "main_loss": main, "aux_loss": aux}


def scaled_input(image: np.ndarray, scale: float) -> torch.Tensor:
    """``(H, W, 3)`` uint8 → normalized ``(1, 3, round(H·s), round(W·s))`` float32 (bilinear resize)."""
    x = to_chw_tensor(normalize(image))[None]
    if scale == 1:
        return x
    h, w = image.shape[:2]
    return F.interpolate(x, (max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear",
                         align_corners=False)


@torch.no_grad()
def predict_probs(net: nn.Module, image: np.ndarray, scales: Sequence[float] = (1.0,), flip: bool = False,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Class probabilities of one image, averaged over ``scales`` (and their mirror images if ``flip``).

    image: ``(H, W, 3)`` uint8 RGB. ``net`` maps ``(N, 3, h, w)`` to ``(N, C, h, w)`` scores. At each scale
    the image and its mirror go through the net as one batch of two; the softmax of each is resized to
    ``(H, W)`` (bilinear), the mirror's flipped back. Returns ``(C, H, W)`` float32 on the CPU, summing to 1.
    """
    h, w = image.shape[:2]
    total = None
    for scale in scales:
        x = scaled_input(image, scale).to(device)
        if flip:
            x = torch.cat([x, x.flip(-1)])
        probs = F.interpolate(net(x).float().softmax(1), (h, w), mode="bilinear", align_corners=False)
        if flip:
            probs = torch.stack([probs[0], probs[1].flip(-1)])
        summed = probs.sum(0)
        total = summed if total is None else total + summed
    return (total / (len(scales) * (2 if flip else 1))).cpu()
