"""SEAM training losses (Wang et al. 2020) on two views of a batch (algorithm.md §1.2).

Shapes: ``cam``/``cam_rv`` ``(N, 21, H, W)`` (channel 0 = background); ``y`` ``(N, 21, 1, 1)`` = [1, image
label] with 0/1 entries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-5


def max_norm(p: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Per image and channel ``relu(relu(p) − min − eps) / (max − min + eps)`` (min/max of ``relu(p)``)."""
    p = F.relu(p)
    flat = p.flatten(2)
    pmax = flat.max(dim=-1).values[..., None, None]
    pmin = flat.min(dim=-1).values[..., None, None]
    return F.relu(p - pmin - eps) / (pmax - pmin + eps)


def classification_loss(cam: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Multilabel soft-margin loss of the global-average-pooled foreground scores against ``y[:, 1:]``."""
    scores = cam.mean(dim=(2, 3))[:, 1:]
    return F.multilabel_soft_margin_loss(scores, y.flatten(1)[:, 1:])


def min_pooling_loss(cam_rv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean of ``relu`` of the ``h·w // 4`` smallest per-pixel foreground maxima of ``cam_rv · y``."""
    n, _, h, w = cam_rv.shape
    k = h * w // 4
    fg_max = (cam_rv * y)[:, 1:].max(dim=1).values.view(n, -1)
    smallest = torch.topk(fg_max, k=k, dim=-1, largest=False).values
    return F.relu(smallest).sum() / (k * n)


def with_background(cam: torch.Tensor) -> torch.Tensor:
    """``cam`` with channel 0 replaced by ``1 − max`` over channels 1..20."""
    bg = 1.0 - cam[:, 1:].max(dim=1, keepdim=True).values
    return torch.cat([bg, cam[:, 1:]], dim=1)


def winner_take_all(cam: torch.Tensor) -> torch.Tensor:
    """Zero every foreground channel below the per-pixel foreground maximum (channel 0 kept)."""
    fg = cam[:, 1:]
    fg = torch.where(fg == fg.max(dim=1, keepdim=True).values, fg, torch.zeros_like(fg))
    return torch.cat([cam[:, :1], fg], dim=1)


def top_mean(x: torch.Tensor, fraction: float = 0.2) -> torch.Tensor:
    """Mean of the ``int(C·h·w·fraction)`` largest entries of each image of ``x`` ``(N, C, h, w)``."""
    n, c, h, w = x.shape
    return torch.topk(x.reshape(n, -1), k=int(c * h * w * fraction), dim=-1).values.mean()


def seam_losses(cam1: torch.Tensor, rv1: torch.Tensor, cam2: torch.Tensor, rv2: torch.Tensor,
                y: torch.Tensor) -> dict[str, torch.Tensor]:
    """All SEAM losses from the network outputs on view 1 and view 2 (view 1 resized to view 2's size).

    Returns ``{'cls', 'rvmin', 'er', 'ecr', 'loss'}`` with ``loss = cls + rvmin + er + ecr`` where ``cls``
    and ``rvmin`` average the two views.
    """
    cls = (classification_loss(cam1, y) + classification_loss(cam2, y)) / 2
    rvmin = (min_pooling_loss(rv1, y) + min_pooling_loss(rv2, y)) / 2

    size = cam2.shape[-2:]
    c1 = F.interpolate(max_norm(cam1), size, mode="bilinear", align_corners=True) * y
    r1 = F.interpolate(max_norm(rv1), size, mode="bilinear", align_corners=True) * y
    c2 = max_norm(cam2) * y
    r2 = max_norm(rv2) * y

    er = (c1[:, 1:] - c2[:, 1:]).abs().mean()
    c1, c2 = with_background(c1), with_background(c2)
    ecr = (top_mean((winner_take_all(c2.detach()) - r1).abs())
           + top_mean((winner_take_all(c1.detach()) - r2).abs()))
    return {"cls": cls, "rvmin": rvmin, "er": er, "ecr": ecr, "loss": cls + rvmin + er + ecr}


class TwoViews(torch.nn.Module):
    """Runs ``net`` on a batch and on its copy resized by ``scale`` (bilinear, align_corners=True).

    One ``forward`` for both views, so a DistributedDataParallel wrapper sees one forward per backward.
    ``forward(images (N, 3, H, W)) -> (cam1, rv1, cam2, rv2)``; view 2 is ``int(H·scale) × int(W·scale)``.
    """

    def __init__(self, net: torch.nn.Module, scale: float = 0.3):
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, images: torch.Tensor, second_view: bool = True) -> tuple[torch.Tensor, ...]:
        if not second_view:  # view 1 alone: (cam1, rv1)
            return self.net(images)
        size = (int(images.shape[2] * self.scale), int(images.shape[3] * self.scale))
        view2 = F.interpolate(images, size, mode="bilinear", align_corners=True)
        return (*self.net(images), *self.net(view2))


def seam_step_losses(two_views: torch.nn.Module, images: torch.Tensor,
                     labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """:func:`seam_losses` of a :class:`TwoViews` model (possibly DDP-wrapped) on one batch.

    images: ``(N, 3, H, W)`` normalized. labels: ``(N, 20)`` 0/1 image labels.
    """
    return seam_losses(*two_views(images), label_maps(labels, images))


def classification_step_loss(two_views: torch.nn.Module, images: torch.Tensor,
                             labels: torch.Tensor) -> torch.Tensor:
    """The classification loss of view 1 alone (the from-scratch warm-up of ``train_SEAM.py``).

    images: ``(N, 3, H, W)`` normalized. labels: ``(N, 20)`` 0/1 image labels.
    """
    cam, _ = two_views(images, second_view=False)
    return classification_loss(cam, label_maps(labels, images))


def label_maps(labels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(N, 20)`` image labels → ``y`` ``(N, 21, 1, 1)`` = [1, labels] on ``like``'s device and dtype."""
    n = labels.shape[0]
    ones = torch.ones(n, 1, device=like.device, dtype=like.dtype)
    return torch.cat([ones, labels.to(like.device, like.dtype)], dim=1).view(n, -1, 1, 1)
